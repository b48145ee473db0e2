"""Issue 13, on real Greenplum 7: a login without privileges, and the tool's own faults.

- A login role without privileges sees ``pg_stat_replication`` / ``gp_stat_replication``
  with NULL columns: gp_sync_replication refuses at start naming the privilege (it would
  read every streaming mirror as not streaming), gp_hang_info reports no
  ``mirror_not_in_sync`` but a tool warning.
- A role that cannot see other sessions' identity: gp_deadlock state=resolved refuses at
  start naming the privilege, before any wait, and the deadlock is left as it was.
- A wrong login_db / login_user, a statement_timeout the server rejects: the task fails
  with a message naming the cause; never verdict ``hung`` with ``node_unreachable``.
"""
import os
import time

import pytest

from playbook import run_tasks

from ansible_collections.gpops.greenplum.plugins.module_utils.collect import connection

pytestmark = pytest.mark.gp7

ROLE = "gpops_noprivs"
HBA_LINE = "host all %s 127.0.0.1/32 trust  # gpops tests: the login without privileges\n" % ROLE


@pytest.fixture(scope="module")
def noprivs(gp7):
    """A login role with no privileges at all, allowed in by pg_hba on every node (coordinator,
    primaries and mirrors; trust on 127.0.0.1 like the demo cluster's gpadmin lines)."""
    gp7.query("DO $$BEGIN IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = '%s') "
              "THEN CREATE ROLE %s LOGIN; END IF; END$$" % (ROLE, ROLE), dbname="postgres")
    for node in gp7.configuration():
        hba = os.path.join(node["datadir"], "pg_hba.conf")
        with open(hba) as f:
            text = f.read()
        if HBA_LINE not in text:
            with open(hba, "w") as f:  # first: pg_hba is matched top down
                f.write(HBA_LINE + text)
    proc = gp7.as_os_user("gpstop -u -a")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    time.sleep(1)
    return dict(gp7.env(), PGUSER=ROLE)


def test_sync_replication_refuses_a_login_that_reads_replication_as_nulls(gp, noprivs):
    before = {c: gp.query("SHOW synchronous_standby_names", content=c)[0][0] for c in (0, 1, 2)}
    # What the role sees: the walsenders exist, their state is hidden (NULL).
    with gp.connect(content=0) as conn:
        conn.execute("SET ROLE %s" % ROLE)
        hidden = conn.execute("SELECT pid, state FROM pg_catalog.pg_stat_replication").fetchall()
    assert hidden and all(state is None for _pid, state in hidden)

    planned, real, walsender = run_tasks([
        ("gp_sync_replication", {"state": "auto"}, True),
        ("gp_sync_replication", {"state": "off", "force": True}),
        ("gp_sync_replication", {"standby_walsender": "check"}),
    ], env=noprivs)
    for result in (planned, real, walsender):
        assert result["failed"] and result["changed"] is False
        assert "login_user %s lacks superuser or membership in pg_read_all_stats" % ROLE in result["msg"]
        assert "nothing was done" in result["msg"]
        assert "Traceback" not in result.get("module_stderr", "")
        assert result["executed_queries"] == [] and result["actions"] == []
    assert "to switch synchronous_standby_names" in real["msg"]  # state=off also needs a superuser, said at once
    after = {c: gp.query("SHOW synchronous_standby_names", content=c)[0][0] for c in (0, 1, 2)}
    assert after == before and all(after.values())


def test_hang_info_reports_a_privilege_warning_not_a_mirror_finding(gp, noprivs):
    result, = run_tasks([("gp_hang_info", {})], env=noprivs)
    assert not result.get("failed"), result.get("msg")
    classes = [f["class"] for f in result["findings"]]
    assert "mirror_not_in_sync" not in classes and "node_unreachable" not in classes
    assert result["verdict"] == "healthy", result["summary"]
    assert result["facts"]["replication"] is None  # unknown, not "absent"
    assert any(w.startswith("replication: privilege: login_user %s lacks" % ROLE) and "pg_read_all_stats" in w
               for w in result["tool_warnings"]), result["tool_warnings"]
    assert any("not a cluster finding" in w for w in result.get("warnings", []))


