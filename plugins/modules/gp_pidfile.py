#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: gpops.greenplum contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: gp_pidfile
short_description: Decide whether pid and lock files are stale, by process identity
description:
  - For each pid file, PostgreSQL/Greenplum C(postmaster.pid) or socket lock file
    (C(.s.PGSQL.<port>.lock)), reads the PID it names and decides whether that process
    is really the one the file belongs to, instead of trusting C(kill -0), which a
    reused PID fools.
  - Identity is checked from C(/proc/PID), with the command (C(comm), executable, command
    line), the owner uid, and for PostgreSQL files the working directory (a server runs in
    its data directory). The start time against the file's time, the file's data
    directory line and whether the process listens on its port are reported too.
  - What makes a file V(stale) - no process has the PID; or the process is a zombie or
    this tool; or an identity check (O(expected_command), O(expected_owner), for
    PostgreSQL files the C(postgres) command, the file's owner and the data directory)
    failed - and none of the facts that keep it live holds.
  - What keeps a file V(live), whatever else failed (a wrong expectation of the caller is
    no evidence against these) - the process listens on the TCP port the file names;
    for PostgreSQL files it is a C(postgres) of the file's owner working in the data
    directory; for C(postmaster.pid) its shared memory is still attached; any process
    holds a C(flock)/C(fcntl) lock on the file. A time comparison alone never makes a
    file stale (an mtime older than the process start is what a copy with kept times, a
    C(touch) or a clock step gives).
  - What is removed together - a stale C(postmaster.pid) and the socket lock file it
    names (line 4 the port, line 5 the socket directory -
    C(<dir>/.s.PGSQL.<port>.lock)) are one decision; PostgreSQL refuses to start while
    either names a live PID. Both are removed (the socket lock first) only when both are
    stale; if the socket lock is live (another server on that port) neither is, and the
    reason is given. After the removal C(start_blocked_by) lists what is left (empty - the
    server can start). A plain pid file is removed on its own.
  - Follows PostgreSQL's own rules (C(CreateLockFile) in
    C(src/backend/utils/init/miscinit.c)), by which a PID equal to this tool's own or its parent's,
    or a process of another user than the file's owner, is not a competing server; a
    C(postmaster.pid) whose System V shared memory segment is still attached
    (C(/proc/sysvipc/shm), as C(PGSharedMemoryIsInUse)) is live even when its PID is gone.
  - With O(state=absent), removes only files proven C(stale), each re-checked right
    before C(unlink); the file of a running server is never removed.
  - A path that is not a pid file (a directory, garbage, a symbolic link - lock files are
    written in place, a link is not judged), or an unreadable file or C(/proc), fails the
    module before anything is removed.
version_added: 0.1.0
author: gpops.greenplum contributors (@gpops)
options:
  paths:
    description:
      - Pid or lock files to check. A file named C(postmaster.pid) is read as PostgreSQL's
        data directory lock file, C(.s.PGSQL.<port>.lock) as its socket lock file, any other
        as a plain pid file whose first line is the PID.
    type: list
    elements: path
    default: []
  data_directories:
    description:
      - PostgreSQL or Greenplum data directories; their C(postmaster.pid) is checked.
    type: list
    elements: path
    default: []
  state:
    description:
      - V(present) reports only. V(absent) removes the files proven stale.
    type: str
    choices: [present, absent]
    default: present
  expected_command:
    description:
      - Regular expression (Python C(re.search)) that the process must match through one of
        its names (C(comm), executable basename, C(argv[0]) basename, or the whole command
        line), e.g. C(^nginx$). Defaults to C(^(postgres|postmaster)$) for PostgreSQL files
        and to no command check for plain pid files.
    type: str
  expected_owner:
    description:
      - User name or uid the process must run as. PostgreSQL files default to the file's
        owner (their rule); plain pid files default to no owner check, because many daemons
        write their pid file as root and then drop privileges.
    type: str
  proc_path:
    description:
      - Where procfs is mounted.
    type: path
    default: /proc
attributes:
  check_mode:
    support: full
    description: Computes the same verdicts and the files it would remove, and removes nothing.
  diff_mode:
    support: full
    description: Before and after lists of the files present.
notes:
  - Run it as root or as the owner of the processes; otherwise the working directory of
    another user's process is unknown and is reported as such (never taken as proof).
