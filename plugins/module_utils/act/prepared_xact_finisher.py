# -*- coding: utf-8 -*-
# Copyright: gpops.greenplum contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Finishing prepared transactions on a segment: the runners of the ``rollback_prepared``
and ``commit_prepared`` steps that ``plan/prepared_xacts.py`` plans
(docs/safety.md#prepared-transactions).

- ``read_committed(conn, gxids) -> (set | None, error | None)``: the gxids (text) the
  segments' ``gp_distributed_log`` records as committed, or None and why it is unknown.
- ``Finisher(params, server, nodes, coordinator_conn)``: ``runners()`` gives
  ``{"rollback_prepared": run, "commit_prepared": run}`` for ``act/executor.execute``;
  ``statement(step)`` is the statement a step runs (for check mode).

What a step proves right before it acts, in this order (each fact read after the one
before, so a transaction cannot slip between them):

1. the coordinator does not have the gxid (``gp_distributed_xacts``, its ``distributed
   xid`` lock): else skipped ``GUARD_COORDINATOR_HAS_GXID`` (the coordinator finishes it);
2. the segments' commit log, read again through ``gp_dist_random``: unreadable, skipped
   ``COMMIT_LOG_UNKNOWN``; for a rollback it must not record the commit, for a commit it
   must (else skipped ``GUARD_COMMIT_STATE_CHANGED``; a commit is never turned into a
   rollback, nor a rollback into a commit: the next run plans it again);
3. in the utility-mode session to the segment and database that then finishes it, the gid
   is still prepared (else ``GUARD_PREPARED_XACT_GONE``) with the prepared time, owner and
   database judged (else ``GUARD_PREPARED_XACT_REPLACED``);
4. ``ROLLBACK PREPARED '<gid>'`` / ``COMMIT PREPARED '<gid>'`` in that session. The
   statement names the gid and fails by itself if the gid was finished meanwhile; Greenplum
   never re-uses a gxid (it is 64-bit and persisted across restarts), so the window between 3
   and 4 is a gid finished by someone else (the step then fails with Greenplum's error).

The Greenplum source: ``FinishPreparedTransaction`` (``src/backend/access/transam/twophase.c``)
and the orphan rule of ``src/backend/cdb/cdbdtxrecovery.c``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime

from ansible_collections.gpops.greenplum.plugins.module_utils.act.executor import Outcome
from ansible_collections.gpops.greenplum.plugins.module_utils.collect import sql
from ansible_collections.gpops.greenplum.plugins.module_utils.collect.connection import connect, query
from ansible_collections.gpops.greenplum.plugins.module_utils.plan.reasons import Reason
from ansible_collections.gpops.greenplum.plugins.module_utils.plan.prepared_xacts import COMMIT, ROLLBACK

STATEMENTS = {ROLLBACK: sql.rollback_prepared, COMMIT: sql.commit_prepared}


def read_committed(conn, gxids):
    """gxids (text) that the segments' ``gp_distributed_log`` records as committed, asked
    through the coordinator connection ``conn``: (set, None), or (None, reason) where the
    log cannot be read (no such view, a segment down, an error). Never raises."""
    if not gxids:
        return set(), None
    try:
        return {r["gxid"] for r in query(conn, sql.COMMITTED_GXIDS, {"gxids": sorted(gxids)})}, None
    except Exception as exc:  # the view is Greenplum's only; any failure means "not checked"
        return None, " ".join(str(exc).split())[:200]


def _same_time(a, b):
    if isinstance(a, str):
        a = datetime.datetime.fromisoformat(a)
    if isinstance(b, str):
        b = datetime.datetime.fromisoformat(b)
    return a == b


class Finisher:
    """Runs ``rollback_prepared`` / ``commit_prepared`` steps.

    ``params``: the module's connection options; ``server``: the coordinator's
    ``ServerInfo``; ``nodes``: ``{content: SegmentConfig}`` of the primaries;
    ``coordinator_conn``: an open coordinator connection (autocommit). Connection errors
    and server errors propagate (the executor reports the step ``failed``).
    """

    def __init__(self, params, server, nodes, coordinator_conn):
        self.params = params
        self.server = server
        self.nodes = nodes
        self.conn = coordinator_conn

    def runners(self):
        return {ROLLBACK: self.run, COMMIT: self.run}

    def statement(self, step):
        """The statement ``step`` runs, as text."""
        return STATEMENTS[step.action](step.guard.facts["gid"]).as_string(self.conn)

    def _coordinator_and_log(self, step):
        """Steps 1 and 2 of the module docstring: None when they hold, else the skipped Outcome."""
        g = step.guard.facts
        gxid = str(g["gxid"])
        again = query(self.conn, sql.COORDINATOR_HAS_GXID, {"g": gxid})
        if again:
            return Outcome.skipped(step, Reason.GUARD_COORDINATOR_HAS_GXID, gxid=gxid,
                                   detail="%d place(s): gp_distributed_xacts or its distributed xid lock" % len(again))
        committed, why = read_committed(self.conn, {gxid})
        if committed is None:
            return Outcome.skipped(step, Reason.COMMIT_LOG_UNKNOWN, detail=why)
        now = "committed" if gxid in committed else "not committed"
        planned = "committed" if step.action == COMMIT else "not committed"
        if now != planned:
            return Outcome.skipped(step, Reason.GUARD_COMMIT_STATE_CHANGED, gxid=gxid, now=now, planned=planned)
        return None

    def run(self, step):
        """Prove the guard (module docstring, 1-3), then finish the gid; an ``Outcome``."""
        g = step.guard.facts
        refused = self._coordinator_and_log(step)
        if refused is not None:
            return refused
        node = self.nodes.get(g["content"])
        if node is None:
            return Outcome.failed(step, "content %s is not a primary in gp_segment_configuration now" % g["content"])
        conn = connect(self.params, host=node.address, port=node.port, dbname=g["database"], utility=True,
                       server=self.server)
        with conn:
            rows = query(conn, sql.PREPARED_XACT_BY_GID, {"gid": g["gid"]})
            if not rows:
                return Outcome.skipped(step, Reason.GUARD_PREPARED_XACT_GONE, gid=g["gid"], content=g["content"])
            row = rows[0]
            if not (_same_time(row["prepared"], g["prepared"]) and row["owner"] == g["owner"]
                    and row["database"] == g["database"]):
                return Outcome.skipped(step, Reason.GUARD_PREPARED_XACT_REPLACED, gid=g["gid"], content=g["content"],
                                       now=row["prepared"].isoformat() if row["prepared"] else None,
                                       prepared=g["prepared"].isoformat() if g["prepared"] else None)
            statement = STATEMENTS[step.action](g["gid"])
            text = statement.as_string(conn)
            with conn.cursor() as cur:
                cur.execute(statement)
        return Outcome.done(step, "%s on content %d" % (text, g["content"]), statement=text)
