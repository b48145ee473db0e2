"""Role gp_stale_locks on a host with a server that cannot start (stale postmaster.pid),
a daemon's stale pid file, a lock file with holder and waiter, and a Slony-I node lock
left by a crashed slon: it reports, removes only when asked, and a second run changes
nothing."""
import os
import sys

import pytest

from stale_fixtures import (  # noqa: F401 (fixtures)
    OS_USER, ROOT, Slony, pg_factory, run_role, slony_factory, spawn, wait_for)

pytestmark = pytest.mark.integration


@pytest.fixture
def scene(pg_factory, slony_factory, spawn, tmp_path):
    blocked = pg_factory()
    sleeper = spawn(["sleep", "600"], user=OS_USER, group=OS_USER)
    blocked.crash_leaving_lock_files(sleeper.pid)  # postmaster.pid and .s.PGSQL.<port>.lock left
    daemon_pid = tmp_path / "pgbouncer.pid"
    daemon_pid.write_text("%d\n" % sleeper.pid)
    lock = tmp_path / "job.lock"
    helper = os.path.join(ROOT, "tests", "helpers", "flock_reenter.py")
    out = tmp_path / "holder.out"
    spawn([sys.executable, helper, str(lock), "hold"], stdout=open(out, "w"))
    assert wait_for(lambda: "locked" in out.read_text())

    slony = slony_factory()
    slon = slony.start_slon(1)
    backend = wait_for(lambda: slony.server.psql(Slony.ROW_SQL, "db1"))
    assert backend
    slony.crash(slon, int(backend))  # its backend gone, its row left
    return {"blocked": blocked, "pidfile": str(daemon_pid), "lock": str(lock), "slony": slony,
            "vars": {"gp_stale_locks_data_directories": [blocked.datadir],
                     "gp_stale_locks_pidfiles": [{"path": str(daemon_pid), "expected_command": "^pgbouncer$"}],
                     "gp_stale_locks_lockfiles": [str(lock)],
                     "gp_stale_locks_slony": [dict(slony.server.login("db1"), cluster_name="gpops")]}}


def test_report_then_remove(scene):
    recap, out, facts = run_role("gp_stale_locks", scene["vars"], save="gp_stale_locks_result")
    assert recap.get("failed") == 0 and recap.get("changed") == 0, out
    assert [f["verdict"] for f in facts["pidfiles"]] == ["stale", "stale", "stale"]
    assert [r["verdict"] for r in facts["nodelocks"]] == ["stale"]
    assert facts["lockfiles"][0]["holders"] and facts["self_deadlocks"] == []
    assert facts["removed_files"] == [] and facts["removed_nodelocks"] == []
    assert os.path.exists(os.path.join(scene["blocked"].datadir, "postmaster.pid"))

    removing = dict(scene["vars"], gp_stale_locks_remove=True)
    recap, out, facts = run_role("gp_stale_locks", removing, save="gp_stale_locks_result")
    assert recap.get("failed") == 0 and recap.get("changed") == 3, out
    assert sorted(facts["removed_files"]) == sorted([os.path.join(scene["blocked"].datadir, "postmaster.pid"),
                                                     scene["blocked"].socket_lock, scene["pidfile"]])
    assert [r["nl_conncnt"] for r in facts["removed_nodelocks"]] == [0]
    assert scene["blocked"].start().returncode == 0
    assert scene["slony"].server.psql("select count(*) from _gpops.sl_nodelock", "db1") == "0"

    recap, out, _ = run_role("gp_stale_locks", removing)
    assert recap.get("failed") == 0 and recap.get("changed") == 0, out
