#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: gpops.greenplum contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: gp_deadlock
short_description: Detect and break Greenplum global (distributed) deadlocks
description:
  - Finds global deadlocks the way Greenplum's global deadlock detector (GDD) does, from one
    cluster-wide snapshot (see M(gpops.greenplum.gp_locks_info)). The wait-for graph over
    distributed transactions is reduced with GDD's rules for solid and dotted edges, and the
    cycles left are deadlocks that no single node sees.
  - Greenplum's detector is off by default and, when on, acts only every
    C(gp_global_deadlock_detector_period) seconds (120 by default); this module acts at once.
  - With O(state=resolved) it breaks each cycle as GDD does, by cancelling the coordinator (QD)
    backend of one victim per cycle (the youngest distributed transaction by default), waits up
    to O(cancel_grace) seconds for the cycle to clear, terminates the victim if it is still
    there, and checks again.
  - Never chosen, whatever the policy, are processes that are not client backends (FTS, GDD, dtx
    recovery, walsenders), sessions waiting for synchronous replication (SyncRep), transactions
    in two-phase commit (for example a coordinator retrying "Commit Prepared"), prepared
    transactions, and sessions matching O(never_choose). Each cycle is decided on its own; a
    cycle whose every member is protected is left alone (RV(refusals)) while the others are
    broken, and the task then fails saying it needs a person.
  - Each signal is one statement that checks the victim's coordinator backend still runs the
    planned distributed transaction (same pid, start time, session, C(xact_start) and gxid in
    C(gp_distributed_xacts)); a re-check right before it proves the gxid is still in a cycle.
    A session whose transaction ended and that started another is never signalled.
  - Nothing is signalled when the live distributed transactions or a segment's
    C(pg_prepared_xacts) could not be read.
  - Nothing is cancelled or terminated when the input is bad, the coordinator cannot be reached,
    the server is not Greenplum, or the snapshot is incomplete in a way that makes a cycle
    uncertain (it had to be read per node and some nodes did not answer).
version_added: "0.1.0"
author:
  - gpops.greenplum contributors (@gpops)
extends_documentation_fragment:
  - gpops.greenplum.connection
attributes:
  check_mode:
    support: full
    description: Reports the same deadlocks, victims and planned actions, and signals nothing.
  diff_mode:
    support: none
    description: Nothing is changed that a diff could show; actions are returned instead.
options:
  state:
    description:
      - V(detected) reports the deadlocks and the victims that would be chosen; nothing changes.
      - V(resolved) breaks every deadlock found.
    type: str
    choices: [detected, resolved]
    default: detected
  policy:
    description:
      - Which transaction of a cycle is the victim.
      - V(youngest) is GDD's own policy (the largest distributed xid); V(oldest) the smallest;
        V(least_work) the session holding the fewest lock rows cluster-wide.
    type: str
    choices: [youngest, oldest, least_work]
    default: youngest
  never_choose:
    description:
      - A JMESPath expression evaluated on each candidate session; when it is true the session
        is never chosen as a victim.
      - Keys include C(gxid), C(sess_id), C(coordinator_pid), C(usename), C(application_name),
        C(state), C(query), C(xact_age_s), C(locks_held).
      - For example V(usename == 'etl') or V(contains(application_name, 'billing')).
    type: str
  cancel_grace:
    description:
      - Seconds to wait after the cancel for the cycle to clear before terminating the victim
        (and again after terminating it). Greenplum's dispatcher notices a cancel within about
        one second.
    type: float
    default: 5
  terminate:
    description:
      - Terminate a victim whose cycle is still there O(cancel_grace) seconds after the cancel.
    type: bool
    default: true
  local_deadlock_wait:
    description:
      - A local deadlock (every wait of the cycle on one node) is also seen by that node's own
        deadlock check, which breaks it C(deadlock_timeout) after its last wait began (1 s by
        default) by failing one member's statement with C(deadlock detected).
      - With O(state=resolved), when that node's C(deadlock_timeout) is at most this many seconds,
        the module first waits that long (plus 0.5 s) and looks again, so that it does not cancel
        a second transaction of a cycle the node is breaking; it breaks only what is left (global
        deadlocks seen at the same time are broken after that wait too).
      - V(0) never waits. Check mode never waits.
    type: float
    default: 10
  recheck:
    description:
      - After acting, take a new snapshot and report RV(deadlocks_after); the task fails if a
        victim's cycle is still there.
    type: bool
    default: true
