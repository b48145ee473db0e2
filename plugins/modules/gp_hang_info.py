#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: gpops.greenplum contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: gp_hang_info
short_description: Find out whether a Greenplum or Cloudberry cluster hangs, and why
description:
  - Runs the whole hang diagnosis once and classifies what it finds. One cluster-wide snapshot of
    locks, wait-for edges, sessions, distributed and prepared transactions (with a per-node
    utility-mode fallback when a segment does not answer), read at the same time as the settings,
    the mirrors' replication state and, when resource queues are in use, their locks; then the
    wait-for graph with Greenplum's global deadlock detector rules, the blocking trees, and the
    classification.
  - Read-only and bounded. Every session it opens has C(statement_timeout) and a short
    C(lock_timeout), so it never waits on a lock itself; a node that does not answer within
    O(statement_timeout) is reported as C(node_unreachable), never waited on. The whole run takes
    about one O(statement_timeout) at most.
  - A coordinator that cannot be reached is a C(node_unreachable) finding, not a task failure, so
    a scheduled health job still publishes what it saw.
  - A fault of the tool itself is never a finding about the cluster -- a failed login (wrong O(login_user)
    or password), a missing O(login_db), a setting the server refuses, a missing privilege, on any node
    -- fails the task with a message naming the cause.
  - Facts this login cannot read (for example the walsender states without C(pg_read_all_stats)) are left
    unknown and named in RV(tool_warnings); they make no finding.
  - Works on Greenplum 6 (C(waiting), C(waiting_reason)) and Greenplum 7 / Cloudberry
    (C(wait_event_type), C(wait_event), C(backend_type)) catalogs.
  - "Finding classes: C(global_deadlock); C(blocking_chain) (root blocker, its state and age,
    waiters); C(syncrep_wait) (with the mirror's state); C(segment_down), C(mirror_not_in_sync),
    C(node_unreachable); C(fts_not_running), C(fts_not_probing); C(orphaned_prepared_xact);
    C(twophase_commit_retry); C(stuck_qe) (a QE frozen or slow on one segment while the QD waits
    on the interconnect); C(resource_queue_wait) (only when C(gp_resource_manager) is C(queue));
    C(segment_restarted) (a primary reset after a crash, or restarted, after the coordinator
    started); C(long_idle_in_transaction) (holding locks); C(gdd_status) (info)."
  - "Severity scale: C(critical) = work is stuck and will not recover by itself, or only through
    a coordinator PANIC (global deadlock, SyncRep wait, node not answering, two-phase commit retry,
    double fault); C(high) = stuck or exposed, needs a person soon (blocking chain whose longest
    wait reached O(wait_threshold), segment down, orphaned prepared transaction, FTS not running or
    not probing, a QE stuck for O(stuck_qe_age) or stopped); C(medium) = degraded, or waits younger
    than O(wait_threshold) (a stuck QE younger than O(stuck_qe_age), a primary reset after a crash);
    C(low) = harmless now but will bite (idle in transaction holding locks nobody waits for yet);
    C(info) = facts (the global deadlock detector's state, a primary restarted after the
    coordinator)."
  - One cause gives one finding. Sessions blocked by a SyncRep wait, a commit retry or an orphaned
    prepared transaction are listed in that finding's evidence, not again as a blocking chain.
  - FTS presence is read from this host's process table, so C(fts_not_running) can only be
    reported when the module runs on the coordinator host. Likewise the /proc state of a stuck QE
    (C(T) stopped, C(D) uninterruptible) is read only where the QE runs on this host; elsewhere it
    is C(unknown).
  - "Cost and size follow the waits, not the locks: the server filters C(pg_locks) and
    C(gp_stat_activity) down to the waiting requests, every row on a lock somebody waits for, the
    rows of the waiting processes, of prepared transactions, the coordinator's distributed
    transactions and the locks of sessions idle in transaction past O(idle_in_transaction_age),
    with the backends of those rows, the SyncRep waiters and per-node / per-session counts for the
    rest (docs/collection.md). The result holds those rows and the counts (C(snapshot.counts)),
    never every row: its size grows with the waiting requests and the sessions involved, not with
    the number of granted locks or segments (about 6 MiB of JSON for 1,576 waits at 1,000,000 lock
    rows over 1,000 segments, bench/results.md)."
version_added: "0.1.0"
author:
  - gpops.greenplum contributors (@gpops)
extends_documentation_fragment:
  - gpops.greenplum.connection
attributes:
  check_mode:
    support: full
    description:
      - The module never changes the cluster. With O(evidence=full) it writes one file under
        O(evidence_dir) (then C(changed) is true); in check mode it writes nothing.
  diff_mode:
    support: none
    description: Nothing is changed, so there is no diff.
options:
  policy:
    description:
      - How the victim of each global deadlock would be chosen (reported, never acted on here).
      - C(youngest) is what Greenplum's detector does (the largest gxid of the cycle).
    type: str
    choices: [youngest, oldest, least_work]
    default: youngest
  never_choose:
    description:
      - JMESPath expression over each candidate session (keys such as C(usename),
        C(application_name), C(sess_id)); sessions it matches are never proposed as victims.
    type: str
  wait_threshold:
    description:
      - Seconds. A blocking chain or resource-queue wait is C(high) once its longest wait reaches
        this, C(medium) before.
    type: float
    default: 60
  idle_in_transaction_age:
    description:
      - Seconds. Report coordinator sessions C(idle in transaction) for at least this long that
        hold locks (C(long_idle_in_transaction)).
    type: float
    default: 300
  prepared_xact_age:
    description:
      - Seconds. A prepared transaction on a segment whose distributed transaction the
        coordinator no longer has is orphaned once this old (Greenplum's
        C(gp_dtx_recovery_prepared_period) default is 120).
    type: float
    default: 120
  stuck_qe_min_wait:
    description:
      - Seconds. A coordinator backend must have waited on its QEs (C(IPC)/C(Interconnect), or
        C(Dispatch/Result) and the other dispatch waits) at least this long before its QEs are looked at for C(stuck_qe), so that
        short queries on a busy cluster are never reported.
    type: float
    default: 10
  stuck_qe_age:
    description:
      - Seconds. A C(stuck_qe) is C(high) once its coordinator backend has waited this long, or at
        once when the QE process is stopped (C(T) in /proc); C(medium) before.
    type: float
    default: 60
  segment_restart_window:
    description:
      - Seconds. A primary that restarted, or reset after a crash, later than the coordinator
        started is reported as C(segment_restarted) for this long after it.
    type: float
    default: 3600
  evidence:
    description:
      - C(summary) returns the rows the diagnosis used and counts of the rest.
      - C(full) also streams every row of C(pg_locks), C(gp_dist_wait_status()),
        C(gp_stat_activity) (Greenplum 7) and C(gp_distributed_xacts) into a JSON-lines file under
        O(evidence_dir) (one C({"item", "row"}) object a line), read from the coordinator right
        after the diagnosis, without holding the rows in memory or in the result; C(evidence.path)
        names the file. A failure to write it is reported in C(evidence.error), not as a finding.
    type: str
    choices: [summary, full]
    default: summary
    version_added: "0.2.0"
  evidence_dir:
    description:
      - Existing directory for the evidence file; required with O(evidence=full).
    type: path
    version_added: "0.2.0"
seealso:
  - name: Greenplum global deadlock detector
    description: How Greenplum itself detects and breaks global deadlocks.
    link: https://docs.vmware.com/en/VMware-Greenplum/7/greenplum-database/admin_guide-dml.html#global-deadlock-detector
  - name: pg_locks (Greenplum)
    description: The lock view with Greenplum's C(gp_segment_id) and C(mppsessionid) columns.
    link: https://docs.vmware.com/en/VMware-Greenplum/7/greenplum-database/ref_guide-system_catalogs-pg_locks.html
  - name: gp_segment_configuration
    description: Segment and mirror state as FTS records it.
    link: https://docs.vmware.com/en/VMware-Greenplum/7/greenplum-database/ref_guide-system_catalogs-gp_segment_configuration.html
  - name: Detecting a failed segment (FTS)
    description: How FTS probes segments and marks mirrors down.
    link: https://docs.vmware.com/en/VMware-Greenplum/7/greenplum-database/admin_guide-highavail-topics-g-detecting-a-failed-segment.html
  - module: gpops.greenplum.gp_locks_info
  - module: gpops.greenplum.gp_deadlock
  - module: gpops.greenplum.gp_fts_probe
  - module: gpops.greenplum.gp_report
'''

EXAMPLES = r'''
- name: Diagnose (connection from the PG* environment variables)
  gpops.greenplum.gp_hang_info:
  register: hang

- name: Say what hangs
  ansible.builtin.debug:
    msg: "{{ hang.findings | map(attribute='summary') | list }}"

- name: Fail when anything critical is found
  ansible.builtin.assert:
    that: hang.findings | selectattr('severity', 'equalto', 'critical') | list | length == 0
    fail_msg: "{{ hang.summary }}"

- name: Stricter thresholds, bounded to 10 s per node
  gpops.greenplum.gp_hang_info:
    login_host: mdw
    login_user: gpadmin
    login_db: postgres
    statement_timeout: 10
    wait_threshold: 30
    idle_in_transaction_age: 600
    never_choose: "usename == 'etl'"
  register: hang

- name: Write the JSON and Markdown reports
  gpops.greenplum.gp_report:
    hang_info: "{{ hang }}"
    dest: /var/log/gpops
'''

RETURN = r'''
verdict:
  description:
    - C(hung) (a critical finding, or a high one of a class where something waits or is stuck),
      C(degraded) (any other high, medium or low finding; C(segment_down), C(mirror_not_in_sync) and
      C(fts_not_running) below critical, e.g. a content running without its mirror after FTS marked it
      down, whose commits do not wait), or C(healthy). Severity, not the verdict, decides whether
      C(health_check.yml) fails.
  returned: always
  type: str
  sample: hung
highest_severity:
  description: The most severe finding's severity, or null when there is none.
  returned: always
  type: str
  sample: critical
summary:
  description: One line per finding, most severe first, for the play output.
  returned: always
  type: list
  elements: str
  sample:
    - "[critical] global_deadlock: global deadlock between gxid 17, 18 across content 0, 1; ..."
    - "[info] gdd_status: global deadlock detector off: global deadlocks stay until someone breaks them"
findings:
  description:
    - What was found, most severe first; the C(gdd_status) info finding comes last.
    - At most 20 findings of one class are listed (C(findings_omitted) counts the rest), and any list
      inside one at most 50 entries (C(<key>_omitted) beside a list cut short); see docs/collection.md.
    - C(evidence) holds sessions, segments, locks and durations (seconds); C(remedy) says what to do
      and which module, role or playbook of this collection does it, with the variables to set.
  returned: always
  type: list
  elements: dict
  sample:
    - class: global_deadlock
      severity: critical
      summary: >-
        global deadlock between gxid 17, 18 across content 0, 1; victim: gxid 18 (session 11,
        QD pid 19885) (policy youngest); GDD is off: it stays until broken
      evidence:
        deadlock: 1
        gxids: [17, 18]
        sessions: [{gxid: 17, sess_id: 10, coordinator_pid: 19883, state: active}]
        edges: [{content: 0, waiter_gxid: 18, holder_gxid: 17, lock: transactionid ShareLock, relation: t01, kind: solid}]
        victims: [{gxid: 18, sess_id: 11, coordinator_pid: 19885, reason: youngest distributed transaction of the cycle}]
      remedy:
        text: Cancel the victim's coordinator backend (what Greenplum's detector does), terminate it if it stays in the cycle.
        module: gpops.greenplum.gp_deadlock
        role: gpops.greenplum.gp_deadlock_resolve
        playbook: gpops.greenplum.resolve_hang
        variables: {gp_resolve_deadlocks: true, gp_deadlock_policy: youngest}
