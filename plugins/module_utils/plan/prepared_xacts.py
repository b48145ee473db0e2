# -*- coding: utf-8 -*-
# Copyright: gpops.greenplum contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Prepared (two-phase commit) transactions left on segments, and which are orphans.

A distributed transaction that touched several segments is PREPARED on each of
them and then committed (or aborted) by the coordinator. If that second phase
does not reach a segment, the prepared transaction stays there holding its
locks; Greenplum's dtx recovery sweeps orphans only after an abort broadcast has
failed (``AbortOrphanedPreparedTransactions``,
docs/greenplum-internals.md#prepared-transactions).

Greenplum's own orphan rule, followed here: a segment's prepared transaction is
an orphan when it is older than a threshold (``gp_dtx_recovery_prepared_period``,
default 120 s) and its distributed transaction (the gxid parsed from the gid:
GP7/Cloudberry the plain gxid, GP6 ``timestamp-gxid``) is not in progress on the
coordinator (``IsDtxInProgress``). "In progress" is read from two places: a
``gp_distributed_xacts`` row with that gxid, and the coordinator's
``distributed xid`` lock (``pg_locks`` content -1, ``transactionid`` = gxid). A
QD in "Retry Commit Prepared" keeps both, so such a transaction is never
touched: it must be committed, not rolled back.

The segments keep a distributed commit log (``gp_distributed_log``, read from every
primary through ``gp_dist_random``: the coordinator's copy is empty on Greenplum 7): a
gxid it records as committed on any segment is never rolled back. Where it cannot be
read (a segment down, an error), the commit is unknown and nothing is rolled back: a
rollback of a transaction committed elsewhere would lose its writes on this segment.

:func:`classify` decides (pure, over a ``ClusterSnapshot``); :func:`plan` turns the
decisions into a ``plan.steps.Plan``: a ``rollback_prepared`` step
(``Reason.ORPHANED_PREPARED_XACT``) per orphan, a ``commit_prepared`` step
(``Reason.COMMITTED_ELSEWHERE``) per prepared transaction the coordinator no longer has
and the segments' commit log records as committed, each with a ``prepared_xact`` guard
(content, gid, gxid, prepared time, owner, database), and a refusal for every other one.
``act/prepared_xact_finisher.py`` carries the steps out (docs/safety.md#prepared-transactions).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from typing import Any, Dict, List, Optional

from ansible_collections.gpops.greenplum.plugins.module_utils.common.records import COORDINATOR_CONTENT
from ansible_collections.gpops.greenplum.plugins.module_utils.plan.reasons import Reason, message
from ansible_collections.gpops.greenplum.plugins.module_utils.plan.steps import Guard, Plan, Refusal, Step

ORPHANED, IN_PROGRESS, TOO_YOUNG, COMMITTED, FOREIGN_GID, COORDINATOR = (
    "orphaned", "in_progress", "too_young", "committed", "foreign_gid", "coordinator")
# gp_dtx_recovery_prepared_period default (docs/greenplum-internals.md#defaults).
DEFAULT_MIN_AGE = 120.0


def coordinator_gxids(snapshot):
    """gxids the coordinator has in progress: ``gp_distributed_xacts`` rows and its
    ``distributed xid`` locks. Returns {gxid: why}."""
    known = {}
    for dx in snapshot.dist_xacts:
        if dx.gxid:
            known[dx.gxid] = "gp_distributed_xacts has it (session %s, state %s)" % (dx.gp_session_id, dx.state)
    for lock in snapshot.locks:
        if (lock.content == COORDINATOR_CONTENT and lock.locktype == "distributed xid"
                and lock.transactionid and lock.transactionid.isdigit()):
            known.setdefault(int(lock.transactionid), "the coordinator holds its distributed xid lock (pid %s)"
                             % lock.pid)
    return known


def waiters_of(snapshot, px):
    """Sessions waiting for prepared transaction ``px`` on its segment: ungranted
    ``transactionid`` locks on its local xid, and wait-for edges whose holder has no
    backend (``holder_lpid`` 0) and the gxid as holder. Sorted ``{pid, mppsessionid}``."""
    found = {}
    for lock in snapshot.locks:
        if (lock.content == px.content and not lock.granted and lock.locktype == "transactionid"
                and lock.transactionid == px.transaction and lock.pid):
            found[lock.pid] = lock.mppsessionid
    for edge in snapshot.edges:
        if edge.content == px.content and not edge.holder_pid and edge.holder_gxid == px.gxid and edge.waiter_pid:
            found.setdefault(edge.waiter_pid, edge.waiter_sessionid)
    return [{"pid": pid, "mppsessionid": found[pid]} for pid in sorted(found)]


def classify(snapshot, min_age=DEFAULT_MIN_AGE, committed=None, commit_log_error=None):
    # type: (Any, float, Optional[set], Optional[str]) -> List[Dict[str, Any]]
    """One decision per prepared transaction of ``snapshot``; pure.

    ``min_age``: seconds; ages are measured at ``snapshot.taken_at``.
    ``committed``: gxids ``gp_distributed_log`` records as committed (None: not read,
    ``commit_log_error`` says why). Returns dicts ``{content, gid, gxid, transaction,
    prepared, age_s, owner, database, verdict, reason, evidence, waiters, prepared_on}``;
    only verdict ``orphaned`` may be rolled back.
    """
    known = coordinator_gxids(snapshot)
    contents_by_gid = {}
    for px in snapshot.prepared_xacts:
        contents_by_gid.setdefault(px.gid, []).append(px.content)
    out = []
    for px in sorted(snapshot.prepared_xacts, key=lambda p: (p.content, p.gid)):
        age = (snapshot.taken_at - px.prepared).total_seconds() if px.prepared else None
        evidence = ["prepared %s, %.1f s before the snapshot" % (px.prepared.isoformat(), age)
                    if age is not None else "prepared time unknown"]
        facts = {"content": px.content, "gid": px.gid, "gxid": px.gxid}
        if px.content == COORDINATOR_CONTENT:
            verdict, reason = COORDINATOR, Reason.PREPARED_ON_COORDINATOR
        elif px.gxid is None:
            verdict, reason = FOREIGN_GID, Reason.FOREIGN_GID
        elif px.gxid in known:
            verdict, reason = IN_PROGRESS, Reason.COORDINATOR_HAS_GXID
            facts["detail"] = known[px.gxid]
        elif committed is not None and str(px.gxid) in committed:
            verdict, reason = COMMITTED, Reason.COMMITTED_ELSEWHERE
        elif age is None or age < min_age:
            verdict, reason = TOO_YOUNG, Reason.TOO_YOUNG
            facts.update(what="gid %s on content %d" % (px.gid, px.content), min_age_s=min_age)
        else:
            verdict, reason = ORPHANED, Reason.ORPHANED_PREPARED_XACT
        if px.gxid is not None and px.gxid not in known:
            evidence.append("gxid %d not in gp_distributed_xacts nor locked on the coordinator" % px.gxid)
        if committed is None:
            evidence.append("commit log not checked: %s" % (commit_log_error or "not read"))
        elif px.gxid is not None and str(px.gxid) not in committed:
            evidence.append("gp_distributed_log records no commit of gxid %d" % px.gxid)
        elif px.gxid is not None:
            evidence.append("gp_distributed_log on the segments records gxid %d as committed" % px.gxid)
        why = message(reason, **facts)
        if verdict == ORPHANED and committed is None:
            why += ", as far as known: the commit log could not be read, so nothing acts on it"
        out.append({
            "content": px.content, "gid": px.gid, "gxid": px.gxid, "transaction": px.transaction,
            "prepared": px.prepared.isoformat() if px.prepared else None, "age_s": age,
            "owner": px.owner, "database": px.database, "verdict": verdict, "reason": reason.value,
            "why": why, "evidence": evidence, "waiters": waiters_of(snapshot, px),
            "prepared_on": sorted(contents_by_gid[px.gid]),
        })
    return out


ROLLBACK, COMMIT = "rollback_prepared", "commit_prepared"


def _guard(px):
    """The ``prepared_xact`` guard: what the finishing session re-reads before it acts."""
    return Guard("prepared_xact", {"content": px.content, "gid": px.gid, "gxid": px.gxid,
                                   "prepared": px.prepared, "owner": px.owner, "database": px.database})


def plan(snapshot, decisions, min_age=DEFAULT_MIN_AGE, committed=None, commit_log_error=None):
    # type: (Any, List[Dict[str, Any]], float, Optional[set], Optional[str]) -> Plan
    """The steps ``state=absent`` runs for ``decisions`` (from :func:`classify` over
    ``snapshot``, the same ``min_age`` / ``committed``); pure.

    - ``orphaned`` with the commit log read: step ``rollback_prepared``
      (``Reason.ORPHANED_PREPARED_XACT``); with the commit log unknown: refusal
      ``COMMIT_LOG_UNKNOWN`` (a rollback of a transaction committed elsewhere loses its
      writes on this segment).
    - ``committed`` (the coordinator no longer has the gxid, a segment's
      ``gp_distributed_log`` records its commit) and at least ``min_age`` s old: step
      ``commit_prepared`` (``Reason.COMMITTED_ELSEWHERE``), what Greenplum's own recovery
      does with a transaction whose commit is recorded; younger: refusal ``TOO_YOUNG``.
    - every other decision: a refusal with its own reason code.
    - every node in ``snapshot.unreachable`` (its ``pg_prepared_xacts`` not read): refusal
      ``PREPARED_XACTS_UNKNOWN`` (nothing there is listed, so nothing there is planned).

    Steps carry a ``prepared_xact`` guard (``content``, ``gid``, ``gxid``, ``prepared``
    time, ``owner``, ``database``).
    """
    rows = {(px.content, px.gid): px for px in snapshot.prepared_xacts}
    known = coordinator_gxids(snapshot)
    steps, refusals = [], []
    for content, detail in sorted(snapshot.unreachable.items(), key=lambda kv: str(kv[0])):
        refusals.append(Refusal("content %s" % content, Reason.PREPARED_XACTS_UNKNOWN,
                                {"content": content, "detail": detail}))
    for d in decisions:
        px = rows[(d["content"], d["gid"])]
        target = "gid %s on content %d" % (d["gid"], d["content"])
        facts = {"content": d["content"], "gid": d["gid"], "gxid": d["gxid"]}
        if d["verdict"] == ORPHANED and committed is not None:
            steps.append(Step(ROLLBACK, target, Reason.ORPHANED_PREPARED_XACT, facts, _guard(px)))
        elif d["verdict"] == ORPHANED:
            refusals.append(Refusal(target, Reason.COMMIT_LOG_UNKNOWN, dict(facts, detail=commit_log_error)))
        elif d["verdict"] == COMMITTED and d["age_s"] is not None and d["age_s"] >= min_age:
            steps.append(Step(COMMIT, target, Reason.COMMITTED_ELSEWHERE, facts, _guard(px)))
        elif d["verdict"] in (COMMITTED, TOO_YOUNG):
            refusals.append(Refusal(target, Reason.TOO_YOUNG, dict(facts, what=target, min_age_s=min_age)))
        else:
            refusals.append(Refusal(target, Reason(d["reason"]), dict(facts, detail=known.get(d["gxid"]))))
    return Plan(tuple(steps), tuple(refusals))
