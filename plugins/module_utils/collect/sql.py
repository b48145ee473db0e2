# -*- coding: utf-8 -*-
# Copyright: gpops.greenplum contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every SQL statement the collection runs, in one place.

Rules kept here (checked by ``tests/unit/test_sql_catalog_names.py``):

- Every catalog object is named with its schema (``pg_catalog.pg_locks``,
  ``pg_catalog.pg_cancel_backend(...)``, ``gp_toolkit.gp_locks_on_resqueue``): the
  collection runs as a superuser and signals backends, so nothing may resolve
  through the login role's ``search_path`` (a role could put its own ``pg_locks``
  or ``pg_cancel_backend`` first).
- Values are always bound (``%s`` / ``%(name)s`` placeholders, or
  ``psycopg.sql.Literal`` where the server takes no parameter, as in ``ROLLBACK
  PREPARED``); identifiers go through ``psycopg.sql.Identifier``.
- Nothing here runs a statement: the callers (``snapshot``, ``catalog``,
  ``connection``, ``fts``, ``replication``, ``prepared``, ``nodelock``,
  ``actions``, ``diagnosis``, modules) execute them.

Each constant is a ``str`` (or a ``dict`` of them); each builder returns a ``str``
or a ``psycopg.sql.Composed`` as its docstring says. Facts about the Greenplum
objects read are in ``docs/greenplum-internals.md``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

try:
    from psycopg import sql as pgsql
except ImportError:  # pragma: no cover - connection.py reports the missing library
    pgsql = None

# --- server and topology --------------------------------------------------------

SERVER_VERSION = (
    "SELECT pg_catalog.version(), pg_catalog.current_setting('gp_server_version', true),"
    " pg_catalog.current_setting('gp_server_version_num', true)")
"""One row ``(version text, gp_server_version text or NULL, gp_server_version_num
text or NULL)``: ``version()`` and Greenplum's version GUCs (NULL, not an error, on a
server without them). Read by ``connection.server_info``."""

SEGMENT_CONFIGURATION = (
    "SELECT dbid, content, role, preferred_role, mode, status, port, hostname, address, datadir"
    " FROM pg_catalog.gp_segment_configuration ORDER BY content, dbid")
"""Rows of the coordinator's catalog table ``pg_catalog.gp_segment_configuration``
(every member: coordinator, standby, primaries, mirrors), by content then dbid
(docs/greenplum-internals.md#segment-configuration-and-fts)."""

SETTINGS_BY_NAME = "SELECT name, setting FROM pg_catalog.pg_settings WHERE name = ANY(%s)"
"""Rows ``(name, setting text)`` of ``pg_catalog.pg_settings`` for the names in the
bound list; a GUC the server does not have gives no row."""

NOW = "SELECT pg_catalog.now() AS now"
"""One row ``(now timestamptz)``: the server's clock (transaction start time)."""

NOW_AND_SERVER_VERSION_NUM = (
    "SELECT pg_catalog.now() AS now,"
    " pg_catalog.current_setting('server_version_num')::int AS server_version_num")
"""One row ``(now timestamptz, server_version_num int)``: the server's clock and its
PostgreSQL version number (120012 on GP7, 90426 on GP6)."""

# --- the snapshot: locks, wait-for edges, sessions, distributed transactions ---------

DISPATCHED_SNAPSHOT = {
    "locks": "SELECT * FROM pg_catalog.pg_locks",
    "edges": "SELECT * FROM pg_catalog.gp_dist_wait_status()",
    "activity": "SELECT * FROM pg_catalog.gp_stat_activity",
    "dist_xacts": "SELECT * FROM pg_catalog.gp_distributed_xacts",
}
"""Snapshot statements for the coordinator in dispatch mode, by item. ``locks``:
``pg_catalog.pg_locks`` with every primary's rows (18 columns on GP7, ``mppsessionid``,
``mppiswriter``, ``gp_segment_id``); ``edges``: ``pg_catalog.gp_dist_wait_status()``,
one row per wait-for edge of every node; ``activity``: ``pg_catalog.gp_stat_activity``
(GP7 / Cloudberry only), every node's ``pg_stat_activity`` with ``gp_segment_id``;
``dist_xacts``: ``pg_catalog.gp_distributed_xacts``, the coordinator's distributed
transactions (docs/greenplum-internals.md#locks-and-sessions)."""

LOCAL_SNAPSHOT = {
    "locks": "SELECT * FROM pg_catalog.pg_locks",
    "edges": "SELECT * FROM pg_catalog.gp_dist_wait_status()",
    "activity": "SELECT * FROM pg_catalog.pg_stat_activity",
    "dist_xacts": "SELECT * FROM pg_catalog.gp_distributed_xacts",
    "prepared_xacts": (
        "SELECT transaction, gid, prepared, owner, database FROM pg_catalog.pg_prepared_xacts"),
    "postmaster_start": "SELECT pg_catalog.pg_postmaster_start_time() AS postmaster_start",
}
"""Snapshot statements for one node in utility mode, by item: the same objects,
this node's rows only; ``activity`` is the node's ``pg_catalog.pg_stat_activity``,
``prepared_xacts`` its ``pg_catalog.pg_prepared_xacts`` (gid = the gxid on GP7,
docs/greenplum-internals.md#prepared-transactions) and ``postmaster_start`` one row
``(postmaster_start timestamptz)``: when this node's postmaster started. Only a
utility-mode connection gives the node's own time: a QE reports its QD's
(``cdbgang.c`` copies ``PgStartTime`` into every QE), so it is never read through
``gp_dist_random`` (docs/greenplum-internals.md#segment-restarts)."""

# --- the wait-scoped snapshot: only the rows the analysis reads (docs/collection.md) ------

