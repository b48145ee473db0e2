"""gp_prepared_xacts on the sandbox: a transaction left PREPARED on one segment (its
distributed transaction unknown to the coordinator) is found, shown blocking a waiter,
and rolled back; one whose distributed transaction the coordinator still has is left
alone."""
import pytest
from gpsandbox import scenarios

from ansible_collections.gpops.greenplum.plugins.module_utils.act import prepared_xact_finisher as finisher_mod
from ansible_collections.gpops.greenplum.plugins.module_utils.act.executor import execute
from ansible_collections.gpops.greenplum.plugins.module_utils.collect import snapshot, topology
from ansible_collections.gpops.greenplum.plugins.module_utils.plan import prepared_xacts as prepared

from stale_fixtures import run_module, run_role

pytestmark = pytest.mark.integration


def _args(sb, **extra):
    env = sb.coordinator_env()
    args = dict(login_host=env["PGHOST"], login_port=int(env["PGPORT"]), login_user=env["PGUSER"],
                login_password=env["PGPASSWORD"], login_db=env["PGDATABASE"])
    args.update(extra)
    return args


def _prepared(sb, content):
    return [row[0] for row in sb.query(content, "SELECT gid FROM pg_prepared_xacts", utility=True)]


def _ok(result):
    assert not result.get("failed"), result.get("msg")
    return result


def test_orphan_is_found_blocking_and_rolled_back(clean_cluster):
    sb = clean_cluster
    with scenarios.prepared_xact(sb, content=0) as scenario:
        gid = scenario.gid
        waiter = scenario.sessions["waiter"]
        report = _ok(run_module("gp_prepared_xacts", _args(sb, min_age=0)))
        [found] = [d for d in report["prepared_xacts"] if d["gid"] == gid]
        assert found["content"] == 0 and found["gxid"] == int(gid) and found["prepared_on"] == [0]
        assert found["verdict"] == "orphaned", found
        assert [w["mppsessionid"] for w in found["waiters"]] == [waiter["gp_session_id"]]
        assert report["changed"] is False and report["rolled_back"] == []

        young = _ok(run_module("gp_prepared_xacts", _args(sb, min_age=3600, state="absent")))
        assert young["changed"] is False and young["prepared_xacts"][0]["verdict"] == "too_young"

        preview = _ok(run_module("gp_prepared_xacts", _args(sb, min_age=0, state="absent"), check=True))
        assert preview["changed"] is True and preview["executed_queries"] == ["ROLLBACK PREPARED '%s'" % gid]
        assert _prepared(sb, 0) == [gid], "check mode rolled back"

        result = _ok(run_module("gp_prepared_xacts", _args(sb, min_age=0, state="absent")))
        assert result["changed"] is True
        assert result["rolled_back"] == [{"content": 0, "gid": gid, "database": "postgres"}]
        assert result["executed_queries"] == preview["executed_queries"]
        assert [s["guard"] for s in result["plan"]["steps"]] == [s["guard"] for s in preview["plan"]["steps"]]
        assert [(o["action"], o["reason"], o["result"]) for o in result["outcomes"]] == [
            ("rollback_prepared", "orphaned_prepared_xact", "done")]
        assert _prepared(sb, 0) == []
        outcome = scenario.wait(30)["waiter"]
        assert outcome["ok"] is True, outcome  # the waiter's UPDATE went through

        again = _ok(run_module("gp_prepared_xacts", _args(sb, min_age=0, state="absent")))
        assert again["changed"] is False and again["prepared_xacts"] == []


