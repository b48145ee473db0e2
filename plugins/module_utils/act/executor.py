# -*- coding: utf-8 -*-
# Copyright: gpops.greenplum contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one executor of ``plan.steps.Plan``: each step run by the runner of its action,
whose statement checks the step's guard and makes the change at once (docs/safety.md).

- ``run_step(step, runners, check_mode=False) -> Outcome``
- ``execute(steps, runners, check_mode=False, on_outcome=None) -> list[Outcome]``

``runners``: ``{action: callable(step) -> Outcome}``. A runner must check the guard in
the same statement or transaction that acts (``UPDATE/DELETE ... WHERE <values judged>``,
``pg_cancel_backend(pid)`` inside ``SELECT ... WHERE`` the backend still runs the
planned gxid, a rename of the file only if its inode and content are the ones judged)
and return ``Outcome.skipped(step, Reason.GUARD_..., **facts)`` when the guard fails.
The executor never raises for a runner's exception: the step is ``failed`` with the
error's text, and the remaining steps still run (each step has its own guard).
Check mode runs nothing and returns ``planned`` outcomes.

``Outcome``: ``step`` (the Step), ``result`` (``done`` | ``skipped`` | ``failed`` |
``planned``), ``reason`` (a ``Reason`` for ``skipped``, else None), ``detail`` (text:
what was done, why the guard failed, or the error), ``at`` (UTC ISO time),
``statement`` (the SQL or system call made, values bound, '' if none).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import dataclasses
import datetime
import typing

from ansible_collections.gpops.greenplum.plugins.module_utils.plan.reasons import Reason, message
from ansible_collections.gpops.greenplum.plugins.module_utils.plan.steps import Step

RESULTS = ("done", "skipped", "failed", "planned")


def _now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat()


@dataclasses.dataclass(frozen=True)
class Outcome:
    step: Step
    result: str
    detail: str
    reason: typing.Optional[Reason] = None
    statement: str = ""
    at: str = dataclasses.field(default_factory=_now)

    @classmethod
    def done(cls, step, detail, statement=""):
        return cls(step, "done", detail, None, statement)

    @classmethod
    def skipped(cls, step, reason, statement="", **facts):
        return cls(step, "skipped", "guard failed: " + message(reason, **facts), reason, statement)

    @classmethod
    def failed(cls, step, detail, statement=""):
        return cls(step, "failed", detail, None, statement)

    @property
    def changed(self):
        return self.result == "done"

    def as_dict(self):
        out = self.step.as_dict()
        out.update(result=self.result, detail=self.detail, at=self.at, statement=self.statement,
                   guard_failed=self.reason.value if self.reason else None)
        return out

    def sentence(self):
        """One line for people: ``cancel coordinator pid 4711: done (...)``."""
        return "%s %s: %s (%s)" % (self.step.action, self.step.target, self.result, self.detail)


def run_step(step, runners, check_mode=False):
    """Carry out one step (or, in check mode, say what would run). Never raises."""
    if check_mode:
        return Outcome(step, "planned", step.why)
    runner = runners.get(step.action)
    if runner is None:
        return Outcome.failed(step, "no runner for action %r" % step.action)
    try:
        outcome = runner(step)
    except Exception as exc:  # noqa: BLE001 - a step's failure is reported, never raised
        return Outcome.failed(step, "%s: %s" % (type(exc).__name__, exc))
    if not isinstance(outcome, Outcome) or outcome.result not in RESULTS:
        return Outcome.failed(step, "runner for %r returned %r" % (step.action, outcome))
    return outcome


def execute(steps, runners, check_mode=False, on_outcome=None):
    """Run ``steps`` in order; ``on_outcome(outcome)`` is called after each (so the
    caller records what was done even when a later step or poll raises)."""
    outcomes = []
    for step in steps:
        outcome = run_step(step, runners, check_mode)
        outcomes.append(outcome)
        if on_outcome is not None:
            on_outcome(outcome)
    return outcomes
