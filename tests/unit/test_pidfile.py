"""Pid and lock file parsing and the stale/live verdict (plugins/module_utils/plan/pid_files.py).

Pure verdict tests build observations by hand; the others use real files and real
processes of this machine's /proc (no server needed).
"""
import hashlib
import os
import subprocess
import sys
import time

import pytest

from ansible_collections.gpops.greenplum.plugins.module_utils.plan import pid_files as pidfile
from ansible_collections.gpops.greenplum.plugins.module_utils.collect import procinfo
from ansible_collections.gpops.greenplum.plugins.module_utils.act import pid_file_remover
from ansible_collections.gpops.greenplum.plugins.module_utils.act.executor import execute

POSTMASTER_TEXT = "4242\n/data/gpseg0\n1732160000\n6000\n/tmp\n*\n  6000001     32768\nready   \n"


def test_parse_postmaster_pid_all_lines():
    parsed = pidfile.parse_pidfile(POSTMASTER_TEXT, pidfile.POSTMASTER)
    assert parsed.pid == 4242 and not parsed.single_user
    assert parsed.data_directory == "/data/gpseg0"
    assert (parsed.start_time, parsed.port, parsed.socket_directory) == (1732160000, 6000, "/tmp")
    assert (parsed.shm_key, parsed.shm_id, parsed.status) == (6000001, 32768, "ready")


def test_parse_postmaster_pid_being_written_and_single_user():
    parsed = pidfile.parse_pidfile("-77\n/data/x\n", pidfile.POSTMASTER)
    assert parsed.pid == 77 and parsed.single_user
    assert parsed.shm_id is None and parsed.port is None


@pytest.mark.parametrize("text,kind", [
    ("hello\n", pidfile.PIDFILE),
    ("", pidfile.PIDFILE),
    ("1\n", pidfile.PIDFILE),
    ("-5\n", pidfile.PIDFILE),
    ("4242\nnot a path\n", pidfile.POSTMASTER),
    ("12\0\n", pidfile.PIDFILE),
])
def test_parse_rejects_what_is_not_a_pidfile(text, kind):
    with pytest.raises(pidfile.NotAPidFile):
        pidfile.parse_pidfile(text, kind)


def test_kind_of_names():
    assert pidfile.kind_of("/d/postmaster.pid") == pidfile.POSTMASTER
    assert pidfile.kind_of("/tmp/.s.PGSQL.5432.lock") == pidfile.SOCKET_LOCK
    assert pidfile.kind_of("/run/nginx.pid") == pidfile.PIDFILE


def _proc(pid=4242, uid=1000, comm="postgres", cmdline=("postgres", "-D", "/data/gpseg0"),
          start=1732160000.0, cwd="/data/gpseg0", state="S"):
    return procinfo.ProcessInfo(pid=pid, uid=uid, state=state, start_time=start, comm=comm,
                                cmdline=tuple(cmdline), exe="/usr/bin/" + comm, cwd=cwd, ppid=1)


def _obs(process, shm=None, text=POSTMASTER_TEXT, uid=1000):
    parsed = pidfile.parse_pidfile(text, pidfile.POSTMASTER)
    return pidfile.Observation(
        path="/data/gpseg0/postmaster.pid", kind=pidfile.POSTMASTER, text=text,
        file=pidfile.FileState(device=1, inode=2, uid=uid, mtime=1732160001.0), parsed=parsed,
        process=process, our_pids=(1, 2), expected_command=pidfile.POSTGRES_COMMAND,
        expected_uid=uid, expected_cwd="/data/gpseg0", shm_segment=shm)


def _failed(evidence):
    return {c["check"] for c in evidence if c["passed"] is False} - {"shared_memory_attached"}


def test_running_server_is_live():
    verdict, evidence = pidfile.judge(_obs(_proc(), procinfo.SharedMemorySegment(6000001, 32768, 1000, 7, 4242)))
    assert verdict == pidfile.LIVE
    assert not _failed(evidence)


def test_attached_shared_memory_keeps_file_live_without_pid():
    """PostgreSQL: 'pre-existing shared memory block is still in use' (orphan backends)."""
    verdict, evidence = pidfile.judge(_obs(None, procinfo.SharedMemorySegment(6000001, 32768, 1000, 3, 4242)))
    assert verdict == pidfile.LIVE
    assert evidence[0]["check"] == "shared_memory_attached" and evidence[0]["passed"] is True


