"""The wait-scoped collection (``snapshot.take_snapshot(scope='waits')``) gives the
same findings, victims and blocking trees as the full rows, on every real GP7 capture
(tests/fixtures/gp7) and on the synthetic benchmark's clusters.

The old path: every row of the capture (``captures.snapshot_from_capture``). The new
path: the rows ``sql.WAIT_LOCKS`` / ``sql.ACTIVITY_INVOLVED`` would return, made by
their Python twins ``snapshot.select_wait_rows`` / ``select_activity_rows`` from the
same capture (the SQL itself is compared with them on real Greenplum 7 in
tests/gp7/test_wait_scope_sql.py), built by ``snapshot.snapshot_from_rows`` like a live
collection."""
import datetime
import glob
import importlib.util
import json
import os
import re

import pytest

from ansible_collections.gpops.greenplum.plugins.module_utils.analyse import lock_analysis as analysis
from ansible_collections.gpops.greenplum.plugins.module_utils.collect import snapshot as snap
from ansible_collections.gpops.greenplum.plugins.module_utils.collect import sql
from ansible_collections.gpops.greenplum.plugins.module_utils.analyse import hang_classes
from ansible_collections.gpops.greenplum.plugins.module_utils.common.records import COORDINATOR_CONTENT, _parse_ts

from captures import has_utility_capture, load_capture, snapshot_from_capture
from conftest import ROOT, SHARED_FIXTURES
from triage_inputs import facts_from_capture

ALL_CAPTURES = sorted(os.path.basename(p)[:-5] for p in glob.glob(os.path.join(SHARED_FIXTURES, "*.json"))
                      if "pg_locks" in load_capture(os.path.basename(p)[:-5])["queries"])
CASES = [(n, s) for n in ALL_CAPTURES for s in (["dispatch", "utility"] if has_utility_capture(n) else ["dispatch"])]
OPTIONS = (hang_classes.TriageOptions(), hang_classes.TriageOptions(idle_in_transaction_age=0.0, wait_threshold=1.0))


def _rows(queries, name):
    query = queries.get(name)
    if not query or query.get("error"):
        return []
    return [dict(zip(query["columns"], row)) for row in query["rows"]]


def _named(rows, names):
    return [dict(r, relation_name=names.get(r.get("relation"))) for r in rows]


def waits_snapshot_from_capture(name, source, idle_age):
    """The snapshot a ``waits`` collection gives of the capture (``source`` as in
    ``captures.snapshot_from_capture``); ``idle_age``: triage's idle threshold (s)."""
    capture = load_capture(name)
    q = capture["queries"]
    taken_at = _parse_ts(capture["captured_at"])
    names = {r["oid"]: r["relname"] for r in _rows(q, "relations")}
    blocking = {r["pid"]: r["blocking_pids"] for r in _rows(q, "pg_blocking_pids")}
    activity = _rows(q, "gp_stat_activity") or [
        dict(r, gp_segment_id=COORDINATOR_CONTENT) for r in _rows(q, "pg_stat_activity")]
    before = taken_at - datetime.timedelta(seconds=idle_age - 1.0)
    idle = {r["sess_id"] for r in activity if r["gp_segment_id"] == COORDINATOR_CONTENT
            and (r["state"] or "").startswith("idle in transaction") and r["sess_id"] > 0
            and _parse_ts(r["state_change"]) <= before}
    locks, edges = _rows(q, "pg_locks"), _rows(q, "gp_dist_wait_status")
    dxacts = _rows(q, "gp_distributed_xacts")
    prepared = _rows(q, "prepared_xacts_all_segments") or _rows(q, "gp_prepared_xacts_all_segments")
    common = dict(relations={}, server={"version": capture.get("greenplum_version")}, taken_at=taken_at)
    segments = _rows(q, "gp_segment_configuration")
    if source == "dispatch":
        wait_rows = snap.select_wait_rows(_named(locks, names), idle)
        dispatched = {"locks": wait_rows, "edges": edges, "dist_xacts": dxacts,
                      "activity": snap.select_activity_rows(activity, wait_rows, edges, dxacts, idle)}
        nodes = {COORDINATOR_CONTENT: {"blocking_pids": blocking}}
        nodes.update({c: {"prepared_xacts": [r for r in prepared if r.get("segid", r.get("gp_segment_id")) == c]}
                      for c in {r.get("segid", r.get("gp_segment_id")) for r in prepared}})
        return snap.snapshot_from_rows(segments, dispatched=dispatched, nodes=nodes, **common)
    nodes = {}
    coordinator_locks = [r for r in locks if r["gp_segment_id"] == COORDINATOR_CONTENT]
    nodes[COORDINATOR_CONTENT] = {
        "locks": snap.select_wait_rows(_named(coordinator_locks, names), idle),
        "edges": [e for e in edges if e["segid"] == COORDINATOR_CONTENT],
        "activity": [r for r in activity if r["gp_segment_id"] == COORDINATOR_CONTENT],
        "dist_xacts": dxacts, "blocking_pids": blocking}
    captured = sorted(int(m.group(1)) for m in (re.match(r"utility_content(\d+)\.pg_locks$", k) for k in q) if m)
    for content in captured:
        prefix = "utility_content%d." % content
        node_locks = [dict(r, gp_segment_id=content) for r in _rows(q, prefix + "pg_locks")]
        wait_rows = snap.select_wait_rows(_named(node_locks, names), idle)
        node_edges = _rows(q, prefix + "gp_dist_wait_status")
        pairs, _s = snap._involved(snap._wanted(wait_rows), node_edges, content)
        nodes[content] = {
            "locks": wait_rows, "edges": node_edges, "prepared_xacts": _rows(q, prefix + "pg_prepared_xacts"),
            "activity": [r for r in _rows(q, prefix + "pg_stat_activity")
                         if (content, r["pid"]) in pairs or snap._in_syncrep(r)]}
    unreachable = {s["content"]: "no utility-mode capture of this content" for s in segments
                   if s["role"] == "p" and s["content"] not in captured + [COORDINATOR_CONTENT]}
    return snap.snapshot_from_rows(segments, dispatched=None, nodes=nodes, unreachable=unreachable, **common)