LOCKTAG_COLUMNS = ("gp_segment_id", "locktype", "database", "relation", "page", "tuple", "virtualxid",
                   "transactionid", "classid", "objid", "objsubid")
"""The ``pg_locks`` columns that identify one lock on one node (PostgreSQL's LOCKTAG
fields, ``lock.h``, plus the node), as ``records.LockRecord.locktag`` groups them."""

WAIT_LOCKS = (
    "SELECT * FROM ("
    " SELECT w.*,"
    "  (w.on_waited_lock OR (w.process_waits AND w.pid IS NOT NULL)"
    "   OR COALESCE(w.pid, 0) = 0"
    "   OR (w.gp_segment_id = -1 AND w.locktype = 'distributed xid')"
    "   OR (w.granted AND w.mppsessionid = ANY(%(sessions)s::int[]))) AS wanted"
    " FROM ("
    "  SELECT l.*,"
    "   pg_catalog.bool_or(NOT l.granted) OVER (PARTITION BY l.gp_segment_id, l.locktype, l.database,"
    " l.relation, l.page, l.tuple, l.virtualxid, l.transactionid::text, l.classid, l.objid, l.objsubid)"
    " AS on_waited_lock,"
    "   pg_catalog.bool_or(NOT l.granted) OVER (PARTITION BY l.gp_segment_id, l.pid) AS process_waits,"
    "   pg_catalog.count(*) FILTER (WHERE l.granted) OVER (PARTITION BY l.mppsessionid) AS session_granted,"
    "   pg_catalog.row_number() OVER (PARTITION BY l.mppsessionid) AS session_row,"
    "   pg_catalog.count(*) OVER (PARTITION BY l.gp_segment_id) AS node_rows,"
    "   pg_catalog.count(*) FILTER (WHERE NOT l.granted) OVER (PARTITION BY l.gp_segment_id) AS node_waiting,"
    "   pg_catalog.row_number() OVER (PARTITION BY l.gp_segment_id) AS node_row"
    "  FROM pg_catalog.pg_locks l) w) k"
    " WHERE k.wanted OR k.session_row = 1 OR k.node_row = 1")
"""The ``pg_catalog.pg_locks`` rows the analysis reads, in one scan (one dispatch on the
coordinator, or one node's rows in utility mode); the full ``pg_locks`` columns plus:

- ``wanted`` (bool): the row is one of: a waiting request (``granted`` false); any row
  on the same lock (``LOCKTAG_COLUMNS``, NULLs equal: window partitions) as a waiting
  request, i.e. its holders and the requests queued with it (``blocking.py``'s
  lock-queue order); any row of a process that waits on its node (the relation a
  ``transactionid`` wait is about, ``SnapshotIndex.relation_of_wait``); a row with no
  backend (pid NULL or 0: a prepared transaction's locks); the coordinator's
  ``distributed xid`` rows (the live distributed transactions and their QD pids); the
  granted rows of the sessions in the bound ``%(sessions)s`` int list (sessions idle in
  transaction past the triage threshold).
- ``session_granted``: granted rows of the row's ``mppsessionid``, cluster-wide (the
  ``least_work`` victim policy); ``session_row``: 1 on one row per session.
- ``node_rows`` / ``node_waiting``: rows and ungranted rows on the row's node;
  ``node_row``: 1 on one row per node.

Rows that are not ``wanted`` come only as the one row per session and per node that
carries the counts. Window partitions sort on the coordinator (``transactionid`` is
``xid``, which has no ordering operator: compared as text); no CTE, so ``pg_locks`` is
scanned once (docs/collection.md). ``snapshot.select_wait_rows`` is the same filter
in Python, the reference the tests compare it with."""

_LOCK_KEY = "pg_catalog.concat_ws('|', " + ", ".join(
    "p.%s" % c if c in ("gp_segment_id", "locktype") else "COALESCE(p.%s::text, '-')" % c
    for c in LOCKTAG_COLUMNS) + ")"

WAIT_LOCKS_SHARED = (
    "WITH l AS MATERIALIZED (SELECT p.*, " + _LOCK_KEY + " AS lock_key FROM pg_catalog.pg_locks p),"
    " w AS (SELECT DISTINCT lock_key FROM l WHERE NOT granted),"
    " wp AS (SELECT DISTINCT gp_segment_id, pid FROM l WHERE NOT granted AND pid IS NOT NULL),"
    " f AS (SELECT l.*, true AS wanted FROM l WHERE l.lock_key IN (SELECT lock_key FROM w)"
    "  OR (l.gp_segment_id, l.pid) IN (SELECT gp_segment_id, pid FROM wp)"
    "  OR COALESCE(l.pid, 0) = 0 OR (l.gp_segment_id = -1 AND l.locktype = 'distributed xid')"
    "  OR (l.granted AND l.mppsessionid = ANY(%(sessions)s::int[])))"
    " SELECT f.*, CASE WHEN pg_catalog.row_number() OVER () = 1 THEN (SELECT pg_catalog.json_agg(n) FROM ("
    "SELECT gp_segment_id, pg_catalog.count(*) AS node_rows,"
    " pg_catalog.count(*) FILTER (WHERE NOT granted) AS node_waiting FROM l GROUP BY gp_segment_id) n) END"
    " AS node_counts,"
    " CASE WHEN pg_catalog.row_number() OVER () = 1 THEN (SELECT pg_catalog.json_agg(s) FROM ("
    "SELECT mppsessionid, pg_catalog.count(*) FILTER (WHERE granted) AS session_granted FROM l"
    " GROUP BY mppsessionid) s) END AS session_counts"
    " FROM (SELECT 1) one LEFT JOIN f ON true")
