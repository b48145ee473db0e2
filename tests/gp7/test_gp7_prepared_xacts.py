"""Prepared transactions on real Greenplum 7, made with the fault injector
(gpcontrib/gp_inject_fault; the faults are those of src/backend/cdb/cdbtm.c and
src/backend/access/transam/twophase.c):

- an orphan left by a failed 'Abort' broadcast: reported at once (info), rolled back
  by gp_prepared_xacts once the segment accepts it, a second run changes nothing; while
  the segment refuses, resolve_hang.yml records the failed remedy, still writes its
  summary and report with the cluster's state after, and fails at its end;
- "Retry Commit Prepared": the segments' gp_distributed_log records the commit (the
  coordinator's copy is empty on Greenplum 7) and nothing is rolled back;
- the plan made, then the orphan finished by someone else before
  the executor runs: the step's guard fails and nothing is done.
"""
import glob
import json
import os
import subprocess
import sys

import pytest

from ansible_collections.gpops.greenplum.plugins.module_utils.act import prepared_xact_finisher as finisher_mod
from ansible_collections.gpops.greenplum.plugins.module_utils.act.executor import execute
from ansible_collections.gpops.greenplum.plugins.module_utils.collect import snapshot, topology
from ansible_collections.gpops.greenplum.plugins.module_utils.plan import prepared_xacts as prepared
from gpcluster import wait_for
from playbook import ROOT, run_task, run_tasks

pytestmark = pytest.mark.gp7

FINISH_PREPARED = "finish_prepared_start_of_function"  # twophase.c: COMMIT/ROLLBACK PREPARED on a QE


def prepared_on(gp, content):
    return gp.query("SELECT gid FROM pg_catalog.pg_prepared_xacts", content=content)


@pytest.fixture
def table(gp):
    gp.query("DROP TABLE IF EXISTS px; CREATE TABLE px (id int) DISTRIBUTED BY (id)")
    # Greenplum's dtx recovery would abort the orphan by itself (every
    # gp_dtx_recovery_interval): hold its orphan check back so the collection is tested.
    gp.inject_fault("before_orphaned_check", "skip", -1)
    yield "px"
    gp.inject_fault("before_orphaned_check", "reset", -1)


def orphan_after_failed_abort(gp):
    """PREPARE reaches every segment, the coordinator then errors (dtm_broadcast_prepare),
    and its 'Abort' broadcast fails on content 0 (ROLLBACK PREPARED refused): Greenplum
    logs "unable to complete 'Abort' broadcast" and the transaction stays prepared there."""
    dbid0 = gp.node(0)["dbid"]
    gp.query("SELECT gp_inject_fault_infinite(%s, 'error', %s)", (FINISH_PREPARED, dbid0))
    gp.inject_fault("dtm_broadcast_prepare", "error", -1)
    s = gp.session("px_writer")
    s.sql("SET dtx_phase2_retry_second = 1")
    s.sql("BEGIN")
    s.sql("INSERT INTO px SELECT generate_series(1, 30)")
    gxid = s.gxid()
    with pytest.raises(Exception, match="dtm_broadcast_prepare"):
        s.sql("COMMIT")
    assert [r[0] for r in prepared_on(gp, 0)] == [str(gxid)]
    assert prepared_on(gp, 1) == [] and prepared_on(gp, 2) == []
    return gxid


def finding(info, cls):
    return [f for f in info["findings"] if f["class"] == cls]


def test_orphan_after_failed_abort_broadcast(gp, table, tmp_path):
    gxid = orphan_after_failed_abort(gp)
    env = gp.env()

    # Reported at once, as information (Greenplum's own orphan rule needs 120 s).
    wait_for(lambda: False, timeout=5.5)  # older than the snapshot-timing floor (5 s)
    info = run_task("gp_hang_info", {}, env=env)
    assert not info.get("failed"), info.get("msg")
    orphans = finding(info, "orphaned_prepared_xact")
    assert [(f["severity"], f["evidence"]["gxid"]) for f in orphans] == [("info", gxid)]
    assert [p["content"] for p in orphans[0]["evidence"]["prepared"]] == [0]

    # The segment still refuses ROLLBACK PREPARED: the remedy fails, the play records it,
    # reports the state after, and fails at its end.
    reports = tmp_path / "reports"
    proc = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", "localhost,",
         "-c", "local", "-e", "gp_hosts=localhost", "-e", "ansible_python_interpreter=" + sys.executable,
         "-e", "gp_resolve_orphaned_prepared=true", "-e", "gp_stale_locks_prepared_min_age=0",
         "-e", "gp_report_dir=%s" % reports, "playbooks/resolve_hang.yml"],
        cwd=ROOT, env=dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"), **env),
        capture_output=True, text=True, timeout=300)
    out = proc.stdout
    assert proc.returncode != 0, out[-3000:]
    assert "What failed:" in out and "ROLLBACK PREPARED '%d' failed" % gxid in out, out[-3000:]
    assert "after the actions: " in out and "What is left:" in out, out[-3000:]
    report = json.load(open(sorted(glob.glob(str(reports / "*.json")))[-1]))
    assert any("FAILED:" in a["action"] and str(gxid) in a["action"] for a in report["actions"]), report["actions"]
    assert report.get("after"), "the report has no state after the actions"
    assert [r[0] for r in prepared_on(gp, 0)] == [str(gxid)]

    # Once the segment accepts it: rolled back; a second run changes nothing.
    gp.query("SELECT gp_inject_fault(%s, 'reset', %s)", (FINISH_PREPARED, gp.node(0)["dbid"]))
    check, done, again = run_tasks([
        ("gp_prepared_xacts", {"state": "absent", "min_age": 0}, True),
        ("gp_prepared_xacts", {"state": "absent", "min_age": 0}),
        ("gp_prepared_xacts", {"state": "absent", "min_age": 0})], env=env)
    assert check["changed"] is True and check["rolled_back"][0]["gid"] == str(gxid)
    assert not done.get("failed"), done.get("msg")
    assert done["changed"] is True and [r["gid"] for r in done["rolled_back"]] == [str(gxid)]
    assert prepared_on(gp, 0) == []
    assert again["changed"] is False and again["prepared_xacts"] == []
    assert gp.query("SELECT count(*) FROM px")[0][0] == 0  # the aborted rows never appear


