"""The sandbox cluster: a coordinator, N primaries and their mirrors, each a real
PostgreSQL 15 server on 127.0.0.1, made to look like Greenplum 7 by the gpsim
extension (ext/gpsim.c) and the catalog in sql/gpsim.sql.

Layout under the base directory (default /tmp/gpsandbox, env GPSANDBOX_DIR):
``coordinator/``, ``primary<c>/``, ``mirror<c>/`` data directories, ``logs/``,
``lib/gpsim.so``, ``sandbox.json`` (the topology and settings), ``fts.*`` (the FTS
process: log, pid, pause flag). Ports as in Greenplum's demo cluster: coordinator
= base port (default 7000, env GPSANDBOX_PORT), primaries base+2.., mirrors after.
"""
import concurrent.futures
import hashlib
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time

import psycopg
from psycopg import sql as pgsql

from . import fts as fts_mod

PG_BIN = os.environ.get("GPSANDBOX_PG_BIN", "/usr/lib/postgresql/15/bin")
HERE = os.path.dirname(os.path.abspath(__file__))
EXT_DIR = os.path.join(os.path.dirname(HERE), "ext")
SQL_FILE = os.path.join(HERE, "sql", "gpsim.sql")
OS_USER = "gpadmin"
DB_USER = "gpadmin"
DB_PASSWORD = "gpadmin"
DB_NAME = "postgres"
HOST = "127.0.0.1"
SLOT = "internal_wal_replication_slot"
WALRECEIVER_APPNAME = "gp_walreceiver"
REPLICATION_CONFS = ("gp7", "gp6")

# Small test defaults of Greenplum's FTS GUCs (docs/greenplum-internals.md#defaults), seconds.
FTS_DEFAULTS = {
    "probe_interval": 2.0,
    "probe_timeout": 2.0,
    "probe_retries": 2,
    "retry_interval": 0.5,
    "mirror_down_grace_period": 5.0,
}

SERVER_CONF = """
# --- gpsandbox ---
listen_addresses = '{host}'
unix_socket_directories = '{sockdir}'
shared_preload_libraries = '{module}'
max_connections = 100
max_prepared_transactions = 50
shared_buffers = 16MB
fsync = off
full_page_writes = off
wal_level = replica
max_wal_senders = 6
max_replication_slots = 6
wal_keep_size = 64MB
hot_standby = off
client_connection_check_interval = 1s
deadlock_timeout = 1s
log_line_prefix = '%m [%p] %q%a '
log_min_messages = warning
include 'gpsim_node.conf'
include_if_exists 'gpsim_fts.conf'
include_if_exists 'gp_replication.conf'
"""
# FTS settings the gpsim extension shows as gp_fts_* (sandbox.json "fts" keys)
FTS_GUCS = ("probe_interval", "probe_timeout", "probe_retries", "mirror_down_grace_period")



def catalog_sha256():
    """sha256 (hex) of what the catalog is made from: sql/gpsim.sql and ext/gpsim.c."""
    digest = hashlib.sha256()
    for path in (SQL_FILE, os.path.join(EXT_DIR, "gpsim.c")):
        with open(path, "rb") as f:
            digest.update(f.read())
    return digest.hexdigest()


HBA_CONF = """local all all trust
host all all 127.0.0.1/32 trust
host replication all 127.0.0.1/32 trust
"""


class SandboxError(Exception):
    """A sandbox operation failed; the message says what and what to do."""


