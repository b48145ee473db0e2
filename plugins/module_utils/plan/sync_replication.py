# -*- coding: utf-8 -*-
# Copyright: gpops.greenplum contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Mirror loss and synchronous replication: what is observed and what may be done.

Pure functions only (no I/O): they take observed state and return data. The
acting side is ``act/sync_replication_switch.py``; the FTS side is ``act/fts_probe.py``.
``build_plan`` turns the decisions into a ``plan.steps.Plan`` (docs/safety.md,
"Synchronous replication: what is proven before a switch").

The invariant (modelled on Patroni's ``synchronous_mode_strict``, stated again
in docs/mirror-loss.md and in every decision's ``durability_risk``):

* a primary's synchronous replication is switched off only when its mirror is
  proven not streaming (``pg_stat_replication`` on the primary, read now, shows
  no walsender in state ``streaming`` for the mirror) or the operator forced it;
  a walsender whose state this role cannot read (``pg_stat_replication`` columns NULL
  without ``pg_read_all_stats``) is ``unknown`` and never licenses a switch;
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
from ansible_collections.gpops.greenplum.plugins.module_utils.plan.reasons import Reason
from ansible_collections.gpops.greenplum.plugins.module_utils.plan.steps import (
    Guard, Plan, Refusal, Step)

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
    mirror's flush/replay LSN, in bytes, as seen on the primary.

    ``unknown``: the mirror's walsender exists but its state could not be read (a role
    without ``pg_read_all_stats`` sees ``pg_stat_replication`` rows of other users'
    processes with every column but ``pid``/``application_name`` NULL,
    ``pg_stat_get_wal_senders`` in PostgreSQL's ``walsender.c``). Then ``streaming``
    is False and ``known`` is False: nothing may be decided from it."""

    state: Optional[str] = None
    sync_state: Optional[str] = None
    pid: Optional[int] = None
    flush_lag_bytes: Optional[int] = None
    replay_lag_bytes: Optional[int] = None
    unknown: bool = False

    @property
    def streaming(self):
        return self.state == "streaming"

    @property
    def known(self):
        return not self.unknown

    @property
    def state_text(self):
        """``streaming``, ``catchup``..., ``absent`` (no walsender) or ``unknown``."""
        if self.unknown:
            return "unknown"
        return self.state or "absent"

    @property
    def lag_bytes(self):
        """The flush lag: what a commit with ``synchronous_commit = on`` (Greenplum's
        default) waits for. The replay position is reported by the mirror only with
        its periodic status messages, so it is shown but not decided on."""
        return self.flush_lag_bytes

    def as_dict(self):
        out = dataclasses.asdict(self)
        out["lag_bytes"] = self.lag_bytes
        out["state_text"] = self.state_text
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
                   replay_lag_bytes=_lag("replay_lag_bytes"),
                   unknown=row.get("state") is None)


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
    without its mirror having them. ``code``: the ``reasons.Reason`` of the decision
    (what reports and tests match on; ``reason`` is the sentence with the evidence)."""

    content: int
    verdict: str
    value: Optional[str]
    reason: str
    durability_risk: bool
    code: Optional[Reason] = None

    @property
    def acts(self):
        return self.verdict in (SWITCH_OFF, SWITCH_ON)

    def as_dict(self):
        out = dataclasses.asdict(self)
        out["code"] = self.code.value if self.code else None
        return out


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

    def result(verdict, value, reason, code):
        after_on = (value == SYNC_ON) if value is not None else currently_on
        risk = mirror is not None and not after_on
        return SyncDecision(content, verdict, value, reason, risk, code)

    if content == COORDINATOR_CONTENT:
        return result(REFUSE, None, "content -1 is the coordinator: it ignores "
                      "synchronous_standby_names (its standby is synchronous while its walsender "
                      "streams); use standby_walsender for a stalled standby coordinator", Reason.NOT_APPLICABLE)
    if primary.role != "p":
        return result(REFUSE, None, "dbid %d is not the acting primary of content %d (role %s)"
                      % (primary.dbid, content, primary.role), Reason.NOT_APPLICABLE)
    if mirror is not None and mirror.role == "p":
        return result(NEEDS_PERSON, None, "content %d has two primaries in "
                      "gp_segment_configuration (dbid %d and %d)" % (content, primary.dbid, mirror.dbid),
                      Reason.DOUBLE_FAULT)
    if primary.status != "u" or not pair.primary_reachable:
        why = "is marked down" if primary.status != "u" else "does not answer"
        if mirror is None or mirror.status != "u" or mirror.mode != "s" or pair.mirror_alive is False:
            return result(NEEDS_PERSON, None, "double fault on content %d: primary dbid %d %s and "
                          "its mirror is %s; FTS cannot fail over; needs manual recovery"
                          % (content, primary.dbid, why, _mirror_words(mirror, pair.mirror_alive)),
                          Reason.DOUBLE_FAULT)
        return result(REFUSE, None, "primary dbid %d %s; its mirror dbid %d is up and in sync, "
                      "so FTS fails over to it; nothing to switch" % (primary.dbid, why, mirror.dbid),
                      Reason.NOT_APPLICABLE)

    if mirror is None:
        if state == "on":
            return result(REFUSE, None, "content %d has no mirror: there is nothing to replicate "
                          "to synchronously" % content, Reason.NOT_APPLICABLE)
        if not currently_on:
            return result(KEEP, None, "content %d has no mirror and synchronous replication is "
                          "off, as Greenplum keeps it" % content, Reason.SYNC_ALREADY_AS_WANTED)
        return result(SWITCH_OFF, SYNC_OFF, "content %d has no mirror but synchronous_standby_names "
                      "is %r: every commit would wait forever" % (content, pair.setting), Reason.NO_MIRROR_SYNC_ON)

    if not rep.known:
        # Unknown is never "not streaming" (and never "caught up"): no switch either way.
        return result(REFUSE, None, "whether mirror dbid %d streams is unknown: its walsender's state "
                      "in pg_stat_replication is NULL for this role (needs pg_read_all_stats or "
                      "superuser); nothing is switched" % mirror.dbid, Reason.MIRROR_STATE_UNKNOWN)
    lag = rep.lag_bytes
    caught_up = rep.streaming and lag is not None and lag <= max_lag_bytes
    seen = "its walsender state is %s" % (rep.state or "absent (no walsender for the mirror)")
    if state == "auto":
        state = "on" if caught_up else ("off" if not rep.streaming else None)
        if state is None:
            return result(KEEP, None, "mirror dbid %d streams but lags %s bytes (> %d): left as is"
                          % (mirror.dbid, lag, max_lag_bytes), Reason.MIRROR_NOT_CAUGHT_UP)
    if state == "on":
        if not caught_up:
            return result(REFUSE, None, "mirror dbid %d has not caught up (%s, lag %s bytes, "
                          "max_lag_bytes %d): '*' now would make every commit wait"
                          % (mirror.dbid, seen, lag, max_lag_bytes), Reason.MIRROR_NOT_CAUGHT_UP)
        if currently_on:
            return result(KEEP, None, "synchronous replication is on and mirror dbid %d streams"
                          % mirror.dbid, Reason.SYNC_ALREADY_AS_WANTED)
        return result(SWITCH_ON, SYNC_ON, "mirror dbid %d streams and has caught up (lag %s bytes)"
                      % (mirror.dbid, lag), Reason.MIRROR_STREAMING_AGAIN)
    # state == "off"
    if rep.streaming and not force:
        return result(REFUSE, None, "mirror dbid %d is streaming: switching synchronous "
                      "replication off would give up durability for nothing (force: true to do it "
                      "anyway; FTS would set '*' again at its next probe)" % mirror.dbid, Reason.MIRROR_STREAMING)
    proof = ("forced by the operator while the mirror streams" if rep.streaming
             else "mirror dbid %d is proven not streaming: %s (catalog status %s, mode %s)"
             % (mirror.dbid, seen, mirror.status, mirror.mode))
    code = Reason.FORCED_BY_OPERATOR if rep.streaming else Reason.MIRROR_LOST_COMMITS_WAIT
    if not currently_on:
        return result(KEEP, None, "synchronous replication is already off; " + proof,
                      Reason.SYNC_ALREADY_AS_WANTED)
    return result(SWITCH_OFF, SYNC_OFF, proof, code)


def require_waiters(decision, waiters):
    # type: (SyncDecision, List[Any]) -> SyncDecision
    """``only_waiting``: keep a switch-off only for a primary where commits wait in
    SyncRep now; any other decision is returned as is."""
    if decision.verdict != SWITCH_OFF or waiters:
        return decision
    return dataclasses.replace(
        decision, verdict=KEEP, value=None, durability_risk=False, code=Reason.NO_SYNCREP_WAITERS,
        reason="no backend waits in SyncRep on content %d (only_waiting): left on; it would "
               "have been switched off because %s" % (decision.content, decision.reason))


# Paths of a switch-off (docs/mirror-loss.md, "FTS first").
PATH_FTS = "fts"
PATH_DIRECT = "direct"
PATHS = ("auto", PATH_FTS, PATH_DIRECT)
SYNC_OFF_WHAT = "switching synchronous replication off"


def choose_path(requested, fts_running):
    # type: (str, Optional[bool]) -> str
    """The path of a switch-off: ``fts`` (FTS marks the mirror down, then switches sync
    off itself: the safe order) or ``direct`` (this collection writes
    ``synchronous_standby_names = ''`` while the catalog still says the mirror is up).

    ``requested``: ``auto`` | ``fts`` | ``direct``; ``fts_running``: whether the FTS
    process runs (None: cannot tell from this host). ``auto`` is ``fts`` unless FTS is
    known not to run; a probe FTS does not answer falls back to ``direct`` at execution.
    Raises ValueError on another ``requested``."""
    if requested not in PATHS:
        raise ValueError("path must be one of %s, got %r" % (", ".join(PATHS), requested))
    if requested != "auto":
        return requested
    return PATH_DIRECT if fts_running is False else PATH_FTS


def switch_step(pair, decision, waiters, path=PATH_DIRECT, max_lag_bytes=0):
    # type: (PairState, SyncDecision, List[Any], str, int) -> Step
    """The ``Step`` carrying out an acting ``decision`` for ``pair``.

    Actions: ``sync_off`` / ``sync_on`` (written directly on the primary) or
    ``fts_mark_down`` (``path='fts'``: FTS made to mark the mirror down now). The
    guard (kind ``mirror``) holds what was judged and must still hold right before
    the write: the primary's ``synchronous_standby_names`` (``setting``), and the
    mirror's walsender, not streaming (``require`` ``not_streaming``; ``any`` when the
    operator forced it) or streaming with at most ``max_lag_bytes`` (``streaming``).
    Raises ValueError for a decision that does not act."""
    if not decision.acts:
        raise ValueError("decision %s of content %d does not act" % (decision.verdict, decision.content))
    primary, mirror, rep = pair.primary, pair.mirror, pair.replication
    if decision.verdict == SWITCH_ON:
        action, require = "sync_on", "streaming"
    else:
        action = "fts_mark_down" if path == PATH_FTS and mirror is not None else "sync_off"
        require = "any" if decision.code in (Reason.FORCED_BY_OPERATOR, Reason.NO_MIRROR_SYNC_ON) \
            else "not_streaming"
    facts = {"content": primary.content, "mirror": "dbid %d" % mirror.dbid if mirror else "none",
             "waiters": len(waiters), "value": decision.value, "path": path if action != "sync_on" else None,
             "evidence": decision.reason}
    guard = Guard("mirror", {
        "content": primary.content, "primary_dbid": primary.dbid,
        "mirror_dbid": mirror.dbid if mirror else None, "setting": pair.setting,
        "walsender_state": rep.state_text, "require": require,
        "max_lag_bytes": max_lag_bytes if require == "streaming" else None})
    return Step(action, "content %d (dbid %d)" % (primary.content, primary.dbid), decision.code,
                facts, guard)


def build_plan(items, allow_sync_off=True, path=PATH_DIRECT, noted=None, max_lag_bytes=0):
    # type: (Iterable[Any], bool, str, Optional[Any], int) -> Plan
    """The ``Plan`` of one run: ``items`` are ``(pair, decision, waiters)``.

    An acting decision becomes a step (``switch_step``), except a switch-off when
    ``allow_sync_off`` is false: then a ``NOT_ALLOWED`` refusal (option
    ``allow_sync_off``). ``refuse``/``needs_person`` decisions, and ``keep`` for lack of
    waiters, become refusals with the decision's code when ``noted(pair, decision,
    waiters)`` says so (default: always); a ``MIRROR_STATE_UNKNOWN`` or ``DOUBLE_FAULT``
    refusal is always kept."""
    steps, refusals = [], []
    for pair, decision, waiters in items:
        target = "content %d (dbid %d)" % (pair.primary.content, pair.primary.dbid)
        facts = {"content": decision.content, "detail": decision.reason,
                 "mirror": "dbid %d" % pair.mirror.dbid if pair.mirror else "none"}
        if decision.acts:
            if decision.verdict == SWITCH_OFF and not allow_sync_off:
                refusals.append(Refusal(target, Reason.NOT_ALLOWED, dict(
                    facts, what=SYNC_OFF_WHAT, option="allow_sync_off", planned_for=decision.code)))
            else:
                steps.append(switch_step(pair, decision, waiters, path, max_lag_bytes))
            continue
        refused = decision.verdict in (REFUSE, NEEDS_PERSON) or decision.code == Reason.NO_SYNCREP_WAITERS
        always = decision.code in (Reason.MIRROR_STATE_UNKNOWN, Reason.DOUBLE_FAULT)
        if refused and (always or noted is None or noted(pair, decision, waiters)):
            refusals.append(Refusal(target, decision.code or Reason.NOT_APPLICABLE, facts))
    return Plan(tuple(steps), tuple(refusals))


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
