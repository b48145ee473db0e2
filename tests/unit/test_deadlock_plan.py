"""The deadlock planner (plan/deadlock_plan.py) and the liveness it relies on: each
cycle decided on its own, nothing planned when liveness or a segment's prepared
transactions are unknown, a cycle broken between the edges and the liveness read is
no cycle, and the snapshot reads the live gxids after every edge."""
import datetime

from ansible_collections.gpops.greenplum.plugins.module_utils.analyse.lock_analysis import analyse
from ansible_collections.gpops.greenplum.plugins.module_utils.collect import snapshot as snapshot_mod
from ansible_collections.gpops.greenplum.plugins.module_utils.common.records import DistributedXact
from ansible_collections.gpops.greenplum.plugins.module_utils.plan.deadlock_plan import plan_deadlocks
from ansible_collections.gpops.greenplum.plugins.module_utils.plan.reasons import Reason

from synthetic import at, qd_pid, session_of, snapshot_from_graph

START = datetime.datetime(2026, 11, 21, 5, 0, 0, tzinfo=datetime.timezone.utc)


def identified(gxids, extra):
    """qd_extra giving each gxid's QD a backend_start (its identity) and ``extra`` columns."""
    return {g: dict({"backend_start": START}, **extra.get(g, {})) for g in gxids}


def two_cycles(qd=None):
    # Cycle 1: 10 <-> 11 across contents 0 and 1; cycle 2: 20 <-> 21 across contents 0 and 1.
    edges = [(0, 10, 11, True), (1, 11, 10, True), (0, 20, 21, True), (1, 21, 20, True)]
    return snapshot_from_graph(edges, qd_extra=identified([10, 11, 20, 21], qd or {}),
                               read=["locks", "edges", "activity", "dist_xacts", "prepared_xacts"])


def codes(plan):
    return sorted({r.reason for r in plan.refusals}, key=lambda r: r.value)


def test_a_breakable_cycle_beside_a_protected_one_is_broken():
    snap = two_cycles({g: {"application_name": "billing"} for g in (10, 11)})
    found = analyse(snap, never_choose="application_name == 'billing'")
    plan = plan_deadlocks(snap, found)
    assert [(s.action, s.facts["gxid"], s.reason) for s in plan.steps] == [
        ("cancel", 21, Reason.DEADLOCK_VICTIM), ("terminate", 21, Reason.STILL_DEADLOCKED_AFTER_CANCEL)]
    assert codes(plan) == [Reason.PROTECTED_ALL_MEMBERS, Reason.PROTECTED_NEVER_CHOOSE]
    everyone = [r for r in plan.refusals if r.reason == Reason.PROTECTED_ALL_MEMBERS]
    assert [r.facts["gxids"] for r in everyone] == [[10, 11]]
    assert sorted(r.facts["gxid"] for r in plan.refusals if r.reason == Reason.PROTECTED_NEVER_CHOOSE) == [10, 11]


def test_the_guard_is_the_transaction_not_only_the_session():
    snap = two_cycles()
    plan = plan_deadlocks(snap, analyse(snap), terminate=False)
    assert [s.facts["gxid"] for s in plan.steps] == [21, 11]
    guard = plan.steps[0].guard
    assert guard.kind == "transaction"
    assert guard.facts == {"pid": qd_pid(21), "backend_start": START, "sess_id": session_of(21),
                           "gxid": 21, "xact_start": at(60)}


def test_each_protection_has_its_own_code():
    snap = two_cycles({11: {"wait_event": "SyncRep"}, 10: {"backend_type": "autovacuum worker"}})
    plan = plan_deadlocks(snap, analyse(snap))
    assert Reason.PROTECTED_SYNCREP_WAIT in codes(plan) and Reason.PROTECTED_NOT_CLIENT_BACKEND in codes(plan)
    assert {s.facts["gxid"] for s in plan.steps} == {21}


def test_unreadable_prepared_xacts_of_a_segment_forbid_every_signal():
    snap = two_cycles()
    snap.unknown = {"prepared_xacts": {1: "timeout: no answer within 5.0 s"}}
    plan = plan_deadlocks(snap, analyse(snap))
    assert plan.steps == ()
    assert [(r.reason, r.facts["content"]) for r in plan.refusals] == [(Reason.PREPARED_XACTS_UNKNOWN, 1)]
    assert "content 1" in plan.refusals[0].why


