# -*- coding: utf-8 -*-
# Copyright: gpops.greenplum contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Breaking global deadlocks the way Greenplum's detector does, with the checks a
person would make: decide from one snapshot's analysis, cancel each victim's
coordinator (QD) backend, wait for its cycle to clear, terminate it if it is still
there, and say exactly what was done.

Public API:

- ``uncertain_reason(snapshot) -> str | None``: why the snapshot cannot be trusted to
  act on (nodes missing from a utility-mode collection), else None.
- ``targets(snapshot, analysis) -> list[Target]``: the victims the analysis chose,
  with the coordinator backend identity (pid, ``backend_start``, ``sess_id``) that
  every signal re-checks.
- ``planned_actions(targets, terminate, cancel_grace) -> list[dict]``: check mode.
- ``break_deadlocks(conn, targets, cancel_grace, terminate, still_deadlocked, done,
  sleep=time.sleep, clock=time.monotonic) -> remaining_gxids``: act; every action
  is appended to ``done`` as it happens.
- ``deadlocked_gxids(params, server, timeout) -> set``: the gxids in a cycle now (a
  light snapshot: wait edges and distributed transactions only), for polling.
- ``node_deadlock_timeouts(conn) -> {content: seconds}``: each primary's and the
  coordinator's ``deadlock_timeout``; ``local_check_wait(deadlocks, timeouts, limit)
  -> (seconds, waits)``: how long to leave local deadlocks to their node's own check.

Only victims of ``analysis.analyse`` are touched; that layer never chooses protected
processes, sessions waiting in SyncRep, or transactions in two-phase commit.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import collections
import re
import time

from ansible_collections.gpops.greenplum.plugins.module_utils.act import backend_signals as actions
from ansible_collections.gpops.greenplum.plugins.module_utils.collect import sql
from ansible_collections.gpops.greenplum.plugins.module_utils.analyse.lock_analysis import analyse
from ansible_collections.gpops.greenplum.plugins.module_utils.collect.connection import query
from ansible_collections.gpops.greenplum.plugins.module_utils.common.records import COORDINATOR_CONTENT
from ansible_collections.gpops.greenplum.plugins.module_utils.collect.snapshot import take_snapshot

CANCEL_MESSAGE = "cancelled by gpops.greenplum to break a global deadlock (gxid %s)"
TERMINATE_MESSAGE = "terminated by gpops.greenplum: still in a global deadlock after cancel (gxid %s)"
POLL_INTERVAL_S = 0.2
# A node's deadlock check runs deadlock_timeout after a wait begins, then takes a moment.
LOCAL_CHECK_MARGIN_S = 0.5
_UNITS_S = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "min": 60.0, "h": 3600.0, "d": 86400.0}

Target = collections.namedtuple("Target", "gxid sess_id pid backend_start deadlock")


def uncertain_reason(snapshot):
    """Collected per node (dispatch failed) and some nodes did not answer: a cycle
    may run through them, and the transaction to cancel may be another one."""
    if snapshot.source != "utility" or not snapshot.unreachable:
        return None
    return ("the snapshot is incomplete: %s did not answer in utility mode, so the cycles seen may "
            "not be all of the wait-for graph and another transaction may be the right victim" % (
                ", ".join("content %s (%s)" % (c, r) for c, r in sorted(snapshot.unreachable.items()))))


def targets(snapshot, analysis):
    """One ``Target`` per victim, identified by its coordinator backend in the snapshot."""
    qds = {b.pid: b for b in snapshot.backends if b.content == COORDINATOR_CONTENT}
    out = []
    for victim in analysis.victims:
        qd = qds.get(victim["coordinator_pid"])
        out.append(Target(victim["gxid"], victim["sess_id"], victim["coordinator_pid"],
                          qd.backend_start if qd else None, victim["deadlock"]))
    return out


def _record(record, target):
    out = record.as_dict()
    out["gxid"] = target.gxid
    out["deadlock"] = target.deadlock
    return out


def planned_actions(targets_, terminate, cancel_grace):
    """What ``break_deadlocks`` would do, without doing it."""
    out = []
    for t in targets_:
        out.append(_record(actions.planned("cancel", t.pid, t.sess_id, CANCEL_MESSAGE % t.gxid), t))
        if terminate:
            out.append(_record(actions.planned(
                "terminate", t.pid, t.sess_id,
                "only if the cycle is still there %s s after the cancel" % cancel_grace), t))
    return out


