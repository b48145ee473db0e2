"""Load generator on real Greenplum 7: many sessions holding many locks, a lock queue and a
global deadlock; then the cost of gp_hang_info and resolve_hang.yml (check mode) under
that load, next to the floor (counting the lock rows in SQL).

Usage (one command: sets up, measures, prints a Markdown table, tears everything down)::

    .venv/bin/python bench/gp7_load.py [--sessions 200] [--partitions 1000] [--waiters 10]
                                      [--repeat 1] [--out bench/results-gp7-load.md]

On the cluster of ``GPOPS_GP7_DIR`` / ``GPOPS_GP7_PORT`` (scripts/greenplum-cluster.sh;
started if needed, held with the tests' lock, tests/gp7/gpcluster.py):

1. Settings: the lock table of every node must hold ``sessions x partitions`` relation
   locks (a session's ``LOCK TABLE`` of the partitioned table takes one per partition on
   the coordinator and on every primary). ``max_locks_per_transaction`` (and the
   coordinator's ``max_connections`` when the sessions do not fit) are raised with
   gpconfig and the cluster restarted (``gpstop -ar``) when they are too small; at the
   end the previous values are set back and the cluster restarted again, unless
   ``--keep-settings``.
2. Load: a table ``bench_load_parts`` partitioned by range into ``--partitions``
   partitions; ``--sessions`` sessions each ``BEGIN; LOCK TABLE bench_load_parts IN ROW
   EXCLUSIVE MODE`` (held: granted locks on every partition of every node); one session
   asking ACCESS EXCLUSIVE on one partition (waits behind them all) and ``--waiters``
   sessions reading that partition, queued behind it (a lock queue); two sessions in a
   global deadlock on ``bench_load_dl`` (rows on segments 0 and 1 updated in opposite
   order, as scripts/demo_deadlock.py).
3. Measured, ``--repeat`` times each (median). Before the load: the count below and
   ``gp_hang_info`` on the idle cluster (the module's fixed cost). Under the load: the floor, with an open connection:
   ``SELECT count(*) FROM pg_catalog.pg_locks`` (on Greenplum 7 the coordinator's
   pg_locks holds every primary's rows), ``SELECT count(*) FROM
   gp_dist_random('pg_catalog.pg_locks')`` (the primaries' rows only) and ``SELECT *``
   of pg_locks fetched into Python; then through ``ansible-playbook`` on localhost: a
   ``ping`` play (Ansible's start-up), ``gp_hang_info`` rejecting its input (the start-up of
   this module: built with its module_utils, sent, started, imported; nothing read),
   ``gp_hang_info`` alone, ``gp_hang_info`` with its
   result saved as JSON and ``gp_report`` writing its files (result and report size),
   and ``resolve_hang.yml --check`` (the load stays). For each play: wall time, CPU
   (user + sys of the ansible-playbook process tree, ``RUSAGE_CHILDREN`` of a wrapper
   process), peak RSS (the largest single process of that tree). The findings of
   gp_hang_info must include the global deadlock and the lock queue, or the run fails.
4. Teardown (always, try/finally): every load session closed (its transaction rolled
   back), the tables dropped, the settings set back, the cluster restored to healthy;
   a check that no bench session is left.
"""
import argparse
import concurrent.futures
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import time

from benchlib import ROOT, ansible_playbook, gp7_cluster, machine

PARTS = "bench_load_parts"
DL = "bench_load_dl"
APP = "bench_load"
PREPARED_DEFAULT = 250


def say(msg):
    print("gp7_load: %s" % msg, file=sys.stderr, flush=True)


# ------------------------------------------------------------------ settings

def read_settings(gp):
    names = ("max_connections", "max_locks_per_transaction", "max_prepared_transactions")
    qd = dict(gp.query("SELECT name, setting::int FROM pg_catalog.pg_settings WHERE name = ANY(%s)",
                       (list(names),), dbname="postgres"))
    seg = dict(gp.query("SELECT name, setting::int FROM pg_catalog.pg_settings WHERE name = ANY(%s)",
                        (list(names),), content=0, dbname="postgres"))
    return qd, seg