seealso:
  - name: PostgreSQL postmaster.pid
    description: The data directory lock file and its lines.
    link: https://www.postgresql.org/docs/current/storage-file-layout.html
  - module: gpops.greenplum.gp_lockfile_info
  - module: gpops.greenplum.gp_nodelock
"""

EXAMPLES = r"""
- name: Why does this segment not start?
  gpops.greenplum.gp_pidfile:
    data_directories: [/data/primary/gpseg0]
  register: pidfiles

- name: Remove the postmaster.pid only if it is proven stale
  gpops.greenplum.gp_pidfile:
    data_directories: [/data/primary/gpseg0]
    state: absent
  become: true
  become_user: gpadmin

- name: A daemon's pid file, checked against its program name
  gpops.greenplum.gp_pidfile:
    paths: [/run/pgbouncer/pgbouncer.pid]
    expected_command: ^pgbouncer$
    state: absent
"""

RETURN = r"""
files:
  description: One entry per file, in the order given (paths, then data directories).
  returned: always
  type: list
  elements: dict
  sample:
    - path: /data/primary/gpseg0/postmaster.pid
      kind: postmaster
      verdict: stale
      pid: 4242
      alive: true
      process: {pid: 4242, uid: 1000, state: S, start_time: 1732170000.5, comm: sleep,
                cmdline: [sleep, "600"], exe: /usr/bin/sleep, cwd: /home/gpadmin, ppid: 1}
      file: {kind: postmaster, pid: 4242, single_user: false, data_directory: /data/primary/gpseg0,
             start_time: 1732160000, port: 6000, socket_directory: /tmp, listen_address: "*",
             shm_key: 6000001, shm_id: 32768, status: ready}
      owner_uid: 1000
      mtime: 1732160001.2
      evidence:
        - {check: shared_memory_free, passed: true, detail: "segment key 6000001 id 32768: gone"}
        - {check: process_exists, passed: true, detail: "PID 4242 exists (sleep)"}
        - {check: command, passed: false, detail: "process names ['sleep', 'sleep', 'sleep'] do not match /^(postgres|postmaster)$/"}
      removed: true
      start_blocked_by: []
verdicts:
  description: Path to verdict (live, stale, absent, not_a_pidfile, unreadable).
  returned: always
  type: dict
  sample: {/data/primary/gpseg0/postmaster.pid: stale}
removed:
  description: Files removed (or that would be, in check mode).
  returned: always
  type: list
  elements: str
  sample: [/data/primary/gpseg0/postmaster.pid]
actions:
  description: What was done, one sentence per file.
  returned: always
  type: list
  elements: str
  sample: ["removed stale /data/primary/gpseg0/postmaster.pid (PID 4242 is sleep, not the server)"]
