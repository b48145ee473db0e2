# -*- coding: utf-8 -*-
# Copyright: gpops.greenplum contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Typed records of what the Greenplum catalog shows, shared by every layer.

Data flows one way: the snapshot layer reads catalog rows (dicts keyed by
column name, from a live server or from a captured fixture) and builds these
records with the ``from_row`` constructors; the analysis layer takes records
and returns records; modules turn records into return values with ``as_dict``.

Columns are always selected by name, never by position (docs/greenplum-internals.md), and
a column missing from a row (GP6 has no ``wait_event``, GP7 has no ``waiting``)
becomes ``None``. Timestamps are timezone-aware ``datetime`` objects; ISO
strings (as in captures) are parsed. Durations are float seconds.

Bulk: a snapshot of a big cluster holds a million lock rows. Build whole result
sets with ``Record.from_rows(rows)`` (the garbage collector paused, see
``gc_paused``); ``from_row`` itself constructs positionally and reads the standard
columns in one lookup. Records are hashable and read-only by convention (see
``_RECORD`` for why they are not ``frozen``). bench/results.md has the figures.

Sources for column names and meanings:
- ``pg_locks``: Greenplum ``src/backend/utils/adt/lockfuncs.c`` (18 columns; the
  GPDB ones are ``mppsessionid``, ``mppiswriter``, ``gp_segment_id`` = content).
- ``gp_dist_wait_status()``: Greenplum ``src/backend/utils/gdd/gddfuncs.c``.
- ``gp_segment_configuration``: ``src/include/catalog/gp_segment_configuration.h``.
- ``pg_stat_activity`` / ``gp_stat_activity``: ``system_views.sql`` (GP6: ``waiting``,
  ``waiting_reason``; GP7/Cloudberry: ``wait_event_type``, ``wait_event``,
  ``backend_type``).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import dataclasses
import datetime
import gc
import operator
import sys
from typing import Any, Dict, List, Mapping, Optional, Sequence

COORDINATOR_CONTENT = -1

# Records are read-only by convention and hashable, but not ``frozen``: a frozen
# dataclass sets every field through ``object.__setattr__`` and costs 4-5 us per
# record on our 2-core machines, i.e. 5 s for a million lock rows (bench/). With
# ``__slots__`` (Python 3.10+) a lock record also takes about half the memory.
_RECORD = dict(eq=True, unsafe_hash=True)
if sys.version_info >= (3, 10):
    _RECORD["slots"] = True


def parse_timestamp(value):
    """Return a timezone-aware datetime from a datetime or an ISO string, else None."""
    if value is None or isinstance(value, datetime.datetime):
        return value
    text = str(value)
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    try:
        return datetime.datetime.fromisoformat(text)
    except ValueError:
        return None


_parse_ts = parse_timestamp


def _int(value):
    if value is None or value.__class__ is int:  # the common cases first: it runs per lock row
        return value
    if value == "":
        return None
    return int(value)


def _bool(value):
    if value is None or value.__class__ is bool:
        return value
    if isinstance(value, str):
        return value.lower() in ("t", "true", "1", "on", "yes")
    return bool(value)


def _str(value):
    return value if value is None or value.__class__ is str else str(value)


def _pids(value):
    if value is None:
        return None
    if isinstance(value, str):  # text form of an int4[]: "{1,2}"
        value = [v for v in value.strip("{}").split(",") if v]
    return tuple(int(v) for v in value)


def rows_as_dicts(columns, rows):
    # type: (Sequence[str], Sequence[Sequence[Any]]) -> List[Dict[str, Any]]
    """Zip a result set (column names, row tuples) into dicts keyed by column name."""
    return [dict(zip(columns, row)) for row in rows]


