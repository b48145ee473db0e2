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
"""

import datetime

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.gpops.greenplum.plugins.module_utils import signalaudit


def _epoch(text):
    try:
        return float(text)
    except ValueError:
        pass
    when = datetime.datetime.fromisoformat(text)
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.timezone.utc)
    return when.timestamp()


def main():
    module = AnsibleModule(
        argument_spec=dict(
            key=dict(type="str", default=signalaudit.DEFAULT_KEY, no_log=False),
            log_paths=dict(type="list", elements="path", default=["/var/log/audit/audit.log"]),
            target_comms=dict(type="list", elements="str", default=list(signalaudit.POSTGRES_COMMS)),
            since=dict(type="str"),
        ),
        supports_check_mode=True,
    )
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
    found = signalaudit.senders(lines, p["key"], p["target_comms"] or None, since)
    module.exit_json(changed=False, signals=found, summary=signalaudit.summary(found))


if __name__ == "__main__":
    main()
