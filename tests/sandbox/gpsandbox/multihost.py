"""The sandbox cluster spread over several hosts, as a real Greenplum cluster is:
a coordinator host and segment hosts with Greenplum's *group mirroring* (all the
mirrors of one host's primaries live on the next host), used by the molecule
scenarios (docs/molecule.md), whose hosts are podman containers sharing the host
network.

Every host runs this module with the same topology arguments and writes the same
state file (``sandbox.json``, each node with its ``host``), then starts only its
own nodes, in three phases run on all hosts in turn:

``servers``  the coordinator and primaries of this host (initdb, start, the
             gpsim catalog); the coordinator host also fills
             ``gp_segment_configuration`` with each node's host as hostname and
             address (every host resolves every host name to 127.0.0.1: host
             network, distinct ports);
``mirrors``  the mirrors of this host (pg_basebackup from their primary, which
             runs on another host), then ``synchronous_standby_names = '*'`` on
             those primaries, as FTS sets it;
``fts``      the FTS process (coordinator host).

Ports and data directories are those of the one-host sandbox (cluster.py), so
ports never collide across hosts. The sandbox's own scenarios and commands
(``python -m gpsandbox inject|status|fts``) work on the coordinator host; node
operations (stop, freeze) are done by the caller on the node's own host (or by
stopping or pausing the whole host).

Command line (on each host): ``python3 -m gpsandbox.multihost --coordinator-host
cdw --segment-hosts sdw1,sdw2 [--primaries-per-host 1] up servers|mirrors|fts``,
``... layout`` (the topology as JSON), and ``hold-deadlock`` (below).
"""
import argparse
import json
import os
import signal
import socket
import sys
import time

from .cluster import FTS_DEFAULTS, Sandbox, SandboxError
from .scenarios import GlobalDeadlock

PHASES = ("servers", "mirrors", "fts")


def layout(coordinator_host, segment_hosts, primaries_per_host=1, base_port=7000,
           base_dir="/tmp/gpsandbox"):
    """The nodes of the cluster (list of dicts: dbid, content, role, port, datadir,
    name, host): the coordinator on coordinator_host; primaries_per_host primaries
    on each segment host, contents in host order; the mirrors of host i's
    primaries on host i+1 (the last host's on the first). Raises SandboxError
    unless there are at least two segment hosts (a mirror never shares its
    primary's host)."""
    if len(segment_hosts) < 2:
        raise SandboxError("group mirroring needs at least two segment hosts, not %r"
                           % (segment_hosts,))
    if primaries_per_host < 1:
        raise SandboxError("primaries_per_host must be at least 1, not %r" % primaries_per_host)
    n = len(segment_hosts)
    nodes = Sandbox(base_dir, base_port)._layout(n * primaries_per_host, mirrors=True)
    for node in nodes:
        if node["content"] == -1:
            node["host"] = coordinator_host
        else:
            i = node["content"] // primaries_per_host
            node["host"] = segment_hosts[i if node["role"] == "p" else (i + 1) % n]
    return nodes


class HostSandbox(Sandbox):
    """The part of a multi-host sandbox that lives on this host (``host``)."""

    def __init__(self, nodes, host=None, base_dir="/tmp/gpsandbox", base_port=7000,
                 fts_settings=None):
        super().__init__(base_dir, base_port)
        self.host = host or socket.gethostname()
        self.all_nodes = nodes
        self.fts_settings = dict(FTS_DEFAULTS, **(fts_settings or {}))

    def mine(self, role=None, coordinator=None):
        return [n for n in self.all_nodes if n["host"] == self.host
                and (role is None or n["role"] == role)
                and (coordinator is None or (n["content"] == -1) == coordinator)]

    def up(self, phase):
        """Run one phase (``servers``, ``mirrors``, ``fts``) for this host's nodes;
        a phase already done is not done again. Raises SandboxError."""
        if phase == "servers":
            self._servers()
        elif phase == "mirrors":
            for mirror in self.mine("m"):
                if self._postmaster_pid(mirror["datadir"]):
                    continue
                primary = next(n for n in self.all_nodes
                               if n["role"] == "p" and n["content"] == mirror["content"])
                self._make_mirror(primary, mirror)
                self._wait_streaming(primary["port"], 60)
                self.set_syncrep(primary["port"], "*", "gp7")
        elif phase == "fts":
            if self.mine(coordinator=True):
                self.fts.start(self.fts_settings)
        else:
            raise SandboxError("phase must be one of %s, not %r" % (", ".join(PHASES), phase))

    def _servers(self):
        firsts = [n for n in self.mine("p") if not self._postmaster_pid(n["datadir"])]
        if not firsts and self.state():
            return
        for d in (self.base_dir, self._path("logs"), self._path("lib")):
            os.makedirs(d, exist_ok=True)
            os.chmod(d, 0o755)
            self._chown(d)
        module = self._install_module()
        self._write_state(dict(
            base_dir=self.base_dir, base_port=self.base_port, segments=max(
                n["content"] for n in self.all_nodes) + 1, mirrors=True, replication_conf="gp7",
            os_user=self._user(), pg_bin=self.pg_bin, module=module, nodes=self.all_nodes,
            fts=self.fts_settings, created_at=time.time(), host=self.host))
        if not firsts:
            return
        self._initdb_nodes(firsts, module)
        self.write_fts_conf(reload=False)
        self._parallel(self._start_server, firsts)
        self._parallel(self._install_sql, firsts)
        if any(n["content"] == -1 for n in firsts):
            with self._connect_port(self.base_port) as conn:
                for n in self.all_nodes:
                    conn.execute(
                        "INSERT INTO gpsim.gp_segment_configuration VALUES "
                        "(%s, %s, %s, %s, %s, 'u', %s, %s, %s, %s)",
                        (n["dbid"], n["content"], n["role"], n["role"],
                         "s" if n["content"] >= 0 else "n",
                         n["port"], n["host"], n["host"], n["datadir"]))


