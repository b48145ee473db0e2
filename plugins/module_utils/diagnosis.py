# -*- coding: utf-8 -*-
# Copyright: gpops.greenplum contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Facts the triage needs beyond the lock snapshot, read once and read-only.

- ``collect_facts(params, segments, timeout, proc='/proc') ->
  triage.ClusterFacts``: on the coordinator (one connection from
  ``connection.connect``, so with ``statement_timeout`` and ``lock_timeout``):
  the settings in ``SETTINGS`` (``pg_settings``), the mirrors' walsender states
  (``gp_stat_replication``, GREENPLUM.md §11) and, only when
  ``gp_resource_manager`` is ``queue``, ``gp_toolkit.gp_locks_on_resqueue``
  (§9); on this host, whether the coordinator's FTS probe process runs.
  Bounded by ``timeout`` seconds in all; whatever could not be read is named
  in ``ClusterFacts.errors`` and left unknown, never guessed.
- ``fts_process_running(port, datadir, proc='/proc') -> bool or None``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import time

from ansible_collections.gpops.greenplum.plugins.module_utils.connection import (
    connect, query, run_with_deadline)
from ansible_collections.gpops.greenplum.plugins.module_utils.procinfo import (
    ProcUnreadable, read_process)
from ansible_collections.gpops.greenplum.plugins.module_utils.triage import ClusterFacts

SETTINGS = (
    "gp_enable_global_deadlock_detector", "gp_global_deadlock_detector_period",
    "gp_fts_probe_interval", "gp_fts_probe_timeout", "gp_fts_probe_retries",
    "gp_fts_mark_mirror_down_grace_period", "gp_resource_manager",
    "gp_dtx_recovery_prepared_period", "dtx_phase2_retry_second",
)
SETTINGS_SQL = "SELECT name, setting FROM pg_settings WHERE name = ANY(%s)"
REPLICATION_SQL = "SELECT gp_segment_id, application_name, state FROM gp_stat_replication"
RESQUEUE_SQL = "SELECT * FROM gp_toolkit.gp_locks_on_resqueue"
# Greenplum's FTS process title: "postgres:  <port>, ftsprobe process" (GP6, GP7, Cloudberry).
FTS_TITLE = "ftsprobe"


def _replication_states(rows):
    """content -> walsender state; a streaming ``gp_walreceiver`` row wins when a
    reconnect leaves two (the same preference as ``syncrep.Replication``)."""
    out = {}
    for row in rows:
        content = int(row["gp_segment_id"])
        state = row.get("state") if row.get("application_name") in (None, "gp_walreceiver") else None
        if out.get(content) != "streaming":
            out[content] = state
    return out


def _statements(facts_so_far):
    """(fact name, SQL, arguments) to run on the coordinator, in order; the resource-queue
    view only where queues queue (``gp_resource_manager = 'queue'``)."""
    yield "settings", SETTINGS_SQL, (list(SETTINGS),)
    yield "replication", REPLICATION_SQL, None
    if facts_so_far.setting("gp_resource_manager") == "queue":
        yield "resqueue_locks", RESQUEUE_SQL, None


def collect_facts(params, segments, timeout, proc="/proc"):
    """See the module docstring. ``segments``: ``SegmentConfig`` records (for the
    coordinator's port and data directory). The views read exist in GP6, GP7 and
    Cloudberry alike."""
    facts = ClusterFacts()
    deadline = time.monotonic() + timeout

    def bounded(fn):
        return run_with_deadline(fn, max(0.0, deadline - time.monotonic()))

    ok, conn = bounded(lambda: connect(params))
    if not ok:
        facts.errors["coordinator"] = conn
    else:
        for name, sql, args in _statements(facts):
            ok, rows = bounded(lambda sql=sql, args=args: query(conn, sql, args))
            if not ok:
                facts.errors[name] = rows
                if rows.startswith("timeout"):
                    break  # the connection is still busy in the abandoned thread
                continue
            if name == "settings":
                facts.settings = {r["name"]: str(r["setting"]) for r in rows}
            elif name == "replication":
                facts.replication = _replication_states(rows)
            else:
                facts.resqueue_locks = [dict(r) for r in rows]
        else:
            conn.close()
    coordinator = next((s for s in segments if s.content == -1 and s.role == "p"), None)
    if coordinator is not None:
        facts.fts_running = fts_process_running(coordinator.port, coordinator.datadir, proc)
    return facts


def _postmaster_pid(datadir):
    try:
        with open(os.path.join(datadir, "postmaster.pid")) as handle:
            return int(handle.readline().strip())
    except (OSError, ValueError):
        return None


def fts_process_running(port, datadir, proc="/proc"):
    """Whether the coordinator's FTS probe process exists on this host.

    True when a process titled ``... <port>, ftsprobe process`` runs here; False
    only when the coordinator itself provably runs here (its ``postmaster.pid``
    names a live process) and no such process exists; None when this host cannot
    tell (the coordinator runs elsewhere, or procfs is unreadable). FTS does not
    show in ``pg_stat_activity`` on Greenplum 7 (verified), hence procfs."""
    try:
        pids = [int(name) for name in os.listdir(proc) if name.isdigit()]
        for pid in pids:
            info = read_process(pid, proc)
            if info is None:
                continue
            title = " ".join(info.cmdline)
            if FTS_TITLE in title and str(port) in title.replace(",", " ").split():
                return True
        postmaster = _postmaster_pid(datadir)
        if postmaster is None or read_process(postmaster, proc) is None:
            return None
        return False
    except (ProcUnreadable, OSError):
        return None
