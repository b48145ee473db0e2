"""Each scenario injector reproduces the kinds of rows of its real GP7 capture
(fixtures/gp7/*.json), and cleans up after itself."""
import time

import psycopg
import pytest

from gpsandbox import scenarios

pytestmark = pytest.mark.integration


def rows(sb, sql, params=None, content=-1, utility=None):
    with sb.connect(content, utility=utility) as conn:
        cur = conn.execute(sql, params)
        cols = [d.name for d in cur.description]
        return [dict(zip(cols, r)) for r in cur.fetchall()]


def edges(sb):
    return rows(sb, "SELECT * FROM gp_dist_wait_status() ORDER BY segid, waiter_lpid")


def qd_rows(sb):
    return rows(sb, "SELECT pid, sess_id, pg_blocking_pids(pid) AS blocking, state, wait_event_type, "
                    "wait_event, query FROM pg_stat_activity WHERE application_name LIKE "
                    "'scenario\\_%' ORDER BY pid")


def edge_tuple(e):
    return (e["segid"], e["waiter_dxid"], e["holder_dxid"], e["holdTillEndXact"],
            e["waiter_locktype"], e["waiter_lockmode"], e["waiter_sessionid"], e["holder_sessionid"])


def test_dotted_edge_then_deadlock_once_c_ends(sandbox, clean_cluster):
    with scenarios.dotted_edge(sandbox) as sc:
        a, b, c = (sc.sessions[k] for k in "ABC")
        assert c["gxid"] < a["gxid"] < b["gxid"]
        assert [edge_tuple(e) for e in edges(sandbox)] == [
            (0, b["gxid"], a["gxid"], True, "transactionid", "ShareLock",
             b["gp_session_id"], a["gp_session_id"]),
            (1, a["gxid"], b["gxid"], False, "tuple", "ExclusiveLock",
             a["gp_session_id"], b["gp_session_id"]),
            (1, b["gxid"], c["gxid"], True, "transactionid", "ShareLock",
             b["gp_session_id"], c["gp_session_id"])]
        assert [(r["state"], r["wait_event"]) for r in qd_rows(sandbox)] == [
            ("active", "Dispatch/Result"), ("active", "Dispatch/Result"),
            ("idle in transaction", "ClientRead")]
        sc.end_c()
        assert sorted(edge_tuple(e) for e in edges(sandbox)) == [
            (0, b["gxid"], a["gxid"], True, "transactionid", "ShareLock",
             b["gp_session_id"], a["gp_session_id"]),
            (1, a["gxid"], b["gxid"], True, "transactionid", "ShareLock",
             a["gp_session_id"], b["gp_session_id"])]


def test_blocking_chain(sandbox, clean_cluster):
    with scenarios.blocking_chain(sandbox, waiters=3) as sc:
        holder = sc.sessions["holder"]
        waiters = [sc.sessions["waiter%d" % i] for i in (1, 2, 3)]
        assert sorted(edge_tuple(e) for e in edges(sandbox)) == sorted(
            (-1, 0, holder["gxid"], True, "relation", "AccessShareLock", w["gp_session_id"],
             holder["gp_session_id"]) for w in waiters)
        qd = {r["pid"]: r for r in qd_rows(sandbox)}
        assert qd[holder["coordinator_pid"]]["state"] == "idle in transaction"
        for w in waiters:
            r = qd[w["coordinator_pid"]]
            assert (r["state"], r["wait_event_type"], r["wait_event"], r["blocking"]) == (
                "active", "Lock", "relation", [holder["coordinator_pid"]])
        locks = rows(sandbox, "SELECT gp_segment_id, mode, granted FROM pg_locks WHERE relation = "
                              "'gpsb_t'::regclass AND mppsessionid = %s", (holder["gp_session_id"],))
        # the LOCK is dispatched: held on the coordinator and on every segment
        assert {(r["gp_segment_id"], r["mode"], r["granted"]) for r in locks} == {
            (c, "AccessExclusiveLock", True) for c in (-1, 0, 1, 2)}


def test_lock_queue_waiters_have_no_edge(sandbox, clean_cluster):
    with scenarios.lock_queue(sandbox) as sc:
        holder, ddl = sc.sessions["holder"], sc.sessions["ddl_waiter"]
        assert [edge_tuple(e) for e in edges(sandbox)] == [
            (-1, ddl["gxid"], holder["gxid"], True, "relation", "AccessExclusiveLock",
             ddl["gp_session_id"], holder["gp_session_id"])]
        qd = {r["pid"]: r for r in qd_rows(sandbox)}
        assert qd[ddl["coordinator_pid"]]["blocking"] == [holder["coordinator_pid"]]
        for label in ("waiter2", "waiter3"):
            r = qd[sc.sessions[label]["coordinator_pid"]]
            assert (r["state"], r["wait_event"], r["blocking"]) == (
                "active", "relation", [ddl["coordinator_pid"]])
    # ending the scenario let every queued statement go


