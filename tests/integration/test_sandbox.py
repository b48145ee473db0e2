"""The sandbox cluster behaves like Greenplum 7 where the collection looks:
topology, utility mode, catalog columns (compared with the real captures),
dispatched views, distributed sessions and the global deadlock."""
import json
import os
import time

import psycopg
import pytest

from gpsandbox import scenarios

pytestmark = pytest.mark.integration

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.environ.get("GPOPS_FIXTURES",
                          os.path.join(ROOT, "tests", "fixtures", "gp7"))


def capture(name):
    path = os.path.join(FIXTURES, name + ".json")
    if not os.path.exists(path):
        pytest.skip("capture %s not available" % path)
    with open(path) as f:
        return json.load(f)


def rows(conn, sql, params=None):
    cur = conn.execute(sql, params)
    cols = [d.name for d in cur.description]
    return [dict(zip(cols, r)) for r in cur.fetchall()]


def columns(conn, sql):
    return [d.name for d in conn.execute(sql).description]


# ------------------------------------------------------------------ topology
def test_topology_and_start_time(sandbox):
    status = sandbox.status()
    assert status["running"]
    assert status["start_seconds"] < 60, "a 3-segment cluster with mirrors must start in < 60 s"
    with sandbox.connect() as conn:
        conf = rows(conn, "SELECT * FROM gp_segment_configuration ORDER BY dbid")
    assert [(r["dbid"], r["content"], r["role"], r["port"]) for r in conf] == [
        (1, -1, "p", sandbox.base_port),
        (2, 0, "p", sandbox.base_port + 2), (3, 1, "p", sandbox.base_port + 3),
        (4, 2, "p", sandbox.base_port + 4),
        (5, 0, "m", sandbox.base_port + 5), (6, 1, "m", sandbox.base_port + 6),
        (7, 2, "m", sandbox.base_port + 7)]
    assert {(r["status"], r["mode"]) for r in conf if r["content"] >= 0} == {("u", "s")}


def test_start_twice_reuses_the_running_cluster(sandbox):
    before = sandbox.status()["nodes"]
    after = sandbox.start(segments=3, mirrors=True, replication_conf="gp7")["nodes"]
    assert before == after


def test_start_with_another_topology_is_refused(sandbox):
    from gpsandbox import SandboxError
    with pytest.raises(SandboxError, match="another topology"):
        sandbox.start(segments=2, mirrors=True)


def test_primaries_have_gp_style_sync_replication(sandbox):
    for c in range(3):
        with sandbox.connect(c, utility=True) as conn:
            assert conn.execute("SHOW synchronous_standby_names").fetchone()[0] == "*"
            rep = rows(conn, "SELECT application_name, state, sync_state FROM "
                             "pg_catalog.pg_stat_replication")
            slots = rows(conn, "SELECT slot_name, active FROM pg_catalog.pg_replication_slots")
        assert rep == [dict(application_name="gp_walreceiver", state="streaming", sync_state="sync")]
        assert slots == [dict(slot_name="internal_wal_replication_slot", active=True)]
        with open(os.path.join(sandbox.datadir(c), "postgresql.auto.conf")) as f:
            assert "synchronous_standby_names = '*'" in f.read()


# -------------------------------------------------------------- utility mode
def test_utility_mode_connects_to_a_primary(sandbox):
    for opt in ("-c gp_role=utility", "-c gp_session_role=utility"):
        info = sandbox.conninfo(0)
        info["options"] = opt
        with psycopg.connect(connect_timeout=5, **info) as conn:
            assert conn.execute("SHOW gp_role").fetchone()[0] == "utility"
            assert conn.execute("SHOW gp_contentid").fetchone()[0] == "0"
            assert conn.execute("SHOW gp_session_id").fetchone()[0] == "-1"


def test_plain_connection_to_a_primary_is_refused(sandbox):
    with pytest.raises(psycopg.OperationalError, match="connections to primary segments are not allowed"):
        psycopg.connect(connect_timeout=5, **sandbox.conninfo(1))


