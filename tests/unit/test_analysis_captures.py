"""analyse() on real Greenplum 7 captures (tests/fixtures/gp7): each gives the
verdict its description states, through the dispatched queries and, where the
capture has them, through the utility-mode queries of each primary."""
import dataclasses
import glob
import json
import os
import re

import pytest

from ansible_collections.gpops.greenplum.plugins.module_utils.analyse.lock_analysis import analyse

from captures import NO_UTILITY_CAPTURE, has_utility_capture, load_capture, snapshot_from_capture
from conftest import SHARED_FIXTURES
from synthetic import snapshot_from_graph

ALL_CAPTURES = sorted(os.path.basename(p)[:-5] for p in glob.glob(os.path.join(SHARED_FIXTURES, "*.json"))
                      if "pg_locks" in load_capture(os.path.basename(p)[:-5])["queries"])


def sources(name):
    return ["dispatch", "utility"] if has_utility_capture(name) else ["dispatch"]


def both(*names):
    return [(n, s) for n in names for s in sources(n)]


def run(name, source="dispatch", **kwargs):
    result = analyse(snapshot_from_capture(name, source), **kwargs)
    json.dumps(result.as_dict())  # what a module returns must serialize
    return result


def only_tree(result):
    assert len(result.blocking_trees) == 1, result.blocking_trees
    return result.blocking_trees[0]


@pytest.mark.parametrize("name,source", [(n, s) for n in ALL_CAPTURES for s in sources(n)])
def test_every_capture_analyses_to_serializable_data(name, source):
    result = run(name, source).as_dict()
    assert result["verdict"] in ("deadlock", "blocking", "none")
    assert result["complete"] == (source == "dispatch")


@pytest.mark.parametrize("name,source", both("global_deadlock_2seg"))
def test_global_deadlock_2seg_youngest_victim_is_session_b(name, source):
    result = run(name, source)
    assert result.verdict == "deadlock"
    (deadlock,) = result.deadlocks
    assert deadlock["gxids"] == [17, 18]
    assert sorted((e["content"], e["waiter"], e["holder"], e["kind"], e["locktype"], e["mode"],
                   e["relation_name"]) for e in deadlock["edges"]) == [
        (0, 18, 17, "solid", "transactionid", "ShareLock", "t01"),
        (1, 17, 18, "solid", "transactionid", "ShareLock", "t01")]
    assert {(v["gxid"], v["sess_id"], v["coordinator_pid"], v["application_name"])
            for v in deadlock["vertices"]} == {(17, 10, 19883, "scenario_A"), (18, 11, 19885, "scenario_B")}
    (victim,) = result.victims
    assert (victim["gxid"], victim["sess_id"], victim["coordinator_pid"], victim["policy"]) == (
        18, 11, 19885, "youngest")
    assert "largest gxid 18" in victim["reason"]
    assert result.blocking_trees == []


def test_global_deadlock_2seg_oldest_victim_is_session_a():
    (victim,) = run("global_deadlock_2seg", policy="oldest").victims
    assert (victim["gxid"], victim["sess_id"], victim["coordinator_pid"]) == (17, 10, 19883)


def test_global_deadlock_2seg_least_work_counts_locks_cluster_wide():
    (victim,) = run("global_deadlock_2seg", policy="least_work").victims
    # Each session holds 10 granted rows (3 on the coordinator, 3 and 4 on the two
    # segments, the tuple lock on the segment where it waits): a tie goes to the youngest.
    assert victim["candidate"]["locks_held"] == 10 and victim["gxid"] == 18


def test_deadlock_explanation_names_each_holder_by_its_own_session():
    """GDD's log prints the waiter's session for the holder ("blocked by p23560 of
    dtx60 con160": con160 is the waiter's); ours names gxid 60's session, 159."""
    name = "global_deadlock_2seg_gdd_resolved"
    log = " ".join(load_capture(name)["log_excerpts"]["coordinator"])
    assert "blocked by p23560 of dtx60 con160" in log
    result = run(name)
    (deadlock,) = result.deadlocks
    sessions = {v["gxid"]: v["sess_id"] for v in deadlock["vertices"]}
    assert sessions == {60: 159, 61: 160}
    for edge in deadlock["edges"]:
        assert "held by gxid %d (session %d," % (edge["holder"], sessions[edge["holder"]]) in deadlock["explanation"]
        assert "gxid %d (session %d, coordinator pid" % (edge["waiter"], sessions[edge["waiter"]]) in deadlock[
            "explanation"]
    assert "held by gxid 60 (session 160" not in deadlock["explanation"]
    # And our victim is the one Greenplum's detector cancelled: "61(Coordinator Pid: 23558)".
    (victim,) = result.victims
    assert re.search(r"cancelled to break global deadlock: %d\(Coordinator Pid: %d\)"
                     % (victim["gxid"], victim["coordinator_pid"]), log)


