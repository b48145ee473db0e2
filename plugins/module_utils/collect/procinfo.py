# -*- coding: utf-8 -*-
# Copyright: gpops.greenplum contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What Linux ``/proc`` says about one process, read without side effects.

Used to decide whether the PID named in a pid file, a lock file or a Slony
``sl_nodelock`` row is really the process that wrote it. ``kill -0`` only
says that *some* process has that PID; identity needs the command line, the
executable, the owner and the start time (proc(5): ``/proc/PID/stat`` field 22
``starttime`` in clock ticks since boot, ``/proc/stat`` ``btime``).

Every reader takes ``proc`` (where procfs is mounted, ``/proc`` by default) so
tests and containers can point elsewhere. Errors:
- :class:`ProcUnreadable` when procfs itself cannot be read (not mounted,
  wrong path): no verdict may be drawn from it.
- a process that does not exist gives ``None`` from :func:`read_process`.
- a field the caller may not read (``exe``/``cwd`` of another user's process
  when not root) is ``None`` in the result, never guessed.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import dataclasses
import os
from typing import Optional, Tuple

PROC = "/proc"


class ProcUnreadable(Exception):
    """procfs is missing or unreadable at the given path."""


@dataclasses.dataclass(frozen=True)
class ProcessInfo:
    """One live process as ``/proc/PID`` shows it.

    ``start_time`` is seconds since the epoch (float, resolution one clock
    tick, plus up to 1 s error from ``btime``); ``uid`` the real uid from
    ``/proc/PID/status``; ``state`` the one-letter state (``Z`` = zombie).
    """

    pid: int
    uid: int
    state: str
    start_time: float
    comm: str
    cmdline: Tuple[str, ...]
    exe: Optional[str]
    cwd: Optional[str]
    ppid: int

    def as_dict(self):
        data = dataclasses.asdict(self)
        data["cmdline"] = list(self.cmdline)
        return data


def check_proc(proc=PROC):
    """Raise :class:`ProcUnreadable` unless ``proc`` looks like a mounted procfs."""
    try:
        with open(os.path.join(proc, "stat")) as handle:
            text = handle.read()
    except OSError as exc:
        raise ProcUnreadable("cannot read %s/stat (%s): procfs is not mounted there or is not readable"
                             % (proc, exc.strerror or exc))
    if "btime" not in text:
        raise ProcUnreadable("%s/stat has no btime line: %s is not a procfs" % (proc, proc))


def boot_time(proc=PROC):
    """Boot time in seconds since the epoch (``btime`` of ``/proc/stat``)."""
    check_proc(proc)
    with open(os.path.join(proc, "stat")) as handle:
        for line in handle:
            if line.startswith("btime "):
                return int(line.split()[1])
    raise ProcUnreadable("%s/stat has no btime line" % proc)


def _read(path, mode="r"):
    try:
        with open(path, mode) as handle:
            return handle.read()
    except (PermissionError, OSError):
        return None


def _readlink(path):
    try:
        return os.readlink(path)
    except OSError:
        return None


def parse_stat(text):
    """Return (comm, state, ppid, starttime_ticks) from ``/proc/PID/stat``.

    ``comm`` is in parentheses and may itself hold spaces or ``)``, so the
    fields after it are split from the last ``)`` (proc(5)).
    """
    left = text.index("(")
    right = text.rindex(")")
    comm = text[left + 1:right]
    rest = text[right + 2:].split()
    # rest[0] is field 3 (state); field 22 (starttime) is rest[19].
    return comm, rest[0], int(rest[1]), int(rest[19])


PF_KTHREAD = 0x00200000  # include/linux/sched.h: the task is a kernel thread


def is_kernel_thread(pid, proc=PROC):
    """True when ``pid`` is a kernel thread (``/proc/PID/stat`` field 9 has PF_KTHREAD), False when
    not, None when the process is gone or its stat unreadable."""
    text = _read(os.path.join(proc, str(int(pid)), "stat"))
    if text is None:
        return None
    try:
        flags = int(text[text.rindex(")") + 2:].split()[6])
    except (ValueError, IndexError):
        return None
    return bool(flags & PF_KTHREAD)


def _real_uid(status_text):
    for line in status_text.splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise ValueError("no Uid line")