@pytest.fixture
def table(gp):
    gp.query("DROP TABLE IF EXISTS tpriv; CREATE TABLE tpriv (id int, val int) DISTRIBUTED BY (id); "
             "INSERT INTO tpriv SELECT i, i FROM generate_series(1, 100) i")
    rows = gp.query("SELECT gp_segment_id, id FROM tpriv ORDER BY id")
    out = {}
    for seg, ident in rows:
        out.setdefault(seg, []).append(ident)
    return out


def test_deadlock_resolve_refuses_a_login_that_cannot_see_or_signal_sessions(gp, table, noprivs):
    s1, s2 = gp.session("priv1"), gp.session("priv2")
    s1.sql("BEGIN")
    s2.sql("BEGIN")
    s1.sql("UPDATE tpriv SET val = val WHERE id = %s", (table[0][0],))
    s2.sql("UPDATE tpriv SET val = val WHERE id = %s", (table[1][0],))
    s2.send("UPDATE tpriv SET val = val WHERE id = %s", (table[0][0],))
    assert s2.waiting()
    s1.send("UPDATE tpriv SET val = val WHERE id = %s", (table[1][0],))
    assert s1.waiting()

    started = time.monotonic()
    real, checked = run_tasks([("gp_deadlock", {"state": "resolved", "cancel_grace": 20}),
                               ("gp_deadlock", {"state": "resolved"}, True)], env=noprivs)
    elapsed = time.monotonic() - started
    for result in (real, checked):
        assert result["failed"] and result["changed"] is False and result["actions"] == []
        assert result["msg"].startswith("state=resolved: login_user %s lacks" % ROLE), result["msg"]
        assert "pg_read_all_stats" in result["msg"] and "pg_signal_backend" in result["msg"]
        assert "still present" not in result["msg"]
    assert elapsed < 20  # refused at start: never waited cancel_grace (20 s) twice
    assert s1.waiting() and s2.waiting()  # nothing was cancelled


@pytest.mark.parametrize("args,cause", [
    ({"login_db": "no_such_db"}, 'database does not exist: FATAL: database "no_such_db" does not exist'),
    ({"login_user": "no_such_user"}, "authentication failed"),
])
def test_a_wrong_login_is_a_failed_task_never_a_cluster_finding(gp, args, cause):
    results = run_tasks([("gp_hang_info", args), ("gp_locks_info", args), ("gp_deadlock", args)], env=gp.env())
    for result in results:
        assert result["failed"], result
        assert cause in result["msg"], result["msg"]
        assert "not of the cluster" in result["msg"]
        assert "findings" not in result and "verdict" not in result


def test_a_statement_timeout_the_server_rejects_never_reaches_it(gp):
    # 1e30 s would be sent as an out-of-range GUC; validation refuses it first, naming it.
    hang, = run_tasks([("gp_hang_info", {"statement_timeout": 1e30})], env=gp.env())
    assert hang["failed"] and hang["msg"].startswith("statement_timeout must be a finite number seconds > 0")
    assert "findings" not in hang


def test_a_setting_the_server_rejects_is_a_tool_error(gp):
    """Below validation: a statement_timeout the server refuses at connection start (more
    than INT_MAX ms) is classified as the tool's fault, by the server's own message."""
    params = dict(login_host="127.0.0.1", login_port=gp.port, login_user="gpadmin", login_db="postgres")
    with pytest.raises(connection.GpConnectionError) as caught:
        connection.connect(params, statement_timeout=1e8)
    assert caught.value.tool_error
    assert caught.value.reason.startswith('invalid setting: FATAL: invalid value for parameter "statement_timeout"')
    assert "not of the cluster" in str(caught.value)
