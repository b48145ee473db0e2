# -*- coding: utf-8 -*-
# Copyright: gpops.greenplum contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Signals to coordinator backends: cancel and terminate, each only if the backend
still runs the distributed transaction the plan was made on, checked inside the
statement that signals (docs/safety.md#deadlocks-what-is-proven-before-a-signal).

Public API:

- ``CoordinatorSignals(conn)``: the guard source over an autocommit coordinator
  connection (dispatch mode). ``signal(action, where, message) -> bool | None``: one
  statement (``sql.signal_transaction``) signals the backend only where ``pid``,
  ``backend_start``, ``sess_id``, ``xact_start`` and the gxid (``gp_distributed_xacts``
  of its session) are those of ``where``: True/False (what the function returned), None
  when no backend matched (nothing signalled). ``current(pid) -> dict | None``: the
  backend now, with ``gxids`` (the gxids its session runs), to say why a guard failed.
- ``signal_transaction(step, source, message) -> executor.Outcome``: the runner of a
  ``cancel``/``terminate`` ``Step`` with a ``transaction`` guard: ``done`` (signalled),
  ``skipped`` with ``GUARD_BACKEND_GONE`` / ``GUARD_BACKEND_REPLACED`` /
  ``GUARD_TRANSACTION_ENDED`` / ``PROTECTED_NOT_CLIENT_BACKEND`` / ``IDENTITY_UNKNOWN``,
  or ``failed`` (server error, or the function returned false). Never raises for a
  server error.
- ``_mismatch(current, backend_start, sess_id)``: why a backend is not the planned one.

A pid is reused by the OS after its backend exits, in "Retry Commit Prepared" a QD's
``sess_id`` changes (docs/greenplum-internals.md#signalling-backends), and a session
outlives its transactions (a client retries in the same session): so the pid, start
time, session, the current transaction's ``xact_start`` and its gxid must all still
match, and (Greenplum 7) the backend must be a client backend (never FTS, GDD, dtx
recovery, walsenders). The statement checks all of them, so nothing can change
between the check and the signal.

Greenplum 7 has ``pg_cancel_backend(int, text)`` / ``pg_terminate_backend(int, text)``
(``pg_proc.dat`` oids 7155/7154; the client sees ``canceling statement due to user
request: "<message>"``), as GDD uses; elsewhere the 1-argument forms are used
(``to_regprocedure`` of the ``pg_catalog`` signature tells which exist; every name is
schema-qualified, never resolved through the role's ``search_path``).
Cancelling a QD cancels its QEs; terminating a QD makes its QEs exit when their
client socket closes (docs/greenplum-internals.md#signalling-backends).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.gpops.greenplum.plugins.module_utils.act.executor import Outcome
from ansible_collections.gpops.greenplum.plugins.module_utils.collect import sql
from ansible_collections.gpops.greenplum.plugins.module_utils.collect.connection import (
    classify_error, psycopg, query)
from ansible_collections.gpops.greenplum.plugins.module_utils.common.records import Backend
from ansible_collections.gpops.greenplum.plugins.module_utils.plan.reasons import Reason

_FUNCTIONS = sql.SIGNAL_FUNCTIONS
WHERE_KEYS = ("pid", "backend_start", "sess_id", "xact_start", "gxid")


class CoordinatorSignals:
    """The guard source of ``signal_transaction`` on a real coordinator (see the module
    docstring). ``conn``: an autocommit connection in dispatch mode."""

    def __init__(self, conn):
        self.conn = conn
        self._statements = {}

    def _statement(self, action):
        if action not in self._statements:
            with_message = query(self.conn, sql.FUNCTION_EXISTS,
                                 (sql.function_signature(action, True),))[0]["present"]
            typed = query(self.conn, sql.ACTIVITY_HAS_BACKEND_TYPE)[0]["present"]
            self._statements[action] = (sql.signal_transaction(action, with_message, typed), with_message)
        return self._statements[action]

    def statement(self, action):
        return self._statement(action)[0]

    def signal(self, action, where, message):
        if set(where) != set(WHERE_KEYS):
            raise ValueError("where: exactly %s are checked, got %s" % (", ".join(WHERE_KEYS), sorted(where)))
        statement, _with_message = self._statement(action)
        rows = query(self.conn, statement, dict(where, gxid=str(where["gxid"]), message=message))
        return bool(rows[0]["signalled"]) if rows else None

    def current(self, pid):
        rows = query(self.conn, sql.BACKEND_TRANSACTION, {"pid": pid})
        if not rows:
            return None
        backend = Backend.from_row(rows[0])
        return {"backend": backend, "gxids": [int(g) for g in rows[0].get("gxids") or []]}


def _mismatch(current, backend_start, sess_id):
    """Why ``current`` (a Backend, or None) is not the backend the decision was made on."""
    if current is None:
        return "backend no longer exists"
    if current.backend_start != backend_start or current.sess_id != sess_id:
        return ("pid now belongs to another backend (started %s, session %s; expected started %s, "
                "session %s)" % (current.backend_start and current.backend_start.isoformat(),
                                 current.sess_id, backend_start and backend_start.isoformat(), sess_id))
    if not current.is_client_backend:
        return "not a client backend (%s): never signalled" % current.backend_type
    return None


def _why_not(step, source):
    """The ``Outcome`` of a step whose guarded statement matched no backend."""
    g = step.guard.facts
    now = source.current(g["pid"])
    backend = now and now["backend"]
    facts = dict(pid=g["pid"], gxid=g["gxid"], backend_type=backend and backend.backend_type)
    why = _mismatch(backend, g["backend_start"], g["sess_id"])
    if backend is None:
        return Outcome.skipped(step, Reason.GUARD_BACKEND_GONE, **facts)
    if why and why.startswith("pid now belongs"):
        return Outcome.skipped(step, Reason.GUARD_BACKEND_REPLACED, **facts)
    if why:
        return Outcome.skipped(step, Reason.PROTECTED_NOT_CLIENT_BACKEND, **facts)
    return Outcome.skipped(step, Reason.GUARD_TRANSACTION_ENDED, **facts)


def signal_transaction(step, source, message):
    """Run one ``cancel``/``terminate`` step through ``source`` (``CoordinatorSignals``
    or any object with the same ``signal``/``current``): see the module docstring."""
    g = step.guard.facts
    if step.guard.kind != "transaction" or any(g.get(k) is None for k in WHERE_KEYS):
        return Outcome.skipped(step, Reason.IDENTITY_UNKNOWN, pid=g.get("pid"))
    statement = ""
    try:
        statement = getattr(source, "statement", lambda _a: "")(step.action)
        signalled = source.signal(step.action, {k: g[k] for k in WHERE_KEYS}, message)
        if signalled is None:
            return _why_not(step, source)
    except psycopg.Error as exc:
        return Outcome.failed(step, classify_error(exc), statement)
    if not signalled:
        return Outcome.failed(step, "%s returned false (the process could not be signalled)"
                              % _FUNCTIONS[step.action], statement)
    return Outcome.done(step, "%s: pid %s still ran gxid %s" % (_FUNCTIONS[step.action], g["pid"], g["gxid"]),
                        statement)