def test_mirrors_refuse_connections(sandbox):
    with pytest.raises(psycopg.OperationalError, match="not accepting connections"):
        psycopg.connect(connect_timeout=5, **sandbox.conninfo(0, role="m", utility=True))


def test_version_and_server_version_name_the_sandbox(sandbox):
    with sandbox.connect() as conn:
        version = conn.execute("SELECT version()").fetchone()[0]
        assert conn.execute("SHOW gp_server_version").fetchone()[0] == "7.0.0-sandbox build gpsandbox"
        assert conn.execute("SHOW gp_server_version_num").fetchone()[0] == "70000"
        assert conn.execute("SHOW gp_role").fetchone()[0] == "dispatch"
        assert int(conn.execute("SHOW gp_session_id").fetchone()[0]) > 0
    assert version.startswith("PostgreSQL 15.")
    assert "(Greenplum Database 7.0.0-sandbox build gpsandbox) on " in version


def test_greenplum_settings_show_the_sandbox_fts(sandbox):
    fts = sandbox.fts.status()["settings"]
    for content in (-1, 0):
        with sandbox.connect(content) as conn:
            settings = {r["name"]: (r["setting"], r["unit"]) for r in rows(
                conn, "SELECT name, setting, unit FROM pg_settings WHERE name LIKE 'gp\\_%'")}
        assert settings["gp_fts_probe_interval"] == ("%d" % fts["probe_interval"], "s")
        assert settings["gp_fts_probe_timeout"] == ("%d" % fts["probe_timeout"], "s")
        assert settings["gp_fts_probe_retries"] == ("%d" % fts["probe_retries"], None)
        assert settings["gp_fts_mark_mirror_down_grace_period"] == (
            "%d" % fts["mirror_down_grace_period"], "s")
        assert settings["gp_enable_global_deadlock_detector"] == ("off", None)
        assert settings["gp_resource_manager"] == ("none", None)


def test_utility_mode_views_are_local(sandbox):
    with sandbox.connect(1, utility=True) as conn:
        segs = {r["gp_segment_id"] for r in rows(conn, "SELECT gp_segment_id FROM pg_locks")}
        acts = {r["gp_segment_id"] for r in rows(conn, "SELECT gp_segment_id FROM gp_stat_activity")}
        me = rows(conn, "SELECT mppsessionid, mppiswriter FROM pg_locks WHERE pid = pg_backend_pid()")
    assert segs == {1} and acts == {1}
    assert {(r["mppsessionid"], r["mppiswriter"]) for r in me} == {(-1, False)}
    with sandbox.connect(-1, utility=True) as conn:
        assert {r["gp_segment_id"] for r in rows(conn, "SELECT gp_segment_id FROM pg_locks")} == {-1}
        with pytest.raises(psycopg.Error, match="only be called by coordinator"):
            conn.execute("SELECT gp_request_fts_probe_scan()")


def test_dispatched_views_cover_every_primary(sandbox):
    with sandbox.connect() as conn:
        segs = {r["gp_segment_id"] for r in rows(conn, "SELECT gp_segment_id FROM pg_locks")}
        acts = {r["gp_segment_id"] for r in rows(conn, "SELECT gp_segment_id FROM gp_stat_activity")}
        rep = rows(conn, "SELECT gp_segment_id, state, sync_state FROM gp_stat_replication "
                         "ORDER BY gp_segment_id")
    assert segs == {-1, 0, 1, 2} and acts == {-1, 0, 1, 2}
    assert rep == [dict(gp_segment_id=c, state="streaming", sync_state="sync") for c in range(3)]


# -------------------------------------------- columns against the captures
@pytest.mark.parametrize("query", ["gp_segment_configuration", "pg_locks", "gp_dist_wait_status",
                                   "pg_stat_activity", "gp_stat_activity", "gp_stat_replication",
                                   "gp_distributed_xacts"])
