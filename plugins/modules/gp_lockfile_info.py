#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: gpops.greenplum contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: gp_lockfile_info
short_description: Which processes hold or wait for locks on a file, and self-deadlocks
description:
  - Reads C(/proc/locks) (held locks and the C(->) requests blocked behind them) and each
    process's C(/proc/PID/fd) and C(/proc/PID/fdinfo) C(lock:) lines, and reports for each
    file who holds a lock (with the descriptors it holds it through, and every process that
    shares the holding open file description), who waits, and behind whom.
  - Lock kinds it sees - C(flock) (FLOCK), C(fcntl)/C(lockf) record locks (POSIX) and open
    file description locks (OFDLCK, PID -1 in C(/proc/locks), attributed through fdinfo).
    Waiters it sees - every request blocked in the kernel (C(flock) without C(LOCK_NB),
    C(F_SETLKW), C(F_OFD_SETLKW)), and, by watching the files' opens for O(poll_window)
    seconds (fanotify, root only), processes that poll - open the file, try
    C(flock(LOCK_EX|LOCK_NB)), sleep, as Python C(filelock) 3.x does - which the kernel
    never records as waiting.
  - What it cannot see - a process that polls without reopening the file (C(LOCK_NB) or
    C(F_SETLK) retried on a descriptor it keeps open), lock files made by C(O_EXCL)
    creation or C(mkdir) (no kernel lock at all), leases, and locks on another host
    (NFS, whose locks live on the server). Without root, polling waiters are unknown (a
    warning says so) and another user's descriptors are attributed by the PID in
    C(/proc/locks) only.
  - A self-deadlock is a process waiting (in the kernel or polling) for a lock that
    conflicts with one held through an open file description only it holds - for example
    C(flock) taken a second time through another description by a signal handler that
    re-enters code that takes the lock. Such a wait never ends; every other process that
    needs the file waits behind it. A C(flock) belongs to an open file description, not to
    a process - a child that inherited the holding descriptor over C(fork) and blocks through
    its own open waits for its parent (C(shares_description_with)), not for itself.
  - Python C(filelock) 4.x raises C(RuntimeError) (deadlock) when a thread takes a lock
    its thread already holds through another C(FileLock) instance, instead of hanging;
    3.x hangs polling, which this module finds.
  - With O(pid) (the process that hangs, as C(ps) shows it), explains what it waits for -
    its kernel lock requests, the files it holds locks on, its C(wchan) and system call -
    and for a Python process, where C(py-spy) is installed, returns its stack
    (C(py-spy dump --pid PID --locals)) as evidence and examines the lock files named in
    it (C(filelock)'s C(lock_filename)). The stack is what proves "waiting for a lock it
    holds, inside a signal handler".
  - Read-only. A path that is a directory or a symbolic link is examined as the file it
    reaches (C(realpath)); a missing path, a PID that does not exist or is a kernel thread
    fails with a message naming the parameter.
version_added: 0.1.0
author: gpops.greenplum contributors (@gpops)
options:
  paths:
    description:
      - Files to examine. Default (with no O(pid)) is every file on this host that has a
        blocked lock request or a polling waiter (files holding an exclusive lock are watched).
    type: list
    elements: path
    default: []
  pid:
    description:
      - A process that hangs; the result has C(pid_report) explaining what it waits for,
        and the files it waits for or holds locks on are examined (with O(paths), if given).
    type: int
  poll_window:
    description:
      - Seconds to watch the files' opens for polling waiters (0 to 60; 0 turns it off, and
        polling waiters are then unknown). C(filelock) polls every 0.05 s by default; a
        longer C(poll_interval) needs a longer window (at least three polls are needed).
    type: float
    default: 1.0
  py_spy:
    description:
      - Path of C(py-spy). Default is C(py-spy) on C(PATH) or beside the Python that runs
        the module.
    type: path
  proc_path:
    description:
      - Where procfs is mounted.
    type: path
    default: /proc
attributes:
  check_mode:
    support: full
    description: Read-only; runs the same in check mode.
  diff_mode:
    support: none
    description: Nothing changes, so there is no diff.
notes:
  - Run as root to see every process's descriptors; otherwise locks held through another
    user's descriptors are attributed by the PID in C(/proc/locks) only.
seealso:
  - name: proc(5) /proc/locks
    description: The format of the kernel's lock table.
    link: https://man7.org/linux/man-pages/man5/proc_locks.5.html
  - module: gpops.greenplum.gp_pidfile
"""

EXAMPLES = r"""
- name: Who holds the lock file that every cron job waits for?
  gpops.greenplum.gp_lockfile_info:
    paths: [/var/run/gpbackup.lock]
  register: locks

- name: Any process that deadlocked on its own lock file
  gpops.greenplum.gp_lockfile_info:
  register: contended

- ansible.builtin.debug:
    msg: "PID {{ item.pid }} waits for its own lock on {{ item.path }}"
  loop: "{{ contended.self_deadlocks }}"

- name: What does PID 4100 (from ps) wait for?
  gpops.greenplum.gp_lockfile_info:
    pid: 4100
  become: true
  register: hung

