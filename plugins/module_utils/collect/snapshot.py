# -*- coding: utf-8 -*-
# Copyright: gpops.greenplum contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One cluster-wide snapshot of locks, wait-for edges, sessions and distributed
transactions, taken once, for the analysis layer.

Public API:

- ``take_snapshot(params, server=None, include=INCLUDE_ALL, timeout=None)
  -> records.ClusterSnapshot``. ``params``: the connection options
  (``connection.connection_argument_spec``); ``server``: a ``connection.ServerInfo``
  (detected when None); ``include``: any of ``locks``, ``edges``, ``activity``,
  ``dist_xacts``, ``prepared_xacts``, ``postmaster_start``; ``timeout``: seconds for the whole collection
  (default: the ``statement_timeout`` option). Raises ``GpConnectionError`` when the
  coordinator cannot be reached or read, ``NotGreenplumError`` for a non-Greenplum
  server. Any other node that does not answer is named in ``snapshot.unreachable``.
- ``snapshot_from_rows(segments, dispatched=None, nodes=None, relations=None,
  unreachable=None, server=None, taken_at=None) -> ClusterSnapshot``: the same building code over
  catalog rows (a live collection or a captured fixture).
- ``filter_records(snapshot, waiting_only=False, relation=None, session=None,
  content=None) -> dict``: the ``locks``, ``edges`` and ``backends`` a user asked for.

