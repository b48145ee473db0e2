#!/usr/bin/env python3
"""Benchmark of the analysis layer: record construction from catalog rows + analyse().

Synthetic snapshots from 10,000 to 1,000,000 ``pg_locks`` rows over up to 1,000
segments, shaped like a busy Greenplum cluster: mostly granted locks of distributed
sessions (wide read-only queries with a QE on every segment, narrow updates on a
few segments), plus blocking chains, lock queues (one of them a hot table with a
thousand SELECTs queued behind a DDL at 1M rows), dotted edges that are no deadlock,
and a few global deadlocks of two and three transactions. Each size runs in its own
process so that its peak memory (``ru_maxrss``) is its own.

Measured: the time to turn the rows (tuples, as a driver returns them) into row
dicts and records (``LockRecord``, ``Backend``, ``WaitEdge``, ``DistributedXact``
``from_row``) and the time of ``analyse()``; peak RSS of the process, input rows
included. The analysis results are checked (every injected deadlock found, one
victim each, every chain's root found), so a fast wrong answer does not pass.

The wait-scoped collection (what ``gp_hang_info`` reads, docs/collection.md) is measured
at the same sizes, and at 1,000 waiting rows over 1,000 segments with 100,000 and
1,000,000 rows in all: the rows it would receive are made from every row by the SQL's
Python twins (``snapshot.select_wait_rows`` / ``select_activity_rows``) in one process,
and a second process, holding only those, times the collection side (row dicts,
``snapshot_from_rows``) plus ``analyse()`` and ``hang_classes.classify()``; its analysis and
findings must equal the full-rows path's.

Usage: ``.venv/bin/python bench/run.py [--sizes 10000,100000,1000000] [--out bench/results.md]
[--skip-full]`` (``make bench``). Targets: every row, 1,000,000 rows in under 10 s and 2 GiB;
wait-scoped, 1,000,000 rows with 1,000 waiting over 1,000 segments under 1 s CPU and
250 MiB, on a 2-core machine.
"""
import argparse
import datetime
import json
import os
import pickle
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, ".collections"))

LOCK_COLUMNS = ("locktype", "database", "relation", "page", "tuple", "virtualxid", "transactionid",
                "classid", "objid", "objsubid", "virtualtransaction", "pid", "mode", "granted",
                "fastpath", "mppsessionid", "mppiswriter", "gp_segment_id", "relation_name")
ACTIVITY_COLUMNS = ("gp_segment_id", "datid", "datname", "pid", "sess_id", "usesysid", "usename",
                    "application_name", "client_addr", "client_hostname", "client_port", "backend_start",
                    "xact_start", "query_start", "state_change", "wait_event_type", "wait_event", "state",
                    "backend_xid", "backend_xmin", "query", "backend_type", "rsgid", "rsgname")
EDGE_COLUMNS = ("segid", "waiter_dxid", "holder_dxid", "holdTillEndXact", "waiter_lpid", "holder_lpid",
                "waiter_lockmode", "waiter_locktype", "waiter_sessionid", "holder_sessionid")
DXACT_COLUMNS = ("distributed_xid", "state", "gp_session_id", "xmin_distributed_snapshot")
DEFAULT_SIZES = (10000, 30000, 100000, 300000, 1000000)
DB = 16384
TABLES = 200
INDEXES = 2  # per table: a QE holds ~4-5 lock rows, as with a table and its indexes