def outcome(snapshot, name, options, policy):
    result = analysis.analyse(snapshot, policy=policy)
    findings = [f.as_dict() for f in hang_classes.classify(snapshot, result, facts_from_capture(name), options)]
    out = result.as_dict()
    return json.loads(json.dumps({"analysis": out, "findings": findings}, sort_keys=True, default=str))


@pytest.mark.parametrize("policy", ["youngest", "least_work"])
@pytest.mark.parametrize("options", OPTIONS, ids=["defaults", "idle0"])
@pytest.mark.parametrize("name,source", CASES)
def test_waits_scope_gives_the_same_diagnosis_as_every_row(name, source, options, policy):
    full = snapshot_from_capture(name, source)
    waits = waits_snapshot_from_capture(name, source, options.idle_in_transaction_age)
    assert waits.scope == "waits"
    assert len(waits.locks) <= len(full.locks)
    assert outcome(waits, name, options, policy) == outcome(full, name, options, policy)


def test_the_waits_scope_reads_fewer_rows_and_counts_every_one():
    """On a capture with waits, most granted rows are not read, yet every row is counted."""
    full = snapshot_from_capture("blocking_chain_lock_queue")
    waits = waits_snapshot_from_capture("blocking_chain_lock_queue", "dispatch", 300.0)
    counts = waits.as_dict()["counts"]
    assert counts["lock_rows"] == len(full.locks)
    assert counts["waiting_lock_rows"] == sum(1 for r in full.locks if not r.granted) > 0
    assert counts["lock_rows_read"] == len(waits.locks) < len(full.locks)
    assert len(waits.backends) < len(full.backends)