seealso:
  - name: Global deadlock detector
    description: Greenplum's own detector and its C(gp_global_deadlock_detector_period).
    link: https://docs.vmware.com/en/VMware-Greenplum/7/greenplum-database/admin_guide-dml.html
  - name: Server signaling functions
    description: pg_cancel_backend and pg_terminate_backend.
    link: https://www.postgresql.org/docs/12/functions-admin.html#FUNCTIONS-ADMIN-SIGNAL
  - module: gpops.greenplum.gp_locks_info
'''

EXAMPLES = r'''
- name: Is there a global deadlock? Which transaction would be cancelled?
  gpops.greenplum.gp_deadlock:
    state: detected
  register: dl

- name: Break every global deadlock (cancel the youngest, terminate after 5 s if needed)
  gpops.greenplum.gp_deadlock:
    state: resolved

- name: Never cancel the ETL user's sessions; cancel only, never terminate
  gpops.greenplum.gp_deadlock:
    state: resolved
    never_choose: "usename == 'etl'"
    terminate: false
    cancel_grace: 10
'''

RETURN = r'''
deadlocks:
  description: The global deadlocks found (cycles left after GDD's reduction), each with its
    distributed transactions, sessions, edges and an explanation. C(scope) is C(local) when
    every edge of the cycle is on one content (that node's own deadlock check sees it too and
    normally breaks it after C(deadlock_timeout)), C(global) otherwise.
  returned: always
  type: list
  elements: dict
  sample:
    - id: 1
      gxids: [17, 18]
      scope: global
      contents: [0, 1]
      resolution: victim
      explanation: "Global deadlock between 2 distributed transactions that no single node sees: ..."
victims:
  description: One transaction per cycle to cancel, chosen by O(policy), with why.
  returned: always
  type: list
  elements: dict
  sample:
    - {gxid: 18, sess_id: 11, coordinator_pid: 19885, policy: youngest, deadlock: 1,
       reason: "youngest distributed transaction of the cycle (largest gxid 18 among 17, 18), ..."}
unresolved:
  description: Cycles whose every member is protected; they need a person.
  returned: always
  type: list
  elements: dict
  sample: []
local_checks:
  description:
    - One entry per local deadlock found by O(state=resolved) (every wait on one node) with its
      C(gxids) and C(sess_ids), that node's C(deadlock_timeout), whether the module waited for
      the node's own deadlock check (O(local_deadlock_wait)), and whether the cycle was gone
      afterwards (C(broken_by_node)).
    - After such a wait, RV(deadlocks) and RV(victims) are those of the second look, the one
      acted on.
  returned: always
  type: list
  elements: dict
  sample:
    - {deadlock: 1, content: 1, gxids: [17, 19], sess_ids: [21, 23], deadlock_timeout_s: 1.0, wait: true,
       waited_s: 1.5, broken_by_node: true}
actions:
  description:
    - Every step taken (or, in check mode, planned), in order, as the executor reports it
      (docs/safety.md). C(result) is C(done), C(skipped) (its guard failed; nothing was sent),
      C(failed) (error) or C(planned) (check mode).
    - C(reason) is the step's reason code (C(deadlock_victim) for a cancel,
      C(still_deadlocked_after_cancel) for a terminate) and C(why) its sentence; C(guard_failed)
      the code of the failed guard of a skipped step (C(guard_cycle_gone), C(guard_cycle_unknown),
      C(guard_transaction_ended), C(guard_backend_replaced), C(guard_backend_gone),
      C(identity_unknown), C(protected_not_client_backend)), else null; C(detail) what was done,
      why the guard failed, or the error.
    - C(guard) is what the signalling statement checked (kind C(transaction) with C(pid),
      C(backend_start), C(sess_id), C(gxid) and C(xact_start)); C(pid), C(sess_id), C(gxid) and
      C(deadlock) are repeated at the top level.
  returned: always
  type: list
  elements: dict
  sample:
    - {action: cancel, target: coordinator pid 19885, pid: 19885, sess_id: 11, gxid: 18, deadlock: 1,
       at: "2026-11-21T05:41:25.778240+00:00", result: done, reason: deadlock_victim,
       why: "victim of deadlock 1: gxid 18, coordinator pid 19885 (youngest ...)", guard_failed: null,
       detail: "pg_cancel_backend: pid 19885 still ran gxid 18",
       guard: {kind: transaction, pid: 19885, backend_start: "2026-11-21T05:41:20.690194+00:00",
               sess_id: 11, gxid: 18, xact_start: "2026-11-21T05:41:21.101010+00:00"},
       statement: "SELECT pg_catalog.pg_cancel_backend(a.pid, %(message)s::text) AS signalled FROM ..."}
