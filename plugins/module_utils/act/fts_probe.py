# -*- coding: utf-8 -*-
# Copyright: gpops.greenplum contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""FTS (fault tolerance service): its settings, an on-demand probe, and what the
probe changed in the catalog.

- ``fts_settings(conn) -> dict``: ``gp_fts_probe_interval``, ``gp_fts_probe_timeout``,
  ``gp_fts_probe_retries``, ``gp_fts_mark_mirror_down_grace_period`` (seconds /
  count, ints) read on the coordinator, Greenplum's defaults (60, 20, 5, 30;
  docs/greenplum-internals.md#defaults) where a setting does not exist; ``source`` says which.
- ``probe_timeout(settings) -> float``: seconds to allow one probe cycle.
- ``request_probe(conn, timeout) -> dict``: ``SELECT pg_catalog.gp_request_fts_probe_scan()``.
- ``catalog_diff(before, after) -> list``: pure; per dbid changes of role,
  status, mode (and added/removed rows).
- ``history_since(conn, after) -> list``: new ``gp_configuration_history`` rows.
- ``fts_mark_down_runner(params, server, primaries, mirrors, probe_timeout, wait_timeout,
  details)``: the executor's runner for the action ``fts_mark_down`` (FTS first): the
  primary's ``gp_fts_mark_mirror_down_grace_period`` lowered to 0 for one probe, a probe
  requested, the exact previous value restored in a ``finally``; FTS marks the mirror
  down and then switches sync off itself.
- ``grace_windows(conn, since, grace) -> dict``: when each lost mirror's grace period
  ends, from the primaries' FTS retry log lines (the walsender's disconnect time), else
  bounded by the first SyncRep wait; ``grace_from_rows`` is its pure part.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import os
import re
import time

from ansible_collections.gpops.greenplum.plugins.module_utils.act import sync_replication_switch as switch
from ansible_collections.gpops.greenplum.plugins.module_utils.act.executor import Outcome
from ansible_collections.gpops.greenplum.plugins.module_utils.collect import sql
from ansible_collections.gpops.greenplum.plugins.module_utils.collect.connection import GpConnectionError, connect, query

try:
    import psycopg
except ImportError:  # pragma: no cover - connection.py reports the missing library
    psycopg = None

# Greenplum's defaults (guc_gp.c, GP6 and GP7 identical; verified live on GP7).
FTS_DEFAULTS = {
    "gp_fts_probe_interval": 60,
    "gp_fts_probe_timeout": 20,
    "gp_fts_probe_retries": 5,
    "gp_fts_mark_mirror_down_grace_period": 30,
}
# Beyond timeout x (retries + 1): FTS retries a segment about once a second
# (gp_fts_retry_interval, 1 s) and the call polls every 50 ms for the cycle end.
PROBE_MARGIN_S = 5.0
DIFF_FIELDS = ("role", "status", "mode")

# When a lost mirror's grace period ends. Inside it, every FTS probe makes the primary log
# (gp_replication.c, is_probe_retry_needed; verified on GP7): "requesting fts retry as mirror
# didn't connect yet but in grace period: <delta>", detail "pid zero at time: <walsender
# disconnect, epoch s> accept connections start time: <postmaster ready, epoch s>"; the
# mirror is marked down once now - max(both) >= gp_fts_mark_mirror_down_grace_period.
# gp_toolkit.gp_log_system reads every node's CSV log (logsegment 'seg<content>').
GRACE_LOG_MESSAGE = "requesting fts retry as mirror didn't connect yet but in grace period%"
GRACE_DETAIL = re.compile(r"pid zero at time: (-?\d+) accept connections start time: (-?\d+)")
# FTS compares whole seconds (time(NULL)): probe a second after the computed end.
GRACE_MARGIN_S = 1.0


