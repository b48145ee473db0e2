# -*- coding: utf-8 -*-
# Copyright: gpops.greenplum contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Breaking global deadlocks the way Greenplum's detector does, with the checks a
person would make: decide from one snapshot's analysis, cancel each victim's
coordinator (QD) backend, wait for its cycle to clear, terminate it if it is still
there, and say exactly what was done.

Public API:

- ``planned_actions(plan) -> list[dict]``: check mode: every step of the
  ``plan.steps.Plan`` (``plan/deadlock_plan.py``) as ``planned``, nothing run.
- ``break_deadlocks(source, plan, cancel_grace, still_deadlocked, done,
  sleep=time.sleep, clock=time.monotonic) -> set | None``: act through the one
  executor (``act/executor.py``): each ``cancel`` step, right before its signal, a light
  re-check that its gxid is still in a cycle (``GUARD_CYCLE_GONE``,
  ``GUARD_CYCLE_UNKNOWN``), then the guarded signal (``backend_signals.signal_transaction``
  through ``source``, a ``CoordinatorSignals``); wait up to ``cancel_grace`` s for the
  signalled gxids to leave every cycle; ``terminate`` steps for those still in one; wait
  again. Every outcome is appended to ``done`` (``action_dict``) as it happens. Returns
  the signalled gxids proven still in a cycle at the end, or None when the last look
  could not prove anything (liveness unknown).
- ``action_dict(outcome) -> dict``: ``executor.Outcome.as_dict()`` plus flat ``pid``,
  ``sess_id``, ``gxid``, ``deadlock``.
- ``deadlocked_gxids(params, server, timeout) -> set | None``: the gxids in a cycle now (a
  light snapshot: wait edges, then the live distributed transactions), None when that
  cannot be known.
- ``node_deadlock_timeouts(conn) -> {content: seconds}``: each primary's and the
  coordinator's ``deadlock_timeout``; ``local_check_wait(deadlocks, timeouts, limit)
  -> (seconds, waits)``: how long to leave local deadlocks to their node's own check.

Only the steps of the plan are run; the planner never plans a signal for a protected
process, a session waiting in SyncRep, or a transaction in two-phase commit.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re
import time

from ansible_collections.gpops.greenplum.plugins.module_utils.act import backend_signals as actions
from ansible_collections.gpops.greenplum.plugins.module_utils.act.executor import Outcome, execute
from ansible_collections.gpops.greenplum.plugins.module_utils.analyse.waitgraph import live_gxids
from ansible_collections.gpops.greenplum.plugins.module_utils.plan.reasons import Reason
from ansible_collections.gpops.greenplum.plugins.module_utils.collect import sql
from ansible_collections.gpops.greenplum.plugins.module_utils.analyse.lock_analysis import analyse
from ansible_collections.gpops.greenplum.plugins.module_utils.collect.connection import query
from ansible_collections.gpops.greenplum.plugins.module_utils.collect.snapshot import take_snapshot

CANCEL_MESSAGE = "cancelled by gpops.greenplum to break a global deadlock (gxid %s)"
TERMINATE_MESSAGE = "terminated by gpops.greenplum: still in a global deadlock after cancel (gxid %s)"
POLL_INTERVAL_S = 0.2
# A node's deadlock check runs deadlock_timeout after a wait begins, then takes a moment.
LOCAL_CHECK_MARGIN_S = 0.5
_UNITS_S = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "min": 60.0, "h": 3600.0, "d": 86400.0}


def action_dict(outcome):
    """What the module returns for one step's ``Outcome``."""
    out = outcome.as_dict()
    facts = outcome.step.facts
    out.update(pid=facts.get("pid"), sess_id=facts.get("sess_id"), gxid=facts.get("gxid"),
               deadlock=facts.get("deadlock"))
    return out


def planned_actions(plan):
    """What ``break_deadlocks`` would do with ``plan``, without doing it."""
    return [action_dict(o) for o in execute(plan.steps, {}, check_mode=True)]


def deadlocked_gxids(params, server, timeout):
    """gxids in a global deadlock now (wait edges, then the live distributed
    transactions: one dispatched statement each on a healthy cluster); None when the
    liveness or part of the edges could not be read (nothing can be proven)."""
    snap = take_snapshot(params, server, include=("edges", "dist_xacts"), timeout=timeout)
    if live_gxids(snap)[1] or (snap.source == "utility" and snap.unreachable):
        return None
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
    """The gxids of ``gxids`` still in a cycle after at most ``grace`` seconds (polling
    ``still_deadlocked()``), or None when the last poll could not tell."""
    deadline = clock() + grace
    while True:
        now = still_deadlocked()
        still = None if now is None else set(now) & set(gxids)
        if still == set() or clock() >= deadline:
            return still
        sleep(POLL_INTERVAL_S)


def break_deadlocks(source, plan, cancel_grace, still_deadlocked, done,
                    sleep=time.sleep, clock=time.monotonic):
    """Carry out ``plan`` (see the module docstring)."""
    def record(outcome):
        done.append(action_dict(outcome))

    def cancel(step):
        gxid = step.facts["gxid"]
        now = still_deadlocked()  # the light re-check of the victim's cycle, right before its signal
        if now is None:
            return Outcome.skipped(step, Reason.GUARD_CYCLE_UNKNOWN, gxid=gxid,
                                   detail="the live distributed transactions or some wait edges could not be read")
        if gxid not in now:
            return Outcome.skipped(step, Reason.GUARD_CYCLE_GONE, gxid=gxid)
        return actions.signal_transaction(step, source, CANCEL_MESSAGE % gxid)

    def terminate(step):
        return actions.signal_transaction(step, source, TERMINATE_MESSAGE % step.facts["gxid"])

    terminates = {s.facts["gxid"]: s for s in plan.steps if s.action == "terminate"}
    outcomes = execute([s for s in plan.steps if s.action == "cancel"], {"cancel": cancel}, on_outcome=record)
    signalled = {o.step.facts["gxid"] for o in outcomes if o.result in ("done", "failed")}
    if not signalled:
        return set()
    remaining = _wait_until_clear(signalled, cancel_grace, still_deadlocked, sleep, clock)
    steps = [terminates[g] for g in sorted(remaining or ()) if g in terminates]
    if not steps:
        return remaining
    execute(steps, {"terminate": terminate}, on_outcome=record)
    return _wait_until_clear(remaining, cancel_grace, still_deadlocked, sleep, clock)
