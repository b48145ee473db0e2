"""Global deadlock: seconds from the start of resolve_hang.yml until the deadlock is broken.

Usage: .venv/bin/python bench/deadlock_e2e.py [--target gp7|sandbox|both] [--runs 3]

Each run makes a real global deadlock between two distributed sessions that update two
rows on two segments in opposite order (Greenplum's isolation2 gdd/dist-deadlock-01),
starts ``ansible-playbook playbooks/resolve_hang.yml``, and records when the surviving
session's UPDATE returns and when the whole playbook ends.

- ``--target gp7``: the real Greenplum 7 demo cluster of ``GPOPS_GP7_DIR`` /
  ``GPOPS_GP7_PORT`` (scripts/greenplum-cluster.sh; started if needed, held with the
  tests' lock, restored to healthy at the end).
- ``--target sandbox``: the PostgreSQL sandbox of ``GPSANDBOX_DIR`` / ``GPSANDBOX_PORT``
  (default /tmp/gpsb-bench and 7600; started if needed and stopped at the end if this
  script started it).

Greenplum's own detector is off by default and, when on, acts every
``gp_global_deadlock_detector_period`` (120 s). The figures of each target are kept in
bench/results-deadlock.json; bench/results-deadlock.md shows them side by side.
"""
import argparse
import os
import threading
import time

from benchlib import ROOT, Results, ansible_playbook, cell, gp7_cluster

PLAYBOOK = os.path.join(ROOT, "playbooks", "resolve_hang.yml")
TABLE = "bench_deadlock"


def sandbox_runs(runs):
    os.environ.setdefault("GPSANDBOX_DIR", "/tmp/gpsb-bench")
    os.environ.setdefault("GPSANDBOX_PORT", "7600")
    from gpsandbox import Sandbox, scenarios
    sb = Sandbox.from_env()
    started = not sb.status().get("running")
    sb.start()
    try:
        return [sandbox_run(sb, scenarios) for _ in range(runs)]
    finally:
        if started:
            sb.stop()


def sandbox_run(sb, scenarios):
    with scenarios.global_deadlock(sb) as handle:
        broken = {}

        def watch():
            while True:
                outcomes = handle.wait(timeout=0.05)
                if any(o and o.get("ok") for o in outcomes.values()):
                    broken["t"] = time.monotonic()
                    return
        watcher = threading.Thread(target=watch, daemon=True)
        start = time.monotonic()
        watcher.start()
        run = ansible_playbook(PLAYBOOK, {"gp_hosts": "localhost"}, sb.coordinator_env())
        watcher.join(30)
        if run.rc != 0 or "t" not in broken:
            raise SystemExit("sandbox run failed (exit %d):\n%s" % (run.rc, run.stdout[-3000:]))
        return broken["t"] - start, run


def gp7_runs(runs):
    with gp7_cluster() as gp:
        gp.query("DROP TABLE IF EXISTS %s; CREATE TABLE %s (id int, val int) DISTRIBUTED BY (id); "
                 "INSERT INTO %s SELECT i, i FROM generate_series(1, 100) i" % (TABLE, TABLE, TABLE))
        try:
            rows = {}
            for seg, ident in gp.query("SELECT gp_segment_id, id FROM %s ORDER BY id" % TABLE):
                rows.setdefault(seg, ident)
            return [gp7_run(gp, rows[0], rows[1]) for _ in range(runs)]
        finally:
            gp.end_test_sessions()
            gp.query("DROP TABLE IF EXISTS %s" % TABLE)