class Cluster:
    """Builds the rows of one synthetic snapshot; ``expect`` records what analyse() must find."""

    def __init__(self, segments, seed=7):
        self.segments = segments
        self.rnd = random.Random(seed)
        self.now = datetime.datetime(2026, 11, 21, 6, 0, tzinfo=datetime.timezone.utc)
        self.locks, self.activity, self.edges, self.dxacts = [], [], [], []
        self.next_pid, self.next_sess, self.next_gxid, self.next_xid = 30000, 100, 1000, 5000
        self.expect = {"deadlocks": 0, "roots": 0}
        self.next_table = 20000 + TABLES  # incidents get tables of their own

    def own_table(self):
        self.next_table += 1
        return self.next_table

    def ago(self, seconds):
        return self.now - datetime.timedelta(seconds=seconds)

    def _lock(self, content, pid, sess, locktype, mode, granted=True, relation=None, xid=None, vxid=None,
              vxact="1/1", dxid=None, tuple_=None):
        rel_name = "public.r%d" % relation if relation else None
        self.locks.append((locktype, DB if relation else None, relation, 0 if tuple_ else None, tuple_, vxid,
                           xid or dxid, None, None, None, vxact, pid, mode, granted, locktype == "relation",
                           sess, True, content, rel_name))

    def _backend(self, content, pid, sess, state="idle in transaction", wait=(None, None), query="SELECT 1",
                 since=30.0, app=""):
        self.activity.append((content, DB, "postgres", pid, sess, 10, "gpadmin", app, "10.0.0.1", None, 40000,
                              self.ago(600), self.ago(since + 5), self.ago(since), self.ago(since), wait[0],
                              wait[1], state, None, None, query, "client backend", 0, "unknown"))

    def _relations(self, content, pid, sess, relation, mode, vx):
        """A statement locks its table and the table's indexes."""
        for offset in range(INDEXES + 1):
            self._lock(content, pid, sess, "relation", mode, relation=relation + offset * 1000, vxact=vx)

    def session(self, contents, relation, mode="RowExclusiveLock", qd_state="idle in transaction",
                qd_wait=(None, None), since=30.0, write=True):
        """A distributed transaction: its QD and a writer QE on each of ``contents``.
        Returns ``(sess, gxid, {content: (pid, xid)})``."""
        sess, gxid = self.next_sess, self.next_gxid
        self.next_sess += 1
        self.next_gxid += 1
        qd = self.next_pid
        self.next_pid += 1
        vx = "%d/%d" % (qd % 97, sess)
        self._backend(-1, qd, sess, qd_state, qd_wait, since=since, app="app%d" % (sess % 7))
        self._lock(-1, qd, sess, "relation", mode, relation=relation, vxact=vx)
        self._lock(-1, qd, sess, "virtualxid", "ExclusiveLock", vxid=vx, vxact=vx)
        self._lock(-1, qd, sess, "distributed xid", "ExclusiveLock", dxid=str(gxid), vxact=vx)
        self.dxacts.append((str(gxid), "None", sess, str(gxid - 5)))
        qes = {}
        for content in contents:
            pid, xid = self.next_pid, self.next_xid
            self.next_pid += 1
            self.next_xid += 1
            vx = "%d/%d" % (pid % 89, xid)
            self._backend(content, pid, sess, since=since)
            self._relations(content, pid, sess, relation, mode, vx)
            self._lock(content, pid, sess, "virtualxid", "ExclusiveLock", vxid=vx, vxact=vx)
            if write:
                self._lock(content, pid, sess, "transactionid", "ExclusiveLock", xid=str(xid), vxact=vx)
            qes[content] = (pid, xid)
        return sess, gxid, qes

    def table(self):
        return 20000 + self.rnd.randrange(TABLES)

    def background(self, rows):
        """Granted locks only: wide read-only queries and narrow updates."""
        while len(self.locks) < rows:
            if self.rnd.random() < 0.25 and len(self.locks) + (INDEXES + 2) * self.segments < rows:
                self.session(range(self.segments), self.table(), "AccessShareLock", "active", write=False)
            else:
                width = self.rnd.choice((1, 1, 2, 4))
                self.session(self.rnd.sample(range(self.segments), min(width, self.segments)), self.table())

    def _xid_wait(self, content, waiter, holder, solid=True):
        """QE of ``waiter`` on ``content`` waits for ``holder``'s xid there (an UPDATE of
        a row the holder updated): lock row + gp_dist_wait_status row."""
        (wsess, wgxid, wqes), (hsess, hgxid, hqes) = waiter, holder
        wpid, _ = wqes[content]
        hpid, hxid = hqes[content]
        self._lock(content, wpid, wsess, "transactionid", "ShareLock", False, xid=str(hxid))
        self.edges.append((content, wgxid, hgxid, solid, wpid, hpid, "ShareLock", "transactionid", wsess, hsess))

    def deadlock(self, size):
        """A global deadlock of ``size`` transactions around ``size`` segments."""
        contents = self.rnd.sample(range(self.segments), min(size, self.segments))
        relation = self.own_table()
        members = [self.session(contents, relation, qd_state="active", qd_wait=("IPC", "Dispatch/Result"),
                                since=10.0) for _ in contents]
        for k, content in enumerate(contents):
            self._xid_wait(content, members[k], members[(k + 1) % len(members)])
        self.expect["deadlocks"] += 1

    def chain(self, waiters=3):
        """An idle-in-transaction holder of ACCESS EXCLUSIVE on the coordinator and
        read-only waiters (gxid 0 edges)."""
        relation = self.own_table()
        hsess, hgxid, _ = self.session([], relation, "AccessExclusiveLock", since=120.0)
        hpid = self.next_pid - 1
        for k in range(waiters):
            sess, pid = self.next_sess, self.next_pid
            self.next_sess += 1
            self.next_pid += 1
            self._backend(-1, pid, sess, "active", ("Lock", "relation"), since=60.0 - k)
            self._lock(-1, pid, sess, "relation", "AccessShareLock", False, relation=relation, vxact="9/%d" % sess)
            self.edges.append((-1, 0, hgxid, True, pid, hpid, "AccessShareLock", "relation", sess, hsess))
        self.expect["roots"] += 1

    def lock_queue(self, selects=2):
        """A holder of AccessShareLock, a waiting LOCK ... ACCESS EXCLUSIVE, and
        ``selects`` SELECTs queued behind the waiting request (no edge for them)."""
        relation = self.own_table()
        hsess, hgxid, _ = self.session([], relation, "AccessShareLock", since=90.0)
        hpid = self.next_pid - 1
        dsess, dgxid, _ = self.session([], relation, "RowExclusiveLock", "active", ("Lock", "relation"), since=50.0)
        dpid = self.next_pid - 1
        self._lock(-1, dpid, dsess, "relation", "AccessExclusiveLock", False, relation=relation)
        self.edges.append((-1, dgxid, hgxid, True, dpid, hpid, "AccessExclusiveLock", "relation", dsess, hsess))
        for k in range(selects):
            sess, pid = self.next_sess, self.next_pid
            self.next_sess += 1
            self.next_pid += 1
            self._backend(-1, pid, sess, "active", ("Lock", "relation"), since=40.0 - k * 30.0 / selects)
            self._lock(-1, pid, sess, "relation", "AccessShareLock", False, relation=relation)
        self.expect["roots"] += 1

    def dotted_no_deadlock(self):
        """GDD's README case without D: B waits for A (seg x) and C (seg y), A waits
        for B's tuple lock on y (dotted): no deadlock, C is the root."""
        x, y = self.rnd.sample(range(self.segments), 2)
        relation = self.own_table()
        c = self.session([y], relation, since=80.0)
        a = self.session([x, y], relation, qd_state="active", qd_wait=("IPC", "Dispatch/Result"))
        b = self.session([x, y], relation, qd_state="active", qd_wait=("IPC", "Dispatch/Result"))
        self._xid_wait(x, b, a)
        self._xid_wait(y, b, c)
        (asess, agxid, aqes), (bsess, bgxid, bqes) = a, b
        self._lock(y, bqes[y][0], bsess, "tuple", "ExclusiveLock", relation=relation, tuple_=7)
        self._lock(y, aqes[y][0], asess, "tuple", "ExclusiveLock", False, relation=relation, tuple_=7)
        self.edges.append((y, agxid, bgxid, False, aqes[y][0], bqes[y][0], "ExclusiveLock", "tuple", asess, bsess))
        self.expect["roots"] += 1


