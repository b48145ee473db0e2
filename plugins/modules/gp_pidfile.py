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
  - Builds a plan (RV(plan)) - one C(remove_file) step (reason code C(stale_pid_file)) per file
    proven C(stale), guarded by the file judged (its C(st_dev), C(st_ino) and the C(sha256) of its
    content, read through one open file); refusals C(not_stale) and C(companion_not_stale).
  - With O(state=absent), the collection's one executor runs the steps - each opens the file and
    compares inode and content with the guard, judges it again, renames it to a private name in
    the same directory, compares what it renamed, and only then unlinks it (else puts it back); a
    file a daemon rewrote meanwhile is kept and RV(outcomes) says C(skipped) with the failed guard's
    reason code (docs/safety.md). The file of a running server is never removed. Check mode returns
    the same plan and removes nothing.
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
    description: Returns the same plan and the files it would remove, and removes nothing.
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
  description:
    - One entry per file, in the order given (paths, then data directories), with C(verdict), C(reason)
      (stale_pid_file, not_stale, or null), C(why), and C(result) of its step (null when none ran).
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
      reason: stale_pid_file
      why: "process names ['sleep', 'sleep', 'sleep'] do not match /^(postgres|postmaster)$/"
      result: done
      removed: true
      start_blocked_by: []
verdicts:
  description: Path to verdict (live, stale, absent, not_a_pidfile, unreadable).
  returned: always
  type: dict
  sample: {/data/primary/gpseg0/postmaster.pid: stale}
plan:
  description:
    - The plan, the same in check mode - C(steps) (C(action) remove_file, C(target) the path, C(reason)
      stale_pid_file, C(why), C(facts) with C(path), C(pid), C(detail), C(group), C(guard) of kind file
      with C(path), C(st_dev), C(st_ino), C(sha256)) and C(refusals) (not_stale, companion_not_stale).
  returned: always
  type: dict
  sample:
    steps:
      - action: remove_file
        target: /data/primary/gpseg0/postmaster.pid
        reason: stale_pid_file
        why: "/data/primary/gpseg0/postmaster.pid names pid 4242, which is not the process that wrote it"
        facts: {path: /data/primary/gpseg0/postmaster.pid, pid: 4242, detail: "process names ... do not match",
                group: /data/primary/gpseg0/postmaster.pid}
        guard: {kind: file, path: /data/primary/gpseg0/postmaster.pid, st_dev: 2049, st_ino: 1310731,
                sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08}
    refusals: []
outcomes:
  description:
    - One per step run (empty with O(state=present)) - the step's keys, then C(result) (done,
      skipped, failed, or planned in check mode), C(detail), C(guard_failed) (reason code of a failed
      guard - guard_file_changed, guard_no_longer_stale - else null), C(statement), C(at).
  returned: always
  type: list
  elements: dict
  sample:
    - action: remove_file
      target: /run/apache2/apache2.pid
      result: skipped
      detail: "guard failed: /run/apache2/apache2.pid changed since it was judged (inode or content)"
      guard_failed: guard_file_changed
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

from ansible_collections.gpops.greenplum.plugins.module_utils.act.executor import execute
from ansible_collections.gpops.greenplum.plugins.module_utils.act.pid_file_remover import FileRemover
from ansible_collections.gpops.greenplum.plugins.module_utils.plan import pid_files
from ansible_collections.gpops.greenplum.plugins.module_utils.common.module_base import local_module


def _uid(module, owner):
    if owner is None:
        return None
    if owner.isdigit():
        return int(owner)
    try:
        return pwd.getpwnam(owner).pw_uid
    except KeyError:
        module.fail_json(msg="expected_owner: no user named %r on this host" % owner)


def _observe_all(paths, expected_command, expected_uid, proc):
    """Observe ``paths`` and, after each ``postmaster.pid``, the socket lock file it names (if present)."""
    seen, observed = set(), []
    for path in paths:
        if os.path.realpath(path) in seen:
            continue
        seen.add(os.path.realpath(path))
        obs = pid_files.observe(path, expected_command, expected_uid, proc)
        observed.append(obs)
    for obs in list(observed):
        companion = pid_files.companion_socket_lock(obs.parsed) if obs.kind == pid_files.POSTMASTER else None
        if companion and os.path.realpath(companion) not in seen and os.path.lexists(companion):
            seen.add(os.path.realpath(companion))
            observed.append(pid_files.observe(companion, expected_command, expected_uid, proc))
    return observed


