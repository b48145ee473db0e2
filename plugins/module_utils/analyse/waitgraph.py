# -*- coding: utf-8 -*-
# Copyright: gpops.greenplum contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The global wait-for graph over distributed transactions and Greenplum's GDD reduction.

Pure functions, no I/O. Two halves:

- The graph algorithm (``WaitForGraph``, ``strongly_connected_components``): vertices
  are distributed transaction ids (gxid), each edge lives on one segment (content)
  and is solid (the lock is held until the holder's transaction ends,
  ``holdTillEndXact``) or dotted (it may be released earlier, e.g. a tuple lock).
  The reduction applies the three rules of Greenplum's Global Deadlock Detector
  (``src/backend/utils/gdd/README.md`` and ``gdddetector.c``; docs/greenplum-internals.md#global-deadlock-detector-gdd) until
  nothing changes; edges left over mean a global deadlock.
- The snapshot side (``SnapshotIndex``, ``global_edges``): one pass over the lock rows
  of a ``ClusterSnapshot`` to index what the graph, the blocking trees and the victim
  choice need (waiting lock rows, lock queues, each gxid's coordinator session), and
  the graph's edges built from ``gp_dist_wait_status()`` rows.

docs/wait-for-graph.md teaches the algorithm with the worked examples of the unit tests.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import collections

from ansible_collections.gpops.greenplum.plugins.module_utils.common.records import COORDINATOR_CONTENT

RULE_OUT_DEGREE = 1  # rule 1: a vertex with global out-degree 0 is deleted
RULE_IN_DEGREE = 2  # rule 2: a vertex with global in-degree 0 is deleted
RULE_DOTTED = 3  # rule 3: dotted in-edges of a vertex with local out-degree 0 are deleted
REMOVED_VICTIM = "victim"  # edges of a vertex chosen as victim (GddCtxBreakDeadLock)
REMOVED_UNRESOLVED = "unresolved"  # edges of a cycle nobody may break (see victims.py)


class WaitForGraph:
    """A global wait-for graph made of local graphs, one per content.

    ``edges`` is a sequence of ``(content, waiter, holder, solid)``: on node
    ``content`` the transaction ``waiter`` waits for ``holder``; ``solid`` is
    ``holdTillEndXact``. Parallel edges are kept (one waiter may wait for several
    holders' processes); they do not change the result, as every rule only asks
    whether a degree is zero.

    ``reduce()`` deletes edges by GDD's rules; ``removed`` logs ``(rule, edge index)``
    in deletion order, ``remaining()`` gives the indexes of the edges left. The
    rules only ever become applicable as edges disappear (a degree that reached 0
    stays 0), so the fixed point does not depend on the order they are applied in;
    the order here follows GDD's README (rule 1 for every vertex, then rule 2, then
    rule 3, again until nothing changes) so the log matches its worked example.
    Cost: O(vertices + edges).
    """

    def __init__(self, edges):
        self.edges = [tuple(e) for e in edges]
        self.alive = [True] * len(self.edges)
        self.removed = []
        self._out = collections.defaultdict(list)  # vertex -> edge indexes
        self._in = collections.defaultdict(list)
        self._gout = collections.Counter()  # vertex -> global out-degree (alive edges)
        self._gin = collections.Counter()
        self._lout = collections.Counter()  # (content, vertex) -> local out-degree
        self._local_in = collections.defaultdict(list)  # (content, vertex) -> in-edge indexes
        for i, (content, waiter, holder, _solid) in enumerate(self.edges):
            self._out[waiter].append(i)
            self._in[holder].append(i)
            self._gout[waiter] += 1
            self._gin[holder] += 1
            self._lout[(content, waiter)] += 1
            self._local_in[(content, holder)].append(i)
        # Rule 1 candidates are holders, rule 2 candidates waiters, rule 3 local holders.
        self._queues = (collections.deque(self._in), collections.deque(self._out),
                        collections.deque(self._local_in))

    def vertices(self):
        """Vertices that still have an edge, in first-seen order."""
        seen = {}
        for i, (_c, waiter, holder, _s) in enumerate(self.edges):
            if self.alive[i]:
                seen.setdefault(waiter, None)
                seen.setdefault(holder, None)
        return list(seen)

    def remaining(self):
        """Indexes of the edges not deleted."""
        return [i for i, alive in enumerate(self.alive) if alive]

    def is_empty(self):
        return not any(self.alive)

    def successors(self, vertex):
        """Holders ``vertex`` still waits for, on any content (deduplicated)."""
        return list(dict.fromkeys(self.edges[i][2] for i in self._out.get(vertex, ()) if self.alive[i]))

    def _delete(self, index, why):
        self.alive[index] = False
        self.removed.append((why, index))
        content, waiter, holder, _solid = self.edges[index]
        self._gout[waiter] -= 1
        self._gin[holder] -= 1
        self._lout[(content, waiter)] -= 1
        if not self._gout[waiter]:
            self._queues[0].append(waiter)
        if not self._gin[holder]:
            self._queues[1].append(holder)
        if not self._lout[(content, waiter)]:
            self._queues[2].append((content, waiter))

    def remove_vertex(self, vertex, why=REMOVED_VICTIM):
        """Delete every edge of ``vertex`` (a cancelled victim); call ``reduce()`` after."""
        for index in list(self._out.get(vertex, ())) + list(self._in.get(vertex, ())):
            if self.alive[index]:
                self._delete(index, why)

    def reduce(self):
        """Apply GDD's rules 1-3 until nothing changes; return ``self``."""
        by_rule, by_degree = self._queues[:2], (self._gout, self._gin)
        edge_lists = (self._in, self._out)
        local = self._queues[2]
        while any(self._queues):
            for rule, queue, degree, lists in zip((RULE_OUT_DEGREE, RULE_IN_DEGREE), by_rule,
                                                  by_degree, edge_lists):
                while queue:
                    vertex = queue.popleft()
                    if degree[vertex]:
                        continue
                    # Rule 1 deletes the vertex with its in-edges, rule 2 with its out-edges.
                    for index in lists.get(vertex, ()):
                        if self.alive[index]:
                            self._delete(index, rule)
            while local:
                key = local.popleft()
                if self._lout[key]:
                    continue
                for index in self._local_in.get(key, ()):
                    if self.alive[index] and not self.edges[index][3]:
                        self._delete(index, RULE_DOTTED)
        return self

    def cycles(self):
        """The strongly connected components of the edges left that hold a cycle
        (two or more vertices, or one waiting for itself), each a list of vertices."""
        self_loops = {self.edges[i][1] for i in self.remaining() if self.edges[i][1] == self.edges[i][2]}
        return [comp for comp in strongly_connected_components(self.vertices(), self.successors)
                if len(comp) > 1 or comp[0] in self_loops]


def gdd_reduce(edges):
    """Build the graph of ``(content, waiter, holder, solid)`` edges and reduce it."""
    return WaitForGraph(edges).reduce()


def strongly_connected_components(vertices, successors):
    """Tarjan's algorithm without recursion (no recursion limit on long chains).

    ``successors(v)`` returns the vertices ``v`` has an edge to. Returns the
    components as lists of vertices, each component after every component it
    reaches (reverse topological order).
    """
    index, low, on_stack, stack, result = {}, {}, set(), [], []
    counter = 0
    for root in vertices:
        if root in index:
            continue
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        work = [(root, iter(successors(root)))]
        while work:
            vertex, children = work[-1]
            descended = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(successors(child))))
                    descended = True
                    break
                if child in on_stack:
                    low[vertex] = min(low[vertex], index[child])
            if descended:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[vertex])
            if low[vertex] == index[vertex]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == vertex:
                        break
                result.append(component)
    return result