"""``WAIT_LOCKS`` for PostgreSQL 12 bases (Greenplum 7, Cloudberry): the same rows
(``wanted`` true), by hash instead of sorts: ``pg_catalog.pg_locks`` is read once into a
``MATERIALIZED`` CTE (Greenplum plans it as one ``Shared Scan`` of ``pg_lock_status()``),
a text ``lock_key`` of ``LOCKTAG_COLUMNS`` (NULL as ``-``, fields joined by ``|``: a
NULL-safe, hashable lock identity) is semi-joined with the waiting requests' keys, and
``(gp_segment_id, pid)`` with the waiting processes. The counts come once, on the first
row, as JSON: ``node_counts`` ``[{gp_segment_id, node_rows, node_waiting}]`` and
``session_counts`` ``[{mppsessionid, session_granted}]``; with no wanted row the one row
has NULL lock columns (``wanted`` NULL). ``MATERIALIZED`` is not Greenplum 6 syntax:
there ``WAIT_LOCKS``. Measured in bench/results.md."""


def _wait_key(alias):
    """A lock's identity in row ``alias`` with its NULLs replaced by sentinels: a locktype
    fixes which LOCKTAG fields are NULL (pg_lock_status, lockfuncs.c), so a sentinel never
    makes two locks equal; ``transactionid`` as text (``xid`` has no btree order)."""
    return (
        "{a}.gp_segment_id, {a}.locktype, COALESCE({a}.database, 0), COALESCE({a}.relation, 0),"
        " COALESCE({a}.page, -1), COALESCE({a}.tuple, -1), COALESCE({a}.virtualxid, ''),"
        " COALESCE({a}.transactionid::text, ''), COALESCE({a}.classid, 0), COALESCE({a}.objid, 0),"
        " COALESCE({a}.objsubid, -1)").format(a=alias)


COUNT_COLUMNS = ("count_segment", "count_session", "by_session", "lock_rows", "waiting_rows", "granted_rows")
"""The count columns ``NODE_WAIT_LOCKS`` / ``PRIMARIES_WAIT_LOCKS`` add to ``pg_locks``'."""


def _wait_locks_one_scan(source):
    """``WAIT_LOCKS``' rows from one scan of ``source`` (see ``NODE_WAIT_LOCKS``)."""
    return (
        "WITH l AS MATERIALIZED (SELECT p.* FROM " + source + " p)"
        " SELECT l.*, true AS wanted, "
        + ", ".join("NULL::%s AS %s" % ("bigint" if c.endswith("_rows") else "int", c) for c in COUNT_COLUMNS)
        + " FROM l WHERE NOT l.granted OR COALESCE(l.pid, 0) = 0"
        " OR (l.gp_segment_id = -1 AND l.locktype = 'distributed xid')"
        " OR (l.granted AND l.mppsessionid = ANY(%(sessions)s::int[]))"
        " OR (l.gp_segment_id, l.pid) IN (SELECT w.gp_segment_id, w.pid FROM l w WHERE NOT w.granted)"
        " OR (" + _wait_key("l") + ") IN (SELECT " + _wait_key("w") + " FROM l w WHERE NOT w.granted)"
        " UNION ALL SELECT (NULL::pg_catalog.pg_locks).*, NULL, c.gp_segment_id, c.mppsessionid,"
        " GROUPING(c.gp_segment_id), pg_catalog.count(*), pg_catalog.count(*) FILTER (WHERE NOT c.granted),"
        " pg_catalog.count(*) FILTER (WHERE c.granted)"
        " FROM l c GROUP BY GROUPING SETS ((c.gp_segment_id), (c.mppsessionid))")


NODE_WAIT_LOCKS = _wait_locks_one_scan("pg_catalog.pg_locks")
"""Greenplum 7, one node in utility mode (the coordinator's own lock table): the rows
``WAIT_LOCKS`` wants, and the counts, from one scan of ``pg_catalog.pg_locks``. The
table is read once into a ``MATERIALIZED`` CTE; a row is wanted when it is a waiting
request, has no backend (``pid`` NULL or 0: a prepared transaction's), is the
coordinator's ``distributed xid`` row, is a granted row of the bound ``%(sessions)s``,
belongs to a process that waits on its node, or is on a lock some request waits for
(``_wait_key``: ``LOCKTAG_COLUMNS`` with NULLs as sentinels, typed, so the waits' keys
make a small hashed subplan). Those rows come with ``wanted`` true and the count columns
NULL; after them, ``UNION ALL``, the count rows: every ``pg_locks`` column NULL,
``wanted`` NULL, and ``by_session`` 0: ``count_segment``, ``lock_rows``,
``waiting_rows`` of a node; 1: ``count_session``, ``granted_rows`` of a session (two
grouping sets of one aggregate). ``snapshot.fold_count_rows`` turns them into the one
count-only row ``WAIT_LOCKS_SHARED`` gives. Typed keys, where ``WAIT_LOCKS_SHARED``
builds a text key for every row: 0.24 s instead of 0.35 s over 200,000 rows
(bench/results-gp7-load.md). ``pg_catalog.pg_locks``' row type gives the count rows its
columns (``(NULL::pg_catalog.pg_locks).*``), so the branches agree on every Greenplum 7
version's columns."""

PRIMARIES_WAIT_LOCKS = _wait_locks_one_scan("gp_dist_random('pg_catalog.pg_locks')")
"""Greenplum 7, dispatch mode: ``NODE_WAIT_LOCKS`` on every primary at once
(``gp_dist_random``: a QE's ``pg_lock_status()`` is its own node's, lockfuncs.c), so only
the wanted rows and the counts travel to the coordinator. Postgres planner's plan
(docs/collection.md#one-scan-of-each-primary): the CTE is one ``Shared Scan`` of
``pg_lock_status()`` on each primary, read by the filter, by the two hashed subplans (the
waiting requests, a few rows, broadcast to every primary: each primary keeps only its own
by ``gp_segment_id`` in the key) and by the counts' partial aggregate; no InitPlan reads
the CTE (a Shared Scan whose producer sits in an InitPlan's slice waited forever on
``ShareInputScan``, measured). Run it under the Postgres planner
(``PLANNER_FOR_SESSION``): GPORCA plans CTEs its own way and was not measured here."""

