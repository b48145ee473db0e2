"""A real Greenplum 7 demo cluster for the integration tests (scripts/greenplum-cluster.sh:
coordinator, standby, 3 primaries with mirrors, gp_inject_fault, every instance on
127.0.0.1), and the means to make real hangs on it.

``GP7Cluster.from_env()``: the cluster of ``GPOPS_GP7_DIR`` / ``GPOPS_GP7_PORT``
(defaults /var/tmp/gpops-gp7 and 7700), created or started by ``ensure_running()``.
Sessions (``session(label)``) are psycopg connections whose statements can run in the
background (``send``) so that a test can make them wait on each other, as Greenplum's
isolation2 framework does with ``&`` and ``<``. ``restore()`` brings the cluster back
to healthy after a test that stopped nodes, froze processes or injected faults.
"""
import concurrent.futures
import os
import signal
import subprocess
import time

import psycopg

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "scripts", "greenplum-cluster.sh")
OS_USER = os.environ.get("GPOPS_GP_USER", "gpadmin")
TEST_DB = "gpops_test"


class ClusterError(Exception):
    """The cluster could not be started, reached or restored."""


def wait_for(predicate, timeout=30.0, interval=0.2):
    """Poll ``predicate()`` until it returns a true value (returned) or ``timeout`` s pass (None)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            return None
        time.sleep(interval)


class Session:
    """One client session on the coordinator (or, ``utility=True``, on one node).

    ``sql(stmt, params)`` runs a statement now and returns its rows (``[]`` for none);
    ``send(stmt)`` starts it in the background; ``result(timeout)`` waits for that
    statement: ``("ok", rows)``, ``("error", psycopg.Error)`` or ``("waiting", None)``
    when ``timeout`` s pass. ``pid``, ``sess_id``: the backend's pid and
    ``gp_session_id``; ``gxid()``: the distributed xid of its open transaction.
    """

    def __init__(self, cluster, label, dbname=TEST_DB, content=-1, options=None):
        self.label = label
        self.conn = cluster.connect(content=content, dbname=dbname, application_name=label,
                                    options=options)
        self.pid, self.sess_id = self.conn.execute(
            "SELECT pg_catalog.pg_backend_pid(), pg_catalog.current_setting('gp_session_id')::int"
        ).fetchone()
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
        self._pending = None

    def sql(self, stmt, params=None):
        if self._pending is not None and not self._pending.done():
            raise RuntimeError("session %s is still running a statement" % self.label)
        cur = self.conn.execute(stmt, params)
        return cur.fetchall() if cur.description else []

    def send(self, stmt, params=None):
        def run():
            cur = self.conn.execute(stmt, params)
            return cur.fetchall() if cur.description else []
        self._pending = self._pool.submit(run)
        return self

    def result(self, timeout=10.0):
        try:
            return "ok", self._pending.result(timeout)
        except concurrent.futures.TimeoutError:
            return "waiting", None
        except psycopg.Error as exc:
            return "error", exc

    def waiting(self, seconds=0.5):
        """True when the background statement is still running after ``seconds``."""
        return self.result(seconds)[0] == "waiting"

    def gxid(self):
        rows = self.sql("SELECT pg_catalog.gp_distributed_xid()::text::bigint")
        return rows[0][0]

    def close(self):
        try:
            self.conn.cancel()
        except psycopg.Error:
            pass
        if self._pending is not None:
            try:
                self._pending.result(10)
            except Exception:  # noqa: BLE001 - the statement's own error is not ours
                pass
        self._pool.shutdown(wait=False)
        self.conn.close()


class GP7Cluster:
    def __init__(self, base_dir, port):
        self.base_dir = base_dir
        self.port = port

    @classmethod
    def from_env(cls):
        return cls(os.environ.get("GPOPS_GP7_DIR", "/var/tmp/gpops-gp7"),
                   int(os.environ.get("GPOPS_GP7_PORT", "7700")))

    # --- the cluster script ------------------------------------------------
    def script(self, command, timeout=1800):
        env = dict(os.environ, GPOPS_GP7_DIR=self.base_dir, GPOPS_GP7_PORT=str(self.port))
        proc = subprocess.run(["bash", SCRIPT, command], env=env, capture_output=True, text=True,
                              timeout=timeout)
        if proc.returncode != 0:
            raise ClusterError("greenplum-cluster.sh %s failed:\n%s" % (command, proc.stderr[-3000:]))
        return proc.stdout

    def ensure_running(self):
        self.script("start")
        if not wait_for(self.answers, timeout=60):
            raise ClusterError("the coordinator on port %d does not answer" % self.port)
        with self.connect(dbname="postgres") as conn:
            if not conn.execute("SELECT 1 FROM pg_catalog.pg_database WHERE datname = %s",
                                (TEST_DB,)).fetchone():
                conn.execute("CREATE DATABASE %s" % TEST_DB)
        with self.connect() as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS gp_inject_fault")

    @property
    def gphome(self):
        with open(os.path.join(self.base_dir, "cluster.env")) as f:
            for line in f:
                if line.startswith("export GPHOME="):
                    return line.split("=", 1)[1].strip()
        raise ClusterError("no GPHOME in %s/cluster.env" % self.base_dir)

    # --- connections ---------------------------------------------------------
    def connect(self, content=-1, dbname=TEST_DB, application_name="gpops-test", options=None,
                role="p", connect_timeout=5):
        """An autocommit connection as the Greenplum user to the coordinator, or
        (``content`` >= 0, or ``role='m'``) in utility mode to that node."""
        port = self.port if (content == -1 and role == "p") else self.node(content, role)["port"]
        opts = options or ""
        if content != -1 or role != "p":
            opts = ("-c gp_role=utility " + opts).strip()
        return psycopg.connect(host="127.0.0.1", port=port, user=OS_USER, dbname=dbname,
                               application_name=application_name, autocommit=True,
                               connect_timeout=connect_timeout, options=opts or None)

    def answers(self):
        try:
            with psycopg.connect(host="127.0.0.1", port=self.port, user=OS_USER, dbname="postgres",
                                 connect_timeout=3) as conn:
                conn.execute("SELECT 1")
            return True
        except psycopg.Error:
            return False

    def query(self, stmt, params=None, content=-1, dbname=TEST_DB):
        with self.connect(content=content, dbname=dbname) as conn:
            cur = conn.execute(stmt, params)
            return cur.fetchall() if cur.description else []

    def session(self, label, **kwargs):
        return Session(self, label, **kwargs)

    def env(self):
        """The ``PG*`` variables the collection's connection options default to."""
        return {"PGHOST": "127.0.0.1", "PGPORT": str(self.port), "PGUSER": OS_USER,
                "PGDATABASE": TEST_DB}

    def login(self, **extra):
        args = dict(login_host="127.0.0.1", login_port=self.port, login_user=OS_USER,
                    login_db=TEST_DB, connect_timeout=5, statement_timeout=10.0)
        args.update(extra)
        return args

    # --- topology ------------------------------------------------------------
    _config_cache = None

    def configuration(self):
        """gp_segment_configuration rows as dicts (read from the coordinator)."""
        rows = self.query("SELECT dbid, content, role, preferred_role, mode, status, port, datadir "
                          "FROM pg_catalog.gp_segment_configuration ORDER BY content, dbid",
                          dbname="postgres")
        keys = ("dbid", "content", "role", "preferred_role", "mode", "status", "port", "datadir")
        self._config_cache = [dict(zip(keys, r)) for r in rows]
        return self._config_cache

    def node(self, content, role="p"):
        config = self._config_cache or self.configuration()
        for n in config:
            if n["content"] == content and n["role"] == role:
                return n
        raise ClusterError("no node with content %s and role %s" % (content, role))

    def healthy(self):
        """Every node up, every pair in sync and in its preferred role."""
        try:
            return all(n["status"] == "u" and n["role"] == n["preferred_role"]
                       and (n["content"] == -1 or n["mode"] == "s") for n in self.configuration())
        except psycopg.Error:
            return False

    # --- processes -------------------------------------------------------------
    def as_os_user(self, command, timeout=300):
        """Run a shell command as the Greenplum user with the cluster's environment."""
        env_file = os.path.join(self.base_dir, "cluster.env")
        proc = subprocess.run(["runuser", "-u", OS_USER, "--", "bash", "-c",
                               "source %s && %s" % (env_file, command)],
                              capture_output=True, text=True, timeout=timeout)
        return proc

    def postmaster_pid(self, datadir):
        try:
            with open(os.path.join(datadir, "postmaster.pid")) as f:
                return int(f.readline())
        except (OSError, ValueError):
            return None

    def stop_node(self, content, role="p", mode="immediate"):
        node = self.node(content, role)
        proc = self.as_os_user("pg_ctl stop -m %s -D %s" % (mode, node["datadir"]))
        if proc.returncode != 0:
            raise ClusterError("pg_ctl stop of %s: %s" % (node["datadir"], proc.stderr))
        return node

    def start_node(self, content, role="p"):
        node = self.node(content, role)
        proc = self.as_os_user("pg_ctl start -w -t 120 -l %s/pg_ctl.log -D %s"
                               % (node["datadir"], node["datadir"]))
        if proc.returncode != 0:
            raise ClusterError("pg_ctl start of %s: %s %s" % (node["datadir"], proc.stdout, proc.stderr))
        return node

    def backend_pids(self, content, where="true"):
        """pids of the node's backends matching a pg_stat_activity condition (utility mode)."""
        return [r[0] for r in self.query(
            "SELECT pid FROM pg_catalog.pg_stat_activity WHERE pid <> pg_catalog.pg_backend_pid() "
            "AND (%s)" % where, content=content)]

    # --- fault injection (gpcontrib/gp_inject_fault) ---------------------------
    def inject_fault(self, fault, kind, content=-1, role="p", **kwargs):
        """``gp_inject_fault(fault, kind, dbid)`` on the node of ``content``/``role``;
        extra arguments: ``ddl``, ``database``, ``tablename``, ``start_occurrence``,
        ``end_occurrence``, ``extra_arg``, ``sid`` as in gp_inject_fault's full form."""
        dbid = self.node(content, role)["dbid"]
        if kwargs:
            args = [kwargs.get("ddl", ""), kwargs.get("database", ""), kwargs.get("tablename", ""),
                    kwargs.get("start_occurrence", 1), kwargs.get("end_occurrence", 1),
                    kwargs.get("extra_arg", 0), dbid]
            if "sid" in kwargs:
                args.append(kwargs["sid"])
            marks = ", ".join(["%s"] * len(args))
            stmt = "SELECT gp_inject_fault(%%s, %%s, %s)" % marks
            return self.query(stmt, [fault, kind] + args)[0][0]
        return self.query("SELECT gp_inject_fault(%s, %s, %s)", (fault, kind, dbid))[0][0]

    def wait_fault_triggered(self, fault, content=-1, role="p", timeout=30):
        dbid = self.node(content, role)["dbid"]
        return self.query("SELECT gp_wait_until_triggered_fault(%s, 1, %s)", (fault, dbid))[0][0]

    def reset_faults(self):
        for n in self.configuration():
            if n["status"] != "u" or n["role"] != "p":
                continue
            try:
                self.query("SELECT gp_inject_fault('all', 'reset', %s)", (n["dbid"],))
            except psycopg.Error:
                pass

    # --- back to healthy ----------------------------------------------------------
    def thaw_all(self):
        """SIGCONT to every stopped process of this cluster (a test may have frozen one): its
        postmasters (``-D`` under ``base_dir``) and their children (process title
        ``postgres:  <port>, ...`` with one of the cluster's 8 ports). Never another
        cluster's: a test of another developer may have frozen a process on purpose."""
        ports = {"%d," % p for p in range(self.port, self.port + 8)}
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open("/proc/%s/status" % pid) as f:
                    status = f.read()
                with open("/proc/%s/cmdline" % pid, "rb") as f:
                    cmdline = f.read().replace(b"\0", b" ").decode("utf-8", "replace")
            except OSError:
                continue
            words = cmdline.split()
            ours = self.base_dir + "/" in cmdline or (len(words) > 1 and words[0] == "postgres:" and words[1] in ports)
            if "\nState:\tT" in status and ours:
                try:
                    os.kill(int(pid), signal.SIGCONT)
                except OSError:
                    pass

    def end_test_sessions(self):
        """Terminate every client session of the test database (all nodes) and roll
        back what is left prepared."""
        try:
            self.query("SELECT pg_catalog.pg_terminate_backend(pid) FROM pg_catalog.pg_stat_activity "
                       "WHERE datname = %s AND pid <> pg_catalog.pg_backend_pid() "
                       "AND backend_type = 'client backend'", (TEST_DB,), dbname="postgres")
        except psycopg.Error:
            pass

    def finish_prepared(self):
        """Finish what a test left prepared on the segments (its sessions are gone): COMMIT
        PREPARED where the segments' gp_distributed_log records the commit, else ROLLBACK
        PREPARED, in utility mode on the segment."""
        for n in self.configuration():
            if n["content"] < 0 or n["role"] != "p" or n["status"] != "u":
                continue
            try:
                rows = self.query("SELECT gid, database FROM pg_catalog.pg_prepared_xacts",
                                  content=n["content"], dbname="postgres")
                committed = {r[0] for r in self.query(
                    "SELECT distributed_xid::text FROM gp_dist_random('pg_catalog.gp_distributed_log') "
                    "WHERE status = 'Committed'", dbname="postgres")}
            except psycopg.Error:
                continue
            for gid, database in rows:
                verb = "COMMIT" if gid in committed else "ROLLBACK"
                try:
                    with self.connect(content=n["content"], dbname=database) as conn:
                        conn.execute("%s PREPARED '%s'" % (verb, gid.replace("'", "''")))
                except psycopg.Error:
                    pass

    def leftovers(self):
        """What a test left behind: nodes not healthy, prepared transactions, sessions."""
        left = []
        if not self.healthy():
            left.append("nodes: %s" % [(n["content"], n["role"], n["status"], n["mode"])
                                      for n in (self._config_cache or [])
                                      if n["status"] != "u" or n["mode"] != "s"
                                      or n["role"] != n["preferred_role"]])
        try:
            prepared = self.query("SELECT pg_catalog.gp_execution_segment(), gid FROM "
                                  "gp_dist_random('pg_catalog.pg_prepared_xacts')",
                                  dbname="postgres")
            if prepared:
                left.append("prepared transactions: %s" % prepared)
        except psycopg.Error as exc:
            left.append("cannot read prepared transactions: %s" % exc)
        return left

    def restart_stopped_mirrors(self):
        """The fast way back for a mirror a test only stopped (pg_ctl), in its preferred
        role: start it; it streams again from its primary's replication slot and the next
        FTS probe marks it up and in sync and sets synchronous_standby_names back to '*'
        (about 1 s on GP7, where gprecoverseg takes minutes on a busy machine). Anything
        else is left to gprecoverseg."""
        started = False
        for n in self.configuration():
            if (n["content"] >= 0 and n["role"] == "m" and n["preferred_role"] == "m"
                    and self.postmaster_pid(n["datadir"]) is None):
                try:
                    self.start_node(n["content"], "m")
                    started = True
                except ClusterError:
                    pass
        if started:
            wait_for(lambda: self.query("SELECT pg_catalog.gp_request_fts_probe_scan()",
                                        dbname="postgres") and self.healthy(), timeout=30, interval=1)

    def restore(self):
        """Back to healthy: processes thawed, faults reset, sessions ended, stopped
        nodes started, mirrors recovered (gprecoverseg) and roles rebalanced. As a
        last resort the cluster is created anew."""
        self.thaw_all()
        if not wait_for(self.answers, timeout=60):
            self.script("stop")
            self.script("start")
        self.reset_faults()
        self.end_test_sessions()
        self.restart_stopped_mirrors()
        if self.leftovers():
            self.finish_prepared()
        if self.healthy() and not self.leftovers():
            return
        for n in self.configuration():
            if n["content"] >= 0 and n["status"] == "d" and n["role"] == "p":
                self.start_node(n["content"], "p")
        if not self.healthy():
            proc = self.as_os_user("gprecoverseg -a", timeout=600)
            wait_for(lambda: all(n["mode"] == "s" for n in self.configuration()), timeout=120, interval=1)
            if not all(n["role"] == n["preferred_role"] for n in self.configuration()):
                proc = self.as_os_user("gprecoverseg -ar", timeout=600)
            if not wait_for(self.healthy, timeout=120, interval=1):
                raise ClusterError("cluster not healthy after gprecoverseg: %s\n%s"
                                   % (self.configuration(), proc.stdout[-2000:]))
        prepared = self.leftovers()
        if prepared:
            raise ClusterError("left after restore: %s" % "; ".join(prepared))