- ansible.builtin.debug:
    msg: "{{ hung.pid_report.explanation }}"
"""

RETURN = r"""
files:
  description: One entry per file.
  returned: always
  type: list
  elements: dict
  sample:
    - path: /tmp/status.lock
      device: "0:38"
      inode: 1234
      holders: [{pid: 4100, fds: [3], description_shared_by: [4100],
                 lock: {lock_id: 1, blocked: false, type: FLOCK, mode: ADVISORY,
                 access: WRITE, pid: 4100, major: 0, minor: 38, inode: 1234, start: 0, end: null}}]
      waiters: [{pid: 4100, wait: polling, opens: 19, blocked_by: [4100], shares_description_with: [], lock: null}]
      self_deadlocks: [{pid: 4100, wait: polling, opens: 19, fds: [3], waiting: null, holding: [{}]}]
      watched_opens: true
      processes: {"4100": {pid: 4100, comm: python3, cmdline: [python3, daemon.py], uid: 0, wchan: locks_lock_inode_wait}}
      open_by: [{pid: 4100, fd: 3}, {pid: 4100, fd: 4}]
self_deadlocks:
  description: Every self-deadlock found, with the file's path.
  returned: always
  type: list
  elements: dict
  sample: [{path: /tmp/status.lock, pid: 4100, wait: polling, fds: [3]}]
watch:
  description: Whether the files' opens were watched for polling waiters, and if not why.
  returned: always
  type: dict
  sample: {seconds: 1.0, watched: true, reason: null}
pid_report:
  description: With O(pid), what that process waits for.
  returned: when pid is given
  type: dict
  sample:
    pid: 4100
    state: S
    wchan: hrtimer_nanosleep
    syscall: "230 0x1 0x1 0x7ffda08ba900 0x0 0x0 0x0 0x7ffda08ba8e8 0x7f18cd6ed503"
    waiting_for: [{path: /tmp/status.lock, wait: polling, blocked_by: [4100], self_deadlock: true,
                   shares_description_with: []}]
    holds: [/tmp/status.lock]
    stack: "Thread 4100 (idle): \"MainThread\"\n    BaseFileLock.acquire (filelock/_api.py:344) ..."
    stack_error: null
    explanation: "PID 4100 waits for a lock on /tmp/status.lock that it alone holds: a self-deadlock ..."
"""

import os

from ansible_collections.gpops.greenplum.plugins.module_utils.analyse import file_locks as lockfile
from ansible_collections.gpops.greenplum.plugins.module_utils.collect import procinfo
from ansible_collections.gpops.greenplum.plugins.module_utils.common.module_base import local_module


def main():
    module = local_module(
        dict(
            paths=dict(type="list", elements="path", default=[]),
            pid=dict(type="int"),
            poll_window=dict(type="float", default=1.0),
            py_spy=dict(type="path"),
            proc_path=dict(type="path", default="/proc"),
        ))
    p = module.params
    proc = p["proc_path"]
    targets, realpaths = {}, {}
    for path in p["paths"]:
        try:
            key = lockfile.file_key_of(path)
        except OSError as exc:
            module.fail_json(msg="paths: cannot stat %s: %s" % (path, exc.strerror or exc))
        targets.setdefault(key, path)
        if os.path.realpath(path) != os.path.abspath(path):
            realpaths[path] = os.path.realpath(path)
    try:
        locks = lockfile.read_locks(proc)
    except procinfo.ProcUnreadable as exc:
        module.fail_json(msg="proc_path: %s" % exc)
    facts = None
    if p["pid"] is not None:
        try:
            py_spy = p["py_spy"] or lockfile.find_py_spy()
            pid_files, facts = lockfile.pid_targets(p["pid"], locks, proc, py_spy, module.run_command)
        except lockfile.PidError as exc:
            module.fail_json(msg=str(exc), files=[], self_deadlocks=[])
        except procinfo.ProcUnreadable as exc:
            module.fail_json(msg="proc_path: %s" % exc)
        for key, path in pid_files.items():
            targets.setdefault(key, path)
    only_contended = not p["paths"] and p["pid"] is None
    if only_contended:
        targets = lockfile.host_targets(locks)
    files, watch = lockfile.examine(locks, targets, proc, p["poll_window"], only_contended=only_contended)
    for entry in files:
        if entry["path"] in realpaths:
            entry["realpath"] = realpaths[entry["path"]]
        entry["is_directory"] = os.path.isdir(entry["path"]) if entry["path"] else None
    if not watch["watched"] and p["poll_window"] > 0:
        module.warn("polling waiters (filelock 3.x style: flock LOCK_NB and sleep) are unknown: %s" % watch["reason"])
    result = dict(
        changed=False, files=files,
        self_deadlocks=[dict(d, path=f["path"]) for f in files for d in f["self_deadlocks"]],
        locks_total=len(locks), uid=os.getuid(), watch=watch)
    if facts is not None:
        result["pid_report"] = lockfile.explain(p["pid"], facts, files)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
