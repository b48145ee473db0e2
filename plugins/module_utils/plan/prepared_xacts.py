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

:func:`classify` decides (pure, over a ``ClusterSnapshot``);
:func:`rollback` acts on one decision: a utility-mode connection to the segment
and database, the row re-read, the coordinator asked again, then ``ROLLBACK
PREPARED '<gid>'``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from typing import Any, Dict, List, Optional

from ansible_collections.gpops.greenplum.plugins.module_utils.collect import sql
from ansible_collections.gpops.greenplum.plugins.module_utils.collect.connection import connect, query
from ansible_collections.gpops.greenplum.plugins.module_utils.common.records import COORDINATOR_CONTENT

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
        if px.content == COORDINATOR_CONTENT:
            verdict, reason = COORDINATOR, "prepared on the coordinator, which Greenplum never does itself"
        elif px.gxid is None:
            verdict, reason = FOREIGN_GID, "gid %r is not one Greenplum forms (no gxid)" % px.gid
        elif px.gxid in known:
            verdict, reason = IN_PROGRESS, "the coordinator still has gxid %d: %s" % (px.gxid, known[px.gxid])
        elif committed is not None and str(px.gxid) in committed:
            verdict, reason = COMMITTED, "gp_distributed_log records gxid %d as committed" % px.gxid
        elif age is None or age < min_age:
            verdict, reason = TOO_YOUNG, "younger than min_age %.0f s" % min_age
        else:
            verdict, reason = ORPHANED, "gxid %d unknown to the coordinator, older than %.0f s" % (px.gxid, min_age)
        if px.gxid is not None and px.gxid not in known:
            evidence.append("gxid %d not in gp_distributed_xacts nor locked on the coordinator" % px.gxid)
        if committed is None:
            evidence.append("commit log not checked: %s" % (commit_log_error or "not read"))
        elif px.gxid is not None and str(px.gxid) not in committed:
            evidence.append("gp_distributed_log records no commit of gxid %d" % px.gxid)
        elif px.gxid is not None:
            evidence.append("gp_distributed_log on the segments records gxid %d as committed" % px.gxid)
        out.append({
            "content": px.content, "gid": px.gid, "gxid": px.gxid, "transaction": px.transaction,
            "prepared": px.prepared.isoformat() if px.prepared else None, "age_s": age,
            "owner": px.owner, "database": px.database, "verdict": verdict, "reason": reason,
            "evidence": evidence, "waiters": waiters_of(snapshot, px),
            "prepared_on": sorted(contents_by_gid[px.gid]),
        })
    return out


def read_committed(conn, gxids):
    """gxids (text) that the segments' ``gp_distributed_log`` records as committed, asked
    through the coordinator connection ``conn``: (set, None), or (None, reason) where the
    log cannot be read (no such view, a segment down, an error)."""
    if not gxids:
        return set(), None
    try:
        return {r["gxid"] for r in query(conn, sql.COMMITTED_GXIDS, {"gxids": sorted(gxids)})}, None
    except Exception as exc:  # the view is Greenplum's only; any failure means "not checked"
        return None, " ".join(str(exc).split())[:200]


def rollback_statement(gid):
    """``ROLLBACK PREPARED`` takes a string literal, not a parameter."""
    return sql.rollback_prepared(gid)


def rollback(params, server, node, decision, coordinator_conn):
    """Roll back one ``orphaned`` decision on ``node`` (a ``SegmentConfig``).

    Re-checks first: the gid is still prepared there, the coordinator still does not
    have its gxid (``gp_distributed_xacts`` and ``distributed xid`` locks), and the
    segments' distributed commit log (read again now) does not record it as committed.
    Returns (done, statement_text or reason). Raises ``GpConnectionError``.
    """
    gxid = str(decision["gxid"])
    committed, why = read_committed(coordinator_conn, {gxid})
    if committed is None:
        return False, "the distributed commit log could not be read (%s): commit unknown" % why
    if gxid in committed:
        return False, "gp_distributed_log now records gxid %s as committed" % gxid
    again = query(coordinator_conn, sql.COORDINATOR_HAS_GXID, {"g": gxid})
    if again:
        return False, "the coordinator has gxid %s again" % gxid
    conn = connect(params, host=node.address, port=node.port, dbname=decision["database"], utility=True,
                   server=server)
    with conn:
        if not query(conn, sql.PREPARED_GID_EXISTS, {"gid": decision["gid"]}):
            return False, "gid %s is no longer prepared on content %d" % (decision["gid"], decision["content"])
        statement = rollback_statement(decision["gid"])
        text = statement.as_string(conn)
        with conn.cursor() as cur:
            cur.execute(statement)
    return True, text
