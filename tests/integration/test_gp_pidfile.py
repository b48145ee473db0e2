"""gp_pidfile against real PostgreSQL 15 servers: a stale postmaster.pid naming a
reused PID keeps the server from starting; the module proves it stale, removes it,
and the server starts; a running server's file is never touched."""
import os
import subprocess

import pytest

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
    assert not result.get("failed"), result.get("msg")
    assert len(result["files"]) == 1
    return result["files"][0]


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

    result = run_module("gp_pidfile", {"paths": [str(stale)], "state": "absent", "proc_path": str(tmp_path)})
    assert result["failed"] and "procfs" in result["msg"] and stale.exists()

    result = run_module("gp_pidfile", {"paths": [], "data_directories": []})
    assert result["failed"] and "paths or data_directories" in result["msg"]

    result = run_module("gp_pidfile", {"data_directories": [str(tmp_path / "no-such-datadir")], "state": "absent"})
    assert result["failed"] and "data_directories: not a directory" in result["msg"]

    result = run_module("gp_pidfile", {"paths": [str(stale)], "expected_owner": "no-such-user-here"})
    assert result["failed"] and "expected_owner" in result["msg"]
