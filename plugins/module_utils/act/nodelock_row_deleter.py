# -*- coding: utf-8 -*-
# Copyright: gpops.greenplum contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Deleting a stale Slony-I ``sl_nodelock`` row: the runner of the ``delete_row`` steps
that ``plan/slony_nodelock.py`` plans (docs/safety.md#slony-i-node-locks).

- ``RowDeleter(conn)``: ``runners()`` gives ``{"delete_row": run}`` for
  ``act/executor.execute``; ``statement(step)`` is the ``DELETE`` a step runs, values
  bound, as the server receives it (for check mode and ``executed_queries``).

The guard is the ``DELETE``'s own ``WHERE`` (``sql.delete_nodelock``): the key
(``nl_nodeid``, ``nl_conncnt``), the values judged (``nl_backendpid``, the row version
``xmin``: any ``UPDATE`` of the row, even to the same pid, makes a new one) and the
backend judged (that a backend with the pid existed or not, and its ``backend_start``,
database, user, ``application_name`` and backend type), read from
``pg_catalog.pg_stat_activity`` by the same statement. ``conn`` is in autocommit mode,
so the statement is its own transaction; a slon starting meanwhile waits on the row (its
``INSERT`` on the primary key) until the ``DELETE`` commits. ``RETURNING`` tells whether
the row went; when it did not, the row is read again only to say which fact changed.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

try:
    from psycopg import ClientCursor
except ImportError:  # pragma: no cover - modules report the missing library
    ClientCursor = None

from ansible_collections.gpops.greenplum.plugins.module_utils.act.executor import Outcome
from ansible_collections.gpops.greenplum.plugins.module_utils.collect import sql
from ansible_collections.gpops.greenplum.plugins.module_utils.collect.connection import query
from ansible_collections.gpops.greenplum.plugins.module_utils.plan.reasons import Reason
from ansible_collections.gpops.greenplum.plugins.module_utils.plan.slony_nodelock import BACKEND_FACTS


def _params(guard):
    g = guard.facts
    backend = g["backend"] or {}
    out = {"nodeid": g["nl_nodeid"], "conncnt": g["nl_conncnt"], "pid": g["nl_backendpid"],
           "xmin": g["row_xmin"], "had_backend": g["backend"] is not None}
    out.update({k: backend.get(k) for k in BACKEND_FACTS})
    return out


class RowDeleter:
    """Runs ``delete_row`` steps on ``conn`` (autocommit, the database of the rows).
    Server errors propagate (the executor reports the step ``failed``)."""

    def __init__(self, conn):
        self.conn = conn

    def runners(self):
        return {"delete_row": self.run}

    def statement(self, step):
        """The ``DELETE`` with its values, one line, as the server receives it."""
        text = ClientCursor(self.conn).mogrify(sql.delete_nodelock(step.guard.facts["schema"]), _params(step.guard))
        return " ".join(text.split())

    def run(self, step):
        g = step.guard.facts
        statement = sql.delete_nodelock(g["schema"])
        deleted = query(self.conn, statement, _params(step.guard))
        text = self.statement(step)
        if deleted:
            return Outcome.done(step, "deleted %s (PID %d)" % (step.target, g["nl_backendpid"]), statement=text)
        now = query(self.conn, sql.nodelock_rows(g["schema"], by_key=True),
                    {"nodeid": g["nl_nodeid"], "conncnt": g["nl_conncnt"]})
        if not now or now[0]["nl_backendpid"] != g["nl_backendpid"] or now[0]["row_xmin"] != g["row_xmin"]:
            return Outcome.skipped(step, Reason.GUARD_ROW_CHANGED, statement=text, key=step.target)
        return Outcome.skipped(step, Reason.GUARD_NODELOCK_BACKEND_CHANGED, statement=text, key=step.target,
                               pid=g["nl_backendpid"])