def test_columns_equal_the_gp7_capture(sandbox, query):
    cap = capture("global_deadlock_2seg")["queries"][query]
    with sandbox.connect() as conn:
        assert columns(conn, cap["sql"]) == cap["columns"]


@pytest.mark.parametrize("query", ["pg_locks", "pg_stat_activity", "gp_dist_wait_status"])
def test_utility_mode_columns_equal_the_gp7_capture(sandbox, query):
    cap = capture("global_deadlock_2seg")["queries"]["utility_content0." + query]
    with sandbox.connect(0, utility=True) as conn:
        assert columns(conn, cap["sql"]) == cap["columns"]


def test_gp_configuration_history_columns(sandbox):
    cap = capture("mirror_down_syncrep_wait")["queries"]["gp_configuration_history"]
    with sandbox.connect() as conn:
        assert columns(conn, cap["sql"]) == cap["columns"]


# ------------------------------------------------------- distributed sessions
def test_distributed_transaction_commits_on_every_segment(sandbox, clean_cluster):
    sandbox.create_table("gpsb_commit", "id int, val int", "id", rows=[(i, i) for i in range(1, 31)])
    with sandbox.connect() as conn:
        conn.execute("BEGIN")
        conn.execute("UPDATE gpsb_commit SET val = -val")
        gxid = int(conn.execute("SELECT gp_distributed_xid()").fetchone()[0])
        locks = rows(conn, "SELECT gp_segment_id, mppsessionid FROM pg_locks WHERE locktype = "
                           "'distributed xid' AND transactionid = %s::text::xid", (gxid,))
        conn.execute("COMMIT")
        sess = int(conn.execute("SHOW gp_session_id").fetchone()[0])
    assert gxid > 0 and locks == [dict(gp_segment_id=-1, mppsessionid=sess)]
    for c in range(3):
        assert sandbox.query(c, "SELECT count(*) FROM gpsb_commit WHERE val > 0")[0][0] == 0
        assert sandbox.query(c, "SELECT count(*) FROM pg_catalog.pg_prepared_xacts")[0][0] == 0


def test_rollback_and_error_release_segments(sandbox, clean_cluster):
    sandbox.create_table("gpsb_rollback", "id int, val int", "id", rows=[(1, 1), (2, 2), (3, 3)])
    with sandbox.connect() as conn:
        conn.execute("BEGIN")
        conn.execute("UPDATE gpsb_rollback SET val = 0")
        conn.execute("ROLLBACK")
        conn.execute("BEGIN")
        conn.execute("UPDATE gpsb_rollback SET val = 0 WHERE id = 1")
        with pytest.raises(psycopg.errors.DivisionByZero, match=r"\(seg\d"):
            conn.execute("UPDATE gpsb_rollback SET val = 1 / (val - val)")
        conn.execute("ROLLBACK")
    assert sum(sandbox.query(c, "SELECT sum(val) FROM gpsb_rollback")[0][0] or 0 for c in range(3)) == 6
    for c in range(3):
        assert sandbox.query(c, "SELECT count(*) FROM pg_catalog.pg_stat_activity WHERE "
                                "state = 'idle in transaction'")[0][0] == 0


def test_direct_dispatch_and_insert_routing(sandbox, clean_cluster):
    sandbox.create_table("gpsb_route", "id int, val int", "id")
    with sandbox.connect() as conn:
        assert conn.execute("INSERT INTO gpsb_route VALUES (4, 4)").rowcount == 1
        assert conn.execute("INSERT INTO gpsb_route SELECT i, i FROM generate_series(10, 18) i").rowcount == 9
        assert conn.execute("UPDATE gpsb_route SET val = 0 WHERE id = 4").rowcount == 1
    counts = [sandbox.query(c, "SELECT count(*) FROM gpsb_route")[0][0] for c in range(3)]
    assert counts == [3, 4, 3]
    assert sandbox.query(sandbox.segment_for(4), "SELECT val FROM gpsb_route WHERE id = 4") == [(0,)]


