# -*- coding: utf-8 -*-
# Copyright: gpops.greenplum contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One cluster-wide snapshot of locks, wait-for edges, sessions and distributed
transactions, taken once, for the analysis layer.

Public API:

- ``take_snapshot(params, server=None, include=INCLUDE_ALL, timeout=None, scope='full',
  idle_before=None) -> records.ClusterSnapshot``. ``params``: the connection options
  (``connection.connection_argument_spec``); ``server``: a ``connection.ServerInfo``
  (detected when None); ``include``: any of ``locks``, ``edges``, ``activity``,
  ``dist_xacts``, ``prepared_xacts``, ``postmaster_start``; ``timeout``: seconds for the whole collection
  (default: the ``statement_timeout`` option); ``scope``: ``full`` (every row of
  ``pg_locks`` and the activity views) or ``waits`` (only the rows the analysis reads,
  filtered on the server, plus counts: see below and docs/collection.md);
  ``idle_age``: with ``waits``, seconds: the granted locks of the coordinator sessions
  idle in transaction for that long (less one second: triage rounds ages to 0.1 s) at
  ``taken_at`` are read too (triage's ``long_idle_in_transaction``); None: none. Raises ``GpConnectionError`` when the
  coordinator cannot be reached or read, ``NotGreenplumError`` for a non-Greenplum
  server. Any other node that does not answer is named in ``snapshot.unreachable``.
- ``select_wait_rows(lock_rows, sessions=()) -> list``: ``sql.WAIT_LOCKS`` in Python
  over full ``pg_locks`` row dicts: the reference the SQL is tested against.
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

With ``scope='waits'`` (what ``gp_hang_info`` uses), step 1 reads ``sql.WAIT_LOCKS``
(the waiting requests, every row on a lock somebody waits for, the rows of the waiting
processes, the prepared transactions' rows, the coordinator's ``distributed xid``
rows, the idle sessions' granted rows, and per-session / per-node counts) and
``sql.ACTIVITY_INVOLVED`` (the backends of those rows and of the wait edges, the
SyncRep waiters, the coordinator backends of the sessions involved); in utility mode
the same per node (``sql.LOCAL_ACTIVITY_INVOLVED`` on segments, the coordinator's
``pg_stat_activity`` whole). The snapshot then has ``scope`` ``waits``, the counts in
``lock_counts`` and ``session_lock_counts``. The cost of the client follows the waits,
not the number of locks (bench/results.md).

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


SCOPES = ("full", "waits")
# The extra columns of sql.WAIT_LOCKS (not pg_locks columns).
WAIT_COLUMNS = ("wanted", "on_waited_lock", "process_waits", "session_granted", "session_row",
                "node_rows", "node_waiting", "node_row")


def _locktag_of_row(row):
    """The lock a ``pg_locks`` row is on, as ``sql.LOCKTAG_COLUMNS`` (``transactionid`` as
    text, as the SQL compares it)."""
    return tuple(str(row.get(c)) if c == "transactionid" and row.get(c) is not None else row.get(c)
                 for c in sql.LOCKTAG_COLUMNS)


def select_wait_rows(lock_rows, sessions=()):
    """``sql.WAIT_LOCKS`` in Python, over full ``pg_locks`` row dicts of one node or of
    the whole cluster (each with ``gp_segment_id``): the same rows, with the same extra
    columns (``WAIT_COLUMNS``; ``session_row`` / ``node_row`` are 1 on the first row of
    each session / node in ``lock_rows`` order). ``sessions``: the session ids whose
    granted rows are wanted. Returns a list of new dicts, in ``lock_rows`` order. The
    reference implementation the tests compare the SQL and the analysis with; nothing
    in the product calls it on a live cluster."""
    lock_rows = list(lock_rows)
    sessions = set(sessions)
    waited_tags = {_locktag_of_row(r) for r in lock_rows if not r.get("granted")}
    waiting_procs = {(r.get("gp_segment_id"), r.get("pid")) for r in lock_rows if not r.get("granted")}
    session_granted, node_rows, node_waiting = {}, {}, {}
    for r in lock_rows:
        session, node = r.get("mppsessionid"), r.get("gp_segment_id")
        session_granted[session] = session_granted.get(session, 0) + (1 if r.get("granted") else 0)
        node_rows[node] = node_rows.get(node, 0) + 1
        node_waiting[node] = node_waiting.get(node, 0) + (0 if r.get("granted") else 1)
    out, seen_sessions, seen_nodes = [], set(), set()
    for r in lock_rows:
        session, node = r.get("mppsessionid"), r.get("gp_segment_id")
        on_waited = _locktag_of_row(r) in waited_tags
        process_waits = (node, r.get("pid")) in waiting_procs
        wanted = (on_waited or (process_waits and r.get("pid") is not None) or not r.get("pid")
                  or (node == COORDINATOR_CONTENT and r.get("locktype") == "distributed xid")
                  or bool(r.get("granted") and session in sessions))
        session_row = 0 if session in seen_sessions else 1
        node_row = 0 if node in seen_nodes else 1
        seen_sessions.add(session)
        seen_nodes.add(node)
        if wanted or session_row or node_row:
            out.append(dict(r, wanted=wanted, on_waited_lock=on_waited, process_waits=process_waits,
                            session_granted=session_granted[session], session_row=session_row,
                            node_rows=node_rows[node], node_waiting=node_waiting[node], node_row=node_row))
    return out


def _in_syncrep(row):
    return row.get("wait_event") == "SyncRep" or row.get("waiting_reason") == "replication"


def select_activity_rows(activity_rows, wait_rows, edges=(), dist_xacts=(), sessions=()):
    """``sql.ACTIVITY_INVOLVED`` in Python over full ``gp_stat_activity`` row dicts: the
    backends of the wanted ``wait_rows`` (``sql.WAIT_LOCKS`` rows) and of ``edges``
    (``gp_dist_wait_status()`` rows), the SyncRep waiters, and the coordinator's
    backends of the sessions involved (those, ``dist_xacts``' and ``sessions``) and of
    the sessions with a SyncRep waiter, every backend of a session whose coordinator
    backend waits on its QEs (``IPC``), and the checkpointers. The reference for the tests, like
    ``select_wait_rows``; returns the rows kept, in order."""
    activity_rows = list(activity_rows)
    pairs, involved = _involved(_wanted(wait_rows), edges)
    involved |= set(sessions) | {int(r["gp_session_id"]) for r in dist_xacts if r.get("gp_session_id")}
    syncrep_sessions = {r.get("sess_id") for r in activity_rows if _in_syncrep(r)}
    qe_wait_sessions = {r.get("sess_id") for r in activity_rows
                        if r.get("gp_segment_id") == COORDINATOR_CONTENT and r.get("state") == "active"
                        and r.get("wait_event_type") == "IPC" and (r.get("sess_id") or 0) > 0}
    return [r for r in activity_rows
            if (r.get("gp_segment_id"), r.get("pid")) in pairs or _in_syncrep(r)
            or r.get("backend_type") == "checkpointer" or r.get("sess_id") in qe_wait_sessions
            or (r.get("gp_segment_id") == COORDINATOR_CONTENT
                and (r.get("sess_id") in involved or r.get("sess_id") in syncrep_sessions))]


def wait_counts(wait_rows, content=None):
    """``({content: {rows, waiting}}, {session id: granted rows})`` from the count columns
    of ``sql.WAIT_LOCKS`` rows (``content`` overrides ``gp_segment_id``: utility-mode rows
    of one node). Rows of several nodes read one by one add up."""
    nodes, sessions = {}, {}
    for r in wait_rows:
        for n in r.get("node_counts") or ():  # sql.WAIT_LOCKS_SHARED: JSON on the first row
            node = content if content is not None else int(n["gp_segment_id"])
            nodes[node] = {"rows": int(n["node_rows"]), "waiting": int(n["node_waiting"])}
        for c in r.get("session_counts") or ():
            sessions[c["mppsessionid"]] = sessions.get(c["mppsessionid"], 0) + int(c["session_granted"])
        if r.get("node_row") == 1:
            node = content if content is not None else int(r["gp_segment_id"])
            nodes[node] = {"rows": int(r["node_rows"]), "waiting": int(r["node_waiting"])}
        if r.get("session_row") == 1:
            session = r.get("mppsessionid")
            sessions[session] = sessions.get(session, 0) + int(r["session_granted"])
    return nodes, sessions


def _wanted(rows):
    """The lock rows themselves among ``sql.WAIT_LOCKS`` rows (every row of a full read)."""
    return [r for r in rows if r.get("wanted", True)]


def fold_count_rows(rows):
    """``sql.NODE_WAIT_LOCKS`` / ``sql.PRIMARIES_WAIT_LOCKS`` rows in the shape of
    ``sql.WAIT_LOCKS_SHARED``'s: the wanted rows without the count columns, then one
    count-only row (``gp_segment_id`` and ``wanted`` NULL) with ``node_counts``
    ``[{gp_segment_id, node_rows, node_waiting}]`` and ``session_counts``
    ``[{mppsessionid, session_granted}]`` (what ``wait_counts`` reads)."""
    wanted, nodes, sessions = [], [], []
    for r in rows:
        if r["wanted"]:
            wanted.append({k: v for k, v in r.items() if k not in sql.COUNT_COLUMNS})
        elif r["by_session"]:
            sessions.append({"mppsessionid": r["count_session"], "session_granted": r["granted_rows"]})
        else:
            nodes.append({"gp_segment_id": r["count_segment"], "node_rows": r["lock_rows"],
                          "node_waiting": r["waiting_rows"]})
    return wanted + [{"gp_segment_id": None, "wanted": None, "node_counts": nodes, "session_counts": sessions}]


def primaries_wait_rows(conn, sessions=()):
    """The primaries' ``sql.WAIT_LOCKS`` rows on Greenplum 7, filtered on the primaries in
    one scan of each (``sql.PRIMARIES_WAIT_LOCKS`` under the Postgres planner), folded by
    ``fold_count_rows``. ``conn``: a dispatch-mode coordinator connection; ``sessions``:
    ids whose granted rows are wanted. Raises ``psycopg.Error``."""
    query(conn, sql.PLANNER_FOR_SESSION)
    return fold_count_rows(query(conn, sql.PRIMARIES_WAIT_LOCKS, {"sessions": sorted(sessions)}))


def coordinator_wait_rows(local, sessions=()):
    """The coordinator's own ``sql.WAIT_LOCKS`` rows on Greenplum 7 (``sql.NODE_WAIT_LOCKS``
    on ``local``, a utility-mode connection), folded by ``fold_count_rows``. Raises
    ``psycopg.Error``."""
    return fold_count_rows(query(local, sql.NODE_WAIT_LOCKS, {"sessions": sorted(sessions)}))


def splits_lock_read(server):
    """Whether ``take_snapshot(scope='waits')`` reads the coordinator's locks in utility
    mode and filters the primaries' on the primaries (``primaries_wait_rows``): Greenplum 7,
    where the coordinator's ``pg_locks`` gathers every primary's rows as text
    (``pg_lock_status``, lockfuncs.c), so one statement there costs at least that
    gather. Greenplum 6, Cloudberry and the sandbox keep one statement."""
    return server is not None and server.flavor == "greenplum" and server.major >= 7


def read_wait_locks(conn, server, sessions, coordinator_rows=None, deadline=None):
    """The ``locks`` rows of ``scope='waits'``: with ``splits_lock_read(server)`` and a
    ``coordinator_rows(sessions)`` function (the coordinator's own rows in utility mode,
    ``coordinator_wait_rows``, run in a thread meanwhile), those rows plus
    ``primaries_wait_rows``; if either part fails, one ``wait_locks_statement`` on ``conn``
    instead (the same rows, at the cost of the coordinator's gather). ``deadline``:
    ``time.monotonic()`` value bounding the wait for the coordinator's part."""
    sessions = sorted(sessions)
    if coordinator_rows is None or not splits_lock_read(server):
        return query(conn, wait_locks_statement(server), {"sessions": sessions})
    import threading
    box = {}

    def coordinator():
        try:
            box["rows"] = coordinator_rows(sessions)
        except Exception as exc:  # noqa: BLE001 - any failure: the single statement instead
            box["error"] = exc
    thread = threading.Thread(target=coordinator, name="gpops-coordinator-locks", daemon=True)
    thread.start()
    try:
        segments = primaries_wait_rows(conn, sessions)
    except Exception:  # noqa: BLE001 - same fallback; a dead connection fails there too
        segments = None
    thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
    if segments is None or "rows" not in box:
        return query(conn, wait_locks_statement(server), {"sessions": sessions})
    return box["rows"] + segments


def wait_locks_statement(server):
    """``sql.WAIT_LOCKS_SHARED`` (hash joins over one shared scan) where the server is
    PostgreSQL 12 based, ``sql.WAIT_LOCKS`` (window sorts) on Greenplum 6."""
    if server is not None and server.flavor == "greenplum" and server.major <= 6:
        return sql.WAIT_LOCKS
    return sql.WAIT_LOCKS_SHARED


def _involved(lock_rows, edges, content=None):
    """``(pairs, sessions)``: the ``(content, pid)`` of the processes of ``lock_rows`` and of
    the wait-for edges ``edges`` (rows of ``gp_dist_wait_status()``), and their session ids."""
    pairs, sessions = set(), set()
    for r in lock_rows:
        node = content if content is not None else int(r["gp_segment_id"])
        if r.get("pid"):
            pairs.add((node, int(r["pid"])))
        if r.get("mppsessionid"):
            sessions.add(int(r["mppsessionid"]))
    for e in edges:
        node = content if content is not None else int(e["segid"])
        for pid, session in ((e.get("waiter_lpid"), e.get("waiter_sessionid", e.get("waiter_sessiondid"))),
                             (e.get("holder_lpid"), e.get("holder_sessionid"))):
            if pid:
                pairs.add((node, int(pid)))
            if session:
                sessions.add(int(session))
    return pairs, sessions


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


def _collect_node(params, server, node, wants, dispatched, statement_timeout, scope="full",
                  sessions=()):
    """Everything needed from one node, over one utility-mode connection.

    ``wants``: the ``sql.LOCAL_SNAPSHOT`` items to read here; ``dispatched``: this node's
    rows of the dispatched query by item (``locks``, ``edges``), for the
    ``pg_blocking_pids`` lookup and, with ``scope`` ``waits``, the backends to read.
    ``sessions``: with ``waits``, the sessions whose granted locks are wanted. Returns
    the node's row dict (see ``snapshot_from_rows``).
    """
    # The coordinator is reached the way the user reached it; segments by catalog address.
    is_coordinator = node.content == COORDINATOR_CONTENT
    host, port = (None, None) if is_coordinator else (node.address, node.port)
    out = {}
    with connect(params, host=host, port=port, utility=True, server=server,
                 statement_timeout=statement_timeout) as conn:
        for item in wants:
            if scope == "waits" and item == "locks":
                out[item] = query(conn, wait_locks_statement(server), {"sessions": sorted(sessions)})
            elif scope == "waits" and item == "activity" and not is_coordinator:
                pairs, _s = _involved(_wanted(out.get("locks", dispatched.get("locks", []))),
                                      out.get("edges", dispatched.get("edges", [])), node.content)
                out[item] = query(conn, sql.LOCAL_ACTIVITY_INVOLVED,
                                  {"pids": sorted(p for c, p in pairs if c == node.content)})
            else:
                out[item] = query(conn, sql.LOCAL_SNAPSHOT[item])
        waiting = _waiting_pids(out.get("locks", dispatched.get("locks") or []))
        if waiting:
            out["blocking_pids"] = {int(r["pid"]): r["blocking_pids"] or []
                                    for r in query(conn, sql.BLOCKING_PIDS, (waiting,))}
    return out


def _read_last(items):
    """``items`` in reading order: those of ``READ_LAST`` after the others."""
    return [i for i in items if i not in READ_LAST] + [i for i in items if i in READ_LAST]


def _dispatch(conn, items, scope="full", idle_before=None, progress=None, server=None,
              coordinator_rows=None, deadline=None):
    """The dispatched statements on the coordinator, by item; with ``scope`` ``waits``
    the idle sessions first (kept in ``progress`` for the utility fallback), then
    ``sql.WAIT_LOCKS``, the edges and distributed transactions, and the backends they
    involve (``sql.ACTIVITY_INVOLVED``)."""
    out = {} if progress is None else progress
    try:
        if scope != "waits":
            out.update({item: query(conn, sql.DISPATCHED_SNAPSHOT[item]) for item in _read_last(items)})
            return out
        _dispatch_waits(conn, items, idle_before, out, server, coordinator_rows, deadline)
        return out
    finally:
        conn.close()  # also after a cancel (take_snapshot's deadline passed)


def _dispatch_waits(conn, items, idle_before, out, server, coordinator_rows=None, deadline=None):
    """``_dispatch`` of scope ``waits``: the edges before ``gp_distributed_xacts`` (GDD's
    order, docs/wait-for-graph.md#liveness), the backends involved last."""
    sessions = set()
    if idle_before is not None:
        rows = query(conn, sql.IDLE_IN_TRANSACTION_SESSIONS, {"before": idle_before})
        sessions = {int(r["sess_id"]) for r in rows}
    out["idle_sessions"] = sessions
    for item in ("locks", "edges", "dist_xacts", "activity"):
        if item not in items:
            continue
        if item == "locks":
            out[item] = read_wait_locks(conn, server, sessions, coordinator_rows, deadline)
        elif item == "activity":
            pairs, involved = _involved(_wanted(out.get("locks", [])), out.get("edges", []))
            involved |= sessions | {int(r["gp_session_id"]) for r in out.get("dist_xacts", [])
                                    if r.get("gp_session_id")}
            pairs = sorted(pairs)
            out[item] = query(conn, sql.ACTIVITY_INVOLVED, {
                "contents": [c for c, _p in pairs], "pids": [p for _c, p in pairs],
                "sessions": sorted(involved)})
        else:
            out[item] = query(conn, sql.DISPATCHED_SNAPSHOT[item])


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


def take_snapshot(params, server=None, include=INCLUDE_ALL, timeout=None, scope="full",
                  idle_age=None):
    """Collect one ``ClusterSnapshot`` (see the module docstring for how). Bounded by
    ``timeout`` seconds in all: a node that does not answer in time is abandoned and
    named in ``unreachable``; the coordinator not answering raises
    ``GpConnectionError``. Raises ValueError for a ``scope`` not in ``SCOPES``."""
    if scope not in SCOPES:
        raise ValueError("scope must be one of %s, got %r" % (", ".join(SCOPES), scope))
    timeout = float(timeout or params.get("statement_timeout") or 30.0)
    deadline = time.monotonic() + timeout
    taken_at = _utc_now()
    idle_before = None
    if idle_age is not None:
        idle_before = taken_at - datetime.timedelta(seconds=max(0.0, float(idle_age) - 1.0))
    conn, server, segments = catalog.open_coordinator(params, server, timeout)
    dispatched_items = plan_items(server, include)[0]
    remaining = deadline - time.monotonic()
    progress = {}
    dispatch_deadline = time.monotonic() + remaining / 2

    def coordinator_rows(sessions):
        with connect(params, utility=True, server=server,
                     statement_timeout=max(1.0, dispatch_deadline - time.monotonic())) as local:
            return coordinator_wait_rows(local, sessions)
    ok, dispatched = run_with_deadline(
        lambda: _dispatch(conn, dispatched_items, scope, idle_before, progress, server,
                          coordinator_rows, dispatch_deadline), remaining / 2, abandon=[conn])
    if not ok:
        dispatched = None  # fall back to utility mode on every node
    sessions = set(progress.get("idle_sessions") or ())
    if dispatched is not None:
        dispatched.pop("idle_sessions", None)
    local_items = plan_items(server, include, dispatched_ok=dispatched is not None)[1]
    last = [i for i in local_items[True] if i in READ_LAST]
    local_items = {k: [i for i in items if i not in READ_LAST] for k, items in local_items.items()}

    nodes = [n for n in (catalog.coordinator(segments),) if n] + catalog.primaries(segments)
    dispatched_by_node = {}
    for item, key in (("locks", "gp_segment_id"), ("edges", "segid")):
        for row in (dispatched or {}).get(item, []):
            if row[key] is not None:  # sql.WAIT_LOCKS_SHARED's count-only row has no node
                dispatched_by_node.setdefault(int(row[key]), {}).setdefault(item, []).append(row)

    def collect(node):
        return _collect_node(params, server, node, local_items[node.content == COORDINATOR_CONTENT],
                             dispatched_by_node.get(node.content, {}),
                             max(1.0, deadline - time.monotonic()), scope, sessions)

    nodes_rows, unreachable = {}, {}
    if local_items[True] or any("locks" in d for d in dispatched_by_node.values()):
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
    keys = _relation_keys(_wanted((dispatched or {}).get("locks", []) + [
        r for n in nodes_rows.values() for r in n.get("locks", [])]))
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


def write_evidence(params, server, path, timeout=None):
    """Stream every row of the dispatched snapshot statements (``sql.DISPATCHED_SNAPSHOT``:
    ``pg_locks``, ``gp_dist_wait_status()``, ``gp_stat_activity`` where it exists,
    ``gp_distributed_xacts``) from the coordinator into ``path``, one JSON object a line
    (``{"item": ..., "row": {...}}``), without holding them: the full raw evidence of
    ``evidence: full``, read after (not at the same moment as) the analysed rows.
    Written to a temporary file in the same directory, then renamed. ``timeout``:
    seconds per statement. Returns ``{item: rows written}``. Raises
    ``GpConnectionError`` or ``OSError``; the partial file is removed."""
    import json
    import os
    import tempfile

    from psycopg.rows import dict_row

    counts = {}
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".gp-evidence-")
    try:
        with os.fdopen(fd, "w") as out, connect(params, server=server, statement_timeout=timeout) as conn:
            for item, statement in sql.DISPATCHED_SNAPSHOT.items():
                if item == "activity" and not server.has_gp_stat_activity:
                    continue
                counts[item] = 0
                with conn.cursor(row_factory=dict_row) as cur:
                    for row in cur.stream(statement):
                        out.write(json.dumps({"item": item, "row": row}, default=str, sort_keys=True) + "\n")
                        counts[item] += 1
        os.chmod(tmp, 0o640)
        os.rename(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return counts


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
    lock_rows = rows("locks")
    scope = "waits" if any("wanted" in row for _c, row in lock_rows[:1]) else "full"
    lock_counts, session_counts = None, None
    if scope == "waits":
        lock_counts, session_counts = {}, {}
        for content in sorted({c for c, _r in lock_rows}, key=lambda c: -2 if c is None else c):
            nodes_, sessions_ = wait_counts([r for c, r in lock_rows if c == content], content)
            lock_counts.update(nodes_)
            for session, count in sessions_.items():
                session_counts[session] = session_counts.get(session, 0) + count
        lock_rows = [(c, r) for c, r in lock_rows if r["wanted"]]  # NULL: the count-only row
    for content, row in lock_rows:
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
        scope=scope,
        lock_counts=lock_counts,
        session_lock_counts=session_counts,
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
