"""Snapshot building from real Greenplum 7 captures (tests/fixtures/gp7), with the
same code the live collection uses: the dispatched variant (coordinator rows that
include every primary) and the utility-mode variant (rows per node)."""
import json
import os

import pytest

from ansible_collections.gpops.greenplum.plugins.module_utils.collect import snapshot as snap
from ansible_collections.gpops.greenplum.plugins.module_utils.collect.connection import parse_server_version
from ansible_collections.gpops.greenplum.plugins.module_utils.common.records import rows_as_dicts

# As tests/conftest.py (not imported: with tests/integration collected too, the module
# name ``conftest`` may be the other one).
SHARED_FIXTURES = os.environ.get("GPOPS_FIXTURES", os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "gp7"))
needs_captures = pytest.mark.skipif(not os.path.isdir(SHARED_FIXTURES),
                                    reason="no captures in " + SHARED_FIXTURES)
pytestmark = needs_captures


def capture(name):
    """A capture's queries as rows (dicts by column name)."""
    with open(os.path.join(SHARED_FIXTURES, name + ".json")) as f:
        data = json.load(f)
    return {q: rows_as_dicts(v["columns"], v["rows"]) for q, v in data["queries"].items()
            if v.get("columns")}


def dispatched(q):
    """The dispatched-query rows of a capture, as ``snapshot_from_rows`` takes them."""
    return dict(locks=q["pg_locks"], edges=q["gp_dist_wait_status"],
                activity=q["gp_stat_activity"], dist_xacts=q["gp_distributed_xacts"])


def capture_snapshot(name):
    """A capture's dispatched snapshot, built by the snapshot layer's own code."""
    q = capture(name)
    return snap.snapshot_from_rows(q["gp_segment_configuration"], dispatched=dispatched(q))


@pytest.fixture(scope="module")
def deadlock():
    return capture("global_deadlock_2seg")


def test_dispatched_snapshot_of_a_global_deadlock(deadlock):
    q = deadlock
    relations = {(13991, r["oid"]): "public." + r["relname"] for r in q["relations"]}
    s = snap.snapshot_from_rows(q["gp_segment_configuration"], dispatched=dispatched(q),
                                relations=relations)
    assert s.source == "dispatch" and s.unreachable == {}
    assert len(s.locks) == len(q["pg_locks"]) and len(s.backends) == len(q["gp_stat_activity"])
    assert {lock.content for lock in s.locks} == {-1, 0, 1, 2}
    # Session A = sess 10 / gxid 17, B = sess 11 / gxid 18 (capture description).
    assert sorted((e.content, e.waiter_gxid, e.holder_gxid, e.solid) for e in s.edges) == [
        (0, 18, 17, True), (1, 17, 18, True)]
    waiting = sorted((lock.content, lock.pid, lock.mppsessionid, lock.mode)
                     for lock in s.locks if not lock.granted)
    assert waiting == [(0, 19892, 11, "ShareLock"), (1, 19901, 10, "ShareLock")]
    qds = {b.pid: b.sess_id for b in s.backends if b.content == -1 and b.sess_id in (10, 11)}
    assert qds == {19883: 10, 19885: 11}
    assert {x.gxid: x.gp_session_id for x in s.dist_xacts if x.gxid} == {17: 10, 18: 11}
    # One OID per table on every node: the coordinator's catalog names the segments' rows.
    on_t01 = {lock.content: lock.relation_name for lock in s.locks if lock.relation == 16398}
    assert on_t01 == {-1: "public.t01", 0: "public.t01", 1: "public.t01"}
    assert all(lock.relation_name is None for lock in s.locks if lock.relation not in (None, 16398))
    json.dumps(s.as_dict())


def test_utility_snapshot_takes_rows_per_node_and_keeps_unreachable(deadlock):
    q = deadlock
    nodes = {c: {"locks": q["utility_content%d.pg_locks" % c],
                 "edges": q["utility_content%d.gp_dist_wait_status" % c],
                 "activity": q["utility_content%d.pg_stat_activity" % c]}
             for c in (0, 1)}
    s = snap.snapshot_from_rows(q["gp_segment_configuration"], dispatched=None, nodes=nodes,
                                relations={(13991, 16398): "public.t01"},
                                unreachable={2: "timeout: no answer within 5.0 s"})
    assert s.source == "utility"
    assert s.unreachable == {2: "timeout: no answer within 5.0 s"}
    assert {lock.content for lock in s.locks} == {0, 1}
    assert {b.content for b in s.backends} == {0, 1}  # utility rows carry no gp_segment_id
    assert sorted((e.content, e.waiter_gxid, e.holder_gxid) for e in s.edges) == [
        (0, 18, 17), (1, 17, 18)]
    assert {lock.relation_name for lock in s.locks if lock.relation == 16398} == {"public.t01"}
    assert s.as_dict()["unreachable"] == {"2": "timeout: no answer within 5.0 s"}


def test_dispatched_rows_win_and_node_rows_fill_the_rest(deadlock):
    q = deadlock
    nodes = {0: {"locks": q["utility_content0.pg_locks"], "prepared_xacts": [
        dict(transaction="600", gid="36", prepared="2026-11-21T05:41:00+00:00",
             owner="gpadmin", database="postgres")]}}
    s = snap.snapshot_from_rows(q["gp_segment_configuration"], dispatched=dispatched(q), nodes=nodes)
    assert len(s.locks) == len(q["pg_locks"])
    assert [(p.content, p.gid, p.gxid) for p in s.prepared_xacts] == [(0, "36", 36)]


