"""gp_lockfile_info on real processes: a self-deadlock on a flock lock file, reproduced
by tests/helpers/flock_reenter.py (a signal handler re-entering code that takes the lock),
is found; a normal holder/waiter pair is reported as such."""
import os
import subprocess
import signal
import sys
import time

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

    # Asked about the waiter's PID (as ps shows it): it blocks in the kernel behind the holder.
    report = run_module("gp_lockfile_info", {"pid": waiter.pid, "poll_window": 0})["pid_report"]
    assert [(w["path"], w["wait"], w["blocked_by"], w["self_deadlock"]) for w in report["waiting_for"]] == [
        (str(path), "kernel", [holder.pid], False)]
    assert report["wchan"] and report["process"]["pid"] == waiter.pid
    idle = run_module("gp_lockfile_info", {"pid": holder.pid, "poll_window": 0})["pid_report"]
    assert idle["waiting_for"] == [] and idle["holds"] == [str(path)]
    assert "waits for no file lock" in idle["explanation"]

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


FILELOCK3 = os.path.join(ROOT, ".venv-filelock3")
FILELOCK_HELPER = os.path.join(ROOT, "tests", "helpers", "filelock_signal.py")
FORK_HELPER = os.path.join(ROOT, "tests", "helpers", "flock_fork.py")


@pytest.fixture
def filelock_program(spawn, tmp_path):
    """Start tests/helpers/filelock_signal.py with filelock 3.x (.venv-filelock3, made by scripts/setup.sh)."""
    if not os.path.isdir(os.path.join(FILELOCK3, "filelock")):
        pytest.fail("filelock 3.x is missing from %s: run scripts/setup.sh" % FILELOCK3)
    count = []

    def start(path, mode):
        count.append(mode)
        out = tmp_path / ("fl-out-%d" % len(count))
        proc = spawn([sys.executable, FILELOCK_HELPER, str(path), mode], stdout=open(out, "w"),
                     env=dict(os.environ, PYTHONPATH=FILELOCK3))
        proc.out = out
        return proc

    return start


def test_filelock3_self_deadlock_in_a_signal_handler_is_found(tmp_path, filelock_program):
    """filelock 3.x polls (flock LOCK_NB + sleep): no kernel waiter, yet the process waits for a lock
    only it holds. Found by path, on the whole host, and by pid with its py-spy stack."""
    path = tmp_path / "status.lock"
    daemon = filelock_program(path, "reenter")
    assert _locked(daemon) and "locked 3." in daemon.out.read_text()
    os.kill(daemon.pid, signal.SIGUSR1)
    time.sleep(0.3)
    assert not _waiting(daemon.pid, path), "filelock 3.x should poll, not wait in the kernel"

    result = run_module("gp_lockfile_info", {"paths": [str(path)]})
    assert result["watch"]["watched"] is True, result["watch"]
    [info] = result["files"]
    assert [h["pid"] for h in info["holders"]] == [daemon.pid]
    [waiter] = info["waiters"]
    assert (waiter["pid"], waiter["wait"], waiter["blocked_by"]) == (daemon.pid, "polling", [daemon.pid])
    [dead] = result["self_deadlocks"]
    assert (dead["pid"], dead["wait"], dead["path"]) == (daemon.pid, "polling", str(path))

    found = run_module("gp_lockfile_info", {})
    assert [d["pid"] for d in found["self_deadlocks"] if d["path"] == str(path)] == [daemon.pid]

    by_pid = run_module("gp_lockfile_info", {"pid": daemon.pid})
    report = by_pid["pid_report"]
    assert report["waiting_for"] == [{"path": str(path), "wait": "polling", "blocked_by": [daemon.pid],
                                      "self_deadlock": True, "shares_description_with": []}]
    assert "self-deadlock" in report["explanation"] and "filelock 3.x" in report["explanation"]
    assert report["stack_error"] is None, report["stack_error"]
    assert "acquire (filelock/_api.py" in report["stack"] and "<lambda> (" in report["stack"]
    assert 'lock_filename: "%s"' % path in report["stack"]
    assert daemon.poll() is None


