#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: gpops.greenplum contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: gp_prepared_xacts
short_description: Find prepared transactions left on segments and finish the orphaned ones
description:
  - Lists the prepared (two-phase commit) transactions of every primary segment, read in
    utility mode on all segments at once, each bounded by the connection's timeouts, with
    their age, gid, the distributed xid (gxid) parsed from the gid (Greenplum 6
    C(timestamp-gxid), Greenplum 7 and Cloudberry the plain gxid), the segments where the
    same gid is prepared, and the sessions that wait on its locks.
  - Decides each one as Greenplum's dtx recovery does (C(AbortOrphanedPreparedTransactions))
    an orphan is older than O(min_age) and its gxid is not in progress on the coordinator
    (no C(gp_distributed_xacts) row and no C(distributed xid) lock there). A transaction
    whose gxid the coordinator still has, such as one whose QD is in "Retry Commit
    Prepared", is V(in_progress) and never touched; it must be committed, not rolled back.
    A gxid that the segments' C(gp_distributed_log) records as committed is never rolled
    back either; where that log cannot be read (a segment down), nothing is rolled back.
  - Builds a plan (RV(plan)) of one step per transaction to finish, each with a reason code and a
    guard - C(rollback_prepared) (reason C(orphaned_prepared_xact)) for an orphan, C(commit_prepared)
    (reason C(committed_elsewhere)) for one whose gxid the coordinator no longer has, older than
    O(min_age), whose commit the segments' C(gp_distributed_log) records (Greenplum's own recovery
    commits those); every other transaction is a refusal with its reason code (C(coordinator_has_gxid),
    C(too_young), C(commit_log_unknown), C(foreign_gid), ...). A segment whose C(pg_prepared_xacts)
    cannot be read is a refusal C(prepared_xacts_unknown).
  - With O(state=absent), runs the plan's steps through the collection's one executor. Right before
    each, it proves the guard again - the coordinator still does not have the gxid, the segments'
    commit log (read again) still says what the step was planned for, and, in the utility-mode session
    to the segment and database that then runs C(ROLLBACK PREPARED) or C(COMMIT PREPARED), the gid is
    still prepared with the same prepared time, owner and database. A failed guard skips the step
    (RV(outcomes) says which fact changed); see docs/safety.md.
  - Check mode returns the same plan and runs nothing.
  - A segment that does not answer is named in RV(unreachable_nodes); its transactions are
    not listed.
version_added: 0.1.0
author: gpops.greenplum contributors (@gpops)
extends_documentation_fragment:
  - gpops.greenplum.connection
options:
  min_age:
    description:
      - Seconds a prepared transaction must have existed to be an orphan (Greenplum's
        C(gp_dtx_recovery_prepared_period), default 120).
    type: float
    default: 120
  gids:
    description:
      - Only these gids. Default is every prepared transaction.
    type: list
    elements: str
    default: []
  state:
    description:
      - V(present) reports (and returns the plan). V(absent) runs the plan - rolls back the V(orphaned)
        ones and commits the V(committed) ones older than O(min_age).
    type: str
    choices: [present, absent]
    default: present
attributes:
  check_mode:
    support: full
    description: Returns the same plan and the statements it would run, and runs none.
  diff_mode:
    support: none
    description: RV(outcomes), RV(executed_queries), RV(rolled_back) and RV(committed) say what changed.
seealso:
  - name: Greenplum dtx recovery
    description: How Greenplum aborts orphaned prepared transactions itself.
    link: https://github.com/greenplum-db/gpdb-archive/blob/main/src/backend/cdb/cdbdtxrecovery.c
  - module: gpops.greenplum.gp_locks_info
"""

EXAMPLES = r"""
- name: Prepared transactions left on the segments, and who waits for them
  gpops.greenplum.gp_prepared_xacts:
  register: prepared

- name: Roll back the orphans older than ten minutes
  gpops.greenplum.gp_prepared_xacts:
    min_age: 600
    state: absent
  when: gp_resolve_orphaned_prepared | default(false) | bool
