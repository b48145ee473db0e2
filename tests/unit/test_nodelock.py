"""The sl_nodelock verdict (plugins/module_utils/nodelock.py judge_row), over every fact."""
import datetime

import pytest

from ansible_collections.gpops.greenplum.plugins.module_utils import nodelock

T0 = datetime.datetime(2026, 11, 21, 7, 0, tzinfo=datetime.timezone.utc)


def _row(written=T0, pid=4242):
    return nodelock.NodeLock(nl_nodeid=1, nl_conncnt=0, nl_backendpid=pid, row_xmin="745", row_written=written)


def _backend(**over):
    backend = dict(pid=4242, datname="app", usename="slony", application_name="slon.local_listen",
                   backend_start=T0 - datetime.timedelta(seconds=1), backend_type="client backend",
                   state="idle", client_addr="10.0.0.5", client_port=5000, same_database=True)
    backend.update(over)
    return backend


def _failed(evidence):
    return {c["check"] for c in evidence if c["passed"] is False}


def test_slon_backend_that_wrote_the_row_is_live():
    verdict, evidence = nodelock.judge_row(_row(), _backend(), "slony")
    assert verdict == nodelock.LIVE and not _failed(evidence)


def test_no_backend_is_stale_even_if_kill_0_finds_a_process():
    verdict, evidence = nodelock.judge_row(_row(), None, "slony")
    assert verdict == nodelock.STALE and _failed(evidence) == {"backend_exists"}


@pytest.mark.parametrize("over,failed", [
    (dict(application_name="psql"), {"application_name"}),
    (dict(application_name=None), {"application_name"}),
    (dict(usename="report"), {"slony_user"}),
    (dict(same_database=False, datname="other"), {"same_database"}),
    (dict(backend_type="autovacuum worker", application_name=""), {"client_backend", "application_name"}),
    (dict(backend_start=T0 + datetime.timedelta(seconds=5)), {"started_before_row"}),
])
def test_a_reused_pid_is_stale_and_the_failed_fact_is_named(over, failed):
    verdict, evidence = nodelock.judge_row(_row(), _backend(**over), "slony")
    assert verdict == nodelock.STALE
    assert _failed(evidence) == failed


def test_unknown_row_time_is_stated_not_taken_as_proof():
    verdict, evidence = nodelock.judge_row(_row(written=None), _backend(), "slony")
    assert verdict == nodelock.LIVE
    [time_check] = [c for c in evidence if c["check"] == "started_before_row"]
    assert time_check["passed"] is None and "unknown" in time_check["detail"]


def test_invisible_backend_start_is_not_proof():
    verdict, _ = nodelock.judge_row(_row(), _backend(backend_start=None), "slony")
    assert verdict == nodelock.LIVE


def test_application_name_check_can_be_turned_off():
    verdict, evidence = nodelock.judge_row(_row(), _backend(application_name="psql"), "slony", None)
    assert verdict == nodelock.LIVE
    assert "application_name" not in {c["check"] for c in evidence}


def test_schema_of_cluster_name():
    assert nodelock.schema_of("replication") == "_replication"
    assert nodelock.SlonyCluster("_replication", "slony").name == "replication"
