"""gp_fts_probe on the sandbox: a healthy cluster (nothing changes), check mode (no
probe), FTS paused (the probe times out and says so), and FTS resumed after the
mirror-down grace period (one probe marks the mirror down, switches its primary's
sync replication off and the waiting commit returns)."""
import time

import pytest

from mirror_helpers import (
    Commit, catalog_row, ensure_table, extra_sandbox, fts_settings, mirror_dbid, mirror_lost, module_args,
    sync_setting, wait_for)
from stale_fixtures import run_module  # the module run as Ansible runs it, without playbook start-up time

pytestmark = pytest.mark.integration
CONTENT = 0


def probe(sb, check=False, **args):
    return run_module("gp_fts_probe", dict(module_args(sb), **args), check=check)


def test_healthy_cluster_probe_changes_nothing(clean_cluster):
    sb = clean_cluster
    checked = probe(sb, check=True)
    assert checked["probed"] is False and checked["fts_state"] == "check_mode"
    assert checked["changed"] is False and checked["before"] == checked["after"]
    result = probe(sb)
    assert not result.get("failed"), result.get("msg")
    assert result["probed"] is True and result["fts_state"] == "probed"
    assert result["probe"]["completed"] is True and result["changed"] is False
    assert result["changes"] == [] and result["history"] == []
    assert {s["dbid"] for s in result["after"]} == {s["dbid"] for s in result["before"]}


def test_paused_fts_then_probe_after_grace(clean_cluster):
    sb = clean_cluster
    ensure_table(sb)
    grace = 40.0
    dbid = mirror_dbid(sb, CONTENT)
    with fts_settings(sb, probe_interval=3600, mirror_down_grace_period=grace), \
            mirror_lost(sb, CONTENT) as stopped_at:
        commit = Commit(sb, CONTENT).start_waiting()

        # FTS paused: the probe does not finish, is reported, and changes nothing.
        paused = probe(sb, timeout=2)
        assert not paused.get("failed"), paused.get("msg")
        assert paused["fts_state"] == "timeout" and paused["changed"] is False
        assert "did not finish" in paused["summary"][0]
        assert not commit.done and catalog_row(sb, dbid) == ("m", "u", "s")

        # FTS running but acting only when asked (probe interval 3600 s, as in the captures).
        sb.fts.resume()
        inside = probe(sb)
        assert time.monotonic() < stopped_at + grace, "the test ran too slowly for its grace period"
        assert inside["fts_state"] == "probed" and inside["changed"] is False
        assert not commit.done
        time.sleep(max(0.0, stopped_at + grace + 1 - time.monotonic()))
        done = probe(sb)
        assert done["fts_state"] == "probed" and done["changed"] is True
        changes = {c["dbid"]: c["changes"] for c in done["changes"]}
        assert changes[dbid] == {"status": ["u", "d"], "mode": ["s", "n"]}
        assert list(changes) == sorted(changes) and len(changes) == 2
        assert {h["dbid"] for h in done["history"]} == set(changes)
        assert all(h["description"].startswith("FTS: update role, status, and mode") for h in done["history"])
        assert wait_for(lambda: commit.done, 15) and commit.error is None
        assert sync_setting(sb, CONTENT) == ""

        again = probe(sb)
        assert again["changed"] is False and again["changes"] == []


@pytest.fixture(scope="module")
def mirrorless(sandbox):
    """A second, small sandbox without mirrors (FTS has nothing to probe there)."""
    with extra_sandbox(sandbox, 70, "gpe-nomirror-", segments=1, mirrors=False) as sb:
        yield sb


def test_mirrorless_cluster_is_reported_not_probed(mirrorless):
    result = probe(mirrorless)
    assert not result.get("failed"), result.get("msg")
    assert result["fts_state"] == "no_mirrors" and result["probed"] is False
    assert result["changed"] is False and "no mirrors" in result["summary"][0]
    # Nothing to switch either: Greenplum keeps sync replication off without mirrors.
    sync = run_module("gp_sync_replication", dict(module_args(mirrorless), state="on", content=0))
    (e,) = sync["primaries"]
    assert sync["changed"] is False and e["verdict"] == "refuse" and "no mirror" in e["reason"]
    assert e["mirror"] is None and e["durability_risk"] is False
