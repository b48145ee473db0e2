"""gp_lockfile_info on real processes: a self-deadlock on a flock lock file, reproduced
by tests/helpers/flock_reenter.py (a signal handler re-entering code that takes the lock),
is found; a normal holder/waiter pair is reported as such."""
import os
import signal
import sys

import pytest

from stale_fixtures import ROOT, run_module, spawn, wait_for  # noqa: F401 (fixtures)

pytestmark = pytest.mark.integration

HELPER = os.path.join(ROOT, "tests", "helpers", "flock_reenter.py")


@pytest.fixture
def program(spawn, tmp_path):
    """Start the helper on a lock file; its stdout is in ``proc.out``."""
    count = []

    def start(path, mode):
        count.append(mode)
        out = tmp_path / ("out-%d" % len(count))
        proc = spawn([sys.executable, HELPER, str(path), mode], stdout=open(out, "w"))
        proc.out = out
        return proc

    return start


def _locked(proc):
    return wait_for(lambda: "locked" in proc.out.read_text(), timeout=20)


def _waiting(pid, path):
    """True once /proc/locks shows a blocked request of ``pid`` on ``path``."""
    st = os.stat(path)
    key = "%02x:%02x:%d" % (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino)
    with open("/proc/locks") as handle:
        return any("->" in line and line.split()[-4:-3] == [str(pid)] and key in line for line in handle)


def test_self_deadlock_is_detected(tmp_path, program):
    path = tmp_path / "status.lock"
    daemon = program(path, "reenter")
    assert _locked(daemon)
    os.kill(daemon.pid, signal.SIGUSR1)
    assert wait_for(lambda: _waiting(daemon.pid, path))

    result = run_module("gp_lockfile_info", {"paths": [str(path)]})
    assert result["changed"] is False
    [info] = result["files"]
    assert [h["pid"] for h in info["holders"]] == [daemon.pid]
    assert [w["pid"] for w in info["waiters"]] == [daemon.pid]
    [dead] = result["self_deadlocks"]
    assert dead["pid"] == daemon.pid and dead["path"] == str(path)
    assert len(dead["fds"]) == 1
    assert sorted(o["pid"] for o in info["open_by"]) == [daemon.pid, daemon.pid]  # two open file descriptions
    assert info["processes"][str(daemon.pid)]["wchan"]

    # Without paths the module finds the contended file by itself.
    found = run_module("gp_lockfile_info", {})
    assert [d["pid"] for d in found["self_deadlocks"] if d["path"] == str(path)] == [daemon.pid]


def test_normal_holder_and_waiter(tmp_path, program):
    path = tmp_path / "job.lock"
    holder = program(path, "hold")
    assert _locked(holder)
    waiter = program(path, "hold")
    assert wait_for(lambda: _waiting(waiter.pid, path))

    [info] = run_module("gp_lockfile_info", {"paths": [str(path)]})["files"]
    assert [h["pid"] for h in info["holders"]] == [holder.pid]
    assert [(w["pid"], w["blocked_by"]) for w in info["waiters"]] == [(waiter.pid, [holder.pid])]
    assert info["self_deadlocks"] == []

    holder.kill()
    holder.wait()
    assert _locked(waiter)
    [info] = run_module("gp_lockfile_info", {"paths": [str(path)]})["files"]
    assert [h["pid"] for h in info["holders"]] == [waiter.pid] and info["waiters"] == []


def test_bad_input(tmp_path):
    missing = run_module("gp_lockfile_info", {"paths": [str(tmp_path / "nope.lock")]})
    assert missing["failed"] and "paths: cannot stat" in missing["msg"]
    (tmp_path / "a.lock").write_text("")
    noproc = run_module("gp_lockfile_info", {"paths": [str(tmp_path / "a.lock")], "proc_path": str(tmp_path)})
    assert noproc["failed"] and "proc_path" in noproc["msg"]
