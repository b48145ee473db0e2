# -*- coding: utf-8 -*-
# Copyright: gpops.greenplum contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Who holds and who waits for file locks, and the self-deadlock signature.

Sources (proc(5), ``fs/locks.c`` ``lock_get_status``):
- ``/proc/locks``: one line per lock, ``ID: TYPE MODE ACCESS PID MAJ:MIN:INODE
  START END``; TYPE is ``FLOCK`` (flock(2)), ``POSIX`` (fcntl/lockf),
  ``OFDLCK`` (open file description locks, PID -1), ``LEASE``/``DELEG``. A
  request blocked behind lock ID follows it as ``ID: -> TYPE ...`` with the
  waiter's PID. Device numbers are hex.
- ``/proc/PID/fdinfo/FD``: ``lock:`` lines for the locks held through that
  descriptor, which name the process and file for OFD locks and for flock
  locks inherited over fork (where /proc/locks shows another PID).

Self-deadlock: a process waiting for a lock on a file while it already holds a
conflicting lock on the same file, e.g. flock(2) taken a second time through
another open file description by a signal handler that re-enters code which
takes the lock. It never ends: the holder is the waiter. (POSIX locks cannot
do this: a process's own POSIX locks never conflict.)

:func:`parse_proc_locks` parses, :func:`gather` reads ``/proc`` (facts),
:func:`analyse` decides (pure), :func:`file_report` shapes the answer.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ctypes
import dataclasses
import os
import re
import select
import shutil
import struct
import sys
import time
from typing import Dict, List, Optional, Tuple

from ansible_collections.gpops.greenplum.plugins.module_utils.collect import procinfo

_LINE = re.compile(
    r"^(?P<id>\d+):\s+(?P<blocked>(?:->\s*)?)(?P<type>[A-Z]+)\s+(?P<mode>[A-Z]+)\s+(?P<access>[A-Z]+)\s+"
    r"(?P<pid>-?\d+)\s+(?P<major>[0-9a-f]+):(?P<minor>[0-9a-f]+):(?P<inode>\d+)\s+(?P<start>\d+)\s+(?P<end>\d+|EOF)")


@dataclasses.dataclass(frozen=True)
class FileLock:
    """One line of ``/proc/locks`` (or a ``lock:`` line of fdinfo)."""

    lock_id: int
    blocked: bool
    type: str
    mode: str
    access: str
    pid: int
    major: int
    minor: int
    inode: int
    start: int
    end: Optional[int]  # None = EOF

    @property
    def file_key(self):
        return (self.major, self.minor, self.inode)

    @property
    def signature(self):
        """What identifies a held lock across /proc/locks and fdinfo (their ID numbers differ:
        fdinfo numbers each descriptor's locks from 1)."""
        return (self.type, self.access, self.pid, self.file_key, self.start, self.end)

    def as_dict(self):
        return dataclasses.asdict(self)


def parse_lock_line(line):
    """Parse one lock line; None for lines it does not describe (e.g. ``<none>`` inodes)."""
    match = _LINE.match(line.strip())
    if not match:
        return None
    g = match.groupdict()
    return FileLock(lock_id=int(g["id"]), blocked=bool(g["blocked"]), type=g["type"], mode=g["mode"],
                    access=g["access"], pid=int(g["pid"]), major=int(g["major"], 16),
                    minor=int(g["minor"], 16), inode=int(g["inode"]), start=int(g["start"]),
                    end=None if g["end"] == "EOF" else int(g["end"]))


def parse_proc_locks(text):
    """All locks of ``/proc/locks`` text, held and blocked, in order."""
    return [lock for lock in map(parse_lock_line, text.splitlines()) if lock is not None]


def file_key_of(path):
    """(major, minor, inode) of a path, as ``/proc/locks`` names it."""
    st = os.stat(path)
    return (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino)


@dataclasses.dataclass(frozen=True)
class FdLock:
    """A lock held through one descriptor of one process (from fdinfo)."""

    pid: int
    fd: int
    path: str
    lock: FileLock


def read_fd_locks(file_keys, proc=procinfo.PROC):
    """Descriptors of every process that point at one of ``file_keys``, with the locks held through them.

    Returns (fd_locks, open_fds): ``open_fds`` maps file key to [(pid, fd, path)] for
    every descriptor open on it, locked or not. Processes and descriptors that vanish
    or are not readable are skipped.
    """
    fd_locks, open_fds = [], {}
    for name in os.listdir(proc):
        if not name.isdigit():
            continue
        fd_dir = os.path.join(proc, name, "fd")
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            link = os.path.join(fd_dir, fd)
            try:
                st = os.stat(link)
                key = (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino)
                if key not in file_keys:
                    continue
                path = os.readlink(link)
                with open(os.path.join(proc, name, "fdinfo", fd)) as handle:
                    info = handle.read()
            except OSError:
                continue
            open_fds.setdefault(key, []).append((int(name), int(fd), path))
            for line in info.splitlines():
                if line.startswith("lock:"):
                    lock = parse_lock_line(line[len("lock:"):])
                    if lock is not None:
                        fd_locks.append(FdLock(pid=int(name), fd=int(fd), path=path, lock=lock))
    return fd_locks, open_fds


def _conflict(held, wanted):
    """Two locks on one file conflict unless both are shared (READ), and their ranges overlap."""
    if held.access != "WRITE" and wanted.access != "WRITE":
        return False
    held_end = float("inf") if held.end is None else held.end
    wanted_end = float("inf") if wanted.end is None else wanted.end
    return held.start <= wanted_end and wanted.start <= held_end


def _exclusive(lock):
    return lock.access == "WRITE"


def analyse(locks, fd_locks, file_key, opens=None, min_opens=None):
    # type: (List[FileLock], List[FdLock], Tuple[int, int, int], Optional[Dict[int, int]], Optional[int]) -> Dict
    """Holders, waiters and self-deadlocks on one file; pure.

    ``locks``: all of ``/proc/locks``; ``fd_locks``: from :func:`read_fd_locks`;
    ``opens``: PID -> how many times it opened the file while it was watched
    (:func:`watch_opens`), None when not watched (polling waiters then unknown);
    ``min_opens``: opens that make a polling waiter (default :data:`MIN_POLL_OPENS`).

    A holder is a pid with a held lock (its /proc/locks PID, or every process whose
    descriptor carries it: a ``flock`` belongs to an open file description, which
    ``fork`` shares); a kernel waiter is the PID of a blocked (``->``) request; a
    polling waiter a process that opened the file again and again while another
    description held an exclusive lock (``flock(LOCK_NB)`` + sleep, as ``filelock``
    3.x does): no kernel wait, so /proc/locks does not show it.

    A self-deadlock is a waiter (kernel or polling) whose request conflicts with a
    lock held through a description only it holds: nobody else can release it.
    A waiter that shares the holding description with other processes (a child
    that inherited it over ``fork``) waits for them, not for itself.

    Returns ``{holders: [{pid, lock, fds, description_shared_by}], waiters: [{pid,
    wait: kernel|polling, lock, opens, blocked_by, shares_description_with}],
    self_deadlocks: [{pid, wait, waiting, holding, fds, opens}]}``.
    """
    min_opens = MIN_POLL_OPENS if min_opens is None else min_opens
    on_file = [lock for lock in locks if lock.file_key == file_key]
    held = [lock for lock in on_file if not lock.blocked]
    by_fd = [fl for fl in fd_locks if fl.lock.file_key == file_key]
    holders, sharers = {}, {}
    for lock in held:
        through = [fl for fl in by_fd if fl.lock.signature == lock.signature]
        pids = {fl.pid for fl in through} or ({lock.pid} if lock.pid > 0 else set())
        sharers[lock.lock_id] = pids
        for pid in pids:
            holders[(pid, lock.lock_id)] = {"pid": pid, "lock": lock.as_dict(),
                                            "fds": sorted({fl.fd for fl in through if fl.pid == pid}),
                                            "description_shared_by": sorted(pids)}
    waiters, self_deadlocks = [], []

    def judge_waiter(pid, wanted, wait, count):
        conflicting = [lock for lock in held if _conflict(lock, wanted)]
        blocked_by = sorted({p for lock in conflicting for p in sharers[lock.lock_id]})
        own = [lock for lock in conflicting if pid in sharers[lock.lock_id]]
        alone = [lock for lock in own if sharers[lock.lock_id] == {pid}]
        shared = sorted({p for lock in own for p in sharers[lock.lock_id]} - {pid})
        waiters.append({"pid": pid, "wait": wait, "lock": wanted.as_dict() if wait == "kernel" else None,
                        "opens": count, "blocked_by": blocked_by, "shares_description_with": shared})
        if alone and not shared:
            self_deadlocks.append({"pid": pid, "wait": wait, "waiting": wanted.as_dict() if wait == "kernel" else None,
                                   "holding": [lock.as_dict() for lock in alone], "opens": count,
                                   "fds": sorted({fd for lock in alone for fd in holders[(pid, lock.lock_id)]["fds"]})})

    for lock in on_file:
        if lock.blocked:
            judge_waiter(lock.pid, lock, "kernel", None)
    kernel_waiters = {lock.pid for lock in on_file if lock.blocked}
    if any(_exclusive(lock) for lock in held):
        for pid, count in sorted((opens or {}).items()):
            if count >= min_opens and pid not in kernel_waiters and pid > 0:
                # An exclusive attempt (filelock, flock -n): it conflicts with every held lock.
                wanted = FileLock(lock_id=0, blocked=True, type="FLOCK", mode="ADVISORY", access="WRITE", pid=pid,
                                  major=file_key[0], minor=file_key[1], inode=file_key[2], start=0, end=None)
                judge_waiter(pid, wanted, "polling", count)
    return {"holders": sorted(holders.values(), key=lambda h: (h["pid"], h["lock"]["lock_id"])),
            "waiters": waiters, "self_deadlocks": self_deadlocks}


# A process that opens a file this often in the watch window while another description holds an
# exclusive lock on it is taken to poll for the lock (filelock 3.x polls every 0.05 s by default).
MIN_POLL_OPENS = 3

_FAN_CLOEXEC, _FAN_NONBLOCK, _FAN_CLASS_NOTIF = 0x1, 0x2, 0x0
_FAN_MARK_ADD, _FAN_OPEN, _AT_FDCWD = 0x1, 0x20, -100
_EVENT = struct.Struct("IBBHQii")  # struct fanotify_event_metadata (24 bytes)


def watch_opens(targets, seconds):
    # type: (Dict[Tuple[int, int, int], str], float) -> Tuple[Optional[Dict[Tuple[int, int, int], Dict[int, int]]], Optional[str]]
    """Count, per file and PID, the opens of ``targets`` during ``seconds`` (fanotify(7) FAN_OPEN).

    ``targets``: file key -> a path that reaches the file (``/proc/PID/fd/N`` works).
    Returns (counts, None), or (None, reason) when it cannot watch (needs
    CAP_SYS_ADMIN, i.e. root; a kernel without fanotify). Reads only: the event
    descriptors are closed at once. Opens by this process are not counted.
    """
    if not targets or seconds <= 0:
        return {}, None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.fanotify_mark.argtypes = [ctypes.c_int, ctypes.c_uint, ctypes.c_uint64, ctypes.c_int, ctypes.c_char_p]
        group = libc.fanotify_init(_FAN_CLASS_NOTIF | _FAN_CLOEXEC | _FAN_NONBLOCK, os.O_RDONLY | os.O_LARGEFILE)
    except (OSError, AttributeError) as exc:
        return None, "fanotify unavailable: %s" % exc
    if group < 0:
        return None, "fanotify_init: %s (watching opens needs root)" % os.strerror(ctypes.get_errno())
    counts = {key: {} for key in targets}
    try:
        for key, path in targets.items():
            if libc.fanotify_mark(group, _FAN_MARK_ADD, _FAN_OPEN, _AT_FDCWD, path.encode()) != 0:
                counts.pop(key)
        deadline = time.monotonic() + seconds
        me = os.getpid()
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            ready, _w, _x = select.select([group], [], [], left)
            if not ready:
                continue
            try:
                data = os.read(group, 8192)
            except BlockingIOError:
                continue
            offset = 0
            while offset + _EVENT.size <= len(data):
                length, _vers, _res, _mlen, _mask, fd, pid = _EVENT.unpack_from(data, offset)
                offset += length or _EVENT.size
                if fd < 0:
                    continue
                try:
                    st = os.fstat(fd)
                except OSError:
                    continue
                finally:
                    os.close(fd)
                key = (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino)
                if key in counts and pid != me:
                    counts[key][pid] = counts[key].get(pid, 0) + 1
    finally:
        os.close(group)
    return counts, None


MAX_WATCHED = 256  # files watched at once when looking for polling waiters on the whole host


def _fd_path(proc, pid, fd):
    return os.path.join(proc, str(pid), "fd", str(fd))


def examine(locks, targets, proc=procinfo.PROC, window=1.0, only_contended=False):
    """Analyse the files ``targets`` (file key -> the path the caller named, or None).

    Reads every process's descriptors on them, watches their opens for ``window``
    seconds (polling waiters; 0: not watched) and analyses each file. With
    ``only_contended`` only files with a waiter or a self-deadlock are returned.
    Returns (file reports, watch) where ``watch`` is ``{seconds, watched: bool,
    reason}``: when not watched, polling waiters are unknown, not absent.
    """
    fd_locks, open_fds = read_fd_locks(set(targets), proc)
    reachable = {}
    for key in targets:
        if open_fds.get(key):
            pid, fd, _path = open_fds[key][0]
            reachable[key] = _fd_path(proc, pid, fd)
        elif targets[key]:
            reachable[key] = targets[key]
    if len(reachable) > MAX_WATCHED:
        reachable = dict(sorted(reachable.items())[:MAX_WATCHED])
    counts, reason = watch_opens(reachable, window) if window > 0 else (None, "poll_window is 0")
    watch = {"seconds": window, "watched": counts is not None, "reason": reason}
    files = []
    for key, path in targets.items():
        opens = counts.get(key) if counts is not None else None
        analysis = analyse(locks, fd_locks, key, opens)
        if only_contended and not (analysis["waiters"] or analysis["self_deadlocks"]):
            continue
        report = file_report(path, key, analysis, open_fds, proc)
        report["watched_opens"] = opens is not None
        files.append(report)
    return files, watch


def host_targets(locks):
    """Files worth a look on the whole host: those with a blocked request, and those with an
    exclusive lock held (a polling waiter is seen only by watching them)."""
    keys = set(contended_files(locks))
    keys.update(lock.file_key for lock in locks if not lock.blocked and _exclusive(lock) and lock.inode)
    return {key: None for key in sorted(keys)}


class PidError(ValueError):
    """The ``pid`` asked about cannot be examined (gone, a kernel thread); the message says why."""


def find_py_spy():
    """Path of ``py-spy`` (on PATH or beside this interpreter), or None."""
    found = shutil.which("py-spy")
    beside = os.path.join(os.path.dirname(sys.executable), "py-spy")
    return found or (beside if os.access(beside, os.X_OK) else None)


def is_python(info):
    names = [info.comm, os.path.basename((info.exe or "").replace(" (deleted)", ""))]
    return any(name.startswith("python") for name in names if name)


def python_stack(pid, py_spy, run_command):
    """``py-spy dump --pid PID --locals`` text and None, or (None, reason). Never raises.

    ``run_command``: ``AnsibleModule.run_command`` (argv list -> (rc, stdout, stderr)).
    """
    if not py_spy:
        return None, "py-spy is not installed (pip install py-spy)"
    try:
        rc, out, err = run_command([py_spy, "dump", "--pid", str(pid), "--locals"])
    except OSError as exc:
        return None, "py-spy dump failed: %s" % exc
    if rc != 0:
        return None, "py-spy dump failed: %s" % (((err or out).strip().splitlines() or ["rc %d" % rc])[0])
    return out, None


_STACK_LOCK_FILE = re.compile(r'^\s*(?:lock_filename|lock_file|_lock_file)\s*:\s*"([^"]+)"', re.M)


def stack_lock_files(stack):
    """Lock file paths named in a py-spy stack (``filelock``'s ``acquire`` has ``lock_filename``)."""
    return sorted(set(_STACK_LOCK_FILE.findall(stack or "")))


def _wchan_syscall(pid, proc):
    def read(name):
        try:
            with open(os.path.join(proc, str(pid), name)) as handle:
                return handle.read().strip() or None
        except OSError:
            return None
    return read("wchan"), read("syscall")


def pid_targets(pid, locks, proc=procinfo.PROC, py_spy=None, run_command=None):
    """What to look at for one process: the files it waits for in the kernel, holds locks on,
    or (Python) names in its stack (``py_spy`` path, run with ``run_command``, see
    :func:`python_stack`; None: no stack). Returns (targets {key: path}, facts).
    Raises :class:`PidError`."""
    info = procinfo.read_process(pid, proc)
    if info is None:
        raise PidError("pid: no process %d on this host" % pid)
    if procinfo.is_kernel_thread(pid, proc):
        raise PidError("pid: %d is a kernel thread (%s); it takes no file locks" % (pid, info.comm))
    targets = {lock.file_key: None for lock in locks if lock.pid == pid}
    fd_dir = os.path.join(proc, str(pid), "fd")
    try:
        fds = os.listdir(fd_dir)
    except OSError:
        fds = []
    for fd in fds:
        try:
            with open(os.path.join(proc, str(pid), "fdinfo", fd)) as handle:
                lines = [parse_lock_line(line[5:]) for line in handle if line.startswith("lock:")]
        except OSError:
            continue
        for lock in lines:
            if lock is not None:
                targets.setdefault(lock.file_key, None)
    stack, stack_error = (python_stack(pid, py_spy if run_command else None, run_command) if is_python(info)
                          else (None, "not a Python process (%s)" % info.comm))
    for path in stack_lock_files(stack):
        try:
            targets[file_key_of(path)] = path
        except OSError:
            continue
    wchan, syscall = _wchan_syscall(pid, proc)
    facts = {"pid": pid, "process": describe_process(pid, proc), "state": info.state, "wchan": wchan,
             "syscall": syscall, "stack": stack, "stack_error": stack_error}
    return targets, facts


def explain(pid, facts, files):
    """One sentence per file on what ``pid`` waits for, from :func:`examine` reports; and the lock files
    it holds. Returns ``facts`` completed with ``waiting_for``, ``holds`` and ``explanation``."""
    waiting, holds, sentences = [], [], []
    for report in files:
        where = report["path"] or "%s:%d" % (report["device"], report["inode"])
        if any(h["pid"] == pid for h in report["holders"]):
            holds.append(where)
        for waiter in (w for w in report["waiters"] if w["pid"] == pid):
            dead = any(d["pid"] == pid for d in report["self_deadlocks"])
            waiting.append({"path": where, "wait": waiter["wait"], "blocked_by": waiter["blocked_by"],
                            "self_deadlock": dead, "shares_description_with": waiter["shares_description_with"]})
            how = ("blocks in the kernel (flock/fcntl wait)" if waiter["wait"] == "kernel" else
                   "polls for it (opened it %d times while watched, no kernel wait: flock LOCK_NB and sleep, "
                   "as filelock 3.x does)" % waiter["opens"])
            if dead:
                sentences.append("PID %d waits for a lock on %s that it alone holds: a self-deadlock that never "
                                 "ends; it %s. Restart it (and fix the code that re-takes the lock, e.g. in a "
                                 "signal handler)." % (pid, where, how))
            elif waiter["shares_description_with"]:
                sentences.append("PID %d waits for a lock on %s held through an open file description it shares "
                                 "with PID(s) %s (inherited over fork); it ends when they release it; it %s." % (
                                     pid, where, waiter["shares_description_with"], how))
            else:
                sentences.append("PID %d waits for a lock on %s held by PID(s) %s; it %s." % (
                    pid, where, waiter["blocked_by"], how))
    if not waiting:
        sentences.append("PID %d waits for no file lock that can be seen (wchan %s)%s." % (
            pid, facts.get("wchan"), "; it holds locks on %s" % ", ".join(holds) if holds else ""))
    return dict(facts, waiting_for=waiting, holds=holds, explanation=" ".join(sentences))


def read_locks(proc=procinfo.PROC):
    """``/proc/locks`` parsed. Raises :class:`procinfo.ProcUnreadable`."""
    procinfo.check_proc(proc)
    try:
        with open(os.path.join(proc, "locks")) as handle:
            return parse_proc_locks(handle.read())
    except OSError as exc:
        raise procinfo.ProcUnreadable("cannot read %s/locks: %s" % (proc, exc.strerror or exc))


def contended_files(locks):
    """File keys that have at least one blocked request."""
    return sorted({lock.file_key for lock in locks if lock.blocked})


def describe_process(pid, proc=procinfo.PROC):
    """``{pid, comm, cmdline, uid, wchan}`` of a process, or None if it is gone."""
    info = procinfo.read_process(pid, proc)
    if info is None:
        return None
    try:
        with open(os.path.join(proc, str(pid), "wchan")) as handle:
            wchan = handle.read().strip() or None
    except OSError:
        wchan = None
    return {"pid": pid, "comm": info.comm, "cmdline": list(info.cmdline), "uid": info.uid, "wchan": wchan}


def file_report(path, file_key, analysis, open_fds, proc=procinfo.PROC):
    """The module's answer for one file: the analysis with each process described."""
    processes = {}
    pids = [h["pid"] for h in analysis["holders"]] + [w["pid"] for w in analysis["waiters"]]
    for pid in pids:
        if pid not in processes:
            processes[pid] = describe_process(pid, proc)
    paths = sorted({p for (_pid, _fd, p) in open_fds.get(file_key, [])})
    return dict(analysis, path=path or (paths[0] if paths else None), device="%d:%d" % file_key[:2],
                inode=file_key[2], processes={str(pid): info for pid, info in processes.items()},
                open_by=[{"pid": pid, "fd": fd} for (pid, fd, _p) in open_fds.get(file_key, [])])
