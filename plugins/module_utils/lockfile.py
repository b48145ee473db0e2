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

import dataclasses
import os
import re
from typing import Dict, List, Optional, Tuple

from ansible_collections.gpops.greenplum.plugins.module_utils import procinfo

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


def analyse(locks, fd_locks, file_key):
    # type: (List[FileLock], List[FdLock], Tuple[int, int, int]) -> Dict
    """Holders, waiters and self-deadlocks on one file; pure.

    ``locks``: all of ``/proc/locks``; ``fd_locks``: from :func:`read_fd_locks`.
    A holder is a pid with a held lock (its /proc/locks PID, or the process whose
    descriptor carries it); a waiter is the PID of a blocked (``->``) request.
    Returns ``{holders: [...], waiters: [...], self_deadlocks: [...]}`` where each
    holder is ``{pid, lock, fds}``, each waiter ``{pid, lock, blocked_by}`` and each
    self-deadlock ``{pid, waiting, holding, fds}``.
    """
    on_file = [lock for lock in locks if lock.file_key == file_key]
    held = [lock for lock in on_file if not lock.blocked]
    by_fd = [fl for fl in fd_locks if fl.lock.file_key == file_key]
    holders = {}
    for lock in held:
        through = [fl for fl in by_fd if fl.lock.signature == lock.signature]
        for pid in {fl.pid for fl in through} or ({lock.pid} if lock.pid > 0 else set()):
            holders[(pid, lock.lock_id)] = {"pid": pid, "lock": lock.as_dict(),
                                            "fds": sorted({fl.fd for fl in through if fl.pid == pid})}
    waiters, self_deadlocks = [], []
    for lock in on_file:
        if not lock.blocked:
            continue
        waiters.append({"pid": lock.pid, "lock": lock.as_dict(),
                        "blocked_by": sorted({pid for (pid, lid) in holders if lid == lock.lock_id})})
        own = [h for (pid, _lid), h in holders.items()
               if pid == lock.pid and _conflict(FileLock(**h["lock"]), lock)]
        if own:
            self_deadlocks.append({"pid": lock.pid, "waiting": lock.as_dict(), "holding": [h["lock"] for h in own],
                                   "fds": sorted({fd for h in own for fd in h["fds"]})})
    return {"holders": sorted(holders.values(), key=lambda h: (h["pid"], h["lock"]["lock_id"])),
            "waiters": waiters, "self_deadlocks": self_deadlocks}


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