def test_unknown_liveness_forbids_every_signal():
    for read, unknown in ((["locks", "edges", "activity"], {}),
                          (["locks", "edges", "activity", "dist_xacts"], {"dist_xacts": {-1: "error: x"}})):
        snap = two_cycles()
        snap.read, snap.unknown = read, unknown
        found = analyse(snap)
        assert len(found.deadlocks) == 2  # the edges are still shown ...
        plan = plan_deadlocks(snap, found)
        assert plan.steps == () and codes(plan) == [Reason.LIVENESS_UNKNOWN]  # ... but nothing acts


def test_a_cycle_broken_between_the_edges_and_the_liveness_read_is_no_cycle():
    """The edges show 20 <-> 21; gxid 21 ended before gp_distributed_xacts was read
    (after the edges). Its coordinator's ``distributed xid`` lock row, read before the
    edges, still names it: the union with pg_locks would keep the cycle alive."""
    snap = two_cycles()
    snap.dist_xacts = [x for x in snap.dist_xacts if x.gxid != 21]
    assert any(r.locktype == "distributed xid" and r.transactionid == "21" for r in snap.locks)
    found = analyse(snap)
    assert [d["gxids"] for d in found.deadlocks] == [[10, 11]]
    assert [s.facts["gxid"] for s in plan_deadlocks(snap, found).steps] == [11, 11]


def test_dispatched_liveness_is_read_after_the_edges(monkeypatch):
    order = []

    class Conn:
        def close(self):
            order.append("close")

    monkeypatch.setattr(snapshot_mod, "query", lambda _conn, statement, *a: order.append(statement) or [])
    # Even if the item list names the live gxids first.
    snapshot_mod._dispatch(Conn(), ["dist_xacts", "locks", "edges", "activity"])
    statements = snapshot_mod.sql.DISPATCHED_SNAPSHOT
    assert order.index(statements["dist_xacts"]) > order.index(statements["edges"])
    assert order[-2] == statements["dist_xacts"]


def test_utility_liveness_is_read_after_every_node_s_edges(monkeypatch):
    """In utility mode the coordinator's gp_distributed_xacts is one more read once
    every node (run_on_nodes) has answered, not part of the parallel per-node reads."""
    events = []

    def fake_run_on_nodes(nodes, fn, timeout, *_a, **_kw):
        events.append(("nodes", tuple(sorted(n.content for n in nodes))))
        return {n.content: {"edges": []} for n in nodes}, {}

    def fake_last(params, server, items, timeout):
        events.append(("last", tuple(items)))
        return {"dist_xacts": [{"distributed_xid": "7", "gp_session_id": 3, "state": "None"}]}

    class Server:
        has_gp_stat_activity = True

        def as_dict(self):
            return {}

    segs = [dict(content=c, role="p", preferred_role="p", mode="s", status="u", dbid=c + 2,
                 hostname="h", address="h", port=6000 + c, datadir="/d") for c in (-1, 0)]
    from ansible_collections.gpops.greenplum.plugins.module_utils.common.records import SegmentConfig
    segments = [SegmentConfig.from_row(r) for r in segs]
    monkeypatch.setattr(snapshot_mod.catalog, "open_coordinator", lambda p, s, t: (object(), Server(), segments))
    monkeypatch.setattr(snapshot_mod, "run_with_deadline",
                        lambda fn, timeout, **_kw: (False, "timeout") if not events else (True, fn()))
    monkeypatch.setattr(snapshot_mod, "run_on_nodes", fake_run_on_nodes)
    monkeypatch.setattr(snapshot_mod, "_read_coordinator_last", fake_last)
    snap = snapshot_mod.take_snapshot({"statement_timeout": 5}, include=("edges", "dist_xacts"))
    assert events == [("nodes", (-1, 0)), ("last", ("dist_xacts",))]
    assert snap.source == "utility" and snap.dist_xacts == [DistributedXact(7, 3, "None")]
    assert snap.unknown == {}