@contextlib.contextmanager
def gc_paused():
    """Pause Python's cyclic garbage collector for a bulk build of records.

    A million new objects trigger many full collections, each walking every live
    object: without this, building records gets slower per row as the snapshot
    grows (bench/). Records hold no reference cycles, so nothing is left behind;
    the collector's previous state is restored.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class _Record:
    """Mixin: ``as_dict()`` gives JSON-friendly values (datetimes as ISO strings)."""

    __slots__ = ()

    @classmethod
    def from_rows(cls, rows, **kwargs):
        """``[cls.from_row(row, **kwargs) for row in rows]``, with the cyclic garbage
        collector paused (see ``gc_paused``): use it for whole result sets."""
        with gc_paused():
            return [cls.from_row(row, **kwargs) for row in rows]

    def as_dict(self):
        out = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, datetime.datetime):
                value = value.isoformat()
            out[field.name] = value
        return out


@dataclasses.dataclass(**_RECORD)
class SegmentConfig(_Record):
    """One row of ``gp_segment_configuration``.

    ``content`` -1 is the coordinator (role ``p``) and the standby coordinator
    (role ``m``); ``mode`` is ``s`` (in sync) or ``n``; ``status`` ``u``/``d``.
    """

    dbid: int
    content: int
    role: str
    preferred_role: str
    mode: str
    status: str
    port: int
    hostname: str
    address: str
    datadir: str

    @classmethod
    def from_row(cls, row):
        # type: (Mapping[str, Any]) -> SegmentConfig
        return cls(
            dbid=int(row["dbid"]), content=int(row["content"]), role=str(row["role"]),
            preferred_role=str(row["preferred_role"]), mode=str(row["mode"]),
            status=str(row["status"]), port=int(row["port"]), hostname=str(row["hostname"]),
            address=str(row["address"]), datadir=str(row["datadir"]))

    @property
    def is_primary(self):
        return self.role == "p"

    @property
    def is_up(self):
        return self.status == "u"


_PG_LOCKS_NAMES = ("gp_segment_id", "pid", "mppsessionid", "mppiswriter", "locktype", "mode", "granted",
                   "database", "relation", "page", "tuple", "virtualxid", "transactionid", "classid",
                   "objid", "objsubid", "virtualtransaction", "fastpath")
_PG_LOCKS_COLUMNS = operator.itemgetter(*_PG_LOCKS_NAMES)
_ALIASES = {"mppsessionid": "mppSessionId", "mppiswriter": "mppIsWriter"}


@dataclasses.dataclass(**_RECORD)
class LockRecord(_Record):
    """One row of ``pg_locks`` on one node.

    ``content`` is ``gp_segment_id`` (the content id, -1 = coordinator).
    ``pid`` is the pid *on that node*; it is None for a prepared transaction's
    locks. ``relation_name`` (``schema.name``) is filled by the snapshot layer
    from the catalog of the node that holds the lock (OIDs differ between nodes).
    ``waitstart`` exists from PostgreSQL 14 on (Cloudberry; not GP6/GP7).
    """

    content: int
    pid: Optional[int]
    mppsessionid: Optional[int]
    mppiswriter: Optional[bool]
    locktype: str
    mode: str
    granted: bool
    database: Optional[int] = None
    relation: Optional[int] = None
    page: Optional[int] = None
    tuple: Optional[int] = None
    virtualxid: Optional[str] = None
    transactionid: Optional[str] = None
    classid: Optional[int] = None
    objid: Optional[int] = None
    objsubid: Optional[int] = None
    virtualtransaction: Optional[str] = None
    fastpath: Optional[bool] = None
    waitstart: Optional[datetime.datetime] = None
    relation_name: Optional[str] = None

    @classmethod
    def from_row(cls, row, content=None, relation_name=None):
        # type: (Mapping[str, Any], Optional[int], Optional[str]) -> LockRecord
        """Build from a ``pg_locks`` row; ``content`` overrides ``gp_segment_id``
        (a utility-mode row on a segment still carries its own content id)."""
        # One C-level lookup of the 18 pg_locks columns (this runs once per lock row);
        # a partial row (tests, GP6's mixed-case spellings) takes the slow path.
        try:
            values = _PG_LOCKS_COLUMNS(row)
        except KeyError:
            values = tuple(row.get(name, row.get(_ALIASES.get(name))) for name in _PG_LOCKS_NAMES)
        (segment, pid, session, writer, locktype, mode, granted, database, relation, page, tuple_,
         virtualxid, transactionid, classid, objid, objsubid, virtualtransaction, fastpath) = values
        if content is None:
            content = _int(segment)
        return cls(
            COORDINATOR_CONTENT if content is None else content, _int(pid) or None, _int(session),
            _bool(writer), _str(locktype), _str(mode), bool(_bool(granted)), _int(database),
            _int(relation), _int(page), _int(tuple_), _str(virtualxid), _str(transactionid),
            _int(classid), _int(objid), _int(objsubid), _str(virtualtransaction), _bool(fastpath),
            _parse_ts(row.get("waitstart")),
            relation_name if relation_name is not None else row.get("relation_name"))

    @property
    def is_prepared_xact(self):
        """Rows of a prepared transaction have no backend (pid NULL or 0)."""
        return not self.pid

    def locktag(self):
        """The lock's identity on its node (PostgreSQL LOCKTAG fields), for lock-queue grouping."""
        return (self.content, self.locktype, self.database, self.relation, self.page,
                self.tuple, self.virtualxid, self.transactionid, self.classid,
                self.objid, self.objsubid)


