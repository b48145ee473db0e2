"""Helpers of the mirror-loss integration tests (gp_fts_probe, gp_sync_replication,
role gp_mirror_failure, bench/mirror_failure.py), over a real sandbox cluster:

- ``Commit``: a distributed INSERT on the coordinator whose row lands on one
  content, run in a thread, so that a commit waiting in SyncRep can be watched.
- ``mirror_lost(sb, content)``: FTS paused, that content's mirror stopped (yields the
  monotonic time of the stop); on exit the mirror is started again and FTS brings
  the pair back (u/s, '*').
- ``fts_settings(sb, **settings)``: run the sandbox FTS with other settings (a long
  probe interval: FTS acts only when asked, as in the GP7 captures).
- ``run_play(tasks_or_roles, env)``: run a play on localhost through
  ``ansible-playbook`` and return the facts it saved.
- ``standby_coordinator(sb, port)``: a standby coordinator made with pg_basebackup.
- ``extra_sandbox(main, port_offset, prefix, **start_args)``: a second small sandbox
  (Greenplum 6 replication conf, or no mirrors).
"""
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

from psycopg import sql

from playbook import ROOT, ANSIBLE_PLAYBOOK
from stale_fixtures import wait_for  # noqa: F401 (re-exported to the mirror tests)

TABLE = "gpe_mirror_t"
PG_BIN = os.environ.get("GPSANDBOX_PG_BIN", "/usr/lib/postgresql/15/bin")


def module_args(sb):
    """Connection options of every module call: the sandbox coordinator."""
    env = sb.coordinator_env()
    return dict(login_host=env["PGHOST"], login_port=int(env["PGPORT"]), login_user=env["PGUSER"],
                login_password=env["PGPASSWORD"], login_db=env["PGDATABASE"])


def ensure_table(sb):
    sb.create_table(TABLE, "id int, val int", "id")


class Commit(threading.Thread):
    """INSERT one row owned by ``content`` from a coordinator session (dispatched to
    that primary; its commit waits in SyncRep while the mirror is gone)."""

    def __init__(self, sb, content, value=1):
        super().__init__(daemon=True)
        nseg = sb.state()["segments"]
        self.key = content + nseg * value  # distribution: key mod segments
        self.sb = sb
        self.error = None
        self.started_at = self.ended_at = None
        self.qd_pid = None
        self.ready = threading.Event()

    def run(self):
        try:
            with self.sb.connect(-1, application_name="gpe_commit") as conn:
                self.qd_pid = conn.info.backend_pid
                self.ready.set()
                self.started_at = time.monotonic()
                # The sandbox dispatches the statement text: no bound parameters.
                conn.execute(sql.SQL("INSERT INTO {} VALUES ({}, 1)").format(
                    sql.Identifier(TABLE), sql.Literal(self.key)))
        except Exception as exc:  # reported by the test
            self.error = exc
        finally:
            self.ended_at = time.monotonic()
            self.ready.set()

    def start_waiting(self, timeout=15):
        """Start and return once the primary shows a backend waiting in SyncRep."""
        self.start()
        self.ready.wait(10)
        content = self.key % self.sb.state()["segments"]
        assert wait_for(lambda: syncrep_waiter_pids(self.sb, content), timeout), \
            "the commit did not start waiting in SyncRep (error: %s)" % self.error
        return self

    @property
    def done(self):
        return not self.is_alive()

    def seconds(self):
        return None if self.ended_at is None else self.ended_at - self.started_at


def syncrep_waiter_pids(sb, content):
    return [r[0] for r in sb.query(content, "SELECT pid FROM pg_stat_activity WHERE wait_event = 'SyncRep'")]


def sync_setting(sb, content):
    return sb.query(content, "SHOW synchronous_standby_names")[0][0]


def catalog_row(sb, dbid):
    return sb.query(-1, "SELECT role, status, mode FROM gp_segment_configuration WHERE dbid = %s",
                    (dbid,))[0]


def mirror_dbid(sb, content):
    return sb.query(-1, "SELECT dbid FROM gp_segment_configuration WHERE content = %s AND role = 'm'",
                    (content,))[0][0]


def streaming(sb, content):
    rows = sb.query(content, "SELECT state FROM pg_stat_replication WHERE application_name = 'gp_walreceiver'")
    return bool(rows) and rows[0][0] == "streaming"