PLANNER_FOR_SESSION = "SELECT pg_catalog.set_config('optimizer', 'off', false)"
"""Greenplum: the Postgres planner for this session (``optimizer`` off; GPORCA, where it
is built in, plans ``PRIMARIES_WAIT_LOCKS`` otherwise). A session setting of the
collection's own connection; nothing else changes."""

ACTIVITY_INVOLVED = (
    "SELECT * FROM ("
    " SELECT a.*, pg_catalog.bool_or(COALESCE(a.wait_event = 'SyncRep', false))"
    " OVER (PARTITION BY a.sess_id) AS session_in_syncrep,"
    " pg_catalog.bool_or(COALESCE(a.gp_segment_id = -1 AND a.state = 'active' AND a.wait_event_type = 'IPC', false))"
    " OVER (PARTITION BY a.sess_id) AS session_waits_on_qes"
    " FROM pg_catalog.gp_stat_activity a) s"
    " WHERE (s.gp_segment_id, s.pid) IN ("
    "SELECT * FROM ROWS FROM (pg_catalog.unnest(%(contents)s::int[]), pg_catalog.unnest(%(pids)s::int[])))"
    " OR s.wait_event = 'SyncRep' OR s.backend_type = 'checkpointer'"
    " OR (s.session_waits_on_qes AND s.sess_id > 0)"
    " OR (s.gp_segment_id = -1 AND (s.sess_id = ANY(%(sessions)s::int[]) OR s.session_in_syncrep))")
"""The ``pg_catalog.gp_stat_activity`` rows (GP7 / Cloudberry, dispatch mode) of the
backends involved: those of the bound ``(content, pid)`` pairs (``%(contents)s``,
``%(pids)s``: the processes of the ``WAIT_LOCKS`` rows and of the wait-for edges), every
backend waiting for synchronous replication (``wait_event`` ``SyncRep``), and the
coordinator's backends of the bound ``%(sessions)s`` and of the sessions with a SyncRep
waiter (the QD of each), every backend of a session whose coordinator backend is active
and waits on its QEs (``IPC``: triage's ``stuck_qe``), and each node's checkpointer
(triage's ``segment_restarted``). Extra columns ``session_in_syncrep``,
``session_waits_on_qes``."""

LOCAL_ACTIVITY_INVOLVED = (
    "SELECT a.* FROM pg_catalog.pg_stat_activity a WHERE a.pid = ANY(%(pids)s::int[])"
    " OR pg_catalog.row_to_json(a)->>'wait_event' = 'SyncRep'"
    " OR pg_catalog.row_to_json(a)->>'waiting_reason' = 'replication'"
    " OR pg_catalog.row_to_json(a)->>'backend_type' = 'checkpointer'"
    " OR (a.state = 'active' AND a.sess_id > 0)")
"""One segment's ``pg_catalog.pg_stat_activity`` rows (utility mode) of the bound pids
and of its backends waiting for synchronous replication (GP7 ``wait_event``
``SyncRep``; GP6 ``waiting_reason`` ``replication``: ``row_to_json`` reads whichever
column the version has), its checkpointer (``segment_restarted``) and its active backends
of a session (the QEs ``stuck_qe`` looks at). The coordinator's own rows are read whole (``LOCAL_SNAPSHOT``):
they are the sessions."""

IDLE_IN_TRANSACTION_SESSIONS = (
    "SELECT DISTINCT sess_id FROM pg_catalog.pg_stat_activity"
    " WHERE state LIKE 'idle in transaction%%' AND state_change <= %(before)s AND sess_id > 0")
"""Rows ``(sess_id)`` of the coordinator's backends idle in transaction since the bound
``%(before)s`` timestamptz or earlier (coordinator, either mode: its own rows are the QDs)."""

RELATION_NAMES = (
    "SELECT c.oid, n.nspname, c.relname FROM pg_catalog.pg_class c"
    " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = ANY(%s)")
"""Rows ``(oid, nspname, relname)`` of ``pg_catalog.pg_class`` for the bound list of
relation OIDs (one OID per table on every node)."""

DATABASES = (
    "SELECT oid, datname, datname = pg_catalog.current_database() AS current"
    " FROM pg_catalog.pg_database")
"""Rows ``(oid, datname, current bool)`` of ``pg_catalog.pg_database``."""

BLOCKING_PIDS = (
    "SELECT pid, pg_catalog.pg_blocking_pids(pid) AS blocking_pids"
    " FROM pg_catalog.unnest(%s::int[]) AS pid")
"""Rows ``(pid int, blocking_pids int[])``: ``pg_blocking_pids`` of each pid of the
bound list, on this node (lock-queue waiters have no ``gp_dist_wait_status()``
edge)."""

# --- signals to backends ------------------------------------------------------------

SIGNAL_FUNCTIONS = {"cancel": "pg_cancel_backend", "terminate": "pg_terminate_backend"}
"""The PostgreSQL function of each signal (all in ``pg_catalog``)."""

BACKEND_BY_PID = "SELECT * FROM pg_catalog.pg_stat_activity WHERE pid = %s"
"""The ``pg_catalog.pg_stat_activity`` row of the bound pid (none when it is gone);
on Greenplum it has ``sess_id``."""

FUNCTION_EXISTS = "SELECT pg_catalog.to_regprocedure(%s) IS NOT NULL AS present"
"""One row ``(present bool)``: whether the bound signature (text, schema-qualified,
e.g. ``pg_catalog.pg_cancel_backend(integer,text)``) names an existing function."""


