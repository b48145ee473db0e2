#!/usr/bin/env python3
"""Benchmark: how long a commit hangs in SyncRep after a mirror loss, with
``playbooks/resolve_hang.yml`` against what Greenplum takes by itself.

Usage: ``.venv/bin/python bench/mirror_failure.py [--target gp7|sandbox|both] [--runs 3]``

Per run: the mirror of content 0 is stopped, a distributed INSERT owned by content 0
starts and waits in SyncRep on its primary, then ``ansible-playbook
playbooks/resolve_hang.yml`` runs. Measured: seconds from the start of
``ansible-playbook`` to the commit returning, and the playbook's own wall time.

On the real Greenplum 7 demo cluster (``--target gp7``; ``GPOPS_GP7_DIR`` /
``GPOPS_GP7_PORT``, started if needed, held with the tests' lock, restored to healthy
after every run: mirror started, gprecoverseg when FTS marked it down, sync
replication back on), three scenarios:

- ``fts_default``: Greenplum's FTS settings (grace 30 s, probe interval 60 s) and the
  play started at once: it reads when the grace period ends from the primary's FTS
  log line, waits for it (``gp_mirror_failure_wait_for_grace``) and probes again.
- ``probe_after_grace``: FTS probing only when asked (``gp_fts_probe_interval`` 3600 s
  with gpconfig + gpstop -u), the mirror down longer than the 30 s grace period: the
  playbook's FTS probe releases the commit.
- ``sync_off``: FTS held back (interval and grace period 3600 s), ``-e
  gp_allow_sync_off=true``: the playbook switches the primary's sync replication off.

On the sandbox (``--target sandbox``; tests/sandbox, GPSANDBOX_DIR / GPSANDBOX_PORT,
started if needed), two scenarios:

- ``fts_paused``: FTS paused (not acting at all, as when it is hung). The FTS probe
  cannot finish; the playbook's probe is bounded by ``gp_mirror_failure_probe_timeout``
  (the sandbox's FTS settings probe_timeout x (probe_retries + 1) + 5 s margin, what
  gp_fts_probe computes from Greenplum's GUCs); then sync replication is switched off
  (``gp_allow_sync_off=true``).
- ``fts_idle``: FTS running with a 3600 s probe interval (acting only when asked, as in
  the GP7 captures) and the mirror down longer than the grace period: the playbook's
  FTS probe releases the commit.

Greenplum by itself: the mirror is marked down at the first probe after
``gp_fts_mark_mirror_down_grace_period`` (30 s) since the walsender disconnect; FTS
probes every ``gp_fts_probe_interval`` (60 s): 30 to 90 s, and never while FTS is
paused or hung. The figures of each target are kept in bench/results-mirror.json;
bench/results-mirror.md shows them side by side.
"""
import argparse
import contextlib
import os
import time

from benchlib import ROOT, Results, ansible_playbook, cell, gp7_cluster

CONTENT = 0
GP_GRACE_S = 30
GP_INTERVAL_S = 60
PLAYBOOK = os.path.join(ROOT, "playbooks", "resolve_hang.yml")
GP7_TABLE = "bench_mirror"


# ------------------------------------------------------------------ the sandbox

def sandbox_runs(runs):
    from gpsandbox import Sandbox
    from mirror_helpers import ensure_table, fts_settings
    sb = Sandbox.from_env()
    sb.start(segments=3, mirrors=True, replication_conf="gp7")
    ensure_table(sb)
    fts = sb.state()["fts"]
    probe_timeout = fts["probe_timeout"] * (fts["probe_retries"] + 1) + fts["probe_retries"] + 5
    results = {}
    for scenario in ("fts_paused", "fts_idle"):
        with fts_settings(sb, probe_interval=3600):
            results[scenario] = [sandbox_run(sb, scenario, probe_timeout, fts["mirror_down_grace_period"])
                                 for _ in range(runs)]
        print("sandbox", scenario, ["%.2f" % r["commit_s"] for r in results[scenario]], flush=True)
    note = ("sandbox FTS: probe_timeout %.0f s, probe_retries %d, grace %.0f s; the playbook's probe is bounded "
            "by %.0f s" % (fts["probe_timeout"], fts["probe_retries"], fts["mirror_down_grace_period"],
                           probe_timeout))
    return results, note


