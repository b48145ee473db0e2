"""Fixtures for the stale-lock integration tests: throwaway PostgreSQL 15 servers
(initdb/pg_ctl as the non-root ``postgres`` OS user, ports 7250-7299, under a tmp
dir) and a runner that executes a collection module the way Ansible does.

Import what a test file needs: ``from stale_fixtures import pg_server, run_module``.
"""
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PG_BIN = "/usr/lib/postgresql/15/bin"
OS_USER = "postgres"
PORTS = range(7250, 7300)


def as_os_user(argv, **kwargs):
    """Run ``argv`` as the server's OS user (PostgreSQL refuses root)."""
    if os.getuid() == 0:
        argv = ["runuser", "-u", OS_USER, "--"] + list(argv)
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    kwargs.setdefault("timeout", 120)
    return subprocess.run(argv, **kwargs)


_TAKEN = set()  # ports of servers made here, even while they are stopped


def _free_port():
    for port in PORTS:
        if port in _TAKEN:
            continue
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) != 0:
                _TAKEN.add(port)
                return port
    raise RuntimeError("no free port in 7250-7299")


class PgServer:
    """One PostgreSQL 15 instance owned by the ``postgres`` OS user.

    ``datadir``: its data directory; ``port``; ``start()``/``stop()`` return the
    ``pg_ctl`` result (``returncode``, ``stdout``, ``stderr``) and the server log
    text is in ``log()``.
    """

    def __init__(self, base, port, settings=()):
        self.base = base
        self.port = port
        self.datadir = os.path.join(base, "data")
        self.sockdir = os.path.join(base, "sock")
        self.logfile = os.path.join(base, "server.log")
        os.makedirs(self.sockdir)
        shutil.chown(self.sockdir, OS_USER)
        res = as_os_user([PG_BIN + "/initdb", "-D", self.datadir, "-U", "postgres", "--auth=trust", "-E", "UTF8"])
        assert res.returncode == 0, res.stderr
        with open(os.path.join(self.datadir, "postgresql.conf"), "a") as conf:
            conf.write("port = %d\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '%s'\n"
                       "fsync = off\nshared_buffers = 16MB\nmax_connections = 40\n" % (port, self.sockdir))
            for line in settings:
                conf.write(line + "\n")

    def move_to(self, port):
        """Listen on ``port`` from the next start (the last ``port`` line wins)."""
        with open(os.path.join(self.datadir, "postgresql.conf"), "a") as conf:
            conf.write("port = %d\n" % port)
        self.port = port

    def start(self):
        return as_os_user([PG_BIN + "/pg_ctl", "-D", self.datadir, "-l", self.logfile, "-w", "-t", "30", "start"])

    def stop(self, mode="fast"):
        return as_os_user([PG_BIN + "/pg_ctl", "-D", self.datadir, "-m", mode, "-w", "-t", "30", "stop"])

    def running(self):
        return as_os_user([PG_BIN + "/pg_ctl", "-D", self.datadir, "status"]).returncode == 0

    def log(self):
        with open(self.logfile) as handle:
            return handle.read()

    def conninfo(self, dbname="postgres"):
        return "host=127.0.0.1 port=%d user=postgres dbname=%s" % (self.port, dbname)

    def login(self, dbname="postgres"):
        """The collection's connection options for this server."""
        return dict(login_host="127.0.0.1", login_port=self.port, login_user="postgres", login_db=dbname)

    @property
    def pidfile(self):
        return os.path.join(self.datadir, "postmaster.pid")

    def stop_leaving_pidfile(self, pid):
        """Stop cleanly, then put back postmaster.pid naming ``pid``, as a crash followed by
        PID reuse leaves it (same owner, mode 0600, the old start time and shared memory key)."""
        with open(self.pidfile) as handle:
            lines = handle.read().split("\n")
        assert self.stop().returncode == 0
        lines[0] = str(pid)
        with open(self.pidfile, "w") as handle:
            handle.write("\n".join(lines))
        os.chmod(self.pidfile, 0o600)
        shutil.chown(self.pidfile, OS_USER, OS_USER)

    @property
    def socket_lock(self):
        return os.path.join(self.sockdir, ".s.PGSQL.%d.lock" % self.port)

    def crash_leaving_lock_files(self, pid):
        """kill -9 the postmaster and wait until its backends are gone (shared memory no longer
        attached); then put ``pid`` on line 1 of postmaster.pid and of the socket lock file, in place
        (owner and mode kept), as a crash followed by PID reuse leaves them."""
        with open(self.pidfile) as handle:
            lines = handle.read().split("\n")
        postmaster, shm_id = int(lines[0]), int(lines[6].split()[1])
        assert lines[4] == self.sockdir and os.path.exists(self.socket_lock)
        os.kill(postmaster, 9)

        def gone():
            with open("/proc/sysvipc/shm") as handle:
                rows = [line.split() for line in handle.read().splitlines()[1:]]
            attached = any(int(row[1]) == shm_id and int(row[6]) > 0 for row in rows)
            return not attached and not os.path.exists("/proc/%d/cwd" % postmaster)

        assert wait_for(gone), "the killed postmaster's backends did not exit"
        for path in (self.pidfile, self.socket_lock):
            with open(path) as handle:
                text = handle.read().split("\n")
            text[0] = str(pid)
            with open(path, "w") as handle:
                handle.write("\n".join(text))

    def psql(self, sql, dbname="postgres"):
        res = subprocess.run([PG_BIN + "/psql", "-X", "-At", "-v", "ON_ERROR_STOP=1", "-d", self.conninfo(dbname),
                              "-c", sql], capture_output=True, text=True, timeout=60)
        assert res.returncode == 0, res.stderr
        return res.stdout.strip()


