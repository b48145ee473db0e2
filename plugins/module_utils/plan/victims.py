# -*- coding: utf-8 -*-
# Copyright: gpops.greenplum contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Victim choice: which distributed transaction to cancel so that each deadlock ends.

Pure functions, no I/O. Greenplum's detector (``GddCtxBreakDeadLock`` in
``gdddetector.c``, docs/greenplum-internals.md#global-deadlock-detector-gdd) removes the youngest vertex (largest gxid),
reduces the graph again, and repeats while edges remain, so one snapshot may
give several victims. We do the same, with two differences: the victim is chosen
inside one cycle (strongly connected component) at a time, never a vertex that
only connects two cycles, and some sessions are never chosen.

Policies (``policy``):
- ``youngest``: largest gxid of the cycle (Greenplum's own choice; the least work lost
  in the usual case where the youngest transaction started last).
- ``oldest``: smallest gxid.
- ``least_work``: fewest lock rows held cluster-wide by the session (``pg_locks``
  granted rows with its ``mppsessionid`` on every node: a measure of how much it has
  touched, hence of what a rollback undoes), ties broken by youngest.

Never chosen (docs/greenplum-internals.md#prepared-transactions and
#signalling-backends):
- a session whose coordinator (QD) backend is not in the snapshot: there is nothing
  safe to cancel, and the segment pids are not ours to signal;
- a backend that is not a client backend (FTS, GDD, dtx recovery, walsender ...);
- a session with a backend waiting for synchronous replication (``wait_event``
  ``SyncRep``; GP6 ``waiting_reason`` ``replication``) on any node: cancel is ignored
  there and terminating the QD leaves the QE waiting with its locks;
- a distributed transaction in two-phase commit: it has prepared transactions on
  segments (``pg_prepared_xacts`` gid = its gxid), e.g. a QD in "Retry Commit
  Prepared", whose termination forces a coordinator PANIC;
- a prepared transaction itself (``holder_lpid`` 0: no backend to cancel);
- a session matching the user's JMESPath filter ``never_choose``, evaluated against
  the candidate dict (keys of ``SnapshotIndex.session_info`` plus ``locks_held``,
  ``in_syncrep``, ``in_two_phase_commit``), e.g. ``usename == 'etl'`` or
  ``contains(application_name, 'critical')``.

If every member of a cycle is protected, the cycle gets no victim and the result
says why: it needs a person.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.gpops.greenplum.plugins.module_utils.analyse.waitgraph import REMOVED_UNRESOLVED
from ansible_collections.gpops.greenplum.plugins.module_utils.plan.reasons import Reason
from ansible_collections.gpops.greenplum.plugins.module_utils.common import validation

POLICIES = ("youngest", "oldest", "least_work")


def check_policy(policy):
    """Return ``policy`` if known, else raise ValueError naming the parameter."""
    if policy not in POLICIES:
        raise ValueError("policy: unknown victim policy %r; allowed: %s" % (policy, ", ".join(POLICIES)))
    return policy


def compile_never_choose(expression):
    """Compile the ``never_choose`` JMESPath expression; None/empty gives None.

    Raises ValueError (naming ``never_choose``) for a bad expression or when the
    ``jmespath`` library is missing.
    """
    return validation.compile_jmespath("never_choose", expression)


def _matches(compiled, candidate):
    """(matched, error text): a runtime error protects the session, to be safe."""
    try:
        return bool(compiled.search(candidate)), None
    except Exception as exc:  # jmespath type errors (e.g. contains(null, ...)) and the like
        return True, "never_choose could not be evaluated (%s): protected to be safe" % exc


def candidate(index, gxid, sess_id=None, never_choose=None, prepared=False, policy="youngest"):
    """The dict a victim decision is made on, for distributed transaction ``gxid``.

    ``sess_id`` is the session the wait edges name (used when no coordinator
    ``distributed xid`` lock row names the QD); ``prepared`` marks a vertex that is a
    prepared transaction (a ``holder_lpid`` 0 edge). Adds ``locks_held`` (for
    ``least_work``; None otherwise), ``in_syncrep``, ``in_two_phase_commit``,
    ``prepared_on`` (contents), ``protected`` (bool), ``protections`` (reasons, text)
    and ``protection_codes`` (the ``reasons.Reason`` values of the same, in order).
    """
    info = index.session_info(gxid=gxid, sess_id=sess_id)
    session = info["sess_id"]
    reasons, codes = [], []

    def protect(code, text):
        codes.append(code.value)
        reasons.append(text)

    if prepared:
        protect(Reason.PROTECTED_PREPARED_XACT, "prepared transaction: holds its locks with no backend to cancel")
    if not info["found"]:
        protect(Reason.PROTECTED_NO_COORDINATOR_BACKEND, "coordinator backend not found in the snapshot")
    elif info["backend_type"] is not None and info["backend_type"] != "client backend":
        protect(Reason.PROTECTED_NOT_CLIENT_BACKEND, "not a client backend (%s)" % info["backend_type"])
    syncrep = index.syncrep_sessions.get(session, []) if session else []
    info["in_syncrep"] = bool(syncrep)
    if syncrep:
        protect(Reason.PROTECTED_SYNCREP_WAIT,
                "waiting for synchronous replication (SyncRep) on content %s: cancel is ignored there"
                % ", ".join(str(c) for c in sorted({c for c, _pid in syncrep})))
    prepared_on = sorted({p.content for p in index.prepared_by_gxid.get(gxid, ())})
    info["in_two_phase_commit"] = bool(prepared_on)
    info["prepared_on"] = prepared_on
    if prepared_on:
        protect(Reason.PROTECTED_TWO_PHASE_COMMIT,
                "in two-phase commit: prepared on content %s (killing it may PANIC the coordinator)"
                % ", ".join(str(c) for c in prepared_on))
    info["locks_held"] = index.lock_counts().get(session, 0) if policy == "least_work" else None
    if never_choose is not None:
        matched, error = _matches(never_choose, info)
        if error:
            protect(Reason.PROTECTED_NEVER_CHOOSE, error)
        elif matched:
            protect(Reason.PROTECTED_NEVER_CHOOSE, "matches never_choose")
    info["protected"] = bool(reasons)
    info["protections"] = reasons
    info["protection_codes"] = codes
    return info


def pick(candidates, policy):
    """The victim among ``candidates`` (dicts from ``candidate``) by ``policy``, or None
    when every one is protected."""
    eligible = [c for c in candidates if not c["protected"]]
    if not eligible:
        return None
    if policy == "oldest":
        return min(eligible, key=lambda c: c["gxid"])
    if policy == "least_work":
        return min(eligible, key=lambda c: (c["locks_held"], -c["gxid"]))
    return max(eligible, key=lambda c: c["gxid"])


def _reason(victim, candidates, policy):
    others = ", ".join(str(c["gxid"]) for c in sorted(candidates, key=lambda c: c["gxid"]))
    if policy == "oldest":
        text = "oldest distributed transaction of the cycle (smallest gxid %s among %s)" % (victim["gxid"], others)
    elif policy == "least_work":
        text = ("fewest locks held cluster-wide (%s lock rows) in the cycle (gxids %s), the youngest on a tie"
                % (victim["locks_held"], others))
    else:
        text = ("youngest distributed transaction of the cycle (largest gxid %s among %s), as Greenplum's "
                "global deadlock detector chooses" % (victim["gxid"], others))
    skipped = ["gxid %s (%s)" % (c["gxid"], "; ".join(c["protections"])) for c in candidates if c["protected"]]
    if skipped:
        text += "; never chosen: " + ", ".join(skipped)
    return text


def choose_victims(graph, index, policy, never_choose=None, session_hints=None, prepared=(), cycle_of=None):
    """Break every cycle left in the reduced ``graph`` (a ``waitgraph.WaitForGraph``;
    it is changed in place) the way ``GddCtxBreakDeadLock`` does: pick a victim
    in a cycle, remove it, reduce again, repeat while edges remain.

    ``session_hints``: gxid -> session id named by the wait edges; ``prepared``:
    gxids that are prepared transactions; ``cycle_of``: a function gxid -> the
    deadlock id the victim belongs to (for the report).

    Returns ``(victims, unresolved)``: victims are dicts ``{gxid, sess_id,
    coordinator_pid, policy, reason, deadlock, candidate, protected}`` (``protected``:
    the candidates of its cycle never chosen); unresolved are dicts
    ``{deadlock, gxids, needs_person: True, reason, candidates}`` for cycles whose
    every member is protected. Afterwards the graph is empty.
    """
    hints = session_hints or {}
    victims, unresolved = [], []
    while not graph.is_empty():
        # Greenplum cancels the largest gxid first: take the cycle holding it first.
        cycle = max(graph.cycles(), key=max)
        candidates = [candidate(index, gxid, hints.get(gxid), never_choose, gxid in prepared, policy)
                      for gxid in sorted(cycle)]
        chosen = pick(candidates, policy)
        deadlock = cycle_of(chosen["gxid"] if chosen else cycle[0]) if cycle_of else None
        if chosen is None:
            unresolved.append({
                "deadlock": deadlock, "gxids": sorted(cycle), "needs_person": True,
                "reason": "every transaction of the cycle is protected: " + ", ".join(
                    "gxid %s (%s)" % (c["gxid"], "; ".join(c["protections"])) for c in candidates),
                "candidates": candidates})
            for gxid in cycle:
                graph.remove_vertex(gxid, REMOVED_UNRESOLVED)
        else:
            victims.append({
                "gxid": chosen["gxid"], "sess_id": chosen["sess_id"],
                "coordinator_pid": chosen["coordinator_pid"], "policy": policy,
                "reason": _reason(chosen, candidates, policy), "deadlock": deadlock,
                "candidate": chosen, "protected": [c for c in candidates if c["protected"]]})
            graph.remove_vertex(chosen["gxid"])
        graph.reduce()
    return victims, unresolved