def _port_free(port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


class Sandbox:
    """One sandbox cluster, identified by its base directory and base port.

    ``fts`` controls the FTS process (``pause()``, ``resume()``, ``status()``).
    """

    def __init__(self, base_dir="/tmp/gpsandbox", base_port=7000, pg_bin=None):
        self.base_dir = os.path.abspath(base_dir)
        self.base_port = int(base_port)
        self.pg_bin = pg_bin or PG_BIN
        self.fts = fts_mod.FtsControl(self)

    @classmethod
    def from_env(cls):
        """The sandbox named by GPSANDBOX_DIR / GPSANDBOX_PORT (defaults /tmp/gpsandbox, 7000)."""
        return cls(os.environ.get("GPSANDBOX_DIR", "/tmp/gpsandbox"),
                   int(os.environ.get("GPSANDBOX_PORT", "7000")))

    # ------------------------------------------------------------ paths, state
    @property
    def state_file(self):
        return os.path.join(self.base_dir, "sandbox.json")

    def _path(self, *parts):
        return os.path.join(self.base_dir, *parts)

    def state(self):
        """The topology and settings written by start() (dict), or None."""
        try:
            with open(self.state_file) as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    def _write_state(self, state):
        tmp = self.state_file + ".tmp"
        with open(tmp, "w") as f:
            json.dump(state, f, indent=2, sort_keys=True)
        os.replace(tmp, self.state_file)

    def _layout(self, segments, mirrors):
        nodes = [dict(dbid=1, content=-1, role="p", port=self.base_port,
                      datadir=self._path("coordinator"), name="coordinator")]
        for c in range(segments):
            nodes.append(dict(dbid=2 + c, content=c, role="p", port=self.base_port + 2 + c,
                              datadir=self._path("primary%d" % c), name="primary%d" % c))
        if mirrors:
            for c in range(segments):
                nodes.append(dict(dbid=2 + segments + c, content=c, role="m",
                                  port=self.base_port + 2 + segments + c,
                                  datadir=self._path("mirror%d" % c), name="mirror%d" % c))
        return nodes

    def _nodes(self):
        st = self.state()
        if st is None:
            raise SandboxError("no sandbox at %s: run `python -m gpsandbox start`" % self.base_dir)
        return st["nodes"]

    def _node(self, content, role="p"):
        """The node that currently has this content and role (the catalog after a
        failover; the initial layout when the coordinator does not answer)."""
        nodes = self._nodes()
        if content != -1:
            try:
                with self._connect_port(self.base_port, timeout=3) as conn:
                    row = conn.execute("SELECT dbid FROM gpsim.gp_segment_configuration "
                                       "WHERE content = %s AND role = %s", (content, role)).fetchone()
                if row:
                    return next(n for n in nodes if n["dbid"] == row[0])
            except (psycopg.Error, StopIteration):
                pass
        for n in nodes:
            if n["content"] == content and n["role"] == role:
                return n
        raise SandboxError("no node with content %s and role %r" % (content, role))

    # --------------------------------------------------------------- OS user
    def _user(self):
        if os.geteuid() != 0:
            return None
        try:
            pwd.getpwnam(OS_USER)
        except KeyError:
            subprocess.run(["useradd", "--system", "--create-home", "--shell", "/bin/bash", OS_USER],
                           check=True, capture_output=True)
        return OS_USER

    def _run(self, cmd, check=True, timeout=120):
        user = self._user()
        kwargs = {}
        env = dict(os.environ, LC_ALL="C.UTF-8", LANG="C.UTF-8")
        if user:
            pw = pwd.getpwnam(user)
            kwargs = dict(user=pw.pw_uid, group=pw.pw_gid, extra_groups=[])
            env.update(HOME=pw.pw_dir, USER=user, LOGNAME=user)
        env.pop("PGOPTIONS", None)
        proc = subprocess.run(cmd, env=env, cwd="/", capture_output=True, text=True,
                              timeout=timeout, **kwargs)
        if check and proc.returncode != 0:
            raise SandboxError("%s failed (exit %d): %s" % (
                " ".join(cmd[:2]), proc.returncode, (proc.stderr or proc.stdout).strip()[-2000:]))
        return proc

    def _chown(self, path):
        user = self._user()
        if user:
            pw = pwd.getpwnam(user)
            os.chown(path, pw.pw_uid, pw.pw_gid)

    # ----------------------------------------------------------- connections
    def conninfo(self, content=-1, role="p", utility=False, dbname=None):
        """psycopg.connect keyword arguments for a node (host, port, user,
        password, dbname; options='-c gp_role=utility' when utility). Primary
        segments refuse connections without utility=True, as in Greenplum."""
        node = self._node(content, role)
        info = dict(host=HOST, port=node["port"], user=DB_USER, password=DB_PASSWORD,
                    dbname=dbname or DB_NAME)
        if utility:
            info["options"] = "-c gp_role=utility"
        return info

    def coordinator_env(self):
        """PGHOST/PGPORT/PGUSER/PGPASSWORD/PGDATABASE of the coordinator."""
        return dict(PGHOST=HOST, PGPORT=str(self.base_port), PGUSER=DB_USER,
                    PGPASSWORD=DB_PASSWORD, PGDATABASE=DB_NAME)

    def connect(self, content=-1, role="p", utility=None, timeout=5, **kwargs):
        """An autocommit psycopg connection to a node (utility mode by default on
        segments). Extra kwargs go to psycopg.connect (e.g. application_name)."""
        if utility is None:
            utility = content != -1
        info = self.conninfo(content, role, utility=utility)
        info.update(kwargs)
        return psycopg.connect(connect_timeout=timeout, autocommit=True, **info)

    def _connect_port(self, port, utility=True, timeout=5):
        opts = "-c gp_role=utility" if utility else ""
        return psycopg.connect(host=HOST, port=port, user=DB_USER, dbname=DB_NAME,
                               options=opts, connect_timeout=timeout, autocommit=True)

    def query(self, content, sql, params=None, utility=None, timeout=10):
        """Rows of one statement on a node (statement_timeout = timeout seconds)."""
        with self.connect(content, utility=utility, timeout=min(timeout, 5)) as conn:
            conn.execute("SET statement_timeout = %d" % int(timeout * 1000))
            cur = conn.execute(sql, params)
            return cur.fetchall() if cur.description else []

    def datadir(self, content, role="p"):
        """Data directory of the node that has this content and role now."""
        return self._node(content, role)["datadir"]

    # ------------------------------------------------------------- lifecycle
    def running(self):
        """True when every node of the state file has a live postmaster."""
        st = self.state()
        if not st:
            return False
        return all(self._postmaster_pid(n["datadir"]) for n in st["nodes"])

    def start(self, segments=3, mirrors=True, replication_conf="gp7", fts_settings=None):
        """Create and start the cluster; returns the status dict. A running sandbox
        with the same topology is reused; one made from another version of the
        catalog (sql/gpsim.sql, ext/gpsim.c) is stopped and made again. Raises
        SandboxError (port in use, PostgreSQL missing, another topology running)."""
        if replication_conf not in REPLICATION_CONFS:
            raise SandboxError("replication_conf must be one of %s, not %r"
                               % (", ".join(REPLICATION_CONFS), replication_conf))
        if segments < 1 or segments > 32:
            raise SandboxError("segments must be between 1 and 32, not %r" % segments)
        st = self.state()
        want = dict(segments=segments, mirrors=bool(mirrors), replication_conf=replication_conf)
        if st is not None:
            have = dict(segments=st["segments"], mirrors=st["mirrors"],
                        replication_conf=st["replication_conf"])
            if self.running() and st.get("catalog_sha256") != catalog_sha256():
                self.stop()  # made by an older checkout: its catalog is not this one
            elif self.running():
                if have != want:
                    raise SandboxError(
                        "a sandbox with another topology (%s) runs in %s: stop it first"
                        % (have, self.base_dir))
                self.fts.ensure_running()
                return self.status()
            self.stop()
        for b in ("postgres", "initdb", "pg_ctl", "pg_basebackup"):
            if not os.access(os.path.join(self.pg_bin, b), os.X_OK):
                raise SandboxError("PostgreSQL 15 server program %s not found in %s: install "
                                   "postgresql-15 (scripts/setup.sh) or set GPSANDBOX_PG_BIN"
                                   % (b, self.pg_bin))
        nodes = self._layout(segments, mirrors)
        for n in nodes:
            if not _port_free(n["port"]):
                raise SandboxError("port %d (for %s) is in use on %s: stop what uses it or "
                                   "choose another --base-port / GPSANDBOX_PORT"
                                   % (n["port"], n["name"], HOST))
        t0 = time.monotonic()
        try:
            self._create(nodes, segments, mirrors, replication_conf, fts_settings)
        except BaseException:
            self.stop()
            raise
        st = self.state()
        st["start_seconds"] = round(time.monotonic() - t0, 2)
        self._write_state(st)
        return self.status()

    def _create(self, nodes, segments, mirrors, replication_conf, fts_settings):
        os.makedirs(self._path("logs"), exist_ok=True)
        os.makedirs(self._path("lib"), exist_ok=True)
        for d in (self.base_dir, self._path("logs"), self._path("lib")):
            os.chmod(d, 0o755)
            self._chown(d)
        module = self._install_module()
        settings = dict(FTS_DEFAULTS, **(fts_settings or {}))
        state = dict(base_dir=self.base_dir, base_port=self.base_port, segments=segments,
                     mirrors=bool(mirrors), replication_conf=replication_conf,
                     os_user=self._user() or pwd.getpwuid(os.geteuid()).pw_name,
                     pg_bin=self.pg_bin, module=module, nodes=nodes, fts=settings,
                     created_at=time.time(), catalog_sha256=catalog_sha256())
        self._write_state(state)

        firsts = [n for n in nodes if n["role"] == "p"]
        self._initdb_nodes(firsts, module)
        self.write_fts_conf(reload=False)
        self._parallel(self._start_server, firsts)
        self._parallel(self._install_sql, firsts)
        with self._connect_port(self.base_port) as conn:
            for n in nodes:
                conn.execute(
                    "INSERT INTO gpsim.gp_segment_configuration VALUES "
                    "(%s, %s, %s, %s, %s, 'u', %s, %s, %s, %s)",
                    (n["dbid"], n["content"], n["role"], n["role"],
                     "s" if mirrors and n["content"] >= 0 else "n",
                     n["port"], "localhost", HOST, n["datadir"]))
        if mirrors:
            pairs = [(p, next(m for m in nodes if m["role"] == "m" and m["content"] == p["content"]))
                     for p in firsts if p["content"] >= 0]
            self._parallel(lambda pm: self._make_mirror(*pm), pairs)
            self._parallel(lambda pm: self._wait_streaming(pm[0]["port"], 60), pairs)
            for p, _ in pairs:
                self.set_syncrep(p["port"], "*", replication_conf)
        self.fts.start(settings)

    def _initdb_nodes(self, nodes, module):
        """One initdb, copied to the data directory of each node (coordinator and
        primaries; mirrors come from pg_basebackup) with its gpsim_node.conf."""
        tmpl = self._path("template")
        self._run([os.path.join(self.pg_bin, "initdb"), "-D", tmpl, "-U", DB_USER, "-A", "trust",
                   "-E", "UTF8", "--locale=C.UTF-8", "-N"])
        with open(os.path.join(tmpl, "postgresql.conf"), "a") as f:
            f.write(SERVER_CONF.format(host=HOST, sockdir=self.base_dir, module=module))
        with open(os.path.join(tmpl, "pg_hba.conf"), "w") as f:
            f.write(HBA_CONF)
        for n in nodes:
            self._run(["cp", "-a", tmpl, n["datadir"]])
            self._write_node_conf(n)
        shutil.rmtree(tmpl)

    def write_fts_conf(self, reload=True):
        """Write the FTS settings of the state file to every node's gpsim_fts.conf
        (shown as gp_fts_probe_interval, ...) and reload the running nodes."""
        st = self.state()
        text = "".join("gpsim.fts_%s = %s\n" % (k, st["fts"][k]) for k in FTS_GUCS)
        for n in st["nodes"]:
            if not os.path.isdir(n["datadir"]):
                continue
            path = os.path.join(n["datadir"], "gpsim_fts.conf")
            with open(path, "w") as f:
                f.write(text)
            self._chown(path)
            pid = self._postmaster_pid(n["datadir"])
            if reload and pid and not self._frozen(pid):
                os.kill(pid, signal.SIGHUP)

    def _install_module(self):
        """Build gpsim.so from ext/ in <base>/build (private to this sandbox, so
        concurrent sandboxes and read-only checkouts are fine); return its path."""
        build = self._path("build")
        os.makedirs(build, exist_ok=True)
        for name in ("gpsim.c", "Makefile"):
            shutil.copyfile(os.path.join(EXT_DIR, name), os.path.join(build, name))
        proc = subprocess.run(["make", "-s", "-C", build, "with_llvm=no",
                               "PG_CONFIG=%s" % os.path.join(self.pg_bin, "pg_config")],
                              capture_output=True, text=True)
        built = os.path.join(build, "gpsim.so")
        if proc.returncode != 0 or not os.path.exists(built):
            raise SandboxError("building the gpsim extension failed (needs "
                               "postgresql-server-dev-15, libkrb5-dev, build-essential): %s"
                               % (proc.stderr or proc.stdout).strip()[-2000:])
        dest = self._path("lib", "gpsim.so")
        shutil.copyfile(built, dest)
        os.chmod(dest, 0o755)
        return dest

    def _write_node_conf(self, node, primary=None):
        lines = ["port = %d" % node["port"], "gpsim.contentid = %d" % node["content"],
                 "gpsim.dbid = %d" % node["dbid"]]
        if primary is not None:
            lines += ["primary_conninfo = 'host=%s port=%d user=%s application_name=%s'"
                      % (HOST, primary["port"], DB_USER, WALRECEIVER_APPNAME),
                      "primary_slot_name = '%s'" % SLOT]
        path = os.path.join(node["datadir"], "gpsim_node.conf")
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        self._chown(path)

    def _log(self, node):
        return self._path("logs", node["name"] + ".log")

    def _start_server(self, node):
        self._run([os.path.join(self.pg_bin, "pg_ctl"), "-D", node["datadir"], "-l", self._log(node),
                   "-w", "-t", "60", "start"])

    def _install_sql(self, node):
        with open(SQL_FILE) as f:
            sql = f.read().replace("@MODULE@", self.state()["module"])
        with self._connect_port(node["port"]) as conn:
            conn.execute(sql)
            conn.execute("ALTER ROLE %s PASSWORD '%s'" % (DB_USER, DB_PASSWORD))

    def _make_mirror(self, primary, mirror):
        with self._connect_port(primary["port"]) as conn:
            conn.execute("SELECT pg_create_physical_replication_slot(%s)", (SLOT,))
        self._run([os.path.join(self.pg_bin, "pg_basebackup"), "-h", HOST, "-p", str(primary["port"]),
                   "-U", DB_USER, "-D", mirror["datadir"], "-X", "stream", "-c", "fast",
                   "-S", SLOT, "--no-sync"])
        self._write_node_conf(mirror, primary)
        path = os.path.join(mirror["datadir"], "standby.signal")
        open(path, "w").close()
        self._chown(path)
        self._start_server(mirror)

    def _wait_streaming(self, port, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._connect_port(port) as conn:
                row = conn.execute("SELECT state FROM pg_catalog.pg_stat_replication "
                                   "WHERE application_name = %s", (WALRECEIVER_APPNAME,)).fetchone()
            if row and row[0] == "streaming":
                return
            time.sleep(0.2)
        raise SandboxError("the mirror of the primary on port %d did not start streaming in %d s"
                           % (port, timeout))

    def set_syncrep(self, port, value, replication_conf=None):
        """Set synchronous_standby_names on the primary at port the way FTS does:
        ALTER SYSTEM + reload (gp7) or gp_replication.conf + reload (gp6)."""
        replication_conf = replication_conf or self.state()["replication_conf"]
        with self._connect_port(port) as conn:
            if replication_conf == "gp6":
                datadir = conn.execute("SHOW data_directory").fetchone()[0]
                path = os.path.join(datadir, "gp_replication.conf")
                with open(path + ".tmp", "w") as f:
                    f.write("synchronous_standby_names = '%s'\n" % value)
                self._chown(path + ".tmp")
                os.replace(path + ".tmp", path)
            else:
                conn.execute("ALTER SYSTEM SET synchronous_standby_names = '%s'" % value)
            conn.execute("SELECT pg_reload_conf()")

    @staticmethod
    def _parallel(fn, items):
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(items))) as ex:
            for fut in [ex.submit(fn, i) for i in items]:
                fut.result()

    def stop(self):
        """Stop every node, the FTS process and background scenarios; remove the
        base directory. Harmless when nothing runs."""
        from . import holder
        holder.release_all(self)
        self.fts.stop()
        st = self.state()
        datadirs = [n["datadir"] for n in st["nodes"]] if st else []
        if os.path.isdir(self.base_dir):
            for name in os.listdir(self.base_dir):
                p = self._path(name)
                if os.path.exists(os.path.join(p, "PG_VERSION")) and p not in datadirs:
                    datadirs.append(p)
        live = [d for d in datadirs if self._postmaster_pid(d)]
        for d in live:
            pid = self._postmaster_pid(d)
            if pid and self._frozen(pid):
                self._signal_tree(pid, signal.SIGCONT)
        self._parallel(lambda d: self._run([os.path.join(self.pg_bin, "pg_ctl"), "-D", d, "-m",
                                            "immediate", "-w", "stop"], check=False), live)
        self._kill_strays()
        if os.path.isdir(self.base_dir):
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def _kill_strays(self):
        """SIGKILL postmasters still running on a data directory of this sandbox
        (e.g. a node started by someone else while stop() ran)."""
        prefix = self.base_dir + os.sep
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open("/proc/%s/cmdline" % entry, "rb") as f:
                    args = f.read().decode(errors="replace").split("\0")
            except OSError:
                continue
            if args and args[0].endswith("/postgres") and "-D" in args:
                datadir = args[args.index("-D") + 1] if args.index("-D") + 1 < len(args) else ""
                if datadir.startswith(prefix):
                    try:
                        os.kill(int(entry), signal.SIGKILL)
                    except OSError:
                        pass

    # ---------------------------------------------------------------- status
    def status(self):
        """Topology: {base_dir, base_port, segments, mirrors, replication_conf,
        running, start_seconds, fts: {...}, nodes: [{dbid, content, role,
        preferred_role, mode, status, port, datadir, running}]} (catalog values
        when the coordinator answers)."""
        st = self.state()
        if st is None:
            return dict(base_dir=self.base_dir, base_port=self.base_port, running=False, nodes=[])
        catalog = {}
        try:
            with self._connect_port(self.base_port, timeout=3) as conn:
                for row in conn.execute("SELECT dbid, role, preferred_role, mode, status FROM "
                                        "gpsim.gp_segment_configuration"):
                    catalog[row[0]] = dict(role=row[1], preferred_role=row[2], mode=row[3],
                                           status=row[4])
        except psycopg.Error:
            pass
        nodes = []
        for n in st["nodes"]:
            d = dict(dbid=n["dbid"], content=n["content"], role=n["role"], preferred_role=n["role"],
                     port=n["port"], datadir=n["datadir"],
                     running=bool(self._postmaster_pid(n["datadir"])))
            d.update(catalog.get(n["dbid"], {}))
            nodes.append(d)
        return dict(base_dir=self.base_dir, base_port=self.base_port, segments=st["segments"],
                    mirrors=st["mirrors"], replication_conf=st["replication_conf"],
                    running=all(n["running"] for n in nodes), start_seconds=st.get("start_seconds"),
                    fts=self.fts.status(), nodes=nodes)

    def leftovers(self):
        """What scenarios or tests left behind (list of strings, empty when clean):
        scenario sessions, prepared transactions, a paused FTS, stopped or frozen
        nodes, pairs not up and in sync."""
        from . import scenarios
        found = []
        st = self.state()
        if st is None:
            return ["no sandbox at %s" % self.base_dir]
        for n in st["nodes"]:
            pid = self._postmaster_pid(n["datadir"])
            if pid is None:
                found.append("%s is not running" % n["name"])
            elif self._frozen(pid):
                found.append("%s is frozen (SIGSTOP)" % n["name"])
        if found:
            return found
        if self.fts.status()["paused"]:
            found.append("FTS is paused")
        rows = self.query(-1, "SELECT pid, application_name FROM pg_catalog.pg_stat_activity "
                              "WHERE application_name LIKE %s", (scenarios.APP_PREFIX + "%",),
                          utility=True)
        found += ["scenario session %s (pid %d) still open" % (r[1], r[0]) for r in rows]
        for c in range(st["segments"]):
            for r in self.query(c, "SELECT gid FROM pg_catalog.pg_prepared_xacts", utility=True):
                found.append("prepared transaction %s on content %d" % (r[0], c))
        if st["mirrors"]:
            bad = self.query(-1, "SELECT dbid FROM gpsim.gp_segment_configuration WHERE "
                                 "content >= 0 AND (status <> 'u' OR mode <> 's' "
                                 "OR role <> preferred_role)", utility=True)
            found += ["segment dbid %d is not up, in sync and in its preferred role" % r[0]
                      for r in bad]
        return found

    def reset(self):
        """Undo what a crashed test or scenario left behind (see leftovers()): end
        background scenarios, thaw frozen nodes, start stopped ones, end scenario
        sessions, roll back prepared transactions on the primaries, resume FTS and
        wait until every pair is up and in sync. Returns leftovers() afterwards.
        Raises SandboxError for a failed-over pair (stop and start the sandbox)."""
        from . import holder, scenarios
        holder.release_all(self)
        st = self.state()
        if st is None:
            raise SandboxError("no sandbox at %s" % self.base_dir)
        coordinator = st["nodes"][0]
        if not self._postmaster_pid(coordinator["datadir"]):
            self._start_server(coordinator)
        swapped = self.query(-1, "SELECT content FROM gpsim.gp_segment_configuration "
                                 "WHERE role <> preferred_role", utility=True)
        if swapped:
            raise SandboxError("content %s failed over: stop and start the sandbox"
                               % ", ".join(str(r[0]) for r in swapped))
        for n in st["nodes"]:
            pid = self._postmaster_pid(n["datadir"])
            if pid is None:
                self._start_server(n)
            elif self._frozen(pid):
                self._signal_tree(pid, signal.SIGCONT)
        self.fts.ensure_running()
        self.fts.resume()
        like = scenarios.APP_PREFIX + "%"
        self.query(-1, "SELECT pg_terminate_backend(pid) FROM pg_catalog.pg_stat_activity "
                       "WHERE application_name LIKE %s", (like,), utility=True)
        for c in range(st["segments"]):
            for (gid,) in self.query(c, "SELECT gid FROM pg_catalog.pg_prepared_xacts", utility=True):
                self.query(c, pgsql.SQL("ROLLBACK PREPARED {}").format(pgsql.Literal(gid)),
                           utility=True, timeout=60)
        deadline = time.monotonic() + 60
        while self.leftovers() and time.monotonic() < deadline:
            if st["mirrors"]:
                self.query(-1, "SELECT gp_request_fts_probe_scan()", utility=False, timeout=30)
            time.sleep(0.2)
        return self.leftovers()

    # ------------------------------------------------------- node operations
    @staticmethod
    def _postmaster_pid(datadir):
        try:
            with open(os.path.join(datadir, "postmaster.pid")) as f:
                pid = int(f.readline().strip())
            os.kill(pid, 0)
            return pid
        except (OSError, ValueError):
            return None

    @staticmethod
    def _children(pid):
        kids = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open("/proc/%s/stat" % entry) as f:
                        fields = f.read().rsplit(")", 1)[1].split()
                    if int(fields[1]) == pid:
                        kids.append(int(entry))
                except (OSError, IndexError, ValueError):
                    continue
        return kids

    def _signal_tree(self, pid, sig):
        os.kill(pid, sig)
        for kid in self._children(pid):
            try:
                os.kill(kid, sig)
            except OSError:
                pass

    @staticmethod
    def _frozen(pid):
        try:
            with open("/proc/%d/stat" % pid) as f:
                return f.read().rsplit(")", 1)[1].split()[0] == "T"
        except OSError:
            return False

    def stop_node(self, content, role="p", mode="immediate"):
        """pg_ctl stop -m mode the node with this content and current role."""
        node = self._node(content, role)
        pid = self._postmaster_pid(node["datadir"])
        if pid and self._frozen(pid):
            self._signal_tree(pid, signal.SIGCONT)
        self._run([os.path.join(self.pg_bin, "pg_ctl"), "-D", node["datadir"], "-m", mode, "-w", "stop"],
                  check=False)
        return node

    def start_node(self, content, role="p"):
        """Start the node with this content and current role (a mirror streams again)."""
        node = self._node(content, role)
        if not self._postmaster_pid(node["datadir"]):
            self._start_server(node)
        return node

    def freeze(self, content, role="p"):
        """SIGSTOP the node's postmaster and all its children (a hung segment)."""
        node = self._node(content, role)
        pid = self._postmaster_pid(node["datadir"])
        if pid is None:
            raise SandboxError("%s is not running" % node["name"])
        self._signal_tree(pid, signal.SIGSTOP)
        return node

    def thaw(self, content, role="p"):
        """SIGCONT what freeze() stopped."""
        node = self._node(content, role)
        pid = self._postmaster_pid(node["datadir"])
        if pid is not None:
            self._signal_tree(pid, signal.SIGCONT)
        return node

    # ------------------------------------------------------- test data setup
    def create_table(self, name, columns, distkey, rows=(), dbname=None):
        """(Re)create a distributed table: catalog entry on the coordinator, rows on
        the segment that owns them (gpsim.segment_for(distkey, N) = distkey mod N).
        columns: SQL column list, e.g. 'id int, val int'; rows: tuples. Segment
        lock rows name the table by the coordinator's oid (gpsim.relation_map),
        as on Greenplum, where a table has the same oid on every node."""
        st = self.state()
        nseg = st["segments"]
        ident = pgsql.Identifier(name)
        key_pos = [c.split()[0] for c in columns.split(",")].index(distkey)
        ddl = pgsql.SQL("DROP TABLE IF EXISTS {t}; CREATE TABLE {t} ({cols})").format(
            t=ident, cols=pgsql.SQL(columns))
        with self.connect(-1, utility=True) as conn:
            conn.execute("DELETE FROM gpsim.gp_distribution_policy WHERE localoid = to_regclass(%s)",
                         (name,))
            conn.execute(ddl)
            oid = conn.execute("INSERT INTO gpsim.gp_distribution_policy VALUES "
                               "(%s::regclass, %s, %s) RETURNING localoid",
                               (name, distkey, nseg)).fetchone()[0]
        for c in range(nseg):
            mine = [r for r in rows if r[key_pos] % nseg == c]
            with self.connect(c, utility=True) as conn:
                conn.execute("DELETE FROM gpsim.relation_map WHERE localoid = to_regclass(%s)",
                             (name,))
                conn.execute(ddl)
                conn.execute("INSERT INTO gpsim.relation_map VALUES (%s::regclass, %s)", (name, oid))
                conn.execute(pgsql.SQL(
                    "CREATE TRIGGER keep_local_rows BEFORE INSERT ON {t} FOR EACH ROW "
                    "EXECUTE FUNCTION gpsim.keep_local_rows({k}, {n})").format(
                        t=ident, k=pgsql.Literal(distkey), n=pgsql.Literal(str(nseg))))
                if mine:
                    with conn.cursor() as cur:
                        with cur.copy(pgsql.SQL("COPY {t} FROM STDIN").format(t=ident)) as cp:
                            for r in mine:
                                cp.write_row(r)

    def create_role(self, name, password=None, superuser=False):
        """Create a login role on the coordinator and every primary (Greenplum roles
        are cluster-wide; QEs connect as the session's user). Greenplum's catalog
        objects are in pg_catalog on every node, so the role needs no search_path."""
        ident = pgsql.Identifier(name)
        stmts = [pgsql.SQL("DROP ROLE IF EXISTS {r}").format(r=ident),
                 pgsql.SQL("CREATE ROLE {r} LOGIN {su} PASSWORD {p}").format(
                     r=ident, su=pgsql.SQL("SUPERUSER" if superuser else "NOSUPERUSER"),
                     p=pgsql.Literal(password))]
        for c in [-1] + list(range(self.state()["segments"])):
            with self.connect(c, utility=True) as conn:
                for stmt in stmts:
                    conn.execute(stmt)

    def segment_for(self, value):
        """The content that owns distribution key value (value mod segments)."""
        return value % self.state()["segments"]

