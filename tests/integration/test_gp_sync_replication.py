"""gp_sync_replication on the sandbox: a mirror killed with FTS paused, the commit
waiting in SyncRep, detection, check mode, off (commit returns, second run
unchanged), on once the mirror streams, refusals, a stalled standby
coordinator's walsender, and the Greenplum 6 path (gp_replication.conf)."""
import os

import pytest

from ansible_collections.gpops.greenplum.plugins.module_utils.collect import snapshot
from ansible_collections.gpops.greenplum.plugins.module_utils.plan import sync_replication
from mirror_helpers import (
    Commit, coordinator_commit, ensure_table, extra_sandbox, mirror_dbid, mirror_lost, module_args,
    standby_coordinator, streaming, sync_setting, syncrep_waiter_pids, wait_for)
from playbook import run_task
from stale_fixtures import run_module

pytestmark = pytest.mark.integration
CONTENT = 0


@pytest.fixture
def sb(clean_cluster):
    ensure_table(clean_cluster)
    return clean_cluster


def sync(sb, check=False, **args):
    """The module run directly (JSON in, JSON out, as Ansible runs it): fast. The direct
    path (the FTS-first path is tested on real Greenplum 7, tests/gp7/test_mirror_loss.py)."""
    return run_module("gp_sync_replication", dict(module_args(sb), path="direct", **args), check=check)


def sync_play(sb, check=False, **args):
    """The module run by ansible-playbook (a one-task play)."""
    return run_task("gp_sync_replication", dict(module_args(sb), path="direct", **args), check=check)


def entry(result, content=CONTENT):
    (e,) = [p for p in result["primaries"] if p["content"] == content]
    return e


def test_mirror_loss_off_then_on(sb):
    with mirror_lost(sb, CONTENT):
        commit = Commit(sb, CONTENT).start_waiting()

        # Detection (what triage calls): the primary and its waiting commit, with its QD.
        params = dict(module_args(sb), connect_timeout=5, statement_timeout=20)
        snap = snapshot.take_snapshot(params)
        found = sync_replication.mirror_loss_findings(snap.segments, snap.backends, snap.taken_at, snap.unreachable)
        (waiting,) = found["waiting_primaries"]
        assert waiting["content"] == CONTENT and waiting["fts_has_acted"] is False
        assert commit.qd_pid in [w["qd_pid"] for w in waiting["waiters"]]
        assert all(w["waiting_seconds"] >= 0 for w in waiting["waiters"])

        # Check mode: the plan, nothing changed, changed false, no warning about a change.
        checked = sync_play(sb, check=True, state="off", content=CONTENT)
        assert checked["changed"] is False and checked["durability_risk"] is False
        assert checked["executed_queries"] == [] and not checked.get("warnings")
        assert [(s["action"], s["reason"]) for s in checked["plan"]["steps"]] == [
            ("sync_off", "mirror_lost_commits_wait")]
        assert entry(checked)["verdict"] == "switch_off" and entry(checked)["syncrep_waiters"]
        assert sync_setting(sb, CONTENT) == "*" and not commit.done

        # For real: the commit returns, FTS's catalog is untouched.
        done = sync_play(sb, state="off", content=CONTENT)
        assert not done.get("failed"), done.get("msg")
        assert done["changed"] is True and done["durability_risk"] is True
        e = entry(done)
        assert (e["before"]["setting"], e["after"]["setting"]) == ("*", "")
        assert e["replication"]["state"] is None and e["method"] == "alter_system"
        assert e["waiters_after"] == []
        assert any("commits there are acknowledged" in w for w in done.get("warnings", []))
        assert wait_for(lambda: commit.done, 30), "the commit still waits"
        assert commit.error is None
        assert sync_setting(sb, CONTENT) == ""
        assert sb.query(-1, "SELECT status FROM gp_segment_configuration WHERE dbid = %s",
                        (mirror_dbid(sb, CONTENT),))[0][0] == "u"

        # Second run: nothing to do, the risk is still reported.
        again = sync(sb, state="off", content=CONTENT)
        assert again["changed"] is False and again["durability_risk"] is True
        assert entry(again)["verdict"] == "keep"

        # On is refused while the mirror is gone.
        refused = sync(sb, state="on", content=CONTENT)
        assert refused["changed"] is False and entry(refused)["verdict"] == "refuse"

        # The mirror comes back (FTS still paused): on restores '*'.
        sb.start_node(CONTENT, role="m")
        assert wait_for(lambda: streaming(sb, CONTENT), 60)
        on = wait_for(lambda: (lambda r: r if entry(r)["verdict"] == "switch_on" else None)(
            sync(sb, check=True, state="on", content=CONTENT)), 30, 1)
        assert on and on["changed"] is False and sync_setting(sb, CONTENT) == ""
        assert [s["action"] for s in on["plan"]["steps"]] == ["sync_on"]
        restored = sync_play(sb, state="on", content=CONTENT)
        assert restored["changed"] is True and restored["durability_risk"] is False
        assert (entry(restored)["before"]["setting"], entry(restored)["after"]["setting"]) == ("", "*")
        assert sync(sb, state="on", content=CONTENT)["changed"] is False


