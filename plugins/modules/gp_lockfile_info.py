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
    file who holds a lock (with the descriptors it holds it through), who waits, and behind
    whom.
  - Finds the self-deadlock signature, a process waiting for a lock on a file while it
    already holds a conflicting lock on it, for example C(flock) taken a second time through
    another open file description by a signal handler that re-enters code that takes the
    lock. Such a wait never ends; every other process that needs the file waits behind it.
  - Read-only.
version_added: 0.1.0
author: gpops.greenplum contributors (@gpops)
options:
  paths:
    description:
      - Files to examine. Default is every file that has a blocked lock request on this host.
    type: list
    elements: path
    default: []
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
      holders: [{pid: 4100, fds: [3], lock: {lock_id: 1, blocked: false, type: FLOCK, mode: ADVISORY,
                 access: WRITE, pid: 4100, major: 0, minor: 38, inode: 1234, start: 0, end: null}}]
      waiters: [{pid: 4100, blocked_by: [4100], lock: {lock_id: 1, blocked: true, type: FLOCK,
                 mode: ADVISORY, access: WRITE, pid: 4100, major: 0, minor: 38, inode: 1234, start: 0, end: null}}]
      self_deadlocks: [{pid: 4100, fds: [3], waiting: {}, holding: [{}]}]
      processes: {"4100": {pid: 4100, comm: python3, cmdline: [python3, daemon.py], uid: 0, wchan: locks_lock_inode_wait}}
      open_by: [{pid: 4100, fd: 3}, {pid: 4100, fd: 4}]
self_deadlocks:
  description: Every self-deadlock found, with the file's path.
  returned: always
  type: list
  elements: dict
  sample: [{path: /tmp/status.lock, pid: 4100, fds: [3]}]
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.gpops.greenplum.plugins.module_utils import lockfile, procinfo


def main():
    module = AnsibleModule(
        argument_spec=dict(
            paths=dict(type="list", elements="path", default=[]),
            proc_path=dict(type="path", default="/proc"),
        ),
        supports_check_mode=True,
    )
    proc = module.params["proc_path"]
    keys = {}
    for path in module.params["paths"]:
        try:
            keys[path] = lockfile.file_key_of(path)
        except OSError as exc:
            module.fail_json(msg="paths: cannot stat %s: %s" % (path, exc.strerror or exc))
    try:
        locks = lockfile.read_locks(proc)
    except procinfo.ProcUnreadable as exc:
        module.fail_json(msg="proc_path: %s" % exc)
    targets = list(keys.items()) or [(None, key) for key in lockfile.contended_files(locks)]
    fd_locks, open_fds = lockfile.read_fd_locks({key for _path, key in targets}, proc)
    files = [lockfile.file_report(path, key, lockfile.analyse(locks, fd_locks, key), open_fds, proc)
             for path, key in targets]
    module.exit_json(
        changed=False, files=files,
        self_deadlocks=[dict(d, path=f["path"]) for f in files for d in f["self_deadlocks"]],
        locks_total=len(locks), uid=os.getuid())


if __name__ == "__main__":
    main()