def test_blocking_pids_attach_to_waiting_backends_of_their_node():
    q = capture("blocking_chain_lock_queue")
    blocking = {r["pid"]: r["blocking_pids"] for r in q["pg_blocking_pids"]}
    s = snap.snapshot_from_rows(q["gp_segment_configuration"], dispatched=dispatched(q),
                                nodes={-1: {"blocking_pids": blocking}})
    on_qd = {b.pid: b.blocking_pids for b in s.backends if b.content == -1 and b.pid in blocking}
    # The SELECTs queue behind the waiting LOCK (20231), which waits for the holder (20229).
    assert on_qd[20231] == (20229,)
    assert on_qd[20233] == (20231,) and on_qd[20235] == (20231,)
    assert all(b.blocking_pids is None for b in s.backends if b.content != -1)


def test_relation_keys_and_waiting_pids_read_rows_by_name():
    rows = [dict(pid=5, granted=False, relation=16398, database=13991),
            dict(pid=6, granted=True, relation=1259, database=0),
            dict(pid=None, granted=True, relation=None, database=None),
            dict(pid=7, granted=False, relation=None, database=None)]
    assert snap._relation_keys(rows) == {13991: {16398}, 0: {1259}}
    assert snap._waiting_pids(rows) == [5, 7]


@pytest.fixture(scope="module")
def deadlock_snapshot(deadlock):
    q = deadlock
    return snap.snapshot_from_rows(q["gp_segment_configuration"], dispatched=dispatched(q),
                                   relations={(13991, 16398): "public.t01"})


def test_filter_waiting_only(deadlock_snapshot):
    out = snap.filter_records(deadlock_snapshot, waiting_only=True)
    assert {(lock.content, lock.pid) for lock in out["locks"]} == {(0, 19892), (1, 19901)}
    assert len(out["edges"]) == 2
    # The waiting QEs and every backend of their sessions (the QDs among them).
    pids = {(b.content, b.pid) for b in out["backends"]}
    assert {(0, 19892), (1, 19901), (-1, 19883), (-1, 19885)} <= pids
    assert all(b.sess_id in (10, 11) for b in out["backends"])


def test_filter_session_and_content(deadlock_snapshot):
    out = snap.filter_records(deadlock_snapshot, session=10, content=[1])
    assert out["locks"] and all(lock.mppsessionid == 10 and lock.content == 1 for lock in out["locks"])
    assert [(e.content, e.waiter_sessionid) for e in out["edges"]] == [(1, 10)]
    assert {(b.content, b.pid) for b in out["backends"]} == {(1, 19901)}


@pytest.mark.parametrize("relation,count", [("t01", 8), ("public.t01", 8), ("other.t01", 0),
                                            ("t02", 0)])
def test_filter_relation(deadlock_snapshot, relation, count):
    out = snap.filter_records(deadlock_snapshot, relation=relation)
    assert len(out["locks"]) == count
    assert all(lock.relation_name == "public.t01" for lock in out["locks"])
    if not count:
        assert out["edges"] == [] and out["backends"] == []


def test_no_filter_keeps_everything(deadlock_snapshot):
    out = snap.filter_records(deadlock_snapshot)
    assert (len(out["locks"]), len(out["edges"]), len(out["backends"])) == (
        len(deadlock_snapshot.locks), len(deadlock_snapshot.edges), len(deadlock_snapshot.backends))


GP6 = parse_server_version("PostgreSQL 9.4.26 (Greenplum Database 6.25.3 build commit:367edc6b)")
GP7 = parse_server_version("PostgreSQL 12.12 (Greenplum Database 7.0.0 build commit:0a7a3566)")


def test_plan_items_gp7_dispatch_then_per_node_lookups_only():
    dispatched, local = snap.plan_items(GP7, snap.INCLUDE_ALL)
    assert dispatched == ["locks", "edges", "activity", "dist_xacts"]
    # pg_postmaster_start_time() in utility mode: a QE reports its QD's (cdbgang.c)
    assert local == {True: ["prepared_xacts", "postmaster_start"], False: ["prepared_xacts", "postmaster_start"]}


def test_plan_items_gp6_reads_activity_on_every_node():
    dispatched, local = snap.plan_items(GP6, snap.INCLUDE_ALL)
    assert dispatched == ["locks", "edges", "dist_xacts"]
    assert local[False] == ["activity", "prepared_xacts", "postmaster_start"]


def test_plan_items_after_a_failed_dispatch_reads_everything_per_node():
    _dispatched, local = snap.plan_items(GP7, snap.INCLUDE_ALL, dispatched_ok=False)
    assert local[True] == ["locks", "edges", "activity", "dist_xacts", "prepared_xacts", "postmaster_start"]
    assert local[False] == ["locks", "edges", "activity", "prepared_xacts", "postmaster_start"]


def test_plan_items_for_a_poll_of_the_wait_for_graph():
    assert snap.plan_items(GP7, ("edges", "dist_xacts")) == (
        ["edges", "dist_xacts"], {True: [], False: []})