def healthy(sb, content):
    dbid = mirror_dbid(sb, content)
    return streaming(sb, content) and catalog_row(sb, dbid) == ("m", "u", "s") and sync_setting(sb, content) == "*"


@contextlib.contextmanager
def mirror_lost(sb, content=0):
    """FTS paused, the mirror of ``content`` stopped. On exit: mirror started, FTS
    resumed, and the pair back to streaming, 'u'/'s' and '*' (FTS's own doing)."""
    sb.fts.pause()
    sb.stop_node(content, role="m")
    try:
        yield time.monotonic()
    finally:
        sb.start_node(content, role="m")
        sb.fts.resume()

        def back():
            # Ask for a cycle: FTS may run with a long probe interval.
            sb.query(-1, "SELECT gp_request_fts_probe_scan()", timeout=30)
            return healthy(sb, content)
        assert wait_for(back, 90, 0.5), "content %d did not come back to streaming, u/s and '*'" % content


@contextlib.contextmanager
def fts_settings(sb, **settings):
    """Run the sandbox FTS with other settings (e.g. ``probe_interval=3600``: FTS acts
    only when asked, as in the GP7 captures); restore them afterwards."""
    before = {k: sb.state()["fts"][k] for k in settings}
    sb.fts.stop()
    sb.fts.start(settings)
    try:
        yield
    finally:
        sb.fts.stop()
        sb.fts.start(before)


@contextlib.contextmanager
def extra_sandbox(main, port_offset, prefix, **start_args):
    """Another, small sandbox beside the session's (``Sandbox.start`` arguments, e.g.
    ``replication_conf="gp6"`` or ``mirrors=False``), on ports ``main.base_port +
    port_offset`` on; stopped and removed on exit."""
    from gpsandbox import Sandbox
    base = tempfile.mkdtemp(prefix=prefix)
    os.chmod(base, 0o755)
    sb = Sandbox(base, main.base_port + port_offset)
    sb.start(**start_args)
    try:
        yield sb
    finally:
        sb.stop()
        shutil.rmtree(base, ignore_errors=True)


def run_play(play_body, env=None, check=False, save="gp_mirror_failure_result", timeout=600):
    """Run one play (a dict: tasks/roles/vars) on localhost; return the fact ``save``
    (as JSON data) and the process. The play gets module_defaults for the
    collection's action group from ``env`` (PG* variables are read by the modules)."""
    with tempfile.TemporaryDirectory(prefix="gpe-play-") as tmp:
        out = os.path.join(tmp, "result.json")
        play = dict({"hosts": "all", "gather_facts": False}, **play_body)
        play.setdefault("post_tasks", []).append(
            {"name": "save", "ansible.builtin.copy": {
                "content": "{{ %s | default({}) | to_json }}" % save, "dest": out}, "check_mode": False})
        path = os.path.join(tmp, "play.yml")
        with open(path, "w") as f:
            json.dump([play], f)
        inventory = os.path.join(tmp, "inventory")
        with open(inventory, "w") as f:
            f.write("localhost ansible_connection=local ansible_python_interpreter=%s\n" % sys.executable)
        run_env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(ROOT, ".collections"),
                       ANSIBLE_LOCALHOST_WARNING="false", ANSIBLE_NOCOLOR="1")
        run_env.update(env or {})
        cmd = [ANSIBLE_PLAYBOOK, "-i", inventory, path] + (["--check"] if check else [])
        proc = subprocess.run(cmd, cwd=ROOT, env=run_env, capture_output=True, text=True, timeout=timeout)
        if not os.path.exists(out):
            raise AssertionError("ansible-playbook failed (exit %d):\n%s\n%s"
                                 % (proc.returncode, proc.stdout[-4000:], proc.stderr[-2000:]))
        with open(out) as f:
            return json.load(f), proc


# ---------------------------------------------------------------- standby coordinator