def test_prepared_xact_of_a_live_distributed_transaction_is_left_alone(clean_cluster):
    sb = clean_cluster
    sb.create_table("gpops_px_live", "id int, val int", distkey="id", rows=[(1, 1)])
    with sb.connect(-1) as qd, sb.connect(1, utility=True) as segment:
        qd.execute("BEGIN")
        qd.execute("LOCK TABLE gpops_px_live IN ACCESS SHARE MODE")  # dispatched: the QD gets a gxid
        gxid = qd.execute("SELECT gp_distributed_xid()").fetchone()[0]
        assert gxid and int(gxid) > 0
        segment.execute("BEGIN")
        segment.execute("SELECT txid_current()")
        segment.execute("PREPARE TRANSACTION '%d'" % int(gxid))
        try:
            result = _ok(run_module("gp_prepared_xacts", _args(sb, min_age=0, state="absent")))
            [found] = [d for d in result["prepared_xacts"] if d["gid"] == str(gxid)]
            assert found["verdict"] == "in_progress" and "gp_distributed_xacts" in found["why"]
            assert found["reason"] == "coordinator_has_gxid"
            assert [r["reason"] for r in result["plan"]["refusals"] if r["facts"]["gid"] == str(gxid)] == [
                "coordinator_has_gxid"]
            assert result["changed"] is False and result["rolled_back"] == []
            assert _prepared(sb, 1) == [str(gxid)]
        finally:
            segment.execute("ROLLBACK PREPARED '%d'" % int(gxid))
            qd.execute("ROLLBACK")


def test_bad_input_and_unreachable_coordinator(clean_cluster):
    bad = run_module("gp_prepared_xacts", _args(clean_cluster, min_age=-1))
    assert bad["failed"] and "min_age" in bad["msg"]
    down = run_module("gp_prepared_xacts", _args(clean_cluster, login_port=1, connect_timeout=2))
    assert down["failed"] and "cannot reach" in down["msg"]


def test_role_gp_stale_locks_resolves_only_when_asked(clean_cluster):
    sb = clean_cluster
    role_vars = {"gp_stale_locks_prepared_xacts": True, "gp_stale_locks_prepared_min_age": 0}
    with scenarios.prepared_xact(sb, content=0) as scenario:
        recap, out, facts = run_role("gp_stale_locks", role_vars, save="gp_stale_locks_result",
                                     env=sb.coordinator_env())
        assert recap.get("failed") == 0 and recap.get("changed") == 0, out
        assert [(d["gid"], d["verdict"]) for d in facts["prepared_xacts"]] == [(scenario.gid, "orphaned")]
        assert facts["rolled_back_prepared"] == [] and _prepared(sb, 0) == [scenario.gid]

        recap, out, facts = run_role("gp_stale_locks", dict(role_vars, gp_resolve_orphaned_prepared=True),
                                     save="gp_stale_locks_result", env=sb.coordinator_env())
        assert recap.get("failed") == 0 and recap.get("changed") == 1, out
        assert facts["rolled_back_prepared"] == [{"content": 0, "gid": scenario.gid, "database": "postgres"}]
        assert _prepared(sb, 0) == []
        assert scenario.wait(30)["waiter"]["ok"] is True


def test_gid_prepared_again_between_plan_and_act_is_left_alone(clean_cluster):
    """Planned: roll back the orphan. Before the executor runs, it is rolled back by someone
    else and a new transaction is prepared under the same gid (utility mode, which the sandbox
    allows and Greenplum 7 does not): its prepared time differs from the one judged, so the
    guard fails and the new transaction stays prepared."""
    sb = clean_cluster
    params = dict(_args(sb), connect_timeout=5, statement_timeout=10.0, ssl_mode="prefer")
    with scenarios.prepared_xact(sb, content=0) as scenario:
        gid = scenario.gid
        snap = snapshot.take_snapshot(params, include=("locks", "edges", "dist_xacts", "prepared_xacts"))
        conn, server, segments = topology.open_coordinator(params)
        with conn:
            committed, why = finisher_mod.read_committed(conn, {gid})
            plan = prepared.plan(snap, prepared.classify(snap, 0, committed, why), 0, committed, why)
            [step] = [s for s in plan.steps if s.guard.facts["gid"] == gid]
            finisher = finisher_mod.Finisher(params, server, {n.content: n for n in topology.primaries(segments)}, conn)
            with sb.connect(0, utility=True) as segment:
                segment.execute("ROLLBACK PREPARED '%s'" % gid)
                segment.execute("BEGIN")
                segment.execute("SELECT txid_current()")
                segment.execute("PREPARE TRANSACTION '%s'" % gid)
            try:
                [outcome] = execute([step], finisher.runners())
                assert outcome.result == "skipped", outcome.detail
                assert outcome.reason.value == "guard_prepared_xact_replaced", outcome.detail
                assert _prepared(sb, 0) == [gid]
            finally:
                with sb.connect(0, utility=True) as segment:
                    segment.execute("ROLLBACK PREPARED '%s'" % gid)