def test_prepared_xact_blocks_a_waiter(sandbox, clean_cluster):
    with scenarios.prepared_xact(sandbox, content=0) as sc:
        committer, waiter = sc.sessions["committer"], sc.sessions["waiter"]
        prepared = rows(sandbox, "SELECT gid FROM pg_prepared_xacts", content=0, utility=True)
        assert prepared == [dict(gid=str(committer["gxid"]))] and sc.gid == str(committer["gxid"])
        for c in (1, 2):
            assert rows(sandbox, "SELECT gid FROM pg_prepared_xacts", content=c, utility=True) == []
        # the coordinator no longer knows the gxid
        live = [int(r["distributed_xid"]) for r in rows(sandbox, "SELECT distributed_xid FROM "
                                                                 "gp_distributed_xacts")]
        assert committer["gxid"] not in live and waiter["gxid"] in live
        assert [edge_tuple(e) + (e["holder_lpid"],) for e in edges(sandbox)] == [
            (0, waiter["gxid"], committer["gxid"], True, "transactionid", "ShareLock",
             waiter["gp_session_id"], committer["gp_session_id"], 0)]
        held = rows(sandbox, "SELECT locktype, mppsessionid, mppiswriter FROM pg_locks "
                             "WHERE pid IS NULL")
        assert {(r["locktype"], r["mppsessionid"], r["mppiswriter"]) for r in held} == {
            ("transactionid", committer["gp_session_id"], False),
            ("relation", committer["gp_session_id"], False)}
        assert sc.wait(0.1)["waiter"]["ok"] is None
    assert rows(sandbox, "SELECT gid FROM pg_prepared_xacts", content=0, utility=True) == []


def test_mirror_down_commit_waits_until_fts_marks_it_down(sandbox, clean_cluster):
    with scenarios.mirror_down_syncrep(sandbox, content=0) as sc:
        qd = qd_rows(sandbox)
        assert [(r["state"], r["wait_event_type"], r["wait_event"]) for r in qd] == [
            ("active", "IPC", "Dispatch/Result")] * 2
        qe = rows(sandbox, "SELECT sess_id, state, wait_event_type, wait_event, query FROM "
                           "pg_stat_activity WHERE wait_event = 'SyncRep' ORDER BY sess_id",
                  content=0, utility=True)
        assert [(r["sess_id"], r["state"], r["wait_event_type"]) for r in qe] == [
            (sc.sessions["insert_seg0_onephase"]["gp_session_id"], "idle in transaction", "IPC"),
            (sc.sessions["insert_multiseg_2pc"]["gp_session_id"], "idle in transaction", "IPC")]
        assert qe[0]["query"].startswith("INSERT INTO gpsb_t01 VALUES")
        assert edges(sandbox) == []
        # cancel is ignored while the commit waits for the mirror, on the QD and the QE
        with sandbox.connect(-1, utility=True) as conn:
            conn.execute("SELECT pg_cancel_backend(%s)",
                         (sc.sessions["insert_seg0_onephase"]["coordinator_pid"],))
        with sandbox.connect(0, utility=True) as conn:
            conn.execute("SELECT pg_cancel_backend(pid) FROM pg_stat_activity "
                         "WHERE wait_event = 'SyncRep'")
        assert sc.wait(2) == {label: dict(ok=None, error=None, sqlstate=None) for label in sc.sessions}
        assert len(sc.syncrep_waiters()) == 2
        conf = rows(sandbox, "SELECT dbid, status, mode FROM gp_segment_configuration WHERE content = 0 "
                             "ORDER BY dbid")
        assert [(r["status"], r["mode"]) for r in conf] == [("u", "s"), ("u", "s")]
        sandbox.fts.resume()
        outcome = sc.wait(30)
        assert outcome == {label: dict(ok=True, error=None, sqlstate=None) for label in sc.sessions}
        conf = rows(sandbox, "SELECT dbid, role, status, mode FROM gp_segment_configuration "
                             "WHERE content = 0 ORDER BY dbid")
        assert [(r["role"], r["status"], r["mode"]) for r in conf] == [("p", "u", "n"), ("m", "d", "n")]
        history = rows(sandbox, "SELECT dbid, description FROM gp_configuration_history "
                                "ORDER BY time DESC, dbid LIMIT 2")
        assert sorted(r["description"] for r in history) == [
            "FTS: update role, status, and mode for dbid %d with contentid 0 to p, u, and n"
            % conf[0]["dbid"],
            "FTS: update role, status, and mode for dbid %d with contentid 0 to m, d, and n"
            % conf[1]["dbid"]]
        assert rows(sandbox, "SHOW synchronous_standby_names", content=0, utility=True) == [
            dict(synchronous_standby_names="")]
    # clean-up restarted the mirror: FTS set '*' back and marked the pair u/s
    assert rows(sandbox, "SHOW synchronous_standby_names", content=0, utility=True) == [
        dict(synchronous_standby_names="*")]
    conf = rows(sandbox, "SELECT status, mode FROM gp_segment_configuration WHERE content = 0")
    assert [(r["status"], r["mode"]) for r in conf] == [("u", "s"), ("u", "s")]


