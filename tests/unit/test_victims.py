"""Victim choice: policies, protections, the never_choose filter, bad input."""
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.gpops.greenplum.plugins.module_utils.analyse.lock_analysis import analyse
from ansible_collections.gpops.greenplum.plugins.module_utils.plan.victims import (
    candidate, check_policy, compile_never_choose)
from ansible_collections.gpops.greenplum.plugins.module_utils.analyse.waitgraph import SnapshotIndex, WaitForGraph

from captures import snapshot_from_capture
from synthetic import backend, lock, prepared_xact, qd_pid, session_of, snapshot_from_graph

# gxid 1 waits for 2 on content 0, 2 for 3 on content 1, 3 for 1 on content 2.
TRIANGLE = [(0, 1, 2, True), (1, 2, 3, True), (2, 3, 1, True)]


def triangle(extra_locks=None, **kwargs):
    """The triangle; ``extra_locks``: gxid -> number of extra granted lock rows its
    session holds on segment 0 (the least_work measure)."""
    snap = snapshot_from_graph(TRIANGLE, **kwargs)
    for gxid, count in (extra_locks or {}).items():
        snap.locks += [lock(0, 30000 + gxid, session_of(gxid), "relation", "RowExclusiveLock", relation=50000 + i)
                       for i in range(count)]
    return snap


def victim_gxids(snap, **kwargs):
    return [v["gxid"] for v in analyse(snap, **kwargs).victims]


@pytest.mark.parametrize("policy,expected", [("youngest", 3), ("oldest", 1), ("least_work", 2)])
def test_policies(policy, expected):
    snap = triangle(extra_locks={1: 5, 2: 1, 3: 3})
    result = analyse(snap, policy=policy)
    (victim,) = result.victims
    assert (victim["gxid"], victim["sess_id"], victim["coordinator_pid"], victim["policy"], victim["deadlock"]) == (
        expected, session_of(expected), qd_pid(expected), policy, 1)


def test_least_work_counts_every_granted_row_of_the_session_and_ties_go_to_the_youngest():
    result = analyse(triangle(extra_locks={1: 2, 2: 2, 3: 2}), policy="least_work")
    (victim,) = result.victims
    assert victim["gxid"] == 3 and victim["candidate"]["locks_held"] == 3  # its distributed xid lock + 2
    assert "fewest locks held" in victim["reason"]


def test_disjoint_cycles_get_one_victim_each():
    snap = snapshot_from_graph([(0, 1, 2, True), (1, 2, 1, True), (0, 5, 6, True), (1, 6, 5, True)])
    result = analyse(snap)
    assert sorted((v["deadlock"], v["gxid"]) for v in result.victims) == [(1, 2), (2, 6)]


@pytest.mark.parametrize("expression", ["usename == 'etl'", "contains(application_name, 'critical')",
                                        "gxid == `3`"])
def test_never_choose_spares_the_matching_session(expression):
    snap = triangle(qd_extra={3: {"usename": "etl", "application_name": "critical-load"}})
    result = analyse(snap, never_choose=expression)
    (victim,) = result.victims
    assert victim["gxid"] == 2
    assert "never chosen: gxid 3 (matches never_choose)" in victim["reason"]


def test_never_choose_that_fails_at_run_time_protects_to_be_safe():
    result = analyse(triangle(), never_choose="contains(no_such_key, 'x')")
    assert result.victims == [] and len(result.unresolved) == 1
    assert "never_choose could not be evaluated" in result.unresolved[0]["reason"]


def test_every_member_protected_means_the_cycle_needs_a_person():
    result = analyse(triangle(), never_choose="usename == 'gpadmin'")
    assert result.verdict == "deadlock" and result.victims == []
    (unresolved,) = result.unresolved
    assert unresolved["needs_person"] and unresolved["gxids"] == [1, 2, 3] and unresolved["deadlock"] == 1
    assert result.deadlocks[0]["resolution"] == "needs_person"
    assert any(n.startswith("deadlock 1 needs a person") for n in result.notes)
    assert "need a person" in result.summary or "needs a person" in result.summary


@pytest.mark.parametrize("columns", [{"wait_event_type": "IPC", "wait_event": "SyncRep"},
                                     {"waiting": True, "waiting_reason": "replication"}])  # GP6
def test_session_waiting_in_syncrep_on_any_node_is_never_chosen(columns):
    snap = triangle()
    snap.backends.append(backend(0, 40003, session_of(3), state="idle in transaction", **columns))
    (victim,) = analyse(snap).victims
    assert victim["gxid"] == 2
    assert "gxid 3 (waiting for synchronous replication (SyncRep) on content 0" in victim["reason"]


