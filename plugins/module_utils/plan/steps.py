# -*- coding: utf-8 -*-
# Copyright: gpops.greenplum contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The typed plan every destructive module builds before it acts (docs/safety.md).

Pure data, no I/O. The planning code (this package) turns a snapshot into a ``Plan``;
the executor (``act/executor.py``) carries it out step by step, each step's guard
checked inside the statement or transaction that makes the change.

- ``Guard(kind, facts)``: what must still be true when the step runs, tied to the
  thing the step is about: ``kind`` ``transaction`` (a backend: ``pid``,
  ``backend_start``, ``sess_id`` and the ``gxid`` it must still run, or its
  ``xact_start``), ``prepared_xact`` (``content``, ``gid``, ``prepared`` time), ``row``
  (its key and the values judged), ``file`` (``path``, ``st_dev``, ``st_ino``,
  ``sha256`` of the content judged), ``setting`` (``content``, ``name``, the value it
  must still have). ``facts`` is a dict of JSON-able values.
- ``Step(action, target, reason, facts, guard)``: one destructive action (``cancel``,
  ``terminate``, ``rollback_prepared``, ``commit_prepared``, ``delete_row``,
  ``remove_file``, ``sync_off``, ``sync_on``, ``fts_probe``, ...), ``target`` a short
  human name of what it acts on (``coordinator pid 4711``, ``content 1``), ``reason`` a
  ``reasons.Reason`` with the ``facts`` its message needs.
- ``Refusal(target, reason, facts)``: something looked at and deliberately left alone.
- ``Plan(steps, refusals)``: ``as_dicts()`` is what check mode returns.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import dataclasses
import datetime
import typing

from ansible_collections.gpops.greenplum.plugins.module_utils.plan.reasons import Reason, message

GUARD_KINDS = ("transaction", "prepared_xact", "row", "file", "setting", "mirror")


def _jsonable(value):
    if isinstance(value, (datetime.datetime, datetime.date)):
        return value.isoformat()
    if isinstance(value, Reason):
        return value.value
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in value]
    return value


@dataclasses.dataclass(frozen=True)
class Guard:
    kind: str
    facts: dict

    def __post_init__(self):
        if self.kind not in GUARD_KINDS:
            raise ValueError("guard kind %r is not one of %s" % (self.kind, ", ".join(GUARD_KINDS)))

    def as_dict(self):
        return {"kind": self.kind, **_jsonable(self.facts)}


@dataclasses.dataclass(frozen=True)
class Step:
    action: str
    target: str
    reason: Reason
    facts: dict
    guard: Guard

    @property
    def why(self):
        return message(self.reason, **self.facts)

    def as_dict(self):
        return {"action": self.action, "target": self.target, "reason": self.reason.value,
                "why": self.why, "facts": _jsonable(self.facts), "guard": self.guard.as_dict()}


@dataclasses.dataclass(frozen=True)
class Refusal:
    target: str
    reason: Reason
    facts: dict

    @property
    def why(self):
        return message(self.reason, **self.facts)

    def as_dict(self):
        return {"target": self.target, "reason": self.reason.value, "why": self.why,
                "facts": _jsonable(self.facts)}


@dataclasses.dataclass(frozen=True)
class Plan:
    steps: typing.Tuple[Step, ...] = ()
    refusals: typing.Tuple[Refusal, ...] = ()

    def as_dicts(self):
        return {"steps": [s.as_dict() for s in self.steps],
                "refusals": [r.as_dict() for r in self.refusals]}
