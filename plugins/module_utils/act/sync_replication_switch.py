# -*- coding: utf-8 -*-
# Copyright: gpops.greenplum contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Observe and switch a primary's synchronous replication the way FTS does.

Acting side of ``plan/sync_replication.py`` (which decides). Every function here does one
thing over a connection made by ``connection.connect`` (timeouts included):

- ``observe_primary(conn, content)``: the primary's setting, the
  mirror's walsender and lag, the backends waiting in SyncRep (utility mode).
- ``switch_statements(method, value, datadir)``: what ``apply_switch`` will do,
  as text (for ``executed_queries`` and check mode).
- ``apply_switch(conn, method, value, datadir)``: GP7/Cloudberry
  ``ALTER SYSTEM SET synchronous_standby_names = <value>`` then
  ``pg_reload_conf()``; GP6 the same value in ``gp_replication.conf`` in the
  primary's data directory, then ``pg_reload_conf()``
  (docs/greenplum-internals.md#synchronous-replication-switch). Never ``ALTER SYSTEM RESET``.
- ``wait_applied(conn, value, timeout)``: poll until the setting is in effect.
- ``walsender_sample(conn)`` / ``terminate_walsender(conn, pid)``: the
  coordinator's walsender serving the standby coordinator.
- ``guard_failure(conn, step)``: the step's ``mirror`` guard re-read on the primary
  just before the write: ``None`` when it holds, else ``(Reason, facts)``.
- ``switch_runner(params, server, primaries, methods, wait_timeout, details)``: the
  executor's runner for the actions ``sync_off`` and ``sync_on``
  (``act/executor.execute``): guard, write, reload, wait; what it saw in ``details``.
- ``observe_primaries(params, server, primaries, timeout)`` and
  ``mirrors_alive(params, server, mirrors, timeout)``: the above over utility-mode
  connections, in parallel and bounded.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import tempfile
import time

from ansible_collections.gpops.greenplum.plugins.module_utils.collect import sql
from ansible_collections.gpops.greenplum.plugins.module_utils.collect.connection import (
    GpConnectionError, connect, max_workers_of, query, run_on_nodes)
from ansible_collections.gpops.greenplum.plugins.module_utils.act.executor import Outcome
from ansible_collections.gpops.greenplum.plugins.module_utils.common.records import Backend
from ansible_collections.gpops.greenplum.plugins.module_utils.plan.reasons import Reason
from ansible_collections.gpops.greenplum.plugins.module_utils.plan.sync_replication import (
    GP_WALRECEIVER_APPNAME, Replication, gp_replication_conf_text, is_syncrep_wait)

ALTER_SYSTEM = "alter_system"
GP_REPLICATION_CONF = "gp_replication_conf"
METHODS = ("auto", ALTER_SYSTEM, GP_REPLICATION_CONF)
GP_REPLICATION_CONF_FILE = "gp_replication.conf"


def read_setting(conn):
    """``{setting, source, sourcefile}`` of ``synchronous_standby_names``
    (``sourcefile`` is NULL for non-superusers)."""
    rows = query(conn, sql.SYNC_STANDBY_NAMES_SETTING)
    return rows[0] if rows else {"setting": None, "source": None, "sourcefile": None}


def observe_primary(conn, content):
    """What the primary shows now, over a utility-mode connection ``conn``.

    Returns {setting: {setting, source, sourcefile}, replication: Replication,
    replication_rows: [pg_stat_replication rows], backends: [Backend], now:
    datetime (the primary's clock)}."""
    head = query(conn, sql.NOW_AND_SERVER_VERSION_NUM)[0]
    rows = query(conn, sql.replication_positions(head["server_version_num"]), (GP_WALRECEIVER_APPNAME,))
    backends = [Backend.from_row(r, content=content) for r in query(conn, sql.LOCAL_ACTIVITY)]
    return {"setting": read_setting(conn), "replication": Replication.from_rows(rows),
            "replication_rows": rows, "backends": backends, "now": head["now"]}


def choose_method(method, server, setting, datadir):
    """Resolve ``method: auto``: ``gp_replication_conf`` on Greenplum 6, or where the
    current value comes from a ``gp_replication.conf`` (GP6-style layouts), or where
    that file exists in ``datadir`` on this host; else ``alter_system`` (GP7,
    Cloudberry: FTS writes ``postgresql.auto.conf`` there,
    docs/greenplum-internals.md#synchronous-replication-switch)."""
    if method != "auto":
        return method
    if server is not None and server.flavor == "greenplum" and server.major <= 6:
        return GP_REPLICATION_CONF
    sourcefile = (setting or {}).get("sourcefile") or ""
    if os.path.basename(sourcefile) == GP_REPLICATION_CONF_FILE:
        return GP_REPLICATION_CONF
    if datadir and os.path.exists(os.path.join(datadir, GP_REPLICATION_CONF_FILE)):
        return GP_REPLICATION_CONF
    return ALTER_SYSTEM


def switch_statements(method, value, datadir):
    """The statements (text) that ``apply_switch`` runs, for reports and check mode."""
    if method == ALTER_SYSTEM:
        first = sql.alter_system_sync_standby_names_text(value)
    else:
        first = "write synchronous_standby_names = '%s' to %s" % (
            value, os.path.join(datadir, GP_REPLICATION_CONF_FILE))
    return [first, sql.RELOAD_CONF]


def _write_gp_replication_conf(datadir, value):
    """Replace the file atomically (temporary file + rename), keeping its owner and
    mode (the server's OS user must keep reading it). Raises OSError; the message
    names the path, e.g. when the module does not run on the segment host."""
    path = os.path.join(datadir, GP_REPLICATION_CONF_FILE)
    if not os.path.isdir(datadir):
        raise OSError("data directory %s is not on this host: run the task on the segment "
                      "host (delegate_to its hostname)" % datadir)
    ref = path if os.path.exists(path) else datadir
    st = os.stat(ref)
    current = ""
    if os.path.exists(path):
        with open(path) as f:
            current = f.read()
    fd, tmp = tempfile.mkstemp(prefix=".gp_replication.conf.", dir=datadir)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(gp_replication_conf_text(current, value))
        os.chmod(tmp, (st.st_mode & 0o777) if ref == path else 0o600)
        if os.geteuid() == 0:
            os.chown(tmp, st.st_uid, st.st_gid)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def apply_switch(conn, method, value, datadir):
    """Set ``synchronous_standby_names`` to ``value`` ('' or '*') on the primary of
    ``conn`` (utility mode) and reload, as FTS does. Returns the statements run.
    Raises psycopg.Error or OSError."""
    if value not in ("", "*"):
        raise ValueError("synchronous_standby_names value must be '*' or '', got %r" % (value,))
    if method == ALTER_SYSTEM:
        with conn.cursor() as cur:
            cur.execute(sql.alter_system_sync_standby_names(value))
    else:
        _write_gp_replication_conf(datadir, value)
    query(conn, sql.RELOAD_CONF)
    return switch_statements(method, value, datadir)


def wait_applied(conn, value, timeout, interval=0.1):
    """Poll until ``synchronous_standby_names`` shows ``value`` (the reload is
    asynchronous: each backend re-reads its configuration between statements).
    Returns the last ``read_setting`` row; the caller compares."""
    deadline = time.monotonic() + timeout
    while True:
        row = read_setting(conn)
        if row["setting"] == value or time.monotonic() >= deadline:
            return row
        time.sleep(interval)


def wait_released(conn, content, timeout, interval=0.2):
    """Poll the primary's ``pg_stat_activity`` until no backend waits in SyncRep or
    ``timeout`` seconds pass; returns the Backend records still waiting."""
    deadline = time.monotonic() + timeout
    while True:
        waiting = [b for b in (Backend.from_row(r, content=content) for r in query(conn, sql.LOCAL_ACTIVITY))
                   if is_syncrep_wait(b)]
        if not waiting or time.monotonic() >= deadline:
            return waiting
        time.sleep(interval)


def walsender_sample(conn):
    """The coordinator's walsender serving the standby coordinator (application
    ``gp_walreceiver``) with LSN byte positions, or None. Taken on the coordinator;
    ``pg_stat_replication`` there is the coordinator's own."""
    head = query(conn, sql.NOW_AND_SERVER_VERSION_NUM)[0]
    rows = query(conn, sql.replication_positions(head["server_version_num"]), (GP_WALRECEIVER_APPNAME,))
    return rows[0] if rows else None


def terminate_walsender(conn, pid):
    """End the walsender ``pid`` only if it still is the standby's walsender (a pid
    reused by another process is never signalled). Returns True when signalled."""
    rows = query(conn, sql.TERMINATE_WALSENDER, (pid, GP_WALRECEIVER_APPNAME))
    return bool(rows and rows[0]["ok"])


def observe_primaries(params, server, primaries, timeout):
    """``observe_primary`` on every primary in parallel (utility mode), each bounded by
    ``timeout`` seconds. Returns (observations by content, unreachable by content)."""
    def observe(node):
        conn = connect(params, host=node.address, port=node.port, utility=True, server=server)
        try:
            return observe_primary(conn, node.content)
        finally:
            conn.close()
    return run_on_nodes(primaries, observe, timeout, max_workers_of(params))


def mirrors_alive(params, server, mirrors, timeout):
    """For each mirror (``SegmentConfig``), whether its postmaster runs: a running
    mirror refuses sessions with "the database system is in recovery mode" (a
    session accepted means it runs too, e.g. promoted); refused or an unknown host
    means it does not; anything else (a timeout: a frozen host) is unknown.
    Returns {content: True | False | None}, all probed in parallel within ``timeout``."""
    def probe(node):
        try:
            connect(params, host=node.address, port=node.port, utility=True, server=server).close()
            return True
        except GpConnectionError as exc:
            # Greenplum: "the database system is in recovery mode"; PostgreSQL 12+ without hot
            # standby (the sandbox): "the database system is not accepting connections".
            if exc.reason.startswith("in recovery") or "not accepting connections" in exc.reason:
                return True
            if exc.reason.startswith(("connection refused", "unknown host")):
                return False
            return None
    found, _unanswered = run_on_nodes(mirrors, probe, timeout, max_workers_of(params))
    return {m.content: found.get(m.content) for m in mirrors}


def replication_now(conn):
    """The mirror's walsender on the primary of ``conn``, read now (``Replication``)."""
    head = query(conn, sql.NOW_AND_SERVER_VERSION_NUM)[0]
    return Replication.from_rows(query(conn, sql.replication_positions(head["server_version_num"]),
                                       (GP_WALRECEIVER_APPNAME,)))


def guard_failure(conn, step):
    """Re-read the facts of ``step.guard`` (kind ``mirror``) on the primary of ``conn``
    (utility mode), right before the write: ``synchronous_standby_names`` must still be
    ``guard.setting``; the mirror's walsender must still be known and, per
    ``guard.require``, not streaming (``not_streaming``), streaming with a flush lag of
    at most ``max_lag_bytes`` (``streaming``), or anything (``any``: forced, or no
    mirror). Returns None when it holds, else ``(Reason, facts)`` for
    ``Outcome.skipped``. ``ALTER SYSTEM`` cannot run in a transaction block, so the
    re-read is the statement just before it on the same connection (docs/safety.md)."""
    guard = step.guard.facts
    content = guard["content"]
    setting = read_setting(conn)["setting"]
    if setting != guard["setting"]:
        return Reason.GUARD_SETTING_CHANGED, dict(setting="synchronous_standby_names", content=content,
                                                  expected=guard["setting"], now=setting)
    require = guard.get("require", "not_streaming")
    if require == "any":
        return None
    rep = replication_now(conn)
    if not rep.known:
        return Reason.GUARD_MIRROR_CHANGED, dict(content=content, detail="its walsender's state "
                                                 "cannot be read now (unknown)")
    if require == "not_streaming" and rep.streaming:
        return Reason.GUARD_MIRROR_CHANGED, dict(content=content, detail="its walsender streams again "
                                                 "(pid %s)" % rep.pid)
    if require == "streaming":
        limit = guard.get("max_lag_bytes") or 0
        if not rep.streaming or rep.lag_bytes is None or rep.lag_bytes > limit:
            return Reason.GUARD_MIRROR_CHANGED, dict(content=content, detail="walsender %s, lag %s bytes "
                                                     "(> %d)" % (rep.state_text, rep.lag_bytes, limit))
    return None


def switch_runner(params, server, primaries, methods, wait_timeout, details):
    """The runner of the actions ``sync_off`` and ``sync_on``: connect to the step's
    primary (``primaries``: {content: SegmentConfig}) in utility mode, check the guard
    (``guard_failure``), write ``step.facts['value']`` with ``methods[content]``, reload,
    wait until in effect and (switch-off) the SyncRep waiters are gone, each at most
    ``wait_timeout`` s. ``details[content]`` gets {after, applied, waiters_after,
    executed_queries}. Returns an ``Outcome``; raises GpConnectionError, psycopg.Error or
    OSError (the executor makes them ``failed``)."""
    def run(step):
        content = step.guard.facts["content"]
        primary = primaries[content]
        value = step.facts["value"]
        conn = connect(params, host=primary.address, port=primary.port, utility=True, server=server)
        try:
            failed = guard_failure(conn, step)
            if failed is not None:
                return Outcome.skipped(step, failed[0], **failed[1])
            executed = apply_switch(conn, methods[content], value, primary.datadir)
            after = wait_applied(conn, value, wait_timeout)
            applied = after["setting"] == value
            waiting = wait_released(conn, content, wait_timeout) if applied and value == "" else []
        finally:
            conn.close()
        details[content] = {"after": after, "applied": applied, "executed_queries": executed,
                            "waiters_after": [b.pid for b in waiting]}
        if not applied:
            return Outcome.failed(step, "synchronous_standby_names is still %r after %s and reload "
                                  "(source %s): another configuration file overrides it"
                                  % (after["setting"], methods[content], after["sourcefile"]),
                                  "; ".join(executed))
        return Outcome.done(step, "synchronous_standby_names = %r in effect%s" % (
            value, "; still waiting in SyncRep: pids %s" % [b.pid for b in waiting] if waiting else ""),
            "; ".join(executed))
    return run
