"""Role gp_mirror_failure through ansible-playbook on the sandbox: a mirror killed with
FTS paused and a commit waiting in SyncRep. Not allowed to trade durability, the role
reports what it would do and changes nothing; allowed, it switches only that primary
off and the commit returns; check mode changes nothing; on Greenplum 6 with
gp_mirror_failure_on_segment_hosts each primary is switched on its own host."""
import os

import pytest

from mirror_helpers import (
    Commit, ensure_table, extra_sandbox, mirror_lost, module_args, run_play, sync_setting, wait_for)

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
        assert checked["switched_off"] == [] and checked["would_switch_off"] == [CONTENT]
        assert checked["still_waiting"] == [CONTENT] and checked["durability_risk"] is False
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


@pytest.fixture(scope="module")
def gp6_sandbox(sandbox):
    with extra_sandbox(sandbox, 80, "gpe-role-gp6-", segments=1, mirrors=True, replication_conf="gp6") as sb6:
        ensure_table(sb6)
        yield sb6


def test_role_on_segment_hosts_greenplum6(gp6_sandbox):
    """gp_mirror_failure_on_segment_hosts: each primary switched by the module run on its own
    host (delegate_to its hostname), writing its gp_replication.conf there."""
    sb = gp6_sandbox
    conf = os.path.join(sb.datadir(CONTENT), "gp_replication.conf")
    with mirror_lost(sb, CONTENT):
        commit = Commit(sb, CONTENT).start_waiting()
        result, proc = run_play(play(sb, gp_allow_sync_off=True, gp_mirror_failure_on_segment_hosts=True))
        assert proc.returncode == 0, proc.stdout[-3000:]
        assert result["switched_off"] == [CONTENT] and result["durability_risk"] is True
        (e,) = [p for p in result["primaries"] if p["content"] == CONTENT]
        assert e["method"] == "gp_replication_conf" and e["after"]["setting"] == ""
        assert any(q.endswith("to %s" % conf) for q in result["executed_queries"])
        assert "content %d on localhost" % CONTENT in proc.stdout
        assert wait_for(lambda: commit.done, 30) and commit.error is None