def test_shared_memory_of_another_user_or_unattached_is_free():
    for seg in (procinfo.SharedMemorySegment(6000001, 32768, 0, 3, 1),
                procinfo.SharedMemorySegment(6000001, 32768, 1000, 0, 1)):
        verdict, _ = pidfile.judge(_obs(None, seg))
        assert verdict == pidfile.STALE


def test_gone_pid_is_stale():
    verdict, evidence = pidfile.judge(_obs(None))
    assert verdict == pidfile.STALE and "process_exists" in _failed(evidence)


@pytest.mark.parametrize("process,failed", [
    (_proc(comm="sleep", cmdline=("sleep", "600"), cwd="/home/x"), {"command", "data_directory"}),
    (_proc(uid=0), {"owner"}),
    (_proc(pid=2), {"not_our_own_pid"}),
    (_proc(cwd="/data/other"), {"data_directory"}),
    (_proc(state="Z"), {"not_zombie"}),
])
def test_reused_pid_is_stale_with_the_failed_check_named(process, failed):
    verdict, evidence = pidfile.judge(_obs(process))
    assert verdict == pidfile.STALE
    assert _failed(evidence) == failed


def test_unknown_cwd_is_not_proof():
    verdict, evidence = pidfile.judge(_obs(_proc(cwd=None)))
    assert verdict == pidfile.LIVE
    assert [c["passed"] for c in evidence if c["check"] == "data_directory"] == [None]


def test_unreadable_proc_gives_no_verdict():
    obs = _obs(None)
    obs.proc_error = "cannot read /nope/stat"
    assert pidfile.judge(obs)[0] == pidfile.UNREADABLE


# Real files and real processes.

@pytest.fixture
def sleeper():
    proc = subprocess.Popen(["sleep", "300"])
    time.sleep(0.05)
    yield proc
    proc.kill()
    proc.wait()


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_observe_plain_pidfile_of_a_live_process(tmp_path, sleeper):
    path = _write(tmp_path, "sleep.pid", "%d\n" % sleeper.pid)
    obs = pidfile.observe(path, expected_command="^sleep$")
    verdict, evidence = pidfile.judge(obs)
    assert verdict == pidfile.LIVE, evidence
    assert obs.process.comm == "sleep" and obs.process.cmdline == ("sleep", "300")
    report = pidfile.report(obs, verdict, evidence)
    assert report["alive"] is True and report["process"]["exe"].endswith("sleep")


def test_observe_plain_pidfile_of_another_program(tmp_path, sleeper):
    path = _write(tmp_path, "nginx.pid", "%d\n" % sleeper.pid)
    verdict, evidence = pidfile.judge(pidfile.observe(path, expected_command="^nginx$"))
    assert verdict == pidfile.STALE and _failed(evidence) == {"command"}


def test_process_started_after_the_file_was_written_is_reported_not_decisive(tmp_path, sleeper):
    """A time alone never makes a live process's file stale (a copy with kept mtime, touch, a clock step)."""
    path = _write(tmp_path, "sleep.pid", "%d\n" % sleeper.pid)
    old = time.time() - 3600
    os.utime(path, (old, old))
    verdict, evidence = pidfile.judge(pidfile.observe(path))
    assert verdict == pidfile.LIVE and _failed(evidence) == {"started_before_file"}
    verdict, evidence = pidfile.judge(pidfile.observe(path, expected_command="^nginx$"))
    assert verdict == pidfile.STALE and _failed(evidence) == {"started_before_file", "command"}


def test_started_late_postgres_server_is_live():
    verdict, evidence = pidfile.judge(_obs(_proc(start=1732169999.0)))
    assert verdict == pidfile.LIVE and _failed(evidence) == {"started_before_file"}


def test_wrong_expectation_is_no_proof_against_a_postgres_server():
    """The caller's expected_command/expected_owner fail, PostgreSQL's own facts say it is the server."""
    obs = _obs(_proc())
    obs.expected_command, obs.expected_uid = "^nginx$", 0
    verdict, evidence = pidfile.judge(obs)
    assert verdict == pidfile.LIVE and _failed(evidence) == {"command", "owner"}
    assert [c["passed"] for c in evidence if c["check"] == "postgres_server"] == [True]
    obs.listening_ports = [6000]
    obs.process = _proc(cwd="/elsewhere")
    verdict, evidence = pidfile.judge(obs)
    assert verdict == pidfile.LIVE and [c["passed"] for c in evidence if c["check"] == "listens_on_port"] == [True]


