"""gp_pidfile against real PostgreSQL 15 servers: a stale postmaster.pid naming a
reused PID keeps the server from starting; the module proves it stale, removes it,
and the server starts; a running server's file is never touched."""
import os
import subprocess

import pytest

from ansible_collections.gpops.greenplum.plugins.module_utils.act.executor import execute
from ansible_collections.gpops.greenplum.plugins.module_utils.act.pid_file_remover import FileRemover
from ansible_collections.gpops.greenplum.plugins.module_utils.plan import pid_files

from stale_fixtures import (  # noqa: F401 (fixtures)
    OS_USER, pg_factory, pg_server, run_module, spawn, wait_for)

pytestmark = pytest.mark.integration

LOCK_EXISTS = 'lock file "postmaster.pid" already exists'
BUSY = "select count(*) from generate_series(1, 10000000000)"


def _gone(pid):
    try:
        with open("/proc/%d/stat" % pid) as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


@pytest.fixture
def sleeper_of(spawn):
    """Start a ``sleep`` owned by ``user``; killed after the test."""
    return lambda user: spawn(["sleep", "600"], user=user, group=user)


def _only(result):
    """The one file asked about (a postmaster.pid's socket lock file comes with it, ``removed_with`` it)."""
    assert not result.get("failed"), result.get("msg")
    asked = [f for f in result["files"] if "removed_with" not in f]
    assert len(asked) == 1
    return asked[0]


def test_running_server_file_is_live_and_untouched(pg_server):
    before = open(pg_server.pidfile).read()
    for check in (True, False):
        result = run_module("gp_pidfile", {"data_directories": [pg_server.datadir], "state": "absent"}, check=check)
        entry = _only(result)
        assert result["changed"] is False and result["removed"] == []
        assert entry["verdict"] == "live"
        checks = {c["check"]: c["passed"] for c in entry["evidence"]}
        assert checks["shared_memory_attached"] is True
        assert checks["command"] and checks["data_directory"] and checks["owner"] and checks["listening"]
        assert entry["file"]["port"] == pg_server.port
    assert open(pg_server.pidfile).read() == before
    assert pg_server.running()


def test_pid_reused_by_same_user_process_blocks_start_and_is_removed(pg_server, sleeper_of):
    sleeper = sleeper_of(OS_USER)
    pg_server.stop_leaving_pidfile(sleeper.pid)
    res = pg_server.start()
    assert res.returncode != 0
    assert LOCK_EXISTS in pg_server.log()

    args = {"data_directories": [pg_server.datadir], "state": "absent"}
    preview = run_module("gp_pidfile", args, check=True, diff=True)
    entry = _only(preview)
    assert entry["verdict"] == "stale" and entry["alive"] is True
    assert entry["process"]["comm"] == "sleep" and entry["pid"] == sleeper.pid
    failed = {c["check"] for c in entry["evidence"] if c["passed"] is False}
    assert {"command", "data_directory"} <= failed
    assert preview["changed"] is True and preview["removed"] == [pg_server.pidfile]
    assert preview["diff"]["after"]["present"] == []
    assert os.path.exists(pg_server.pidfile), "check mode removed the file"

    result = run_module("gp_pidfile", args)
    assert result["changed"] is True and result["removed"] == [pg_server.pidfile]
    assert "removed stale" in result["actions"][0]
    assert [(o["action"], o["reason"], o["result"]) for o in result["outcomes"]] == [
        ("remove_file", "stale_pid_file", "done")]
    assert [s["guard"] for s in preview["plan"]["steps"]] == [s["guard"] for s in result["plan"]["steps"]]
    assert not os.path.exists(pg_server.pidfile)
    again = run_module("gp_pidfile", args)
    assert again["changed"] is False and _only(again)["verdict"] == "absent"

    res = pg_server.start()
    assert res.returncode == 0, res.stderr
    assert pg_server.psql("select 1") == "1"
    assert sleeper.poll() is None, "the unrelated process was touched"


def test_pid_of_a_root_process_is_not_a_competing_server(pg_server, sleeper_of):
    """PostgreSQL ignores a PID owned by another user (kill: EPERM); so does the module."""
    sleeper = sleeper_of("root")
    pg_server.stop_leaving_pidfile(sleeper.pid)
    entry = _only(run_module("gp_pidfile", {"data_directories": [pg_server.datadir]}))
    assert entry["verdict"] == "stale"
    owner = [c for c in entry["evidence"] if c["check"] == "owner"][0]
    assert owner["passed"] is False and "uid 0" in owner["detail"]

    result = run_module("gp_pidfile", {"data_directories": [pg_server.datadir], "state": "absent"})
    assert result["removed"] == [pg_server.pidfile]
    assert pg_server.start().returncode == 0