def fts_settings(conn):
    """Read the FTS settings on the coordinator.

    Returns {name: int, ..., "source": {name: "server" | "default"}}. A setting
    missing on the server (another build, or a sandbox) takes Greenplum's default."""
    rows = query(conn, sql.SETTINGS_BY_NAME, (list(FTS_DEFAULTS),))
    found = {r["name"]: int(float(r["setting"])) for r in rows}
    out = {name: found.get(name, default) for name, default in FTS_DEFAULTS.items()}
    out["source"] = {name: ("server" if name in found else "default") for name in FTS_DEFAULTS}
    return out


def probe_timeout(settings):
    """Seconds one ``gp_request_fts_probe_scan()`` may take: a probe cycle with a
    dead segment lasts up to ``gp_fts_probe_timeout x (gp_fts_probe_retries + 1)``
    (docs/greenplum-internals.md#segment-configuration-and-fts), plus one retry
    interval per retry and a margin."""
    retries = settings["gp_fts_probe_retries"]
    return float(settings["gp_fts_probe_timeout"] * (retries + 1) + retries + PROBE_MARGIN_S)


def request_probe(conn, timeout):
    """Ask FTS for a whole new probe cycle and wait for it (``FtsNotifyProber``
    waits for a new cycle to start and to finish), at most ``timeout`` seconds
    (server-side ``statement_timeout`` on this call; the call is cancellable).

    Returns {completed: bool, seconds: float, error: None or text}. A timeout or
    an error is data (FTS hung or paused, a build without FTS), not an exception;
    psycopg errors other than statement failures propagate."""
    query(conn, sql.SET_STATEMENT_TIMEOUT, (str(int(timeout * 1000)),))
    started = time.monotonic()
    try:
        query(conn, sql.REQUEST_FTS_PROBE)
        error = None
    except psycopg.errors.QueryCanceled:
        error = ("timeout: FTS did not finish a probe cycle within %.1f s (FTS paused, hung, busy "
                 "or not running)" % timeout)
    except psycopg.DatabaseError as exc:
        error = "error: %s" % " ".join(str(exc).split())
    return {"completed": error is None, "seconds": round(time.monotonic() - started, 3),
            "error": error}


def catalog_diff(before, after):
    """Differences between two ``gp_segment_configuration`` readings (lists of
    SegmentConfig), per dbid: [{dbid, content, changes: {field: [old, new]}}] for
    role, status and mode; a row present on one side only has ``added``/``removed``."""
    old = {s.dbid: s for s in before}
    new = {s.dbid: s for s in after}
    out = []
    for dbid in sorted(set(old) | set(new)):
        a, b = old.get(dbid), new.get(dbid)
        if a is None or b is None:
            out.append({"dbid": dbid, "content": (a or b).content,
                        "changes": {}, "added" if a is None else "removed": True})
            continue
        changes = {f: [getattr(a, f), getattr(b, f)] for f in DIFF_FIELDS if getattr(a, f) != getattr(b, f)}
        if changes:
            out.append({"dbid": dbid, "content": b.content, "changes": changes})
    return out


def history_last_time(conn):
    """The newest ``gp_configuration_history.time`` (or None)."""
    return query(conn, sql.CONFIGURATION_HISTORY_LAST_TIME)[0]["t"]


def history_since(conn, after):
    """``gp_configuration_history`` rows newer than ``after`` (all when None), oldest
    first: [{time (ISO text), dbid, description}]. FTS writes one per changed
    member: "FTS: update role, status, and mode for dbid %d with contentid %d to
    %c, %c, and %c" (docs/greenplum-internals.md#segment-configuration-and-fts)."""
    if after is None:
        rows = query(conn, sql.CONFIGURATION_HISTORY)
    else:
        rows = query(conn, sql.CONFIGURATION_HISTORY_SINCE, (after,))
    return [{"time": r["time"].isoformat() if hasattr(r["time"], "isoformat") else r["time"],
             "dbid": r["dbid"], "description": r["description"]} for r in rows]


def _epoch(value):
    return value.timestamp() if hasattr(value, "timestamp") else float(value)


def _iso(epoch):
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).isoformat()