def test_a_locked_file_is_live(tmp_path, sleeper):
    import fcntl
    path = _write(tmp_path, "nginx.pid", "%d\n" % sleeper.pid)
    with open(path) as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        verdict, evidence = pidfile.judge(pidfile.observe(path, expected_command="^nginx$"))
    assert verdict == pidfile.LIVE and [c["passed"] for c in evidence if c["check"] == "file_locked"] == [True]


def test_symlink_is_not_judged(tmp_path, sleeper):
    target = _write(tmp_path, "real.pid", "%d\n" % sleeper.pid)
    link = tmp_path / "link.pid"
    link.symlink_to(target)
    verdict, evidence = pidfile.judge(pidfile.observe(str(link)))
    assert verdict == pidfile.NOT_A_PIDFILE and "symbolic link to %s" % target in evidence[0]["detail"]


def test_companion_socket_lock():
    parsed = pidfile.parse_pidfile(POSTMASTER_TEXT, pidfile.POSTMASTER)
    assert pidfile.companion_socket_lock(parsed) == "/tmp/.s.PGSQL.6000.lock"
    sock = pidfile.parse_pidfile("4242\n/data/gpseg0/\n1732160000\n6000\n/tmp\n", pidfile.SOCKET_LOCK)
    assert pidfile.same_server(parsed, sock)
    other = pidfile.parse_pidfile("4243\n/data/gpseg0\n1732160000\n6000\n/tmp\n", pidfile.SOCKET_LOCK)
    assert not pidfile.same_server(parsed, other)
    nosock = pidfile.parse_pidfile("4242\n/data/gpseg0\n1732160000\n6000\n\n", pidfile.POSTMASTER)
    assert pidfile.companion_socket_lock(nosock) is None


def test_our_own_pid_is_never_a_competing_process(tmp_path):
    path = _write(tmp_path, "me.pid", "%d\n" % os.getpid())
    verdict, evidence = pidfile.judge(pidfile.observe(path))
    assert verdict == pidfile.STALE and "not_our_own_pid" in _failed(evidence)


def _plan_one(path, expected_command):
    obs = pidfile.observe(path, expected_command=expected_command)
    judged = [(obs,) + pidfile.judge(obs)]
    return pidfile.plan(judged, {})


def _remover(expected_command):
    return pid_file_remover.FileRemover(
        lambda path: pidfile.judge(pidfile.observe(path, expected_command=expected_command))[0])


def test_plan_guards_each_stale_file_by_inode_and_content(tmp_path, sleeper):
    path = _write(tmp_path, "nginx.pid", "%d\n" % sleeper.pid)
    plan = _plan_one(path, "^nginx$")
    [step] = plan.steps
    st = os.stat(path)
    assert step.action == "remove_file" and step.reason.value == "stale_pid_file"
    assert step.guard.facts == {"path": path, "st_dev": st.st_dev, "st_ino": st.st_ino,
                                "sha256": hashlib.sha256(("%d\n" % sleeper.pid).encode()).hexdigest()}
    live = _plan_one(path, "^sleep$")
    assert live.steps == () and [r.reason.value for r in live.refusals] == ["not_stale"]


@pytest.mark.parametrize("change", ["rewrite in place", "replace by a new inode", "remove"])
def test_a_file_changed_after_the_plan_is_kept(tmp_path, sleeper, change):
    path = _write(tmp_path, "nginx.pid", "%d\n" % sleeper.pid)
    plan = _plan_one(path, "^nginx$")
    if change == "rewrite in place":
        with open(path, "r+") as handle:
            handle.write("%d\n" % os.getppid())
    elif change == "replace by a new inode":
        os.rename(_write(tmp_path, "new.pid", "%d\n" % sleeper.pid), path)  # same content, another inode
    else:
        os.unlink(path)
    [outcome] = execute(plan.steps, _remover("^nginx$").runners())
    assert outcome.result == "skipped" and outcome.reason.value == "guard_file_changed"
    assert os.path.exists(path) is (change != "remove")
    assert sorted(os.listdir(tmp_path)) == (["nginx.pid"] if change != "remove" else [])


