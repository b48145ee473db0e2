"""Decisions around cancel/terminate without a server: identity re-check, targets from
a real capture's analysis, refusing an incomplete snapshot, check-mode plans, and the
cancel -> wait -> terminate sequence's waiting logic."""
import datetime

import pytest

from ansible_collections.gpops.greenplum.plugins.module_utils.act import backend_signals as actions
from ansible_collections.gpops.greenplum.plugins.module_utils.act import deadlock_breaker
from ansible_collections.gpops.greenplum.plugins.module_utils.collect import snapshot as snap
from ansible_collections.gpops.greenplum.plugins.module_utils.analyse.lock_analysis import analyse
from ansible_collections.gpops.greenplum.plugins.module_utils.common.records import Backend
from ansible_collections.gpops.greenplum.plugins.module_utils.plan import deadlock_plan
from ansible_collections.gpops.greenplum.plugins.module_utils.plan.reasons import Reason
from ansible_collections.gpops.greenplum.plugins.module_utils.plan.steps import Guard, Step

from test_snapshot import capture_snapshot, needs_captures

START = datetime.datetime(2026, 11, 21, 5, 41, 20, 690194, tzinfo=datetime.timezone.utc)


def qd(**kw):
    row = dict(pid=19885, sess_id=11, backend_start=START, backend_type="client backend",
               datname="postgres")
    row.update(kw)
    return Backend.from_row(row, content=-1)


def test_same_backend_passes_the_identity_check():
    assert actions._mismatch(qd(), START, 11) is None


@pytest.mark.parametrize("current,why", [
    (None, "backend no longer exists"),
    (qd(backend_start=START + datetime.timedelta(seconds=3)), "pid now belongs to another backend"),
    (qd(sess_id=12), "pid now belongs to another backend"),
    (qd(backend_type="walsender"), "not a client backend (walsender)"),
])
def test_changed_identity_is_refused(current, why):
    assert actions._mismatch(current, START, 11).startswith(why)


def test_gp6_rows_without_backend_type_count_as_client_backends_when_they_have_a_database():
    assert actions._mismatch(qd(backend_type=None), START, 11) is None
    assert actions._mismatch(qd(backend_type=None, datname=None), START, 11).startswith("not a client")


def test_unknown_identity_is_never_signalled():
    # No connection is touched: the outcome says why nothing was sent.
    step = Step("cancel", "coordinator pid 19885", Reason.DEADLOCK_VICTIM, {"gxid": 18},
                Guard("transaction", {"pid": 19885, "backend_start": None, "sess_id": 11, "gxid": 18,
                                      "xact_start": START}))
    outcome = actions.signal_transaction(step, None, "msg")
    assert (outcome.result, outcome.reason) == ("skipped", Reason.IDENTITY_UNKNOWN)


@needs_captures
def test_steps_carry_the_victims_coordinator_transaction():
    s = capture_snapshot("global_deadlock_2seg")
    plan = deadlock_plan.plan_deadlocks(s, analyse(s))
    # The capture's outcome: GDD's choice is session B, gxid 18, coordinator pid 19885.
    guard = plan.steps[0].guard
    assert (plan.steps[0].action, guard.kind) == ("cancel", "transaction")
    assert {k: guard.facts[k] for k in ("pid", "backend_start", "sess_id", "gxid")} == {
        "pid": 19885, "backend_start": START, "sess_id": 11, "gxid": 18}
    assert guard.facts["xact_start"] is not None


@needs_captures
def test_planned_actions_in_check_mode():
    s = capture_snapshot("global_deadlock_2seg")
    plan = deadlock_breaker.planned_actions(deadlock_plan.plan_deadlocks(s, analyse(s), terminate=True, cancel_grace=5))
    assert [(a["action"], a["pid"], a["gxid"], a["result"], a["reason"]) for a in plan] == [
        ("cancel", 19885, 18, "planned", "deadlock_victim"),
        ("terminate", 19885, 18, "planned", "still_deadlocked_after_cancel")]
    assert "5 s after its cancel" in plan[1]["why"]
    assert [a["action"] for a in deadlock_breaker.planned_actions(
        deadlock_plan.plan_deadlocks(s, analyse(s), terminate=False))] == ["cancel"]