@pytest.fixture
def pg_factory():
    """Make throwaway servers; every one is stopped and deleted after the test, whatever
    happens. A port taken meanwhile (by a test run in another process) is given up for
    the next free one."""
    bases, made = [], []

    def make(settings=()):
        base = tempfile.mkdtemp(prefix="gpops-stale-")
        bases.append(base)
        os.chmod(base, 0o755)
        shutil.chown(base, OS_USER)
        server = PgServer(base, _free_port(), settings)
        made.append(server)
        for _attempt in range(5):
            res = server.start()
            if res.returncode == 0:
                return server
            if "could not create any TCP/IP sockets" not in server.log():
                break
            server.move_to(_free_port())
        raise AssertionError(res.stderr + server.log())

    yield make
    for server in made:
        if server.running():
            server.stop("immediate")
        _TAKEN.discard(server.port)
    for base in bases:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def spawn():
    """Start a process (``subprocess.Popen`` arguments) that is killed after the test,
    whatever happens."""
    started = []

    def start(argv, **kwargs):
        proc = subprocess.Popen(argv, **kwargs)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


@pytest.fixture
def pg_server(pg_factory):
    return pg_factory()


def run_module(name, args, check=False, diff=False):
    """Run ``gpops.greenplum.<name>`` as Ansible runs a module (JSON args file, JSON answer).

    Returns the module's result dict (``failed``/``msg`` on failure).
    """
    payload = dict(args)
    payload["_ansible_check_mode"] = check
    payload["_ansible_diff"] = diff
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump({"ANSIBLE_MODULE_ARGS": payload}, handle)
    try:
        env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, ".collections"))
        res = subprocess.run(
            [sys.executable, "-m", "ansible_collections.gpops.greenplum.plugins.modules." + name, handle.name],
            capture_output=True, text=True, timeout=120, env=env, cwd="/")
    finally:
        os.unlink(handle.name)
    try:
        return json.loads(res.stdout)
    except ValueError:
        raise AssertionError("module %s printed no JSON: %s %s" % (name, res.stdout, res.stderr))