def test_transaction_in_two_phase_commit_is_never_chosen():
    snap = triangle()
    prepared, rows = prepared_xact(1, 3, "700", session_of(3))
    snap.prepared_xacts.append(prepared)
    snap.locks += rows
    (victim,) = analyse(snap).victims
    assert victim["gxid"] == 2 and "gxid 3 (in two-phase commit: prepared on content 1" in victim["reason"]


def test_session_without_coordinator_backend_is_never_chosen():
    snap = triangle()
    snap.backends = [b for b in snap.backends if b.pid != qd_pid(3)]
    (victim,) = analyse(snap).victims
    assert victim["gxid"] == 2 and "gxid 3 (coordinator backend not found" in victim["reason"]


def test_background_process_is_never_chosen():
    snap = triangle(qd_extra={3: {"backend_type": "global deadlock detector"}})
    (victim,) = analyse(snap).victims
    assert victim["gxid"] == 2 and "not a client backend (global deadlock detector)" in victim["reason"]


def test_syncrep_and_two_phase_sessions_of_a_real_capture_are_protected():
    index = SnapshotIndex(snapshot_from_capture("mirror_down_syncrep_wait"))
    two_phase = candidate(index, 43)  # insert_multiseg_2pc: prepared on 3 segments, QE in SyncRep
    assert two_phase["coordinator_pid"] == 21207 and two_phase["in_syncrep"] and two_phase["in_two_phase_commit"]
    one_phase = candidate(index, 42)
    assert one_phase["coordinator_pid"] == 21205 and one_phase["in_syncrep"]
    assert not one_phase["in_two_phase_commit"] and one_phase["protected"]


def test_retry_commit_prepared_qd_is_protected():
    index = SnapshotIndex(snapshot_from_capture("prepared_xact_retry_commit_prepared"))
    committer = candidate(index, 38)
    assert committer["coordinator_pid"] == 20540 and committer["sess_id"] == 66  # its new session id
    assert committer["in_two_phase_commit"] and committer["protected"]


def test_unknown_policy_names_the_parameter():
    with pytest.raises(ValueError, match=r"^policy: unknown victim policy 'random'; allowed: youngest, oldest"):
        check_policy("random")


@pytest.mark.parametrize("expression,message", [
    ("usename ==", "never_choose: invalid JMESPath expression 'usename =='"),
    ("[?", "never_choose: invalid JMESPath expression"),
    (42, "never_choose: a JMESPath expression (string) is expected, got int")])
def test_bad_never_choose_names_the_parameter(expression, message):
    with pytest.raises(ValueError) as err:
        compile_never_choose(expression)
    assert str(err.value).startswith(message)


def test_empty_never_choose_is_no_filter():
    assert compile_never_choose(None) is None and compile_never_choose("") is None


def test_qd_is_told_apart_from_an_entry_db_reader_of_the_same_session():
    # Without the distributed xid lock row, the session id names two coordinator
    # backends; the QD is the one that started first.
    snap = triangle()
    snap.locks = [r for r in snap.locks if not (r.locktype == "distributed xid" and r.transactionid == "3")]
    snap.backends.append(backend(-1, 45003, session_of(3), backend_start="2026-11-21T05:59:59+00:00"))
    snap.backends = [b if b.pid != qd_pid(3) else backend(-1, qd_pid(3), session_of(3),
                                                          backend_start="2026-11-21T05:00:00+00:00")
                     for b in snap.backends]
    (victim,) = analyse(snap).victims
    assert (victim["gxid"], victim["coordinator_pid"]) == (3, qd_pid(3))


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2), st.integers(1, 5), st.integers(1, 5), st.booleans()), max_size=12),
       st.sets(st.integers(1, 5)), st.sampled_from(["youngest", "oldest", "least_work"]))
def test_protected_transactions_are_never_victims_and_every_cycle_is_accounted_for(edges, protected, policy):
    expression = "contains(`%s`, gxid)" % json.dumps(sorted(protected))
    result = analyse(snapshot_from_graph(edges), policy=policy, never_choose=expression)
    assert not {v["gxid"] for v in result.victims} & protected
    graph = WaitForGraph(edges).reduce()
    for victim in result.victims:
        graph.remove_vertex(victim["gxid"])
    for unresolved in result.unresolved:
        assert set(unresolved["gxids"]) <= protected and unresolved["needs_person"]
        for gxid in unresolved["gxids"]:
            graph.remove_vertex(gxid)
    assert graph.reduce().is_empty()
    for d in result.deadlocks:
        if any(u["deadlock"] == d["id"] for u in result.unresolved):
            assert d["resolution"] == "needs_person"
        else:
            mine = any(v["deadlock"] == d["id"] for v in result.victims)
            assert d["resolution"] == ("victim" if mine else "released_by_other_victim")
