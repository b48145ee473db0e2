"""gp_deadlock through Ansible on real sandbox servers: a real global deadlock is
found, check mode leaves it alone, state=resolved cancels the youngest transaction's
coordinator backend, the survivor's UPDATE completes and commits, and a second run
changes nothing. Bad input and a blocking chain without a cycle kill nothing."""
import dataclasses
import datetime

import pytest
from gpsandbox import scenarios

from ansible_collections.gpops.greenplum.plugins.module_utils.act import backend_signals as actions
from ansible_collections.gpops.greenplum.plugins.module_utils.act import deadlock_breaker as dl
from ansible_collections.gpops.greenplum.plugins.module_utils.analyse.lock_analysis import analyse
from ansible_collections.gpops.greenplum.plugins.module_utils.collect.connection import connect
from ansible_collections.gpops.greenplum.plugins.module_utils.collect.snapshot import take_snapshot
from ansible_collections.gpops.greenplum.plugins.module_utils.plan.deadlock_plan import plan_deadlocks
from ansible_collections.gpops.greenplum.plugins.module_utils.plan.reasons import Reason
from ansible_collections.gpops.greenplum.plugins.module_utils.plan.steps import Guard
from playbook import run_tasks
from stale_fixtures import wait_for

pytestmark = pytest.mark.integration


def still_waiting(handle, labels, seconds=1.0):
    """True when each labelled session's statement is still running."""
    outcome = handle.wait(seconds)
    return all(outcome[label]["ok"] is None for label in labels)


def coordinator_state(sb, pid):
    rows = sb.query(-1, "SELECT state FROM pg_catalog.pg_stat_activity WHERE pid = %s", (pid,),
                    utility=True)
    return rows[0][0] if rows else None


def login(sb):
    return dict(login_host="127.0.0.1", login_port=sb.base_port, login_user="gpadmin",
                login_password="gpadmin", login_db="postgres", connect_timeout=5,
                statement_timeout=10.0, ssl_mode="prefer")


@pytest.fixture
def deadlock(clean_cluster):
    handle = scenarios.global_deadlock(clean_cluster)
    yield handle
    handle.cleanup()


def test_detect_check_then_resolve_then_nothing_left(clean_cluster, deadlock):
    env = clean_cluster.coordinator_env()
    a, b = deadlock.sessions["A"], deadlock.sessions["B"]
    assert b["gxid"] > a["gxid"]  # B is the youngest: Greenplum's detector would cancel it

    detected, oldest, protected, planned = run_tasks([
        ("gp_deadlock", {"state": "detected"}),
        ("gp_deadlock", {"state": "detected", "policy": "oldest"}),
        ("gp_deadlock", {"state": "detected", "never_choose": "application_name == 'scenario_B'"}),
        ("gp_deadlock", {"state": "resolved"}, True),
    ], env=env)
    for result in (detected, oldest, protected, planned):
        assert not result.get("failed"), result.get("msg")
        assert [sorted(d["gxids"]) for d in result["deadlocks"]] == [sorted([a["gxid"], b["gxid"]])]
        assert result["source"] == "dispatch" and result["unreachable_nodes"] == {}
    assert detected["changed"] is False and detected["actions"] == []
    victim = detected["victims"][0]
    assert (victim["gxid"], victim["sess_id"], victim["coordinator_pid"]) == (
        b["gxid"], b["gp_session_id"], b["coordinator_pid"])
    assert [v["gxid"] for v in oldest["victims"]] == [a["gxid"]]
    assert [v["gxid"] for v in protected["victims"]] == [a["gxid"]]
    # Check mode: the same victim, the planned actions, nothing sent.
    assert planned["changed"] is True
    assert [(v["gxid"], v["coordinator_pid"]) for v in planned["victims"]] == [
        (b["gxid"], b["coordinator_pid"])]
    assert [(x["action"], x["pid"], x["gxid"], x["result"]) for x in planned["actions"]] == [
        ("cancel", b["coordinator_pid"], b["gxid"], "planned"),
        ("terminate", b["coordinator_pid"], b["gxid"], "planned")]
    assert still_waiting(deadlock, ["A", "B"])

    resolved, again = run_tasks([("gp_deadlock", {"state": "resolved"}),
                                 ("gp_deadlock", {"state": "resolved"})], env=env)
    assert not resolved.get("failed"), resolved.get("msg")
    assert resolved["changed"] is True
    cancel = resolved["actions"][0]
    assert (cancel["action"], cancel["pid"], cancel["sess_id"], cancel["gxid"], cancel["result"]) == (
        "cancel", b["coordinator_pid"], b["gp_session_id"], b["gxid"], "done")
    assert [x["action"] for x in resolved["actions"]] == ["cancel"]  # the cancel was enough
    assert resolved["deadlocks_after"] == []
    outcome = deadlock.wait(15)
    assert outcome["B"]["ok"] is False and outcome["B"]["sqlstate"] == "57014"
    assert outcome["A"]["ok"] is True  # the survivor's UPDATE completed ...
    deadlock._sessions["A"].run("COMMIT")  # ... and it commits
    assert coordinator_state(clean_cluster, a["coordinator_pid"]) == "idle"

    assert not again.get("failed"), again.get("msg")
    assert again["changed"] is False
    assert (again["deadlocks"], again["victims"], again["actions"]) == ([], [], [])


