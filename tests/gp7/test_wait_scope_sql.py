"""The wait-scoped collection's SQL on real Greenplum 7 (sql.WAIT_LOCKS and
sql.WAIT_LOCKS_SHARED, sql.ACTIVITY_INVOLVED): it returns the rows its Python twin
(snapshot.select_wait_rows) picks from every row of pg_locks, and take_snapshot's
``waits`` scope gives the diagnosis the full rows give.

Scenario, stable while it is read: a row chain on segment 0 (holder idle in
transaction, a waiter for its transaction, one more behind the waiter's tuple lock),
a lock queue on the coordinator (a reader idle in transaction, a waiting LOCK ...
ACCESS EXCLUSIVE, a SELECT queued behind it), and an unrelated session idle in
transaction holding locks (its rows come only when asked for: ``sessions``).
"""
import pytest
from psycopg.rows import dict_row

from ansible_collections.gpops.greenplum.plugins.module_utils.analyse import lock_analysis as analysis
from ansible_collections.gpops.greenplum.plugins.module_utils.collect import snapshot as snap
from ansible_collections.gpops.greenplum.plugins.module_utils.collect import sql
from ansible_collections.gpops.greenplum.plugins.module_utils.collect import topology as catalog
from ansible_collections.gpops.greenplum.plugins.module_utils.collect.connection import connect
from ansible_collections.gpops.greenplum.plugins.module_utils.analyse import hang_classes

from lockwaits import wait_blocked

pytestmark = pytest.mark.gp7

IDENTITY = sql.LOCKTAG_COLUMNS + ("pid", "mode", "granted", "mppsessionid")


@pytest.fixture
def scenario(gp):
    gp.query("DROP TABLE IF EXISTS ws_rows, ws_queue, ws_other; "
             "CREATE TABLE ws_rows (id int, val int) DISTRIBUTED BY (id); "
             "CREATE TABLE ws_queue (id int) DISTRIBUTED BY (id); CREATE TABLE ws_other (id int) DISTRIBUTED BY (id); "
             "INSERT INTO ws_rows SELECT i, i FROM pg_catalog.generate_series(1, 100) i; "
             "INSERT INTO ws_queue SELECT i FROM pg_catalog.generate_series(1, 10) i")
    row = gp.query("SELECT min(id) FROM ws_rows WHERE gp_segment_id = 0")[0][0]
    with gp.connect(application_name="ws-monitor") as monitor:
        holder, waiter1, waiter2 = (gp.session(n) for n in ("holder", "waiter1", "waiter2"))
        reader, ddl, queued, idle = (gp.session(n) for n in ("reader", "ddl", "queued", "idle"))
        holder.sql("BEGIN")
        holder.sql("UPDATE ws_rows SET val = val + 1 WHERE id = %s", (row,))
        for w in (waiter1, waiter2):
            w.send("UPDATE ws_rows SET val = val + 1 WHERE id = %s", (row,))
            wait_blocked(monitor, w, {0}, w.label)
        reader.sql("BEGIN")
        reader.sql("SELECT count(*) FROM ws_queue")
        ddl.sql("BEGIN")
        ddl.send("LOCK TABLE ws_queue IN ACCESS EXCLUSIVE MODE")
        wait_blocked(monitor, ddl, {-1}, "LOCK TABLE")
        queued.send("SELECT count(*) FROM ws_queue")
        wait_blocked(monitor, queued, {-1}, "queued SELECT")
        idle.sql("BEGIN")
        idle.sql("INSERT INTO ws_other VALUES (1)")
        yield {"idle": idle, "holder": holder, "waiters": [waiter1, waiter2, ddl, queued]}
    gp.end_test_sessions()
    gp.query("DROP TABLE IF EXISTS ws_rows, ws_queue, ws_other")


def _read(conn, statement, args=None):
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(statement, args)
        return cur.fetchall()


def _identities(rows, own_session):
    return sorted((tuple(str(r[c]) for c in IDENTITY) for r in rows if own_session is None
                   or r["mppsessionid"] != own_session),
                  key=str)