def sandbox_run(sb, scenario, probe_timeout, grace):
    from mirror_helpers import Commit, mirror_lost, module_args, wait_for
    with mirror_lost(sb, CONTENT) as stopped_at:
        commit = Commit(sb, CONTENT).start_waiting()
        if scenario == "fts_idle":
            sb.fts.resume()
            time.sleep(max(0.0, stopped_at + grace + 1 - time.monotonic()))
        extra = dict(gp_hosts="all", gp_allow_sync_off=True, gp_mirror_failure_probe_timeout=probe_timeout,
                     **{"gp_" + k: v for k, v in module_args(sb).items()})
        started = time.monotonic()
        run = ansible_playbook(PLAYBOOK, extra)
        if not wait_for(lambda: commit.done, 60):
            raise SystemExit("the commit still waits after the playbook:\n" + run.stdout[-4000:])
        if run.rc != 0 or commit.error:
            raise SystemExit("playbook failed (%s):\n%s" % (commit.error, run.stdout[-4000:]))
        return {"commit_s": commit.ended_at - started, "playbook_s": run.wall_s}


# ------------------------------------------------------------------ real Greenplum 7

GP7_SCENARIOS = {
    # scenario: (FTS settings changed with gpconfig, wait for the grace period first, extra vars)
    "fts_default": ({}, False, {}),
    "probe_after_grace": ({"gp_fts_probe_interval": 3600}, True, {}),
    "sync_off": ({"gp_fts_probe_interval": 3600, "gp_fts_mark_mirror_down_grace_period": 3600}, False,
                 {"gp_allow_sync_off": True}),
}


@contextlib.contextmanager
def gp7_fts_settings(gp, settings):
    """FTS GUCs set with gpconfig + gpstop -u (reloadable), reset (gpconfig -r) on exit."""
    def gpconfig(args):
        proc = gp.as_os_user("%s && gpstop -u -a" % " && ".join("gpconfig " + a for a in args))
        if proc.returncode != 0:
            raise SystemExit("gpconfig failed:\n%s%s" % (proc.stdout[-2000:], proc.stderr[-2000:]))
    if settings:
        gpconfig(["-c %s -v %s" % item for item in sorted(settings.items())])
    try:
        yield
    finally:
        if settings:
            gpconfig(["-r %s" % name for name in sorted(settings)])


def gp7_restore(gp):
    """Healthy again (tests/gp7 ``restore``: mirror started, gprecoverseg when FTS marked it
    down) and sync replication back on where the play switched it off."""
    from gpcluster import wait_for
    from playbook import run_tasks
    gp.restore()
    sync = gp.query("SELECT pg_catalog.current_setting('synchronous_standby_names')", content=CONTENT)[0][0]
    if sync != "*":
        wait_for(lambda: gp.query("SELECT 1 FROM pg_catalog.pg_stat_replication WHERE state = 'streaming'",
                                  content=CONTENT), timeout=60)
        auto, = run_tasks([("gp_sync_replication", {"state": "auto", "content": CONTENT})], env=gp.env())
        if auto.get("failed"):
            raise SystemExit("sync replication not back on for content %d: %s" % (CONTENT, auto.get("msg")))


def gp7_run(gp, scenario, key):
    from gpcluster import wait_for
    _, wait_grace, extra = GP7_SCENARIOS[scenario]
    gp.stop_node(CONTENT, "m")
    stopped_at = time.monotonic()
    s = gp.session("bench_mirror_commit")
    ended = {}
    try:
        s.send("INSERT INTO %s VALUES (%%s)" % GP7_TABLE, (key,))
        s._pending.add_done_callback(lambda fut: ended.setdefault("t", (time.monotonic(), fut.exception())))
        if not (s.waiting(2) and wait_for(lambda: gp.query(
                "SELECT 1 FROM pg_catalog.gp_stat_activity WHERE gp_segment_id = %s AND wait_event = 'SyncRep'",
                (CONTENT,)), timeout=10)):
            raise SystemExit("gp7: the commit did not wait in SyncRep")
        if wait_grace:
            time.sleep(max(0.0, stopped_at + GP_GRACE_S + 2 - time.monotonic()))
        started = time.monotonic()
        run = ansible_playbook(PLAYBOOK, extra, gp.env())
        if not wait_for(lambda: ended, 60):
            raise SystemExit("gp7 %s: the commit still waits after the playbook:\n%s"
                             % (scenario, run.stdout[-4000:]))
        if run.rc != 0 or ended["t"][1] is not None:
            raise SystemExit("gp7 %s: playbook failed (%s):\n%s" % (scenario, ended["t"][1], run.stdout[-4000:]))
        return {"commit_s": ended["t"][0] - started, "playbook_s": run.wall_s}
    finally:
        s.close()
        gp7_restore(gp)


def gp7_runs(runs):
    with gp7_cluster() as gp:
        gp.query("DROP TABLE IF EXISTS %s; CREATE TABLE %s (id int) DISTRIBUTED BY (id); "
                 "INSERT INTO %s SELECT generate_series(1, 30)" % (GP7_TABLE, GP7_TABLE, GP7_TABLE))
        try:
            key = gp.query("SELECT min(id) FROM %s WHERE gp_segment_id = %%s" % GP7_TABLE, (CONTENT,))[0][0]
            results = {}
            for scenario, (settings, _, _) in GP7_SCENARIOS.items():
                with gp7_fts_settings(gp, settings):
                    results[scenario] = [gp7_run(gp, scenario, key) for _ in range(runs)]
                print("gp7", scenario, ["%.2f" % r["commit_s"] for r in results[scenario]], flush=True)
        finally:
            gp.query("DROP TABLE IF EXISTS %s" % GP7_TABLE)
    return results, "Greenplum's FTS defaults: grace %d s, probe interval %d s" % (GP_GRACE_S, GP_INTERVAL_S)