def build(rows, segments, waits=None):
    """The rows of a snapshot of about ``rows`` lock rows over ``segments`` primaries;
    ``waits``: the number of waiting lock rows (default: growing with ``rows``)."""
    cluster = Cluster(segments)
    incidents = max(1, rows // 20000) if waits is None else 20
    for k in range(incidents):
        cluster.deadlock(2 + k % 2)
        cluster.chain()
        cluster.lock_queue()
        if segments > 1:
            cluster.dotted_no_deadlock()
    if waits is None:
        selects = max(2, rows // 1000)
    else:
        selects = max(2, waits - sum(1 for r in cluster.locks if not r[13]) - 1)
    cluster.lock_queue(selects=selects)  # a hot table: a long queue behind one DDL
    cluster.background(rows)
    cluster.rnd.shuffle(cluster.locks)  # rows are not sorted by segment (fixtures README)
    return cluster


def measure(rows, segments):
    """Build, then time records + analyse() in this process; return the figures."""
    from ansible_collections.gpops.greenplum.plugins.module_utils.analyse.lock_analysis import analyse
    from ansible_collections.gpops.greenplum.plugins.module_utils.common.records import (
        Backend, ClusterSnapshot, DistributedXact, LockRecord, WaitEdge, gc_paused)

    cluster = build(rows, segments)
    input_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    inputs = ((LockRecord, LOCK_COLUMNS, cluster.locks), (Backend, ACTIVITY_COLUMNS, cluster.activity),
              (WaitEdge, EDGE_COLUMNS, cluster.edges), (DistributedXact, DXACT_COLUMNS, cluster.dxacts))
    # What making the row dicts alone costs (a driver's dict_row does the same), for reference.
    cpu_started = time.process_time()
    with gc_paused():
        for _cls, columns, rows_ in inputs:
            for r in rows_:
                dict(zip(columns, r))
    dicts_cpu_s = time.process_time() - cpu_started
    started, cpu_started = time.perf_counter(), time.process_time()
    locks, backends, edges, dxacts = (cls.from_rows(dict(zip(columns, r)) for r in rows_)
                                      for cls, columns, rows_ in inputs)
    snapshot = ClusterSnapshot(taken_at=cluster.now, locks=locks, backends=backends, edges=edges,
                               dist_xacts=dxacts)
    built, cpu_built = time.perf_counter(), time.process_time()
    result = analyse(snapshot)
    done, cpu_done = time.perf_counter(), time.process_time()
    json.dumps(result.as_dict())
    ok = (len(result.deadlocks) == cluster.expect["deadlocks"] == len(result.victims)
          and len(result.blocking_trees) == cluster.expect["roots"])
    return {"rows": len(cluster.locks), "segments": segments, "backends": len(cluster.activity),
            "edges": len(cluster.edges), "records_s": round(built - started, 3), "dicts_cpu_s": round(dicts_cpu_s, 3),
            "analyse_s": round(done - built, 3), "total_s": round(done - started, 3),
            "cpu_s": round(cpu_done - cpu_started, 3), "records_cpu_s": round(cpu_built - cpu_started, 3),
            "analyse_cpu_s": round(cpu_done - cpu_built, 3), "load": round(os.getloadavg()[0], 1),
            "input_rss_mib": round(input_rss / 1024.0, 1),
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1),
            "deadlocks": len(result.deadlocks), "victims": len(result.victims),
            "trees": len(result.blocking_trees), "correct": ok}


def _dicts(columns, rows):
    return [dict(zip(columns, r)) for r in rows]


def received(cluster):
    """The rows the ``waits`` collection receives (``sql.WAIT_LOCKS``,
    ``sql.ACTIVITY_INVOLVED``, the edges and distributed transactions), made from every
    row by the SQL's Python twins: ``({item: (columns, row tuples)}, idle sessions)``."""
    from ansible_collections.gpops.greenplum.plugins.module_utils.collect import snapshot as snap

    locks = snap.select_wait_rows(_dicts(LOCK_COLUMNS, cluster.locks))
    edges, dxacts = _dicts(EDGE_COLUMNS, cluster.edges), _dicts(DXACT_COLUMNS, cluster.dxacts)
    activity = snap.select_activity_rows(_dicts(ACTIVITY_COLUMNS, cluster.activity), locks, edges, dxacts)
    lock_columns = LOCK_COLUMNS + snap.WAIT_COLUMNS
    return {"locks": (lock_columns, [tuple(r[c] for c in lock_columns) for r in locks]),
            "activity": (ACTIVITY_COLUMNS, [tuple(r[c] for c in ACTIVITY_COLUMNS) for r in activity]),
            "edges": (EDGE_COLUMNS, cluster.edges), "dist_xacts": (DXACT_COLUMNS, cluster.dxacts)}


def waits_snapshot(items, taken_at):
    """What ``take_snapshot(scope='waits')`` builds from the received rows."""
    from ansible_collections.gpops.greenplum.plugins.module_utils.collect import snapshot as snap
    from ansible_collections.gpops.greenplum.plugins.module_utils.common.records import gc_paused

    with gc_paused():
        dispatched = {item: [dict(zip(columns, r)) for r in rows] for item, (columns, rows) in items.items()}
        return snap.snapshot_from_rows([], dispatched=dispatched, taken_at=taken_at)


def full_snapshot(cluster):
    from ansible_collections.gpops.greenplum.plugins.module_utils.common.records import (
        Backend, ClusterSnapshot, DistributedXact, LockRecord, WaitEdge)

    return ClusterSnapshot(
        taken_at=cluster.now, locks=LockRecord.from_rows(_dicts(LOCK_COLUMNS, cluster.locks)),
        backends=Backend.from_rows(_dicts(ACTIVITY_COLUMNS, cluster.activity)),
        edges=WaitEdge.from_rows(_dicts(EDGE_COLUMNS, cluster.edges)),
        dist_xacts=DistributedXact.from_rows(_dicts(DXACT_COLUMNS, cluster.dxacts)))


def snapshots(cluster):
    """``(full, waits)``: the snapshot of every row and the one of the received rows."""
    return full_snapshot(cluster), waits_snapshot(received(cluster), cluster.now)


def outcome(snapshot, policy="youngest"):
    """The analysis and the findings as JSON-friendly data, to compare two paths."""
    from ansible_collections.gpops.greenplum.plugins.module_utils.analyse import lock_analysis as analysis
    from ansible_collections.gpops.greenplum.plugins.module_utils.analyse import hang_classes

    result = analysis.analyse(snapshot, policy=policy)
    findings = [f.as_dict() for f in hang_classes.classify(snapshot, result)]
    return json.loads(json.dumps({"analysis": result.as_dict(), "findings": findings}, sort_keys=True,
                                 default=str))


def prepare_waits(rows, segments, waits, path):
    """Child 1: build the cluster, check the full path against the waits path, and save
    the received rows for child 2 (which then holds nothing else)."""
    cluster = build(rows, segments, waits)
    items = received(cluster)
    full = outcome(full_snapshot(cluster))
    identical = full == outcome(waits_snapshot(items, cluster.now))
    with open(path, "wb") as fh:
        pickle.dump({"items": items, "taken_at": cluster.now, "expect": cluster.expect, "full": full,
                     "rows": len(cluster.locks), "waiting": sum(1 for r in cluster.locks if not r[13]),
                     "backends": len(cluster.activity), "identical": identical}, fh)


def measure_waits(path):
    """Child 2: time what the collection does with the received rows (row dicts, records,
    counts) plus ``analyse()`` and ``hang_classes.classify()``; its peak RSS."""
    from ansible_collections.gpops.greenplum.plugins.module_utils.analyse import lock_analysis as analysis
    from ansible_collections.gpops.greenplum.plugins.module_utils.analyse import hang_classes

    with open(path, "rb") as fh:
        data = pickle.load(fh)
    items = data["items"]
    input_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started, cpu_started = time.perf_counter(), time.process_time()
    snapshot = waits_snapshot(items, data["taken_at"])
    cpu_built = time.process_time()
    result = analysis.analyse(snapshot)
    findings = hang_classes.classify(snapshot, result)
    done, cpu_done = time.perf_counter(), time.process_time()
    got = json.loads(json.dumps({"analysis": result.as_dict(), "findings": [f.as_dict() for f in findings]},
                                sort_keys=True, default=str))
    size = len(json.dumps(dict(result.as_dict(), snapshot=snapshot.as_dict(),
                               findings=[f.as_dict() for f in findings]), default=str))
    expect = data["expect"]
    ok = (len(result.deadlocks) == expect["deadlocks"] == len(result.victims)
          and len(result.blocking_trees) == expect["roots"] and got == data["full"] and data["identical"])
    return {"rows": data["rows"], "waiting": data["waiting"], "received": len(items["locks"][1]),
            "received_backends": len(items["activity"][1]), "backends": data["backends"],
            "collect_cpu_s": round(cpu_built - cpu_started, 3), "analyse_cpu_s": round(cpu_done - cpu_built, 3),
            "cpu_s": round(cpu_done - cpu_started, 3), "total_s": round(done - started, 3),
            "input_rss_mib": round(input_rss / 1024.0, 1), "result_kib": round(size / 1024.0, 1),
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1),
            "deadlocks": len(result.deadlocks), "victims": len(result.victims),
            "trees": len(result.blocking_trees), "correct": ok}