@dataclasses.dataclass(**_RECORD)
class WaitEdge(_Record):
    """One row of ``gp_dist_wait_status()``: on node ``content`` (``segid``), the
    distributed transaction ``waiter_gxid`` waits for ``holder_gxid``.

    ``solid`` is ``holdTillEndXact``: the lock is held until the holder's
    transaction ends (solid edge); otherwise it may be released earlier (dotted
    edge, e.g. a tuple lock). A read-only autocommit waiter has gxid 0; a waiter
    blocked on a prepared transaction has ``holder_pid`` 0.
    """

    content: int
    waiter_gxid: int
    holder_gxid: int
    solid: bool
    waiter_pid: Optional[int]
    holder_pid: Optional[int]
    waiter_lockmode: Optional[str]
    waiter_locktype: Optional[str]
    waiter_sessionid: Optional[int]
    holder_sessionid: Optional[int]

    @classmethod
    def from_row(cls, row):
        # type: (Mapping[str, Any]) -> WaitEdge
        solid = row.get("holdTillEndXact", row.get("holdtillendxact"))
        waiter_session = row.get("waiter_sessionid", row.get("waiter_sessiondid"))
        return cls(
            content=int(row["segid"]), waiter_gxid=int(row["waiter_dxid"]),
            holder_gxid=int(row["holder_dxid"]), solid=bool(_bool(solid)),
            waiter_pid=_int(row.get("waiter_lpid")), holder_pid=_int(row.get("holder_lpid")),
            waiter_lockmode=_str(row.get("waiter_lockmode")),
            waiter_locktype=_str(row.get("waiter_locktype")),
            waiter_sessionid=_int(waiter_session), holder_sessionid=_int(row.get("holder_sessionid")))


_ACTIVITY_NAMES = ("pid", "sess_id", "datname", "usename", "application_name", "client_addr",
                   "backend_start", "xact_start", "query_start", "state_change", "state", "query")
_ACTIVITY_COLUMNS = operator.itemgetter(*_ACTIVITY_NAMES)