@pytest.mark.parametrize("statement", ["WAIT_LOCKS", "WAIT_LOCKS_SHARED"])
def test_wait_locks_sql_returns_what_its_python_twin_picks(gp, scenario, statement):
    idle = scenario["idle"].sess_id
    with gp.connect(application_name="ws-reader") as conn:
        own = conn.execute("SELECT pg_catalog.current_setting('gp_session_id')::int").fetchone()[0]
        before = _read(conn, sql.DISPATCHED_SNAPSHOT["locks"])
        got = _read(conn, getattr(sql, statement), {"sessions": [idle]})
        after = _read(conn, sql.DISPATCHED_SNAPSHOT["locks"])
    assert _identities(before, own) == _identities(after, own), "the scenario moved while it was read"
    expected = snap.select_wait_rows(before, [idle])
    wanted = [r for r in got if r["wanted"]]
    assert _identities(wanted, own) == _identities([r for r in expected if r["wanted"]], own)
    # Every waiter and holder is there, the idle session's granted rows too, most rows are not.
    sessions = {r["mppsessionid"] for r in wanted}
    assert {s.sess_id for s in scenario["waiters"]} | {scenario["holder"].sess_id, idle} <= sessions
    assert sum(1 for r in wanted if not r["granted"]) == sum(1 for r in before if not r["granted"])
    assert len(wanted) < len(before)
    # Counts: every row of every node, read or not (our own reading session aside).
    nodes, session_counts = snap.wait_counts(got)
    assert set(nodes) == {r["gp_segment_id"] for r in before}
    ref_nodes, ref_sessions = snap.wait_counts(expected)
    for s in scenario["waiters"] + [scenario["holder"], scenario["idle"]]:
        assert session_counts[s.sess_id] == ref_sessions[s.sess_id] > 0
    assert {n: c["waiting"] for n, c in nodes.items()} == {n: c["waiting"] for n, c in ref_nodes.items()}


def test_split_read_returns_what_its_python_twin_picks(gp, scenario):
    """Greenplum 7's wait-scoped lock read: the coordinator's rows in utility mode, the
    primaries' filtered on the primaries (sql.SEGMENT_LOCK_COUNTS, SEGMENT_WAIT_LOCKS):
    the rows and counts select_wait_rows gives from every row."""
    idle = scenario["idle"].sess_id
    params = gp.login()
    conn, server, _segments = catalog.open_coordinator(params)
    assert snap.splits_lock_read(server)
    local_pids = []

    def coordinator_rows(sessions):
        with connect(params, utility=True, server=server) as local:
            local_pids.append(local.info.backend_pid)
            return _read(local, sql.WAIT_LOCKS_SHARED, {"sessions": sessions})
    with conn, gp.connect(application_name="ws-reader") as reader:
        own = conn.execute("SELECT pg_catalog.current_setting('gp_session_id')::int").fetchone()[0]
        before = _read(reader, sql.DISPATCHED_SNAPSHOT["locks"])
        got = snap.read_wait_locks(conn, server, [idle], coordinator_rows)
        after = _read(reader, sql.DISPATCHED_SNAPSHOT["locks"])
        readers = {own, reader.execute("SELECT pg_catalog.current_setting('gp_session_id')::int").fetchone()[0]}
    assert local_pids, "the coordinator's rows were not read in utility mode"

    def identities(rows):
        return _identities([r for r in rows if r["mppsessionid"] not in readers and r["pid"] not in local_pids],
                           None)
    assert identities(before) == identities(after), "the scenario moved while it was read"
    expected = snap.select_wait_rows(before, [idle])
    wanted = [r for r in got if r["wanted"]]
    assert identities(wanted) == identities([r for r in expected if r["wanted"]])
    assert {r["gp_segment_id"] for r in wanted if not r["granted"]} == {-1, 0}
    nodes, session_counts = snap.wait_counts(got)
    ref_nodes, ref_sessions = snap.wait_counts(expected)
    assert set(nodes) == set(ref_nodes) == {-1, 0, 1, 2}
    assert {n: c["waiting"] for n, c in nodes.items()} == {n: c["waiting"] for n, c in ref_nodes.items()}
    for s in scenario["waiters"] + [scenario["holder"], scenario["idle"]]:
        assert session_counts[s.sess_id] == ref_sessions[s.sess_id] > 0