findings_omitted:
  description: Findings found but not listed in C(findings), by class (the first 20 of a class are).
  returned: always
  type: dict
  sample: {blocking_chain: 180}
counts:
  description: Number of findings per severity, listed or not.
  returned: always
  type: dict
  sample: {critical: 1, high: 0, medium: 0, low: 0, info: 1}
server:
  description: What the coordinator says it is (empty when it could not be reached).
  returned: always
  type: dict
  sample: {flavor: greenplum, major: 7, version: 7.0.0-beta.0+d766805, version_num: 70000}
elapsed_s:
  description: Seconds the diagnosis took.
  returned: always
  type: float
  sample: 0.412
analysis:
  description: The analysis layer's result (deadlocks, victims, blocking trees, GDD reduction log, notes).
  returned: always
  type: dict
  sample: {verdict: deadlock, summary: "1 global deadlock; victim: gxid 18", deadlocks: [], blocking_trees: [], notes: []}
facts:
  description:
    - Settings, walsender state per content, FTS presence (null = unknown), resource-queue locks, and what could not be read.
    - C(process_states) maps C(content:pid) of each QE looked at for C(stuck_qe) to its /proc state letter, or C(unknown).
  returned: always
  type: dict
  sample: {settings: {gp_enable_global_deadlock_detector: "off"}, replication: {"0": streaming}, fts_running: null, resqueue_locks: [], errors: {}}