def gp7_run(gp, row0, row1):
    """One real global deadlock (two sessions, rows on segments 0 and 1), then the play."""
    a, b = gp.session("bench_dl_a"), gp.session("bench_dl_b")
    done = {}
    try:
        for s in (a, b):
            s.sql("BEGIN")
        update = "UPDATE %s SET val = val + 1 WHERE id = %%s" % TABLE
        a.sql(update, (row0,))
        b.sql(update, (row1,))
        b.send(update, (row0,))
        a.send(update, (row1,))
        if not (a.waiting(1) and b.waiting(0.1)):
            raise SystemExit("gp7: the two sessions did not deadlock")
        for s in (a, b):
            s._pending.add_done_callback(
                lambda fut, label=s.label: done.setdefault(label, (time.monotonic(), fut.exception() is None)))
        start = time.monotonic()
        run = ansible_playbook(PLAYBOOK, {}, gp.env())
        survivors = [t for t, ok in done.values() if ok]
        if run.rc != 0 or not survivors:
            raise SystemExit("gp7 run failed (exit %d, sessions ended: %s):\n%s"
                             % (run.rc, done, run.stdout[-3000:]))
        return min(survivors) - start, run
    finally:
        a.close()
        b.close()


ROWS = (("broken", "deadlock broken (survivor's UPDATE returned), s", "%.2f"), ("whole", "whole playbook, s", "%.2f"),
        ("cpu", "CPU of the playbook's process tree (user + sys), s", "%.2f"),
        ("maxrss", "peak RSS of one process of that tree, MiB", "%.0f"))


def write(results):
    sandbox, gp7 = results.data.get("sandbox", {}), results.data.get("gp7", {})
    lines = [
        "# Global deadlock: time from the start of resolve_hang.yml until it is broken",
        "",
        "Measured by `bench/deadlock_e2e.py`. Each run: a real global deadlock between two distributed",
        "sessions that update two rows on two segments in opposite order (Greenplum's isolation2",
        "`gdd/dist-deadlock-01`), then `ansible-playbook playbooks/resolve_hang.yml` (triage with the",
        "evidence, cancel of the youngest transaction, diagnosis again after acting, log timeline,",
        "summary). Times in seconds from the start of `ansible-playbook`; median (min-max, runs):",
        "",
        "| what | real Greenplum 7 | sandbox |",
        "|---|---|---|",
    ]
    for key, label, fmt in ROWS:
        lines.append("| %s | %s | %s |" % (label, cell(gp7.get("rows", {}).get(key), fmt),
                                          cell(sandbox.get("rows", {}).get(key), fmt)))
    lines += [
        "",
        "- real Greenplum 7: the demo cluster of `scripts/greenplum-cluster.sh` (7.0.0-beta.0, coordinator,",
        "  standby, 3 primaries with mirrors, on one host; its detector is on with a period of 3600 s so that",
        "  the playbook acts first), measured on %s." % results.when("gp7"),
        "- sandbox: the PostgreSQL sandbox of tests/sandbox (3 primaries with mirrors), measured on %s."
        % results.when("sandbox"),
        "",
        "Greenplum by itself: the global deadlock detector is off by default",
        "(`gp_enable_global_deadlock_detector`), so the sessions wait forever; when on, it acts every",
        "`gp_global_deadlock_detector_period` (120 s by default): up to 120 s.",
        "",
        "Run: `.venv/bin/python bench/deadlock_e2e.py --target gp7|sandbox|both [--runs N]`",
        "(bench/README.md); the figures of each target are kept in bench/results-deadlock.json.",
        "",
    ]
    text = "\n".join(lines)
    with open(os.path.join(ROOT, "bench", "results-deadlock.md"), "w") as f:
        f.write(text)
    print(text)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", choices=("gp7", "sandbox", "both"), default="both")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    results = Results("deadlock")
    for target, measure in (("gp7", gp7_runs), ("sandbox", sandbox_runs)):
        if args.target in (target, "both"):
            runs = measure(args.runs)
            print(target, ["broken %.2f s, playbook %.2f s" % (r[0], r[1].wall_s) for r in runs], flush=True)
            results.put(target, {"broken": [r[0] for r in runs], "whole": [r[1].wall_s for r in runs],
                                 "cpu": [r[1].user_s + r[1].sys_s for r in runs],
                                 "maxrss": [r[1].maxrss_mib for r in runs]})
    write(results)


if __name__ == "__main__":
    main()
