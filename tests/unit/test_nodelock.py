"""The sl_nodelock verdict (plugins/module_utils/slony_nodelock.py judge_row), over every fact."""
import datetime

import pytest

from ansible_collections.gpops.greenplum.plugins.module_utils.plan import slony_nodelock

T0 = datetime.datetime(2026, 11, 21, 7, 0, tzinfo=datetime.timezone.utc)


def _row(written=T0, pid=4242):
    return slony_nodelock.NodeLock(nl_nodeid=1, nl_conncnt=0, nl_backendpid=pid, row_xmin="745", row_written=written)


def _backend(**over):
    backend = dict(pid=4242, datname="app", usename="slony", application_name="slon.local_listen",
                   backend_start=T0 - datetime.timedelta(seconds=1), backend_type="client backend",
                   state="idle", client_addr="10.0.0.5", client_port=5000, same_database=True)
    backend.update(over)
    return backend


def _failed(evidence):
    return {c["check"] for c in evidence if c["passed"] is False}


def test_slon_backend_that_wrote_the_row_is_live():
    verdict, evidence = slony_nodelock.judge_row(_row(), _backend(), "slony")
    assert verdict == slony_nodelock.LIVE and not _failed(evidence)


def test_no_backend_is_stale_even_if_kill_0_finds_a_process():
    verdict, evidence = slony_nodelock.judge_row(_row(), None, "slony")
    assert verdict == slony_nodelock.STALE and _failed(evidence) == {"backend_exists"}


@pytest.mark.parametrize("over,failed", [
    (dict(application_name="psql"), {"application_name", "slon_thread"}),
    (dict(application_name=None), {"application_name", "slon_thread"}),
    (dict(usename="report"), {"slony_user"}),
    (dict(same_database=False, datname="other"), {"same_database"}),
    (dict(backend_type="autovacuum worker", application_name=""),
     {"client_backend", "application_name", "slon_thread"}),
    (dict(application_name="slon.origin_1_provider_1"), {"slon_thread"}),
    (dict(backend_start=T0 + datetime.timedelta(seconds=5)), {"started_before_row"}),
])
def test_a_reused_pid_is_stale_and_the_failed_fact_is_named(over, failed):
    verdict, evidence = slony_nodelock.judge_row(_row(), _backend(**over), "slony")
    assert verdict == slony_nodelock.STALE
    assert _failed(evidence) == failed


def test_unknown_row_time_is_stated_not_taken_as_proof():
    verdict, evidence = slony_nodelock.judge_row(_row(written=None), _backend(), "slony")
    assert verdict == slony_nodelock.LIVE
    [time_check] = [c for c in evidence if c["check"] == "started_before_row"]
    assert time_check["passed"] is None and "unknown" in time_check["detail"]


def test_invisible_backend_start_is_not_proof():
    verdict, _ = slony_nodelock.judge_row(_row(), _backend(backend_start=None), "slony")
    assert verdict == slony_nodelock.LIVE


def test_application_name_check_can_be_turned_off():
    verdict, evidence = slony_nodelock.judge_row(_row(), _backend(application_name="psql"), "slony", None)
    assert verdict == slony_nodelock.LIVE
    assert "application_name" not in {c["check"] for c in evidence}


def _row2(nodeid, conncnt, pid=4242):
    return slony_nodelock.NodeLock(nl_nodeid=nodeid, nl_conncnt=conncnt, nl_backendpid=pid, row_xmin="9",
                             row_written=None)


def test_backend_of_another_nodes_slon_does_not_own_a_conncnt_0_row():
    """Node 1's stale row names a backend of node 2's slon, which backs node 2's row (2, 1)."""
    theirs = _backend(application_name="slon.node_1_listen")
    verdict, evidence = slony_nodelock.judge_row(_row2(1, 0), theirs, "slony", others=[_row2(2, 1)])
    assert verdict == slony_nodelock.STALE and _failed(evidence) == {"slon_thread", "one_row_per_backend"}
    verdict, evidence = slony_nodelock.judge_row(_row2(2, 1), theirs, "slony", others=[_row2(1, 0)])
    assert verdict == slony_nodelock.LIVE, evidence
    # The local listen thread writes only conncnt 0 rows.
    verdict, evidence = slony_nodelock.judge_row(_row2(2, 1), _backend(), "slony")
    assert verdict == slony_nodelock.STALE and _failed(evidence) == {"slon_thread"}


def test_two_rows_with_one_pid_and_no_application_name_check_decide_nothing():
    verdict, evidence = slony_nodelock.judge_row(_row2(1, 0), _backend(), "slony", None, others=[_row2(2, 1)])
    assert verdict == slony_nodelock.LIVE
    assert [c["passed"] for c in evidence if c["check"] == "one_row_per_backend"] == [None]


def test_schema_of_cluster_name():
    assert slony_nodelock.schema_of("replication") == "_replication"
    assert slony_nodelock.SlonyCluster("_replication", "slony").name == "replication"


def test_plan_guards_a_stale_row_by_key_values_and_backend():
    cluster = slony_nodelock.SlonyCluster("_replication", "slony")
    stale_backend = _backend(application_name="psql")
    live_row = _row2(2, 1, pid=77)
    assessed = [(cluster, _row(), slony_nodelock.STALE, slony_nodelock.judge_row(_row(), stale_backend, "slony")[1],
                 stale_backend),
                (cluster, _row(pid=99), slony_nodelock.STALE, [], None),
                (cluster, live_row, slony_nodelock.LIVE, [], _backend(pid=77))]
    plan = slony_nodelock.plan(assessed)
    first, second = plan.steps
    assert first.action == "delete_row" and first.reason.value == "stale_nodelock_row"
    assert first.guard.kind == "row" and first.guard.facts == {
        "schema": "_replication", "nl_nodeid": 1, "nl_conncnt": 0, "nl_backendpid": 4242, "row_xmin": "745",
        "backend": {"backend_start": stale_backend["backend_start"], "datname": "app", "usename": "slony",
                    "application_name": "psql", "backend_type": "client backend"}}
    assert "does not match" in first.facts["detail"]
    assert second.guard.facts["backend"] is None
    assert [(r.target, r.reason.value) for r in plan.refusals] == [("_replication.sl_nodelock node 2 conn 1",
                                                                    "not_stale")]
