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
    primaries' filtered on the primaries (sql.NODE_WAIT_LOCKS, PRIMARIES_WAIT_LOCKS): the
    rows and counts select_wait_rows gives from every row."""
    idle = scenario["idle"].sess_id
    params = gp.login()
    conn, server, _segments = catalog.open_coordinator(params)
    assert snap.splits_lock_read(server)
    local_pids = []

    def coordinator_rows(sessions):
        with connect(params, utility=True, server=server) as local:
            local_pids.append(local.info.backend_pid)
            return snap.coordinator_wait_rows(local, sessions)
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


def test_primaries_lock_table_is_scanned_once_and_no_initplan_reads_it(gp):
    """sql.PRIMARIES_WAIT_LOCKS under the Postgres planner: one pg_lock_status() scan on
    each primary (the Shared Scan every branch reads), the waits' keys broadcast, and no
    InitPlan (a Shared Scan whose producer sat in an InitPlan's slice never finished)."""
    with gp.connect(application_name="ws-reader") as conn:
        conn.execute(sql.PLANNER_FOR_SESSION)
        plan = [r[0] for r in conn.execute("EXPLAIN " + sql.PRIMARIES_WAIT_LOCKS, {"sessions": [1]})]
    text = "\n".join(plan)
    assert text.count("Function Scan on pg_lock_status") == 1, text
    assert text.count("Shared Scan") == 4 and "Broadcast Motion" in text, text
    assert "InitPlan" not in text and "Postgres query optimizer" in text, text


def test_one_scan_reads_where_nothing_waits(gp):
    """The one-scan reads on a cluster where nothing waits: no lock row but the counts of
    every node, in time (statement_timeout 10 s: a Shared Scan left waiting would fail)."""
    params = gp.login(statement_timeout=10.0)
    conn, server, _segments = catalog.open_coordinator(params)
    with conn, connect(params, utility=True, server=server) as local:
        primaries = snap.primaries_wait_rows(conn)
        coordinator = snap.coordinator_wait_rows(local)
    assert [r for r in primaries + coordinator if r["wanted"] and not r["granted"]] == []
    nodes, sessions = snap.wait_counts(primaries + coordinator)
    assert set(nodes) == {-1, 0, 1, 2} and all(n["rows"] > 0 and n["waiting"] == 0 for n in nodes.values())
    assert sessions


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