def needed_settings(qd, seg, sessions, partitions, waiters):
    """The max_connections (coordinator, primaries) and max_locks_per_transaction the load
    needs, or None when the current ones do. The lock table of a node has room for
    ``max_locks_per_transaction x (max_connections + max_prepared_transactions)`` locks
    (PostgreSQL's NLOCKENTS, lock.c), shared by all its sessions."""
    backends = sessions + waiters + 3
    qd_conn = max(qd["max_connections"], backends + 40)
    seg_conn = max(seg["max_connections"], 3 * qd_conn)
    locks = backends * (partitions + 20) * 1.3
    mlpt = max(qd["max_locks_per_transaction"],
               int(math.ceil(locks / (qd_conn + qd["max_prepared_transactions"]))),
               int(math.ceil(locks / (seg_conn + seg["max_prepared_transactions"]))))
    wanted = {"qd_conn": qd_conn, "seg_conn": seg_conn, "mlpt": mlpt}
    current = {"qd_conn": qd["max_connections"], "seg_conn": seg["max_connections"],
               "mlpt": qd["max_locks_per_transaction"]}
    return None if wanted == current else wanted


def apply_settings(gp, s):
    """gpconfig (coordinator and primaries apart for max_connections) and a restart."""
    cmd = ("gpconfig -c max_connections -v %d -m %d && gpconfig -c max_locks_per_transaction -v %d "
           "&& gpstop -ar -M fast" % (s["seg_conn"], s["qd_conn"], s["mlpt"]))
    say("setting max_connections %d (coordinator %d), max_locks_per_transaction %d; restarting"
        % (s["seg_conn"], s["qd_conn"], s["mlpt"]))
    proc = gp.as_os_user(cmd, timeout=600)
    if proc.returncode != 0:
        raise SystemExit("gpconfig/gpstop failed:\n%s%s" % (proc.stdout[-3000:], proc.stderr[-2000:]))
    from gpcluster import wait_for
    if not wait_for(gp.answers, timeout=120) or not wait_for(gp.healthy, timeout=120, interval=1):
        raise SystemExit("the cluster is not healthy after the restart")


# ------------------------------------------------------------------ load

class Load:
    """The sessions of the load; ``close()`` ends them all (rollback)."""

    def __init__(self, gp):
        self.gp = gp
        self.holders = []
        self.sessions = []  # background (waiting) sessions

    def session(self, label):
        s = self.gp.session("%s_%s" % (APP, label))
        self.sessions.append(s)
        return s

    def hold(self, count, workers=4):
        def one(i):
            conn = self.gp.connect(application_name="%s_holder" % APP, connect_timeout=30)
            conn.execute("BEGIN")
            conn.execute("LOCK TABLE %s IN ROW EXCLUSIVE MODE" % PARTS)
            return conn
        with concurrent.futures.ThreadPoolExecutor(workers) as pool:
            futures = [pool.submit(one, i) for i in range(count)]
            for fut in futures:
                try:
                    self.holders.append(fut.result())
                except Exception:
                    for f in futures:  # keep what opened, so that close() ends it
                        if f.done() and not f.exception() and f.result() not in self.holders:
                            self.holders.append(f.result())
                    raise

    def close(self):
        for s in self.sessions:
            try:
                s.close()
            except Exception as exc:  # noqa: BLE001 - teardown goes on
                say("closing %s: %s" % (s.label, exc))
        for conn in self.holders:
            try:
                conn.close()
            except Exception:  # noqa: BLE001
                pass
        self.sessions, self.holders = [], []


def setup_tables(gp, partitions):
    started = time.monotonic()
    gp.query("DROP TABLE IF EXISTS %s; DROP TABLE IF EXISTS %s" % (PARTS, DL))
    gp.query("CREATE TABLE %s (k int, v int) DISTRIBUTED BY (k) PARTITION BY RANGE (k) "
             "(START (0) END (%d) EVERY (1))" % (PARTS, partitions))
    gp.query("CREATE TABLE %s (id int, val int) DISTRIBUTED BY (id); "
             "INSERT INTO %s SELECT i, i FROM generate_series(1, 100) i" % (DL, DL))
    say("tables made in %.0f s" % (time.monotonic() - started))