def test_bound_parameters_are_dispatched(sandbox, clean_cluster):
    sandbox.create_table("gpsb_params", "id int, val int", "id")
    with sandbox.connect() as conn:
        for i in range(1, 7):
            assert conn.execute("INSERT INTO gpsb_params VALUES (%s, %s)", (i, i * 10)).rowcount == 1
        assert conn.execute("UPDATE gpsb_params SET val = %s WHERE id = %s", (-1, 5)).rowcount == 1
        assert conn.execute("DELETE FROM gpsb_params WHERE val = %s", (60,)).rowcount == 1
    counts = [sandbox.query(c, "SELECT count(*) FROM gpsb_params")[0][0] for c in range(3)]
    assert counts == [1, 2, 2]
    assert sandbox.query(sandbox.segment_for(5), "SELECT val FROM gpsb_params WHERE id = 5") == [(-1,)]


# ------------------------------------------------------------ global deadlock
def _edges(sb):
    with sb.connect() as conn:
        return rows(conn, "SELECT * FROM gp_dist_wait_status() ORDER BY segid")


def _log_sizes(sb):
    logs = os.path.join(sb.base_dir, "logs")
    return {os.path.join(logs, name): os.path.getsize(os.path.join(logs, name))
            for name in os.listdir(logs)}


def test_global_deadlock_two_solid_edges_no_local_deadlock(sandbox, clean_cluster):
    logs_before = _log_sizes(sandbox)
    with scenarios.global_deadlock(sandbox) as sc:
        a, b = sc.sessions["A"], sc.sessions["B"]
        assert 0 < a["gxid"] < b["gxid"]
        time.sleep(2.5)  # past deadlock_timeout (1 s) on every node
        edges = _edges(sandbox)
        assert [(e["segid"], e["waiter_dxid"], e["holder_dxid"], e["holdTillEndXact"],
                 e["waiter_locktype"], e["waiter_lockmode"], e["waiter_sessionid"],
                 e["holder_sessionid"]) for e in edges] == [
            (0, b["gxid"], a["gxid"], True, "transactionid", "ShareLock",
             b["gp_session_id"], a["gp_session_id"]),
            (1, a["gxid"], b["gxid"], True, "transactionid", "ShareLock",
             a["gp_session_id"], b["gp_session_id"])]
        assert sc.wait(0.1) == {"A": dict(ok=None, error=None, sqlstate=None),
                                "B": dict(ok=None, error=None, sqlstate=None)}
        with sandbox.connect() as conn:
            qd = rows(conn, "SELECT pid, state, wait_event_type, wait_event, "
                            "pg_blocking_pids(pid) AS blocking FROM pg_stat_activity "
                            "WHERE application_name LIKE 'scenario\\_%' ORDER BY pid")
            qe = rows(conn, "SELECT gp_segment_id, state, wait_event_type, wait_event FROM "
                            "gp_stat_activity WHERE gp_segment_id >= 0 AND sess_id IN (%s, %s) "
                            "ORDER BY 1, 2", (a["gp_session_id"], b["gp_session_id"]))
        assert [(r["state"], r["wait_event_type"], r["wait_event"], r["blocking"]) for r in qd] == [
            ("active", "IPC", "Dispatch/Result", [])] * 2
        assert [(r["gp_segment_id"], r["state"], r["wait_event"]) for r in qe] == [
            (0, "active", "transactionid"), (0, "idle in transaction", "ClientRead"),
            (1, "active", "transactionid"), (1, "idle in transaction", "ClientRead")]
    for path, size in logs_before.items():  # what the nodes logged meanwhile
        with open(path, errors="replace") as f:
            f.seek(size)
            assert "deadlock detected" not in f.read(), path