def wait_for(predicate, timeout=30.0, interval=0.2):
    """Poll ``predicate()`` until it returns a true value (returned) or ``timeout`` s pass (None)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return None


class Slony:
    """A Slony-I cluster (Debian's slonik and slon) on two databases of one server.

    ``setup()`` runs slonik ``init cluster``/``store node``/``store path``;
    ``start_slon(node)`` starts slon for node 1 (db1) or 2 (db2) and returns the
    watchdog ``Popen`` (its output in ``slon_output(proc)``); ``kill9(proc)``
    kills the watchdog and its worker as a crash does.
    """

    CLUSTER = "gpops"
    ROW_SQL = "select nl_backendpid from _gpops.sl_nodelock where nl_nodeid = 1 and nl_conncnt = 0"

    def __init__(self, server):
        self.server = server
        self.logs = {}
        self.procs = []

    def setup(self):
        for db in ("db1", "db2"):
            self.server.psql("create database %s" % db)
        script = "\n".join([
            "cluster name = %s;" % self.CLUSTER,
            "node 1 admin conninfo = '%s';" % self.server.conninfo("db1"),
            "node 2 admin conninfo = '%s';" % self.server.conninfo("db2"),
            "init cluster (id = 1, comment = 'node 1');",
            "store node (id = 2, comment = 'node 2', event node = 1);",
            "store path (server = 1, client = 2, conninfo = '%s');" % self.server.conninfo("db1"),
            "store path (server = 2, client = 1, conninfo = '%s');" % self.server.conninfo("db2"),
        ])
        res = subprocess.run(["slonik"], input=script, capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stdout + res.stderr

    def start_slon(self, node=1):
        log = tempfile.NamedTemporaryFile("w+", prefix="slon-", suffix=".log", delete=False)
        proc = subprocess.Popen(["slon", self.CLUSTER, self.server.conninfo("db%d" % node)],
                                stdout=log, stderr=subprocess.STDOUT)
        self.logs[proc.pid] = log.name
        self.procs.append(proc)
        return proc

    def slon_output(self, proc):
        with open(self.logs[proc.pid]) as handle:
            return handle.read()

    @staticmethod
    def children(pid):
        try:
            with open("/proc/%d/task/%d/children" % (pid, pid)) as handle:
                return [int(p) for p in handle.read().split()]
        except OSError:
            return []

    def kill9(self, proc):
        for child in self.children(proc.pid):
            os.kill(child, 9)
        proc.kill()
        proc.wait()

    def crash(self, proc, backend_pid):
        """kill -9 slon ``proc``; wait until its backend ``backend_pid`` has gone, its row stays."""
        self.kill9(proc)
        gone = "select count(*) from pg_stat_activity where pid = %d" % backend_pid
        assert wait_for(lambda: self.server.psql(gone, "db1") == "0"), "slon's backend did not exit"
        assert self.server.psql(self.ROW_SQL, "db1") == str(backend_pid), "kill -9 should leave the row"

    def cleanup(self):
        """Kill every slon still running (worker and watchdog); remove their logs."""
        for proc in self.procs:
            if proc.poll() is None:
                self.kill9(proc)
        for path in self.logs.values():
            os.unlink(path)


@pytest.fixture
def slony_factory(pg_factory):
    """Make Slony-I clusters, each on its own throwaway server (``settings`` as for
    ``pg_factory``), set up; every slon is killed after the test, whatever happens."""
    made = []

    def make(settings=()):
        cluster = Slony(pg_factory(settings))
        made.append(cluster)
        cluster.setup()
        return cluster

    yield make
    for cluster in made:
        cluster.cleanup()


def run_role(role, role_vars, save=None, check=False, env=None):
    """Run role ``gpops.greenplum.<role>`` on localhost with ``ansible-playbook``
    (``env`` added to its environment, e.g. the PG* connection variables).

    Returns (recap, output, saved): ``recap`` the PLAY RECAP counters
    (``ok``, ``changed``, ``failed``, ...), ``output`` stdout+stderr, and
    ``saved`` the value of the variable named ``save`` after the role (or None).
    """
    with tempfile.TemporaryDirectory(prefix="gpops-role-") as tmp:
        out = os.path.join(tmp, "saved.json")
        tasks = [{"name": "role", "ansible.builtin.include_role": {"name": "gpops.greenplum." + role},
                  "vars": role_vars}]
        if save:
            tasks.append({"name": "save", "ansible.builtin.copy": {"content": "{{ %s | to_json }}" % save,
                                                                     "dest": out}, "check_mode": False,
                          "changed_when": False})
        playbook = os.path.join(tmp, "play.yml")
        with open(playbook, "w") as handle:
            json.dump([{"hosts": "all", "gather_facts": False, "tasks": tasks}], handle)
        inventory = os.path.join(tmp, "inventory")
        with open(inventory, "w") as handle:
            handle.write("localhost ansible_connection=local ansible_python_interpreter=%s\n" % sys.executable)
        run_env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(ROOT, ".collections"), ANSIBLE_NOCOLOR="1",
                       ANSIBLE_LOCALHOST_WARNING="false", **(env or {}))
        argv = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", inventory, playbook]
        res = subprocess.run(argv + (["--check"] if check else []), cwd=ROOT, env=run_env, capture_output=True,
                             text=True, timeout=300)
        output = res.stdout + res.stderr
        recap = {}
        for line in output.splitlines():
            if line.startswith("localhost") and "ok=" in line:
                recap = {k: int(v) for k, v in (part.split("=") for part in line.split(":", 1)[1].split())}
        saved = None
        if save and os.path.exists(out):
            with open(out) as handle:
                saved = json.load(handle)
        return recap, output, saved