def grace_from_rows(log_rows, syncrep_rows, grace, now, contents=None):
    """Pure: when the grace period of each lost mirror ends.

    ``log_rows``: {logsegment, logtime, logmessage, logdetail} FTS retry lines of the
    primaries (newest per content wins); ``syncrep_rows``: {content, since} first SyncRep
    wait per primary, used for a content without a log line; ``grace``: seconds;
    ``now``: the server's time (datetime or epoch s); ``contents``: only these.

    Returns [{content, source ('log' | 'syncrep_wait'), disconnected_at, accepting_since,
    ends_at (ISO), seconds_left, exact}], by content. From the log the end is exact (FTS's
    own rule); from the first SyncRep wait it is a bound, true when the mirror went away
    before that commit began to wait."""
    now = _epoch(now)
    out = {}
    for row in log_rows:
        seg = str(row.get("logsegment") or "")
        match = GRACE_DETAIL.search(row.get("logdetail") or "")
        if not seg.startswith("seg") or not match:
            continue
        try:
            content = int(seg[3:])
        except ValueError:
            continue
        if content < 0 or (contents is not None and content not in contents):
            continue
        gone, ready = int(match.group(1)), int(match.group(2))
        ends = max(gone, ready) + grace
        out[content] = {"content": content, "source": "log", "exact": True,
                        "disconnected_at": _iso(gone) if gone > 0 else None,
                        "accepting_since": _iso(ready), "ends_at": _iso(ends),
                        "seconds_left": round(ends - now, 1)}
    for row in syncrep_rows:
        content = row["content"]
        if content in out or row.get("since") is None or (contents is not None and content not in contents):
            continue
        ends = _epoch(row["since"]) + grace
        out[content] = {"content": content, "source": "syncrep_wait", "exact": False,
                        "disconnected_at": None, "accepting_since": None,
                        "first_wait_at": _iso(_epoch(row["since"])), "ends_at": _iso(ends),
                        "seconds_left": round(ends - now, 1)}
    return [out[c] for c in sorted(out)]


def server_now(conn):
    """The server's clock (timestamptz)."""
    return query(conn, sql.SERVER_NOW_SQL)[0]["now"]


def grace_windows(conn, since, grace, contents=None):
    """When each lost mirror's grace period ends (``grace_from_rows``), read on the
    coordinator: the FTS retry lines logged at or after ``since`` (a datetime: the start
    of the probe that was refused), else the first SyncRep wait. Reading the log is
    bounded by the connection's statement_timeout; a log that cannot be read is noted
    in ``log_error`` and the SyncRep bound is used."""
    log_rows, log_error = [], None
    try:
        log_rows = query(conn, sql.GRACE_LOG_SQL, (since, GRACE_LOG_MESSAGE))
    except psycopg.DatabaseError as exc:
        log_error = " ".join(str(exc).split())
    syncrep_rows = query(conn, sql.SYNCREP_SINCE_SQL, ("SyncRep",))
    now = server_now(conn)
    return {"grace_s": grace, "log_error": log_error,
            "contents": grace_from_rows(log_rows, syncrep_rows, grace, now, contents)}


# FTS-first path (docs/mirror-loss.md#fts-first). The grace period is read where the FTS
# message handler runs: on the PRIMARY (gp_replication.c, is_probe_retry_needed, a PGC_SIGHUP
# GUC, guc_gp.c); the coordinator's value is never consulted. With it at 0 on that primary the
# next probe gets no retry request, FTS marks the mirror down (ftsprobe.c, processResponse),
# then sends SYNCREP_OFF and the primary writes synchronous_standby_names = '' itself.
GRACE_GUC = "gp_fts_mark_mirror_down_grace_period"
AUTO_CONF = "postgresql.auto.conf"
# Seconds to wait until a reload is seen by the session and by a new backend (the FTS
# handler is a new backend per probe, forked from the postmaster).
RELOAD_WAIT_S = 5.0


def _grace_row(conn):
    rows = query(conn, sql.SETTING_WITH_SOURCE, (GRACE_GUC,))
    return rows[0] if rows else None