@pytest.mark.parametrize("signal_sql, error", [
    ("SELECT pg_terminate_backend(%s)", "terminating connection due to administrator command"),
    ("SELECT pg_cancel_backend(%s)", "canceling statement due to user request"),
    # GP7's form with a message, as its global deadlock detector cancels a victim
    ("SELECT pg_cancel_backend(%s, 'cancelled by global deadlock detector')",
     'canceling statement due to user request: "cancelled by global deadlock detector"'),
    ("SELECT pg_terminate_backend(%s, 'victim')",
     'terminating connection due to administrator command: "victim"')])
def test_ending_one_qd_lets_the_other_finish(sandbox, clean_cluster, signal_sql, error):
    with scenarios.global_deadlock(sandbox) as sc:
        victim = sc.sessions["B"]["coordinator_pid"]
        with sandbox.connect() as conn:
            assert conn.execute(signal_sql, (victim,)).fetchone() == (True,)
        outcome = sc.wait(15)
        assert outcome["A"] == dict(ok=True, error=None, sqlstate=None)
        assert outcome["B"]["ok"] is False and outcome["B"]["error"] == error
    assert _edges(sandbox) == []


# ----------------------------------------------------- unreachable segments
def test_dispatched_views_fail_when_a_primary_is_down(sandbox, clean_cluster):
    sandbox.fts.pause()  # no failover while the primary is down
    try:
        sandbox.stop_node(2, "p")
        with sandbox.connect() as conn:
            for sql in ("SELECT * FROM pg_locks", "SELECT * FROM gp_stat_activity",
                        "SELECT * FROM gp_dist_wait_status()", "SELECT * FROM gp_stat_replication"):
                t0 = time.monotonic()
                with pytest.raises(psycopg.OperationalError, match="segments"):
                    conn.execute(sql)
                assert time.monotonic() - t0 < 10
        for c in (-1, 0, 1):
            assert sandbox.query(c, "SELECT count(*) FROM pg_locks", utility=True)[0][0] > 0
    finally:
        sandbox.start_node(2, "p")
        sandbox.fts.resume()


def test_dispatched_views_fail_bounded_on_a_frozen_primary(sandbox, clean_cluster):
    with scenarios.frozen_segment(sandbox, content=1):
        with sandbox.connect() as conn:
            conn.execute("SET gpsim.gather_timeout = 2")
            t0 = time.monotonic()
            with pytest.raises(psycopg.OperationalError, match="did not answer|segments"):
                conn.execute("SELECT * FROM pg_locks")
            assert time.monotonic() - t0 < 10
            conn.execute("SET statement_timeout = '1s'")
            t0 = time.monotonic()
            with pytest.raises(psycopg.errors.QueryCanceled):
                conn.execute("SELECT * FROM gp_dist_wait_status()")
            assert time.monotonic() - t0 < 10
        for c in (-1, 0, 2):
            assert sandbox.query(c, "SELECT count(*) FROM pg_stat_activity", utility=True)[0][0] > 0


def test_a_session_survives_a_segment_restart(sandbox, clean_cluster):
    """Cached QE connections to a restarted primary are renewed at their next use."""
    sandbox.create_table("gpsb_restart", "id int, val int", "id", rows=[(1, 1), (2, 2), (3, 3)])
    with sandbox.connect() as conn:
        assert conn.execute("UPDATE gpsb_restart SET val = val + 1").rowcount == 3
        assert len(rows(conn, "SELECT * FROM pg_locks WHERE gp_segment_id = 1")) > 0
        sandbox.fts.pause()
        try:
            sandbox.stop_node(1, "p", mode="fast")
            sandbox.start_node(1, "p")
        finally:
            sandbox.fts.resume()
        assert len(rows(conn, "SELECT * FROM pg_locks WHERE gp_segment_id = 1")) > 0
        assert conn.execute("UPDATE gpsb_restart SET val = val + 1").rowcount == 3