def test_a_changed_identity_is_never_signalled(clean_cluster, deadlock):
    b = deadlock.sessions["B"]
    params = login(clean_cluster)
    snap = take_snapshot(params)
    cancel = plan_deadlocks(snap, analyse(snap)).steps[0]
    assert cancel.guard.facts["pid"] == b["coordinator_pid"]

    def changed(**facts):
        return dataclasses.replace(cancel, guard=Guard("transaction", dict(cancel.guard.facts, **facts)))

    started = cancel.guard.facts["backend_start"]
    with connect(params) as conn:
        source = actions.CoordinatorSignals(conn)
        outcomes = [actions.signal_transaction(step, source, "x") for step in (
            changed(backend_start=started - datetime.timedelta(seconds=1)),
            changed(sess_id=b["gp_session_id"] + 1),
            changed(pid=2 ** 22 + 7),
            changed(gxid=cancel.guard.facts["gxid"] + 1000),
            changed(xact_start=cancel.guard.facts["xact_start"] - datetime.timedelta(seconds=1)))]
    assert [(o.result, o.reason) for o in outcomes] == [
        ("skipped", Reason.GUARD_BACKEND_REPLACED), ("skipped", Reason.GUARD_BACKEND_REPLACED),
        ("skipped", Reason.GUARD_BACKEND_GONE), ("skipped", Reason.GUARD_TRANSACTION_ENDED),
        ("skipped", Reason.GUARD_TRANSACTION_ENDED)]
    assert still_waiting(deadlock, ["A", "B"])


def test_terminate_after_the_grace_period_when_the_cycle_stays(clean_cluster, deadlock):
    """The sequence of break_deadlocks with real signals: the re-check before the
    cancel and the first poll still see the cycle (as when a cancel is not acted on), so
    the victim is terminated after the grace period (0 s here), its transaction proven
    again by the signalling statement."""
    a, b = deadlock.sessions["A"], deadlock.sessions["B"]
    snap = take_snapshot(login(clean_cluster))
    plan = plan_deadlocks(snap, analyse(snap), terminate=True, cancel_grace=0)
    assert [s.guard.facts["pid"] for s in plan.steps] == [b["coordinator_pid"]] * 2
    polls = iter([{a["gxid"], b["gxid"]}, {a["gxid"], b["gxid"]}])
    done = []
    with connect(login(clean_cluster)) as conn:
        remaining = dl.break_deadlocks(actions.CoordinatorSignals(conn), plan, 0, lambda: next(polls, set()), done)
    assert remaining == set()
    assert [(x["action"], x["pid"], x["result"]) for x in done] == [
        ("cancel", b["coordinator_pid"], "done"), ("terminate", b["coordinator_pid"], "done")]
    assert wait_for(lambda: coordinator_state(clean_cluster, b["coordinator_pid"]) is None, 10)
    assert deadlock.wait(15)["A"]["ok"] is True