tool_warnings:
  description:
    - What this login could not read because of its privileges (for example C(replication) without
      C(pg_read_all_stats)), each also a task warning. Those facts are left unknown (C(facts.replication)
      is null) and never make a finding such as C(mirror_not_in_sync).
  returned: always
  type: list
  elements: str
  sample: ["replication - privilege - login_user app lacks superuser or membership in pg_read_all_stats"]
snapshot:
  description:
    - The rows the diagnosis used (evidence for the report, saved before any action).
    - C(postmaster_starts) maps each content (-1 the coordinator) to its primary's C(pg_postmaster_start_time()), read in
      utility mode.
    - C(scope) C(waits) - the lock rows and backends involved in a wait, not every row - and C(counts) of every lock row per node
      (C(lock_rows), C(waiting_lock_rows), C(lock_rows_read), C(backends_read), C(sessions), C(nodes)).
  returned: always
  type: dict
  sample:
    taken_at: "2026-11-21T05:41:25.704690+00:00"
    source: dispatch
    scope: waits
    counts: {lock_rows: 1000004, waiting_lock_rows: 1576, lock_rows_read: 3500, backends_read: 3161, sessions: 3224, nodes: {}}
    unreachable: {}
    segments: []
    locks: []
    edges: []
    backends: []
evidence:
  description: With O(evidence=full), the file written (C(path), C(rows) per item) or why not (C(error)); null otherwise.
  returned: always
  type: dict
  sample: {path: /var/log/gpops/gp-hang-evidence-20261121T054125.jsonl, rows: {locks: 1000004, edges: 3, activity: 250690, dist_xacts: 3300}}