def function_signature(action, with_message):
    """The schema-qualified signature (``str``) of the ``action`` (``cancel`` or
    ``terminate``) function, with the message argument when ``with_message``, for
    ``FUNCTION_EXISTS``. Raises ``KeyError`` for another action."""
    return "pg_catalog.%s(integer%s)" % (SIGNAL_FUNCTIONS[action], ",text" if with_message else "")


def signal_backend(action, with_message):
    """The statement (``str``) that signals one backend and re-checks its identity in
    the same statement: ``pg_catalog.pg_cancel_backend`` / ``pg_terminate_backend``
    over ``pg_catalog.pg_stat_activity`` where ``pid``, ``backend_start`` and
    ``sess_id`` still match (bound as ``%(pid)s``, ``%(backend_start)s``,
    ``%(sess_id)s``; ``%(message)s`` with the 2-argument GP7 form,
    docs/greenplum-internals.md#signalling-backends). One row ``(signalled bool)`` or
    none. Raises ``KeyError`` for an action other than ``cancel`` / ``terminate``."""
    return ("SELECT pg_catalog.%s(a.pid%s) AS signalled FROM pg_catalog.pg_stat_activity a"
            " WHERE a.pid = %%(pid)s AND a.backend_start = %%(backend_start)s"
            " AND a.sess_id = %%(sess_id)s"
            % (SIGNAL_FUNCTIONS[action], ", %(message)s::text" if with_message else ""))


def signal_transaction(action, with_message, check_backend_type=True):
    """The statement (``str``) that signals one coordinator backend only if it still
    runs the distributed transaction a plan was made on, checked in the same
    statement: ``pg_catalog.pg_stat_activity`` joined to
    ``pg_catalog.gp_distributed_xacts`` on ``gp_session_id = sess_id`` where ``pid``,
    ``backend_start``, ``sess_id``, ``xact_start`` (the start of its current
    transaction: a new transaction in the same session has another one) and
    ``distributed_xid`` (the gxid) are the planned ones, and (``check_backend_type``,
    Greenplum 7) it is a client backend. Bound: ``%(pid)s``, ``%(backend_start)s``,
    ``%(sess_id)s``, ``%(xact_start)s``, ``%(gxid)s`` (text), ``%(message)s`` with the
    2-argument form. One row ``(signalled bool)``, or none when the guard fails
    (docs/safety.md#deadlocks-what-is-proven-before-a-signal). Raises ``KeyError`` for
    an action other than ``cancel`` / ``terminate``."""
    return ("SELECT pg_catalog.%s(a.pid%s) AS signalled FROM pg_catalog.pg_stat_activity a"
            " JOIN pg_catalog.gp_distributed_xacts d ON d.gp_session_id = a.sess_id"
            " WHERE a.pid = %%(pid)s AND a.backend_start = %%(backend_start)s"
            " AND a.sess_id = %%(sess_id)s AND a.xact_start = %%(xact_start)s"
            " AND d.distributed_xid::text = %%(gxid)s%s"
            % (SIGNAL_FUNCTIONS[action], ", %(message)s::text" if with_message else "",
               " AND a.backend_type = 'client backend'" if check_backend_type else ""))


ACTIVITY_HAS_BACKEND_TYPE = (
    "SELECT pg_catalog.count(*) > 0 AS present FROM pg_catalog.pg_attribute"
    " WHERE attrelid = 'pg_catalog.pg_stat_activity'::pg_catalog.regclass AND attname = 'backend_type'")
"""One row ``(present bool)``: whether ``pg_stat_activity`` has ``backend_type``
(Greenplum 7; Greenplum 6 has none)."""

BACKEND_TRANSACTION = (
    "SELECT a.*,"
    " (SELECT pg_catalog.array_agg(d.distributed_xid::text) FROM pg_catalog.gp_distributed_xacts d"
    "  WHERE d.gp_session_id = a.sess_id AND d.distributed_xid::text <> '0') AS gxids"
    " FROM pg_catalog.pg_stat_activity a WHERE a.pid = %(pid)s")
"""The coordinator backend of the bound ``%(pid)s`` (none when it is gone) with the
gxids its session runs now (``gxids`` text[] or NULL): read after a guarded signal
found no row, to say why (nothing is signalled by it)."""


# --- FTS -------------------------------------------------------------------------------

SET_STATEMENT_TIMEOUT = "SELECT pg_catalog.set_config('statement_timeout', %s, false)"
"""Sets this session's ``statement_timeout`` to the bound value (text, milliseconds)."""

REQUEST_FTS_PROBE = "SELECT pg_catalog.gp_request_fts_probe_scan()"
"""Asks FTS for a whole new probe cycle and returns when it has finished (coordinator,
dispatch mode; docs/greenplum-internals.md#segment-configuration-and-fts)."""

CONFIGURATION_HISTORY_LAST_TIME = (
    "SELECT pg_catalog.max(time) AS t FROM pg_catalog.gp_configuration_history")
"""One row ``(t timestamptz or NULL)``: the newest ``pg_catalog.gp_configuration_history``
entry."""

CONFIGURATION_HISTORY = (
    "SELECT time, dbid, description FROM pg_catalog.gp_configuration_history"
    " ORDER BY time, dbid")
"""Rows ``(time timestamptz, dbid, description text)`` of
``pg_catalog.gp_configuration_history``, oldest first (FTS writes one per changed
member)."""

CONFIGURATION_HISTORY_SINCE = (
    "SELECT time, dbid, description FROM pg_catalog.gp_configuration_history"
    " WHERE time > %s ORDER BY time, dbid")
"""As ``CONFIGURATION_HISTORY``, only the rows newer than the bound timestamptz."""

# --- synchronous replication ----------------------------------------------------------

SYNC_STANDBY_NAMES_SETTING = (
    "SELECT setting, source, sourcefile FROM pg_catalog.pg_settings"
    " WHERE name = 'synchronous_standby_names'")