# --------------------------------------------------------------------------- snapshot side

def seconds_between(later, earlier):
    """Seconds from ``earlier`` to ``later`` (None when either is unknown)."""
    if later is None or earlier is None:
        return None
    return round((later - earlier).total_seconds(), 3)


def _better_qd(candidate, current):
    """Whether ``candidate`` is more likely the QD of its session than ``current``: a
    session can have other backends on the coordinator (entry-db QEs share its
    sess_id); the QD is a client backend and started first."""
    if current is None:
        return True
    if candidate.is_client_backend != current.is_client_backend:
        return candidate.is_client_backend
    if candidate.backend_start is None or current.backend_start is None:
        return False
    return candidate.backend_start < current.backend_start


def live_gxids(snapshot):
    """The live distributed transactions, as Greenplum's detector takes them: the
    gxids of ``gp_distributed_xacts`` read after every wait edge (``ListAllGxid()``
    after ``gp_dist_wait_status()`` in
    https://github.com/greenplum-db/gpdb/blob/main/src/backend/utils/gdd/gddbackend.c),
    and nothing else: a gxid seen only in ``pg_locks`` (read before the edges) may
    have ended since, and would keep a cycle just broken alive.

    Returns ``(gxids, why_unknown)``: ``(set, None)`` when the list was read; ``(None,
    text)`` when it was asked for and could not be read (``snapshot.unknown``), was not
    asked for, or (a snapshot that does not say what it read) has no row at all
    (Greenplum 7 always shows one row per coordinator backend slot).
    """
    failed = snapshot.item_unknown("dist_xacts")
    if failed:
        return None, "; ".join("content %s: %s" % (c, why) for c, why in sorted(failed.items()))
    if snapshot.read is not None and "dist_xacts" not in snapshot.read:
        return None, "gp_distributed_xacts was not read"
    if snapshot.read is None and not snapshot.dist_xacts:
        return None, "gp_distributed_xacts was not collected"
    return {x.gxid for x in snapshot.dist_xacts if x.gxid}, None