def _bench():
    spec = importlib.util.spec_from_file_location("bench_run", os.path.join(ROOT, "bench", "run.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmark_cluster_same_diagnosis_both_ways():
    """The benchmark's cluster (10,000 rows, 10 segments): the same analysis and findings
    from the received rows as from every row (bench/run.py checks each size the same way)."""
    bench = _bench()
    cluster = bench.build(10000, 10)
    full, waits = bench.snapshots(cluster)
    assert waits.scope == "waits" and len(waits.locks) < len(full.locks) / 10
    for policy in ("youngest", "least_work"):
        assert bench.outcome(waits, policy) == bench.outcome(full, policy)


def test_shared_form_count_only_row_gives_counts_and_no_lock():
    """sql.WAIT_LOCKS_SHARED on a cluster where nothing waits: one row, lock columns NULL,
    the counts as JSON (a healthy cluster's gp_hang_info once failed on that row)."""
    row = {c: None for c in ("locktype", "pid", "mppsessionid", "granted", "gp_segment_id")}
    row.update(wanted=None, node_counts=[{"gp_segment_id": -1, "node_rows": 5, "node_waiting": 0},
                                         {"gp_segment_id": 0, "node_rows": 7, "node_waiting": 0}],
               session_counts=[{"mppsessionid": 12, "session_granted": 9}, {"mppsessionid": 0, "session_granted": 3}])
    s = snap.snapshot_from_rows([], dispatched={"locks": [row]}, taken_at=datetime.datetime.now(datetime.timezone.utc))
    assert s.scope == "waits" and s.locks == []
    counts = s.counts()
    assert (counts["lock_rows"], counts["waiting_lock_rows"], counts["lock_rows_read"]) == (12, 0, 0)
    assert s.session_lock_counts == {12: 9, 0: 3}


def _one_scan_rows(lock_rows, sessions):
    """What sql.NODE_WAIT_LOCKS / PRIMARIES_WAIT_LOCKS return for ``lock_rows``, made from
    select_wait_rows: the wanted rows with the count columns NULL, then the count rows
    (pg_locks columns NULL) of each node and each session."""
    counts = {c: None for c in sql.COUNT_COLUMNS}
    keep = [dict({k: v for k, v in r.items() if k not in snap.WAIT_COLUMNS}, wanted=True, **counts)
            for r in snap.select_wait_rows(lock_rows, sessions) if r["wanted"]]
    nodes, sess = {}, {}
    for r in lock_rows:
        n = nodes.setdefault(r["gp_segment_id"], [0, 0])
        n[0] += 1
        n[1] += 0 if r["granted"] else 1
        sess[r["mppsessionid"]] = sess.get(r["mppsessionid"], 0) + (1 if r["granted"] else 0)
    blank = {c: None for c in lock_rows[0]} if lock_rows else {}
    return keep + [dict(blank, wanted=None, count_segment=n, count_session=None, by_session=0, lock_rows=c[0],
                        waiting_rows=c[1], granted_rows=None) for n, c in nodes.items()] + [
        dict(blank, wanted=None, count_segment=None, count_session=s, by_session=1, lock_rows=None,
             waiting_rows=None, granted_rows=g) for s, g in sess.items()]


@pytest.mark.parametrize("name", ALL_CAPTURES)
def test_one_scan_rows_fold_into_the_shared_forms_rows_and_counts(name):
    """snapshot.fold_count_rows over the rows of the one-scan statements (Greenplum 7's
    split read): the wanted rows as pg_locks rows, and the counts wait_counts reads as
    it reads sql.WAIT_LOCKS_SHARED's."""
    rows = _rows(load_capture(name)["queries"], "pg_locks")
    sessions = {r["mppsessionid"] for r in rows[:3]}
    folded = snap.fold_count_rows(_one_scan_rows(rows, sessions))
    expected = snap.select_wait_rows(rows, sessions)
    assert [{k: v for k, v in r.items() if k != "wanted"} for r in folded[:-1]] == [
        {k: v for k, v in r.items() if k not in snap.WAIT_COLUMNS} for r in expected if r["wanted"]]
    assert all(r["wanted"] for r in folded[:-1]) and folded[-1]["gp_segment_id"] is None
    assert snap.wait_counts(folded) == snap.wait_counts(expected)


def test_one_scan_count_rows_of_an_idle_node():
    """A node where nothing waits: no wanted row, one count-only row with its counts."""
    folded = snap.fold_count_rows([
        dict(locktype=None, pid=None, gp_segment_id=None, wanted=None, count_segment=-1, count_session=None,
             by_session=0, lock_rows=5, waiting_rows=0, granted_rows=None),
        dict(locktype=None, pid=None, gp_segment_id=None, wanted=None, count_segment=None, count_session=12,
             by_session=1, lock_rows=None, waiting_rows=None, granted_rows=5)])
    assert snap._wanted(folded) == []
    assert snap.wait_counts(folded) == ({-1: {"rows": 5, "waiting": 0}}, {12: 5})