def make_load(gp, load, sessions, waiters):
    started = time.monotonic()
    load.hold(sessions)
    say("%d sessions hold ROW EXCLUSIVE on every partition (%.0f s)" % (sessions, time.monotonic() - started))
    part = gp.query("SELECT inhrelid::regclass::text FROM pg_catalog.pg_inherits "
                    "WHERE inhparent = %s::regclass ORDER BY inhrelid LIMIT 1", (PARTS,))[0][0]
    ddl = load.session("ddl")
    ddl.sql("BEGIN")
    ddl.send("LOCK TABLE %s IN ACCESS EXCLUSIVE MODE" % part)
    if not ddl.waiting(1):
        raise SystemExit("the ACCESS EXCLUSIVE request on %s did not wait" % part)
    for i in range(waiters):
        load.session("reader%d" % i).send("SELECT count(*) FROM %s" % part)
    if waiters and not load.sessions[-1].waiting(1):
        raise SystemExit("the readers of %s did not queue" % part)
    rows = {}
    for seg, ident in gp.query("SELECT gp_segment_id, id FROM %s ORDER BY id" % DL):
        rows.setdefault(seg, ident)
    a, b = load.session("dl_a"), load.session("dl_b")
    update = "UPDATE %s SET val = val + 1 WHERE id = %%s" % DL
    for s in (a, b):
        s.sql("BEGIN")
    a.sql(update, (rows[0],))
    b.sql(update, (rows[1],))
    b.send(update, (rows[0],))
    a.send(update, (rows[1],))
    if not (a.waiting(1) and b.waiting(0.1)):
        raise SystemExit("the two deadlock sessions did not deadlock")
    say("lock queue on %s (1 ACCESS EXCLUSIVE + %d readers) and a global deadlock in place" % (part, waiters))
    return part, (a, b)


# ------------------------------------------------------------------ measurements

def timed_sql(gp, stmt, repeat, fetch_all=False):
    """Seconds of ``stmt`` on an open coordinator connection (median of ``repeat``) and
    its first value (or the number of rows fetched)."""
    times, value = [], None
    with gp.connect(application_name="%s_floor" % APP, dbname="postgres") as conn:
        for _ in range(repeat):
            started = time.monotonic()
            rows = conn.execute(stmt).fetchall()
            times.append(time.monotonic() - started)
            value = len(rows) if fetch_all else rows[0][0]
    return statistics.median(times), value


def lock_rows(gp):
    rows = gp.query("SELECT gp_segment_id, count(*), count(*) FILTER (WHERE NOT granted) "
                    "FROM pg_catalog.pg_locks GROUP BY 1 ORDER BY 1", dbname="postgres")
    return {seg: (total, waiting) for seg, total, waiting in rows}


def write_play(tmp, tasks):
    path = os.path.join(tmp, "play-%d.yml" % len(os.listdir(tmp)))
    with open(path, "w") as f:
        json.dump([{"hosts": "all", "gather_facts": False, "tasks": tasks}], f)  # JSON is YAML
    return path


def plays(tmp, statement_timeout):
    """The small playbooks of the measurements: (key, path, check mode)."""
    result = os.path.join(tmp, "result.json")
    report_dir = os.path.join(tmp, "report")
    args = {"statement_timeout": statement_timeout} if statement_timeout else {}
    return result, report_dir, [
        ("startup", write_play(tmp, [{"ansible.builtin.ping": {}}]), False),
        # The module's own start under Ansible: built, sent, started and imported, then it
        # rejects its input before any connection (argument spec), so nothing is read.
        ("module_startup", write_play(tmp, [{"gpops.greenplum.gp_hang_info": dict(args, policy="not-a-policy"),
                                             "ignore_errors": True}]), False),
        ("hang_info", write_play(tmp, [{"gpops.greenplum.gp_hang_info": args, "register": "r"}]), False),
        ("hang_info_report", write_play(tmp, [
            {"gpops.greenplum.gp_hang_info": args, "register": "r"},
            {"ansible.builtin.copy": {"content": "{{ r | to_json }}", "dest": result}},
            {"gpops.greenplum.gp_report": {"hang_info": "{{ r }}", "dest": report_dir, "cluster": "bench"}},
        ]), False),
        ("resolve_hang_check", os.path.join(ROOT, "playbooks", "resolve_hang.yml"), True),
    ]