def test_streaming_mirror_is_never_switched_off_without_force(sb):
    result = sync(sb, state="off")
    assert result["changed"] is False and result["durability_risk"] is False
    assert {p["verdict"] for p in result["primaries"]} == {"refuse"}
    assert all(p["replication"]["state"] == "streaming" for p in result["primaries"])
    assert sync_setting(sb, CONTENT) == "*"
    # auto on a healthy cluster: nothing.
    assert sync(sb, state="auto")["changed"] is False
    # force, in check mode only: it would switch off, and nothing changes.
    forced = sync(sb, check=True, state="off", force=True, content=CONTENT)
    assert forced["changed"] is False and entry(forced)["verdict"] == "switch_off"
    assert [s["reason"] for s in forced["plan"]["steps"]] == ["forced_by_operator"]
    assert "forced" in entry(forced)["reason"]
    assert sync_setting(sb, CONTENT) == "*"


@pytest.mark.parametrize("args,needle", [
    (dict(state="off", content=-1), "content: -1 is the coordinator"),
    (dict(state="off", content=99), "content: no segment with content 99"),
    (dict(state="on", force=True), "force applies to state=off only"),
    (dict(state="off", max_lag_bytes=-1), "max_lag_bytes"),
    (dict(state="off", content=0, dbid=2), "mutually exclusive"),
    (dict(force=True), "one of the following is required"),
])
def test_bad_input(sb, args, needle):
    result = sync(sb, **args)
    assert result.get("failed") and needle in result["msg"]


def test_dbid_of_a_mirror_is_refused(sb):
    result = sync(sb, state="off", dbid=mirror_dbid(sb, CONTENT))
    assert result.get("failed") and "is not the acting primary" in result["msg"]


def test_stalled_standby_walsender_is_detected_and_ended(sb):
    port = sb.base_port + 1 if sb.base_port + 1 not in [n["port"] for n in sb.state()["nodes"]] else sb.base_port + 99
    with standby_coordinator(sb, port) as standby:
        # Connected and streaming, nothing waits: not stalled, left alone.
        calm = sync(sb, standby_walsender="terminate", stall_threshold=1)
        assert calm["changed"] is False and calm["standby_walsender"]["stalled"] is False
        pid, _ = standby.walsender()
        standby.stall()
        commit = coordinator_commit(sb)
        assert wait_for(lambda: syncrep_waiter_pids(sb, -1), 15), "no commit waits on the coordinator"

        checked = sync(sb, check=True, standby_walsender="terminate", stall_threshold=2)
        sw = checked["standby_walsender"]
        assert sw["stalled"] is True and sw["pid"] == pid and sw["terminated"] is False
        assert sw["coordinator_waiters"] and checked["changed"] is True
        assert standby.walsender()[0] == pid

        ended = sync(sb, standby_walsender="terminate", stall_threshold=2)
        sw = ended["standby_walsender"]
        assert ended["changed"] is True and sw["terminated"] is True and sw["pid"] == pid
        assert wait_for(lambda: (standby.walsender() or (None,))[0] != pid, 10)
        # The standby recovers and reconnects: the commit returns.
        standby.unstall()
        assert wait_for(lambda: not commit.is_alive(), 60), "the coordinator commit still waits"
        assert "error" not in commit.box
        again = sync(sb, standby_walsender="terminate", stall_threshold=1)
        assert again["changed"] is False and again["standby_walsender"]["stalled"] is False



