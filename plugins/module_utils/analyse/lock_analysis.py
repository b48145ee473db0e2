# -*- coding: utf-8 -*-
# Copyright: gpops.greenplum contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One entry point for the analysis layer: ``analyse(snapshot) -> Analysis``.

Pure, no I/O: a ``ClusterSnapshot`` in, decisions and explanations out. It builds
the global wait-for graph (waitgraph.py), reduces it with Greenplum's GDD rules,
reports each remaining cycle with its edges and sessions, chooses victims
(victims.py), and builds blocking trees for the waits that are not deadlocks
(blocking.py). Every explanation is generated from the same records the decision
used, so what the report says is what was decided.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import collections

from ansible_collections.gpops.greenplum.plugins.module_utils.analyse import blocking
from ansible_collections.gpops.greenplum.plugins.module_utils.plan import victims
from ansible_collections.gpops.greenplum.plugins.module_utils.analyse import waitgraph
from ansible_collections.gpops.greenplum.plugins.module_utils.common import bounds
from ansible_collections.gpops.greenplum.plugins.module_utils.common.records import gc_paused

VERDICTS = ("deadlock", "blocking", "none")


class Analysis:
    """The result of ``analyse()``; ``as_dict()`` is what modules return.

    Attributes (all JSON-serializable through ``as_dict()``):
    - ``verdict``: ``deadlock`` (at least one cycle left after GDD's reduction),
      ``blocking`` (sessions wait, no cycle), or ``none`` (no lock wait seen on the
      nodes that answered).
    - ``summary``: one line of text; ``complete``: False when nodes did not answer.
    - ``deadlocks``: ``[{id, gxids, scope, contents, vertices: [session dicts], edges:
      [edge dicts], explanation, resolution}]``; ``scope`` is ``global`` (edges on two or
      more contents) or ``local`` (every edge on one content: that node's own deadlock
      check sees it too), ``contents`` the contents its edges are on; ``resolution`` is
      ``victim`` (one of its members is a victim), ``needs_person`` (every member
      protected) or ``released_by_other_victim`` (it only held through a wait into
      another cycle, whose victim ends it too).
    - ``victims``: ``[{gxid, sess_id, coordinator_pid, policy, reason, deadlock,
      candidate}]``; ``unresolved``: ``[{deadlock, gxids, needs_person, reason,
      candidates}]``.
    - ``blocking_trees``: see ``blocking.blocking_trees``.
    - ``graph``: ``{vertices, edges, dropped_edges: [{reason, edge}], remaining_edges,
      reduction: [{rule, edge}]}`` (the GDD reduction log, in deletion order).
    - ``notes``: text about what may be missing or needs care (unreachable nodes,
      SyncRep waits, unvalidated gxids ...).

    ``index`` (not serialised): the ``waitgraph.SnapshotIndex`` the analysis used, for
    triage (``triage.classify``); None when the result was built elsewhere.
    """

    index = None

    def __init__(self, verdict, summary, policy, deadlocks, victims_, unresolved, blocking_trees,
                 graph, notes, unreachable, taken_at, source):
        self.verdict, self.summary, self.policy = verdict, summary, policy
        self.deadlocks, self.victims, self.unresolved = deadlocks, victims_, unresolved
        self.blocking_trees, self.graph, self.notes = blocking_trees, graph, notes
        self.unreachable, self.taken_at, self.source = unreachable, taken_at, source

    @property
    def complete(self):
        return not self.unreachable

    def as_dict(self):
        """The JSON form; blocking trees bounded (``bounds``: the first ``TOP_LIMIT``,
        lists inside cut at ``LIST_LIMIT``, ``blocking_trees_omitted`` counts the rest)."""
        trees, omitted = bounds.top(self.blocking_trees)
        return {
            "verdict": self.verdict, "summary": self.summary, "complete": self.complete,
            "policy": self.policy, "taken_at": self.taken_at.isoformat(), "source": self.source,
            "unreachable": {str(k): v for k, v in sorted(self.unreachable.items())},
            "deadlocks": self.deadlocks, "victims": self.victims, "unresolved": self.unresolved,
            "blocking_trees": trees, "blocking_trees_omitted": omitted, "graph": self.graph, "notes": self.notes,
        }


def analyse(snapshot, policy="youngest", never_choose=None, index=None):
    """Analyse one ``ClusterSnapshot``.

    ``index``: its ``waitgraph.SnapshotIndex`` when the caller has built it already
    (built here otherwise); the result keeps it as ``Analysis.index`` so that triage and
    the report use the same one (one index per snapshot).

    ``policy``: ``youngest`` (default, Greenplum's own), ``oldest`` or ``least_work``
    (victims.py). ``never_choose``: a JMESPath expression; sessions it matches are
    never chosen as victims. Raises ValueError naming the parameter for an unknown
    policy or a bad expression. Returns an ``Analysis``.
    Cost: linear in the number of lock rows (two passes) plus the wait edges.
    """
    victims.check_policy(policy)
    matcher = victims.compile_never_choose(never_choose)
    with gc_paused():  # indexing a million rows allocates much and creates no cycles
        return _analyse(snapshot, policy, matcher, index or waitgraph.SnapshotIndex(snapshot))