def test_postgres_itself_starts_over_a_root_owned_pid(pg_server, sleeper_of):
    """The owner rule is PostgreSQL's own: with the file left in place it starts anyway."""
    sleeper = sleeper_of("root")
    pg_server.stop_leaving_pidfile(sleeper.pid)
    assert pg_server.start().returncode == 0


def test_killed_postmaster_with_orphan_backend_is_live(pg_server):
    """kill -9 of the postmaster leaves a busy backend attached to its shared memory
    (one in a latch wait notices postmaster death and exits; one computing does not):
    PostgreSQL refuses to start ("pre-existing shared memory block ... still in use") and
    the module keeps the file."""
    holder = subprocess.Popen(["/usr/lib/postgresql/15/bin/psql", "-X", "-d", pg_server.conninfo(),
                               "-c", BUSY], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    orphan = None
    try:
        orphan = int(wait_for(lambda: pg_server.psql(
            "select pid from pg_stat_activity where query = '%s'" % BUSY)))
        postmaster = int(open(pg_server.pidfile).readline())
        os.kill(postmaster, 9)
        assert wait_for(lambda: _gone(postmaster))
        result = run_module("gp_pidfile", {"data_directories": [pg_server.datadir], "state": "absent"})
        entry = _only(result)
        assert entry["alive"] is False
        assert entry["verdict"] == "live" and result["changed"] is False
        assert os.path.exists(pg_server.pidfile)
        assert pg_server.start().returncode != 0
        # Where nobody reaps the dead postmaster its zombie PID answers kill -0 first.
        assert "pre-existing shared memory block" in pg_server.log() or LOCK_EXISTS in pg_server.log()
    finally:
        if orphan:
            os.kill(orphan, 9)
        holder.kill()
        holder.wait()


def test_generic_daemon_pidfile_with_expected_command(tmp_path, sleeper_of):
    sleeper = sleeper_of("root")
    path = tmp_path / "pgbouncer.pid"
    path.write_text("%d\n" % sleeper.pid)
    args = {"paths": [str(path)], "expected_command": "^pgbouncer$", "state": "absent"}
    result = run_module("gp_pidfile", args)
    assert result["removed"] == [str(path)] and not path.exists()

    path.write_text("%d\n" % sleeper.pid)
    result = run_module("gp_pidfile", dict(args, expected_command="^sleep$"))
    assert result["changed"] is False and _only(result)["verdict"] == "live" and path.exists()


def test_bad_input_fails_clearly_and_removes_nothing(pg_server, tmp_path, sleeper_of):
    conf = os.path.join(pg_server.datadir, "postgresql.conf")
    stale = tmp_path / "stale.pid"
    stale.write_text("%d\n" % sleeper_of("root").pid)
    result = run_module("gp_pidfile", {"paths": [str(stale), conf], "state": "absent",
                                       "expected_command": "^nothing$"})
    assert result["failed"] and "not_a_pidfile" in result["msg"] and conf in result["msg"]
    assert result["removed"] == [] and stale.exists() and os.path.exists(conf)

    link = tmp_path / "link.pid"
    link.symlink_to(stale)
    for path in (link, tmp_path):
        result = run_module("gp_pidfile", {"paths": [str(path), str(stale)], "state": "absent"})
        assert result["failed"] and result["msg"].startswith("paths/data_directories: nothing removed")
        assert str(path) in result["msg"] and result["verdicts"][str(path)] == "not_a_pidfile"
        assert result["removed"] == [] and stale.exists() and link.is_symlink()
    assert "symbolic link to %s" % stale in run_module("gp_pidfile", {"paths": [str(link)]})["msg"]

    result = run_module("gp_pidfile", {"paths": [str(stale)], "state": "absent", "proc_path": str(tmp_path)})
    assert result["failed"] and "procfs" in result["msg"] and stale.exists()

    result = run_module("gp_pidfile", {"paths": [], "data_directories": []})
    assert result["failed"] and "paths or data_directories" in result["msg"]

    result = run_module("gp_pidfile", {"data_directories": [str(tmp_path / "no-such-datadir")], "state": "absent"})
    assert result["failed"] and "data_directories: not a directory" in result["msg"]

    result = run_module("gp_pidfile", {"paths": [str(stale)], "expected_owner": "no-such-user-here"})
    assert result["failed"] and "expected_owner" in result["msg"]


def test_crash_leaves_both_lock_files_and_both_go_together(pg_server, sleeper_of):
    """kill -9 of the postmaster leaves postmaster.pid and .s.PGSQL.<port>.lock; with their PID reused
    by a process of the same user PostgreSQL refuses to start over either. One run removes both, and
    the server really starts."""
    sleeper = sleeper_of(OS_USER)
    pg_server.crash_leaving_lock_files(sleeper.pid)
    socket_lock = pg_server.socket_lock
    assert pg_server.start().returncode != 0 and LOCK_EXISTS in pg_server.log()

    args = {"data_directories": [pg_server.datadir], "state": "absent"}
    preview = run_module("gp_pidfile", args, check=True)
    assert preview["changed"] is True and preview["removed"] == [socket_lock, pg_server.pidfile]
    assert [f["verdict"] for f in preview["files"]] == ["stale", "stale"]
    assert preview["files"][1]["removed_with"] == pg_server.pidfile
    assert os.path.exists(socket_lock) and os.path.exists(pg_server.pidfile), "check mode removed a file"

    result = run_module("gp_pidfile", args)
    assert result["changed"] is True and result["removed"] == [socket_lock, pg_server.pidfile]
    assert result["files"][0]["start_blocked_by"] == []
    assert not os.path.exists(socket_lock) and not os.path.exists(pg_server.pidfile)
    res = pg_server.start()
    assert res.returncode == 0, res.stderr + pg_server.log()
    assert pg_server.psql("select 1") == "1"
    assert sleeper.poll() is None
    again = run_module("gp_pidfile", args)
    assert again["changed"] is False and again["removed"] == []
    assert [f["verdict"] for f in again["files"]] == ["live", "live"]


def test_socket_lock_of_a_running_server_with_wrong_expectations_is_live(pg_server):
    """The caller's expected_command/expected_owner are wrong; the process listens on the file's port,
    works in its data directory and is a postgres of the file's owner: live, never removed."""
    socket_lock = pg_server.socket_lock
    before = open(socket_lock).read()
    for wrong in ({"expected_command": "^nginx$"}, {"expected_owner": "root"}):
        for path in (socket_lock, pg_server.pidfile):
            result = run_module("gp_pidfile", dict(wrong, paths=[path], state="absent"))
            assert not result.get("failed"), result.get("msg")
            assert result["changed"] is False and result["removed"] == []
            entry = result["files"][0]
            assert entry["verdict"] == "live", entry["evidence"]
            checks = {c["check"]: c["passed"] for c in entry["evidence"]}
            assert checks["listens_on_port"] is True and checks["postgres_server"] is True
            assert False in (checks.get("command"), checks.get("owner"))
    assert open(socket_lock).read() == before
    assert pg_server.psql("select 1") == "1"


APACHE_CONF = """\
ServerRoot /etc/apache2
DefaultRuntimeDir {tmp}
PidFile {tmp}/apache2.pid
Mutex file:{tmp} default
Listen 127.0.0.1:{port}
ServerName localhost
User www-data
Group www-data
ErrorLog {tmp}/error.log
LoadModule mpm_event_module /usr/lib/apache2/modules/mod_mpm_event.so
LoadModule authz_core_module /usr/lib/apache2/modules/mod_authz_core.so
DocumentRoot {tmp}
"""


@pytest.fixture
def apache(tmp_path):
    """Debian's Apache httpd on 127.0.0.1 and a free high port, with its pid file under ``tmp_path``."""
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    conf = tmp_path / "httpd.conf"
    conf.write_text(APACHE_CONF.format(tmp=tmp_path, port=port))
    os.chmod(tmp_path, 0o755)
    res = subprocess.run(["/usr/sbin/apache2", "-f", str(conf), "-k", "start"], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    pidfile = tmp_path / "apache2.pid"
    assert wait_for(lambda: pidfile.exists() and pidfile.read_text().strip()), "apache wrote no pid file"
    pid = int(pidfile.read_text())
    yield {"pid": pid, "pidfile": str(pidfile), "port": port, "conf": str(conf)}
    subprocess.run(["/usr/sbin/apache2", "-f", str(conf), "-k", "stop"], capture_output=True, timeout=60)
    wait_for(lambda: _gone(pid), timeout=20)


def test_live_apache_pidfile_older_than_the_process_is_live(apache):
    """touch -d '-60 seconds' (or a copy with kept mtime, a clock step): a time alone never makes a
    live matching process's file stale."""
    subprocess.run(["touch", "-d", "-60 seconds", apache["pidfile"]], check=True)
    before = open(apache["pidfile"]).read()
    for extra in ({"expected_command": "^apache2$"}, {}):
        for check in (True, False):
            result = run_module("gp_pidfile", dict(extra, paths=[apache["pidfile"]], state="absent"), check=check)
            entry = _only(result)
            assert entry["verdict"] == "live", entry["evidence"]
            assert result["changed"] is False and result["removed"] == []
            checks = {c["check"]: c["passed"] for c in entry["evidence"]}
            assert checks["started_before_file"] is False and entry["process"]["comm"] == "apache2"
    assert open(apache["pidfile"]).read() == before
    assert not _gone(apache["pid"])


def test_apache_pidfile_naming_a_reused_pid_is_removed(apache, sleeper_of):
    sleeper = sleeper_of("www-data")
    res = subprocess.run(["/usr/sbin/apache2", "-f", apache["conf"], "-k", "stop"], capture_output=True, timeout=60)
    assert res.returncode == 0 and wait_for(lambda: _gone(apache["pid"]), timeout=20)
    with open(apache["pidfile"], "w") as handle:
        handle.write("%d\n" % sleeper.pid)
    args = {"paths": [apache["pidfile"]], "expected_command": "^apache2$", "state": "absent"}
    result = run_module("gp_pidfile", args)
    assert result["removed"] == [apache["pidfile"]] and not os.path.exists(apache["pidfile"])
    assert "command" in {c["check"] for c in result["files"][0]["evidence"] if c["passed"] is False}
    assert run_module("gp_pidfile", args)["changed"] is False
    assert sleeper.poll() is None


def _plan(paths, expected_command=None):
    """gp_pidfile's plan for ``paths`` (plain pid files or postmaster.pid), made here so the test
    can act between plan and act; and its runners."""
    judged = [(obs,) + pid_files.judge(obs) for obs in (pid_files.observe(p, expected_command) for p in paths)]
    plan = pid_files.plan(judged, {})
    runners = FileRemover(lambda p: pid_files.judge(pid_files.observe(p, expected_command))[0]).runners()
    return plan, runners


def test_apache_rewrites_its_pidfile_between_plan_and_act(apache):
    """Apache stopped uncleanly, its pid file naming a PID no process has: planned for removal.
    Apache then starts and writes its pid file ("pid file overwritten -- Unclean shutdown of
    previous Apache run?"): the step's guard fails and the running Apache's file is kept."""
    res = subprocess.run(["/usr/sbin/apache2", "-f", apache["conf"], "-k", "stop"], capture_output=True, timeout=60)
    assert res.returncode == 0 and wait_for(lambda: _gone(apache["pid"]), timeout=20)
    dead = subprocess.Popen(["true"])
    dead.wait()
    with open(apache["pidfile"], "w") as handle:
        handle.write("%d\n" % dead.pid)
    plan, runners = _plan([apache["pidfile"]], "^apache2$")
    [step] = plan.steps
    assert step.reason.value == "stale_pid_file" and step.guard.facts["st_ino"] == os.stat(apache["pidfile"]).st_ino

    res = subprocess.run(["/usr/sbin/apache2", "-f", apache["conf"], "-k", "start"], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    assert wait_for(lambda: open(apache["pidfile"]).read().strip() not in ("", str(dead.pid)))
    new_pid = int(open(apache["pidfile"]).read())
    [outcome] = execute(plan.steps, runners)
    assert outcome.result == "skipped" and outcome.reason.value == "guard_file_changed", outcome.detail
    assert open(apache["pidfile"]).read().strip() == str(new_pid) and not _gone(new_pid)
    assert not [n for n in os.listdir(os.path.dirname(apache["pidfile"])) if "gpops-removing" in n]


def test_postgres_starts_and_rewrites_postmaster_pid_between_plan_and_act(pg_server, sleeper_of):
    """postmaster.pid naming a root process (PostgreSQL ignores it, so does the verdict): planned
    for removal; the server then starts and writes its own postmaster.pid: guard failed, the
    running server's file is kept."""
    pg_server.stop_leaving_pidfile(sleeper_of("root").pid)
    plan, runners = _plan([pg_server.pidfile])
    [step] = plan.steps
    assert pg_server.start().returncode == 0
    [outcome] = execute(plan.steps, runners)
    assert outcome.result == "skipped" and outcome.reason.value == "guard_file_changed", outcome.detail
    assert os.path.exists(pg_server.pidfile) and pg_server.psql("select 1") == "1"
    entry = _only(run_module("gp_pidfile", {"data_directories": [pg_server.datadir]}))
    assert entry["verdict"] == "live" and entry["reason"] == "not_stale"
