"""The plan types, reason codes and the executor (plan/steps.py, plan/reasons.py,
act/executor.py)."""
import pytest

from ansible_collections.gpops.greenplum.plugins.module_utils.act.executor import Outcome, execute
from ansible_collections.gpops.greenplum.plugins.module_utils.plan.reasons import MESSAGES, Reason, message
from ansible_collections.gpops.greenplum.plugins.module_utils.plan.steps import Guard, Plan, Refusal, Step


def _step(action="cancel", pid=11):
    return Step(action, "coordinator pid %d" % pid, Reason.DEADLOCK_VICTIM,
                {"deadlock": 1, "gxid": 7, "pid": pid, "why": "youngest"},
                Guard("transaction", {"pid": pid, "gxid": 7}))


def test_every_reason_has_a_message_and_values_are_unique():
    assert set(MESSAGES) == set(Reason)
    assert len({r.value for r in Reason}) == len(Reason)


def test_message_never_raises_on_missing_facts():
    assert message(Reason.GUARD_TRANSACTION_ENDED, pid=5) == "pid 5 no longer runs gxid ? (its transaction ended)"


def test_guard_kind_is_checked():
    with pytest.raises(ValueError, match="guard kind"):
        Guard("session", {})


def test_check_mode_runs_nothing():
    calls = []
    outcomes = execute([_step()], {"cancel": calls.append}, check_mode=True)
    assert calls == [] and [o.result for o in outcomes] == ["planned"]
    assert not outcomes[0].changed


def test_each_step_reports_done_skipped_or_failed_and_later_steps_still_run():
    def cancel(step):
        if step.facts["pid"] == 1:
            raise RuntimeError("connection lost")
        if step.facts["pid"] == 2:
            return Outcome.skipped(step, Reason.GUARD_TRANSACTION_ENDED, pid=2, gxid=7)
        return Outcome.done(step, "pg_cancel_backend")
    seen = []
    outcomes = execute([_step(pid=1), _step(pid=2), _step(pid=3)], {"cancel": cancel}, on_outcome=seen.append)
    assert [o.result for o in outcomes] == ["failed", "skipped", "done"]
    assert "connection lost" in outcomes[0].detail
    assert outcomes[1].as_dict()["guard_failed"] == "guard_transaction_ended"
    assert seen == outcomes


def test_unknown_action_fails_the_step():
    assert execute([_step("rm -rf")], {})[0].result == "failed"


def test_plan_as_dicts_carries_codes():
    plan = Plan((_step(),), (Refusal("gxid 9", Reason.PROTECTED_SYNCREP_WAIT, {"gxid": 9}),))
    d = plan.as_dicts()
    assert d["steps"][0]["reason"] == "deadlock_victim" and d["steps"][0]["guard"]["kind"] == "transaction"
    assert d["refusals"][0]["reason"] == "protected_syncrep_wait"
