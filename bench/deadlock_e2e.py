"""Global deadlock: seconds from the start of resolve_hang.yml until the deadlock is broken.

Usage: .venv/bin/python bench/deadlock_e2e.py [--runs 3]

On the sandbox (GPSANDBOX_DIR/GPSANDBOX_PORT, default /tmp/gpsb-bench and 7600; it is
started if needed and stopped at the end if this script started it), each run injects a
real global deadlock between two distributed sessions on two segments, starts
``ansible-playbook playbooks/resolve_hang.yml``, and records when the surviving session's
UPDATE returns and when the whole playbook ends. Greenplum's own detector is off by
default and, when on, acts every ``gp_global_deadlock_detector_period`` (120 s).
Writes bench/results-deadlock.md.
"""
import argparse
import os
import platform
import statistics
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "sandbox"))
os.environ.setdefault("GPSANDBOX_DIR", "/tmp/gpsb-bench")
os.environ.setdefault("GPSANDBOX_PORT", "7600")

from gpsandbox import Sandbox, scenarios  # noqa: E402


def one_run(sb):
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"), **sb.coordinator_env())
    cmd = [os.path.join(ROOT, ".venv", "bin", "ansible-playbook"), "-i", "localhost,", "-c", "local",
           "-e", "gp_hosts=localhost", "-e", "ansible_python_interpreter=" + sys.executable,
           os.path.join(ROOT, "playbooks", "resolve_hang.yml")]
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
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
        end = time.monotonic()
        watcher.join(30)
        if proc.returncode != 0 or "t" not in broken:
            raise SystemExit("run failed (exit %d):\n%s" % (proc.returncode, proc.stdout[-3000:]))
        return broken["t"] - start, end - start


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    sb = Sandbox.from_env()
    started = not sb.status().get("running")
    sb.start()
    try:
        runs = [one_run(sb) for _ in range(args.runs)]
    finally:
        if started:
            sb.stop()
    broken = [r[0] for r in runs]
    whole = [r[1] for r in runs]
    load = os.getloadavg()[0]
    rows = [("deadlock broken (survivor's UPDATE returned)", broken), ("whole playbook", whole)]
    lines = [
        "# Global deadlock: time from the start of resolve_hang.yml until it is broken",
        "",
        "Measured by `bench/deadlock_e2e.py` on %s (%s, %d CPUs), %s UTC, load average %.1f, on the"
        % (platform.node(), platform.machine(), os.cpu_count(), time.strftime("%Y-%m-%d %H:%M", time.gmtime()), load),
        "sandbox (3 primaries with mirrors). Each run: a real global deadlock between two distributed",
        "sessions on two segments, then `ansible-playbook playbooks/resolve_hang.yml` (triage with the",
        "evidence, cancel of the youngest transaction, diagnosis again after acting). Seconds from the",
        "start of `ansible-playbook` (%d runs):" % len(runs),
        "",
        "| what | min | median | max |",
        "|---|---|---|---|",
    ]
    for what, values in rows:
        lines.append("| %s | %.2f | %.2f | %.2f |" % (what, min(values), statistics.median(values), max(values)))
    lines += ["", "Greenplum by itself: the global deadlock detector is off by default "
              "(`gp_enable_global_deadlock_detector`), so the sessions wait forever; when on, it acts every "
              "`gp_global_deadlock_detector_period` (120 s by default): up to 120 s."]
    text = "\n".join(lines) + "\n"
    with open(os.path.join(ROOT, "bench", "results-deadlock.md"), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