"""One row ``(setting, source, sourcefile)`` of ``synchronous_standby_names`` from
``pg_catalog.pg_settings`` (``sourcefile`` NULL for non-superusers)."""

LOCAL_ACTIVITY = LOCAL_SNAPSHOT["activity"]
"""Every row of this node's ``pg_catalog.pg_stat_activity``."""

RELOAD_CONF = "SELECT pg_catalog.pg_reload_conf()"
"""Signals the postmaster to re-read its configuration files (asynchronous)."""

_REPLICATION = (
    "SELECT pid, application_name, state, sync_state,"
    " pg_catalog.{diff}(pg_catalog.{current}(), {flush})::bigint AS flush_lag_bytes,"
    " pg_catalog.{diff}(pg_catalog.{current}(), {replay})::bigint AS replay_lag_bytes,"
    " pg_catalog.{diff}({flush}, '0/0')::bigint AS flush_lsn_bytes,"
    " pg_catalog.{diff}({replay}, '0/0')::bigint AS replay_lsn_bytes,"
    " pg_catalog.{diff}(pg_catalog.{current}(), '0/0')::bigint AS current_lsn_bytes"
    " FROM pg_catalog.pg_stat_replication WHERE application_name = %s ORDER BY pid")
# PostgreSQL 10 renamed xlog/location to wal/lsn; Greenplum 6 is PostgreSQL 9.4.
_NAMES_PG10 = dict(diff="pg_wal_lsn_diff", current="pg_current_wal_lsn", flush="flush_lsn",
                   replay="replay_lsn")
_NAMES_PG94 = dict(diff="pg_xlog_location_diff", current="pg_current_xlog_location",
                   flush="flush_location", replay="replay_location")


def replication_positions(server_version_num):
    """The ``pg_catalog.pg_stat_replication`` statement (``str``) for a server of that
    PostgreSQL version number (120012 for GP7, 90426 for GP6): rows ``(pid,
    application_name, state, sync_state, flush_lag_bytes, replay_lag_bytes,
    flush_lsn_bytes, replay_lsn_bytes, current_lsn_bytes)``, LSNs in bytes, of the
    walsenders whose ``application_name`` is bound, by pid."""
    names = _NAMES_PG10 if server_version_num >= 100000 else _NAMES_PG94
    return _REPLICATION.format(**names)


def alter_system_sync_standby_names(value):
    """``ALTER SYSTEM SET synchronous_standby_names = <value>`` as a
    ``psycopg.sql.Composed`` (``ALTER SYSTEM`` takes no parameter: the value is a
    ``Literal``). Writes ``postgresql.auto.conf`` on GP7
    (docs/greenplum-internals.md#synchronous-replication-switch)."""
    return pgsql.SQL("ALTER SYSTEM SET synchronous_standby_names = {}").format(pgsql.Literal(value))


def alter_system_sync_standby_names_text(value):
    """The text of ``alter_system_sync_standby_names(value)`` for reports and check mode
    (``str``; ``value`` is ``''`` or ``'*'``, which need no escaping: ``apply_switch``
    refuses any other)."""
    return "ALTER SYSTEM SET synchronous_standby_names = '%s'" % value


SETTING_WITH_SOURCE = (
    "SELECT setting, source, sourcefile FROM pg_catalog.pg_settings WHERE name = %s")
"""One row ``(setting, source, sourcefile)`` of the bound setting name from
``pg_catalog.pg_settings`` on the node of the connection (``sourcefile`` NULL for
non-superusers), none for an unknown name."""


def alter_system_set(name, value):
    """``ALTER SYSTEM SET <name> = <value>`` (``psycopg.sql.Composed``; the name an
    ``Identifier``, the value a ``Literal``: ``ALTER SYSTEM`` takes no parameter).
    Writes ``postgresql.auto.conf`` of the node; takes effect after a reload."""
    return pgsql.SQL("ALTER SYSTEM SET {} = {}").format(pgsql.Identifier(name), pgsql.Literal(value))


def alter_system_reset(name):
    """``ALTER SYSTEM RESET <name>`` (``Composed``): removes that one line of
    ``postgresql.auto.conf``, so ``postgresql.conf`` or the default applies again."""
    return pgsql.SQL("ALTER SYSTEM RESET {}").format(pgsql.Identifier(name))


PRIMARY_SETTINGS = (
    "SELECT paramsegment AS content, paramvalue AS setting"
    " FROM gp_toolkit.gp_param_setting(%s) WHERE paramsegment >= 0")
"""Rows ``(content, setting)``: the bound setting's value on every acting primary, asked
on the coordinator. ``gp_toolkit.gp_param_setting`` evaluates it on each segment
(``current_setting`` in a query on ``gp_dist_random`` is folded on the coordinator
before dispatch and shows the coordinator's value; verified on GP7). Fails as a whole
when a primary does not answer."""

SEGMENT_STATUS = (
    "SELECT dbid, content, role, status, mode FROM pg_catalog.gp_segment_configuration"
    " WHERE dbid = ANY(%s::smallint[])")
"""The rows ``(dbid, content, role, status, mode)`` of the bound dbids (an int list) in
``pg_catalog.gp_segment_configuration``."""

TERMINATE_WALSENDER = (
    "SELECT pg_catalog.pg_terminate_backend(pid) AS ok FROM pg_catalog.pg_stat_replication"
    " WHERE pid = %s AND application_name = %s")
"""Terminates the walsender of the bound pid only if it still serves the bound
``application_name``: one row ``(ok bool)``, or none."""

GP_REPLICATION_STATES = (
    "SELECT gp_segment_id, application_name, state FROM pg_catalog.gp_stat_replication")
"""Rows ``(gp_segment_id, application_name, state)`` of
``pg_catalog.gp_stat_replication``: the walsenders of the coordinator and of every
primary (a primary without one still has a row, state NULL)."""