def _wait_setting(conn, expected, timeout, interval=0.05):
    deadline = time.monotonic() + timeout
    while True:
        row = _grace_row(conn)
        if (row or {}).get("setting") == expected or time.monotonic() >= deadline:
            return (row or {}).get("setting")
        time.sleep(interval)


def restore_statement(previous):
    """How to put ``gp_fts_mark_mirror_down_grace_period`` back exactly as it was:
    ``ALTER SYSTEM SET`` to the previous value when it came from ``postgresql.auto.conf``,
    else ``ALTER SYSTEM RESET`` (our line removed: ``postgresql.conf`` or the default
    applies again). ``previous``: its ``pg_settings`` row {setting, source, sourcefile}.
    Returns (Composed, text)."""
    if os.path.basename(previous.get("sourcefile") or "") == AUTO_CONF:
        return (sql.alter_system_set(GRACE_GUC, previous["setting"]),
                "ALTER SYSTEM SET %s = '%s'" % (GRACE_GUC, previous["setting"]))
    return sql.alter_system_reset(GRACE_GUC), "ALTER SYSTEM RESET %s" % GRACE_GUC


def _lower_grace(params, server, primary, conn, executed):
    """Grace 0 on the primary, reloaded, seen by this session and by a new backend."""
    with conn.cursor() as cur:
        cur.execute(sql.alter_system_set(GRACE_GUC, "0"))
    query(conn, sql.RELOAD_CONF)
    executed += ["ALTER SYSTEM SET %s = '0'" % GRACE_GUC, sql.RELOAD_CONF]
    seen = _wait_setting(conn, "0", RELOAD_WAIT_S)
    fresh = connect(params, host=primary.address, port=primary.port, utility=True, server=server)
    try:
        seen_new = _wait_setting(fresh, "0", RELOAD_WAIT_S)
    finally:
        fresh.close()
    return seen == "0" and seen_new == "0"


def _restore_grace(conn, previous, executed):
    """Put the grace back (``restore_statement``), reload, wait until it is in effect.
    Returns the value then in effect."""
    statement, text = restore_statement(previous)
    with conn.cursor() as cur:
        cur.execute(statement)
    query(conn, sql.RELOAD_CONF)
    executed += [text, sql.RELOAD_CONF]
    return _wait_setting(conn, previous["setting"], RELOAD_WAIT_S)


def probe_then_mirror_status(coordinator, probe_timeout_s, dbids, executed):
    """One ``gp_request_fts_probe_scan()`` on ``coordinator`` (bounded by
    ``probe_timeout_s`` seconds, ``request_probe``), then the catalog status of the mirrors
    ``dbids`` in one read. Returns ``(probe, {dbid: 'u' | 'd' | None})`` (None: no such
    row); appends the probe to ``executed``. Raises psycopg.Error for the status read."""
    probe = request_probe(coordinator, probe_timeout_s)
    executed.append(sql.REQUEST_FTS_PROBE)
    rows = query(coordinator, sql.SEGMENT_STATUS, (list(dbids),))
    found = {int(r["dbid"]): r["status"] for r in rows}
    return probe, {dbid: found.get(dbid) for dbid in dbids}