def test_filelock3_waiter_behind_another_process_is_no_self_deadlock(tmp_path, filelock_program):
    path = tmp_path / "job.lock"
    holder = filelock_program(path, "hold")
    assert _locked(holder)
    waiter = filelock_program(path, "hold")
    time.sleep(0.3)
    [info] = run_module("gp_lockfile_info", {"paths": [str(path)]})["files"]
    assert [(w["pid"], w["wait"], w["blocked_by"]) for w in info["waiters"]] == [(waiter.pid, "polling", [holder.pid])]
    assert info["self_deadlocks"] == []
    report = run_module("gp_lockfile_info", {"pid": waiter.pid, "poll_window": 1.0})["pid_report"]
    assert [(w["self_deadlock"], w["blocked_by"]) for w in report["waiting_for"]] == [(False, [holder.pid])]


def test_child_waiting_behind_the_description_it_shares_with_its_parent(tmp_path, spawn):
    """A parent holds a flock and forks; the child, which inherited the descriptor, opens the file itself
    and blocks. It waits for its parent (the child gets the lock when the parent lets go), not for itself;
    once the parent is gone without letting go, the child alone holds the description and does wait for itself."""
    children = []
    try:
        for release in (True, False):
            path = tmp_path / ("fork-%s.lock" % release)
            out = tmp_path / ("fork-%s.out" % release)
            parent = spawn([sys.executable, FORK_HELPER, str(path)], stdout=open(out, "w"))
            child = int(wait_for(lambda: [line.split()[1] for line in out.read_text().splitlines()
                                          if line.startswith("child ") and line != "child locked"])[0])
            children.append(child)
            assert wait_for(lambda: _waiting(child, path))
            result = run_module("gp_lockfile_info", {"paths": [str(path)], "poll_window": 0.2})
            [info] = result["files"]
            assert result["self_deadlocks"] == [], info
            [waiter] = info["waiters"]
            assert (waiter["pid"], waiter["shares_description_with"]) == (child, [parent.pid])
            assert sorted({h["pid"] for h in info["holders"]}) == sorted([parent.pid, child])
            if release:
                os.kill(parent.pid, signal.SIGUSR1)
                assert wait_for(lambda: "child locked" in out.read_text(), timeout=20)
                [info] = run_module("gp_lockfile_info", {"paths": [str(path)], "poll_window": 0})["files"]
                assert info["waiters"] == [] and [h["pid"] for h in info["holders"]] == [child]
            else:
                os.kill(parent.pid, signal.SIGUSR2)
                parent.wait(timeout=20)
                result = run_module("gp_lockfile_info", {"paths": [str(path)], "poll_window": 0})
                assert [(d["pid"], d["wait"]) for d in result["self_deadlocks"]] == [(child, "kernel")]
    finally:
        for child in children:
            try:
                os.kill(child, signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_bad_paths_and_pids(tmp_path):
    directory = run_module("gp_lockfile_info", {"paths": [str(tmp_path)], "poll_window": 0})
    assert not directory.get("failed") and directory["files"][0]["is_directory"] is True
    target = tmp_path / "real.lock"
    target.write_bytes(b"\xff\x00garbage")
    link = tmp_path / "link.lock"
    link.symlink_to(target)
    os.chmod(target, 0)
    linked = run_module("gp_lockfile_info", {"paths": [str(link)], "poll_window": 0})
    assert not linked.get("failed") and linked["files"][0]["realpath"] == str(target)
    assert target.exists() and link.is_symlink()
    beyond = run_module("gp_lockfile_info", {"pid": 2 ** 22 + 7})  # above Linux's highest pid_max
    assert beyond["failed"] and beyond["msg"].startswith("pid must be a finite number")
    ended = subprocess.Popen(["true"])
    ended.wait()  # its pid is free now (and not reused this soon)
    gone = run_module("gp_lockfile_info", {"pid": ended.pid})
    assert gone["failed"] and gone["msg"].startswith("pid: no process")
    kthread = run_module("gp_lockfile_info", {"pid": 2})
    assert kthread["failed"] and "kernel thread" in kthread["msg"]
    assert run_module("gp_lockfile_info", {"pid": -3})["failed"]
    window = run_module("gp_lockfile_info", {"poll_window": 600})
    assert window["failed"] and "poll_window" in window["msg"]