def test_a_cycle_on_one_segment_is_reported_as_local_not_global():
    """isolation2 gdd/local-deadlock-03 on real GP7 (tests/gp7/test_gdd_isolation2.py): 10
    and 30 wait for each other on seg 1 only. GDD's rules find it too, but it is a local
    deadlock (that node's own check breaks it after deadlock_timeout): saying that "no
    single node sees" it was wrong."""
    local = analyse(snapshot_from_graph([(1, 17, 19, True), (1, 19, 17, True), (0, 17, 18, True)]))
    (deadlock,) = local.deadlocks
    assert (deadlock["scope"], deadlock["contents"]) == ("local", [1])
    assert deadlock["explanation"].startswith("Local deadlock on content 1 between 2 distributed transactions")
    assert "no single node" not in deadlock["explanation"]
    assert local.summary.startswith("1 local deadlock (content 1); victim: gxid 19 ")
    both = analyse(snapshot_from_graph([(1, 17, 19, True), (1, 19, 17, True), (0, 5, 6, True), (2, 6, 5, True)]))
    assert [(d["scope"], d["contents"]) for d in both.deadlocks] == [("global", [0, 2]), ("local", [1])]
    assert both.deadlocks[0]["explanation"].startswith(
        "Global deadlock between 2 distributed transactions that no single node sees: ")
    assert both.summary.startswith("1 global deadlock, 1 local deadlock (content 1); victims: gxid 19 ")


@pytest.mark.parametrize("name", ["global_deadlock_2seg__after_cancel", "healthy_baseline",
                                  "healthy_after_restore", "mirror_down_syncrep_wait__after_recovery"])
def test_quiet_cluster_is_none(name):
    result = run(name)
    assert (result.verdict, result.deadlocks, result.victims, result.blocking_trees) == ("none", [], [], [])
    assert result.summary == "no lock wait: no deadlock and no blocking chain"


def test_quiet_verdict_with_missing_nodes_does_not_claim_health():
    result = run("healthy_baseline", "utility")
    assert result.verdict == "none" and not result.complete
    assert result.unreachable == {1: NO_UTILITY_CAPTURE, 2: NO_UTILITY_CAPTURE}
    assert "did not answer" in result.summary and "no deadlock" not in result.summary
    assert sum("content 1 did not answer" in n or "content 2 did not answer" in n for n in result.notes) == 2


@pytest.mark.parametrize("name,source", both("dotted_edge_no_deadlock"))
def test_dotted_edge_is_no_deadlock_and_c_is_the_root(name, source):
    result = run(name, source)
    assert result.verdict == "blocking" and result.deadlocks == [] and result.victims == []
    assert [(r["rule"], r["edge"]["content"], r["edge"]["waiter"], r["edge"]["holder"], r["edge"]["kind"])
            for r in result.graph["reduction"]] == [
        (1, 1, 24, 22, "solid"), (3, 1, 23, 24, "dotted"), (1, 0, 24, 23, "solid")]
    tree = only_tree(result)
    assert (tree["root"]["sess_id"], tree["root"]["coordinator_pid"]) == (18, 20050)  # session C
    assert tree["root"]["state"] == "idle in transaction"
    assert [(w["sess_id"], w["depth"]) for w in tree["waiters"]] == [(17, 1), (16, 2)]


@pytest.mark.parametrize("name,source", both("dotted_edge_no_deadlock__after_c_rollback"))
def test_dotted_edge_after_c_rollback_is_a_deadlock_broken_by_cancelling_b(name, source):
    outcome = load_capture(name)["outcome"]
    result = run(name, source)
    assert result.verdict == "deadlock"
    (victim,) = result.victims
    assert (victim["gxid"], victim["coordinator_pid"]) == (outcome["victim_gxid"], outcome["victim_coordinator_pid"])
    assert (victim["gxid"], victim["sess_id"], victim["coordinator_pid"]) == (24, 17, 20048)


def test_dotted_edge_after_cancel_is_no_deadlock():
    assert run("dotted_edge_no_deadlock__after_cancel").deadlocks == []