def test_retry_commit_prepared_is_committed_not_orphaned(gp, table):
    """COMMIT PREPARED refused on content 0: the QD retries (dtx_phase2_retry_second); the
    other segments committed, and their gp_distributed_log says so."""
    dbid0 = gp.node(0)["dbid"]
    gp.query("SELECT gp_inject_fault_infinite(%s, 'error', %s)", (FINISH_PREPARED, dbid0))
    s = gp.session("px_committer")
    s.sql("SET dtx_phase2_retry_second = 600")
    s.sql("BEGIN")
    s.sql("INSERT INTO px SELECT generate_series(1, 30)")
    gxid = s.gxid()
    s.send("COMMIT")
    assert wait_for(lambda: [r[0] for r in prepared_on(gp, 0)] == [str(gxid)]
                    and prepared_on(gp, 1) == [], timeout=30)
    assert s.waiting(0.5)

    result = run_task("gp_prepared_xacts", {"state": "absent", "min_age": 0}, env=gp.env())
    assert not result.get("failed"), result.get("msg")
    assert result["changed"] is False and result["rolled_back"] == []
    [decision] = result["prepared_xacts"]
    assert decision["gxid"] == gxid and decision["verdict"] == "in_progress"
    assert "gp_distributed_log on the segments records gxid %d as committed" % gxid in decision["evidence"]

    gp.query("SELECT gp_inject_fault(%s, 'reset', %s)", (FINISH_PREPARED, dbid0))
    assert s.result(30)[0] == "ok"
    assert gp.query("SELECT count(*) FROM px")[0][0] == 30


def _plan_now(gp):
    """What gp_prepared_xacts state=absent plans, made here so a test can act between the plan
    and its execution: (plan, finisher, coordinator connection)."""
    params = gp.login()
    snap = snapshot.take_snapshot(params, include=("locks", "edges", "dist_xacts", "prepared_xacts"))
    conn, server, segments = topology.open_coordinator(params)
    committed, why = finisher_mod.read_committed(conn, {str(px.gxid) for px in snap.prepared_xacts if px.gxid})
    decisions = prepared.classify(snap, 0, committed, why)
    plan = prepared.plan(snap, decisions, 0, committed, why)
    nodes = {n.content: n for n in topology.primaries(segments)}
    return plan, finisher_mod.Finisher(params, server, nodes, conn), conn


def test_finished_by_someone_else_between_plan_and_act_is_left_alone(gp, table):
    """The orphan is rolled back by someone else after the plan: the step's guard fails (gid
    gone) and nothing runs. (A gid prepared again with another prepared time cannot be made on
    Greenplum 7, which refuses PREPARE TRANSACTION in utility mode: the sandbox test
    tests/integration/test_gp_prepared_xacts.py covers it.)"""
    gxid = orphan_after_failed_abort(gp)
    gp.query("SELECT gp_inject_fault(%s, 'reset', %s)", (FINISH_PREPARED, gp.node(0)["dbid"]))
    plan, finisher, conn = _plan_now(gp)
    with conn:
        [step] = plan.steps
        assert (step.action, step.reason.value, step.guard.facts["gid"]) == (
            "rollback_prepared", "orphaned_prepared_xact", str(gxid))
        gp.query("ROLLBACK PREPARED '%d'" % gxid, content=0)  # someone else finishes it
        [gone] = execute(plan.steps, finisher.runners())
        assert gone.result == "skipped" and gone.reason.value == "guard_prepared_xact_gone", gone.detail
        assert gone.statement == ""
    assert prepared_on(gp, 0) == []


def test_the_plan_runs_once_and_a_second_execution_is_a_failed_guard(gp, table):
    """Executed as planned: done, ROLLBACK PREPARED ran in utility mode on content 0; the same
    plan executed again finds the gid gone and does nothing."""
    gxid = orphan_after_failed_abort(gp)
    gp.query("SELECT gp_inject_fault(%s, 'reset', %s)", (FINISH_PREPARED, gp.node(0)["dbid"]))
    plan, finisher, conn = _plan_now(gp)
    with conn:
        assert [o.result for o in execute(plan.steps, finisher.runners(), check_mode=True)] == ["planned"]
        assert [r[0] for r in prepared_on(gp, 0)] == [str(gxid)]
        [done] = execute(plan.steps, finisher.runners())
        assert done.result == "done" and done.statement == "ROLLBACK PREPARED '%d'" % gxid
        assert prepared_on(gp, 0) == []
        [again] = execute(plan.steps, finisher.runners())
        assert again.result == "skipped" and again.reason.value == "guard_prepared_xact_gone"