How it collects (docs/greenplum-internals.md#locks-and-sessions,
#wait-for-edges-gp_dist_wait_status, #utility-mode):

1. On the coordinator, in dispatch mode: ``pg_locks``, ``gp_dist_wait_status()``,
   ``gp_stat_activity`` (Greenplum 7 / Cloudberry) and ``gp_distributed_xacts``;
   the first three already include every primary's rows. Greenplum fails these when
   a primary does not answer, and a hung primary makes them wait: they get half of
   the time budget, enforced on the client side.
2. When dispatch failed or timed out (its statement is then cancelled): the same facts
   from every node (coordinator and primaries) in utility mode, ``max_workers`` nodes at
   a time (``run_on_nodes``, which cancels the statements of nodes still running at the
   deadline), each node bounded by the remaining budget; ``source`` becomes ``utility``.
   ``gp_distributed_xacts`` (the live distributed transactions) is read last, after
   every node's ``gp_dist_wait_status()``, as Greenplum's detector does
   (``gp_dist_wait_status()`` then ``ListAllGxid()`` in
   https://github.com/greenplum-db/gpdb/blob/main/src/backend/utils/gdd/gddbackend.c;
   ``src/backend/utils/gdd/README.md``, "Impact of The Async Edge Collection"): a gxid
   that ended after its edges were read is then missing from the list and its edges are
   dropped, never kept alive (docs/wait-for-graph.md#liveness). In utility mode it is a
   separate read on the coordinator once every node's edges are in.
3. In both cases, per node in utility mode and in parallel: ``pg_blocking_pids(pid)``
   for its waiting backends (lock-queue waiters have no ``gp_dist_wait_status()``
   edge), its ``pg_prepared_xacts`` and its ``pg_postmaster_start_time()`` (only
   utility mode gives a node's own: a QE reports its QD's); on Greenplum 6 also its
   ``pg_stat_activity`` (no ``gp_stat_activity`` there).
4. Relation names (``schema.name``) of every OID locked anywhere, from the
   coordinator's catalog: Greenplum gives a table one OID on every node (the GP7
   captures show the coordinator's OID in segment rows; so does the sandbox, whose
   nodes have separate catalogs).

Only read-only statements run (all in ``sql.py``, catalog objects schema-qualified,
so the login role's ``search_path`` cannot substitute its own objects), and each
connection has ``lock_timeout`` set.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import time

from ansible_collections.gpops.greenplum.plugins.module_utils.collect import topology as catalog
from ansible_collections.gpops.greenplum.plugins.module_utils.collect import sql
from ansible_collections.gpops.greenplum.plugins.module_utils.collect.connection import (
    connect, max_workers_of, query, run_on_nodes, run_with_deadline)
from ansible_collections.gpops.greenplum.plugins.module_utils.common.records import (
    COORDINATOR_CONTENT, Backend, ClusterSnapshot, DistributedXact, LockRecord, PreparedXact,
    SegmentConfig, WaitEdge, parse_timestamp as _parse_ts)

INCLUDE_ALL = ("locks", "edges", "activity", "dist_xacts", "prepared_xacts", "postmaster_start")

# Coordinator-only facts (distributed transactions are the QD's).
COORDINATOR_ONLY = ("dist_xacts",)

# Read after every other item (liveness after the edges, as GDD does).
READ_LAST = ("dist_xacts",)


def _utc_now():
    return datetime.datetime.now(datetime.timezone.utc)


def _waiting_pids(lock_rows):
    return sorted({int(r["pid"]) for r in lock_rows if r.get("pid") and not r.get("granted")})


def _relation_keys(lock_rows):
    """``{database oid: {relation oid}}`` for the relation locks among ``lock_rows``."""
    keys = {}
    for r in lock_rows:
        if r.get("relation") is not None:
            keys.setdefault(int(r.get("database") or 0), set()).add(int(r["relation"]))
    return keys


def _lookup_relations(params, server, keys, statement_timeout):
    """``{(database oid, relation oid): 'schema.name'}`` from the coordinator's catalog.

    Greenplum gives a table the same OID on the coordinator and every segment (it
    dispatches the OIDs it assigns; the GP7 captures show one OID on every node), and
    segment rows of the sandbox name tables by the coordinator's OID too, so the
    coordinator's catalog names them all. Relation OIDs are per database: a lock in
    another database is looked up there (one more connection). A relation the
    coordinator does not know (e.g. made on one segment in utility mode) keeps only
    its OID.
    """
    names = {}
    with connect(params, server=server, statement_timeout=statement_timeout) as conn:
        databases = query(conn, sql.DATABASES)
        current = next(int(d["oid"]) for d in databases if d["current"])
        datnames = {int(d["oid"]): d["datname"] for d in databases}
        for database, oids in sorted(keys.items()):
            if database in (0, current):  # 0: shared catalogs, visible from any database
                rows = query(conn, sql.RELATION_NAMES, (sorted(oids),))
            elif database in datnames:
                with connect(params, dbname=datnames[database], server=server,
                             statement_timeout=statement_timeout) as other:
                    rows = query(other, sql.RELATION_NAMES, (sorted(oids),))
            else:
                continue
            names.update({(database, int(r["oid"])): "%s.%s" % (r["nspname"], r["relname"])
                          for r in rows})
    return names


def _collect_node(params, server, node, wants, dispatched_locks, statement_timeout):
    """Everything needed from one node, over one utility-mode connection.

    ``wants``: the ``sql.LOCAL_SNAPSHOT`` items to read here; ``dispatched_locks``: this node's
    ``pg_locks`` rows from the dispatched query (when ``locks`` is not read here), for
    the ``pg_blocking_pids`` lookup. Returns the node's row dict (see
    ``snapshot_from_rows``).
    """
    # The coordinator is reached the way the user reached it; segments by catalog address.
    host, port = (None, None) if node.content == COORDINATOR_CONTENT else (node.address, node.port)
    out = {}
    with connect(params, host=host, port=port, utility=True, server=server,
                 statement_timeout=statement_timeout) as conn:
        for item in wants:
            out[item] = query(conn, sql.LOCAL_SNAPSHOT[item])
        waiting = _waiting_pids(out.get("locks", dispatched_locks or []))
        if waiting:
            out["blocking_pids"] = {int(r["pid"]): r["blocking_pids"] or []
                                    for r in query(conn, sql.BLOCKING_PIDS, (waiting,))}
    return out


def _read_last(items):
    """``items`` in reading order: those of ``READ_LAST`` after the others."""
    return [i for i in items if i not in READ_LAST] + [i for i in items if i in READ_LAST]


def _dispatch(conn, items):
    try:
        return {item: query(conn, sql.DISPATCHED_SNAPSHOT[item]) for item in _read_last(items)}
    finally:
        conn.close()  # also after a cancel (take_snapshot's deadline passed)


def _read_coordinator_last(params, server, items, statement_timeout):
    """``items`` (``READ_LAST``) read on the coordinator in utility mode, once every
    node's edges are in: ``{item: rows}``."""
    with connect(params, utility=True, server=server, statement_timeout=statement_timeout) as conn:
        return {item: query(conn, sql.LOCAL_SNAPSHOT[item]) for item in items}


def plan_items(server, include, dispatched_ok=True):
    """Which items are read where: ``(dispatched, {is_coordinator: local items})``.

    Dispatched on the coordinator: the ``include`` items of ``sql.DISPATCHED_SNAPSHOT``, but not
    ``activity`` on Greenplum 6 (no ``gp_stat_activity``: every node's own
    ``pg_stat_activity`` instead). Per node in utility mode: what dispatch did not
    give (everything when it failed, ``prepared_xacts`` always), ``dist_xacts`` only on
    the coordinator.
    """
    dispatched = [i for i in sql.DISPATCHED_SNAPSHOT if i in include
                  and (i != "activity" or server.has_gp_stat_activity)]
    local = [i for i in sql.LOCAL_SNAPSHOT if i in include and not (dispatched_ok and i in dispatched)]
    return dispatched, {True: local, False: [i for i in local if i not in COORDINATOR_ONLY]}


def take_snapshot(params, server=None, include=INCLUDE_ALL, timeout=None):
    """Collect one ``ClusterSnapshot`` (see the module docstring for how). Bounded by
    ``timeout`` seconds in all: a node that does not answer in time is abandoned and
    named in ``unreachable``; the coordinator not answering raises
    ``GpConnectionError``."""
    timeout = float(timeout or params.get("statement_timeout") or 30.0)
    deadline = time.monotonic() + timeout
    taken_at = _utc_now()
    conn, server, segments = catalog.open_coordinator(params, server, timeout)
    dispatched_items = plan_items(server, include)[0]
    remaining = deadline - time.monotonic()
    ok, dispatched = run_with_deadline(lambda: _dispatch(conn, dispatched_items), remaining / 2,
                                       abandon=[conn])
    if not ok:
        dispatched = None  # fall back to utility mode on every node
    local_items = plan_items(server, include, dispatched_ok=dispatched is not None)[1]
    last = [i for i in local_items[True] if i in READ_LAST]
    local_items = {k: [i for i in items if i not in READ_LAST] for k, items in local_items.items()}

    nodes = [n for n in (catalog.coordinator(segments),) if n] + catalog.primaries(segments)
    dispatched_locks = {}
    for row in (dispatched or {}).get("locks", []):
        dispatched_locks.setdefault(int(row["gp_segment_id"]), []).append(row)

    def collect(node):
        return _collect_node(params, server, node, local_items[node.content == COORDINATOR_CONTENT],
                             dispatched_locks.get(node.content), max(1.0, deadline - time.monotonic()))

    nodes_rows, unreachable = {}, {}
    if local_items[True] or dispatched_locks:
        nodes_rows, unreachable = run_on_nodes(nodes, collect, max(0.0, deadline - time.monotonic()),
                                               max_workers_of(params))
        if dispatched is not None:
            unreachable = {c: "utility-mode lookups (pg_blocking_pids, prepared transactions)"
                              " failed: %s" % r for c, r in unreachable.items()}
    unknown = {}
    for content, why in unreachable.items():
        for item in local_items[content == COORDINATOR_CONTENT]:
            unknown.setdefault(item, {})[content] = why
    if last:  # after every node's edges (see the module docstring)
        ok, rows = run_with_deadline(lambda: _read_coordinator_last(
            params, server, last, max(1.0, deadline - time.monotonic())),
            max(0.0, deadline - time.monotonic()))
        if ok:
            nodes_rows.setdefault(COORDINATOR_CONTENT, {}).update(rows)
        else:
            for item in last:
                unknown.setdefault(item, {})[COORDINATOR_CONTENT] = rows
    keys = _relation_keys((dispatched or {}).get("locks", []) + [
        r for n in nodes_rows.values() for r in n.get("locks", [])])
    relations = {}
    if keys:  # names are a courtesy: without them the records keep the OIDs
        ok, found = run_with_deadline(lambda: _lookup_relations(
            params, server, keys, max(1.0, deadline - time.monotonic())),
            max(0.0, deadline - time.monotonic()))
        relations = found if ok else {}
    return snapshot_from_rows(segments, dispatched=dispatched, nodes=nodes_rows,
                              relations=relations, unreachable=unreachable,
                              server=server.as_dict(), taken_at=taken_at,
                              read=list(include), unknown=unknown)


def snapshot_from_rows(segments, dispatched=None, nodes=None, relations=None, unreachable=None,
                       server=None, taken_at=None, read=None, unknown=None):
    """Build a ``ClusterSnapshot`` from catalog rows (dicts keyed by column name).

    ``segments``: ``gp_segment_configuration`` rows or ``SegmentConfig`` records.
    ``dispatched``: rows of the coordinator's dispatched queries by item (``locks``,
    ``edges``, ``activity``, ``dist_xacts``; each row carries its ``gp_segment_id`` /
    ``segid``), or None when dispatch failed (``source`` is then ``utility``).
    ``nodes``: ``{content: {item: rows}}`` read on that node in utility mode (``locks``,
    ``edges``, ``activity``, ``dist_xacts``, ``prepared_xacts``, ``postmaster_start``), plus ``blocking_pids``
    ``{pid: [pid, ...]}`` of that node. Dispatched rows win over node rows for the same
    item. ``relations``: ``{(database oid, relation oid): 'schema.name'}`` (the
    coordinator's catalog: one OID per table on every node).
    ``unreachable``: ``{content: reason}``; ``server``: ``ServerInfo.as_dict()``;
    ``taken_at``: a datetime (default now, UTC). ``read``: the items asked for (None:
    not said); ``unknown``: ``{item: {content: why}}`` of the rows that could not be
    read (``records.ClusterSnapshot``).
    """
    source = "utility" if dispatched is None else "dispatch"
    dispatched = dispatched or {}
    nodes = nodes or {}

    def rows(item):
        """``(content or None, row)`` pairs: dispatched rows, else every node's rows."""
        if item in dispatched:
            return [(None, r) for r in dispatched[item]]
        return [(c, r) for c, n in sorted(nodes.items()) for r in n.get(item, [])]

    relations = relations or {}
    locks = []
    for content, row in rows("locks"):
        name = None
        if relations and row.get("relation") is not None:
            name = relations.get((int(row.get("database") or 0), int(row["relation"])))
        locks.append(LockRecord.from_row(row, content=content, relation_name=name))
    backends = []
    for content, row in rows("activity"):
        backend = Backend.from_row(row, content=content)
        blocking = nodes.get(backend.content, {}).get("blocking_pids", {}).get(backend.pid)
        if blocking is not None:
            backend = Backend.from_row(dict(row, blocking_pids=blocking), content=content)
        backends.append(backend)
    return ClusterSnapshot(
        taken_at=taken_at or _utc_now(),
        segments=[SegmentConfig.from_row(s) if isinstance(s, dict) else s for s in segments],
        locks=locks,
        edges=[WaitEdge.from_row(r) for _c, r in rows("edges")],
        backends=backends,
        dist_xacts=[DistributedXact.from_row(r) for _c, r in rows("dist_xacts")],
        prepared_xacts=[PreparedXact.from_row(r, content=c) for c, r in rows("prepared_xacts")],
        postmaster_starts={c: _parse_ts(r.get("postmaster_start")) for c, r in rows("postmaster_start")
                           if c is not None and r.get("postmaster_start") is not None},
        unreachable=dict(unreachable or {}),
        source=source,
        server=dict(server or {}),
        read=None if read is None else list(read),
        unknown={item: dict(nodes_) for item, nodes_ in (unknown or {}).items()},
    )


def _relation_matches(name, wanted):
    """``wanted`` is ``schema.name`` (exact) or a bare name (any schema)."""
    if name is None:
        return False
    return name == wanted if "." in wanted else name.split(".", 1)[-1] == wanted


def filter_records(snapshot, waiting_only=False, relation=None, session=None, content=None):
    """The locks, edges and backends of ``snapshot`` that match every given filter.

    ``waiting_only``: locks not granted, and the edges and backends of their
    sessions (the backends holding those lock requests, and the sessions' other
    backends, e.g. the coordinator's QD); ``relation``: ``schema.name`` or a bare
    name: locks on it, and the edges and backends of the sessions holding or waiting
    for those locks;
    ``session``: a distributed session id (``sess_id`` / ``mppsessionid``);
    ``content``: a list of content ids. Returns ``{locks, edges, backends}`` as
    lists of records.
    """
    contents = None if content is None else set(content)

    def keep_lock(lock):
        return ((not waiting_only or not lock.granted)
                and (relation is None or _relation_matches(lock.relation_name, relation))
                and (session is None or lock.mppsessionid == session)
                and (contents is None or lock.content in contents))

    locks = [lock for lock in snapshot.locks if keep_lock(lock)]
    narrowed = waiting_only or relation is not None
    sessions = {lock.mppsessionid for lock in locks}
    pids = {(lock.content, lock.pid) for lock in locks}
    if session is not None:
        sessions = {session} if not narrowed else sessions & {session}

    def keep_edge(edge):
        in_sessions = not (narrowed or session is not None) or bool(
            {edge.waiter_sessionid, edge.holder_sessionid} & sessions)
        return in_sessions and (contents is None or edge.content in contents)

    def keep_backend(backend):
        if contents is not None and backend.content not in contents:
            return False
        if narrowed:  # sess_id <= 0: utility-mode and background processes, no session
            return (backend.content, backend.pid) in pids or (
                (backend.sess_id or 0) > 0 and backend.sess_id in sessions)
        return session is None or backend.sess_id == session

    return dict(locks=locks, edges=[e for e in snapshot.edges if keep_edge(e)],
                backends=[b for b in snapshot.backends if keep_backend(b)])
