# -*- coding: utf-8 -*-
# Copyright: gpops.greenplum contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Mirror loss and synchronous replication: what is observed and what may be done.

Pure functions only (no I/O): they take observed state and return data. The
acting side is ``replication.py``; the FTS side is ``fts.py``.

The invariant (modelled on Patroni's ``synchronous_mode_strict``, stated again
in docs/mirror-loss.md and in every decision's ``durability_risk``):

* a primary's synchronous replication is switched off only when its mirror is
  proven not streaming (``pg_stat_replication`` on the primary, read now, shows
  no walsender in state ``streaming`` for the mirror) or the operator forced it;
* it is switched on only when the mirror streams and has caught up;
* the value written is exactly what FTS writes (``''`` or ``'*'``), never
  ``ALTER SYSTEM RESET`` (which deletes FTS's line:
  docs/greenplum-internals.md#synchronous-replication-switch); FTS's catalog is never touched; FTS sets ``'*'`` again by itself once
  the mirror streams (``HandleFtsWalRepProbe``, same section);
* a double fault (primary down and mirror down or not in sync) is reported as
  needing a person and never acted on (FTS: "FTS double fault detected");
* the coordinator (content -1) is refused: it ignores
  ``synchronous_standby_names`` (same section, "Coordinator and standby").

Units: seconds (float) for durations, bytes (int) for WAL lag.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import dataclasses
import re
from typing import Any, Dict, Iterable, List, Mapping, Optional

from ansible_collections.gpops.greenplum.plugins.module_utils.common.records import (
    COORDINATOR_CONTENT, Backend, SegmentConfig)

SYNC_ON = "*"
SYNC_OFF = ""
# application_name of a mirror's (and the standby coordinator's) walreceiver
# (GP_WALRECEIVER_APPNAME, used by FTS and by syncrep.c on the coordinator).
GP_WALRECEIVER_APPNAME = "gp_walreceiver"
# PostgreSQL walsender states (WalSndGetStateString); None = no walsender.
WALSENDER_STATES = ("startup", "catchup", "streaming", "backup", "stopping")
WANTED_STATES = ("off", "on", "auto")

# Decision verdicts.
SWITCH_OFF = "switch_off"
SWITCH_ON = "switch_on"
KEEP = "keep"
REFUSE = "refuse"
NEEDS_PERSON = "needs_person"

DURABILITY_WARNING = (
    "synchronous replication is off on content {contents}: commits there are acknowledged "
    "before their mirror has them; a failure of those primaries now loses them. FTS sets "
    "synchronous_standby_names back to '*' once the mirror streams (after gprecoverseg).")


def is_sync_on(setting):
    # type: (Optional[str]) -> bool
    """True when ``synchronous_standby_names`` names any standby ('*' or a list).

    On a primary, commits wait for the mirror exactly when this is true
    (``WalSndCtl->sync_standbys_defined``, Greenplum ``syncrep.c``)."""
    return bool(setting and setting.strip())


@dataclasses.dataclass(frozen=True)
class Replication:
    """The mirror's walsender on its primary (``pg_stat_replication``, application
    ``gp_walreceiver``), or ``state`` None when there is none.

    ``flush_lag_bytes``/``replay_lag_bytes``: ``pg_current_wal_lsn()`` minus the
    mirror's flush/replay LSN, in bytes, as seen on the primary."""

    state: Optional[str] = None
    sync_state: Optional[str] = None
    pid: Optional[int] = None
    flush_lag_bytes: Optional[int] = None
    replay_lag_bytes: Optional[int] = None

    @property
    def streaming(self):
        return self.state == "streaming"

    @property
    def lag_bytes(self):
        """The flush lag: what a commit with ``synchronous_commit = on`` (Greenplum's
        default) waits for. The replay position is reported by the mirror only with
        its periodic status messages, so it is shown but not decided on."""
        return self.flush_lag_bytes

    def as_dict(self):
        out = dataclasses.asdict(self)
        out["lag_bytes"] = self.lag_bytes
        return out

    @classmethod
    def from_rows(cls, rows):
        # type: (Iterable[Mapping[str, Any]]) -> Replication
        """From ``pg_stat_replication`` rows of the primary (with the lag columns
        that ``replication.py`` computes). The mirror's walsender is the one named
        ``gp_walreceiver``; when several exist (a reconnect racing the old one), a
        streaming one is preferred."""
        mine = [r for r in rows if r.get("application_name") == GP_WALRECEIVER_APPNAME]
        if not mine:
            return cls()
        mine.sort(key=lambda r: r.get("state") != "streaming")
        row = mine[0]

        def _lag(name):
            value = row.get(name)
            return None if value is None else int(value)
        return cls(state=row.get("state"), sync_state=row.get("sync_state"),
                   pid=row.get("pid"), flush_lag_bytes=_lag("flush_lag_bytes"),
                   replay_lag_bytes=_lag("replay_lag_bytes"))


@dataclasses.dataclass(frozen=True)
class PairState:
    """What was observed for one content: its acting primary, its mirror (None in a
    mirrorless cluster), whether the primary answered in utility mode, the
    mirror's walsender on the primary and the primary's current
    ``synchronous_standby_names``. ``mirror_alive``: when the primary does not
    answer, whether its mirror's postmaster does (a mirror refuses sessions with
    "the database system is in recovery mode", which proves it runs); None when
    not checked. While FTS has not acted the catalog still says the mirror is up
    and in sync, so this is what tells a double fault from a failover to come."""

    primary: SegmentConfig
    mirror: Optional[SegmentConfig]
    primary_reachable: bool
    replication: Replication
    setting: Optional[str]
    mirror_alive: Optional[bool] = None

    @property
    def content(self):
        return self.primary.content


@dataclasses.dataclass(frozen=True)
class SyncDecision:
    """What to do about one primary's synchronous replication.

    ``verdict``: ``switch_off``/``switch_on`` (write ``value``), ``keep`` (already
    as wanted), ``refuse`` (not proven safe or not applicable), ``needs_person``
    (double fault or an inconsistent catalog). ``durability_risk`` is true when,
    once the decision is carried out, commits on this primary are acknowledged
    without its mirror having them."""

    content: int
    verdict: str
    value: Optional[str]
    reason: str
    durability_risk: bool

    @property
    def acts(self):
        return self.verdict in (SWITCH_OFF, SWITCH_ON)

    def as_dict(self):
        return dataclasses.asdict(self)


def decide_sync(pair, state, force=False, max_lag_bytes=0):
    # type: (PairState, str, bool, int) -> SyncDecision
    """Decide whether to switch one primary's synchronous replication.

    ``state``: ``off`` (switch off when the mirror is proven not streaming, or
    ``force``), ``on`` (switch on when the mirror streams with lag at most
    ``max_lag_bytes``; ``force`` does not relax this: '*' with a mirror that does
    not stream hangs every commit), ``auto`` (on when caught up, off when proven
    not streaming, else leave as is). Raises ValueError on a bad ``state``.
    """
    if state not in WANTED_STATES:
        raise ValueError("state must be one of %s, got %r" % (", ".join(WANTED_STATES), state))
    primary, mirror, rep = pair.primary, pair.mirror, pair.replication
    content = primary.content
    currently_on = is_sync_on(pair.setting)

    def result(verdict, value, reason):
        after_on = (value == SYNC_ON) if value is not None else currently_on
        risk = mirror is not None and not after_on
        return SyncDecision(content, verdict, value, reason, risk)

    if content == COORDINATOR_CONTENT:
        return result(REFUSE, None, "content -1 is the coordinator: it ignores "
                      "synchronous_standby_names (its standby is synchronous while its walsender "
                      "streams); use standby_walsender for a stalled standby coordinator")
    if primary.role != "p":
        return result(REFUSE, None, "dbid %d is not the acting primary of content %d (role %s)"
                      % (primary.dbid, content, primary.role))
    if mirror is not None and mirror.role == "p":
        return result(NEEDS_PERSON, None, "content %d has two primaries in "
                      "gp_segment_configuration (dbid %d and %d)" % (content, primary.dbid, mirror.dbid))
    if primary.status != "u" or not pair.primary_reachable:
        why = "is marked down" if primary.status != "u" else "does not answer"
        if mirror is None or mirror.status != "u" or mirror.mode != "s" or pair.mirror_alive is False:
            return result(NEEDS_PERSON, None, "double fault on content %d: primary dbid %d %s and "
                          "its mirror is %s; FTS cannot fail over; needs manual recovery"
                          % (content, primary.dbid, why, _mirror_words(mirror, pair.mirror_alive)))
        return result(REFUSE, None, "primary dbid %d %s; its mirror dbid %d is up and in sync, "
                      "so FTS fails over to it; nothing to switch" % (primary.dbid, why, mirror.dbid))

    if mirror is None:
        if state == "on":
            return result(REFUSE, None, "content %d has no mirror: there is nothing to replicate "
                          "to synchronously" % content)
        if not currently_on:
            return result(KEEP, None, "content %d has no mirror and synchronous replication is "
                          "off, as Greenplum keeps it" % content)
        return result(SWITCH_OFF, SYNC_OFF, "content %d has no mirror but synchronous_standby_names "
                      "is %r: every commit would wait forever" % (content, pair.setting))

    lag = rep.lag_bytes
    caught_up = rep.streaming and lag is not None and lag <= max_lag_bytes
    seen = "its walsender state is %s" % (rep.state or "absent (no walsender for the mirror)")
    if state == "auto":
        state = "on" if caught_up else ("off" if not rep.streaming else None)
        if state is None:
            return result(KEEP, None, "mirror dbid %d streams but lags %s bytes (> %d): left as is"
                          % (mirror.dbid, lag, max_lag_bytes))
    if state == "on":
        if not caught_up:
            return result(REFUSE, None, "mirror dbid %d has not caught up (%s, lag %s bytes, "
                          "max_lag_bytes %d): '*' now would make every commit wait"
                          % (mirror.dbid, seen, lag, max_lag_bytes))
        if currently_on:
            return result(KEEP, None, "synchronous replication is on and mirror dbid %d streams"
                          % mirror.dbid)
        return result(SWITCH_ON, SYNC_ON, "mirror dbid %d streams and has caught up (lag %s bytes)"
                      % (mirror.dbid, lag))
    # state == "off"
    if rep.streaming and not force:
        return result(REFUSE, None, "mirror dbid %d is streaming: switching synchronous "
                      "replication off would give up durability for nothing (force: true to do it "
                      "anyway; FTS would set '*' again at its next probe)" % mirror.dbid)
    proof = ("forced by the operator while the mirror streams" if rep.streaming
             else "mirror dbid %d is proven not streaming: %s (catalog status %s, mode %s)"
             % (mirror.dbid, seen, mirror.status, mirror.mode))
    if not currently_on:
        return result(KEEP, None, "synchronous replication is already off; " + proof)
    return result(SWITCH_OFF, SYNC_OFF, proof)


def require_waiters(decision, waiters):
    # type: (SyncDecision, List[Any]) -> SyncDecision
    """``only_waiting``: keep a switch-off only for a primary where commits wait in
    SyncRep now; any other decision is returned as is."""
    if decision.verdict != SWITCH_OFF or waiters:
        return decision
    return dataclasses.replace(
        decision, verdict=KEEP, value=None, durability_risk=False,
        reason="no backend waits in SyncRep on content %d (only_waiting): left on; it would "
               "have been switched off because %s" % (decision.content, decision.reason))


def _mirror_words(mirror, alive):
    if mirror is None:
        return "absent"
    if alive is False:
        return "not running either (dbid %d; the catalog, not yet updated by FTS, says %s/%s)" % (
            mirror.dbid, mirror.status, mirror.mode)
    return "%s and %s (dbid %d)" % ("up" if mirror.status == "u" else "down",
                                    "in sync" if mirror.mode == "s" else "not in sync", mirror.dbid)


# --------------------------------------------------------------------------
# Detection (for triage and for the modules' reports)
# --------------------------------------------------------------------------

def is_syncrep_wait(backend):
    # type: (Backend) -> bool
    """A backend waiting for synchronous replication: GP7/Cloudberry
    ``wait_event = 'SyncRep'`` (``WAIT_EVENT_SYNC_REP``), GP6 ``waiting_reason =
    'replication'`` (``PGBE_WAITING_REPLICATION``),
    docs/greenplum-internals.md#synchronous-replication-switch."""
    return backend.wait_event == "SyncRep" or backend.waiting_reason == "replication"


def _waiting_since(backend):
    # A QE in a commit wait shows 'idle in transaction' from the moment the
    # commit started waiting; state_change is the closest start time we have.
    return backend.state_change or backend.query_start or backend.xact_start


def syncrep_waiters(backends, now):
    # type: (Iterable[Backend], Any) -> List[Dict[str, Any]]
    """Backends waiting in SyncRep, oldest wait first.

    ``backends``: Backend records of any nodes (content from each record).
    ``now``: timezone-aware datetime (the snapshot time). Each result: content,
    pid, sess_id, waiting_seconds (float or None), state, query, usename,
    datname, and the coordinator backend of the same distributed session
    (``qd_pid``, ``qd_application_name``, ``qd_query``; None when not among
    ``backends``, e.g. utility-mode rows). Cancel does not release these waits
    and terminating the QD leaves the QE waiting with its locks
    (docs/greenplum-internals.md#synchronous-replication-switch): the remedy is releasing the wait, never killing."""
    backends = list(backends)
    qds = {b.sess_id: b for b in backends
           if b.content == COORDINATOR_CONTENT and b.sess_id and b.sess_id > 0
           and b.is_client_backend}
    out = []
    for b in backends:
        if not is_syncrep_wait(b):
            continue
        since = _waiting_since(b)
        qd = qds.get(b.sess_id) if b.content != COORDINATOR_CONTENT else None
        out.append({
            "content": b.content, "pid": b.pid, "sess_id": b.sess_id,
            "waiting_seconds": None if since is None else round((now - since).total_seconds(), 3),
            "state": b.state, "query": b.query, "usename": b.usename, "datname": b.datname,
            "qd_pid": qd.pid if qd else None,
            "qd_application_name": qd.application_name if qd else None,
            "qd_query": qd.query if qd else None,
        })
    out.sort(key=lambda w: -(w["waiting_seconds"] or 0))
    return out


def pairs_by_content(segments):
    # type: (Iterable[SegmentConfig]) -> Dict[int, Dict[str, Optional[SegmentConfig]]]
    """{content: {"primary": acting primary or None, "mirror": the other member or None}}.
    The acting primary is the member with role 'p' (after a failover that is the
    preferred mirror); with two role-'p' rows the second is put as ``mirror`` so
    that ``decide_sync`` sees the inconsistency."""
    out = {}  # type: Dict[int, Dict[str, Optional[SegmentConfig]]]
    for seg in sorted(segments, key=lambda s: (s.role != "p", s.dbid)):
        pair = out.setdefault(seg.content, {"primary": None, "mirror": None})
        if seg.role == "p" and pair["primary"] is None:
            pair["primary"] = seg
        else:
            pair["mirror"] = seg
    return out


def seg_brief(seg):
    """dbid, role, status, mode, hostname, port of a catalog row (None stays None)."""
    return None if seg is None else {
        "dbid": seg.dbid, "role": seg.role, "status": seg.status, "mode": seg.mode,
        "hostname": seg.hostname, "port": seg.port}


def mirror_loss_findings(segments, backends, now, unreachable=None):
    # type: (Iterable[SegmentConfig], Iterable[Backend], Any, Optional[Mapping[int, str]]) -> Dict[str, Any]
    """What triage reports about mirror loss, from one snapshot.

    Returns a dict:
    - ``waiting_primaries``: per content >= 0 with SyncRep waiters: content,
      primary, mirror (dbid, role, status, mode, hostname, port), waiters (see
      ``syncrep_waiters``), waiting_count, longest_wait_seconds, and
      ``fts_has_acted`` (mirror already marked down: FTS's SYNCREP_OFF is pending
      or failed; otherwise FTS has not acted yet: grace period, paused or hung).
    - ``coordinator_waiters``: SyncRep waits on content -1 (a connected but
      stalled standby coordinator; FTS does not manage that pair).
    - ``mirrors_down`` (status 'd') and ``mirrors_not_in_sync`` (up, mode 'n').
    - ``double_faults``: contents whose primary is down or unreachable while the
      mirror is down or not in sync: needs a person, never acted on.
    - ``needs_person``: bool, any double fault.
    ``unreachable``: {content: reason} of nodes that did not answer.
    """
    unreachable = dict(unreachable or {})
    pairs = pairs_by_content(segments)
    waiters = syncrep_waiters(backends, now)
    by_content = {}  # type: Dict[int, List[Dict[str, Any]]]
    for w in waiters:
        by_content.setdefault(w["content"], []).append(w)
    out = {"waiting_primaries": [], "coordinator_waiters": by_content.pop(COORDINATOR_CONTENT, []),
           "mirrors_down": [], "mirrors_not_in_sync": [], "double_faults": []}
    for content in sorted(c for c in pairs if c != COORDINATOR_CONTENT):
        primary, mirror = pairs[content]["primary"], pairs[content]["mirror"]
        if mirror is not None and mirror.status == "d":
            out["mirrors_down"].append({"content": content, **seg_brief(mirror)})
        elif mirror is not None and mirror.mode != "s":
            out["mirrors_not_in_sync"].append({"content": content, **seg_brief(mirror)})
        primary_down = primary is None or primary.status != "u" or content in unreachable
        if primary_down and mirror is not None and (mirror.status != "u" or mirror.mode != "s"):
            out["double_faults"].append({
                "content": content, "primary": seg_brief(primary), "mirror": seg_brief(mirror),
                "reason": unreachable.get(content) or "primary marked down",
                "action": "needs a person: FTS cannot fail over (no in-sync mirror); never acted on"})
        mine = by_content.get(content)
        if mine:
            out["waiting_primaries"].append({
                "content": content, "primary": seg_brief(primary), "mirror": seg_brief(mirror),
                "waiters": mine, "waiting_count": len(mine),
                "longest_wait_seconds": mine[0]["waiting_seconds"],
                "fts_has_acted": mirror is not None and mirror.status == "d"})
    out["needs_person"] = bool(out["double_faults"])
    return out


# --------------------------------------------------------------------------
# Standby coordinator walsender
# --------------------------------------------------------------------------

def standby_walsender_stalled(first, second, elapsed, threshold, coordinator_waiters):
    # type: (Optional[Mapping[str, Any]], Optional[Mapping[str, Any]], float, float, List[Any]) -> Dict[str, Any]
    """Decide from two samples of the coordinator's walsender serving the standby
    whether it is stalled.

    ``first``/``second``: that walsender's ``pg_stat_replication`` row taken
    ``elapsed`` seconds apart, with ``pid``, ``flush_lsn_bytes``,
    ``replay_lsn_bytes`` and ``current_lsn_bytes`` (LSNs as byte positions), or
    None when there was none. Stalled means: the same walsender (pid) in both
    samples, ``elapsed >= threshold``, neither its flush nor its replay position
    moved, WAL is pending for it (flush behind the coordinator's current
    position), and commits are waiting in SyncRep on the coordinator. Only then
    may its walsender be ended (docs/greenplum-internals.md#synchronous-replication-switch: a standby that is down never
    blocks coordinator commits; a connected, stalled one does and
    ``synchronous_standby_names`` has no effect there).

    Returns {stalled: bool, pid, reason, pending_bytes}."""
    def out(stalled, reason, pending=None):
        return {"stalled": stalled, "pid": (second or {}).get("pid"), "reason": reason,
                "pending_bytes": pending}
    if first is None or second is None:
        return out(False, "no walsender serves a standby coordinator: coordinator commits do not "
                   "wait for it")
    if first.get("pid") != second.get("pid"):
        return out(False, "the standby's walsender changed between samples (reconnect): not stalled")
    if elapsed < threshold:
        return out(False, "samples %.1f s apart, less than stall_threshold %.1f s" % (elapsed, threshold))
    pending = int(second["current_lsn_bytes"]) - int(second["flush_lsn_bytes"])
    moved = [k for k in ("flush_lsn_bytes", "replay_lsn_bytes")
             if second.get(k) is not None and first.get(k) is not None and second[k] != first[k]]
    if moved:
        return out(False, "the standby made progress in %.1f s (%s moved)" % (elapsed, ", ".join(moved)),
                   pending)
    if pending <= 0:
        return out(False, "the standby has everything the coordinator wrote (idle, not stalled)", pending)
    if not coordinator_waiters:
        return out(False, "no flush/replay progress for %.1f s with %d bytes pending, but no commit "
                   "waits for it on the coordinator: left alone" % (elapsed, pending), pending)
    return out(True, "no flush/replay progress for %.1f s (threshold %.1f s) with %d bytes pending "
               "while %d commit(s) wait in SyncRep on the coordinator"
               % (elapsed, threshold, pending, len(coordinator_waiters)), pending)


# --------------------------------------------------------------------------
# Greenplum 6: gp_replication.conf
# --------------------------------------------------------------------------

_GUC_LINE = re.compile(r"^\s*synchronous_standby_names\s*=?")


def gp_replication_conf_text(current, value):
    # type: (str, str) -> str
    """The new text of a GP6 ``gp_replication.conf`` with
    ``synchronous_standby_names`` set to ``value`` ('' or '*'), other lines
    kept. GP6 writes one ``name = 'value'`` line per setting
    (``set_gp_replication_config``,
    docs/greenplum-internals.md#synchronous-replication-switch). Raises ValueError for any
    other value (the only values FTS writes)."""
    if value not in (SYNC_ON, SYNC_OFF):
        raise ValueError("synchronous_standby_names value must be '*' or '', got %r" % (value,))
    kept = [line for line in current.splitlines() if not _GUC_LINE.match(line)]
    kept.append("synchronous_standby_names = '%s'" % value)
    return "\n".join(kept) + "\n"
