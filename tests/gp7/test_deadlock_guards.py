"""What is proven before a deadlock victim is signalled, on real Greenplum 7
(docs/safety.md#deadlocks-what-is-proven-before-a-signal):

- the victim's transaction ends and its session starts a new one between the plan
  and the signal (as an ETL client retries): nothing is signalled, the outcome says
  the guard failed (the statement's own guard, and the re-check of the cycle);
- one cycle whose every member is protected beside a breakable one: the breakable
  one is broken, the other is refused with its reason code.
"""
import pytest

from playbook import run_tasks

from ansible_collections.gpops.greenplum.plugins.module_utils.act import backend_signals as actions
from ansible_collections.gpops.greenplum.plugins.module_utils.act import deadlock_breaker
from ansible_collections.gpops.greenplum.plugins.module_utils.analyse.lock_analysis import analyse
from ansible_collections.gpops.greenplum.plugins.module_utils.collect.connection import connect
from ansible_collections.gpops.greenplum.plugins.module_utils.collect.snapshot import take_snapshot
from ansible_collections.gpops.greenplum.plugins.module_utils.plan.deadlock_plan import plan_deadlocks
from ansible_collections.gpops.greenplum.plugins.module_utils.plan.reasons import Reason

pytestmark = pytest.mark.gp7


@pytest.fixture
def ids(gp):
    gp.query("DROP TABLE IF EXISTS tguard; CREATE TABLE tguard (id int, val int) DISTRIBUTED BY (id); "
             "INSERT INTO tguard SELECT i, i FROM generate_series(1, 100) i")
    out = {}
    for seg, ident in gp.query("SELECT gp_segment_id, id FROM tguard ORDER BY id"):
        out.setdefault(seg, []).append(ident)
    return out


def deadlock(gp, first, second, a_row, b_row):
    """A global deadlock between sessions ``first`` (older gxid) and ``second``
    (younger: Greenplum's victim) over rows on two segments."""
    a, b = gp.session(first), gp.session(second)
    a.sql("BEGIN")
    b.sql("BEGIN")
    a.sql("UPDATE tguard SET val = val WHERE id = %s", (a_row,))
    b.sql("UPDATE tguard SET val = val WHERE id = %s", (b_row,))
    b.send("UPDATE tguard SET val = val WHERE id = %s", (a_row,))
    assert b.waiting()
    a.send("UPDATE tguard SET val = val WHERE id = %s", (b_row,))
    assert a.waiting()
    return a, b


def test_a_victim_whose_transaction_ended_and_whose_session_retried_is_never_signalled(gp, ids):
    a, b = deadlock(gp, "older", "younger", ids[0][0], ids[1][0])
    snap = take_snapshot(gp.login())
    plan = plan_deadlocks(snap, analyse(snap))
    cancel = plan.steps[0]
    assert (cancel.action, cancel.guard.facts["pid"]) == ("cancel", b.pid)

    # Between plan and signal: the victim's transaction ends (someone else cancels it) and
    # the client retries in the same session: a new transaction, a new gxid.
    gp.query("SELECT pg_catalog.pg_cancel_backend(%s)", (b.pid,))
    assert b.result(15)[0] == "error"
    assert a.result(15)[0] == "ok"
    a.sql("COMMIT")
    b.sql("ROLLBACK")
    b.sql("BEGIN")
    b.sql("UPDATE tguard SET val = val WHERE id = %s", (ids[1][0],))
    assert b.gxid() != cancel.guard.facts["gxid"]
    b.send("SELECT pg_catalog.pg_sleep(3)")

    with connect(gp.login()) as conn:
        source = actions.CoordinatorSignals(conn)
        # The statement's guard alone (as if the cycle re-check had just passed) ...
        outcome = actions.signal_transaction(cancel, source, "must not arrive")
        # ... and the whole breaker, with the light re-check of the cycle first.
        done = []
        server = None
        remaining = deadlock_breaker.break_deadlocks(
            source, plan, 0.5, lambda: deadlock_breaker.deadlocked_gxids(gp.login(), server, 10), done)
    assert (outcome.result, outcome.reason) == ("skipped", Reason.GUARD_TRANSACTION_ENDED)
    assert "no longer runs gxid %s" % cancel.guard.facts["gxid"] in outcome.detail
    assert [(d["action"], d["result"], d["guard_failed"]) for d in done] == [
        ("cancel", "skipped", Reason.GUARD_CYCLE_GONE.value)]
    assert remaining == set()
    assert b.result(10)[0] == "ok"  # the retry's statement was never cancelled
    b.sql("COMMIT")

    # The same guard with the planned transaction still running does signal.
    a2, b2 = deadlock(gp, "older2", "younger2", ids[0][1], ids[1][1])
    snap = take_snapshot(gp.login())
    plan = plan_deadlocks(snap, analyse(snap))
    with connect(gp.login()) as conn:
        outcome = actions.signal_transaction(plan.steps[0], actions.CoordinatorSignals(conn), "victim")
    assert outcome.result == "done", outcome.detail
    assert b2.result(15)[0] == "error" and a2.result(15)[0] == "ok"
    a2.sql("COMMIT")
    b2.sql("ROLLBACK")


def test_a_protected_cycle_beside_a_breakable_one(gp, ids):
    billing = deadlock(gp, "billing_a", "billing_b", ids[0][0], ids[1][0])
    other = deadlock(gp, "etl_a", "etl_b", ids[0][1], ids[1][1])
    (result,) = run_tasks([("gp_deadlock", {"state": "resolved", "cancel_grace": 5,
                                            "never_choose": "starts_with(application_name, 'billing')"})],
                          env=gp.env())
    assert result.get("failed") is True and "need a person" in result["msg"], result.get("msg")
    assert "the other deadlocks were broken" in result["msg"]
    assert result["changed"] is True
    done = [(a["action"], a["pid"], a["result"]) for a in result["actions"]]
    assert done == [("cancel", other[1].pid, "done")]
    assert other[1].result(15)[0] == "error" and other[0].result(15)[0] == "ok"
    refused = {(r["reason"], r["target"]) for r in result["refusals"]}
    assert any(code == Reason.PROTECTED_ALL_MEMBERS.value for code, _t in refused)
    assert sum(code == Reason.PROTECTED_NEVER_CHOOSE.value for code, _t in refused) == 2
    assert billing[0].waiting() and billing[1].waiting()  # the protected cycle is left alone
    gp.query("SELECT pg_catalog.pg_cancel_backend(%s)", (billing[1].pid,))
    assert billing[0].result(15)[0] == "ok"