class SnapshotIndex:
    """What the analysis needs from one ``ClusterSnapshot``, indexed in two passes
    over its lock rows (the second only when something waits).

    Attributes: ``waiting`` (ungranted lock rows), ``by_tag`` (locktag -> the rows on
    a lock somebody waits for, granted or not), ``proc_locks`` ((content, pid) -> every
    lock row of a waiting process), ``gxid_qd`` (gxid -> the coordinator's
    ``distributed xid`` lock row: its pid is the QD backend, also while the session
    id changes in "Retry Commit Prepared", docs/greenplum-internals.md#signalling-backends),
    ``live_gxids`` and ``liveness_unknown`` (see ``live_gxids()``), ``backend`` ((content, pid) -> Backend),
    ``qd_by_pid``/``qd_by_session`` (coordinator backends), ``syncrep_sessions``
    (sess_id -> [(content, pid)] of its backends waiting for synchronous replication),
    ``prepared_by_gxid`` (gxid -> PreparedXact rows), ``prepared_rows``
    ((content, virtualtransaction) -> lock rows of a prepared transaction, pid NULL).
    """

    def __init__(self, snapshot):
        self.snapshot = snapshot
        self.taken_at = snapshot.taken_at
        self._index_backends(snapshot.backends)
        self._index_locks(snapshot.locks)
        self.prepared_by_gxid = collections.defaultdict(list)
        for prepared in snapshot.prepared_xacts:
            self.prepared_by_gxid[prepared.gxid].append(prepared)
        self.live_gxids, self.liveness_unknown = live_gxids(snapshot)
        self.session_gxid = {x.gp_session_id: x.gxid for x in snapshot.dist_xacts if x.gxid}
        for gxid, row in self.gxid_qd.items():
            self.session_gxid.setdefault(row.mppsessionid, gxid)
        self._lock_counts = None

    def _index_backends(self, backends):
        self.backend, self.qd_by_pid, self.qd_by_session = {}, {}, {}
        self.syncrep_sessions = collections.defaultdict(list)
        for b in backends:
            self.backend[(b.content, b.pid)] = b
            if b.content == COORDINATOR_CONTENT:
                self.qd_by_pid[b.pid] = b
                if b.sess_id and b.sess_id > 0 and _better_qd(b, self.qd_by_session.get(b.sess_id)):
                    self.qd_by_session[b.sess_id] = b
            # GP7: wait_event 'SyncRep'; GP6: waiting_reason 'replication'
            # (docs/greenplum-internals.md#synchronous-replication-switch).
            if b.wait_event == "SyncRep" or b.waiting_reason == "replication":
                self.syncrep_sessions[b.sess_id].append((b.content, b.pid))

    def _index_locks(self, locks):
        waiting, gxid_qd = [], {}
        self.prepared_rows = collections.defaultdict(list)
        for r in locks:  # pass 1: cheap tests only, it sees every row
            if not r.granted:
                waiting.append(r)
            elif r.pid is None:
                self.prepared_rows[(r.content, r.virtualtransaction)].append(r)
            elif (r.locktype == "distributed xid" and r.content == COORDINATOR_CONTENT
                  and r.transactionid and r.transactionid.isdigit()):
                gxid_qd[int(r.transactionid)] = r
        self.waiting, self.gxid_qd = waiting, gxid_qd
        self.by_tag = collections.defaultdict(list)
        self.proc_locks = collections.defaultdict(list)
        if not waiting:
            return
        tags = {r.locktag() for r in waiting}
        pids = {r.pid for r in waiting}
        # One discriminating field per waited-for lock keeps locktag() off most rows: the
        # first of these its lock type sets (``database`` alone: e.g. a frozenid lock).
        keys = {"relation": set(), "transactionid": set(), "virtualxid": set(), "objid": set(), "database": set()}
        for r in waiting:
            name = next((n for n in keys if getattr(r, n) is not None), None)
            if name is not None:
                keys[name].add(getattr(r, name))
        relations, xids, vxids, objids, databases = keys.values()
        by_tag, proc_locks = self.by_tag, self.proc_locks
        for r in locks:  # pass 2
            if r.pid in pids:
                proc_locks[(r.content, r.pid)].append(r)
            if (r.relation in relations or r.transactionid in xids or r.virtualxid in vxids
                    or r.objid in objids or r.database in databases):
                tag = r.locktag()
                if tag in tags:
                    by_tag[tag].append(r)
        # A pid is local to its node: keep only the processes that really wait there.
        waiting_procs = {(r.content, r.pid) for r in waiting}
        for key in [k for k in proc_locks if k not in waiting_procs]:
            del proc_locks[key]

    def lock_counts(self):
        """Lock rows held (granted) per session id, cluster-wide; computed once, on demand
        (a ``waits`` snapshot carries them, counted on the server)."""
        if self._lock_counts is None and self.snapshot.session_lock_counts is not None:
            self._lock_counts = collections.Counter(self.snapshot.session_lock_counts)
        if self._lock_counts is None:
            counts = collections.Counter()
            for r in self.snapshot.locks:
                if r.granted:
                    counts[r.mppsessionid] += 1
            self._lock_counts = counts
        return self._lock_counts

    def waiting_row(self, content, pid):
        """The ungranted lock row of process ``pid`` on ``content`` (a backend waits for one lock)."""
        for r in self.proc_locks.get((content, pid), ()):
            if not r.granted:
                return r
        return None

    def relation_of_wait(self, row):
        """``(oid, name)`` of the relation a wait is about, or ``(None, None)``.

        A ``relation``/``tuple``/``page`` wait names it; a ``transactionid`` wait (row
        updated by another transaction) does not, so take the waiter's tuple lock on
        that node, else its only relation lock stronger than AccessShareLock.
        """
        if row is None:
            return None, None
        if row.relation is not None:
            return row.relation, row.relation_name
        held = [r for r in self.proc_locks.get((row.content, row.pid), ()) if r.granted and r.relation is not None]
        tuples = [r for r in held if r.locktype == "tuple"]
        if tuples:
            return tuples[0].relation, tuples[0].relation_name
        writes = {(r.relation, r.relation_name) for r in held
                  if r.locktype == "relation" and r.mode != "AccessShareLock"}
        if len(writes) == 1:
            return writes.pop()
        return None, None

    def wait_started(self, content, pid, row=None):
        """When the process began to wait: ``waitstart`` (PostgreSQL 14+), else the
        backend's ``state_change``, else its ``query_start``; None if unknown."""
        if row is not None and row.waitstart is not None:
            return row.waitstart
        backend = self.backend.get((content, pid))
        if backend is None:
            return None
        return backend.state_change or backend.query_start

    def coordinator_backend(self, gxid=None, sess_id=None):
        """The QD backend of a distributed transaction: by the coordinator's
        ``distributed xid`` lock of ``gxid`` first, then by session id
        (``sess_id``, else ``gp_distributed_xacts.gp_session_id``)."""
        row = self.gxid_qd.get(gxid) if gxid else None
        if row is not None and row.pid in self.qd_by_pid:
            return self.qd_by_pid[row.pid]
        if not sess_id and gxid:
            sess_id = next((x.gp_session_id for x in self.snapshot.dist_xacts if x.gxid == gxid), None)
        return self.qd_by_session.get(sess_id) if sess_id else None

    def session_info(self, gxid=None, sess_id=None):
        """A JSON-friendly dict about a distributed session (what victims and reports show).

        Keys: gxid, sess_id, coordinator_pid (None when no QD backend is found),
        usename, application_name, state, backend_type, wait_event_type, wait_event,
        query, xact_start / query_start / state_change (ISO), xact_age_s,
        state_age_s (seconds since ``state_change``), found (bool).
        """
        qd = self.coordinator_backend(gxid, sess_id)
        if qd is not None and qd.sess_id and qd.sess_id > 0:
            sess_id = qd.sess_id
        if gxid is None and sess_id is not None:
            gxid = self.session_gxid.get(sess_id)
        info = {"gxid": gxid, "sess_id": sess_id, "found": qd is not None,
                "coordinator_pid": qd.pid if qd else None}
        for name in ("usename", "application_name", "state", "backend_type",
                     "wait_event_type", "wait_event", "query"):
            info[name] = getattr(qd, name) if qd else None
        for name in ("xact_start", "query_start", "state_change"):
            value = getattr(qd, name) if qd else None
            info[name] = value.isoformat() if value is not None else None
        info["xact_age_s"] = seconds_between(self.taken_at, qd.xact_start) if qd else None
        info["state_age_s"] = seconds_between(self.taken_at, qd.state_change) if qd else None
        return info