"""

RETURN = r"""
prepared_xacts:
  description:
    - Every prepared transaction found on a reachable segment, with its decision - C(verdict)
      (orphaned, committed, in_progress, too_young, foreign_gid, coordinator), C(reason) (a reason code
      of docs/safety.md), C(why) (the same for people), C(result) of its step (done, skipped, failed,
      planned, or null when no step ran), C(rolled_back) and C(committed).
  returned: always
  type: list
  elements: dict
  sample:
    - content: 0
      gid: "36"
      gxid: 36
      transaction: "593"
      prepared: "2026-11-21T05:42:45.361518+00:00"
      age_s: 603.2
      owner: gpadmin
      database: postgres
      verdict: orphaned
      reason: orphaned_prepared_xact
      why: "prepared transaction 36 on content 0: the coordinator no longer knows gxid 36 and no segment's commit log records its commit"
      evidence: ["gxid 36 not in gp_distributed_xacts nor locked on the coordinator"]
      waiters: [{pid: 20487, mppsessionid: 43}]
      prepared_on: [0, 1]
      result: done
      rolled_back: true
      committed: false
plan:
  description:
    - The plan, the same in check mode - C(steps) (C(action) rollback_prepared or commit_prepared,
      C(target), C(reason), C(why), C(facts), C(guard) of kind prepared_xact with C(content), C(gid),
      C(gxid), C(prepared), C(owner), C(database)) and C(refusals) (C(target), C(reason), C(why), C(facts)).
  returned: always
  type: dict
  sample:
    steps:
      - action: rollback_prepared
        target: gid 36 on content 0
        reason: orphaned_prepared_xact
        why: "prepared transaction 36 on content 0: the coordinator no longer knows gxid 36 and no segment's commit log records its commit"
        facts: {content: 0, gid: "36", gxid: 36}
        guard: {kind: prepared_xact, content: 0, gid: "36", gxid: 36, prepared: "2026-11-21T05:42:45.361518+00:00",
                owner: gpadmin, database: postgres}
    refusals: [{target: content 2, reason: prepared_xacts_unknown, why: "pg_prepared_xacts of content 2 could not be read (timeout)",
                facts: {content: 2, detail: timeout}}]
outcomes:
  description:
    - One per step run (empty with O(state=present)) - the step's keys, then C(result) (done,
      skipped, failed, or planned in check mode), C(detail) (what was done, C(guard failed - <why>), or
      the error), C(guard_failed) (the reason code of a failed guard, else null), C(statement), C(at).
  returned: always
  type: list
  elements: dict
  sample:
    - action: rollback_prepared
      target: gid 36 on content 0
      reason: orphaned_prepared_xact
      result: skipped
      detail: "guard failed: prepared transaction 36 is no longer on content 0"
      guard_failed: guard_prepared_xact_gone
      statement: ""
      at: "2026-11-21T05:52:45.361518+00:00"
rolled_back:
  description: The transactions rolled back (or that would be, in check mode).
  returned: always
  type: list
  elements: dict
  sample: [{content: 0, gid: "36", database: postgres}]
committed:
  description: The transactions committed (or that would be, in check mode).
  returned: always
  type: list
  elements: dict
  sample: []
executed_queries:
  description: Statements run on the segments (in check mode, those that would be run).
  returned: always
  type: list
  elements: str
  sample: ["ROLLBACK PREPARED '36'"]
actions:
  description: What was done or left, one sentence per step (and per orphan left for an unknown commit log).
  returned: always
  type: list
  elements: str
  sample: ["gid 36 on content 0: ROLLBACK PREPARED '36' (prepared transaction 36 on content 0: ...)"]
unreachable_nodes:
  description: Content id to the reason a node did not answer.
  returned: always
  type: dict
  sample: {"2": "timeout: no answer within 30.0 s"}