def _groups(observed):
    """``{postmaster.pid path: [socket lock paths it names]}`` for the files observed: one decision each."""
    by_real = {os.path.realpath(obs.path): obs.path for obs in observed}
    groups = {}
    for obs in observed:
        companion = pid_files.companion_socket_lock(obs.parsed) if obs.kind == pid_files.POSTMASTER else None
        if companion and os.path.realpath(companion) in by_real:
            groups[obs.path] = [by_real[os.path.realpath(companion)]]
        elif obs.kind == pid_files.POSTMASTER:
            groups[obs.path] = []
    return groups


def _sentence(outcome):
    step = outcome.step
    if outcome.result == "planned":
        return "would remove stale %s (%s)" % (step.target, step.facts["detail"])
    if outcome.result == "done":
        return "removed stale %s (%s)" % (step.target, step.facts["detail"])
    return "left %s: %s" % (step.target, outcome.detail)


def _run(the_plan, runners, check_mode):
    """Each group's steps in order (socket locks, then their postmaster.pid): a step not
    carried out stops its group, since the files are one decision."""
    outcomes, stopped = [], set()
    for step in the_plan.steps:
        if step.facts["group"] in stopped:
            continue
        [outcome] = execute([step], runners, check_mode)
        outcomes.append(outcome)
        if outcome.result not in ("done", "planned"):
            stopped.add(step.facts["group"])
    return outcomes


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
    judged = [(obs,) + pid_files.judge(obs) for obs in observed]
    files = [pid_files.report(obs, verdict, evidence) for obs, verdict, evidence in judged]
    groups = _groups(observed)
    for entry in files:
        for head, members in groups.items():
            if entry["path"] in members:
                entry["removed_with"] = head
    verdicts = {f["path"]: f["verdict"] for f in files}
    bad = [f for f in files if f["verdict"] in (pid_files.NOT_A_PIDFILE, pid_files.UNREADABLE)]
    if bad:
        module.fail_json(
            msg="paths/data_directories: nothing removed; cannot judge %s" % "; ".join(
                "%s (%s: %s)" % (f["path"], f["verdict"], pid_files.failed_checks(f["evidence"])) for f in bad),
            files=files, verdicts=verdicts, removed=[], actions=[], changed=False,
            plan={"steps": [], "refusals": []}, outcomes=[])

    the_plan = pid_files.plan(judged, groups)

    def rejudge(path):
        return pid_files.judge(pid_files.observe(path, p["expected_command"], expected_uid, p["proc_path"]))[0]

    outcomes = _run(the_plan, FileRemover(rejudge).runners(), module.check_mode) if p["state"] == "absent" else []
    by_path = {o.step.target: o for o in outcomes}
    removed = [o.step.target for o in outcomes if o.result in ("done", "planned")]
    for entry in files:
        o = by_path.get(entry["path"])
        entry["reason"] = {pid_files.STALE: "stale_pid_file", pid_files.LIVE: "not_stale"}.get(entry["verdict"])
        entry["why"] = pid_files.failed_checks(entry["evidence"]) if entry["verdict"] == pid_files.STALE else (
            "; ".join(c["detail"] for c in entry["evidence"] if c["passed"]) or None)
        entry["result"] = o.result if o else None
        if p["state"] == "absent" and entry["verdict"] == pid_files.STALE:
            entry["removed"] = entry["path"] in removed
    left = ["left stale %s: %s" % (r.target, r.why) for r in the_plan.refusals
            if p["state"] == "absent" and r.reason.value == "companion_not_stale"]
    actions = [_sentence(o) for o in outcomes] + left
    if p["state"] == "absent" and not module.check_mode:
        for entry in files:
            if entry["path"] in groups and entry["path"] in {o.step.facts["group"] for o in outcomes}:
                entry["start_blocked_by"] = [path for path in [entry["path"]] + groups[entry["path"]]
                                             if os.path.lexists(path)]
    failed = ["%s: %s" % (o.step.target, o.detail) for o in outcomes if o.result == "failed"]
    if failed:
        module.fail_json(msg="removing stale files failed: %s" % "; ".join(failed), changed=bool(removed), files=files,
                         verdicts=verdicts, removed=removed, actions=actions, plan=the_plan.as_dicts(),
                         outcomes=[o.as_dict() for o in outcomes])
    module.exit_json(
        changed=bool(removed), files=files, verdicts=verdicts, removed=removed, actions=actions,
        plan=the_plan.as_dicts(), outcomes=[o.as_dict() for o in outcomes],
        diff=dict(before={"present": sorted(f["path"] for f in files if f["verdict"] != pid_files.ABSENT)},
                  after={"present": sorted(f["path"] for f in files
                                           if f["verdict"] != pid_files.ABSENT and f["path"] not in removed)}))


if __name__ == "__main__":
    main()
