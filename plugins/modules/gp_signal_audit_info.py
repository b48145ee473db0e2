#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: gpops.greenplum contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: gp_signal_audit_info
short_description: Who sent signals to PostgreSQL/Greenplum processes, from the Linux audit log
description:
  - Reads the audit log (auditd's C(audit.log) or C(ausearch --raw) output saved to a file)
    and reports every signal recorded under the audit key of the role
    C(gpops.greenplum.gp_signal_audit) whose target is a PostgreSQL process, with the time, the
    signal, the system call, the sender (PID, parent PID, command, executable, command line,
    user and login user) and the target (PID, user, command).
  - For incidents such as a backend that PANICs after a SIGUSR2 nobody admits sending, or
    backends that die without a log line explaining why.
  - Says whether the audit could have recorded anything at all - it reads C(auditctl -s)
    (auditing C(enabled 0), or no C(auditd) running, C(pid 0)) and C(auditctl -l -k KEY)
    (no rule with the key loaded). When it could not, an empty C(signals) does not mean
    that nobody sent a signal - the module fails (O(require_recording=true), the default) or
    warns and returns C(recording=false) with the reasons in C(audit.problems). When
    C(auditctl) cannot be run (not root), C(recording) is null (unknown) and a warning says so.
  - Read-only.
version_added: 0.1.0
author: gpops.greenplum contributors (@gpops)
options:
  key:
    description: The audit key the rules were loaded with.
    type: str
    default: gpops_signals
  log_paths:
    description:
      - Audit logs to read, oldest first (e.g. C(/var/log/audit/audit.log.1), then
        C(/var/log/audit/audit.log)), in auditd's RAW or ENRICHED format.
    type: list
    elements: path
    default: [/var/log/audit/audit.log]
  target_comms:
    description:
      - Report only signals to processes with one of these command names (C(comm)); every
        PostgreSQL and Greenplum process is C(postgres). An empty list reports every target.
    type: list
    elements: str
    default: [postgres, postmaster]
  require_recording:
    description:
      - Fail when the audit of this host cannot record (disabled, no auditd, no rule with
        O(key)). Set to V(false) to read saved logs of another host or time; the result
        then carries C(recording=false), C(audit.problems) and a warning.
    type: bool
    default: true
  since:
    description:
      - Report only signals at or after this time, as epoch seconds or ISO 8601
        (C(2026-11-21T07:00:00+00:00); without a zone, UTC).
    type: str
attributes:
  check_mode:
    support: full
    description: Read-only; runs the same in check mode.
  diff_mode:
    support: none
    description: Nothing changes, so there is no diff.
seealso:
  - name: auditctl(8)
    description: Audit rules, fields and keys.
    link: https://man7.org/linux/man-pages/man8/auditctl.8.html
"""

EXAMPLES = r"""
- name: Who sent signals to postgres processes in the last hour?
  gpops.greenplum.gp_signal_audit_info:
    since: "{{ (now(utc=true).timestamp() - 3600) | int }}"
  register: signals
  become: true
"""

RETURN = r"""
signals:
  description: Signals sent to matching targets, oldest first.
  returned: always
  type: list
  elements: dict
  sample:
    - time: "2026-11-21T07:40:00.250000+00:00"
      epoch: 1795244400.25
      serial: 17
      syscall: kill
      signal: SIGUSR2
      signo: 12
      success: true
      sender: {pid: 4001, ppid: 4000, comm: kill, exe: /usr/bin/kill, cmdline: /usr/bin/kill -USR2 8080,
               uid: 1000, user: gpadmin, auid: 1000, login_user: gpadmin}
      target_pid: 8080
      targets: [{pid: 8080, uid: 1000, user: gpadmin, comm: postgres}]
summary:
  description: Number of signals per sender executable, user and signal, most first.
  returned: always
  type: list
  elements: dict
  sample: [{exe: /usr/bin/kill, user: gpadmin, signal: SIGUSR2, count: 1}]
recording:
  description: Whether this host's audit records signals now (null - could not be checked).
  returned: always
  type: bool
  sample: true
audit:
  description: What C(auditctl) says - the status, the rules loaded with the key, and why it cannot record.
  returned: always
  type: dict
  sample: {status: {enabled: 1, pid: 812, lost: 0}, rules_loaded: 10, problems: [], error: null}
"""

import datetime

from ansible_collections.gpops.greenplum.plugins.module_utils.collect import signal_audit
from ansible_collections.gpops.greenplum.plugins.module_utils.common.module_base import local_module


def _epoch(text):
    try:
        return float(text)
    except ValueError:
        pass
    when = datetime.datetime.fromisoformat(text)
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.timezone.utc)
    return when.timestamp()


def _auditctl(module, *args):
    """stdout of ``auditctl ARGS``, or (None, reason)."""
    path = module.get_bin_path("auditctl", opt_dirs=["/usr/sbin", "/sbin"])
    if not path:
        return None, "auditctl is not installed (Debian package auditd)"
    rc, out, err = module.run_command([path] + list(args))
    if rc != 0:
        return None, "auditctl %s: %s" % (" ".join(args), (err or out).strip())
    return out, None


def audit_state(module, key):
    """``{status, rules_loaded, problems, error}`` of this host's audit; unknown facts are None."""
    text, error = _auditctl(module, "-s")
    status = signal_audit.parse_status(text) if text is not None else None
    rules, rules_error = _auditctl(module, "-l", "-k", key)
    loaded = None
    if rules is not None:
        loaded = len([line for line in rules.splitlines() if line.rstrip().endswith("key=%s" % key)])
    return {"status": status, "rules_loaded": loaded,
            "problems": signal_audit.recording_problems(status, loaded, key), "error": error or rules_error}


def main():
    module = local_module(
        dict(
            key=dict(type="str", default=signal_audit.DEFAULT_KEY, no_log=False),
            log_paths=dict(type="list", elements="path", default=["/var/log/audit/audit.log"]),
            target_comms=dict(type="list", elements="str", default=list(signal_audit.POSTGRES_COMMS)),
            since=dict(type="str"),
            require_recording=dict(type="bool", default=True),
        ))
    p = module.params
    since = None
    if p["since"]:
        try:
            since = _epoch(p["since"])
        except ValueError:
            module.fail_json(msg="since: %r is neither epoch seconds nor an ISO 8601 time" % p["since"])
    lines = []
    for path in p["log_paths"]:
        try:
            with open(path, errors="replace") as handle:
                lines.extend(handle)
        except OSError as exc:
            module.fail_json(msg="log_paths: cannot read %s: %s" % (path, exc.strerror or exc))
    audit = audit_state(module, p["key"])
    recording = False if audit["problems"] else (None if audit["error"] else True)
    found = signal_audit.senders(lines, p["key"], p["target_comms"] or None, since)
    result = dict(changed=False, signals=found, summary=signal_audit.summary(found), recording=recording, audit=audit)
    if recording is False:
        why = "; ".join(audit["problems"])
        if p["require_recording"]:
            module.fail_json(msg="require_recording: the audit of this host cannot record signals, so no signal "
                                 "found means nothing: %s. Run the role gpops.greenplum.gp_signal_audit (state "
                                 "present), or set require_recording: false to read saved logs" % why, **result)
        module.warn("the audit of this host cannot record signals (%s): an empty list does not mean nobody sent "
                    "one" % why)
    elif recording is None:
        module.warn("whether the audit records signals is unknown (%s): an empty list does not mean nobody sent "
                    "one" % audit["error"])
    module.exit_json(**result)


if __name__ == "__main__":
    main()