@dataclasses.dataclass(**_RECORD)
class Backend(_Record):
    """One backend (a ``pg_stat_activity`` row) on node ``content``.

    ``sess_id`` is the distributed session id (= ``mppsessionid`` =
    ``gp_session_id``), the same on the QD and all its QEs; -1 or 0 for
    utility-mode and background processes. ``blocking_pids`` is
    ``pg_blocking_pids(pid)`` on that node (local pids, in lock-queue terms:
    holders and earlier conflicting waiters), collected for waiting backends
    only; None when not collected. GP6 rows carry ``waiting`` and
    ``waiting_reason``; GP7/Cloudberry rows ``wait_event_type``, ``wait_event``
    and ``backend_type``.
    """

    content: int
    pid: int
    sess_id: Optional[int]
    datname: Optional[str] = None
    usename: Optional[str] = None
    application_name: Optional[str] = None
    client_addr: Optional[str] = None
    backend_start: Optional[datetime.datetime] = None
    xact_start: Optional[datetime.datetime] = None
    query_start: Optional[datetime.datetime] = None
    state_change: Optional[datetime.datetime] = None
    state: Optional[str] = None
    wait_event_type: Optional[str] = None
    wait_event: Optional[str] = None
    waiting: Optional[bool] = None
    waiting_reason: Optional[str] = None
    backend_type: Optional[str] = None
    backend_xid: Optional[str] = None
    backend_xmin: Optional[str] = None
    query: Optional[str] = None
    blocking_pids: Optional[tuple] = None

    @classmethod
    def from_row(cls, row, content=None):
        # type: (Mapping[str, Any], Optional[int]) -> Backend
        try:  # the columns of pg_stat_activity in every version, in one C-level lookup
            values = _ACTIVITY_COLUMNS(row)
        except KeyError:  # a partial row: missing columns are None
            values = tuple(row.get(name) for name in _ACTIVITY_NAMES)
        (pid, sess_id, datname, usename, application_name, client_addr, backend_start, xact_start,
         query_start, state_change, state, query) = values
        get = row.get  # version-dependent columns (GP6: waiting; GP7: wait_event, backend_type)
        if content is None:
            content = _int(get("gp_segment_id"))
        return cls(
            COORDINATOR_CONTENT if content is None else content,
            int(pid), _int(sess_id), _str(datname), _str(usename), _str(application_name),
            _str(client_addr), _parse_ts(backend_start), _parse_ts(xact_start),
            _parse_ts(query_start), _parse_ts(state_change), _str(state),
            _str(get("wait_event_type")), _str(get("wait_event")), _bool(get("waiting")),
            _str(get("waiting_reason")), _str(get("backend_type")), _str(get("backend_xid")),
            _str(get("backend_xmin")), _str(query), _pids(get("blocking_pids")))

    @property
    def is_client_backend(self):
        """GP7/Cloudberry: ``backend_type``; GP6 has none, so any row with a database."""
        if self.backend_type is not None:
            return self.backend_type == "client backend"
        return self.datname is not None


@dataclasses.dataclass(**_RECORD)
class DistributedXact(_Record):
    """One row of ``gp_distributed_xacts`` on the coordinator (gxid 0 rows are idle slots)."""

    gxid: int
    gp_session_id: Optional[int]
    state: Optional[str] = None

    @classmethod
    def from_row(cls, row):
        # type: (Mapping[str, Any]) -> DistributedXact
        return cls(gxid=int(row["distributed_xid"]), gp_session_id=_int(row.get("gp_session_id")),
                   state=_str(row.get("state")))


@dataclasses.dataclass(**_RECORD)
class PreparedXact(_Record):
    """One ``pg_prepared_xacts`` row on node ``content``; ``gid`` is the distributed
    transaction id as text (GP7/Cloudberry: plain gxid; GP6: ``timestamp-gxid``)."""

    content: int
    transaction: str
    gid: str
    prepared: Optional[datetime.datetime]
    owner: Optional[str]
    database: Optional[str]

    @classmethod
    def from_row(cls, row, content=None):
        # type: (Mapping[str, Any], Optional[int]) -> PreparedXact
        if content is None:
            content = _int(row.get("segid", row.get("gp_segment_id")))
        return cls(content=COORDINATOR_CONTENT if content is None else content,
                   transaction=str(row["transaction"]), gid=str(row["gid"]),
                   prepared=_parse_ts(row.get("prepared")), owner=_str(row.get("owner")),
                   database=_str(row.get("database")))

    @property
    def gxid(self):
        """The distributed xid the gid names, or None for a gid Greenplum did not form
        (GP7/Cloudberry ``dtxFormGid``: the decimal gxid; GP6 ``dtxFormGID``:
        ``%u-%.10u`` = DTM start timestamp, then the gxid; docs/greenplum-internals.md#prepared-transactions)."""
        text = self.gid.rsplit("-", 1)[-1]
        return int(text) if text.isdigit() else None