class GraphEdge:
    """One edge of the global wait-for graph, with what the report says about it."""

    __slots__ = ("content", "waiter", "holder", "solid", "locktype", "mode", "waiter_pid",
                 "holder_pid", "waiter_sessionid", "holder_sessionid", "relation", "relation_name")

    def __init__(self, content, waiter, holder, solid, locktype=None, mode=None, waiter_pid=None,
                 holder_pid=None, waiter_sessionid=None, holder_sessionid=None, relation=None,
                 relation_name=None):
        self.content, self.waiter, self.holder, self.solid = content, waiter, holder, solid
        self.locktype, self.mode = locktype, mode
        self.waiter_pid, self.holder_pid = waiter_pid, holder_pid
        self.waiter_sessionid, self.holder_sessionid = waiter_sessionid, holder_sessionid
        self.relation, self.relation_name = relation, relation_name

    @property
    def holder_is_prepared(self):
        """``holder_lpid`` 0: the holder is a prepared transaction, no backend holds it."""
        return self.holder_pid == 0

    def key(self):
        return (self.content, self.waiter, self.holder, self.solid)

    def as_dict(self):
        out = {name: getattr(self, name) for name in self.__slots__}
        out["kind"] = "solid" if self.solid else "dotted"
        out["holder_is_prepared"] = self.holder_is_prepared
        return out


