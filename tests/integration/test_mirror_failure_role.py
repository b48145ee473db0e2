"""Role gp_mirror_failure through ansible-playbook on the sandbox: a mirror killed with
FTS paused and a commit waiting in SyncRep. Not allowed to trade durability, the role
reports what it would do and changes nothing; allowed, it switches only that primary
off and the commit returns; check mode changes nothing."""
import pytest

from mirror_helpers import (
    Commit, ensure_table, mirror_lost, module_args, run_play, sync_setting, wait_for)

pytestmark = pytest.mark.integration
CONTENT = 0


def play(sb, **role_vars):
    return {
        "module_defaults": {"group/gpops.greenplum.all": module_args(sb)},
        # FTS is paused: its probe would wait the whole computed timeout.
        "roles": [{"role": "gpops.greenplum.gp_mirror_failure",
                   "vars": dict({"gp_mirror_failure_probe_timeout": 2}, **role_vars)}],
    }


def test_role_probes_first_and_trades_durability_only_when_allowed(clean_cluster):
    sb = clean_cluster
    ensure_table(sb)
    with mirror_lost(sb, CONTENT):
        commit = Commit(sb, CONTENT).start_waiting()

        checked, proc = run_play(play(sb, gp_allow_sync_off=True), check=True)
        assert proc.returncode == 0, proc.stdout[-3000:]
        assert checked["fts_probe"]["fts_state"] == "check_mode"
        assert checked["switched_off"] == [CONTENT] and checked["still_waiting"] == [CONTENT]
        assert sync_setting(sb, CONTENT) == "*" and not commit.done

        denied, proc = run_play(play(sb))
        assert proc.returncode == 0, proc.stdout[-3000:]
        assert denied["fts_probe"]["fts_state"] == "timeout"
        assert denied["still_waiting"] == [CONTENT] and denied["would_switch_off"] == [CONTENT]
        assert denied["switched_off"] == [] and denied["durability_risk"] is False
        assert any("NOT switched off" in line for line in denied["summary"])
        assert sync_setting(sb, CONTENT) == "*" and not commit.done

        allowed, proc = run_play(play(sb, gp_allow_sync_off=True))
        assert proc.returncode == 0, proc.stdout[-3000:]
        assert allowed["switched_off"] == [CONTENT] and allowed["durability_risk"] is True
        assert any("DURABILITY TRADED" in line for line in allowed["summary"])
        assert allowed["actions"][0].startswith("FTS probe requested (timeout)")
        assert any(a.startswith("content %d " % CONTENT) and "switch_off" in a for a in allowed["actions"])
        assert any("ALTER SYSTEM SET synchronous_standby_names = ''" in q for q in allowed["executed_queries"])
        assert wait_for(lambda: commit.done, 30) and commit.error is None
        assert sync_setting(sb, CONTENT) == ""
        others = [p for p in allowed["primaries"] if p["content"] != CONTENT]
        assert others and all(p["after"]["setting"] == "*" for p in others)

        # Nothing waits any more: a second run switches nothing.
        again, proc = run_play(play(sb, gp_allow_sync_off=True))
        assert again["still_waiting"] == [] and again["switched_off"] == []