def test_blocking_chain_root_is_the_idle_in_transaction_holder():
    result = run("blocking_chain")
    assert result.verdict == "blocking" and result.victims == []
    tree = only_tree(result)
    root = tree["root"]
    assert (root["sess_id"], root["coordinator_pid"], root["state"]) == (23, 20166, "idle in transaction")
    assert root["idle_in_transaction_since"] == "2026-11-21T05:42:05.229984+00:00"
    assert sorted((w["sess_id"], w["coordinator_pid"], w["depth"]) for w in tree["waiters"]) == [
        (24, 20168, 1), (25, 20170, 1), (26, 20172, 1)]
    assert tree["direct_waiters"] == tree["waiter_count"] == 3
    assert 4.9 < tree["longest_wait_s"] < 5.1  # waiter1 started 5 s before the capture
    assert {x["relation_name"] for w in tree["waiters"] for x in w["waits"]} == {"t"}
    assert tree["explanation"].startswith(root["label"] + " blocks 3 sessions (3 directly)")
    assert "idle in transaction since 2026-11-21T05:42:05.229984+00:00" in tree["explanation"]
    # The waiters are read-only statements (gxid 0): not in the wait-for graph, said so.
    assert result.graph["edges"] == 0 and len(result.graph["dropped_edges"]) == 3
    assert any("3 wait edges left out" in n for n in result.notes)


def strip_blocking_pids(snapshot):
    snapshot.backends = [dataclasses.replace(b, blocking_pids=None) for b in snapshot.backends]
    return snapshot


@pytest.mark.parametrize("blocking_pids", ["collected", "inferred"])
def test_lock_queue_waiters_are_under_the_waiting_ddl(blocking_pids):
    snapshot = snapshot_from_capture("blocking_chain_lock_queue")
    if blocking_pids == "inferred":
        snapshot = strip_blocking_pids(snapshot)
        assert all(b.blocking_pids is None for b in snapshot.backends)
    result = analyse(snapshot)
    assert result.verdict == "blocking"
    tree = only_tree(result)
    assert (tree["root"]["sess_id"], tree["root"]["coordinator_pid"]) == (29, 20229)
    waiters = {w["sess_id"]: w for w in tree["waiters"]}
    assert sorted(waiters) == [30, 31, 32]
    ddl = waiters[30]
    assert ddl["depth"] == 1 and [(x["kind"], x["mode"]) for x in ddl["waits"]] == [("holds", "AccessExclusiveLock")]
    for select in (31, 32):  # no edge in gp_dist_wait_status: only the lock queue shows them
        assert waiters[select]["depth"] == 2
        assert [(x["kind"], x["mode"], x["blocked_by"]) for x in waiters[select]["waits"]] == [
            ("queued_behind", "AccessShareLock", ddl["label"])]
    assert (tree["direct_waiters"], tree["waiter_count"]) == (1, 3)
    assert "(1 directly, 2 waiting behind those)" in tree["explanation"]


@pytest.mark.parametrize("name,source", both("prepared_xact_in_doubt"))
def test_prepared_transaction_in_doubt_is_the_root_and_nobody_is_chosen(name, source):
    result = run(name, source)
    assert result.verdict == "blocking" and result.deadlocks == [] and result.victims == []
    tree = only_tree(result)
    root = tree["root"]
    assert (root["kind"], root["gxid"], root["gid"]) == ("prepared_xact", 36, "36")
    assert root["transactions"]["0"] == "593"
    assert root["coordinator_pid"] == 20477 and root["in_doubt"] is False  # the QD is in COMMIT
    assert [(w["sess_id"], w["coordinator_pid"]) for w in tree["waiters"]] == [(43, 20479)]
    assert "do not kill it" in tree["explanation"]


def test_retry_commit_prepared_links_the_prepared_root_to_its_qd_by_gxid():
    # The QD's session id changed (47 -> 66) on retry; the distributed xid lock still names it.
    tree = only_tree(run("prepared_xact_retry_commit_prepared"))
    root = tree["root"]
    assert (root["kind"], root["gxid"], root["coordinator_pid"], root["coordinator_query"]) == (
        "prepared_xact", 38, 20540, "COMMIT")
    assert [w["sess_id"] for w in tree["waiters"]] == [48]


@pytest.mark.parametrize("name,source", both("mirror_down_syncrep_wait", "mirror_down_syncrep_wait__after_cancel",
                                             "mirror_down_syncrep_wait__long_wait_before_mark_down",
                                             "mirror_down_syncrep_cancel_terminate"))
def test_syncrep_wait_is_no_deadlock_and_nothing_is_chosen(name, source):
    result = run(name, source)
    assert result.deadlocks == [] and result.victims == []
    assert any("SyncRep" in n and "content 0" in n for n in result.notes)


def test_bad_never_choose_names_the_parameter():
    with pytest.raises(ValueError, match="^never_choose: invalid JMESPath expression"):
        run("global_deadlock_2seg", never_choose="usename ==")


def test_sessions_of_a_deadlock_are_named_as_waiting_without_a_root():
    result = run("global_deadlock_2seg")
    (note,) = [n for n in result.notes if "reach no root blocker" in n]
    assert note.startswith("2 waiting sessions reach no root blocker") and "see deadlocks" in note
    assert "session 10 (coordinator pid 19883" in note and "session 11 (coordinator pid 19885" in note