"""

from ansible_collections.gpops.greenplum.plugins.module_utils.act.executor import execute
from ansible_collections.gpops.greenplum.plugins.module_utils.act.prepared_xact_finisher import Finisher, read_committed
from ansible_collections.gpops.greenplum.plugins.module_utils.collect import topology as catalog
from ansible_collections.gpops.greenplum.plugins.module_utils.plan import prepared_xacts as prepared
from ansible_collections.gpops.greenplum.plugins.module_utils.collect import snapshot
from ansible_collections.gpops.greenplum.plugins.module_utils.collect.connection import GpConnectionError, NotGreenplumError
from ansible_collections.gpops.greenplum.plugins.module_utils.common.module_base import gp_module, require_privileges

INCLUDE = ("locks", "edges", "dist_xacts", "prepared_xacts")


def _sentence(outcome, statement):
    """One line per step for people (``actions``)."""
    head = outcome.step.target
    if outcome.result == "planned":
        return "%s: would run %s (%s)" % (head, statement, outcome.step.why)
    if outcome.result == "done":
        return "%s: %s (%s)" % (head, statement, outcome.step.why)
    if outcome.result == "failed":
        return "%s: %s failed: %s" % (head, statement, " ".join(outcome.detail.split())[:300])
    return "%s: left: %s" % (head, outcome.detail)


def main():
    module = gp_module(dict(
        min_age=dict(type="float", default=prepared.DEFAULT_MIN_AGE),
        gids=dict(type="list", elements="str", default=[]),
        state=dict(type="str", choices=["present", "absent"], default="present"),
    ))
    p = module.params
    if p["state"] == "absent":
        require_privileges(module, ("rollback_prepared",), "state=absent")
    try:
        snap = snapshot.take_snapshot(p, include=INCLUDE, scope="waits")  # every row it reads is a waits row
        conn, server, segments = catalog.open_coordinator(p)
    except (GpConnectionError, NotGreenplumError) as exc:
        module.fail_json(msg=str(exc))
    with conn:
        if p["gids"]:
            snap.prepared_xacts = [px for px in snap.prepared_xacts if px.gid in p["gids"]]
        committed, why = read_committed(conn, {str(px.gxid) for px in snap.prepared_xacts if px.gxid})
        decisions = prepared.classify(snap, p["min_age"], committed, why)
        the_plan = prepared.plan(snap, decisions, p["min_age"], committed, why)
        finisher = Finisher(p, server, {n.content: n for n in catalog.primaries(segments)}, conn)
        outcomes = []
        if p["state"] == "absent":
            outcomes = execute(the_plan.steps, finisher.runners(), module.check_mode)
        statements = [finisher.statement(o.step) for o in outcomes]
    by_key = {(o.step.guard.facts["content"], o.step.guard.facts["gid"]): o for o in outcomes}
    finished = {prepared.ROLLBACK: [], prepared.COMMIT: []}
    for d in decisions:
        o = by_key.get((d["content"], d["gid"]))
        d["result"] = o.result if o else None
        d["rolled_back"] = bool(o and o.result in ("done", "planned") and o.step.action == prepared.ROLLBACK)
        d["committed"] = bool(o and o.result in ("done", "planned") and o.step.action == prepared.COMMIT)
        if o and o.result in ("done", "planned"):
            finished[o.step.action].append({"content": d["content"], "gid": d["gid"], "database": d["database"]})
    acted = [(o, text) for o, text in zip(outcomes, statements) if o.result in ("done", "planned")]
    failed = [_sentence(o, text) for o, text in zip(outcomes, statements) if o.result == "failed"]
    result = dict(
        changed=bool(acted), prepared_xacts=decisions, plan=the_plan.as_dicts(),
        outcomes=[o.as_dict() for o in outcomes], rolled_back=finished[prepared.ROLLBACK],
        committed=finished[prepared.COMMIT], executed_queries=[text for _o, text in acted],
        actions=[_sentence(o, text) for o, text in zip(outcomes, statements)]
        + ["%s: left: %s" % (r.target, r.why) for r in the_plan.refusals
           if p["state"] == "absent" and r.reason.value == "commit_log_unknown"],
        unreachable_nodes={str(c): r for c, r in snap.unreachable.items()})
    if failed:
        # A segment refused or did not answer: that step failed, the others ran.
        module.fail_json(msg="; ".join(failed), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