@needs_captures
def test_no_victim_without_a_deadlock():
    s = capture_snapshot("blocking_chain")
    assert deadlock_plan.plan_deadlocks(s, analyse(s)).steps == ()


def test_incomplete_utility_snapshot_is_refused():
    taken = datetime.datetime.now(datetime.timezone.utc)

    def codes(s):
        return [r.reason for r in deadlock_plan.blocking_refusals(s)]

    utility = snap.snapshot_from_rows([], dispatched=None, unreachable={1: "timeout: x"}, taken_at=taken,
                                      read=["edges", "dist_xacts"])
    assert Reason.SNAPSHOT_INCOMPLETE in codes(utility)
    assert "content 1 (timeout: x)" in deadlock_plan.blocking_refusals(utility)[0].why
    complete = snap.snapshot_from_rows([], dispatched=None, unreachable={}, taken_at=taken,
                                       read=["edges", "dist_xacts"])
    assert codes(complete) == []
    # Dispatched edges cover every primary; only per-node lookups failed (and said what).
    dispatched = snap.snapshot_from_rows([], dispatched={}, unreachable={1: "lookups failed"},
                                         taken_at=taken, read=["edges", "dist_xacts"])
    assert codes(dispatched) == []


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def test_wait_until_clear_returns_as_soon_as_the_cycle_is_gone():
    clock = FakeClock()
    answers = iter([{17, 18}, {17, 18}, set()])
    still = deadlock_breaker._wait_until_clear({18}, 5, lambda: next(answers), clock.sleep, clock)
    assert still == set() and clock.now == pytest.approx(2 * deadlock_breaker.POLL_INTERVAL_S)


def test_wait_until_clear_gives_up_after_the_grace_period():
    clock = FakeClock()
    still = deadlock_breaker._wait_until_clear({18}, 1.0, lambda: {17, 18, 30}, clock.sleep, clock)
    assert still == {18} and 1.0 <= clock.now <= 1.0 + deadlock_breaker.POLL_INTERVAL_S


@pytest.mark.parametrize("text,seconds", [("1s", 1.0), ("500ms", 0.5), ("2min", 120.0), ("1500", 1.5),
                                          ("1h", 3600.0), ("", None), ("soon", None), ("3 weeks", None)])
def test_deadlock_timeout_as_current_setting_shows_it(text, seconds):
    assert deadlock_breaker.parse_duration(text) == seconds


def test_local_deadlocks_are_left_to_their_node_for_its_deadlock_timeout_only():
    """isolation2 gdd/local-deadlock-03: a cycle on one node is broken there, by that
    node's own check, deadlock_timeout after its last wait began; gp_deadlock waits for
    that (bounded by local_deadlock_wait) instead of cancelling a second member."""
    found = [{"id": 1, "scope": "global", "contents": [0, 1]},
             {"id": 2, "scope": "local", "contents": [1]},
             {"id": 3, "scope": "local", "contents": [2]}]
    seconds, waits = deadlock_breaker.local_check_wait(found, {-1: 1.0, 0: 1.0, 1: 1.0, 2: 60.0}, limit=10)
    assert seconds == 1.0 + deadlock_breaker.LOCAL_CHECK_MARGIN_S
    assert waits == [{"deadlock": 2, "content": 1, "deadlock_timeout_s": 1.0, "wait": True},
                     {"deadlock": 3, "content": 2, "deadlock_timeout_s": 60.0, "wait": False}]
    assert deadlock_breaker.local_check_wait(found, {1: 1.0}, limit=0)[0] == 0  # local_deadlock_wait 0: never
    assert deadlock_breaker.local_check_wait(found, {}, limit=10) == (0, [  # timeouts unknown: act at once
        {"deadlock": 2, "content": 1, "deadlock_timeout_s": None, "wait": False},
        {"deadlock": 3, "content": 2, "deadlock_timeout_s": None, "wait": False}])
    assert deadlock_breaker.local_check_wait(found[:1], {0: 1.0}, limit=10) == (0, [])  # global only: no wait
    assert deadlock_breaker.local_check_wait(found, {1: 9.8}, limit=10)[0] == 10  # never longer than the limit
