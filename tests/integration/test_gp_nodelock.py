"""gp_nodelock with real Slony-I (Debian's slonik and slon) on a throwaway PostgreSQL 15.

A slon killed with -9 leaves its sl_nodelock row; when the row's PID then belongs to
another live process (an unrelated backend, or any process of the server's OS user),
Slony's own kill -0 cleanup keeps it and slon cannot start. The module proves such a
row stale by backend identity, removes it, and slon starts; a live slon's row stays.
"""

import psycopg
import pytest

from ansible_collections.gpops.greenplum.plugins.module_utils.act.executor import execute
from ansible_collections.gpops.greenplum.plugins.module_utils.act.nodelock_row_deleter import RowDeleter
from ansible_collections.gpops.greenplum.plugins.module_utils.collect.connection import connect
from ansible_collections.gpops.greenplum.plugins.module_utils.plan import slony_nodelock

from stale_fixtures import (  # noqa: F401 (fixtures)
    OS_USER, Slony, pg_factory, run_module, slony_factory, spawn, wait_for)

pytestmark = pytest.mark.integration

DUPLICATE = 'duplicate key value violates unique constraint "sl_nodelock-pkey"'
ROW_SQL = Slony.ROW_SQL


@pytest.fixture
def slony(slony_factory):
    return slony_factory()


def _start(slony):
    return slony.start_slon(1)


def _slon_backend(slony):
    """Wait until slon for node 1 holds its lock row; return the row's PID."""
    sql = ("select l.nl_backendpid from _gpops.sl_nodelock l join pg_stat_activity a on a.pid = l.nl_backendpid"
           " where l.nl_nodeid = 1 and l.nl_conncnt = 0 and a.application_name = 'slon.local_listen'")
    pid = wait_for(lambda: slony.server.psql(sql, "db1"))
    assert pid, "slon did not register its node lock"
    return int(pid)


def _args(slony, **extra):
    args = dict(slony.server.login("db1"), cluster_name="gpops")
    args.update(extra)
    return args


def _slon_fails_with_duplicate_key(slony):
    proc = _start(slony)
    proc.wait(timeout=60)
    assert DUPLICATE in slony.slon_output(proc)


def _remove_and_restart(slony, pid_in_row):
    preview = run_module("gp_nodelock", _args(slony, state="absent"), check=True, diff=True)
    assert not preview.get("failed"), preview.get("msg")
    assert preview["changed"] is True
    [row] = preview["rows"]
    assert row["verdict"] == "stale" and row["nl_backendpid"] == pid_in_row
    [statement] = preview["executed_queries"]
    assert statement.startswith('DELETE FROM "_gpops"."sl_nodelock" l WHERE l.nl_nodeid = 1 AND l.nl_conncnt = 0'
                                ' AND l.nl_backendpid = %d AND l.xmin::text = ' % pid_in_row), statement
    [step] = preview["plan"]["steps"]
    assert (step["action"], step["reason"], step["guard"]["kind"]) == ("delete_row", "stale_nodelock_row", "row")
    assert [o["result"] for o in preview["outcomes"]] == ["planned"]
    assert preview["diff"]["after"] == "\n"
    assert slony.server.psql(ROW_SQL, "db1") == str(pid_in_row), "check mode deleted the row"

    result = run_module("gp_nodelock", _args(slony, state="absent"))
    assert result["changed"] is True
    assert result["removed"] == [{"schema": "_gpops", "nl_nodeid": 1, "nl_conncnt": 0, "nl_backendpid": pid_in_row}]
    assert result["executed_queries"] == preview["executed_queries"]
    assert result["rows"][0]["removed"] is True and "deleted" in result["actions"][0]
    assert [(o["result"], o["guard_failed"]) for o in result["outcomes"]] == [("done", None)]
    assert result["rows"][0]["reason"] == "stale_nodelock_row"
    assert slony.server.psql(ROW_SQL, "db1") == ""
    again = run_module("gp_nodelock", _args(slony, state="absent"))
    assert again["changed"] is False and again["rows"] == []

    _start(slony)
    assert _slon_backend(slony) != pid_in_row