refusals:
  description:
    - What was looked at and deliberately not signalled, each with a reason code C(reason), its
      sentence C(why), C(target) and C(facts).
    - C(liveness_unknown), C(prepared_xacts_unknown) and C(snapshot_incomplete) forbid every signal
      (the task fails, nothing changed). C(protected_all_members) marks a cycle whose every member is
      protected (the other cycles are still broken, then the task fails); C(protected_never_choose),
      C(protected_syncrep_wait), C(protected_two_phase_commit), C(protected_not_client_backend),
      C(protected_prepared_xact), C(protected_no_coordinator_backend) name each protected member;
      C(identity_unknown) a victim whose backend identity is not visible;
      C(local_deadlock_left_to_node) (check mode) a local deadlock left to its node's own check.
  returned: always
  type: list
  elements: dict
  sample:
    - {target: gxid 17, reason: protected_never_choose, why: "gxid 17 matches never_choose",
       facts: {gxid: 17, pid: 19880, sess_id: 10}}
deadlocks_after:
  description: Deadlocks in the snapshot taken after acting (empty when all were broken);
    null when nothing was done or O(recheck) is false.
  returned: always
  type: list
  elements: dict
  sample: []
summary:
  description: What was found and done, one line each, for people.
  returned: always
  type: list
  elements: str
  sample:
    - "1 global deadlock; victim: gxid 18 (session 11, coordinator pid 19885)"
    - "cancel coordinator pid 19885 (session 11, gxid 18): done"
    - "after: no global deadlock"
source:
  description: How the snapshot was read, C(dispatch) or C(utility) (see M(gpops.greenplum.gp_locks_info)).
  returned: when a snapshot was taken
  type: str
  sample: dispatch
unreachable_nodes:
  description: Content id (as a string) of each node that did not answer, and why. (Not
    C(unreachable), a key Ansible reserves for hosts it cannot reach.)
  returned: when a snapshot was taken
  type: dict
  sample: {}
notes:
  description: What the analysis could not see or what needs care.
  returned: when a snapshot was taken
  type: list
  elements: str
  sample: []
