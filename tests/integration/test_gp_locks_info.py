"""gp_locks_info and the snapshot layer on real sandbox servers: a global deadlock
seen through the dispatched queries, with the filters; lock-queue waiters (no
gp_dist_wait_status edge) in the blocking tree; a frozen (SIGSTOPped) segment that
costs at most the snapshot's time budget and is named in the result."""
import time

import pytest
from gpsandbox import scenarios

from ansible_collections.gpops.greenplum.plugins.module_utils.collect.snapshot import take_snapshot
from playbook import run_tasks

pytestmark = pytest.mark.integration


def login(sb, **extra):
    return dict(login_host="127.0.0.1", login_port=sb.base_port, login_user="gpadmin",
                login_password="gpadmin", login_db="postgres", connect_timeout=5,
                statement_timeout=30.0, ssl_mode="prefer", **extra)


def test_global_deadlock_snapshot_and_filters(clean_cluster):
    with scenarios.global_deadlock(clean_cluster) as dl:
        a, b = dl.sessions["A"], dl.sessions["B"]
        whole, waiting, session_a, on_b_table = run_tasks([
            ("gp_locks_info", {}),
            ("gp_locks_info", {"waiting_only": True}),
            ("gp_locks_info", {"session": a["gp_session_id"], "content": [-1, 1]}),
            ("gp_locks_info", {"relation": dl.table, "waiting_only": True}),
        ], env=clean_cluster.coordinator_env())
        for result in (whole, waiting, session_a, on_b_table):
            assert not result.get("failed"), result.get("msg")
            assert result["changed"] is False
            assert result["source"] == "dispatch" and result["unreachable_nodes"] == {}
            # The analysis always covers the whole snapshot, whatever the filters.
            assert result["analysis"]["verdict"] == "deadlock"
            assert [v["gxid"] for v in result["analysis"]["victims"]] == [b["gxid"]]
        assert {lock["content"] for lock in whole["locks"]} == {-1, 0, 1, 2}
        assert sorted((e["content"], e["waiter_gxid"], e["holder_gxid"], e["solid"])
                      for e in whole["edges"]) == sorted([
            (clean_cluster.segment_for(dl.ids[0]), b["gxid"], a["gxid"], True),
            (clean_cluster.segment_for(dl.ids[1]), a["gxid"], b["gxid"], True)])
        # Segment rows carry the coordinator's OID of the table, named from its catalog.
        names = {(lock["content"], lock["relation_name"]) for lock in whole["locks"]
                 if lock["relation_name"] and lock["relation_name"].endswith("." + dl.table)}
        assert {c for c, _ in names} >= {-1, 0, 1}

        assert waiting["locks"] and all(not lock["granted"] for lock in waiting["locks"])
        assert {(lock["mppsessionid"], lock["locktype"]) for lock in waiting["locks"]} == {
            (a["gp_session_id"], "transactionid"), (b["gp_session_id"], "transactionid")}
        qds = {x["pid"] for x in waiting["backends"] if x["content"] == -1}
        assert qds == {a["coordinator_pid"], b["coordinator_pid"]}
        waiter_qes = [x for x in waiting["backends"] if x["content"] >= 0 and x["wait_event_type"] == "Lock"]
        assert len(waiter_qes) == 2 and all(x["blocking_pids"] for x in waiter_qes)

        assert session_a["locks"] and all(
            lock["mppsessionid"] == a["gp_session_id"] and lock["content"] in (-1, 1)
            for lock in session_a["locks"])
        assert {x["pid"] for x in session_a["backends"] if x["content"] == -1} == {a["coordinator_pid"]}

        # Row waits are on transaction ids, not on the table: nothing waits on it by name.
        assert on_b_table["locks"] == [] and on_b_table["edges"] == []


def test_lock_queue_waiters_hang_under_the_root_holder(clean_cluster):
    with scenarios.lock_queue(clean_cluster, waiters=2) as queue:
        holder, ddl = queue.sessions["holder"], queue.sessions["ddl_waiter"]
        (result,) = run_tasks([("gp_locks_info", {"waiting_only": True})],
                              env=clean_cluster.coordinator_env())
        assert not result.get("failed"), result.get("msg")
        analysis = result["analysis"]
        assert analysis["verdict"] == "blocking"
        tree = analysis["blocking_trees"][0]
        assert tree["root"]["coordinator_pid"] == holder["coordinator_pid"]
        assert tree["waiter_count"] == 3  # the LOCK TABLE and the two SELECTs queued behind it
        on_coordinator = {x["pid"]: x["blocking_pids"] for x in result["backends"]
                          if x["content"] == -1 and x["wait_event_type"] == "Lock"}
        assert on_coordinator[ddl["coordinator_pid"]] == [holder["coordinator_pid"]]
        for label in ("waiter2", "waiter3"):
            assert on_coordinator[queue.sessions[label]["coordinator_pid"]] == [ddl["coordinator_pid"]]


def test_frozen_segment_costs_at_most_the_budget_and_is_named(clean_cluster):
    budget = 8.0
    with scenarios.frozen_segment(clean_cluster, content=1):
        started = time.monotonic()
        snap = take_snapshot(login(clean_cluster), timeout=budget)
        elapsed = time.monotonic() - started
        assert elapsed < budget + 2.0  # generous: the budget is the contract
        assert snap.source == "utility"
        assert list(snap.unreachable) == [1] and snap.unreachable[1].startswith("timeout")
        assert {lock.content for lock in snap.locks} == {-1, 0, 2}

        (result,) = run_tasks([("gp_locks_info", {"statement_timeout": budget})],
                              env=clean_cluster.coordinator_env())
        assert not result.get("failed"), result.get("msg")
        assert result["source"] == "utility"
        assert list(result["unreachable_nodes"]) == ["1"]
        assert result["analysis"]["complete"] is False
        assert any("content 1 did not answer" in note for note in result["analysis"]["notes"])


def test_prepared_transaction_is_listed_and_its_waiter_left_alone(clean_cluster):
    env = clean_cluster.coordinator_env()
    with scenarios.prepared_xact(clean_cluster, content=0) as orphan:
        locks, resolved = run_tasks([("gp_locks_info", {"waiting_only": True}),
                                     ("gp_deadlock", {"state": "resolved"})], env=env)
        assert not locks.get("failed"), locks.get("msg")
        assert [(p["content"], p["gid"]) for p in locks["prepared_xacts"]] == [(0, orphan.gid)]
        # The waiter's edge names no backend as holder: a prepared transaction (holder_lpid 0).
        assert [(e["content"], e["holder_pid"]) for e in locks["edges"]] == [(0, 0)]
        assert locks["analysis"]["verdict"] == "blocking" and locks["analysis"]["deadlocks"] == []
        assert not resolved.get("failed"), resolved.get("msg")
        assert (resolved["changed"], resolved["actions"]) == (False, [])
        assert orphan.wait(1)["waiter"]["ok"] is None
