# -*- coding: utf-8 -*-
# Copyright: gpops.greenplum contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Is the process named by a pid file really the one that wrote it?

A daemon refuses to start when its pid file names a PID that is alive, and
``kill -0`` cannot tell a live server from an unrelated process that got the
same PID after a crash or reboot. This module decides by identity instead.

Layers (facts, then a pure judgement, then an act that re-checks): :func:`parse_pidfile` (text -> record),
:func:`observe` (reads the file, ``/proc`` and SysV shared memory: facts),
:func:`judge` (facts -> verdict and evidence, pure), :func:`plan` (the ``remove_file``
steps, each with a ``file`` guard: inode and content judged); ``act/pid_file_remover.py``
removes a file only while it is the one judged (docs/safety.md#pid-and-lock-files).

PostgreSQL's own rules, ``src/backend/utils/init/miscinit.c`` ``CreateLockFile``:
- a lock file holds, one per line, the PID (negative for a single-user
  backend), the data directory, the start time (epoch seconds), the port, the
  socket directory, the listen address, the shared memory key and id, and the
  status (``postmaster.pid`` only, lines 6-8; ``.s.PGSQL.<port>.lock`` socket
  lock files stop at line 5);
- a PID equal to our own or our parent's is never a competing server;
- a PID owned by another user (``kill`` fails with ``EPERM``) is not a
  competing server either: a server only runs on a data directory owned by its
  own user, and lock files are created mode 0600;
- even with no live PID, ``postmaster.pid`` is not stale while the shared
  memory segment it names is still attached by old backends
  (``PGSharedMemoryIsInUse``, ``src/backend/port/sysv_shmem.c``: the segment
  exists, belongs to the server's user and ``shm_nattch`` > 0).

What keeps a file live (any one suffices, whatever else failed): the process
listens on the TCP port the file names; for PostgreSQL files, the process is a
``postgres`` of the file's owner working in the file's data directory (facts of
PostgreSQL itself, not of the caller's ``expected_command``/``expected_owner``);
for ``postmaster.pid``, its shared memory is still attached; for any file, some
process holds a ``flock``/``fcntl`` lock on it. A wrong expectation of the
caller is no evidence of staleness against these facts.

What makes a file stale: no process has the PID (and nothing above keeps it),
the process is a zombie or this tool, or an identity check (command, owner,
working directory) failed and nothing above keeps it live. The start time
against the file's time (``started_before_file``) is reported but never decides:
an mtime older than the process's start is what a copy with kept times, a
``touch`` or a clock step gives for a live daemon.

Verdicts: ``live`` (the file belongs to a running process or its shared memory
is in use), ``stale`` (proven not to), ``absent`` (no such file),
``not_a_pidfile`` and ``unreadable`` (nothing can be decided; never removed).

A ``postmaster.pid`` and the socket lock file it names (line 4 port, line 5
socket directory: ``<dir>/.s.PGSQL.<port>.lock``) are one decision when the
latter names the same PID and data directory: :func:`companion_socket_lock`.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import dataclasses
import hashlib
import os
import re
import stat as stat_mod
from typing import Any, Dict, List, Optional, Tuple

from ansible_collections.gpops.greenplum.plugins.module_utils.analyse import file_locks as lockfile
from ansible_collections.gpops.greenplum.plugins.module_utils.collect import procinfo
from ansible_collections.gpops.greenplum.plugins.module_utils.plan.reasons import Reason
from ansible_collections.gpops.greenplum.plugins.module_utils.plan.steps import Guard, Plan, Refusal, Step

POSTMASTER = "postmaster"  # a data directory's postmaster.pid
SOCKET_LOCK = "socket_lock"  # PostgreSQL's .s.PGSQL.<port>.lock
PIDFILE = "pidfile"  # any daemon's pid file: first line is the PID

# A pid file is a few lines; anything bigger is some other file.
MAX_PIDFILE_BYTES = 4096
# /proc start times are exact to one clock tick, btime to one second; a
# server writes its file after it starts. Two seconds absorbs both.
START_TIME_TOLERANCE = 2.0
# PostgreSQL and Greenplum servers run as "postgres" (title "postgres: ...").
POSTGRES_COMMAND = r"^(postgres|postmaster)$"

LIVE, STALE, ABSENT, NOT_A_PIDFILE, UNREADABLE = "live", "stale", "absent", "not_a_pidfile", "unreadable"
_SOCKET_LOCK_NAME = re.compile(r"^\.s\.PGSQL\.\d+\.lock$")


class NotAPidFile(ValueError):
    """The file's content is not a pid file of the expected kind."""


@dataclasses.dataclass(frozen=True)
class PidFile:
    """What a pid or lock file says. Times are epoch seconds."""

    kind: str
    pid: int
    single_user: bool = False
    data_directory: Optional[str] = None
    start_time: Optional[int] = None
    port: Optional[int] = None
    socket_directory: Optional[str] = None
    listen_address: Optional[str] = None
    shm_key: Optional[int] = None
    shm_id: Optional[int] = None
    status: Optional[str] = None


def kind_of(path):
    """Which format a path's name implies: postmaster.pid, a socket lock file, or a plain pid file."""
    name = os.path.basename(path)
    if name == "postmaster.pid":
        return POSTMASTER
    if _SOCKET_LOCK_NAME.match(name):
        return SOCKET_LOCK
    return PIDFILE


def _pid_line(line, allow_negative):
    text = line.strip()
    if not re.match(r"^-?\d{1,10}$", text):
        raise NotAPidFile("first line %r is not a process id" % text[:40])
    pid = int(text)
    if pid < 0 and allow_negative:
        return -pid, True
    if pid <= 1:
        raise NotAPidFile("first line names PID %d, which no daemon can have" % pid)
    return pid, False


def parse_pidfile(text, kind):
    # type: (str, str) -> PidFile
    """Parse a pid file's text. Raises :class:`NotAPidFile` with the reason.

    For PostgreSQL files the lines after the PID follow ``LOCK_FILE_LINE_*`` of
    ``src/include/miscadmin.h``; a file being written may stop early, so
    missing trailing lines are ``None`` (as ``CreateLockFile`` tolerates).
    """
    if "\0" in text:
        raise NotAPidFile("binary content")
    lines = text.split("\n")
    if kind == PIDFILE:
        return PidFile(kind=kind, pid=_pid_line(lines[0].split()[0] if lines[0].split() else "", False)[0])
    pid, single_user = _pid_line(lines[0], True)
    if len(lines) < 2 or not lines[1].startswith("/"):
        raise NotAPidFile("second line is not the data directory of a PostgreSQL lock file")

    def line(number):
        return lines[number - 1].strip() if len(lines) >= number and lines[number - 1].strip() else None

    def number(value):
        return int(value) if value is not None and value.lstrip("-").isdigit() else None

    shm = (line(7) or "").split()
    shm_ok = len(shm) == 2 and all(part.isdigit() for part in shm)
    return PidFile(
        kind=kind, pid=pid, single_user=single_user, data_directory=lines[1].rstrip(),
        start_time=number(line(3)), port=number(line(4)), socket_directory=line(5),
        listen_address=line(6), shm_key=int(shm[0]) if shm_ok else None,
        shm_id=int(shm[1]) if shm_ok else None, status=line(8))


@dataclasses.dataclass(frozen=True)
class FileState:
    """The file's identity and owner, from ``stat``."""

    device: int
    inode: int
    uid: int
    mtime: float


@dataclasses.dataclass
class Observation:
    """Every fact :func:`judge` needs about one file; gathered by :func:`observe`."""

    path: str
    kind: str
    text: Optional[str] = None
    file: Optional[FileState] = None
    error: Optional[str] = None  # why the file could not be read (verdict unreadable)
    missing: bool = False
    parsed: Optional[PidFile] = None
    parse_error: Optional[str] = None
    process: Optional[procinfo.ProcessInfo] = None
    proc_error: Optional[str] = None  # procfs unreadable: nothing can be proven
    our_pids: Tuple[int, ...] = ()
    expected_command: Optional[str] = None
    expected_uid: Optional[int] = None
    expected_cwd: Optional[str] = None
    shm_segment: Optional[procinfo.SharedMemorySegment] = None
    shm_error: Optional[str] = None
    listening_ports: Optional[List[int]] = None
    # PIDs holding a flock/fcntl/OFD lock on the file (-1: an OFD lock); None = unknown.
    locked_by: Optional[List[int]] = None
    symlink_to: Optional[str] = None
    sha256: Optional[str] = None  # of the bytes read (``text``): the content judged


def locks_on(file_key, proc=procinfo.PROC):
    """PIDs holding a lock on the file with ``file_key`` (``/proc/locks``), or None when unreadable."""
    try:
        return sorted({lock.pid for lock in lockfile.read_locks(proc)
                       if lock.file_key == file_key and not lock.blocked})
    except procinfo.ProcUnreadable:
        return None


def companion_socket_lock(parsed):
    """The socket lock file a ``postmaster.pid`` names: ``<line 5>/.s.PGSQL.<line 4>.lock``, or None.

    ``parsed``: a :class:`PidFile` of kind ``postmaster``. None when the file names
    no port or no absolute socket directory (``unix_socket_directories`` empty, or
    an abstract ``@`` socket, which has no lock file).
    """
    if parsed is None or parsed.port is None or not (parsed.socket_directory or "").startswith("/"):
        return None
    return os.path.join(parsed.socket_directory, ".s.PGSQL.%d.lock" % parsed.port)


def same_server(postmaster, socket_lock):
    """True when a socket lock file was written by the server of a ``postmaster.pid``: the same PID
    and data directory (both :class:`PidFile`). Such files are judged and removed together."""
    return (postmaster is not None and socket_lock is not None and socket_lock.pid == postmaster.pid
            and os.path.realpath(socket_lock.data_directory or "") == os.path.realpath(postmaster.data_directory))


def observe(path, expected_command=None, expected_uid=None, proc=procinfo.PROC):
    # type: (str, Optional[str], Optional[int], str) -> Observation
    """Read the file and everything ``/proc`` says about the PID it names.

    ``expected_command``: regex (``re.search``) that one of the process's names
    (comm, executable basename, argv[0] basename, whole command line) must
    match; defaults to :data:`POSTGRES_COMMAND` for PostgreSQL lock files.
    ``expected_uid``: the uid the process must run as; PostgreSQL lock files
    default to the file's owner (their rule), plain pid files check no owner
    unless given, since many daemons write their pid file as root and then
    drop privileges. Never raises for file or procfs problems: they become
    ``error``/``proc_error`` facts.
    """
    kind = kind_of(path)
    obs = Observation(path=path, kind=kind, our_pids=(os.getpid(), os.getppid()),
                      expected_command=expected_command or (POSTGRES_COMMAND if kind != PIDFILE else None))
    try:
        lst = os.lstat(path)
        if stat_mod.S_ISLNK(lst.st_mode):
            obs.symlink_to = os.path.realpath(path)
            obs.parse_error = ("a symbolic link to %s: daemons and PostgreSQL write their pid and lock files "
                               "in place, so this is not judged (give the file itself)" % obs.symlink_to)
            return obs
        st = os.stat(path)
    except FileNotFoundError:
        obs.missing = True
        return obs
    except OSError as exc:
        obs.error = "cannot stat: %s" % (exc.strerror or exc)
        return obs
    if not stat_mod.S_ISREG(st.st_mode):
        obs.parse_error = "not a regular file"
        return obs
    if st.st_size > MAX_PIDFILE_BYTES:
        obs.parse_error = "%d bytes, larger than any pid file (%d)" % (st.st_size, MAX_PIDFILE_BYTES)
        return obs
    obs.file = FileState(device=st.st_dev, inode=st.st_ino, uid=st.st_uid, mtime=st.st_mtime)
    try:
        # The identity and the content judged come from one open file (fstat of what was read).
        with open(path, "rb", opener=lambda p, flags: os.open(p, flags | os.O_NOFOLLOW)) as handle:
            fst = os.fstat(handle.fileno())
            obs.file = FileState(device=fst.st_dev, inode=fst.st_ino, uid=fst.st_uid, mtime=fst.st_mtime)
            raw = handle.read(MAX_PIDFILE_BYTES + 1)
        obs.sha256 = hashlib.sha256(raw).hexdigest()
        obs.text = raw.decode("utf-8")
    except UnicodeDecodeError:
        obs.parse_error = "not text"
        return obs
    except OSError as exc:
        obs.error = "cannot read: %s" % (exc.strerror or exc)
        return obs
    try:
        obs.parsed = parse_pidfile(obs.text, kind)
    except NotAPidFile as exc:
        obs.parse_error = str(exc)
        return obs
    obs.expected_uid = expected_uid if expected_uid is not None else (st.st_uid if kind != PIDFILE else None)
    if kind == POSTMASTER:
        obs.expected_cwd = os.path.realpath(os.path.dirname(os.path.abspath(path)))
    elif kind == SOCKET_LOCK:
        obs.expected_cwd = os.path.realpath(obs.parsed.data_directory)
    try:
        obs.process = procinfo.read_process(obs.parsed.pid, proc)
        if kind == POSTMASTER and obs.parsed.shm_id is not None:
            obs.shm_segment = next((s for s in procinfo.read_shm_segments(proc)
                                    if s.shmid == obs.parsed.shm_id), None)
        if obs.process is not None and obs.parsed.port is not None:
            obs.listening_ports = procinfo.listening_ports(obs.parsed.pid, proc)
        obs.locked_by = locks_on((os.major(st.st_dev), os.minor(st.st_dev), st.st_ino), proc)
    except procinfo.ProcUnreadable as exc:
        obs.proc_error = str(exc)
    return obs


def _check(name, passed, detail):
    return {"check": name, "passed": passed, "detail": detail}


def _identity_checks(obs):
    """Checks that a live PID is the file's writer; each is ``passed`` True/False or None (unknown)."""
    proc, parsed = obs.process, obs.parsed
    checks = []
    ours = proc.pid in obs.our_pids
    checks.append(_check("not_our_own_pid", not ours,
                         "PID %d is this tool or its parent (PostgreSQL ignores such PIDs)" % proc.pid
                         if ours else "PID %d is not this tool or its parent" % proc.pid))
    if obs.expected_uid is not None:
        checks.append(_check("owner", proc.uid == obs.expected_uid,
                             "process runs as uid %d, the file's server runs as uid %d%s" % (
                                 proc.uid, obs.expected_uid,
                                 "" if proc.uid == obs.expected_uid else
                                 " (PostgreSQL's rule: another user's process is not a competing server)")))
    if obs.expected_command:
        names = procinfo.program_names(proc)
        matched = any(re.search(obs.expected_command, name) for name in names)
        checks.append(_check("command", matched, "process names %r %s /%s/" % (
            names[:3], "match" if matched else "do not match", obs.expected_command)))
    if obs.expected_cwd is not None:
        if proc.cwd is None:
            checks.append(_check("data_directory", None, "cwd of PID %d is not readable" % proc.pid))
        else:
            same = os.path.realpath(proc.cwd) == obs.expected_cwd
            checks.append(_check("data_directory", same, "process works in %s, the data directory is %s" % (
                proc.cwd, obs.expected_cwd)))
    if proc.state == "Z":
        checks.append(_check("not_zombie", False, "PID %d is a zombie: it has exited" % proc.pid))
    return checks


def _time_check(obs):
    """Process start against the file's time: reported, never decisive (see the module doc)."""
    written = obs.parsed.start_time if obs.parsed.start_time is not None else obs.file.mtime
    late = obs.process.start_time > written + START_TIME_TOLERANCE
    return _check("started_before_file", not late,
                  "process started at %.0f, %s the file's time %.0f%s" % (
                      obs.process.start_time, "after" if late else "not after", written,
                      " (a time alone never makes a file stale: copies, touch and clock steps change it)"
                      if late else ""))


def _alive_checks(obs, attached):
    """Facts that the process (or someone) still uses the file; any True keeps it live."""
    proc, parsed = obs.process, obs.parsed
    out = []
    if obs.locked_by:
        out.append(_check("file_locked", True, "PID(s) %s hold a lock on the file" % obs.locked_by))
    if attached:
        out.append(_check("shared_memory_in_use", True, "the server's shared memory is still attached"))
    if proc is None or proc.state == "Z" or proc.pid in obs.our_pids:
        return out
    if obs.listening_ports is not None and parsed.port is not None and parsed.port in obs.listening_ports:
        out.append(_check("listens_on_port", True, "PID %d listens on TCP port %d, the file's port" % (
            proc.pid, parsed.port)))
    if obs.kind != PIDFILE and obs.expected_cwd is not None and proc.cwd is not None:
        names = procinfo.program_names(proc)
        if (any(re.search(POSTGRES_COMMAND, name) for name in names) and proc.uid == obs.file.uid
                and os.path.realpath(proc.cwd) == obs.expected_cwd):
            out.append(_check("postgres_server", True, "PID %d is a postgres of the file's owner (uid %d) "
                              "working in %s" % (proc.pid, proc.uid, obs.expected_cwd)))
    return out


def shm_in_use(obs):
    """``PGSharedMemoryIsInUse`` on /proc data: segment exists, same user, attached."""
    seg = obs.shm_segment
    return seg is not None and seg.nattch > 0 and seg.uid == obs.file.uid


def judge(obs):
    # type: (Observation) -> Tuple[str, List[Dict[str, Any]]]
    """Decide a verdict from an :class:`Observation`; pure. Returns (verdict, evidence).

    ``evidence`` is a list of ``{check, passed, detail}``: ``passed`` False is
    a fact against the file's owner being alive, True one for it, None unknown.
    ``stale`` needs proof: the PID does not exist, or a check of identity
    failed, and for ``postmaster.pid`` its shared memory is not attached.
    An unknown fact never counts as proof.
    """
    if obs.missing:
        return ABSENT, [_check("exists", False, "no such file")]
    if obs.error:
        return UNREADABLE, [_check("readable", False, obs.error)]
    if obs.parse_error:
        return NOT_A_PIDFILE, [_check("format", False, "not a %s file: %s" % (obs.kind, obs.parse_error))]
    if obs.proc_error:
        return UNREADABLE, [_check("procfs", False, obs.proc_error)]
    evidence = []
    attached = False
    if obs.kind == POSTMASTER:
        seg = obs.shm_segment
        if obs.parsed.shm_id is None:
            evidence.append(_check("shared_memory_attached", None, "no shared memory key in the file yet"))
        else:
            attached = shm_in_use(obs)
            evidence.append(_check("shared_memory_attached", attached, "segment key %d id %d: %s" % (
                obs.parsed.shm_key, obs.parsed.shm_id,
                "gone" if seg is None else "uid %d, %d attached" % (seg.uid, seg.nattch))))
    alive = _alive_checks(obs, attached)
    if obs.process is None:
        evidence.append(_check("process_exists", False, "no process with PID %d" % obs.parsed.pid))
        evidence.extend(c for c in alive if c["check"] != "shared_memory_in_use")
        # PostgreSQL refuses to start over attached memory: "pre-existing shared memory block is still in use".
        return (LIVE if alive else STALE), evidence
    evidence.append(_check("process_exists", True, "PID %d exists (%s)" % (obs.process.pid, obs.process.comm)))
    checks = _identity_checks(obs)
    evidence.extend(checks)
    evidence.append(_time_check(obs))
    if obs.kind == POSTMASTER:
        line = os.path.realpath(obs.parsed.data_directory)
        evidence.append(_check("data_directory_line", line == obs.expected_cwd,
                               "the file's data directory line is %s, it lies in %s" % (
                                   obs.parsed.data_directory, obs.expected_cwd)))
    if obs.listening_ports is not None and obs.parsed.port is not None:
        evidence.append(_check("listening", obs.parsed.port in obs.listening_ports,
                               "process listens on TCP %s, the file names port %d" % (
                                   obs.listening_ports, obs.parsed.port)))
    evidence.extend(c for c in alive if c["check"] not in ("shared_memory_in_use",))
    # Only identity checks decide, and only when no fact says the file is still in use (a
    # zombie or this tool never counts as using it); the time, the data directory line and
    # the port are reported.
    if any(c["passed"] is False for c in checks) and not alive:
        return STALE, evidence
    return LIVE, evidence


def report(obs, verdict, evidence):
    """The module's return value for one file."""
    parsed = obs.parsed
    return {
        "path": obs.path,
        "kind": obs.kind,
        "verdict": verdict,
        "pid": parsed.pid if parsed else None,
        "alive": (obs.process is not None and obs.process.state != "Z") if parsed and not obs.proc_error else None,
        "process": obs.process.as_dict() if obs.process else None,
        "file": dataclasses.asdict(parsed) if parsed else None,
        "owner_uid": obs.file.uid if obs.file else None,
        "mtime": obs.file.mtime if obs.file else None,
        "evidence": evidence,
    }


def failed_checks(evidence):
    """The failed checks of a verdict, for people."""
    return "; ".join(c["detail"] for c in evidence if c["passed"] is False)


def file_guard(obs):
    """The ``file`` guard of a ``remove_file`` step: the path, ``st_dev``, ``st_ino`` and the
    ``sha256`` of the content judged (one open file: :func:`observe`)."""
    return Guard("file", {"path": obs.path, "st_dev": obs.file.device, "st_ino": obs.file.inode,
                          "sha256": obs.sha256})


def plan(judged, groups):
    # type: (List[Tuple[Observation, str, List[Dict[str, Any]]]], Dict[str, List[str]]) -> Plan
    """The ``remove_file`` steps for ``judged`` [(observation, verdict, evidence)]; pure.

    ``groups``: ``{postmaster.pid path: [socket lock paths it names]}`` (one decision each,
    :func:`companion_socket_lock`). A stale file on its own is a step
    (``Reason.STALE_PID_FILE``); a stale ``postmaster.pid`` whose socket lock files are all
    stale is steps for the socket locks first (a server starting meanwhile takes
    ``postmaster.pid`` first), then itself, all with ``facts["group"]`` = its path; if one of
    them is not stale, a ``COMPANION_NOT_STALE`` refusal and no step. A ``live`` file is a
    ``NOT_STALE`` refusal. Every step has a ``file`` guard (:func:`file_guard`).
    """
    by_path = {obs.path: (obs, verdict, evidence) for obs, verdict, evidence in judged}
    members = {m for group in groups.values() for m in group}
    steps, refusals = [], []

    def step(obs, evidence, group):
        return Step("remove_file", obs.path, Reason.STALE_PID_FILE,
                    {"path": obs.path, "pid": obs.parsed.pid, "detail": failed_checks(evidence), "group": group},
                    file_guard(obs))

    for obs, verdict, evidence in judged:
        if verdict == LIVE:
            refusals.append(Refusal(obs.path, Reason.NOT_STALE, {
                "what": obs.path, "detail": "; ".join(c["detail"] for c in evidence if c["passed"]) or "live"}))
        if verdict != STALE or obs.path in members:
            continue
        group = [by_path[m] for m in groups.get(obs.path, [])]
        live = [(m[0].path, m[1]) for m in group if m[1] != STALE]
        if live:
            refusals.append(Refusal(obs.path, Reason.COMPANION_NOT_STALE, {
                "path": obs.path, "companion": live[0][0], "verdict": live[0][1]}))
            continue
        steps.extend(step(m_obs, m_evidence, obs.path) for m_obs, _v, m_evidence in group)
        steps.append(step(obs, evidence, obs.path))
    return Plan(tuple(steps), tuple(refusals))
