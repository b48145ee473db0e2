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

Usage: ``.venv/bin/python bench/run.py [--sizes 10000,100000,1000000] [--out bench/results.md]``
(``make bench``). Target: 1,000,000 rows in under 10 s and 2 GiB on a 2-core machine.
"""
import argparse
import datetime
import json
import os
import platform
import random
import resource
import subprocess
import sys
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


def build(rows, segments):
    """The rows of a snapshot of about ``rows`` lock rows over ``segments`` primaries."""
    cluster = Cluster(segments)
    incidents = max(1, rows // 20000)
    for k in range(incidents):
        cluster.deadlock(2 + k % 2)
        cluster.chain()
        cluster.lock_queue()
        if segments > 1:
            cluster.dotted_no_deadlock()
    cluster.lock_queue(selects=max(2, rows // 1000))  # a hot table: a long queue behind one DDL
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


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default=",".join(str(s) for s in DEFAULT_SIZES),
                        help="comma-separated numbers of lock rows")
    parser.add_argument("--out", default=os.path.join(ROOT, "bench", "results.md"),
                        help="Markdown file for the results ('' for none)")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # child process: one size
    parser.add_argument("--segments", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.segments)))
        return 0
    results = []
    for rows in (int(s) for s in args.sizes.split(",")):
        child = subprocess.run([sys.executable, os.path.abspath(__file__), "--one", str(rows),
                                "--segments", str(segments_for(rows))],
                               stdout=subprocess.PIPE, universal_newlines=True, check=True)
        results.append(json.loads(child.stdout))
        print(table(results).splitlines()[-1], flush=True)
    text = table(results)
    print("\n" + text)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write("# Analysis benchmark\n\n"
                     "`make bench` (`.venv/bin/python bench/run.py`) on %s, Python %s, %d CPUs, %s.\n\n"
                     "Each size runs in its own process. Measured, as CPU time of the process: making the "
                     "row dicts from row tuples (what a driver's `dict_row` does), building the records "
                     "from them (`from_rows`), and `analyse()` (policy `youngest`); the CPU total counts "
                     "all three. Wall total is the same work by the clock: the machine is shared, and with "
                     "a load average above its 2 CPUs the wall time is the CPU time stretched by waiting "
                     "for a CPU. Peak RSS includes the input rows the benchmark holds. 'correct': every "
                     "injected deadlock found with one victim and every blocking tree's root found. "
                     "Target: 1,000,000 rows in under 10 s and 2 GiB.\n\n%s\n" % (
                         platform.platform(), platform.python_version(), os.cpu_count(),
                         datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), text))
    return 0 if all(r["correct"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