def test_segment_read_keeps_one_moment_of_each_primary(gp, scenario):
    """sql.SEGMENT_WAIT_LOCKS with no key bound (as if every wait began after the
    counts were read) still returns the waiting requests; segment_wait_rows' re-read
    then binds their keys and returns their holders."""
    with gp.connect(application_name="ws-reader") as conn:
        unbound = _read(conn, sql.SEGMENT_WAIT_LOCKS, dict(
            {"k_%s" % f: [] for f in sql.WAIT_KEY_FIELDS}, sessions=[], proc_contents=[], proc_pids=[]))
        rows = snap.segment_wait_rows(conn, [], rounds=3)
    assert {r["gp_segment_id"] for r in unbound if not r["granted"]} == {0}
    assert all(not r["granted"] or not r["pid"] for r in unbound)
    holder = scenario["holder"].sess_id
    assert any(r["granted"] and r["mppsessionid"] == holder for r in rows if r.get("wanted"))


def test_activity_involved_sql_returns_what_its_python_twin_picks(gp, scenario):
    idle = scenario["idle"].sess_id
    with gp.connect(application_name="ws-reader") as conn:
        own = conn.execute("SELECT pg_catalog.current_setting('gp_session_id')::int").fetchone()[0]
        locks = _read(conn, sql.WAIT_LOCKS_SHARED, {"sessions": [idle]})
        edges = _read(conn, sql.DISPATCHED_SNAPSHOT["edges"])
        dxacts = _read(conn, sql.DISPATCHED_SNAPSHOT["dist_xacts"])
        everything = _read(conn, sql.DISPATCHED_SNAPSHOT["activity"])
        pairs, involved = snap._involved(snap._wanted(locks), edges)
        involved |= {idle} | {int(r["gp_session_id"]) for r in dxacts if r.get("gp_session_id")}
        pairs = sorted(pairs)
        got = _read(conn, sql.ACTIVITY_INVOLVED, {"contents": [c for c, _p in pairs], "pids": [p for _c, p in pairs],
                                                  "sessions": sorted(involved)})
    expected = snap.select_activity_rows(everything, locks, edges, dxacts, [idle])

    def keys(rows):
        return sorted((r["gp_segment_id"], r["pid"]) for r in rows if r["sess_id"] != own)
    assert keys(got) == keys(expected)
    coordinator = {r["pid"] for r in got if r["gp_segment_id"] == -1}
    assert {s.pid for s in scenario["waiters"] + [scenario["holder"], scenario["idle"]]} <= coordinator
    assert len(got) < len(everything)


def _shape(snapshot):
    """What must not depend on the scope: verdict, trees (labels, depths, waits without
    their durations), deadlocks, victims, and the classes of the findings."""
    result = analysis.analyse(snapshot)
    findings = hang_classes.classify(snapshot, result, options=hang_classes.TriageOptions(idle_in_transaction_age=0.0))
    trees = [(t["root"]["label"], sorted((w["label"], w["depth"], tuple(sorted(
        (x["content"], x["locktype"], x["mode"], x["kind"], x["blocked_by"]) for x in w["waits"])))
        for w in t["waiters"])) for t in result.blocking_trees]
    return (result.verdict, sorted(trees), result.deadlocks, result.victims,
            sorted((f.cls, f.severity) for f in findings))


def test_take_snapshot_waits_scope_diagnoses_like_every_row(gp, scenario):
    params = gp.login()
    full = snap.take_snapshot(params, scope="full")
    waits = snap.take_snapshot(params, scope="waits", idle_age=0.0)
    assert waits.scope == "waits" and full.scope == "full"
    assert waits.source == full.source == "dispatch" and not waits.unreachable
    assert len(waits.locks) < len(full.locks)
    counts = waits.as_dict()["counts"]
    assert counts["waiting_lock_rows"] == sum(1 for r in full.locks if not r.granted) == 4
    assert _shape(waits) == _shape(full)
    idle = [f for f in hang_classes.classify(waits, analysis.analyse(waits),
                                       options=hang_classes.TriageOptions(idle_in_transaction_age=0.0))
            if f.cls == "long_idle_in_transaction"]
    assert scenario["idle"].sess_id in {f.evidence["session"]["sess_id"] for f in idle}