RESQUEUE_LOCKS = "SELECT * FROM gp_toolkit.gp_locks_on_resqueue"
"""Every row of ``gp_toolkit.gp_locks_on_resqueue`` (resource-queue lock waits;
exists where ``gp_resource_manager = 'queue'`` is meaningful)."""

# --- prepared transactions ------------------------------------------------------------

COMMITTED_GXIDS = (
    "SELECT DISTINCT distributed_xid::text AS gxid"
    " FROM gp_dist_random('pg_catalog.gp_distributed_log')"
    " WHERE status = 'Committed' AND distributed_xid::text = ANY(%(gxids)s)")
"""Rows ``(gxid text)``: the gxids of the bound text list that the primaries'
``pg_catalog.gp_distributed_log`` records as committed, asked on the coordinator. The
coordinator's own copy is always empty on Greenplum 7, so it is read on every primary
through ``gp_dist_random``, which is parser syntax (``parse_clause.c``), not a function:
it cannot be schema-qualified, its argument is
(docs/greenplum-internals.md#the-distributed-log)."""

COORDINATOR_HAS_GXID = (
    "SELECT 1 FROM pg_catalog.gp_distributed_xacts WHERE distributed_xid::text = %(g)s UNION ALL "
    "SELECT 1 FROM pg_catalog.pg_locks WHERE locktype = 'distributed xid'"
    " AND transactionid::text = %(g)s AND gp_segment_id = -1")
"""A row for each place the coordinator still has the bound gxid (text): a
``pg_catalog.gp_distributed_xacts`` row or its ``distributed xid`` lock in
``pg_catalog.pg_locks``; none when it does not."""

PREPARED_GID_EXISTS = "SELECT 1 FROM pg_catalog.pg_prepared_xacts WHERE gid = %(gid)s"
"""One row when the bound gid is prepared on the connected node, else none."""


PREPARED_XACT_BY_GID = (
    "SELECT gid, prepared, owner, database FROM pg_catalog.pg_prepared_xacts WHERE gid = %(gid)s")
"""Rows ``(gid, prepared timestamptz, owner, database)`` of the bound gid on the connected
node (none when it is not prepared there): the guard of a ``rollback_prepared`` /
``commit_prepared`` step, re-read in the session that then finishes it."""


def rollback_prepared(gid):
    """``ROLLBACK PREPARED '<gid>'`` as a ``psycopg.sql.Composed``: the statement takes
    a string literal, not a parameter."""
    return pgsql.SQL("ROLLBACK PREPARED {}").format(pgsql.Literal(gid))


def commit_prepared(gid):
    """``COMMIT PREPARED '<gid>'`` as a ``psycopg.sql.Composed`` (a string literal, as
    ``ROLLBACK PREPARED``)."""
    return pgsql.SQL("COMMIT PREPARED {}").format(pgsql.Literal(gid))


# --- Slony-I node locks ------------------------------------------------------------------

SLONY_CLUSTERS = """
SELECT n.nspname AS schema, pg_catalog.pg_get_userbyid(n.nspowner) AS owner
FROM pg_catalog.pg_namespace n
JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid
WHERE c.relname = 'sl_nodelock' AND c.relkind IN ('r', 'p') AND n.nspname LIKE '\\_%%'
  AND (%(schema)s::text IS NULL OR n.nspname = %(schema)s::text)
ORDER BY n.nspname
"""
"""Rows ``(schema, owner)``: the Slony-I cluster schemas (``_<name>``) holding an
``sl_nodelock`` table, all or only the bound ``%(schema)s`` (NULL: all)."""

# CASE keeps pg_xact_commit_timestamp() from being called (it raises) when
# track_commit_timestamp is off.
_NODELOCK_ROWS = """
SELECT l.nl_nodeid, l.nl_conncnt, l.nl_backendpid, l.xmin::text AS row_xmin,
       CASE WHEN pg_catalog.current_setting('track_commit_timestamp') = 'on'
            THEN pg_catalog.pg_xact_commit_timestamp(l.xmin) END AS row_written
FROM {table} l
{where}
ORDER BY l.nl_nodeid, l.nl_conncnt
{lock}
"""


def nodelock_rows(schema, by_key=False, for_update=False):
    """``SELECT`` of ``<schema>.sl_nodelock`` (``psycopg.sql.Composed``, the schema an
    ``Identifier``): rows ``(nl_nodeid, nl_conncnt, nl_backendpid, row_xmin text,
    row_written timestamptz or NULL)``; only the row of ``%(nodeid)s`` /
    ``%(conncnt)s`` when ``by_key``; ``FOR UPDATE`` when ``for_update``."""
    where = pgsql.SQL("WHERE l.nl_nodeid = %(nodeid)s AND l.nl_conncnt = %(conncnt)s") if by_key \
        else pgsql.SQL("")
    return pgsql.SQL(_NODELOCK_ROWS).format(
        table=pgsql.Identifier(schema, "sl_nodelock"), where=where,
        lock=pgsql.SQL("FOR UPDATE OF l") if for_update else pgsql.SQL(""))


