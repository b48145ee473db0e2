"""Turn a capture of a real Greenplum 7 cluster (tests/fixtures/gp7/*.json, format
in its README.md) into a ``ClusterSnapshot``, as the snapshot layer would build it.

``source='dispatch'``: the queries run on the coordinator in dispatch mode
(``pg_locks`` and ``gp_dist_wait_status()`` with every primary's rows,
``gp_stat_activity`` for the whole cluster, ``pg_blocking_pids`` for the
coordinator's backends).

``source='utility'``: what the per-node fallback sees: each primary's own rows from
its ``utility_contentN.*`` queries, the coordinator's own rows (content -1) from the
dispatched queries; a primary with no utility-mode capture is listed in
``unreachable``, as a node that did not answer would be.
"""
import json
import os
import re

from ansible_collections.gpops.greenplum.plugins.module_utils.common.records import (
    COORDINATOR_CONTENT, Backend, ClusterSnapshot, DistributedXact, LockRecord, PreparedXact,
    SegmentConfig, WaitEdge, _parse_ts)

from conftest import SHARED_FIXTURES

NO_UTILITY_CAPTURE = "no utility-mode capture of this content"


def load_capture(name):
    """The capture's JSON; ``name`` is a file name without ``.json`` or a path."""
    path = name if os.path.isabs(name) else os.path.join(SHARED_FIXTURES, name + ".json")
    with open(path) as fh:
        return json.load(fh)


def _rows(queries, name):
    query = queries.get(name)
    if not query or query.get("error"):
        return []
    return [dict(zip(query["columns"], row)) for row in query["rows"]]


def _relation_names(queries):
    return {row["oid"]: row["relname"] for row in _rows(queries, "relations")}


def _locks(rows, names, content=None):
    return [LockRecord.from_row(r, content=content, relation_name=names.get(r.get("relation")))
            for r in rows]


def snapshot_from_capture(name, source="dispatch"):
    """Build the ``ClusterSnapshot`` of capture ``name`` as seen through ``source``."""
    if source not in ("dispatch", "utility"):
        raise ValueError("source: 'dispatch' or 'utility', got %r" % (source,))
    capture = load_capture(name)
    queries = capture["queries"]
    names = _relation_names(queries)
    segments = [SegmentConfig.from_row(r) for r in _rows(queries, "gp_segment_configuration")]
    blocking = {r["pid"]: r["blocking_pids"] for r in _rows(queries, "pg_blocking_pids")}
    activity = _rows(queries, "gp_stat_activity") or [
        dict(r, gp_segment_id=COORDINATOR_CONTENT) for r in _rows(queries, "pg_stat_activity")]
    for row in activity:
        if row.get("gp_segment_id") == COORDINATOR_CONTENT and row["pid"] in blocking:
            row["blocking_pids"] = blocking[row["pid"]]
    prepared_rows = (_rows(queries, "prepared_xacts_all_segments")
                     or _rows(queries, "gp_prepared_xacts_all_segments"))
    snapshot = ClusterSnapshot(
        taken_at=_parse_ts(capture["captured_at"]), segments=segments, source=source,
        dist_xacts=[DistributedXact.from_row(r) for r in _rows(queries, "gp_distributed_xacts")],
        server={"version": capture.get("greenplum_version")})
    if source == "dispatch":
        snapshot.locks = _locks(_rows(queries, "pg_locks"), names)
        snapshot.edges = [WaitEdge.from_row(r) for r in _rows(queries, "gp_dist_wait_status")]
        snapshot.backends = [Backend.from_row(r) for r in activity]
        snapshot.prepared_xacts = [PreparedXact.from_row(r) for r in prepared_rows]
        return snapshot

    def coordinator(rows, key):
        return [r for r in rows if r.get(key) == COORDINATOR_CONTENT]

    snapshot.locks = _locks(coordinator(_rows(queries, "pg_locks"), "gp_segment_id"), names)
    snapshot.edges = [WaitEdge.from_row(r) for r in coordinator(_rows(queries, "gp_dist_wait_status"), "segid")]
    snapshot.backends = [Backend.from_row(r) for r in coordinator(activity, "gp_segment_id")]
    captured = {int(m.group(1)) for m in (re.match(r"utility_content(\d+)\.pg_locks$", q) for q in queries) if m}
    for content in sorted(captured):
        prefix = "utility_content%d." % content
        snapshot.locks += _locks(_rows(queries, prefix + "pg_locks"), names, content)
        snapshot.edges += [WaitEdge.from_row(r) for r in _rows(queries, prefix + "gp_dist_wait_status")]
        snapshot.backends += [Backend.from_row(r, content) for r in _rows(queries, prefix + "pg_stat_activity")]
        snapshot.prepared_xacts += [PreparedXact.from_row(r, content)
                                    for r in _rows(queries, prefix + "pg_prepared_xacts")]
    for seg in segments:
        if seg.is_primary and seg.content != COORDINATOR_CONTENT and seg.content not in captured:
            snapshot.unreachable[seg.content] = NO_UTILITY_CAPTURE
    return snapshot


def has_utility_capture(name):
    """True when the capture has utility-mode lock rows of at least one primary."""
    return any(re.match(r"utility_content\d+\.pg_locks$", q) for q in load_capture(name)["queries"])
