#!/usr/bin/env python3
"""Benchmark: how long a commit hangs in SyncRep after a mirror loss, with
``playbooks/resolve_hang.yml`` against what Greenplum takes by itself.

On the sandbox (tests/sandbox; GPSANDBOX_DIR / GPSANDBOX_PORT choose it, started if
needed), per run: the mirror of content 0 is stopped, a distributed INSERT owned by
content 0 starts and waits in SyncRep on its primary, then ``ansible-playbook
playbooks/resolve_hang.yml -e gp_allow_sync_off=true`` runs. Measured: seconds from
the start of ``ansible-playbook`` to the commit returning, and the playbook's own
wall time. Two scenarios:

- ``fts_paused``: FTS paused (not acting at all, as when it is hung). The FTS probe
  cannot finish; the playbook's probe is bounded by ``gp_mirror_failure_probe_timeout``
  (the sandbox's FTS settings probe_timeout x (probe_retries + 1) + 5 s margin, what
  gp_fts_probe computes from Greenplum's GUCs); then sync replication is switched off.
- ``fts_idle``: FTS running with a 3600 s probe interval (acting only when asked, as in
  the GP7 captures) and the mirror down longer than the grace period: the playbook's
  FTS probe releases the commit.

Greenplum by itself: the mirror is marked down at the first probe after
``gp_fts_mark_mirror_down_grace_period`` (30 s) since the walsender disconnect; FTS
probes every ``gp_fts_probe_interval`` (60 s): 30 to 90 s, and never while FTS is
paused or hung.

Usage: ``.venv/bin/python bench/mirror_failure.py [--runs 3] [--out bench/results-mirror.md]``
"""
import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(ROOT, "tests", "integration"), os.path.join(ROOT, "tests", "sandbox"),
                os.path.join(ROOT, ".collections")]

from gpsandbox import Sandbox  # noqa: E402
from mirror_helpers import (  # noqa: E402
    Commit, ensure_table, fts_settings, mirror_lost, module_args, wait_for)

CONTENT = 0
GP_GRACE_S = 30
GP_INTERVAL_S = 60


def playbook(sb, probe_timeout):
    """Run resolve_hang.yml once; returns (start monotonic, end monotonic, process)."""
    args = module_args(sb)
    extra = dict(gp_hosts="all", gp_allow_sync_off=True, gp_mirror_failure_probe_timeout=probe_timeout,
                 **{"gp_" + k: v for k, v in args.items()})
    with tempfile.TemporaryDirectory(prefix="gpe-bench-") as tmp:
        inventory = os.path.join(tmp, "inventory")
        with open(inventory, "w") as f:
            f.write("localhost ansible_connection=local ansible_python_interpreter=%s\n" % sys.executable)
        cmd = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", inventory,
               os.path.join(ROOT, "playbooks", "resolve_hang.yml"),
               "-e", json.dumps(extra)]
        env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(ROOT, ".collections"),
                   ANSIBLE_LOCALHOST_WARNING="false", ANSIBLE_NOCOLOR="1")
        started = time.monotonic()
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
        return started, time.monotonic(), proc


def one_run(sb, scenario, probe_timeout, grace):
    with mirror_lost(sb, CONTENT) as stopped_at:
        commit = Commit(sb, CONTENT).start_waiting()
        if scenario == "fts_idle":
            sb.fts.resume()
            time.sleep(max(0.0, stopped_at + grace + 1 - time.monotonic()))
        started, ended, proc = playbook(sb, probe_timeout)
        if not wait_for(lambda: commit.done, 60):
            raise SystemExit("the commit still waits after the playbook:\n" + proc.stdout[-4000:])
        if proc.returncode != 0 or commit.error:
            raise SystemExit("playbook failed (%s):\n%s" % (commit.error, proc.stdout[-4000:]))
        return {"commit_s": commit.ended_at - started, "playbook_s": ended - started,
                "hung_before_s": started - commit.started_at}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results-mirror.md"))
    opts = ap.parse_args()
    sb = Sandbox.from_env()
    sb.start(segments=3, mirrors=True, replication_conf="gp7")
    ensure_table(sb)
    fts = sb.state()["fts"]
    probe_timeout = fts["probe_timeout"] * (fts["probe_retries"] + 1) + fts["probe_retries"] + 5
    results = {}
    for scenario in ("fts_paused", "fts_idle"):
        with fts_settings(sb, probe_interval=3600):
            runs = [one_run(sb, scenario, probe_timeout, fts["mirror_down_grace_period"])
                    for _ in range(opts.runs)]
        results[scenario] = runs
        print(scenario, ["%.2f" % r["commit_s"] for r in runs], flush=True)
    write(opts.out, results, fts, probe_timeout)


def _row(name, values):
    return "| %s | %.2f | %.2f | %.2f |" % (name, min(values), statistics.median(values), max(values))


def write(path, results, fts, probe_timeout):
    lines = [
        "# Mirror loss: time until the waiting commit returns",
        "",
        "Measured by `bench/mirror_failure.py` on %s (%s, %d cores), %s UTC, on the sandbox"
        % (platform.node(), platform.machine(), os.cpu_count(),
           datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M")),
        "(3 primaries with mirrors; sandbox FTS: probe_timeout %.0f s, probe_retries %d, grace %.0f s)."
        % (fts["probe_timeout"], fts["probe_retries"], fts["mirror_down_grace_period"]),
        "Each run: the mirror of content 0 stopped, a distributed INSERT on content 0 waiting in",
        "SyncRep, then `ansible-playbook playbooks/resolve_hang.yml -e gp_allow_sync_off=true`.",
        "Seconds from the start of `ansible-playbook` (%d runs each):" % len(results["fts_paused"]),
        "",
        "| what | min | median | max |",
        "|---|---|---|---|",
        _row("FTS paused: commit returned (FTS probe times out after %.0f s, then sync off)" % probe_timeout,
             [r["commit_s"] for r in results["fts_paused"]]),
        _row("FTS paused: whole playbook", [r["playbook_s"] for r in results["fts_paused"]]),
        _row("FTS idle (interval 3600 s), grace over: commit returned (the playbook's FTS probe)",
             [r["commit_s"] for r in results["fts_idle"]]),
        _row("FTS idle: whole playbook", [r["playbook_s"] for r in results["fts_idle"]]),
        "",
        "Greenplum by itself (defaults): the mirror is marked down at the first FTS probe after",
        "`gp_fts_mark_mirror_down_grace_period` (%d s) from the walsender disconnect, probes every"
        % GP_GRACE_S,
        "`gp_fts_probe_interval` (%d s): a commit waits %d to %d s, and forever while FTS is paused"
        % (GP_INTERVAL_S, GP_GRACE_S, GP_GRACE_S + GP_INTERVAL_S),
        "or hung. The playbook's time includes Ansible start-up, triage (one diagnosis of the",
        "whole cluster) and, with FTS paused, the bounded FTS probe: with Greenplum's GUC defaults",
        "that bound is 20 s x (5 + 1) + 10 s = 130 s; set `gp_mirror_failure_probe_timeout` lower",
        "(a cycle with a dead mirror but live primaries takes about 5-8 s on GP7) to act sooner.",
        "",
    ]
    with open(path, "w") as f:
        f.write("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