def read_cmdline(pid, proc=PROC):
    """The arguments of ``pid`` (``/proc/PID/cmdline``, which a process title such as
    Greenplum's replaces) as a tuple of str, or ``None`` when no such process (or it
    exited meanwhile). One read: what a scan of every process needs to find one by
    title. Does not check that ``proc`` is a procfs (``check_proc``)."""
    raw = _read(os.path.join(proc, str(int(pid)), "cmdline"), "rb")
    if raw is None:
        return None
    return tuple(part.decode("utf-8", "replace") for part in raw.split(b"\0") if part)


def read_process(pid, proc=PROC):
    """Return :class:`ProcessInfo` for ``pid``, or ``None`` when no such process.

    Raises :class:`ProcUnreadable` when ``proc`` is not a readable procfs.
    """
    btime = boot_time(proc)
    base = os.path.join(proc, str(int(pid)))
    stat_text = _read(os.path.join(base, "stat"))
    status_text = _read(os.path.join(base, "status"))
    if stat_text is None or status_text is None:
        return None  # gone (or exited between the two reads)
    comm, state, ppid, ticks = parse_stat(stat_text)
    cmdline = read_cmdline(pid, proc) or ()
    return ProcessInfo(
        pid=int(pid),
        uid=_real_uid(status_text),
        state=state,
        start_time=btime + ticks / float(os.sysconf("SC_CLK_TCK")),
        comm=comm,
        cmdline=cmdline,
        exe=_readlink(os.path.join(base, "exe")),
        cwd=_readlink(os.path.join(base, "cwd")),
        ppid=ppid,
    )


def program_names(info):
    """Names a process goes by: ``comm``, the basename of ``exe`` and of ``argv[0]``.

    PostgreSQL rewrites its process title (``argv[0]`` becomes e.g.
    ``postgres: checkpointer``), so every name is offered to the matcher.
    """
    names = [info.comm]
    if info.exe:
        names.append(os.path.basename(info.exe.replace(" (deleted)", "")))
    if info.cmdline:
        first = info.cmdline[0].split(":")[0].split()
        if first:
            names.append(os.path.basename(first[0]))
        names.append(" ".join(info.cmdline))
    return [n for n in names if n]


@dataclasses.dataclass(frozen=True)
class SharedMemorySegment:
    """One System V shared memory segment from ``/proc/sysvipc/shm``."""

    key: int
    shmid: int
    uid: int
    nattch: int
    cpid: int


def read_shm_segments(proc=PROC):
    """Return the SysV shared memory segments of this IPC namespace.

    Raises :class:`ProcUnreadable` when ``proc/sysvipc/shm`` cannot be read.
    """
    path = os.path.join(proc, "sysvipc", "shm")
    text = _read(path)
    if text is None:
        raise ProcUnreadable("cannot read %s" % path)
    lines = text.splitlines()
    if not lines:
        return []
    header = lines[0].split()
    segments = []
    for line in lines[1:]:
        row = dict(zip(header, line.split()))
        segments.append(SharedMemorySegment(
            key=int(row["key"]) & 0xFFFFFFFF, shmid=int(row["shmid"]), uid=int(row["uid"]),
            nattch=int(row["nattch"]), cpid=int(row["cpid"])))
    return segments


def listening_ports(pid, proc=PROC):
    """TCP ports on which ``pid`` holds a listening socket, or ``None`` if its fds are unreadable.

    Matches the socket inodes of ``/proc/PID/fd`` with LISTEN (state 0A) rows of
    ``/proc/net/tcp`` and ``tcp6``.
    """
    fd_dir = os.path.join(proc, str(int(pid)), "fd")
    try:
        links = [_readlink(os.path.join(fd_dir, name)) for name in os.listdir(fd_dir)]
    except OSError:
        return None
    inodes = {link[8:-1] for link in links if link and link.startswith("socket:[")}
    ports = set()
    for table in ("tcp", "tcp6"):
        text = _read(os.path.join(proc, str(int(pid)), "net", table)) or ""
        for line in text.splitlines()[1:]:
            fields = line.split()
            if len(fields) > 9 and fields[3] == "0A" and fields[9] in inodes:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return sorted(ports)