DROP_NOT_DISTRIBUTED = "gxid 0: not a distributed transaction (read-only or local statement)"
DROP_NOT_LIVE = "gxid not a live distributed transaction on the coordinator (GDD: IsValidGxid)"


def global_edges(index):
    """The edges of the global wait-for graph from the snapshot's ``gp_dist_wait_status()``.

    Treatment, as GDD's ``buildWaitGraph()``: an edge whose waiter or holder gxid is
    0 (a read-only autocommit statement, a utility-mode or local transaction) or not
    a live distributed transaction on the coordinator is dropped from the graph
    (it still counts for the blocking trees); when liveness was not collected
    (``index.live_gxids`` is None) such edges are kept unless their gxid is 0. An
    edge to a prepared transaction (``holder_lpid`` 0) is kept: that vertex never
    moves (no backend), rule 1 deletes it, so it is never part of a cycle.

    Returns ``(edges, dropped)``: a list of ``GraphEdge`` and a list of
    ``(reason, GraphEdge)``.
    """
    edges, dropped = [], []
    live = index.live_gxids
    for e in index.snapshot.edges:
        row = index.waiting_row(e.content, e.waiter_pid)
        relation, relation_name = index.relation_of_wait(row)
        edge = GraphEdge(e.content, e.waiter_gxid, e.holder_gxid, e.solid, e.waiter_locktype,
                         e.waiter_lockmode, e.waiter_pid, e.holder_pid, e.waiter_sessionid,
                         e.holder_sessionid, relation, relation_name)
        if not e.waiter_gxid or not e.holder_gxid:
            dropped.append((DROP_NOT_DISTRIBUTED, edge))
        elif live is not None and (e.waiter_gxid not in live or e.holder_gxid not in live):
            dropped.append((DROP_NOT_LIVE, edge))
        else:
            edges.append(edge)
    return edges, dropped