def test_fts_grace_period_then_mark_down_and_recovery(sandbox, clean_cluster):
    grace = sandbox.fts.status()["settings"]["mirror_down_grace_period"]
    sandbox.stop_node(1, "m")
    try:
        t0 = time.monotonic()
        with sandbox.connect() as conn:
            conn.execute("SELECT gp_request_fts_probe_scan()")
            inside = rows(sandbox, "SELECT status, mode FROM gp_segment_configuration WHERE content = 1")
            assert time.monotonic() - t0 < grace, "the probe must come back inside the grace period"
            assert {(r["status"], r["mode"]) for r in inside} == {("u", "s")}
            time.sleep(max(0.0, grace - (time.monotonic() - t0)) + 0.5)
            conn.execute("SELECT gp_request_fts_probe_scan()")
        after = rows(sandbox, "SELECT role, status, mode FROM gp_segment_configuration "
                              "WHERE content = 1 ORDER BY role DESC")
        assert [(r["role"], r["status"], r["mode"]) for r in after] == [("p", "u", "n"), ("m", "d", "n")]
        assert rows(sandbox, "SHOW synchronous_standby_names", content=1, utility=True) == [
            dict(synchronous_standby_names="")]
    finally:
        sandbox.start_node(1, "m")
    deadline = time.monotonic() + 30
    with sandbox.connect() as conn:
        while time.monotonic() < deadline:
            conn.execute("SELECT gp_request_fts_probe_scan()")
            back = rows(sandbox, "SELECT status, mode FROM gp_segment_configuration WHERE content = 1")
            if {(r["status"], r["mode"]) for r in back} == {("u", "s")}:
                break
    assert {(r["status"], r["mode"]) for r in back} == {("u", "s")}
    assert rows(sandbox, "SHOW synchronous_standby_names", content=1, utility=True) == [
        dict(synchronous_standby_names="*")]


def test_probe_scan_waits_for_a_new_whole_cycle(sandbox, clean_cluster):
    sandbox.fts.pause()
    try:
        with sandbox.connect() as conn:
            conn.execute("SET statement_timeout = '1s'")
            with pytest.raises(psycopg.errors.QueryCanceled):
                conn.execute("SELECT gp_request_fts_probe_scan()")
    finally:
        sandbox.fts.resume()
    before = sandbox.fts.status()["cycles"]
    called = time.time()
    with sandbox.connect() as conn:
        assert conn.execute("SELECT * FROM gp_request_fts_probe_scan()").fetchall() == [(True,)]
        returned = time.time()
    # The FTS process writes its status file just after it records the cycle in the
    # catalog (which is what the call waits for): give the file a moment to catch up.
    deadline = time.monotonic() + 5
    status = sandbox.fts.status()
    while status["last_cycle_end"] <= called and time.monotonic() < deadline:
        time.sleep(0.1)
        status = sandbox.fts.status()
    assert status["cycles"] > before and called < status["last_cycle_end"] <= returned + 5


def test_frozen_segment_utility_connection_times_out(sandbox, clean_cluster):
    with scenarios.frozen_segment(sandbox, content=2):
        t0 = time.monotonic()
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(connect_timeout=2, **sandbox.conninfo(2, utility=True))
        assert time.monotonic() - t0 < 10


def test_scenarios_clean_up_when_a_step_fails(sandbox, clean_cluster):
    class Broken(scenarios.GlobalDeadlock):
        def _build(self):
            self.session("A").run("BEGIN")
            raise scenarios.ScenarioError("injected failure")

    with pytest.raises(scenarios.ScenarioError, match="injected failure"):
        Broken(sandbox)


def test_prepared_xact_in_doubt_while_the_commit_is_suspended(sandbox, clean_cluster):
    with scenarios.prepared_xact(sandbox, content=0, orphan=False) as sc:
        committer, waiter = sc.sessions["committer"], sc.sessions["waiter"]
        gid = str(committer["gxid"])
        for c in (0, 1):
            assert rows(sandbox, "SELECT gid FROM pg_prepared_xacts", content=c, utility=True) == [
                dict(gid=gid)]
        live = {int(r["distributed_xid"]): r["gp_session_id"]
                for r in rows(sandbox, "SELECT * FROM gp_distributed_xacts")}
        assert live[committer["gxid"]] == committer["gp_session_id"]
        qd = {r["pid"]: r for r in qd_rows(sandbox)}
        assert (qd[committer["coordinator_pid"]]["state"], qd[committer["coordinator_pid"]]["query"],
                qd[committer["coordinator_pid"]]["wait_event"]) == ("active", "COMMIT", None)
        assert [edge_tuple(e) + (e["holder_lpid"],) for e in edges(sandbox)] == [
            (0, waiter["gxid"], committer["gxid"], True, "transactionid", "ShareLock",
             waiter["gp_session_id"], committer["gp_session_id"], 0)]
    # clean-up resumed the commit: committed on both segments, nothing left prepared
    for c, key in zip(sc.contents, sc.keys):
        assert sandbox.query(c, "SELECT val FROM gpsb_t01 WHERE id = %s", (key,)) == [(key + 1,)]
        assert rows(sandbox, "SELECT gid FROM pg_prepared_xacts", content=c, utility=True) == []