"""

import os
import pwd

from ansible_collections.gpops.greenplum.plugins.module_utils import pidfile
from ansible_collections.gpops.greenplum.plugins.module_utils.module_base import local_module


def _uid(module, owner):
    if owner is None:
        return None
    if owner.isdigit():
        return int(owner)
    try:
        return pwd.getpwnam(owner).pw_uid
    except KeyError:
        module.fail_json(msg="expected_owner: no user named %r on this host" % owner)


def _failed_checks(evidence):
    return "; ".join(c["detail"] for c in evidence if c["passed"] is False)


def _observe_all(paths, expected_command, expected_uid, proc):
    """Observe ``paths`` and, after each ``postmaster.pid``, the socket lock file it names (if present)."""
    seen, observed = set(), []
    for path in paths:
        if os.path.realpath(path) in seen:
            continue
        seen.add(os.path.realpath(path))
        obs = pidfile.observe(path, expected_command, expected_uid, proc)
        observed.append(obs)
    for obs in list(observed):
        companion = pidfile.companion_socket_lock(obs.parsed) if obs.kind == pidfile.POSTMASTER else None
        if companion and os.path.realpath(companion) not in seen and os.path.lexists(companion):
            seen.add(os.path.realpath(companion))
            observed.append(pidfile.observe(companion, expected_command, expected_uid, proc))
    return observed


def _groups(observed):
    """``{postmaster.pid path: [socket lock paths it names]}`` for the files observed: one decision each."""
    by_real = {os.path.realpath(obs.path): obs.path for obs in observed}
    groups = {}
    for obs in observed:
        companion = pidfile.companion_socket_lock(obs.parsed) if obs.kind == pidfile.POSTMASTER else None
        if companion and os.path.realpath(companion) in by_real:
            groups[obs.path] = [by_real[os.path.realpath(companion)]]
        elif obs.kind == pidfile.POSTMASTER:
            groups[obs.path] = []
    return groups


def _remove(module, obs, p, expected_uid):
    if module.check_mode:
        return True, "would remove"
    return pidfile.remove_if_stale(obs.path, obs, p["expected_command"], expected_uid, p["proc_path"])


def main():
    module = local_module(
        dict(
            paths=dict(type="list", elements="path", default=[]),
            data_directories=dict(type="list", elements="path", default=[]),
            state=dict(type="str", choices=["present", "absent"], default="present"),
            expected_command=dict(type="str"),
            expected_owner=dict(type="str"),
            proc_path=dict(type="path", default="/proc"),
        ))
    p = module.params
    missing = [d for d in p["data_directories"] if not os.path.isdir(d)]
    if missing:
        module.fail_json(msg="data_directories: not a directory: %s" % ", ".join(missing))
    paths = list(p["paths"]) + [os.path.join(d, "postmaster.pid") for d in p["data_directories"]]
    if not paths:
        module.fail_json(msg="paths or data_directories: give at least one file or data directory")
    expected_uid = _uid(module, p["expected_owner"])

    observed = _observe_all(paths, p["expected_command"], expected_uid, p["proc_path"])
    judged = [(obs,) + pidfile.judge(obs) for obs in observed]
    files = [pidfile.report(obs, verdict, evidence) for obs, verdict, evidence in judged]
    groups = _groups(observed)
    for entry in files:
        for head, members in groups.items():
            if entry["path"] in members:
                entry["removed_with"] = head
    verdicts = {f["path"]: f["verdict"] for f in files}
    bad = [f for f in files if f["verdict"] in (pidfile.NOT_A_PIDFILE, pidfile.UNREADABLE)]
    if bad:
        module.fail_json(
            msg="paths/data_directories: nothing removed; cannot judge %s" % "; ".join(
                "%s (%s: %s)" % (f["path"], f["verdict"], _failed_checks(f["evidence"])) for f in bad),
            files=files, verdicts=verdicts, removed=[], actions=[], changed=False)

    removed, actions = [], []
    if p["state"] == "absent":
        by_path = {obs.path: (obs, verdict, evidence, entry) for (obs, verdict, evidence), entry in zip(judged, files)}
        members = {m for group in groups.values() for m in group}
        for obs, verdict, evidence in judged:
            if verdict != pidfile.STALE or obs.path in members:
                continue
            group = [by_path[m] for m in groups.get(obs.path, [])]
            live = [(m[0].path, m[1]) for m in group if m[1] != pidfile.STALE]
            if live:
                by_path[obs.path][3]["removed"] = False
                actions.append("left stale %s: it and %s are one decision, and %s" % (
                    obs.path, ", ".join(m[0].path for m in group),
                    "; ".join("%s is %s" % lv for lv in live)))
                continue
            # The socket lock files first: a server starting meanwhile takes postmaster.pid first.
            for m_obs, _verdict, m_evidence, m_entry in group + [by_path[obs.path]]:
                done, reason = _remove(module, m_obs, p, expected_uid)
                m_entry["removed"] = done
                if not done:
                    actions.append("left %s: %s" % (m_obs.path, reason))
                    break
                removed.append(m_obs.path)
                actions.append("%s stale %s (%s)" % ("would remove" if module.check_mode else "removed",
                                                     m_obs.path, _failed_checks(m_evidence)))
            if groups.get(obs.path) is not None and not module.check_mode:
                left = [path for path in [obs.path] + groups[obs.path] if os.path.lexists(path)]
                by_path[obs.path][3]["start_blocked_by"] = left
    module.exit_json(
        changed=bool(removed), files=files, verdicts=verdicts, removed=removed, actions=actions,
        diff=dict(before={"present": sorted(f["path"] for f in files if f["verdict"] != pidfile.ABSENT)},
                  after={"present": sorted(f["path"] for f in files
                                           if f["verdict"] != pidfile.ABSENT and f["path"] not in removed)}))


if __name__ == "__main__":
    main()