def play_runs(gp, key, path, check, repeat, extra, report_dir=None):
    """``repeat`` runs of one play: median wall and CPU, largest RSS, stdout size."""
    runs = []
    for _ in range(repeat):
        if report_dir:
            shutil.rmtree(report_dir, ignore_errors=True)
        run = ansible_playbook(path, extra, gp.env(), check=check)
        if run.rc != 0:
            raise SystemExit("%s failed (exit %d):\n%s" % (key, run.rc, run.stdout[-4000:]))
        runs.append(run)
        say("%s: %.1f s wall, %.1f s CPU, %.0f MiB" % (key, run.wall_s, run.user_s + run.sys_s, run.maxrss_mib))
    return {"wall_s": statistics.median(r.wall_s for r in runs),
            "cpu_s": statistics.median(r.user_s + r.sys_s for r in runs),
            "maxrss_mib": max(r.maxrss_mib for r in runs),
            "stdout_bytes": len(runs[-1].stdout.encode())}


def measure_idle(gp, repeat, tmp, statement_timeout=None):
    """Before the load: the whole-cluster count and ``gp_hang_info`` on the idle cluster:
    the module's fixed cost (process, imports, connections, gangs, the statements that do
    not depend on the locks)."""
    _result, _report_dir, to_run = plays(tmp, statement_timeout)
    extra = {"gp_statement_timeout": statement_timeout} if statement_timeout else {}
    path = next(path for key, path, _check in to_run if key == "hang_info")
    return {"count_pg_locks": timed_sql(gp, "SELECT count(*) FROM pg_catalog.pg_locks", repeat),
            "hang_info": play_runs(gp, "hang_info (idle)", path, False, repeat, extra)}


def diagnose_in_process(gp, repeat, statement_timeout=None):
    """What ``gp_hang_info`` does inside its module process, timed in this process:
    ``hang_diagnosis.diagnose()`` (connections, the wait-scoped snapshot, analysis, triage)
    and ``as_dict()`` (the bounded result), without Ansible, the module's process start and
    imports, or the result's way back to the controller. Median wall and this process's
    CPU (the servers' CPU is not in it)."""
    from ansible_collections.gpops.greenplum.plugins.module_utils.analyse import hang_diagnosis
    params = gp.login(statement_timeout=statement_timeout or 30.0)
    runs = []
    for _ in range(repeat):
        wall, cpu = time.monotonic(), time.process_time()
        hang_diagnosis.diagnose(params).as_dict()
        runs.append((time.monotonic() - wall, time.process_time() - cpu))
        say("diagnose() in process: %.2f s wall, %.2f s CPU" % runs[-1])
    return {"wall_s": statistics.median(w for w, _ in runs), "cpu_s": statistics.median(c for _, c in runs)}


def measure(gp, repeat, tmp, statement_timeout=None):
    out = {"floor": {}, "plays": {}}
    out["floor"]["count_pg_locks"] = timed_sql(gp, "SELECT count(*) FROM pg_catalog.pg_locks", repeat)
    out["floor"]["count_dist_random"] = timed_sql(
        gp, "SELECT count(*) FROM gp_dist_random('pg_catalog.pg_locks')", repeat)
    out["floor"]["fetch_pg_locks"] = timed_sql(gp, "SELECT * FROM pg_catalog.pg_locks", repeat, fetch_all=True)
    out["in_process"] = diagnose_in_process(gp, repeat, statement_timeout)
    result, report_dir, to_run = plays(tmp, statement_timeout)
    extra = {"gp_statement_timeout": statement_timeout} if statement_timeout else {}
    for key, path, check in to_run:
        out["plays"][key] = play_runs(gp, key, path, check, repeat, extra, report_dir)
        if key == "hang_info_report":
            with open(result) as f:
                doc = json.load(f)
            out["result_bytes"] = os.path.getsize(result)
            out["classes"] = sorted({f["class"] for f in doc.get("findings", [])})
            out["summary"] = doc.get("summary")
            out["report_bytes"] = sum(os.path.getsize(os.path.join(report_dir, n)) for n in os.listdir(report_dir))
            out["report_files"] = sorted(os.listdir(report_dir))
    return out


# ------------------------------------------------------------------ output

def mib(n):
    return "%.1f MiB" % (n / 1048576.0) if n >= 1048576 else "%.0f KiB" % (n / 1024.0)