def test_live_slon_row_is_never_removed(slony):
    proc = _start(slony)
    backend = _slon_backend(slony)
    for check in (True, False):
        result = run_module("gp_nodelock", _args(slony, state="absent"), check=check)
        assert result["changed"] is False and result["removed"] == []
        [row] = result["rows"]
        assert row["verdict"] == "live", row["evidence"]
        assert row["backend"]["application_name"] == "slon.local_listen"
        assert {c["check"]: c["passed"] for c in row["evidence"]}["started_before_row"] is None
    assert slony.server.psql(ROW_SQL, "db1") == str(backend)
    assert proc.poll() is None


def test_row_naming_an_unrelated_backend_is_removed_and_slon_starts(slony):
    slony.crash(_start(slony), _slon_backend(slony))
    with psycopg.connect(slony.server.conninfo("db1") + " application_name=reporting", autocommit=True) as other:
        reused = other.info.backend_pid
        slony.server.psql("update _gpops.sl_nodelock set nl_backendpid = %d" % reused, "db1")
        _slon_fails_with_duplicate_key(slony)

        report = run_module("gp_nodelock", _args(slony))
        [row] = report["rows"]
        assert row["verdict"] == "stale" and row["backend"]["application_name"] == "reporting"
        failed = {c["check"] for c in row["evidence"] if c["passed"] is False}
        assert failed == {"application_name", "slon_thread"}
        _remove_and_restart(slony, reused)
        assert other.execute("select 1").fetchone() == (1,), "the unrelated session was touched"


def test_row_naming_an_unrelated_os_process_is_removed_and_slon_starts(slony, spawn):
    slony.crash(_start(slony), _slon_backend(slony))
    sleeper = spawn(["sleep", "600"], user=OS_USER, group=OS_USER)
    slony.server.psql("update _gpops.sl_nodelock set nl_backendpid = %d" % sleeper.pid, "db1")
    _slon_fails_with_duplicate_key(slony)  # Slony's kill -0 finds the sleep
    _remove_and_restart(slony, sleeper.pid)
    assert sleeper.poll() is None


def test_discovers_every_cluster_and_rejects_a_missing_one(slony):
    _start(slony)
    _slon_backend(slony)
    found = run_module("gp_nodelock", slony.server.login("db1"))
    assert found["clusters"] == [{"cluster": "gpops", "schema": "_gpops", "owner": "postgres"}]
    assert [r["verdict"] for r in found["rows"]] == ["live"]

    missing = run_module("gp_nodelock", _args(slony, cluster_name="nope", state="absent"))
    assert missing["failed"] and "_nope" in missing["msg"] and "nothing removed" in missing["msg"]
    assert missing["removed"] == []
    none = run_module("gp_nodelock", dict(slony.server.login("postgres"), state="absent"))
    assert none["failed"] and "no Slony-I cluster schema" in none["msg"]


def test_wrong_slony_user_or_unreachable_server(slony):
    _start(slony)
    backend = _slon_backend(slony)
    result = run_module("gp_nodelock", _args(slony, slony_user="slony"))
    assert result["rows"][0]["verdict"] == "stale"  # reported only: state present
    assert slony.server.psql(ROW_SQL, "db1") == str(backend)
    down = run_module("gp_nodelock", dict(_args(slony), login_port=1, connect_timeout=2))
    assert down["failed"] and "cannot reach" in down["msg"]


def test_commit_timestamps_give_the_row_time(slony_factory):
    cluster = slony_factory(settings=["track_commit_timestamp = on"])
    cluster.start_slon(1)
    _slon_backend(cluster)
    [row] = run_module("gp_nodelock", _args(cluster))["rows"]
    assert row["row_written"] is not None
    checks = {c["check"]: c["passed"] for c in row["evidence"]}
    assert checks["started_before_row"] is True and row["verdict"] == "live"


