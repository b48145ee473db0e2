# -*- coding: utf-8 -*-
# Copyright: gpops.greenplum contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The plan that breaks global deadlocks: pure, no I/O (docs/safety.md#deadlocks-what-is-proven-before-a-signal).

``plan_deadlocks(snapshot, analysis, terminate=True, cancel_grace=5.0, left_to_node=None)
-> plan.steps.Plan``

- ``snapshot``: the ``records.ClusterSnapshot`` the ``analysis``
  (``lock_analysis.analyse``) was made from; ``terminate``/``cancel_grace`` (seconds):
  whether a victim still in a cycle ``cancel_grace`` s after its cancel is terminated;
  ``left_to_node``: ``{deadlock id: content}`` of local deadlocks left to that node's own
  deadlock check (nothing planned for them).
- Steps: per victim a ``cancel`` (``Reason.DEADLOCK_VICTIM``) and, with ``terminate``, a
  ``terminate`` (``Reason.STILL_DEADLOCKED_AFTER_CANCEL``, run only if the cycle stays),
  both with a ``transaction`` guard: ``pid``, ``backend_start``, ``sess_id`` of the
  coordinator (QD) backend, the ``gxid`` it must still run and its ``xact_start``. A
  session outlives its transactions (an ETL client retries in the same session), so the
  session's identity alone would let a signal hit the retry.
- Refusals (``Reason`` codes): the whole plan is empty, with one refusal each, when the
  snapshot is incomplete (``SNAPSHOT_INCOMPLETE``: collected per node and a node did not
  answer), the live distributed transactions are unknown (``LIVENESS_UNKNOWN``) or a
  node's ``pg_prepared_xacts`` could not be read (``PREPARED_XACTS_UNKNOWN``: a member
  in two-phase commit could not be told apart). Otherwise each cycle is decided on its
  own: a cycle whose every member is protected gets ``PROTECTED_ALL_MEMBERS`` and the
  others are still broken; each protected member gets its own refusal
  (``PROTECTED_NEVER_CHOOSE``, ``PROTECTED_SYNCREP_WAIT``, ``PROTECTED_TWO_PHASE_COMMIT``,
  ``PROTECTED_NOT_CLIENT_BACKEND``, ``PROTECTED_PREPARED_XACT``,
  ``PROTECTED_NO_COORDINATOR_BACKEND``); a victim whose identity is not in the snapshot
  gets ``IDENTITY_UNKNOWN``; a local deadlock left to its node
  ``LOCAL_DEADLOCK_LEFT_TO_NODE``.

Greenplum's own detector refuses in the same spirit: it validates the gxids after the
edges and retries later when one is invalid
(https://github.com/greenplum-db/gpdb/blob/main/src/backend/utils/gdd/README.md).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.gpops.greenplum.plugins.module_utils.analyse.waitgraph import live_gxids
from ansible_collections.gpops.greenplum.plugins.module_utils.common.records import COORDINATOR_CONTENT
from ansible_collections.gpops.greenplum.plugins.module_utils.plan.reasons import Reason
from ansible_collections.gpops.greenplum.plugins.module_utils.plan.steps import Guard, Plan, Refusal, Step

GUARD_FACTS = ("pid", "backend_start", "sess_id", "gxid", "xact_start")
# Refusals that forbid every signal of the plan (``blocking_refusals``).
BLOCKING_REASONS = (Reason.SNAPSHOT_INCOMPLETE.value, Reason.LIVENESS_UNKNOWN.value,
                    Reason.PREPARED_XACTS_UNKNOWN.value)


def blocking_refusals(snapshot):
    """Refusals that forbid every signal on ``snapshot`` (list, empty when none)."""
    out = []
    if snapshot.source == "utility" and snapshot.unreachable:
        out.append(Refusal("snapshot", Reason.SNAPSHOT_INCOMPLETE, {"detail": "%s did not answer in utility mode" % (
            ", ".join("content %s (%s)" % (c, r) for c, r in sorted(snapshot.unreachable.items())))}))
    _live, why = live_gxids(snapshot)
    if why:
        out.append(Refusal("gp_distributed_xacts", Reason.LIVENESS_UNKNOWN, {"detail": why}))
    for content, why in sorted(snapshot.item_unknown("prepared_xacts").items()):
        out.append(Refusal("content %s" % content, Reason.PREPARED_XACTS_UNKNOWN,
                           {"content": content, "detail": why}))
    return out


def _member_refusals(candidates):
    out = []
    for c in candidates:
        for code in c.get("protection_codes", ()):
            out.append(Refusal("gxid %s" % c["gxid"], Reason(code), {
                "gxid": c["gxid"], "pid": c.get("coordinator_pid"), "sess_id": c.get("sess_id"),
                "backend_type": c.get("backend_type"),
                "contents": ", ".join(str(x) for x in c.get("prepared_on", ()))}))
    return out


def _steps(victim, qd, terminate, cancel_grace):
    guard = Guard("transaction", dict(zip(GUARD_FACTS, (victim["coordinator_pid"], qd.backend_start, qd.sess_id,
                                                        victim["gxid"], qd.xact_start))))
    target = "coordinator pid %s" % victim["coordinator_pid"]
    facts = {"deadlock": victim["deadlock"], "gxid": victim["gxid"], "pid": victim["coordinator_pid"],
             "sess_id": qd.sess_id, "why": victim["reason"]}
    steps = [Step("cancel", target, Reason.DEADLOCK_VICTIM, facts, guard)]
    if terminate:
        steps.append(Step("terminate", target, Reason.STILL_DEADLOCKED_AFTER_CANCEL,
                          dict(facts, grace_s=cancel_grace), guard))
    return steps


def plan_deadlocks(snapshot, analysis, terminate=True, cancel_grace=5.0, left_to_node=None):
    """The ``Plan`` for ``analysis.deadlocks`` (see the module docstring)."""
    if not analysis.deadlocks:
        return Plan()
    blocking = blocking_refusals(snapshot)
    if blocking:
        return Plan((), tuple(blocking))
    left_to_node = left_to_node or {}
    qds = {b.pid: b for b in snapshot.backends if b.content == COORDINATOR_CONTENT}
    steps, refusals = [], []
    for u in analysis.unresolved:
        refusals.append(Refusal("deadlock %s" % u["deadlock"], Reason.PROTECTED_ALL_MEMBERS,
                                {"deadlock": u["deadlock"], "gxids": u["gxids"]}))
        refusals.extend(_member_refusals(u["candidates"]))
    for victim in analysis.victims:
        refusals.extend(_member_refusals(victim.get("protected", ())))
        if victim["deadlock"] in left_to_node:
            refusals.append(Refusal("deadlock %s" % victim["deadlock"], Reason.LOCAL_DEADLOCK_LEFT_TO_NODE, {
                "deadlock": victim["deadlock"], "content": left_to_node[victim["deadlock"]]}))
            continue
        qd = qds.get(victim["coordinator_pid"])
        if qd is None or any(v is None for v in (qd.backend_start, qd.sess_id, qd.xact_start)):
            refusals.append(Refusal("coordinator pid %s" % victim["coordinator_pid"], Reason.IDENTITY_UNKNOWN,
                                    {"pid": victim["coordinator_pid"], "gxid": victim["gxid"]}))
            continue
        steps.extend(_steps(victim, qd, terminate, cancel_grace))
    return Plan(tuple(steps), tuple(refusals))
