"""Command line: ``PYTHONPATH=tests/sandbox python -m gpsandbox COMMAND`` (see
docs/sandbox.md). Exit status 0 on success, 1 on a sandbox error, 2 on bad usage."""
import argparse
import json
import os
import signal
import sys
import time

from . import holder
from .cluster import FTS_DEFAULTS, REPLICATION_CONFS, Sandbox, SandboxError
from .scenarios import SCENARIOS, ScenarioError


def _parser():
    p = argparse.ArgumentParser(prog="gpsandbox", description="Greenplum-compatible sandbox cluster")
    p.add_argument("--base-dir", default=os.environ.get("GPSANDBOX_DIR", "/tmp/gpsandbox"),
                   help="base directory (env GPSANDBOX_DIR, default /tmp/gpsandbox)")
    p.add_argument("--base-port", type=int, default=int(os.environ.get("GPSANDBOX_PORT", "7000")),
                   help="coordinator port; primaries base+2.., mirrors after (env GPSANDBOX_PORT)")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("start", help="create and start the cluster (reuses a running one)")
    s.add_argument("--segments", type=int, default=3)
    s.add_argument("--no-mirrors", action="store_true")
    s.add_argument("--replication-conf", choices=REPLICATION_CONFS, default="gp7",
                   help="where primaries keep synchronous_standby_names: gp7 = "
                        "postgresql.auto.conf (ALTER SYSTEM), gp6 = gp_replication.conf")
    for key, value in FTS_DEFAULTS.items():
        s.add_argument("--fts-" + key.replace("_", "-"), type=type(value), default=None,
                       help="FTS setting %s (default %s)" % (key, value))

    sub.add_parser("stop", help="stop everything and remove the base directory")
    sub.add_parser("reset", help="undo what crashed tests or scenarios left behind")
    st = sub.add_parser("status", help="print the topology")
    st.add_argument("--json", action="store_true")

    i = sub.add_parser("inject", help="put a scenario in place and hold its sessions")
    i.add_argument("scenario", choices=sorted(SCENARIOS))
    i.add_argument("--content", type=int, default=None, help="segment (mirror_down_syncrep, "
                   "frozen_segment, prepared_xact)")
    i.add_argument("--waiters", type=int, default=None, help="waiters (blocking_chain, lock_queue)")
    i.add_argument("--orphan", action=argparse.BooleanOptionalAction, default=None,
                   help="prepared_xact: orphaned (default) or in doubt with its commit suspended")
    i.add_argument("--hold", type=float, default=0,
                   help="seconds to hold the sessions (0: until Ctrl-C / SIGTERM)")
    i.add_argument("--background", action="store_true",
                   help="hold in a background process; end it with `release` or `stop`")
    i.add_argument("--report", help=argparse.SUPPRESS)

    r = sub.add_parser("release", help="end background scenarios")
    r.add_argument("scenario", nargs="?", default=None)

    f = sub.add_parser("fts", help="control the FTS process")
    f.add_argument("action", choices=("pause", "resume", "status"))
    return p


def _inject(sb, args):
    kwargs = {k: getattr(args, k) for k in ("content", "waiters", "orphan")
              if getattr(args, k) is not None}
    if args.background:
        cli = []
        for k, v in kwargs.items():
            cli += ["--" + k, str(v)] if not isinstance(v, bool) else ["--%s%s" % ("" if v else "no-", k)]
        report = holder.spawn(sb, args.scenario, cli)
        print(json.dumps(report, indent=2))
        return 0
    stop = []
    signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
    scenario = SCENARIOS[args.scenario](sb, **kwargs)
    try:
        report = dict(scenario=args.scenario, pid=os.getpid(), sessions=scenario.sessions)
        if args.report:
            with open(args.report + ".tmp", "w") as fh:
                json.dump(report, fh, indent=2)
            os.replace(args.report + ".tmp", args.report)
        print(json.dumps(report, indent=2), flush=True)
        deadline = time.monotonic() + args.hold if args.hold > 0 else None
        while not stop and (deadline is None or time.monotonic() < deadline):
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        scenario.cleanup()
    return 0


def _print_status(status):
    stopped = [n for n in status.get("nodes", []) if not n["running"]]
    if status.get("running"):
        state = "running"
    elif stopped and len(stopped) < len(status["nodes"]):
        state = "degraded: %d of %d nodes stopped" % (len(stopped), len(status["nodes"]))
    else:
        state = "not running"
    print("sandbox %s (base port %s): %s" % (status["base_dir"], status["base_port"], state))
    if not status.get("nodes"):
        return
    print("  segments %s, mirrors %s, replication conf %s, FTS %s" % (
        status["segments"], status["mirrors"], status["replication_conf"],
        "paused" if status["fts"]["paused"] else ("running" if status["fts"]["running"] else "down")))
    print("  %4s %7s %4s %4s %4s %6s %5s  %s" % ("dbid", "content", "role", "pref", "mode",
                                                 "status", "port", "datadir"))
    for n in status["nodes"]:
        print("  %4d %7d %4s %4s %4s %6s %5d  %s%s" % (
            n["dbid"], n["content"], n["role"], n["preferred_role"], n.get("mode", "?"),
            n.get("status", "?"), n["port"], n["datadir"], "" if n["running"] else "  (stopped)"))


def main(argv=None):
    args = _parser().parse_args(argv)
    sb = Sandbox(args.base_dir, args.base_port)
    try:
        if args.command == "start":
            fts = {k: getattr(args, "fts_" + k) for k in FTS_DEFAULTS
                   if getattr(args, "fts_" + k) is not None}
            status = sb.start(segments=args.segments, mirrors=not args.no_mirrors,
                              replication_conf=args.replication_conf, fts_settings=fts or None)
            _print_status(status)
            print("started in %s s" % status.get("start_seconds"))
        elif args.command == "stop":
            sb.stop()
            print("sandbox %s stopped and removed" % sb.base_dir)
        elif args.command == "reset":
            left = sb.reset()
            print("sandbox %s %s" % (sb.base_dir, "clean" if not left else "still: " + "; ".join(left)))
            return 1 if left else 0
        elif args.command == "status":
            status = sb.status()
            if args.json:
                status["scenarios"] = holder.held(sb)
                print(json.dumps(status, indent=2))
            else:
                _print_status(status)
        elif args.command == "inject":
            return _inject(sb, args)
        elif args.command == "release":
            print("released: %s" % (", ".join(holder.release(sb, args.scenario)) or "nothing"))
        elif args.command == "fts":
            getattr(sb.fts, args.action)()
            print(json.dumps(sb.fts.status(), indent=2))
    except (SandboxError, ScenarioError) as exc:
        print("gpsandbox: %s" % exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