@pytest.fixture(scope="module")
def gp6_sandbox(sandbox):
    """A second, small sandbox whose primaries keep synchronous_standby_names in
    Greenplum 6's gp_replication.conf (the sandbox's gp6 mode)."""
    with extra_sandbox(sandbox, 60, "gpe-gp6-", segments=1, mirrors=True, replication_conf="gp6") as sb6:
        ensure_table(sb6)
        yield sb6


def test_gp6_gp_replication_conf(gp6_sandbox):
    sb = gp6_sandbox
    conf = os.path.join(sb.datadir(CONTENT), "gp_replication.conf")
    with mirror_lost(sb, CONTENT):
        commit = Commit(sb, CONTENT).start_waiting()
        done = sync(sb, state="off", content=CONTENT)
        assert not done.get("failed"), done.get("msg")
        e = entry(done)
        assert done["changed"] is True and e["method"] == "gp_replication_conf"
        assert e["before"]["sourcefile"] == conf and e["after"]["setting"] == ""
        assert done["executed_queries"][0].endswith("write synchronous_standby_names = '' to %s" % conf)
        with open(conf) as f:
            assert "synchronous_standby_names = ''" in f.read()
        assert wait_for(lambda: commit.done, 30) and commit.error is None
        assert sync(sb, state="off", content=CONTENT)["changed"] is False

        sb.start_node(CONTENT, role="m")
        assert wait_for(lambda: streaming(sb, CONTENT), 60)
        on = wait_for(lambda: (lambda r: r if r["changed"] else None)(
            sync(sb, state="on", content=CONTENT)), 30, 1)
        assert on and entry(on)["after"]["setting"] == "*"
        with open(conf) as f:
            assert "synchronous_standby_names = '*'" in f.read()


def test_double_fault_is_for_a_person(sb):
    """Primary and mirror of content 1 down, FTS paused (the catalog still says u/s):
    reported as needing a person, nothing done anywhere."""
    with mirror_lost(sb, 1):
        sb.stop_node(1, role="p")
        try:
            result = sync(sb, state="off", only_waiting=False)
            assert not result.get("failed"), result.get("msg")
            assert result["changed"] is False and result["executed_queries"] == []
            assert [n["content"] for n in result["needs_person"]] == [1]
            assert "needs a person: double fault on content 1" in str(result["warnings"])
            forced = sync(sb, state="off", content=1, force=True)
            assert forced["changed"] is False and entry(forced, 1)["verdict"] == "needs_person"
            e = entry(result, 1)
            assert e["reachable"] is False and e["mirror_alive"] is False
            assert e["verdict"] == "needs_person" and "double fault" in e["reason"]
            assert "1" in result["unreachable_nodes"]
            assert all(sync_setting(sb, c) == "*" for c in (0, 2))
        finally:
            sb.start_node(1, role="p")


def test_primary_down_mirror_alive_is_left_to_fts(sb):
    sb.fts.pause()
    sb.stop_node(1, role="p")
    try:
        result = sync(sb, state="off", content=1, force=True)
        e = entry(result, 1)
        assert result["changed"] is False and e["mirror_alive"] is True
        assert e["verdict"] == "refuse" and "FTS fails over" in e["reason"]
    finally:
        sb.start_node(1, role="p")
        sb.fts.resume()
        assert wait_for(lambda: streaming(sb, 1), 60)