def delete_nodelock(schema):
    """``DELETE`` of one ``<schema>.sl_nodelock`` row (``psycopg.sql.Composed``, the
    schema an ``Identifier``) whose guard is its ``WHERE``: the key ``%(nodeid)s`` /
    ``%(conncnt)s`` and the values judged: ``nl_backendpid`` ``%(pid)s``, the row version
    ``xmin`` ``%(xmin)s`` (text; an ``UPDATE`` of the row makes a new one), and the backend
    with that pid as judged: ``%(had_backend)s`` (bool) whether one existed, and, if so, its
    ``backend_start``, ``datname``, ``usename``, ``application_name`` and ``backend_type``
    (``%(backend_start)s`` ...; NULL where they were NULL). ``pg_catalog.pg_stat_activity`` is
    read by this statement itself (in autocommit its own transaction, so its statistics
    snapshot is fresh). Rows ``(nl_nodeid, nl_conncnt, nl_backendpid)`` of what it deleted:
    none when the guard failed."""
    return pgsql.SQL(
        "DELETE FROM {} l WHERE l.nl_nodeid = %(nodeid)s AND l.nl_conncnt = %(conncnt)s"
        " AND l.nl_backendpid = %(pid)s AND l.xmin::text = %(xmin)s"
        " AND %(had_backend)s = EXISTS (SELECT 1 FROM pg_catalog.pg_stat_activity a WHERE a.pid = l.nl_backendpid)"
        " AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_stat_activity a WHERE a.pid = l.nl_backendpid"
        " AND (a.backend_start IS DISTINCT FROM %(backend_start)s::timestamptz"
        " OR a.datname IS DISTINCT FROM %(datname)s::name OR a.usename IS DISTINCT FROM %(usename)s::name"
        " OR a.application_name IS DISTINCT FROM %(application_name)s::text"
        " OR a.backend_type IS DISTINCT FROM %(backend_type)s::text))"
        " RETURNING l.nl_nodeid, l.nl_conncnt, l.nl_backendpid").format(pgsql.Identifier(schema, "sl_nodelock"))


BACKENDS_BY_PIDS = """
SELECT pid, datname, usename, application_name, backend_start, backend_type, state,
       client_addr::text AS client_addr, client_port,
       datname = pg_catalog.current_database() AS same_database
FROM pg_catalog.pg_stat_activity
WHERE pid = ANY(%(pids)s)
"""
"""Rows of ``pg_catalog.pg_stat_activity`` for the bound ``%(pids)s`` list (this
server's own backends, any database)."""

CLEAR_STATS_SNAPSHOT = "SELECT pg_catalog.pg_stat_clear_snapshot()"
"""Drops this transaction's statistics snapshot, so the next read of
``pg_stat_activity`` in the same transaction is current."""


# --- moved from deadlock.py, fts.py and sql_logs.py (local deadlock checks, FTS grace, log timeline)

# gp_dist_random is a construct of Greenplum's parser, not a function: it takes no schema.
DEADLOCK_TIMEOUTS_SQL = (
    "SELECT pg_catalog.gp_execution_segment() AS content, pg_catalog.current_setting('deadlock_timeout') AS value"
    " FROM gp_dist_random('pg_catalog.gp_id')"
    " UNION ALL SELECT -1, pg_catalog.current_setting('deadlock_timeout')")

GRACE_LOG_SQL = ("SELECT logsegment, logtime, logmessage, logdetail FROM gp_toolkit.gp_log_system"
                 " WHERE logtime >= %s AND logmessage LIKE %s ORDER BY logtime")

# Fallback: the first SyncRep wait per primary (a QE waiting for its commit shows
# state_change from the moment it began to wait).
SYNCREP_SINCE_SQL = ("SELECT gp_segment_id AS content, pg_catalog.min(state_change) AS since"
                     " FROM pg_catalog.gp_stat_activity WHERE wait_event = %s AND gp_segment_id >= 0"
                     " GROUP BY gp_segment_id")
SERVER_NOW_SQL = "SELECT pg_catalog.clock_timestamp() AS now"

LOG_WINDOW_SQL = (
    "SELECT pg_catalog.to_char(l.logtime AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || ' UTC',"
    " l.loguser, l.logdatabase, l.logpid, l.logthread, l.loghost, l.logport,"
    " pg_catalog.to_char(l.logsessiontime AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') || ' UTC',"
    " l.logtransaction, l.logsession, l.logcmdcount, l.logsegment, l.logslice, l.logdistxact,"
    " l.loglocalxact, l.logsubxact, l.logseverity, l.logstate, l.logmessage, l.logdetail, l.loghint,"
    " l.logquery, l.logquerypos, l.logcontext, l.logdebug, l.logcursorpos, l.logfunction, l.logfile,"
    " l.logline, l.logstack"
    " FROM gp_toolkit.gp_log_system l"
    " WHERE l.logtime >= pg_catalog.to_timestamp(%(since)s)"
    " AND l.logtime < pg_catalog.to_timestamp(%(until)s)"
    " AND (l.logseverity IN ('PANIC', 'FATAL') OR l.logmessage ~ %(pattern)s)"
    " ORDER BY l.logtime"
    " LIMIT %(max_rows)s")

CONFIG_HISTORY_SQL = (
    "SELECT pg_catalog.to_char(h.\"time\" AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || ' UTC',"
    " h.dbid, h.description"
    " FROM pg_catalog.gp_configuration_history h"
    " WHERE h.\"time\" >= pg_catalog.to_timestamp(%(since)s)"
    " AND h.\"time\" < pg_catalog.to_timestamp(%(until)s)"
    " ORDER BY h.\"time\""
    " LIMIT %(max_rows)s")

# --- privileges of the login role (privileges.py) ---------------------------------

LOGIN_PRIVILEGES = (
    "SELECT current_user AS login_user,"
    " (SELECT u.rolsuper FROM pg_catalog.pg_roles u WHERE u.rolname = current_user) AS superuser,"
    " ARRAY(SELECT r.rolname::text FROM pg_catalog.pg_roles r"
    " WHERE r.rolname = ANY(%s) AND pg_catalog.pg_has_role(r.oid, 'MEMBER') ORDER BY 1) AS member_of")
"""One row ``(login_user, superuser bool, member_of text[])``: whether the login role is
a superuser, and which of the bound predefined roles (``privileges.PREDEFINED_ROLES``)
it is a member of (directly or through others). A role that does not exist on this
server (Greenplum 6 has no ``pg_read_all_stats``) is simply not listed."""