class CommittingDeadlock(GlobalDeadlock):
    """The sandbox's global deadlock (sessions A, older, and B, younger), whose
    survivor commits: once one session's blocked UPDATE returns, it marks its row
    (``val = -1``) and COMMITs; the other's outcome (cancelled, terminated) is
    recorded. ``outcome()`` says what happened to each."""

    name = "committing_deadlock"

    def settle(self):
        """Commit the session whose statement returned; {label: outcome dict}."""
        out = {}
        for label, s in self._sessions.items():
            if s.thread is not None and not s.running() and s.outcome and "committed" not in s.outcome:
                if s.outcome["ok"]:
                    key = self.ids[0] if label == "A" else self.ids[1]
                    s.run("UPDATE %s SET val = -1 WHERE id = %d" % (self.table, key))
                    s.run("COMMIT")
                    s.outcome["committed"] = True
                    s.outcome["marked_id"] = key
                else:
                    s.outcome["committed"] = False
            out[label] = dict(s.as_dict(), outcome=s.outcome)
        return out


def hold_deadlock(sb, report):
    """Put a CommittingDeadlock in place and hold it until SIGTERM, rewriting the
    JSON file `report` ({scenario, pid, table, ids, sessions: {label: {...,
    outcome}}}) whenever a session settles. Detaches first (the caller gets the
    report file once the deadlock is in place)."""
    child = os.fork()
    if child:
        deadline = time.monotonic() + 120
        while not os.path.exists(report):
            if os.waitpid(child, os.WNOHANG)[0] or time.monotonic() > deadline:
                with open(report + ".log") as f:
                    raise SandboxError("the deadlock was not put in place: %s" % f.read()[-2000:])
            time.sleep(0.1)
        return
    os.setsid()
    devnull = os.open(os.devnull, os.O_RDWR)
    log = os.open(report + ".log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    for fd in (0, 1, 2):
        os.dup2(devnull if fd == 0 else log, fd)
    stop = []
    signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
    try:
        scenario = CommittingDeadlock(sb)
        try:
            last = None
            while not stop:
                now = dict(scenario=scenario.name, pid=os.getpid(), table=scenario.table,
                           ids=scenario.ids, sessions=scenario.settle())
                if now != last:
                    with open(report + ".tmp", "w") as f:
                        json.dump(now, f, indent=2)
                    os.replace(report + ".tmp", report)
                    last = now
                time.sleep(0.2)
        finally:
            scenario.cleanup()
    except BaseException:  # the parent shows the log
        import traceback
        traceback.print_exc()
        sys.stderr.flush()
    finally:
        os._exit(0)


def _parser():
    p = argparse.ArgumentParser(prog="gpsandbox.multihost", description=__doc__.split("\n\n")[0])
    p.add_argument("--base-dir", default=os.environ.get("GPSANDBOX_DIR", "/tmp/gpsandbox"))
    p.add_argument("--base-port", type=int, default=int(os.environ.get("GPSANDBOX_PORT", "7000")))
    p.add_argument("--coordinator-host", required=True)
    p.add_argument("--segment-hosts", required=True, help="comma-separated, at least two")
    p.add_argument("--primaries-per-host", type=int, default=1)
    p.add_argument("--host", default=None, help="this host's name (default: its hostname)")
    sub = p.add_subparsers(dest="command", required=True)
    u = sub.add_parser("up", help="run one phase of the start on this host")
    u.add_argument("phase", choices=PHASES)
    sub.add_parser("layout", help="print the topology (JSON)")
    h = sub.add_parser("hold-deadlock", help="a global deadlock whose survivor commits, held "
                                             "in the background (coordinator host)")
    h.add_argument("--report", required=True, help="JSON file of the sessions and their outcome")
    return p


def main(argv=None):
    args = _parser().parse_args(argv)
    try:
        nodes = layout(args.coordinator_host, args.segment_hosts.split(","),
                       args.primaries_per_host, args.base_port, args.base_dir)
        hsb = HostSandbox(nodes, args.host, args.base_dir, args.base_port)
        if args.command == "up":
            hsb.up(args.phase)
            print(json.dumps(dict(host=hsb.host, phase=args.phase,
                                  nodes=[n["name"] for n in hsb.mine()])))
        elif args.command == "layout":
            print(json.dumps(nodes, indent=2))
        elif args.command == "hold-deadlock":
            hold_deadlock(Sandbox(args.base_dir, args.base_port), args.report)
            with open(args.report) as f:
                print(f.read())
    except SandboxError as exc:
        print("gpsandbox.multihost: %s" % exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