def run_waits(rows, segments, waits=None):
    """The two children of one ``waits`` case; returns child 2's figures."""
    fd, path = tempfile.mkstemp(prefix="gpops-bench-", suffix=".pickle")
    os.close(fd)
    try:
        base = [sys.executable, os.path.abspath(__file__)]
        subprocess.run(base + ["--prepare", str(rows), "--segments", str(segments), "--waits", str(waits or 0),
                               "--path", path], check=True)
        child = subprocess.run(base + ["--measure", path, "--segments", str(segments)], stdout=subprocess.PIPE,
                               universal_newlines=True, check=True)
    finally:
        os.unlink(path)
    return dict(json.loads(child.stdout), segments=segments)


def waits_table(results):
    lines = ["| lock rows | waiting | segments | rows received | backends (received) "
             "| CPU: collection side (s) | CPU: analyse + triage (s) | CPU total (s) | wall (s) "
             "| peak RSS (MiB) | of which received rows (MiB) | result (KiB) | deadlocks / victims / trees "
             "| identical to full rows |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"]
    for r in results:
        lines.append("| {rows:,} | {waiting:,} | {segments:,} | {received:,} | {backends:,} ({received_backends:,}) "
                     "| {collect_cpu_s:.3f} | {analyse_cpu_s:.3f} | {cpu_s:.3f} | {total_s:.3f} | {peak_rss_mib:,.0f} "
                     "| {input_rss_mib:,.0f} | {result_kib:,.0f} | {deadlocks} / {victims} / {trees} "
                     "| {ok} |".format(ok="yes" if r["correct"] else "NO", **r))
    return "\n".join(lines)