'''

import os
import time

from ansible_collections.gpops.greenplum.plugins.module_utils.analyse import hang_diagnosis
from ansible_collections.gpops.greenplum.plugins.module_utils.collect.connection import (
    GpConnectionError, NotGreenplumError)
from ansible_collections.gpops.greenplum.plugins.module_utils.common.module_base import gp_module
from ansible_collections.gpops.greenplum.plugins.module_utils.analyse.hang_classes import TriageOptions


def main():
    module = gp_module(dict(
        policy=dict(type="str", default="youngest", choices=["youngest", "oldest", "least_work"]),
        never_choose=dict(type="str"),
        wait_threshold=dict(type="float", default=60.0),
        idle_in_transaction_age=dict(type="float", default=300.0),
        prepared_xact_age=dict(type="float", default=120.0),
        stuck_qe_min_wait=dict(type="float", default=10.0),
        stuck_qe_age=dict(type="float", default=60.0),
        segment_restart_window=dict(type="float", default=3600.0),
        evidence=dict(type="str", default="summary", choices=["summary", "full"]),
        evidence_dir=dict(type="path"),
    ))
    p = module.params
    if p["evidence"] == "full" and not p["evidence_dir"]:
        module.fail_json(msg="evidence_dir is required with evidence: full (the directory for the raw rows)")
    if p["evidence"] == "full" and not os.path.isdir(p["evidence_dir"]):
        module.fail_json(msg="evidence_dir %s is not a directory" % p["evidence_dir"])
    options = TriageOptions(wait_threshold=p["wait_threshold"],
                            idle_in_transaction_age=p["idle_in_transaction_age"],
                            prepared_xact_age=p["prepared_xact_age"],
                            stuck_qe_min_wait=p["stuck_qe_min_wait"], stuck_qe_age=p["stuck_qe_age"],
                            segment_restart_window=p["segment_restart_window"])
    path = None
    if p["evidence"] == "full" and not module.check_mode:
        path = os.path.join(p["evidence_dir"], "gp-hang-evidence-%s.jsonl" % time.strftime("%Y%m%dT%H%M%S", time.gmtime()))
    try:
        result = hang_diagnosis.diagnose(p, policy=p["policy"], never_choose=p["never_choose"],
                                         options=options, evidence_path=path).as_dict()
    except (ValueError, NotGreenplumError, GpConnectionError) as exc:
        module.fail_json(msg=str(exc))
    for warning in result["tool_warnings"]:
        module.warn("not a cluster finding: " + warning)
    if p["evidence"] == "full" and module.check_mode:
        result["evidence"] = {"path": None, "error": "check mode: the raw rows would be written to %s"
                              % p["evidence_dir"]}
    module.exit_json(changed=bool(result["evidence"] and result["evidence"].get("path")), **result)


if __name__ == "__main__":
    main()
