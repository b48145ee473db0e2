# -*- coding: utf-8 -*-
# Copyright: gpops.greenplum contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Signals to coordinator backends: cancel and terminate, each proving first that the
pid still belongs to the backend the decision was made on.

Public API:

- ``cancel_backend(conn, pid, message, backend_start, sess_id) -> ActionRecord``
- ``terminate_backend(conn, pid, message, backend_start, sess_id) -> ActionRecord``
- ``planned(action, pid, sess_id, reason) -> ActionRecord`` (check mode: what would run)
- ``ActionRecord``: ``action`` (``cancel`` | ``terminate``), ``pid``, ``sess_id``, ``at``
  (UTC ISO time), ``result`` (``done``, ``skipped``, ``failed``, ``planned``),
  ``reason``, ``statement`` (the SQL that signals; values are bound parameters).

``conn``: an autocommit connection to the coordinator (dispatch mode). ``pid`` is
the coordinator (QD) pid; ``backend_start`` (datetime) and ``sess_id`` come from the
snapshot the decision used. A pid is reused by the OS after its backend exits, and
in "Retry Commit Prepared" a QD's ``sess_id`` changes (docs/greenplum-internals.md#signalling-backends),
so both must still match, and the backend must be a client backend (never FTS, GDD,
dtx recovery, walsenders), or nothing is signalled and the record says why. The
signalling statement repeats the identity check, so nothing can change between
the check and the signal.

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

import dataclasses
import datetime

from ansible_collections.gpops.greenplum.plugins.module_utils.collect import sql
from ansible_collections.gpops.greenplum.plugins.module_utils.collect.connection import (
    classify_error, psycopg, query)
from ansible_collections.gpops.greenplum.plugins.module_utils.common.records import Backend

# One statement (sql.signal_backend) re-checks the identity and signals: a row only if
# pid, start time and session still match (the kind of backend was checked just
# before; it cannot change for the same pid and start time).
_FUNCTIONS = sql.SIGNAL_FUNCTIONS


@dataclasses.dataclass
class ActionRecord:
    action: str
    pid: int
    sess_id: int
    at: str
    result: str
    reason: str
    statement: str = ""

    def as_dict(self):
        return dataclasses.asdict(self)


def _now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat()


def planned(action, pid, sess_id, reason):
    """What ``action`` would do (check mode): nothing is signalled."""
    return ActionRecord(action, pid, sess_id, _now(), "planned", reason)


def _statement(conn, action):
    with_message = query(conn, sql.FUNCTION_EXISTS, (sql.function_signature(action, True),))[0]["present"]
    return sql.signal_backend(action, with_message), with_message


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


def _signal(conn, action, pid, message, backend_start, sess_id):
    at = _now()
    if backend_start is None or sess_id is None:
        return ActionRecord(action, pid, sess_id, at, "skipped",
                            "identity unknown (no backend_start or sess_id in the snapshot)")
    try:
        rows = query(conn, sql.BACKEND_BY_PID, (pid,))
        why = _mismatch(Backend.from_row(rows[0]) if rows else None, backend_start, sess_id)
        if why:
            return ActionRecord(action, pid, sess_id, at, "skipped", why)
        statement, with_message = _statement(conn, action)
        rows = query(conn, statement, dict(pid=pid, backend_start=backend_start, sess_id=sess_id,
                                           message=message))
    except psycopg.Error as exc:
        return ActionRecord(action, pid, sess_id, at, "failed", classify_error(exc))
    if not rows:
        return ActionRecord(action, pid, sess_id, at, "skipped",
                            "backend changed between the check and the signal", statement)
    if not rows[0]["signalled"]:
        return ActionRecord(action, pid, sess_id, at, "failed",
                            "%s returned false (the process could not be signalled)"
                            % _FUNCTIONS[action], statement)
    form = "with message" if with_message else "without message (no 2-argument form here)"
    return ActionRecord(action, pid, sess_id, at, "done", "%s %s" % (_FUNCTIONS[action], form),
                        statement)


def cancel_backend(conn, pid, message, backend_start, sess_id):
    """Cancel the current statement of coordinator backend ``pid`` (SIGINT), as GDD
    does to its victim. Returns an ``ActionRecord``; never raises for a server error
    (``result`` ``failed`` with the reason)."""
    return _signal(conn, "cancel", pid, message, backend_start, sess_id)


def terminate_backend(conn, pid, message, backend_start, sess_id):
    """Terminate coordinator backend ``pid`` (SIGTERM): its transaction rolls back and
    its QEs exit. Same checks and return as ``cancel_backend``."""
    return _signal(conn, "terminate", pid, message, backend_start, sess_id)