def _analyse(snapshot, policy, matcher, index):
    edges, dropped = waitgraph.global_edges(index)
    graph = waitgraph.WaitForGraph([e.key() for e in edges]).reduce()

    hints, prepared = {}, set()
    for e in edges:
        hints.setdefault(e.waiter, e.waiter_sessionid)
        if e.holder_is_prepared:
            prepared.add(e.holder)
    for e in edges:
        hints.setdefault(e.holder, e.holder_sessionid)

    vertex_info = {}

    def vertex(gxid):
        if gxid not in vertex_info:
            info = index.session_info(gxid=gxid, sess_id=hints.get(gxid))
            info["label"] = _vertex_label(info)
            vertex_info[gxid] = info
        return vertex_info[gxid]

    remaining = graph.remaining()
    deadlocks = []
    for number, cycle in enumerate(sorted(graph.cycles(), key=min), 1):
        members = set(cycle)
        cycle_edges = [edges[i] for i in remaining if edges[i].waiter in members and edges[i].holder in members]
        contents = sorted({e.content for e in cycle_edges})
        deadlocks.append({
            "id": number, "gxids": sorted(members),
            "scope": "local" if len(contents) == 1 else "global", "contents": contents,
            "vertices": [vertex(g) for g in sorted(members)],
            "edges": [e.as_dict() for e in cycle_edges],
            "explanation": explain_cycle(cycle_edges, vertex)})
    deadlock_of = {g: d["id"] for d in deadlocks for g in d["gxids"]}
    reduction = [{"rule": rule, "edge": edges[i].as_dict()} for rule, i in graph.removed]
    chosen, unresolved = victims.choose_victims(graph, index, policy, matcher, hints, prepared,
                                                deadlock_of.get)
    for d in deadlocks:
        if any(u["deadlock"] == d["id"] for u in unresolved):
            d["resolution"] = "needs_person"
        elif any(v["deadlock"] == d["id"] for v in chosen):
            d["resolution"] = "victim"
        else:  # it held only through a wait into another cycle (e.g. a dotted edge), broken there
            d["resolution"] = "released_by_other_victim"

    block_edges = blocking.block_edges(index, edges + [edge for _why, edge in dropped])
    trees = blocking.blocking_trees(index, block_edges)
    verdict = "deadlock" if deadlocks else ("blocking" if trees else "none")
    notes = _notes(snapshot, index, dropped, unresolved)
    unrooted = blocking.waiting_without_root(block_edges)
    if unrooted:
        labels = sorted(blocking.node_label(blocking.node_info(index, key)) for key in unrooted)
        notes.append("%d waiting session%s no root blocker (%s on a cycle or behind one%s): %s" % (
            len(labels), " reaches" if len(labels) == 1 else "s reach", "it waits" if len(labels) == 1 else "they wait",
            ", see deadlocks" if deadlocks else "",
            "; ".join(labels[:10]) + ("; ..." if len(labels) > 10 else "")))
    graph_info = {
        "vertices": len({v for e in edges for v in (e.waiter, e.holder)}), "edges": len(edges),
        "dropped_edges": [{"reason": why, "edge": e.as_dict()} for why, e in dropped],
        "remaining_edges": len(remaining), "reduction": reduction}
    result = Analysis(verdict, _summary(verdict, deadlocks, chosen, unresolved, trees, snapshot.unreachable),
                      policy, deadlocks, chosen, unresolved, trees, graph_info, notes,
                      dict(snapshot.unreachable), snapshot.taken_at, snapshot.source)
    result.index = index
    return result


def _vertex_label(info):
    return "gxid %s (%s)" % (info["gxid"], ", ".join(["session %s" % info["sess_id"]] + blocking.session_parts(info)))


def _wait_text(edge):
    what = "%s on %s" % (edge.mode, edge.locktype)
    if edge.relation_name or edge.relation:
        what += " (relation %s)" % (edge.relation_name or "oid %s" % edge.relation)
    kind = "solid" if edge.solid else "dotted"
    return "on content %s waits for %s, a %s edge," % (edge.content, what, kind)