def test_bad_input_fails_and_cancels_nothing(clean_cluster, deadlock):
    results = run_tasks([
        ("gp_deadlock", {"state": "resolved", "policy": "bogus"}),
        ("gp_deadlock", {"state": "resolved", "cancel_grace": -1}),
        ("gp_deadlock", {"state": "resolved", "never_choose": "[[usename"}),
        ("gp_deadlock", {"state": "resolved", "statement_timeout": 0}),
    ], env=clean_cluster.coordinator_env())
    expected = [("policy", "youngest, oldest, least_work"), ("cancel_grace", ">= 0"),
                ("never_choose", "JMESPath"), ("statement_timeout", "> 0")]
    for result, words in zip(results, expected):
        assert result.get("failed") is True
        assert all(w in result["msg"] for w in words), result["msg"]
        assert result.get("actions", []) == [] and result.get("changed") is False
    assert still_waiting(deadlock, ["A", "B"])


def test_blocking_chain_without_a_cycle_kills_nothing(clean_cluster):
    with scenarios.blocking_chain(clean_cluster, waiters=3) as chain:
        holder = chain.sessions["holder"]
        locks, resolved = run_tasks([("gp_locks_info", {"waiting_only": True}),
                                     ("gp_deadlock", {"state": "resolved"})],
                                    env=clean_cluster.coordinator_env())
        assert not locks.get("failed"), locks.get("msg")
        analysis = locks["analysis"]
        assert analysis["verdict"] == "blocking" and analysis["deadlocks"] == []
        tree = analysis["blocking_trees"][0]
        assert tree["root"]["coordinator_pid"] == holder["coordinator_pid"]
        assert tree["root"]["sess_id"] == holder["gp_session_id"]
        assert tree["waiter_count"] == 3
        assert not resolved.get("failed"), resolved.get("msg")
        assert resolved["changed"] is False
        assert (resolved["deadlocks"], resolved["actions"]) == ([], [])
        assert still_waiting(chain, ["waiter1", "waiter2", "waiter3"])
        assert coordinator_state(clean_cluster, holder["coordinator_pid"]) == "idle in transaction"


def test_dotted_edge_is_no_deadlock_until_the_holder_ends(clean_cluster):
    """GDD's rule 3 on real servers: A waits for B's tuple lock (a dotted edge) while B
    waits for C; no deadlock, nothing done. Once C rolls back, B's wait becomes a
    transaction wait and the cycle is real: it is broken."""
    env = clean_cluster.coordinator_env()
    with scenarios.dotted_edge(clean_cluster) as dotted:
        (before,) = run_tasks([("gp_deadlock", {"state": "resolved"})], env=env)
        assert not before.get("failed"), before.get("msg")
        assert (before["changed"], before["deadlocks"], before["actions"]) == (False, [], [])
        assert still_waiting(dotted, ["A", "B"])

        dotted.end_c()
        a, b = dotted.sessions["A"], dotted.sessions["B"]
        (after,) = run_tasks([("gp_deadlock", {"state": "resolved"})], env=env)
        assert not after.get("failed"), after.get("msg")
        assert after["changed"] is True
        assert [sorted(d["gxids"]) for d in after["deadlocks"]] == [sorted([a["gxid"], b["gxid"]])]
        assert [v["gxid"] for v in after["victims"]] == [max(a["gxid"], b["gxid"])]
        assert after["deadlocks_after"] == []