def segments_for(rows):
    return max(4, min(1000, rows // 1000))


def table(results):
    lines = ["| lock rows | segments | backends | CPU: row dicts (s) | CPU: records from the dicts (s) "
             "| CPU: analyse() (s) | CPU total (s) | CPU us per lock row | wall total (s) | load avg "
             "| peak RSS (MiB) | of which input rows (MiB) | deadlocks / victims / trees | correct |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"]
    for r in results:
        lines.append("| {rows:,} | {segments:,} | {backends:,} | {dicts_cpu_s:.2f} | {from_dicts:.2f} "
                     "| {analyse_cpu_s:.2f} | {cpu_s:.2f} | {per_row:.2f} | {total_s:.2f} | {load} "
                     "| {peak_rss_mib:,.0f} | {input_rss_mib:,.0f} | {deadlocks} / {victims} / {trees} "
                     "| {ok} |".format(per_row=r["cpu_s"] / r["rows"] * 1e6, ok="yes" if r["correct"] else "NO",
                                       from_dicts=r["records_cpu_s"] - r["dicts_cpu_s"], **r))
    return "\n".join(lines)


def write_results(path, waits_results, fixed, full_results):
    head = ("`make bench` (`.venv/bin/python bench/run.py`) on %s, Python %s, %d CPUs, %s.\n\n" % (
        platform.platform(), platform.python_version(), os.cpu_count(),
        datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")))
    text = ["# Analysis benchmark\n", head,
            "## The wait-scoped collection (what `gp_hang_info` reads)\n",
            "Each case runs in two processes. The first builds the synthetic cluster (every "
            "`pg_locks` and `gp_stat_activity` row), makes from it the rows the `waits` collection "
            "receives (`sql.WAIT_LOCKS`, `sql.ACTIVITY_INVOLVED`, by their Python twins "
            "`snapshot.select_wait_rows` / `select_activity_rows`: the server's work, not timed here), "
            "and runs the old full-rows path for reference. The second process loads only the received "
            "rows and measures, as CPU time: the collection side (row dicts from the driver's tuples, "
            "`snapshot_from_rows`: records and counts), then `analyse()` and `hang_classes.classify()` "
            "(one `SnapshotIndex`). Peak RSS is the second process's, received rows included. "
            "'result': the JSON of the analysis, findings and snapshot as `gp_hang_info` returns them. "
            "'identical': analysis and findings equal to the full-rows path's, and every injected "
            "deadlock and blocking tree found. Targets: 1,000,000 rows with 1,000 waiting over 1,000 "
            "segments under 1 s CPU and 250 MiB.\n",
            "Waits growing with the rows (the sizes of the full-rows table below):\n",
            waits_table(waits_results) + "\n",
            "1,000 waiting rows over 1,000 segments at 100,000 and at 1,000,000 rows: the cost follows "
            "the waits, not the granted rows. 'rows received' counts the wanted lock rows plus one count "
            "row per session and per node (the number of sessions grows with the rows here), "
            "which is all that grows between the two:\n",
            waits_table(fixed) + "\n"]
    if full_results:
        text += ["## Every row (the full path, `evidence: full` reads these rows too)\n",
                 "Measured, as CPU time of the process: making the row dicts from row tuples (what a "
                 "driver's `dict_row` does), building the records from them (`from_rows`), and `analyse()` "
                 "(policy `youngest`); the CPU total counts all three. Peak RSS includes the input rows the "
                 "benchmark holds.\n", table(full_results) + "\n"]
    with open(path, "w") as fh:
        fh.write("\n".join(text))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default=",".join(str(s) for s in DEFAULT_SIZES),
                        help="comma-separated numbers of lock rows")
    parser.add_argument("--out", default=os.path.join(ROOT, "bench", "results.md"),
                        help="Markdown file for the results ('' for none)")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # child process: one size
    parser.add_argument("--segments", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--prepare", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    parser.add_argument("--waits", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    parser.add_argument("--skip-full", action="store_true", help="only the waits-scoped tables")
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.segments)))
        return 0
    if args.prepare:
        prepare_waits(args.prepare, args.segments, args.waits or None, args.path)
        return 0
    if args.measure:
        print(json.dumps(measure_waits(args.measure)))
        return 0
    sizes = [int(s) for s in args.sizes.split(",")]
    waits_results = []
    for rows in sizes:
        waits_results.append(run_waits(rows, segments_for(rows)))
        print(waits_table(waits_results).splitlines()[-1], flush=True)
    fixed = [run_waits(rows, 1000, 1000) for rows in (100000, 1000000) if rows <= max(sizes)]
    for r in fixed:
        print(waits_table([r]).splitlines()[-1], flush=True)
    if args.skip_full:
        print("\n" + waits_table(waits_results) + "\n\n" + waits_table(fixed))
        if args.out:
            write_results(args.out, waits_results, fixed, [])
        return 0 if all(r["correct"] for r in waits_results + fixed) else 1
    results = []
    for rows in (int(s) for s in args.sizes.split(",")):
        child = subprocess.run([sys.executable, os.path.abspath(__file__), "--one", str(rows),
                                "--segments", str(segments_for(rows))],
                               stdout=subprocess.PIPE, universal_newlines=True, check=True)
        results.append(json.loads(child.stdout))
        print(table(results).splitlines()[-1], flush=True)
    print("\n" + table(results))
    if args.out:
        write_results(args.out, waits_results, fixed, results)
    return 0 if all(r["correct"] for r in results + waits_results + fixed) else 1


if __name__ == "__main__":
    sys.exit(main())