def explain_cycle(cycle_edges, vertex):
    """Text of one deadlock: one clause per edge, waiter then holder, each named by
    its own vertex (GDD's log names the waiter's session for both; we do not).

    A cycle whose every edge is on one content is a local deadlock: that node's own
    deadlock check (Postgres's, ``deadlock_timeout`` after the last wait began) sees it
    and normally breaks it; GDD's rules find it too (isolation2 gdd/local-deadlock-03)."""
    clauses = ["%s %s held by %s" % (vertex(e.waiter)["label"], _wait_text(e), vertex(e.holder)["label"])
               for e in sorted(cycle_edges, key=lambda e: (e.waiter, e.content, e.holder))]
    count = len({e.waiter for e in cycle_edges} | {e.holder for e in cycle_edges})
    contents = {e.content for e in cycle_edges}
    if len(contents) == 1:
        return ("Local deadlock on content %s between %d distributed transactions: that node's own deadlock "
                "check normally breaks it once deadlock_timeout has passed (still here: deadlock_timeout is "
                "long there, or the cycle has just formed): %s." % (contents.pop(), count, "; ".join(clauses)))
    return ("Global deadlock between %d distributed transactions that no single node sees: %s."
            % (count, "; ".join(clauses)))


def _deadlocks_text(deadlocks):
    """``1 global deadlock``, ``1 local deadlock (content 1)``, or both, comma separated."""
    local = [d for d in deadlocks if d.get("scope") == "local"]
    parts = []
    if len(local) < len(deadlocks):
        count = len(deadlocks) - len(local)
        parts.append("%d global deadlock%s" % (count, "" if count == 1 else "s"))
    if local:
        parts.append("%d local deadlock%s (content %s)" % (
            len(local), "" if len(local) == 1 else "s",
            ", ".join(str(c) for c in sorted({c for d in local for c in d["contents"]}))))
    return ", ".join(parts)


def _summary(verdict, deadlocks, chosen, unresolved, trees, unreachable):
    missing = ""
    if unreachable:
        missing = " (%d node%s did not answer: content %s; the picture is incomplete)" % (
            len(unreachable), "" if len(unreachable) == 1 else "s",
            ", ".join(str(c) for c in sorted(unreachable)))
    if verdict == "deadlock":
        text = _deadlocks_text(deadlocks)
        if chosen:
            text += "; victim%s: %s" % ("" if len(chosen) == 1 else "s", ", ".join(
                "gxid %s (session %s, coordinator pid %s)" % (v["gxid"], v["sess_id"], v["coordinator_pid"])
                for v in chosen))
        if unresolved:
            text += "; %d cycle%s need%s a person (every member protected)" % (
                len(unresolved), "" if len(unresolved) == 1 else "s", "s" if len(unresolved) == 1 else "")
        return text + missing
    if verdict == "blocking":
        waiting = sum(t["waiter_count"] for t in trees)
        longest = max((t["longest_wait_s"] for t in trees if t["longest_wait_s"] is not None), default=None)
        text = "%d root blocker%s holding up %d waiting session%s: %s" % (
            len(trees), "" if len(trees) == 1 else "s", waiting, "" if waiting == 1 else "s",
            "; ".join(t["root"]["label"] for t in trees[:3]))
        if longest is not None:
            text += "; longest wait %ss" % longest
        return text + missing
    if unreachable:
        return "no lock wait seen on the nodes that answered" + missing
    return "no lock wait: no deadlock and no blocking chain"


def _notes(snapshot, index, dropped, unresolved):
    notes = []
    for content, reason in sorted(snapshot.unreachable.items()):
        notes.append("content %s did not answer (%s): its locks and waits are missing, so a deadlock or "
                     "blocker involving it cannot be seen; do not read a quiet result as healthy"
                     % (content, reason))
    if snapshot.source == "utility":
        notes.append("collected per node in utility mode (the dispatched queries failed or timed out): "
                     "nodes answered at different moments")
    if index.live_gxids is None and snapshot.edges:
        notes.append("the live distributed transactions are unknown (%s): wait edges were kept without "
                     "checking that their gxids are live, so a cycle may already be broken; nothing is "
                     "signalled on such a snapshot" % index.liveness_unknown)
    counts = collections.Counter(why for why, _edge in dropped)
    for why, count in sorted(counts.items()):
        notes.append("%d wait edge%s left out of the wait-for graph: %s (still counted in blocking trees)"
                     % (count, "" if count == 1 else "s", why))
    syncrep = dict(index.syncrep_sessions.items())
    if syncrep:
        contents = sorted({c for places in syncrep.values() for c, _pid in places})
        notes.append("%d session%s wait%s for synchronous replication (SyncRep) on content %s: a mirror is "
                     "probably down and FTS has not acted; this is not a lock wait, cancelling is ignored "
                     "and killing does not release it (check the mirrors and FTS)" % (
                         len(syncrep), "" if len(syncrep) == 1 else "s", "s" if len(syncrep) == 1 else "",
                         ", ".join(str(c) for c in contents)))
    for u in unresolved:
        notes.append("deadlock %s needs a person: %s" % (u["deadlock"], u["reason"]))
    return notes
