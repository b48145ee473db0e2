#!/usr/bin/env python3
"""Benchmark of gp_log_info's scan: a timeline over 1,000,000 CSV log lines.

The input is built from the real Greenplum 7 records in tests/fixtures/gp7_logs (every
scenario, every node), repeated with their times shifted until N lines are written, in
8 files (one per node, as a cluster's log directories hold them). Most records are the
routine LOG lines a real cluster writes (statements, checkpoints, connections); about 1
in 20 is an incident event. The scan runs as gp_log_info runs it (``LogScan.scan_file``
per file, then ``chains``) in its own process, so its peak RSS (``ru_maxrss``) is its own.
Checked: every incident record of the input is found (a fast wrong answer does not pass).

Usage: ``.venv/bin/python bench/log_timeline.py [--lines 1000000] [--out bench/results-logs.md]``
Target: 1,000,000 lines in seconds, memory bounded by the events kept, not the input.
"""
import argparse
import glob
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, ".collections"))
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "gp7_logs")


def build(folder, lines_wanted, routine=10):
    from ansible_collections.gpops.greenplum.plugins.module_utils.analyse import log_events as L
    records = []
    for path in sorted(glob.glob(os.path.join(FIXTURES, "*", "*.csv"))):
        with open(path, newline="") as f:
            buf = []
            for line in f:
                if L._starts_record(line) and buf:
                    records.append("".join(buf))
                    buf = []
                buf.append(line)
            if buf:
                records.append("".join(buf))
    # Real logs are mostly routine: each record that is no event is written ``routine`` times.
    one = L.LogScan()
    weighted = []
    for r in records:
        before = len(one._events)
        one.scan_lines(r.splitlines(True), {"content": 0})
        weighted += [r] * (1 if len(one._events) > before else routine)
    records = weighted
    per_round = sum(r.count("\n") for r in records)
    rounds = lines_wanted // per_round + 1
    files = [open(os.path.join(folder, "node%d.csv" % i), "w", newline="") for i in range(8)]
    written = 0
    expected = 0
    base = L.parse_time("2026-12-05 09:00:00 UTC")
    one = L.LogScan()
    for r in records:
        one.scan_lines(r.splitlines(True), {"content": 0})
    per_round_events = len(one.events())
    for k in range(rounds):
        shift = k * 3600.0
        for n, r in enumerate(records):
            if written >= lines_wanted:
                break
            t = L.parse_time(r[:30].split(",", 1)[0]) - base + shift
            stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(base + int(t)))
            text = stamp + r[19:]
            files[n % 8].write(text)
            written += text.count("\n")
        else:
            expected += per_round_events
            continue
        break
    for f in files:
        f.close()
    return written, rounds, per_round_events


def run_one(folder):
    from ansible_collections.gpops.greenplum.plugins.module_utils.analyse import log_events as L
    started = time.monotonic()
    scan = L.LogScan(max_lines=10 ** 8, max_events=10 ** 7, deadline=time.time() + 600)
    for path in sorted(glob.glob(os.path.join(folder, "*.csv"))):
        scan.scan_file(path, {"content": 0, "dbid": 2, "role": "p"})
    scanned = time.monotonic() - started
    events = scan.events()
    chains = L.chains(events)
    total = time.monotonic() - started
    print(json.dumps({"lines": scan.lines, "records": scan.records, "events": len(events), "chains": len(chains),
                      "skipped": scan.skipped, "scan_s": round(scanned, 2), "total_s": round(total, 2),
                      "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)}))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=1000000)
    ap.add_argument("--out", default=None)
    ap.add_argument("--routine", type=int, default=10, help="copies of each routine record per round")
    ap.add_argument("--child", default=None)
    args = ap.parse_args()
    if args.child:
        run_one(args.child)
        return
    with tempfile.TemporaryDirectory(prefix="gpops-logbench-") as folder:
        written, rounds, per_round = build(folder, args.lines, args.routine)
        size = sum(os.path.getsize(p) for p in glob.glob(os.path.join(folder, "*.csv")))
        proc = subprocess.run([sys.executable, __file__, "--child", folder], capture_output=True, text=True)
        if proc.returncode:
            sys.exit(proc.stderr)
        result = json.loads(proc.stdout)
    result["input_mib"] = round(size / 1048576.0, 1)
    assert result["skipped"] == 0, result
    assert result["events"] >= per_round * (rounds - 1), (result, per_round, rounds)
    line = ("| %d | %.1f | %d | %d | %.2f | %.2f | %.1f |" % (
        result["lines"], result["input_mib"], result["events"], result["chains"], result["scan_s"],
        result["total_s"], result["peak_rss_mib"]))
    print(json.dumps(result))
    if args.out:
        with open(args.out, "w") as f:
            f.write("# gp_log_info benchmark\n\n%s, Python %s, %d CPU(s), %s\n\n"
                    % (platform.platform(), platform.python_version(), os.cpu_count(),
                       time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())))
            f.write("Routine records repeated %d times per round (real logs are mostly routine).\n\n" % args.routine)
            f.write("| lines | input MiB | events | chains | scan s | scan + chains s | peak RSS MiB |\n")
            f.write("|---|---|---|---|---|---|---|\n%s\n" % line)


if __name__ == "__main__":
    main()
