# -*- coding: utf-8 -*-
# Copyright: gpops.greenplum contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Blocking trees: who waits for whom across the cluster, and who is at the root.

Pure functions, no I/O. A hang without a deadlock cycle is a tree: a root blocker
(often ``idle in transaction``, or a prepared transaction left by two-phase commit)
holds a lock; sessions wait for it directly, others wait for those.

Sessions are identified across nodes by their distributed session id
(``sess_id`` = ``mppsessionid``; segment pids are local to their node), prepared
transactions by their gxid, anything else by ``(content, pid)``.

Who blocks a waiting lock request, as ``pg_blocking_pids()`` sees it (PostgreSQL
``GetLockConflicts``/``pg_blocking_pids`` in ``lockfuncs.c``): the processes holding a
conflicting mode on the same lock, and the processes queued *ahead* of it whose
requested mode conflicts with it. The second kind has no edge in
``gp_dist_wait_status()`` (SELECTs queued behind a waiting ``LOCK ... ACCESS
EXCLUSIVE``; docs/greenplum-internals.md#wait-for-edges-gp_dist_wait_status). ``Backend.blocking_pids`` is used when it was
collected; otherwise it is inferred from the lock rows with PostgreSQL's conflict
table, the queue ordered by wait start (``waitstart`` where the server has it, else
the waiting backend's ``state_change``/``query_start``).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import collections

from ansible_collections.gpops.greenplum.plugins.module_utils.analyse.waitgraph import seconds_between

# PostgreSQL's LockConflicts[] (src/backend/storage/lmgr/lock.c): mode -> modes it conflicts with.
_MODES = ("AccessShareLock", "RowShareLock", "RowExclusiveLock", "ShareUpdateExclusiveLock",
          "ShareLock", "ShareRowExclusiveLock", "ExclusiveLock", "AccessExclusiveLock")
_CONFLICTS = {
    "AccessShareLock": {"AccessExclusiveLock"},
    "RowShareLock": {"ExclusiveLock", "AccessExclusiveLock"},
    "RowExclusiveLock": {"ShareLock", "ShareRowExclusiveLock", "ExclusiveLock", "AccessExclusiveLock"},
    "ShareUpdateExclusiveLock": set(_MODES[3:]),
    "ShareLock": {"RowExclusiveLock", "ShareUpdateExclusiveLock", "ShareRowExclusiveLock",
                  "ExclusiveLock", "AccessExclusiveLock"},
    "ShareRowExclusiveLock": set(_MODES[2:4]) | set(_MODES[4:]),
    "ExclusiveLock": set(_MODES[1:]),
    "AccessExclusiveLock": set(_MODES),
}

HOLDS = "holds"  # the blocker holds a conflicting lock
QUEUED = "queued_behind"  # the blocker waits ahead in the lock queue for a conflicting mode


def modes_conflict(wanted, other):
    """True when lock mode ``wanted`` conflicts with ``other`` (held or requested).
    An unknown mode (another lock method) is taken as conflicting: the caller
    only asks about rows on the very same lock."""
    conflicts = _CONFLICTS.get(wanted)
    return True if conflicts is None or other not in _CONFLICTS else other in conflicts


class BlockEdge:
    """``waiter`` (node key) waits on ``content`` for a lock that ``blocker`` holds or
    waits for ahead of it (``kind`` ``holds``/``queued_behind``)."""

    __slots__ = ("waiter", "blocker", "content", "kind", "locktype", "mode", "waiter_pid",
                 "blocker_pid", "relation", "relation_name", "since")

    def __init__(self, waiter, blocker, content, kind, locktype, mode, waiter_pid, blocker_pid,
                 relation, relation_name, since):
        self.waiter, self.blocker, self.content, self.kind = waiter, blocker, content, kind
        self.locktype, self.mode = locktype, mode
        self.waiter_pid, self.blocker_pid = waiter_pid, blocker_pid
        self.relation, self.relation_name, self.since = relation, relation_name, since


def node_key(index, content, pid, sess_id=None):
    """The identity of the process ``pid`` on ``content`` across the cluster: its
    distributed session when it has one, else the process itself."""
    backend = index.backend.get((content, pid))
    if backend is not None and backend.sess_id and backend.sess_id > 0:
        return ("session", backend.sess_id)
    if sess_id and sess_id > 0:
        return ("session", sess_id)
    return ("backend", content, pid)


def prepared_key(index, content, row=None, gxid=None):
    """The identity of a prepared transaction on ``content``: its gxid when the
    gid (``pg_prepared_xacts``), the wait edge or its session tells it, else the
    node's dummy virtual transaction of its lock rows."""
    if gxid is None and row is not None:
        own = {r.transactionid for r in index.prepared_rows.get((content, row.virtualtransaction), ())
               if r.locktype == "transactionid"}
        gxid = next((p.gxid for p in index.snapshot.prepared_xacts
                     if p.content == content and p.transaction in own and p.gxid), None)
        if gxid is None:
            gxid = index.session_gxid.get(row.mppsessionid)
    if gxid:
        return ("prepared", gxid)
    return ("prepared", content, row.virtualtransaction if row is not None else None)


def _reported_blockers(index, row, backend, tag_rows):
    """``[(kind, node key, pid)]`` from ``pg_blocking_pids()`` of the waiting backend."""
    holders = {r.pid for r in tag_rows if r.granted}
    out = []
    for pid in backend.blocking_pids:
        if pid == 0:  # pg_blocking_pids: a prepared transaction shows as pid 0
            out.extend((HOLDS, prepared_key(index, row.content, r), 0)
                       for r in tag_rows if r.granted and r.pid is None)
        else:
            out.append((HOLDS if pid in holders else QUEUED, node_key(index, row.content, pid), pid))
    return out


def _queue_blockers(index, tag_rows):
    """``{waiting row: [(kind, node key, pid)]}`` for every request waiting on one lock.

    Holders are grouped by mode and earlier waiters by requested mode, so a queue
    of thousands of waiters costs what its answer costs, not the square of its length.
    """
    holders = collections.defaultdict(list)  # mode -> [(row, key)]
    waiters = []
    for r in tag_rows:
        if r.granted:
            key = (prepared_key(index, r.content, r) if r.pid is None
                   else node_key(index, r.content, r.pid, r.mppsessionid))
            holders[r.mode].append((r, key))
        else:
            waiters.append((index.wait_started(r.content, r.pid, r), r.pid, r))
    # Requests whose wait start is unknown cannot be placed in the queue: holders only.
    ordered = sorted((w for w in waiters if w[0] is not None), key=lambda w: w[:2])
    ordered += [w for w in waiters if w[0] is None]
    earlier = collections.defaultdict(list)  # requested mode -> [(row, key)] queued so far
    result = {}
    for started, _pid, row in ordered:
        me = node_key(index, row.content, row.pid, row.mppsessionid)
        backend = index.backend.get((row.content, row.pid))
        if backend is not None and backend.blocking_pids is not None:
            out = _reported_blockers(index, row, backend, tag_rows)
        else:
            out = [(HOLDS, key, r.pid or 0) for mode, group in holders.items() if modes_conflict(row.mode, mode)
                   for r, key in group if r.pid != row.pid]
            if started is not None:
                out += [(QUEUED, key, r.pid) for mode, group in earlier.items() if modes_conflict(row.mode, mode)
                        for r, key in group]
        if started is not None:
            earlier[row.mode].append((row, me))
        result[row] = [b for b in out if b[1] != me]  # QEs of one session share their locks
    return result


def block_edges(index, wait_edges=()):
    """Every wait relation of the snapshot as ``BlockEdge``s, deduplicated per
    (waiter, blocker, content): from the waiting lock rows, plus the
    ``gp_dist_wait_status()`` edges (``waitgraph.GraphEdge``, including dropped
    ones) for waits the lock rows do not show."""
    seen, out = set(), []

    def add(edge):
        key = (edge.waiter, edge.blocker, edge.content)
        if key not in seen and edge.waiter != edge.blocker:
            seen.add(key)
            out.append(edge)

    for tag_rows in index.by_tag.values():
        for row, blockers in _queue_blockers(index, tag_rows).items():
            relation, name = index.relation_of_wait(row)
            since = index.wait_started(row.content, row.pid, row)
            waiter = node_key(index, row.content, row.pid, row.mppsessionid)
            for kind, blocker, pid in blockers:
                add(BlockEdge(waiter, blocker, row.content, kind, row.locktype, row.mode, row.pid, pid,
                              relation, name, since))
    for e in wait_edges:
        waiter = node_key(index, e.content, e.waiter_pid, e.waiter_sessionid)
        if e.holder_is_prepared:
            blocker = prepared_key(index, e.content, gxid=e.holder or None)
        else:
            blocker = node_key(index, e.content, e.holder_pid, e.holder_sessionid)
        add(BlockEdge(waiter, blocker, e.content, HOLDS, e.locktype, e.mode, e.waiter_pid,
                      e.holder_pid, e.relation, e.relation_name,
                      index.wait_started(e.content, e.waiter_pid)))
    return out


def node_info(index, key):
    """A JSON-friendly dict describing a node (session, prepared transaction, backend)."""
    if key[0] == "session":
        info = index.session_info(sess_id=key[1])
        info["kind"] = "session"
        state = info.get("state") or ""
        info["idle_in_transaction_since"] = (info["state_change"] if state.startswith("idle in transaction")
                                             else None)
        info["syncrep_contents"] = sorted({c for c, _pid in index.syncrep_sessions.get(key[1], ())})
        # Between PREPARE and COMMIT PREPARED (docs/greenplum-internals.md#prepared-transactions):
        # its gxid is prepared on segments; signalling its QD now forces a coordinator PANIC.
        info["prepared_on"] = sorted({p.content for p in index.prepared_by_gxid.get(info["gxid"], ())}) \
            if info["gxid"] else []
        return info
    if key[0] == "prepared":
        return _prepared_info(index, key)
    backend = index.backend.get((key[1], key[2]))
    info = {"kind": "backend", "content": key[1], "pid": key[2]}
    for name in ("sess_id", "usename", "application_name", "state", "backend_type", "query"):
        info[name] = getattr(backend, name) if backend else None
    return info


def _prepared_info(index, key):
    gxid = key[1] if len(key) == 2 else None
    rows = index.prepared_by_gxid.get(gxid, []) if gxid else []
    prepared_at = min((p.prepared for p in rows if p.prepared is not None), default=None)
    qd = index.coordinator_backend(gxid) if gxid else None
    info = {
        "kind": "prepared_xact", "gxid": gxid, "gid": rows[0].gid if rows else None,
        "contents": sorted({p.content for p in rows}) or ([key[1]] if len(key) == 3 else []),
        "transactions": {str(p.content): p.transaction for p in rows},
        "prepared_at": prepared_at.isoformat() if prepared_at else None,
        "age_s": seconds_between(index.taken_at, prepared_at),
        "owner": rows[0].owner if rows else None, "database": rows[0].database if rows else None,
        # A coordinator backend still on this gxid: the two-phase commit is in progress
        # (e.g. "Retry Commit Prepared"); none: in doubt, dtx recovery's business
        # (docs/greenplum-internals.md#prepared-transactions).
        "coordinator_pid": qd.pid if qd else None,
        "coordinator_state": qd.state if qd else None,
        "coordinator_query": qd.query if qd else None,
    }
    info["in_doubt"] = qd is None
    return info


def session_parts(info):
    """How a session is named in text: its QD pid, user and application."""
    parts = ["coordinator pid %s" % info["coordinator_pid"] if info["coordinator_pid"]
             else "no coordinator backend found"]
    if info.get("usename"):
        parts.append("user %s" % info["usename"])
    if info.get("application_name"):
        parts.append("application %s" % info["application_name"])
    return parts


def node_label(info):
    """Short human name of a node, from its info dict."""
    if info["kind"] == "session":
        return "session %s (%s)" % (info["sess_id"], ", ".join(session_parts(info)))
    if info["kind"] == "prepared_xact":
        where = ", ".join("content %s transaction %s" % (c, t) for c, t in sorted(info["transactions"].items()))
        return "prepared transaction gxid %s (%s)" % (info["gxid"], where or "content %s" % info["contents"])
    return "backend pid %s on content %s (no distributed session)" % (info["pid"], info["content"])


def blocking_trees(index, edges):
    """Blocking trees from ``BlockEdge``s: one per root blocker, i.e. a node that
    blocks somebody and waits for nothing itself. Nodes caught in a cycle have no
    root (see waitgraph for deadlocks).

    Returns a list (most waiters first) of dicts:
    ``root`` (node info dict + ``label``), ``direct_waiters`` (count),
    ``waiter_count`` (direct and transitive), ``longest_wait_s`` (seconds, from the
    waiter's wait start to ``snapshot.taken_at``; None if unknown), ``waiters``:
    ``[{node info..., label, depth, waits: [{content, locktype, mode, relation,
    relation_name, blocked_by (label), kind, waiting_s}], waits_outside_tree}]`` in
    breadth-first order, and ``explanation`` (text). A waiter's ``waits`` are those on
    the root or another waiter of this tree; ``waits_outside_tree`` counts the others
    (on the roots of other trees, or on a cycle), each listed in its own tree.
    """
    waits_for = collections.defaultdict(list)
    blocked = collections.defaultdict(list)
    for e in edges:
        waits_for[e.waiter].append(e)
        blocked[e.blocker].append(e)
    infos = {}

    def info(key):
        if key not in infos:
            infos[key] = node_info(index, key)
            infos[key]["label"] = node_label(infos[key])
        return infos[key]

    trees = []
    for root in [k for k in blocked if k not in waits_for]:
        depth = {root: 0}
        order = []
        queue = collections.deque([root])
        while queue:
            node = queue.popleft()
            for e in blocked.get(node, ()):
                if e.waiter not in depth:
                    depth[e.waiter] = depth[node] + 1
                    order.append(e.waiter)
                    queue.append(e.waiter)
        waiters, longest = [], None
        for key in order:
            entry = dict(info(key))
            entry["depth"] = depth[key]
            entry["waits"], entry["waits_outside_tree"] = [], 0
            for e in waits_for[key]:
                waited = seconds_between(index.taken_at, e.since)
                if waited is not None:
                    longest = waited if longest is None else max(longest, waited)
                if e.blocker not in depth:
                    # Its wait on another root's tree (or a cycle) is listed there: listed
                    # here too, a lock held by N sessions would cost N trees x N waits.
                    entry["waits_outside_tree"] += 1
                    continue
                entry["waits"].append({
                    "content": e.content, "locktype": e.locktype, "mode": e.mode,
                    "relation": e.relation, "relation_name": e.relation_name, "kind": e.kind,
                    "blocked_by": info(e.blocker)["label"], "waiting_s": waited})
            waiters.append(entry)
        tree = {"root": dict(info(root)), "waiter_count": len(order),
                "direct_waiters": sum(1 for k in order if depth[k] == 1),
                "longest_wait_s": longest, "waiters": waiters}
        tree["explanation"] = explain_tree(tree)
        trees.append(tree)
    trees.sort(key=lambda t: (-t["waiter_count"], t["root"]["label"]))
    return trees


def waiting_without_root(edges):
    """Node keys that wait but reach no root blocker: they wait on a cycle (a
    deadlock, or sessions waiting for each other) or behind one."""
    waits_for = collections.defaultdict(list)
    blocked = collections.defaultdict(list)
    for e in edges:
        waits_for[e.waiter].append(e.blocker)
        blocked[e.blocker].append(e.waiter)
    reached = set()
    queue = collections.deque(k for k in blocked if k not in waits_for)
    while queue:
        for waiter in blocked.get(queue.popleft(), ()):
            if waiter not in reached:
                reached.add(waiter)
                queue.append(waiter)
    return [k for k in waits_for if k not in reached]


def explain_tree(tree):
    """One paragraph about a blocking tree, generated from the tree itself."""
    root = tree["root"]
    direct = tree["direct_waiters"]
    behind = tree["waiter_count"] - direct
    text = "%s blocks %d session%s (%d directly%s)" % (
        root["label"], tree["waiter_count"], "" if tree["waiter_count"] == 1 else "s", direct,
        ", %d waiting behind those" % behind if behind else "")
    if tree["longest_wait_s"] is not None:
        text += "; the longest has waited %ss" % tree["longest_wait_s"]
    if root["kind"] == "prepared_xact":
        age = " for %ss" % root["age_s"] if root.get("age_s") is not None else ""
        text += ". It is a prepared transaction (two-phase commit)%s: it holds its locks with no backend" % age
        if root["in_doubt"]:
            text += ("; the coordinator has no backend on its gxid: it is in doubt, for dtx recovery or a "
                     "person to resolve")
        else:
            text += ("; its coordinator backend pid %s is still %s (%s): the commit is in progress, do not "
                     "kill it" % (root["coordinator_pid"], root["coordinator_state"], root["coordinator_query"]))
    elif root.get("idle_in_transaction_since"):
        text += ". It is %s since %s (%ss)" % (
            root["state"], root["idle_in_transaction_since"], root["state_age_s"])
    elif root.get("state"):
        text += ". It is %s" % root["state"]
    if root.get("syncrep_contents"):
        text += ("; it waits for synchronous replication (SyncRep) on content %s: release that wait (FTS, "
                 "the sync replication switch), do not kill it" % ", ".join(str(c) for c in root["syncrep_contents"]))
    return text + "."