class Standby:
    """A standby coordinator (pg_basebackup of the coordinator, walreceiver named
    ``gp_walreceiver`` as in Greenplum). Greenplum's coordinator waits for a
    connected standby whatever synchronous_standby_names says (syncrep.c); plain
    PostgreSQL needs the name, so the coordinator gets it for the test's duration."""

    def __init__(self, sb, port):
        self.sb = sb
        self.port = port
        self.datadir = os.path.join(sb.base_dir, "standby_gpe")
        self.stopped = []

    def _as_owner(self, args):
        owner = sb_owner(self.sb)
        return subprocess.run(args, user=owner, capture_output=True, text=True, timeout=120, check=True)

    def start(self):
        coord = self.sb.base_port
        if os.path.exists(self.datadir):
            subprocess.run(["rm", "-rf", self.datadir], check=True)
        self._as_owner([os.path.join(PG_BIN, "pg_basebackup"), "-h", "127.0.0.1", "-p", str(coord),
                        "-U", "gpadmin", "-D", self.datadir, "-X", "stream", "-c", "fast", "--no-sync"])
        with open(os.path.join(self.datadir, "postgresql.auto.conf"), "a") as f:
            f.write("port = %d\nprimary_conninfo = 'host=127.0.0.1 port=%d user=gpadmin "
                    "application_name=gp_walreceiver'\n" % (self.port, coord))
        open(os.path.join(self.datadir, "standby.signal"), "w").close()
        subprocess.run(["chown", "-R", sb_owner(self.sb), self.datadir], check=True)
        self._as_owner([os.path.join(PG_BIN, "pg_ctl"), "-D", self.datadir, "-l",
                        os.path.join(self.datadir, "log"), "-w", "start"])
        with self.sb.connect(-1, utility=True) as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS gpe_coord_commit (at timestamptz)")
            conn.execute("ALTER SYSTEM SET synchronous_standby_names = 'gp_walreceiver'")
            conn.execute("SELECT pg_reload_conf()")
        assert wait_for(lambda: self.walsender() and self.walsender()[1] == "streaming", 30)
        # The walsender takes the new synchronous_standby_names at its next reload: until
        # then it is 'async' and commits do not wait for it.
        assert wait_for(lambda: self.sb.query(
            -1, "SELECT sync_state FROM pg_stat_replication WHERE application_name = 'gp_walreceiver'")
            == [("sync",)], 30), "the standby never became synchronous"
        return self

    def walsender(self):
        rows = self.sb.query(-1, "SELECT pid, state FROM pg_stat_replication WHERE application_name = 'gp_walreceiver'")
        return rows[0] if rows else None

    def walreceiver_pid(self):
        out = subprocess.run(["pgrep", "-f", "postgres: .*walreceiver"], capture_output=True, text=True).stdout
        with open(os.path.join(self.datadir, "postmaster.pid")) as f:
            postmaster = int(f.readline())
        for pid in map(int, out.split()):
            with open("/proc/%d/stat" % pid) as f:
                if int(f.read().rsplit(")", 1)[1].split()[1]) == postmaster:
                    return pid
        return None

    def stall(self):
        """SIGSTOP the standby's walreceiver: connected, no progress."""
        pid = self.walreceiver_pid()
        os.kill(pid, signal.SIGSTOP)
        self.stopped.append(pid)
        return pid

    def unstall(self):
        for pid in self.stopped:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        self.stopped = []

    def stop(self):
        self.unstall()
        with self.sb.connect(-1, utility=True) as conn:
            # Our own test setting on the coordinator (not FTS's line on a primary): RESET is right here.
            conn.execute("ALTER SYSTEM RESET synchronous_standby_names")
            conn.execute("SELECT pg_reload_conf()")
            conn.execute("DROP TABLE IF EXISTS gpe_coord_commit")
        subprocess.run([os.path.join(PG_BIN, "pg_ctl"), "-D", self.datadir, "-m", "immediate", "stop"],
                       user=sb_owner(self.sb), capture_output=True, timeout=60)
        subprocess.run(["rm", "-rf", self.datadir], check=False)


def sb_owner(sb):
    return sb.state().get("os_user") or "gpadmin"


@contextlib.contextmanager
def standby_coordinator(sb, port):
    standby = Standby(sb, port).start()
    try:
        yield standby
    finally:
        standby.stop()


def coordinator_commit(sb):
    """A coordinator-local commit that wrote WAL (a row; a transaction that only took
    an xid does not wait for a synchronous standby: RecordTransactionCommit), in a
    thread; returns the thread (``done``)."""
    box = {}

    def run():
        try:
            with sb.connect(-1, utility=True, application_name="gpe_coord_commit") as conn:
                conn.execute("INSERT INTO gpe_coord_commit VALUES (now())")
        except Exception as exc:
            box["error"] = exc
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.box = box
    return thread