def deadlocked_gxids(params, server, timeout):
    """gxids in a global deadlock now (wait edges and live distributed transactions
    only: one dispatched statement each on a healthy cluster)."""
    snap = take_snapshot(params, server, include=("edges", "dist_xacts"), timeout=timeout)
    return {g for d in analyse(snap).deadlocks for g in d["gxids"]}


def parse_duration(text):
    """Seconds of a time setting as ``current_setting`` shows it (``1s``, ``500ms``,
    ``2min``; a bare number is milliseconds, deadlock_timeout's unit). None when unreadable."""
    match = re.match(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$", str(text or ""))
    if not match or (match.group(2) and match.group(2) not in _UNITS_S):
        return None
    return float(match.group(1)) * _UNITS_S[match.group(2) or "ms"]


def node_deadlock_timeouts(conn):
    """``{content: seconds}``: ``deadlock_timeout`` on the coordinator and on every
    primary (read by one dispatched statement; sessions may override it)."""
    out = {}
    for row in query(conn, sql.DEADLOCK_TIMEOUTS_SQL):
        seconds = parse_duration(row["value"])
        if seconds is not None:
            out[int(row["content"])] = seconds
    return out


def local_check_wait(deadlocks, timeouts, limit):
    """How long to leave the local deadlocks of ``deadlocks`` (analysis dicts, ``scope``
    ``local``: every wait on one node) to that node's own deadlock check, which ends
    one ``deadlock_timeout`` after its last wait began (isolation2 gdd/local-deadlock-03:
    the node cancels one member with "deadlock detected").

    ``timeouts``: ``{content: seconds}`` (``node_deadlock_timeouts``); ``limit``: the
    longest wait allowed. Returns ``(seconds, waits)``: the time to wait (0: none) and
    one dict per local deadlock ``{deadlock, content, deadlock_timeout_s, wait}``
    (``wait`` False when its node's timeout is unknown or longer than ``limit``).
    """
    waits, seconds = [], 0.0
    for d in deadlocks:
        if d.get("scope") != "local":
            continue
        content = d["contents"][0]
        timeout = timeouts.get(content)
        wait = timeout is not None and limit > 0 and timeout <= limit
        if wait:
            seconds = max(seconds, min(limit, timeout + LOCAL_CHECK_MARGIN_S))
        waits.append({"deadlock": d["id"], "content": content, "deadlock_timeout_s": timeout, "wait": wait})
    return seconds, waits


def _wait_until_clear(gxids, grace, still_deadlocked, sleep, clock):
    deadline = clock() + grace
    while True:
        still = set(still_deadlocked()) & gxids
        if not still or clock() >= deadline:
            return still
        sleep(POLL_INTERVAL_S)


def break_deadlocks(conn, targets_, cancel_grace, terminate, still_deadlocked, done,
                    sleep=time.sleep, clock=time.monotonic):
    """Cancel every target's QD backend; wait up to ``cancel_grace`` seconds for their
    cycles to clear (``still_deadlocked()`` returns the gxids in a cycle now); then,
    if ``terminate``, terminate the targets still in a cycle and wait again.

    ``conn``: autocommit coordinator connection. Each action (an ``ActionRecord`` dict
    plus ``gxid`` and ``deadlock``) is appended to the list ``done`` as it happens, so
    the caller knows what was done even when a poll raises. Returns the gxids of
    targets still deadlocked at the end.
    """
    for t in targets_:
        done.append(_record(actions.cancel_backend(conn, t.pid, CANCEL_MESSAGE % t.gxid,
                                                   t.backend_start, t.sess_id), t))
    gxids = {t.gxid for t in targets_}
    remaining = _wait_until_clear(gxids, cancel_grace, still_deadlocked, sleep, clock)
    if remaining and terminate:
        for t in targets_:
            if t.gxid in remaining:
                done.append(_record(actions.terminate_backend(
                    conn, t.pid, TERMINATE_MESSAGE % t.gxid, t.backend_start, t.sess_id), t))
        remaining = _wait_until_clear(remaining, cancel_grace, still_deadlocked, sleep, clock)
    return remaining