def test_row_of_node_1_naming_a_backend_of_node_2s_slon_is_stale(slony):
    """Two nodes, each with its slon. Node 2's slon has a backend in node 1's database (its remote
    listener, slon.node_1_listen) that backs node 2's row there. Node 1's crashed slon left its
    conncnt-0 row, now naming that backend: Slony's kill -0 keeps it, slon 1 fails with the duplicate
    key. The row is stale (conncnt 0 is the local listen thread's; the backend backs node 2's row);
    node 2's row stays."""
    slon1 = _start(slony)
    own = _slon_backend(slony)
    slon2 = slony.start_slon(2)
    theirs_sql = ("select l.nl_backendpid from _gpops.sl_nodelock l join pg_stat_activity a on a.pid = l.nl_backendpid"
                  " where l.nl_nodeid = 2 and a.application_name = 'slon.node_1_listen'")
    theirs = wait_for(lambda: slony.server.psql(theirs_sql, "db1"), timeout=60)
    assert theirs, "slon 2 did not register its connection to node 1"
    theirs = int(theirs)

    # Both slons running: every row is live, nothing is removed.
    result = run_module("gp_nodelock", _args(slony, state="absent"))
    assert result["changed"] is False and result["removed"] == []
    assert {(r["nl_nodeid"], r["verdict"]) for r in result["rows"]} == {(1, "live"), (2, "live")}, result["rows"]

    slony.crash(slon1, own)
    slony.server.psql("update _gpops.sl_nodelock set nl_backendpid = %d where nl_nodeid = 1 and nl_conncnt = 0"
                      % theirs, "db1")
    _slon_fails_with_duplicate_key(slony)

    report = run_module("gp_nodelock", _args(slony))
    rows = {(r["nl_nodeid"], r["nl_conncnt"]): r for r in report["rows"]}
    stale = rows[(1, 0)]
    assert stale["verdict"] == "stale" and stale["backend"]["application_name"] == "slon.node_1_listen"
    assert {c["check"] for c in stale["evidence"] if c["passed"] is False} == {"slon_thread", "one_row_per_backend"}
    [node2] = [r for key, r in rows.items() if key[0] == 2]
    assert node2["verdict"] == "live" and node2["nl_backendpid"] == theirs

    result = run_module("gp_nodelock", _args(slony, state="absent"))
    assert result["removed"] == [{"schema": "_gpops", "nl_nodeid": 1, "nl_conncnt": 0, "nl_backendpid": theirs}]
    assert slony.server.psql("select count(*) from _gpops.sl_nodelock where nl_nodeid = 2 and nl_backendpid = %d"
                             % theirs, "db1") == "1"
    assert run_module("gp_nodelock", _args(slony, state="absent"))["changed"] is False
    _start(slony)
    assert _slon_backend(slony) != theirs
    assert slon2.poll() is None, "node 2's slon was hurt"


def _plan(slony):
    """gp_nodelock's plan for state=absent, made here so the test can act between plan and act."""
    conn = connect(dict(_args(slony), connect_timeout=5, statement_timeout=10.0, ssl_mode="prefer"))
    clusters = slony_nodelock.find_clusters(conn, "gpops")
    return slony_nodelock.plan(slony_nodelock.assess(conn, clusters)), RowDeleter(conn), conn


def test_row_or_backend_changed_between_plan_and_act_is_not_deleted(slony):
    """Planned for deletion (it names an unrelated backend); then, before the executor runs, the
    row is rewritten (same values, a new row version) - guard failed, kept; then planned again and
    the backend it names changes its identity (application_name) - guard failed, kept; the
    untouched plan, executed, deletes it."""
    slony.crash(_start(slony), _slon_backend(slony))
    with psycopg.connect(slony.server.conninfo("db1") + " application_name=reporting", autocommit=True) as other:
        reused = other.info.backend_pid
        slony.server.psql("update _gpops.sl_nodelock set nl_backendpid = %d" % reused, "db1")

        plan, deleter, conn = _plan(slony)
        with conn:
            [step] = plan.steps
            assert step.guard.facts["backend"]["application_name"] == "reporting"
            slony.server.psql("update _gpops.sl_nodelock set nl_backendpid = nl_backendpid", "db1")
            [outcome] = execute(plan.steps, deleter.runners())
            assert outcome.result == "skipped" and outcome.reason.value == "guard_row_changed", outcome.detail
            assert slony.server.psql(ROW_SQL, "db1") == str(reused)

        plan, deleter, conn = _plan(slony)
        with conn:
            other.execute("set application_name = 'slon.local_listen'")
            [outcome] = execute(plan.steps, deleter.runners())
            assert outcome.result == "skipped", outcome.detail
            assert outcome.reason.value == "guard_nodelock_backend_changed", outcome.detail
            assert slony.server.psql(ROW_SQL, "db1") == str(reused)

            other.execute("set application_name = 'reporting'")
            [outcome] = execute(plan.steps, deleter.runners())
            assert outcome.result == "done", outcome.detail
            assert slony.server.psql(ROW_SQL, "db1") == ""
        assert other.execute("select 1").fetchone() == (1,)