def markdown(args, settings, locks, m, took):
    total = sum(t for t, _ in locks.values())
    waiting = sum(w for _, w in locks.values())
    coord = locks.get(-1, (0, 0))[0]
    floor = m["floor"]
    p = m["plays"]
    start = p["startup"]["wall_s"]
    mstart = p["module_startup"]["wall_s"]
    count = max(floor["count_pg_locks"][0], 1e-3)
    lines = [
        "# Collection cost on real Greenplum 7 under load",
        "",
        "Measured by `bench/gp7_load.py --sessions %d --partitions %d --waiters %d --repeat %d` on %s;"
        % (args.sessions, args.partitions, args.waiters, args.repeat, machine()),
        "the demo cluster of `scripts/greenplum-cluster.sh` (Greenplum 7.0.0-beta.0, coordinator, standby,",
        "3 primaries with mirrors, all on this host) with max_connections %d (coordinator %d) and"
        % (settings["seg_conn"], settings["qd_conn"]),
        "max_locks_per_transaction %d. Whole run (set-up, measurements, teardown): %.0f s." % (settings["mlpt"], took),
        "",
        "Load: %d sessions each holding ROW EXCLUSIVE on all %d partitions of one table (on the"
        % (args.sessions, args.partitions),
        "coordinator and every primary), one ACCESS EXCLUSIVE request on a partition waiting behind them",
        "with %d readers queued behind it, and one global deadlock of two sessions." % args.waiters,
        "",
        "Lock rows under load: **%d** in `pg_catalog.pg_locks` (coordinator %d, primaries %s), %d of them waiting."
        % (total, coord, ", ".join("seg%d %d" % (s, t) for s, (t, _) in sorted(locks.items()) if s >= 0), waiting),
        "",
        "| what | wall (s) | CPU user+sys (s) | peak RSS (MiB) | result | report files |",
        "|---|---:|---:|---:|---:|---:|",
        "| floor: `SELECT count(*) FROM pg_catalog.pg_locks` (whole cluster on GP7) | %.3f | - | - | %d rows | - |"
        % floor["count_pg_locks"],
        "| floor: `SELECT count(*) FROM gp_dist_random('pg_catalog.pg_locks')` (primaries) | %.3f | - | - | %d rows | - |"
        % floor["count_dist_random"],
        "| `SELECT * FROM pg_catalog.pg_locks`, every row fetched into Python (psycopg) | %.3f | - | - | %d rows | - |"
        % floor["fetch_pg_locks"],
        "| `hang_diagnosis.diagnose()` in this process (what the module does, without Ansible) | %.2f | %.2f | - | - | - |"
        % (m["in_process"]["wall_s"], m["in_process"]["cpu_s"]),
        "| Ansible start-up: a play with one `ping` task | %.2f | %.2f | %.0f | - | - |"
        % (start, p["startup"]["cpu_s"], p["startup"]["maxrss_mib"]),
        "| `gp_hang_info` start-up: the module rejecting its input (built, sent, started, imported; no connection) | %.2f | %.2f | %.0f | - | - |"
        % (mstart, p["module_startup"]["cpu_s"], p["module_startup"]["maxrss_mib"]),
        "| `gp_hang_info` (one task) | %.2f | %.2f | %.0f | %s | - |"
        % (p["hang_info"]["wall_s"], p["hang_info"]["cpu_s"], p["hang_info"]["maxrss_mib"], mib(m["result_bytes"])),
        "| `gp_hang_info` + result saved as JSON + `gp_report` | %.2f | %.2f | %.0f | %s | %s |"
        % (p["hang_info_report"]["wall_s"], p["hang_info_report"]["cpu_s"], p["hang_info_report"]["maxrss_mib"],
           mib(m["result_bytes"]), mib(m["report_bytes"])),
        "| `resolve_hang.yml --check` | %.2f | %.2f | %.0f | stdout %s | none (check mode) |"
        % (p["resolve_hang_check"]["wall_s"], p["resolve_hang_check"]["cpu_s"],
           p["resolve_hang_check"]["maxrss_mib"], mib(p["resolve_hang_check"]["stdout_bytes"])),
        "",
        "`gp_hang_info` minus the start-up of the same module under Ansible: %.2f s, **%.2f x** the whole-cluster"
        % (p["hang_info"]["wall_s"] - mstart, (p["hang_info"]["wall_s"] - mstart) / count),
        "count (target of issue 12: 1.5 x); minus the `ping` play only: %.2f s, %.2f x (the module's start-up"
        % (p["hang_info"]["wall_s"] - start, (p["hang_info"]["wall_s"] - start) / count),
        "is %.2f s above `ping`'s: Ansible building and sending the module with its module_utils, their"
        % (mstart - start),
        "compilation from the zip, psycopg's import). The diagnosis itself, in process: %.2f s, %.2f x the count;"
        % (m["in_process"]["wall_s"], m["in_process"]["wall_s"] / count),
        "the rest of the module's time is its start-up and its result's way back to the controller.",
        "",
        "On the idle cluster, before the load (%d lock rows counted in %.3f s), `gp_hang_info` took %.2f s wall,"
        % (m["idle"]["count_pg_locks"][1], m["idle"]["count_pg_locks"][0], m["idle"]["hang_info"]["wall_s"]),
        "%.2f s CPU: %.2f s above the start-up, its fixed cost (module process and imports, connections and"
        % (m["idle"]["hang_info"]["cpu_s"], m["idle"]["hang_info"]["wall_s"] - start),
        "gangs, the statements that do not depend on the locks). What the load added to it: %.2f s, %.1f x what"
        % (p["hang_info"]["wall_s"] - m["idle"]["hang_info"]["wall_s"],
           (p["hang_info"]["wall_s"] - m["idle"]["hang_info"]["wall_s"])
           / max(floor["count_pg_locks"][0] - m["idle"]["count_pg_locks"][0], 1e-3)),
        "the load added to the count.",
        "Findings of gp_hang_info: %s." % ", ".join(m["classes"]),
        "",
        "Wall and CPU: median of %d; CPU and peak RSS are those of the `ansible-playbook` process tree" % args.repeat,
        "(controller, its workers and the module's process; `RUSAGE_CHILDREN` of a wrapper process), peak RSS",
        "being the largest single process. Result: bytes of the module's registered result as JSON; report",
        "files: bytes of what `gp_report` writes (%s)." % ", ".join(m["report_files"]),
        "The floor is timed on an open connection (no connection set-up).",
        "",
    ]
    return "\n".join(lines)