# ------------------------------------------------------------------ the results

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--target", choices=("gp7", "sandbox", "both"), default="both")
    ap.add_argument("--runs", type=int, default=3)
    opts = ap.parse_args()
    results = Results("mirror")
    for target, measure in (("gp7", gp7_runs), ("sandbox", sandbox_runs)):
        if opts.target in (target, "both"):
            by_scenario, note = measure(opts.runs)
            rows = {}
            for scenario, runs in by_scenario.items():
                rows[scenario + ".commit"] = [r["commit_s"] for r in runs]
                rows[scenario + ".playbook"] = [r["playbook_s"] for r in runs]
            results.put(target, rows, note=note)
    write(results)


# (label, real GP7 scenario, sandbox scenario)
ROWS = (
    ("Mirror lost just before the play, Greenplum's FTS settings (grace 30 s, interval 60 s): "
     "commit returned (the play waits for the grace period and probes)", "fts_default", None),
    ("FTS probing only when asked (interval 3600 s), mirror down longer than the grace period: "
     "commit returned (the playbook's FTS probe)", "probe_after_grace", "fts_idle"),
    ("FTS not acting (GP7: interval and grace period 3600 s; sandbox: FTS paused, the probe times out), "
     "`-e gp_allow_sync_off=true`: commit returned (sync replication switched off)", "sync_off", "fts_paused"),
)


def write(results):
    gp7, sandbox = results.rows("gp7"), results.rows("sandbox")
    lines = [
        "# Mirror loss: time until the waiting commit returns",
        "",
        "Measured by `bench/mirror_failure.py`. Each run: the mirror of content 0 stopped, a distributed",
        "INSERT on content 0 waiting in SyncRep, then `ansible-playbook playbooks/resolve_hang.yml`.",
        "Seconds from the start of `ansible-playbook`; median (min-max, runs):",
        "",
        "| scenario | what | real Greenplum 7 | sandbox |",
        "|---|---|---|---|",
    ]
    for label, on_gp7, on_sandbox in ROWS:
        for what in ("commit", "playbook"):
            lines.append("| %s | %s | %s | %s |" % (
                label if what == "commit" else "", "commit returned" if what == "commit" else "whole playbook",
                cell(gp7.get("%s.%s" % (on_gp7, what))),
                cell(sandbox.get("%s.%s" % (on_sandbox, what))) if on_sandbox else "- (no such scenario)"))
    lines += [
        "",
        "- real Greenplum 7: the demo cluster of `scripts/greenplum-cluster.sh` (7.0.0-beta.0, coordinator,",
        "  standby, 3 primaries with mirrors, one host; %s), measured on %s."
        % (results.data.get("gp7", {}).get("note", "-"), results.when("gp7")),
        "- sandbox: tests/sandbox (3 primaries with mirrors; %s), measured on %s."
        % (results.data.get("sandbox", {}).get("note", "-"), results.when("sandbox")),
        "",
        "Greenplum by itself (defaults): the mirror is marked down at the first FTS probe after",
        "`gp_fts_mark_mirror_down_grace_period` (%d s) from the walsender disconnect, probes every" % GP_GRACE_S,
        "`gp_fts_probe_interval` (%d s): a commit waits %d to %d s, and forever while FTS is paused"
        % (GP_INTERVAL_S, GP_GRACE_S, GP_GRACE_S + GP_INTERVAL_S),
        "or hung. The playbook's time includes Ansible start-up, triage (one diagnosis of the",
        "whole cluster), the log timeline and, with the sandbox's FTS paused, the bounded FTS probe: with",
        "Greenplum's GUC defaults that bound is 20 s x (5 + 1) + 10 s = 130 s; set",
        "`gp_mirror_failure_probe_timeout` lower (a cycle with a dead mirror but live primaries takes",
        "about 5-8 s on GP7) to act sooner. In the first real-GP7 scenario the commit time includes the",
        "rest of the 30 s grace period, which the play waits out (`gp_mirror_failure_wait_for_grace`).",
        "",
        "Run: `.venv/bin/python bench/mirror_failure.py --target gp7|sandbox|both [--runs N]`",
        "(bench/README.md); the figures of each target are kept in bench/results-mirror.json.",
        "",
    ]
    text = "\n".join(lines)
    with open(os.path.join(ROOT, "bench", "results-mirror.md"), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