'''

import time

from ansible_collections.gpops.greenplum.plugins.module_utils.act import backend_signals as actions
from ansible_collections.gpops.greenplum.plugins.module_utils.act import deadlock_breaker as deadlock
from ansible_collections.gpops.greenplum.plugins.module_utils.analyse.lock_analysis import analyse
from ansible_collections.gpops.greenplum.plugins.module_utils.collect.connection import (
    GpConnectionError, NotGreenplumError, ServerInfo, connect)
from ansible_collections.gpops.greenplum.plugins.module_utils.common.module_base import gp_module, require_privileges
from ansible_collections.gpops.greenplum.plugins.module_utils.collect.snapshot import take_snapshot
from ansible_collections.gpops.greenplum.plugins.module_utils.plan import deadlock_plan
from ansible_collections.gpops.greenplum.plugins.module_utils.plan.victims import POLICIES


def _action_line(a):
    line = "%s coordinator pid %s (session %s, gxid %s): %s" % (
        a["action"], a["pid"], a["sess_id"], a["gxid"], a["result"])
    return line if a["result"] in ("done", "planned") else "%s [%s] (%s)" % (
        line, a["guard_failed"] or a["reason"], a["detail"])


def _refusal_line(r):
    return "refused [%s] %s: %s" % (r["reason"], r["target"], r["why"])


def _local_timeouts(p, snap):
    """``({content: deadlock_timeout s}, note or None)``; read-only."""
    try:
        conn = connect(p, server=ServerInfo(**snap.server))
        try:
            return deadlock.node_deadlock_timeouts(conn), None
        finally:
            conn.close()
    except Exception as exc:  # the wait is a courtesy: without the settings, act at once
        return {}, "deadlock_timeout could not be read (%s): local deadlocks are broken at once" % exc


def _leave_local_deadlocks_to_their_node(p, snap, found, result, snapshot_and_analysis):
    """Give each local deadlock's node the time its own deadlock check needs
    (``deadlock.local_check_wait``), then look again: returns the new snapshot and
    analysis (or the old ones when nothing was waited for); ``result`` gets
    ``local_checks`` and a summary line."""
    timeouts, note = _local_timeouts(p, snap)
    seconds, waits = deadlock.local_check_wait(found.deadlocks, timeouts, p["local_deadlock_wait"])
    first = {d["id"]: d for d in found.deadlocks}
    for w in waits:
        w["gxids"] = first[w["deadlock"]]["gxids"]
        w["sess_ids"] = sorted({v["sess_id"] for v in first[w["deadlock"]]["vertices"] if v["sess_id"]})
    result["local_checks"] = waits
    if note:
        result["notes"] = result.get("notes", []) + [note]
    if not seconds:
        return snap, found
    started = time.monotonic()
    time.sleep(seconds)
    snap, found = snapshot_and_analysis()
    left = {g for d in found.deadlocks for g in d["gxids"]}
    for w in waits:
        w["waited_s"] = round(time.monotonic() - started, 3) if w["wait"] else 0.0
        w["broken_by_node"] = not (set(w["gxids"]) & left)
    # From here on the second look is what is acted on and reported.
    result.update(deadlocks=found.deadlocks, victims=found.victims, unresolved=found.unresolved,
                  notes=found.notes, source=snap.source, unreachable_nodes=snap.as_dict()["unreachable"])
    waited = [w for w in waits if w["wait"]]
    result["summary"].append("local deadlock on content %s: waited %.1f s for that node's own deadlock check "
                             "(deadlock_timeout %s s); after: %s" % (
                                 ", ".join(str(w["content"]) for w in waited), seconds,
                                 ", ".join("%g" % w["deadlock_timeout_s"] for w in waited), found.summary))
    return snap, found


def main():
    module = gp_module(dict(
        state=dict(type="str", default="detected", choices=["detected", "resolved"]),
        policy=dict(type="str", default="youngest", choices=list(POLICIES)),
        never_choose=dict(type="str"),
        cancel_grace=dict(type="float", default=5.0),
        local_deadlock_wait=dict(type="float", default=10.0),
        terminate=dict(type="bool", default=True),
        recheck=dict(type="bool", default=True),
    ))
    p = module.params
    result = dict(changed=False, deadlocks=[], victims=[], unresolved=[], actions=[], refusals=[], local_checks=[],
                  deadlocks_after=None, summary=[])
    if p["state"] == "resolved":  # a victim's identity unread would mean skip, wait and fail
        require_privileges(module, ("see_sessions", "signal_sessions"), "state=resolved", **result)

    def fail(msg):
        module.fail_json(msg=msg, **result)

    def snapshot_and_analysis():
        try:
            snap = take_snapshot(p, scope="waits")  # the cycles need the waits only (docs/collection.md)
        except (GpConnectionError, NotGreenplumError) as exc:
            fail(str(exc) + ("; nothing was cancelled or terminated" if result["actions"] else ""))
        return snap, analyse(snap, policy=p["policy"], never_choose=p["never_choose"])

    snap, found = snapshot_and_analysis()
    result.update(deadlocks=found.deadlocks, victims=found.victims, unresolved=found.unresolved,
                  source=snap.source, unreachable_nodes=snap.as_dict()["unreachable"], notes=found.notes,
                  summary=[found.summary])
    if p["state"] == "detected" or not found.deadlocks:
        module.exit_json(**result)
    left_to_node = {}
    if any(d["scope"] == "local" for d in found.deadlocks):
        if module.check_mode:  # no wait in check mode: say which cycles the wait would leave to their node
            timeouts, _note = _local_timeouts(p, snap)
            left_to_node = {w["deadlock"]: w["content"] for w in deadlock.local_check_wait(
                found.deadlocks, timeouts, p["local_deadlock_wait"])[1] if w["wait"]}
        else:
            snap, found = _leave_local_deadlocks_to_their_node(p, snap, found, result, snapshot_and_analysis)
            if not found.deadlocks:
                module.exit_json(**result)

    plan = deadlock_plan.plan_deadlocks(snap, found, p["terminate"], p["cancel_grace"], left_to_node)
    result["refusals"] = [r.as_dict() for r in plan.refusals]
    result["summary"] += [_refusal_line(r) for r in result["refusals"]]
    blocking = [r for r in result["refusals"] if r["reason"] in deadlock_plan.BLOCKING_REASONS]
    if blocking:
        fail("nothing was cancelled or terminated: %s" % "; ".join(
            "[%s] %s" % (r["reason"], r["why"]) for r in blocking))
    needs_person = "; ".join(u["reason"] for u in found.unresolved)

    if module.check_mode:
        result["actions"] = deadlock.planned_actions(plan)
        result["summary"] += [_action_line(a) for a in result["actions"]]
        result["changed"] = bool(plan.steps)
        module.exit_json(**result)

    remaining = set()
    if plan.steps:
        try:
            conn = connect(p)
        except GpConnectionError as exc:
            fail("%s; nothing was cancelled or terminated" % exc)
        server = ServerInfo(**snap.server)
        try:
            remaining = deadlock.break_deadlocks(
                actions.CoordinatorSignals(conn), plan, p["cancel_grace"],
                lambda: deadlock.deadlocked_gxids(p, server, p["statement_timeout"]), result["actions"])
        except (GpConnectionError, NotGreenplumError) as exc:
            result["changed"] = any(a["result"] == "done" for a in result["actions"])
            fail("lost the coordinator while breaking deadlocks: %s" % exc)
        finally:
            conn.close()
    result["changed"] = any(a["result"] == "done" for a in result["actions"])
    result["summary"] += [_action_line(a) for a in result["actions"]]
    if p["recheck"] and result["changed"]:
        _after, checked = snapshot_and_analysis()
        result["deadlocks_after"] = checked.deadlocks
        result["summary"].append("after: " + checked.summary)
    if remaining is None:
        fail("could not prove that the signalled transactions left their deadlock (the live distributed "
             "transactions could not be read)")
    if remaining:
        fail("global deadlock still present for gxid %s after %s" % (
            ", ".join(str(g) for g in sorted(remaining)),
            "cancel and terminate" if p["terminate"] else "cancel (terminate is false)"))
    if needs_person:
        fail("%d deadlock(s) need a person (every member protected): %s%s" % (
            len(found.unresolved), needs_person,
            "; the other deadlocks were broken" if result["changed"] else "; nothing was cancelled or terminated"))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