@dataclasses.dataclass
class ClusterSnapshot(_Record):
    """Everything the analysis needs, taken once.

    ``source`` is ``dispatch`` (one dispatched query on the coordinator) or
    ``utility`` (per-node utility-mode fallback). ``unreachable`` maps a content
    id to the reason its node did not answer (timeout, refused, error text);
    rows of those nodes are missing, and analysis results must say so.
    ``taken_at`` is when collection started (coordinator clock, UTC).
    ``postmaster_starts``: content -> ``pg_postmaster_start_time()`` of that node's
    primary (the coordinator's at -1), read in utility mode; a node not read is
    missing (unknown).
    ``read``: the items (``locks``, ``edges``, ``activity``, ``dist_xacts``,
    ``prepared_xacts``) the collection asked for, or None when not said (a snapshot
    built by hand or from an old capture: ``dist_xacts`` then counts as read when it
    has rows). ``unknown``: ``{item: {content: why}}``, the nodes whose rows of an item
    could not be read: such a fact is unknown, never empty (docs/safety.md).

    ``scope`` is ``full`` (every row of ``pg_locks`` and the activity views) or
    ``waits`` (``snapshot.take_snapshot(scope='waits')``: only the rows the analysis
    reads, docs/collection.md); then ``lock_counts`` is ``{content: {rows, waiting}}``
    (every ``pg_locks`` row of the node counted, read or not) and
    ``session_lock_counts`` ``{mppsessionid: granted rows, cluster-wide}``; both None
    for ``full``, where the rows themselves say it.
    """

    taken_at: datetime.datetime
    segments: List[SegmentConfig] = dataclasses.field(default_factory=list)
    locks: List[LockRecord] = dataclasses.field(default_factory=list)
    edges: List[WaitEdge] = dataclasses.field(default_factory=list)
    backends: List[Backend] = dataclasses.field(default_factory=list)
    dist_xacts: List[DistributedXact] = dataclasses.field(default_factory=list)
    prepared_xacts: List[PreparedXact] = dataclasses.field(default_factory=list)
    postmaster_starts: Dict[int, datetime.datetime] = dataclasses.field(default_factory=dict)
    unreachable: Dict[int, str] = dataclasses.field(default_factory=dict)
    source: str = "dispatch"
    server: Dict[str, Any] = dataclasses.field(default_factory=dict)
    read: Optional[List[str]] = None
    unknown: Dict[str, Dict[int, str]] = dataclasses.field(default_factory=dict)

    def item_unknown(self, item):
        """``{content: why}`` of the nodes whose ``item`` rows could not be read
        (empty when every node asked answered)."""
        return dict(self.unknown.get(item) or {})
    scope: str = "full"
    lock_counts: Optional[Dict[int, Dict[str, int]]] = None
    session_lock_counts: Optional[Dict[Optional[int], int]] = None

    def counts(self):
        """``{lock_rows, waiting_lock_rows, lock_rows_read, backends_read, sessions,
        nodes: {content: {rows, waiting}}}``: how much the cluster holds next to how much
        was read (``scope`` ``full``: every row was read, the counts come from the rows)."""
        if self.lock_counts is None:
            nodes = {}
            for lock in self.locks:
                node = nodes.setdefault(lock.content, {"rows": 0, "waiting": 0})
                node["rows"] += 1
                node["waiting"] += 0 if lock.granted else 1
            sessions = {lock.mppsessionid for lock in self.locks}
        else:
            nodes, sessions = self.lock_counts, self.session_lock_counts or {}
        return {"lock_rows": sum(n["rows"] for n in nodes.values()),
                "waiting_lock_rows": sum(n["waiting"] for n in nodes.values()),
                "lock_rows_read": len(self.locks), "backends_read": len(self.backends),
                "sessions": len([s for s in sessions if s]),
                "nodes": {str(k): dict(v) for k, v in sorted(nodes.items())}}

    def as_dict(self):
        return {
            "taken_at": self.taken_at.isoformat(),
            "read": None if self.read is None else list(self.read),
            "unknown": {item: {str(c): why for c, why in nodes.items()} for item, nodes in self.unknown.items()},
            "source": self.source,
            "scope": self.scope,
            "counts": self.counts(),
            "server": dict(self.server),
            "unreachable": {str(k): v for k, v in self.unreachable.items()},
            "segments": [s.as_dict() for s in self.segments],
            "locks": [r.as_dict() for r in self.locks],
            "edges": [e.as_dict() for e in self.edges],
            "backends": [b.as_dict() for b in self.backends],
            "dist_xacts": [x.as_dict() for x in self.dist_xacts],
            "prepared_xacts": [p.as_dict() for p in self.prepared_xacts],
            "postmaster_starts": {str(k): v.isoformat() for k, v in sorted(self.postmaster_starts.items())},
        }