def fts_mark_down_runner(params, server, primaries, mirrors, probe_timeout_s, wait_timeout, details):
    """The runner of the action ``fts_mark_down``: make FTS mark the lost mirror down now.

    On the step's primary (utility mode; ``primaries``/``mirrors``: {content:
    SegmentConfig}): re-check the guard (``sync_replication_switch.guard_failure``), read
    ``gp_fts_mark_mirror_down_grace_period`` (setting, source, sourcefile), set it to 0 and
    reload; on the coordinator ``gp_request_fts_probe_scan()`` bounded by
    ``probe_timeout_s``; in a ``finally`` the exact previous value back and reload. Then
    the mirror's catalog row and the primary's ``synchronous_standby_names`` are read:
    ``done`` when FTS marked the mirror down ('d'); ``failed`` when the probe was not
    answered or FTS did not mark it down (the caller may then switch directly, its own
    guard re-checked). ``details[content]``: {path, probe, grace_before, grace_after,
    mirror_status, after, applied, waiters_after, executed_queries}. Raises
    GpConnectionError or psycopg.Error (the executor makes them ``failed``)."""
    def run(step):
        content = step.guard.facts["content"]
        primary, mirror = primaries[content], mirrors[content]
        executed = []
        info = details.setdefault(content, {})
        info.update(path="fts", executed_queries=executed)
        conn = connect(params, host=primary.address, port=primary.port, utility=True, server=server)
        try:
            failed = switch.guard_failure(conn, step)
            if failed is not None:
                return Outcome.skipped(step, failed[0], **failed[1])
            previous = _grace_row(conn)
            if previous is None or previous.get("setting") is None:
                return Outcome.failed(step, "%s cannot be read on the primary" % GRACE_GUC)
            info["grace_before"] = dict(previous)
            try:
                info["grace_lowered"] = _lower_grace(params, server, primary, conn, executed)
                coordinator = connect(params, server=server)
                try:
                    info["probe"], status = probe_then_mirror_status(coordinator, probe_timeout_s,
                                                                     [mirror.dbid], executed)
                finally:
                    coordinator.close()
            finally:
                info["grace_after"] = _restore_grace(conn, previous, executed)
            info["mirror_status"] = status[mirror.dbid]
            if info["mirror_status"] != "d":
                why = (info["probe"]["error"] if not info["probe"]["completed"] else
                       "the probe completed but mirror dbid %d is still '%s' in the catalog"
                       % (mirror.dbid, info["mirror_status"]))
                return Outcome.failed(step, "FTS did not mark the mirror down: %s" % why, "; ".join(executed))
            after = switch.wait_applied(conn, "", wait_timeout)
            waiting = switch.wait_released(conn, content, wait_timeout) if after["setting"] == "" else []
        finally:
            conn.close()
        info.update(after=after, applied=after["setting"] == "", waiters_after=[b.pid for b in waiting])
        return Outcome.done(step, "FTS marked mirror dbid %d down (probe %.1f s) and synchronous_standby_names "
                            "is %r; %s restored to %s" % (
                                mirror.dbid, info["probe"]["seconds"], after["setting"], GRACE_GUC,
                                info["grace_after"]), "; ".join(executed))
    return run


def probe_after_direct_switch(params, server, mirror_dbids, probe_timeout_s=None):
    """After a direct switch-off, let FTS mark the lost mirrors down now.

    With ``synchronous_standby_names = ''`` on a primary, an FTS probe marks its absent
    mirror down whatever the grace period: the retry-in-grace answer only holds FTS back
    while syncrep is enabled (ftsprobe.c ``processResponse``; gp_replication.c
    ``GetMirrorStatus``, docs/mirror-loss.md#the-window-after-a-direct-switch). Until
    then the catalog says the mirror is up and in sync, and a crash of the primary lets FTS
    promote a mirror that lacks the commits acknowledged since the switch; one probe closes
    that window. ``mirror_dbids``: {content: dbid} of the switched primaries' mirrors;
    ``probe_timeout_s``: seconds, None for ``probe_timeout`` of the FTS settings.

    Returns {probe: request_probe's dict, mirror_status: {content: 'u'|'d'|None},
    executed_queries: [text]}. Never raises for the cluster: the switch is done either
    way, so a connection or statement error is the probe's ``error``."""
    executed = []
    try:
        conn = connect(params, server=server)
        try:
            if probe_timeout_s is None:
                probe_timeout_s = probe_timeout(fts_settings(conn))
            probe, by_dbid = probe_then_mirror_status(conn, probe_timeout_s, sorted(mirror_dbids.values()), executed)
            status = {content: by_dbid[dbid] for content, dbid in mirror_dbids.items()}
        finally:
            conn.close()
    except (GpConnectionError, psycopg.Error) as exc:
        return {"probe": {"completed": False, "seconds": None, "error": " ".join(str(exc).split())},
                "mirror_status": {}, "executed_queries": executed}
    return {"probe": probe, "mirror_status": status, "executed_queries": executed}