def test_unchanged_stale_file_is_removed_and_check_mode_removes_nothing(tmp_path, sleeper):
    path = _write(tmp_path, "nginx.pid", "%d\n" % sleeper.pid)
    plan = _plan_one(path, "^nginx$")
    assert [o.result for o in execute(plan.steps, _remover("^nginx$").runners(), check_mode=True)] == ["planned"]
    assert os.path.exists(path)
    [outcome] = execute(plan.steps, _remover("^nginx$").runners())
    assert outcome.result == "done" and not os.path.exists(path) and os.listdir(tmp_path) == []


def test_a_file_no_longer_stale_is_kept(tmp_path, sleeper):
    path = _write(tmp_path, "sleep.pid", "%d\n" % sleeper.pid)
    plan = _plan_one(path, "^nginx$")
    [outcome] = execute(plan.steps, _remover("^sleep$").runners())  # judged again: now it is the daemon's
    assert outcome.result == "skipped" and outcome.reason.value == "guard_no_longer_stale" and os.path.exists(path)


def test_a_file_rewritten_between_the_check_and_the_rename_is_put_back(tmp_path, sleeper):
    """The daemon rewrites the file after the runner compared it: what was renamed is not what
    was judged, so it goes back to its path and nothing is removed."""
    path = _write(tmp_path, "nginx.pid", "%d\n" % sleeper.pid)
    plan = _plan_one(path, "^nginx$")

    class Racing(pid_file_remover.FileRemover):
        def _move_aside(self, src, private):
            with open(src, "w") as handle:
                handle.write("%d\n" % os.getppid())
            super()._move_aside(src, private)

    remover = Racing(lambda p: pidfile.judge(pidfile.observe(p, expected_command="^nginx$"))[0])
    [outcome] = execute(plan.steps, remover.runners())
    assert outcome.result == "skipped" and outcome.reason.value == "guard_file_changed"
    assert os.listdir(tmp_path) == ["nginx.pid"] and open(path).read() == "%d\n" % os.getppid()


@pytest.mark.parametrize("content", [b"not a pid\n", b"\xff\xfe\x00", b"1" * 5000])
def test_observe_bad_content_is_not_a_pidfile(tmp_path, content):
    path = tmp_path / "x.pid"
    path.write_bytes(content)
    assert pidfile.judge(pidfile.observe(str(path)))[0] == pidfile.NOT_A_PIDFILE


def test_observe_directory_missing_file_and_bad_proc(tmp_path, sleeper):
    assert pidfile.judge(pidfile.observe(str(tmp_path)))[0] == pidfile.NOT_A_PIDFILE
    assert pidfile.judge(pidfile.observe(str(tmp_path / "none.pid")))[0] == pidfile.ABSENT
    path = _write(tmp_path, "sleep.pid", "%d\n" % sleeper.pid)
    verdict, evidence = pidfile.judge(pidfile.observe(path, proc=str(tmp_path / "noproc")))
    assert verdict == pidfile.UNREADABLE and "procfs" in evidence[0]["detail"]


def test_read_process_of_this_interpreter():
    info = procinfo.read_process(os.getpid())
    assert info.uid == os.getuid() and info.ppid == os.getppid()
    assert os.path.realpath(info.exe) == os.path.realpath(sys.executable)
    assert abs(info.start_time - time.time()) < 24 * 3600
    assert procinfo.read_process(2 ** 22 + 1) is None


def test_parse_stat_with_parentheses_in_comm():
    text = "77 (a) b (c)) S 1 77 77 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 12345 0 0"
    assert procinfo.parse_stat(text) == ("a) b (c)", "S", 1, 12345)


def test_program_names_of_a_retitled_postgres_process():
    info = _proc(comm="postgres", cmdline=("postgres: checkpointer ",))
    assert procinfo.program_names(info)[:3] == ["postgres", "postgres", "postgres"]
    assert procinfo.program_names(_proc(cmdline=(": odd",)))[-1] == ": odd"


def test_data_directory_line_is_reported_not_decisive():
    copied = POSTMASTER_TEXT.replace("/data/gpseg0", "/data/elsewhere")
    verdict, evidence = pidfile.judge(_obs(_proc(), text=copied))
    assert verdict == pidfile.LIVE
    assert [c["passed"] for c in evidence if c["check"] == "data_directory_line"] == [False]