# ------------------------------------------------------------------ main

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", type=int, default=200, help="sessions holding locks on every partition")
    ap.add_argument("--partitions", type=int, default=1000)
    ap.add_argument("--waiters", type=int, default=10, help="readers queued behind the ACCESS EXCLUSIVE request")
    ap.add_argument("--repeat", type=int, default=1, help="runs of each measurement (median)")
    ap.add_argument("--keep-settings", action="store_true",
                    help="leave the raised max_connections / max_locks_per_transaction (saves two restarts)")
    ap.add_argument("--statement-timeout", type=float,
                    help="seconds: the collection's statement_timeout (default: the modules' own)")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results-gp7-load.md"))
    args = ap.parse_args()
    for name in ("sessions", "partitions", "repeat"):
        if getattr(args, name) < 1:
            ap.error("--%s must be at least 1" % name)
    if args.waiters < 0:
        ap.error("--waiters must not be negative")
    began = time.monotonic()
    with gp7_cluster() as gp:
        qd, seg = read_settings(gp)
        before = {"qd_conn": qd["max_connections"], "seg_conn": seg["max_connections"],
                  "mlpt": qd["max_locks_per_transaction"]}
        wanted = needed_settings(qd, seg, args.sessions, args.partitions, args.waiters)
        load = Load(gp)
        tmp = tempfile.mkdtemp(prefix="gpops-gp7-load-")
        try:
            if wanted:
                apply_settings(gp, wanted)
            idle = measure_idle(gp, args.repeat, tmp, args.statement_timeout)
            setup_tables(gp, args.partitions)
            make_load(gp, load, args.sessions, args.waiters)
            locks = lock_rows(gp)
            m = measure(gp, args.repeat, tmp, args.statement_timeout)
            m["idle"] = idle
            if "global_deadlock" not in m["classes"] or "blocking_chain" not in m["classes"]:
                raise SystemExit("gp_hang_info missed the load's global deadlock or lock queue: %s" % m["classes"])
        finally:
            load.close()
            gp.end_test_sessions()
            try:
                gp.query("DROP TABLE IF EXISTS %s; DROP TABLE IF EXISTS %s" % (PARTS, DL))
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
                if wanted and not args.keep_settings:
                    apply_settings(gp, before)
        left = gp.query("SELECT count(*) FROM pg_catalog.pg_stat_activity WHERE application_name LIKE %s",
                        (APP + "%",), dbname="postgres")[0][0]
        if left:
            raise SystemExit("%d bench sessions are left" % left)
    text = markdown(args, wanted or before, locks, m, time.monotonic() - began)
    with open(args.out, "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
