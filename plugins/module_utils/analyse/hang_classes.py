# -*- coding: utf-8 -*-
# Copyright: gpops.greenplum contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Hang triage: classify what one snapshot and its analysis show.

Pure functions, no I/O. Input: a ``records.ClusterSnapshot`` (taken once), the
``analysis.Analysis`` of that snapshot (wait-for graph, GDD reduction, blocking
trees), and ``ClusterFacts`` (settings, replication state, FTS presence and
resource-queue locks, read by ``health_facts``). Output: a list of ``Finding``,
most severe first. ``gp_hang_info`` and the reports are built on it.

Severity scale (documented in the ``gp_hang_info`` module too):

- ``critical``: work is stuck now and will not recover by itself, or only
  through a coordinator PANIC: global deadlock, commits waiting in SyncRep, a
  node that does not answer, a two-phase commit retrying, both members of a
  segment down.
- ``high``: stuck or exposed, needs a person soon: a blocking chain whose
  longest wait reached ``wait_threshold``, a segment down (no redundancy),
  an orphaned prepared transaction, FTS not running or not probing, a QE
  stuck for ``stuck_qe_age`` (or stopped).
- ``medium``: degraded, or waits younger than ``wait_threshold``: blocking
  chain, resource-queue wait, mirror not in sync, a stuck QE younger than
  ``stuck_qe_age``, a primary that reset after a crash.
- ``low``: harmless now but will bite: a long ``idle in transaction`` session
  holding locks that nobody waits for yet.
- ``info``: facts worth knowing: the global deadlock detector's state, a
  primary restarted after the coordinator.

One cause gives one finding: waiters blocked by a session that another
finding already explains (a SyncRep wait, a commit retry, an orphaned
prepared transaction, a deadlock) are listed in that finding's evidence, not
reported again as a blocking chain; a blocking chain's root is not reported
again as idle in transaction.

Durations are seconds measured against ``snapshot.taken_at``. GP6 and GP7
have no lock wait start, so a wait is measured from the start of the waiting
statement (``query_start``): an upper bound.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import dataclasses
from typing import Any, Dict, List, Optional

from ansible_collections.gpops.greenplum.plugins.module_utils.plan import prepared_xacts as prepared
from ansible_collections.gpops.greenplum.plugins.module_utils.common.records import (
    COORDINATOR_CONTENT, gc_paused)
from ansible_collections.gpops.greenplum.plugins.module_utils.plan.sync_replication import (
    mirror_loss_findings, pairs_by_content)
from ansible_collections.gpops.greenplum.plugins.module_utils.analyse.waitgraph import SnapshotIndex

SEVERITIES = ("info", "low", "medium", "high", "critical")

CLASSES = (
    "global_deadlock", "blocking_chain", "syncrep_wait", "segment_down", "mirror_not_in_sync",
    "node_unreachable", "fts_not_running", "fts_not_probing", "orphaned_prepared_xact",
    "twophase_commit_retry", "stuck_qe", "resource_queue_wait", "segment_restarted",
    "long_idle_in_transaction", "gdd_status", "sync_replication_off",
)

# Greenplum defaults (guc_gp.c; verified on GP7.0, docs/greenplum-internals.md#defaults).
_DEFAULT_SETTINGS = {
    "gp_enable_global_deadlock_detector": "off",
    "gp_global_deadlock_detector_period": "120",
    "gp_fts_probe_interval": "60",
    "gp_fts_probe_timeout": "20",
    "gp_fts_probe_retries": "5",
    "gp_fts_mark_mirror_down_grace_period": "30",
    "gp_resource_manager": "none",
}

_IDLE_IN_XACT = ("idle in transaction", "idle in transaction (aborted)")
# Lock types every transaction holds on itself; they block nobody by being held.
_SELF_LOCKTYPES = ("virtualxid", "transactionid", "distributed xid")


def severity_rank(severity):
    # type: (str) -> int
    """0 (info) .. 4 (critical); ValueError for anything else."""
    return SEVERITIES.index(severity)


@dataclasses.dataclass(frozen=True)
class TriageOptions:
    """Thresholds, all in seconds.

    ``wait_threshold``: a blocking chain or resource-queue wait is ``high``
    once its longest wait reaches it, ``medium`` before.
    ``idle_in_transaction_age``: report ``idle in transaction`` sessions
    holding locks after this long idle.
    ``prepared_xact_age``: a prepared transaction whose distributed
    transaction the coordinator no longer has is orphaned after this long
    (Greenplum's own ``gp_dtx_recovery_prepared_period`` default, 120 s).
    ``stuck_qe_min_wait``: a coordinator backend must have waited on its QEs
    (``IPC``/``Interconnect`` or ``Dispatch/*``) this long before its QEs are
    looked at (``stuck_qe``): normal queries stay below it.
    ``stuck_qe_age``: a ``stuck_qe`` is ``high`` once its QD has waited this long
    (or at once when the QE is stopped, ``T``), ``medium`` before.
    ``segment_restart_window``: a primary that restarted (or whose postmaster
    reset after a crash) later than the coordinator is reported for this long
    (``segment_restarted``).
    """

    wait_threshold: float = 60.0
    idle_in_transaction_age: float = 300.0
    prepared_xact_age: float = 120.0
    stuck_qe_min_wait: float = 10.0
    stuck_qe_age: float = 60.0
    segment_restart_window: float = 3600.0


@dataclasses.dataclass
class ClusterFacts:
    """Facts beyond the lock snapshot (read by ``health_facts.collect_facts``).

    ``settings``: ``pg_settings`` name -> setting text on the coordinator;
    missing names fall back to Greenplum's defaults.
    ``replication``: content -> state of the walsender serving that content's
    mirror (``gp_stat_replication.state``, e.g. ``streaming``; None when the
    content has no walsender); None when not collected.
    ``fts_running``: whether the coordinator's FTS probe process exists; None
    when it could not be checked (e.g. the module does not run on the
    coordinator host).
    ``resqueue_locks``: ``gp_toolkit.gp_locks_on_resqueue`` rows (dicts), read
    only when ``gp_resource_manager`` is ``queue``.
    ``process_states``: ``(content, pid)`` -> the one-letter ``/proc/<pid>/stat``
    state (``R``, ``S``, ``D``, ``T``, ...) of a QE named by ``stuck_qe_candidates``,
    read on the host running the module; ``unknown`` when it could not be read or the
    process there is not that QE (another host); missing when not looked at.
    ``sync_standby_names``: content -> each acting primary's
    ``synchronous_standby_names`` (``gp_toolkit.gp_param_setting``); None when not read
    (unknown: no finding is made from it).
    ``errors``: fact name -> why it could not be read.
    """

    settings: Dict[str, str] = dataclasses.field(default_factory=dict)
    replication: Optional[Dict[int, Optional[str]]] = None
    fts_running: Optional[bool] = None
    resqueue_locks: List[Dict[str, Any]] = dataclasses.field(default_factory=list)
    process_states: Dict[Any, str] = dataclasses.field(default_factory=dict)
    errors: Dict[str, str] = dataclasses.field(default_factory=dict)
    sync_standby_names: Optional[Dict[int, str]] = None

    def setting(self, name):
        # type: (str) -> str
        return str(self.settings.get(name, _DEFAULT_SETTINGS.get(name, "")))

    def as_dict(self):
        return {
            "settings": dict(self.settings),
            "replication": None if self.replication is None
            else {str(k): v for k, v in sorted(self.replication.items())},
            "fts_running": self.fts_running,
            "resqueue_locks": [dict(r) for r in self.resqueue_locks],
            "process_states": {"%s:%s" % k: v for k, v in sorted(self.process_states.items())},
            "errors": dict(self.errors),
            "sync_standby_names": None if self.sync_standby_names is None
            else {str(k): v for k, v in sorted(self.sync_standby_names.items())},
        }


@dataclasses.dataclass
class Finding:
    """One classified problem. ``cls`` is serialised as ``class``.

    ``evidence``: JSON-friendly dict (sessions, segments, locks, durations in
    seconds). ``remedy``: ``text`` (what to do) and, where this collection
    offers it, ``module`` / ``role`` / ``playbook`` and ``variables``: the role's or
    playbook's variables, or the module's options, to set.
    """

    cls: str
    severity: str
    summary: str
    evidence: Dict[str, Any]
    remedy: Dict[str, Any]

    def as_dict(self):
        return {"class": self.cls, "severity": self.severity, "summary": self.summary,
                "evidence": self.evidence, "remedy": self.remedy}


# ---------------------------------------------------------------- helpers


def _remedy(text, module=None, role=None, playbook=None, **variables):
    out = {"text": text, "variables": variables}
    for kind, name in (("module", module), ("role", role), ("playbook", playbook)):
        if name:
            out[kind] = "gpops.greenplum." + name
    return out


def _seconds(index, since):
    if since is None:
        return None
    return round(max(0.0, (index.taken_at - since).total_seconds()), 1)


def _int_setting(facts, name):
    try:
        return int(float(facts.setting(name)))
    except ValueError:
        return int(_DEFAULT_SETTINGS[name])


def _max(values):
    return max((v for v in values if v is not None), default=0.0)


def _node_label(segment):
    return "%s:%s" % (segment.hostname, segment.port)


def _lock_label(lock):
    what = lock.relation_name or (lock.relation and "relation %s" % lock.relation) or (
        lock.transactionid and "xid %s" % lock.transactionid) or lock.locktype
    return "content %d: %s %s on %s" % (lock.content, lock.locktype, lock.mode, what)


def _session(index, backend):
    """Evidence for one coordinator or segment backend."""
    return {"content": backend.content, "pid": backend.pid, "sess_id": backend.sess_id,
            "state": backend.state, "usename": backend.usename,
            "application_name": backend.application_name,
            "wait": "%s/%s" % (backend.wait_event_type, backend.wait_event)
            if backend.wait_event else backend.waiting_reason,
            "xact_age_s": _seconds(index, backend.xact_start),
            "state_age_s": _seconds(index, backend.state_change), "query": backend.query}


def _tree_evidence(tree):
    """A blocking tree, compact: the root, then each waiter with what it waits for in this
    tree and how many of its waits are on blockers outside it (other roots' trees)."""
    return {"root": tree["root"]["label"], "waiter_count": tree["waiter_count"],
            "longest_wait_s": tree["longest_wait_s"],
            "waiters": [{"waiter": w["label"], "depth": w["depth"],
                         "waits": ["content %s: %s %s%s (%s, %s s)" % (
                             x["content"], x["locktype"], x["mode"],
                             " on %s" % x["relation_name"] if x.get("relation_name") else "",
                             x["kind"], x["waiting_s"]) for x in w["waits"]],
                         "waits_outside_tree": w["waits_outside_tree"]}
                        for w in tree["waiters"]]}


# ------------------------------------------------------------ classifiers


def _node_unreachable(index, facts, options):
    snapshot = index.snapshot
    if not snapshot.unreachable:
        return []
    nodes = []
    for content, reason in sorted(snapshot.unreachable.items()):
        member = next((s for s in snapshot.segments if s.content == content and s.is_primary), None)
        nodes.append({"content": content, "dbid": member.dbid if member else None,
                      "address": _node_label(member) if member else None, "reason": reason})
    return [Finding(
        "node_unreachable", "critical",
        "%d node(s) did not answer: %s; their locks and sessions are missing from this "
        "diagnosis" % (len(nodes), "; ".join(
            "%s%s: %s" % ("coordinator" if n["content"] == COORDINATOR_CONTENT
                          else "content %s" % n["content"],
                          " (%s)" % n["address"] if n["address"] else "", n["reason"][:160])
            for n in nodes)),
        {"nodes": nodes, "source": snapshot.source},
        _remedy("Check the host and the postgres process of each node (a stopped or frozen "
                "process accepts connections and answers nothing). If a primary is dead, an FTS "
                "probe fails it over to its mirror.", module="gp_fts_probe"))]


def _walsender(facts, content):
    return None if facts.replication is None else facts.replication.get(content)


def _brief(seg):
    return "absent" if seg is None else "dbid %d %s/%s" % (seg["dbid"], seg["status"], seg["mode"])


def _not_in_sync(mirror, why, walsender):
    name = "standby coordinator" if mirror["content"] == COORDINATOR_CONTENT else "mirror"
    return Finding(
        "mirror_not_in_sync", "medium",
        "content %d: %s dbid %d (%s:%s) is not in sync: %s"
        % (mirror["content"], name, mirror["dbid"], mirror["hostname"], mirror["port"], why),
        {"content": mirror["content"], "mirror": mirror, "walsender_state": walsender},
        _remedy("Check the mirror's host and log; gprecoverseg resynchronises it. While the "
                "catalog says in sync and the mirror does not stream, commits on its primary "
                "wait in SyncRep.", module="gp_segment_info"))


def _syncrep_finding(facts, waiting):
    content, mirror = waiting["content"], waiting["mirror"]
    walsender = _walsender(facts, content)
    if mirror is None:
        mirror_text = "no mirror in the catalog"
    else:
        mirror_text = "mirror dbid %d catalog %s/%s, walsender %s; %s" % (
            mirror["dbid"], mirror["status"], mirror["mode"],
            walsender or ("absent" if facts.replication is not None else "not read"),
            "FTS has marked it down but the wait is not released" if waiting["fts_has_acted"]
            else "FTS has not acted yet")
    evidence = dict(waiting, walsender_state=walsender)
    return Finding(
        "syncrep_wait", "critical",
        "content %d: %d backend(s) wait for synchronous replication (longest %.0f s); %s"
        % (content, waiting["waiting_count"], waiting["longest_wait_seconds"] or 0.0, mirror_text),
        evidence,
        _remedy("Release the wait, never kill sessions (cancel is ignored; terminating the QD "
                "leaves its QE waiting with its locks): request an FTS probe; if the primary still "
                "waits and its mirror is proven down, switch sync replication off the way FTS "
                "does. That is a durability risk until the mirror is back, so it needs "
                "gp_allow_sync_off: true.",
                module="gp_fts_probe", role="gp_mirror_failure", playbook="resolve_hang",
                gp_resolve_mirror_failure=True, gp_allow_sync_off=True))


def _coordinator_syncrep_finding(waiters):
    longest = _max(w["waiting_seconds"] for w in waiters)
    return Finding(
        "syncrep_wait", "critical",
        "coordinator: %d commit(s) wait for the standby coordinator (longest %.0f s): it is "
        "connected but does not confirm WAL" % (len(waiters), longest),
        {"content": COORDINATOR_CONTENT, "waiters": waiters, "waiting_count": len(waiters),
         "longest_wait_seconds": longest, "fts_has_acted": False},
        _remedy("End the coordinator's walsender serving the stalled standby "
                "(synchronous_standby_names has no effect on the coordinator); never terminate "
                "the waiting sessions.", module="gp_sync_replication"))


def _sync_off_finding(content, mirror, walsender):
    """Synchronous replication off on a primary whose mirror the catalog calls up: the
    durability traded (docs/mirror-loss.md#durability-traded). ``high`` while the mirror
    does not stream (the catalog still says up, so a crash of the primary lets FTS promote
    a mirror lacking the commits acknowledged meanwhile), ``medium`` once it streams
    again (commits are asynchronous until '*' is back)."""
    streaming = walsender == "streaming"
    brief = {"content": content, "dbid": mirror.dbid, "role": mirror.role, "status": mirror.status,
             "mode": mirror.mode, "hostname": mirror.hostname, "port": mirror.port}
    return Finding(
        "sync_replication_off", "medium" if streaming else "high",
        "content %d: synchronous replication is off (synchronous_standby_names = '') while the "
        "catalog says mirror dbid %d is up (%s/%s) and its walsender is %s: commits are "
        "acknowledged without the mirror%s"
        % (content, mirror.dbid, mirror.status, mirror.mode, walsender or "absent",
           "; it streams again, they are asynchronous until '*' is back" if streaming else
           "; a crash of this primary now lets FTS promote a mirror that lacks them"),
        {"content": content, "mirror": brief, "synchronous_standby_names": "",
         "walsender_state": walsender, "durability_traded": True},
        _remedy("Bring the mirror back (gprecoverseg; a mirror only stopped can be started), then "
                "switch synchronous replication on once it streams: gp_sync_replication state=auto "
                "(FTS also sets '*' when it next probes a streaming mirror).",
                module="gp_sync_replication", state="auto"))


def _mirror_loss(index, facts, options):
    """syncrep_wait, segment_down and mirror_not_in_sync from one reading of the catalog
    and the SyncRep waiters (``syncrep.mirror_loss_findings``), with the walsender state
    from ``gp_stat_replication`` as evidence. A content with SyncRep waiters gets one
    syncrep_wait finding that carries its mirror's state, nothing else."""
    snapshot = index.snapshot
    loss = mirror_loss_findings(snapshot.segments, snapshot.backends, snapshot.taken_at,
                                snapshot.unreachable)
    findings = [_syncrep_finding(facts, w) for w in loss["waiting_primaries"]]
    if loss["coordinator_waiters"]:
        findings.append(_coordinator_syncrep_finding(loss["coordinator_waiters"]))
    done = {w["content"] for w in loss["waiting_primaries"]}
    pairs = pairs_by_content(snapshot.segments)
    for content, names in sorted((facts.sync_standby_names or {}).items()):
        mirror = (pairs.get(content) or {}).get("mirror")
        if (names is None or names.strip() or mirror is None or mirror.status != "u"
                or content in done or content in snapshot.unreachable):
            continue
        done.add(content)
        findings.append(_sync_off_finding(content, mirror, _walsender(facts, content)))
    for d in loss["double_faults"]:
        done.add(d["content"])
        findings.append(Finding(
            "segment_down", "critical",
            "content %d: double fault: primary %s, mirror %s; FTS cannot fail over"
            % (d["content"], _brief(d["primary"]), _brief(d["mirror"])), dict(d),
            _remedy("Needs manual recovery of the content (FTS does nothing on a double fault); "
                    "this collection never acts on it.")))
    for m in loss["mirrors_down"]:
        if m["content"] in done:
            continue
        done.add(m["content"])
        failed_over = m["role"] == "m" and any(
            s.role != s.preferred_role for s in snapshot.segments if s.content == m["content"])
        findings.append(Finding(
            "segment_down", "high",
            "content %d: mirror dbid %d (%s:%s) is down: the content runs without redundancy%s"
            % (m["content"], m["dbid"], m["hostname"], m["port"],
               " (its primary is the failed-over mirror)" if failed_over else ""),
            {"content": m["content"], "mirror": m, "failed_over": failed_over},
            _remedy("Recover the mirror with gprecoverseg (gprecoverseg -r then rebalances a "
                    "failed-over pair). Commits do not wait: FTS switched synchronous "
                    "replication off on its primary, so they are acknowledged without a mirror "
                    "copy until the mirror is back (durability traded; FTS sets '*' again once "
                    "it streams).", module="gp_segment_info")))
        findings[-1].evidence["synchronous_standby_names"] = (facts.sync_standby_names or {}).get(m["content"])
    for m in loss["mirrors_not_in_sync"]:
        if m["content"] not in done:
            done.add(m["content"])
            findings.append(_not_in_sync(m, "catalog mode n (resynchronising)",
                                         _walsender(facts, m["content"])))
    if facts.replication is None:
        return findings
    # The catalog says in sync but no walsender streams to the mirror: FTS has not acted yet
    # (grace period, or FTS paused), and the next commit on that primary will wait. A
    # primary that did not answer is node_unreachable: its walsender state says nothing.
    for content, pair in sorted(pairs.items()):
        mirror = pair["mirror"]
        if (mirror is None or content in done or content in snapshot.unreachable
                or mirror.status != "u" or mirror.mode != "s"
                or facts.replication.get(content) == "streaming"):
            continue
        brief = {"content": content, "dbid": mirror.dbid, "role": mirror.role,
                 "status": mirror.status, "mode": mirror.mode, "hostname": mirror.hostname,
                 "port": mirror.port}
        findings.append(_not_in_sync(brief, "the catalog says in sync but its walsender is %s"
                                     % (facts.replication.get(content) or "absent"),
                                     facts.replication.get(content)))
    return findings


def _fts(index, facts, options, syncrep_findings):
    findings = []
    has_mirrors = any(not s.is_primary for s in index.snapshot.segments if s.content >= 0)
    if facts.fts_running is False:
        findings.append(Finding(
            "fts_not_running", "high" if has_mirrors else "low",
            "the FTS probe process is not running on the coordinator: nobody marks dead segments "
            "down, fails primaries over or releases SyncRep waits",
            {"fts_running": False, "cluster_has_mirrors": has_mirrors},
            _remedy("Restart the coordinator (gpstop -ar) to restart FTS; meanwhile do what FTS "
                    "would with the mirror-failure role.", role="gp_mirror_failure")))
    interval = _int_setting(facts, "gp_fts_probe_interval")
    grace = _int_setting(facts, "gp_fts_mark_mirror_down_grace_period")
    timeout = _int_setting(facts, "gp_fts_probe_timeout")
    retries = _int_setting(facts, "gp_fts_probe_retries")
    # The latest FTS marks a dead mirror down: its grace period, then the next probe cycle,
    # which may itself take timeout * (retries + 1) (fts.c, ftsprobe.c;
    # docs/greenplum-internals.md#segment-configuration-and-fts).
    budget = interval + grace + timeout * (retries + 1)
    late = [f for f in syncrep_findings
            if f.evidence["content"] != COORDINATOR_CONTENT and not f.evidence["fts_has_acted"]
            and (f.evidence["longest_wait_seconds"] or 0.0) > budget]
    if late and facts.fts_running is not False:
        findings.append(Finding(
            "fts_not_probing", "high",
            "FTS has not marked the mirror of content %s down although commits have waited "
            "%.0f s, longer than its probe interval, grace period and retries allow (%d s)"
            % (", ".join(str(f.evidence["content"]) for f in late),
               _max(f.evidence["longest_wait_seconds"] for f in late), budget),
            {"contents": [f.evidence["content"] for f in late], "budget_s": budget,
             "gp_fts_probe_interval": interval, "gp_fts_mark_mirror_down_grace_period": grace,
             "gp_fts_probe_timeout": timeout, "gp_fts_probe_retries": retries},
            _remedy("Request an FTS probe now and check the coordinator log for FTS errors.",
                    module="gp_fts_probe")))
    return findings


def _twophase_retries(index, facts, options):
    """A QD in "Retry Commit Prepared" gets a new session id on every retry (verified on
    GP7): the owner of the gxid's ``distributed xid`` lock runs under a session other than
    the one ``gp_distributed_xacts`` recorded, while segments still hold the transaction
    prepared. ``state`` names the retry where the server fills it in."""
    findings = []
    for xact in index.snapshot.dist_xacts:
        if not xact.gxid:
            continue
        qd = index.coordinator_backend(xact.gxid)
        prepared = index.prepared_by_gxid.get(xact.gxid, [])
        retrying = "retry" in (xact.state or "").lower() or bool(
            prepared and qd is not None and qd.sess_id != xact.gp_session_id)
        if not retrying:
            continue
        contents = sorted(p.content for p in prepared)
        retried = _seconds(index, qd.query_start) if qd else None
        findings.append(Finding(
            "twophase_commit_retry", "critical",
            "distributed transaction %d is retrying Commit Prepared (QD pid %s, for %s s); still "
            "prepared on content %s" % (xact.gxid, qd.pid if qd else "unknown", retried,
                                        ", ".join(str(c) for c in contents) or "-"),
            {"gxid": xact.gxid, "qd": _session(index, qd) if qd else None,
             "original_sess_id": xact.gp_session_id, "state": xact.state,
             "prepared_on_contents": contents, "blocked": []},
            _remedy("Never cancel or terminate this session: it has committed and re-sends COMMIT "
                    "PREPARED; killing it forces a coordinator PANIC. Fix the segment that refuses "
                    "(its log names the error), or let FTS fail it over.",
                    module="gp_fts_probe")))
    return findings


def _prepared_locks(index, prepared):
    """Lock rows of one prepared transaction: no pid, same virtual transaction as its xid lock."""
    for (content, _vxact), rows in index.prepared_rows.items():
        if content == prepared.content and any(
                r.locktype == "transactionid" and r.transactionid == prepared.transaction
                for r in rows):
            return rows
    return []


# A prepared transaction lives milliseconds between PREPARE and COMMIT PREPARED while
# its coordinator still has the gxid; one the coordinator no longer has, seen this
# long after it was prepared, is no snapshot-timing artefact.
_ORPHAN_NOTICE_AGE = 5.0


def _orphan_severity(age, threshold, waiters):
    """info as soon as the coordinator no longer has the gxid (Greenplum's dtx recovery
    should abort it: "unable to complete 'Abort' broadcast ... dtx recovery process will
    continue trying that", cdbtm.c); medium once someone waits on it; high once it is
    older than ``prepared_xact_age`` (Greenplum's own orphan rule)."""
    if age is not None and age >= threshold:
        return "high"
    return "medium" if waiters else "info"


def _orphaned_prepared(index, facts, options):
    """Prepared transactions whose gxid the coordinator no longer has: ``prepared.classify``
    decides them (Greenplum's orphan rule: older than ``prepared_xact_age``,
    docs/greenplum-internals.md#prepared-transactions); younger ones are reported too, from
    ``_ORPHAN_NOTICE_AGE`` on, at a severity that rises with their age
    (``_orphan_severity``). A gid Greenplum did not form (a utility-mode ``PREPARE
    TRANSACTION``) older than ``prepared_xact_age`` is reported too: nothing in Greenplum
    ever resolves it. One finding per gid, across its segments."""
    if index.live_gxids is None or not index.snapshot.prepared_xacts:
        return []  # liveness unknown: never call a prepared transaction orphaned
    by_gid = {}
    threshold = options.prepared_xact_age
    for d in prepared.classify(index.snapshot, min_age=threshold):
        old = d["age_s"] is not None and d["age_s"] >= threshold
        unknown_young = (d["verdict"] == prepared.TOO_YOUNG and d["gxid"] is not None
                         and d["age_s"] is not None and d["age_s"] >= min(_ORPHAN_NOTICE_AGE, threshold))
        if d["verdict"] == prepared.ORPHANED or unknown_young or (d["verdict"] == prepared.FOREIGN_GID and old):
            by_gid.setdefault(d["gid"], []).append(d)
    findings = []
    for gid, decisions in sorted(by_gid.items()):
        items = []
        for d in decisions:
            px = next((p for p in index.prepared_by_gxid.get(d["gxid"], ())
                       if p.content == d["content"] and p.gid == gid), None)
            items.append({"content": d["content"], "gid": gid, "transaction": d["transaction"],
                          "age_s": round(d["age_s"], 1), "owner": d["owner"],
                          "database": d["database"], "verdict": d["verdict"], "reason": d["reason"], "why": d["why"],
                          "waiters": d["waiters"],
                          "locks": sorted({_lock_label(r) for r in _prepared_locks(index, px)})
                          if px else []})
        gxid = decisions[0]["gxid"]
        age = _max(i["age_s"] for i in items)
        severity = _orphan_severity(age, threshold, any(i["waiters"] for i in items))
        if gxid is None:
            remedy = _remedy("Greenplum did not form this gid, so neither Greenplum nor "
                             "gp_prepared_xacts resolves it: ask who prepared it, then COMMIT "
                             "PREPARED or ROLLBACK PREPARED it in utility mode on its segment.")
        else:
            remedy = _remedy("Roll it back with gp_prepared_xacts (state: absent), which re-checks "
                             "the coordinator and the segments' distributed commit log first; if "
                             "the distributed transaction committed, COMMIT PREPARED it instead, in "
                             "utility mode on each listed segment. Greenplum's dtx recovery process "
                             "retries the abort by itself (every gp_dtx_recovery_interval) once the "
                             "segment accepts it.", module="gp_prepared_xacts",
                             state="absent", gids=[gid], min_age=min(threshold, age))
        if decisions[0]["verdict"] == prepared.TOO_YOUNG:
            state = ("the coordinator no longer has gxid %s (%.0f s old; an orphan at %.0f s: a "
                     "failed abort or commit broadcast leaves this)" % (gxid, age, threshold))
        else:
            state = "is orphaned (%.0f s old; %s)" % (age, decisions[0]["why"])
        findings.append(Finding(
            "orphaned_prepared_xact", severity,
            "prepared transaction gid %s on content %s: %s; it keeps its locks"
            % (gid, ", ".join(str(i["content"]) for i in items), state),
            {"gxid": gxid, "prepared": items, "blocked": [], "age_s": age,
             "orphan_age_s": threshold}, remedy))
    return findings


def _resource_queue_waits(index, facts, options):
    """Only when ``gp_resource_manager`` is ``queue`` (GP7 default ``none``: queues queue
    nothing); from ``gp_toolkit.gp_locks_on_resqueue`` (``lorgranted`` false = queued), else
    from the snapshot's ``resource queue`` lock rows."""
    if facts.setting("gp_resource_manager") != "queue":
        return []
    # Without the view's rows (not readable), the coordinator's own 'resource queue' lock
    # rows say the same, the queue named by its oid (pg_locks.objid,
    # docs/greenplum-internals.md#resource-queues).
    rows = facts.resqueue_locks or [
        {"lorrsqname": None, "lorobjid": lock.objid, "lorpid": lock.pid, "lorgranted": lock.granted,
         "lorusename": None} for lock in index.snapshot.locks
        if lock.locktype == "resource queue" and lock.content == COORDINATOR_CONTENT]
    queues = {}
    for row in rows:
        queues.setdefault(str(row.get("lorrsqname") or row.get("lorobjid")), []).append(row)
    findings = []
    for name, rows in sorted(queues.items()):
        waiting = [r for r in rows if not r.get("lorgranted")]
        if not waiting:
            continue
        sessions = []
        for r in waiting:
            b = index.qd_by_pid.get(r.get("lorpid"))
            sessions.append({"pid": r.get("lorpid"), "usename": r.get("lorusename"),
                             "wait_s": _seconds(index, b.query_start) if b else None,
                             "query": b.query if b else None})
        longest = _max(s["wait_s"] for s in sessions)
        findings.append(Finding(
            "resource_queue_wait", "high" if longest >= options.wait_threshold else "medium",
            "resource queue %s: %d statement(s) queued (longest %.0f s) behind %d running"
            % (name, len(waiting), longest, len(rows) - len(waiting)),
            {"queue": name, "waiting": sessions, "longest_wait_s": longest,
             "running_pids": [r.get("lorpid") for r in rows if r.get("lorgranted")]},
            _remedy("Statements wait for a slot of their resource queue, not for a lock: wait for "
                    "the running ones or raise the queue's ACTIVE_STATEMENTS / MAX_COST "
                    "(pg_resqueue_status shows the limits).")))
    return findings


def _global_deadlocks(index, facts, analysis):
    gdd_on = _on(facts.setting("gp_enable_global_deadlock_detector"))
    period = _int_setting(facts, "gp_global_deadlock_detector_period")
    findings = []
    for d in analysis.deadlocks:
        victims = [v for v in analysis.victims if v["deadlock"] == d["id"]]
        contents = sorted({e["content"] for e in d["edges"]})
        if victims:
            choice = "victim: %s (policy %s)" % (", ".join(
                "gxid %s (session %s, QD pid %s)" % (v["gxid"], v["sess_id"], v["coordinator_pid"])
                for v in victims), analysis.policy)
        else:
            choice = "no victim may be chosen (every member protected): needs a person"
        findings.append(Finding(
            "global_deadlock", "critical",
            "%s deadlock between gxid %s %s content %s; %s; %s" % (
                "local" if len(contents) == 1 else "global", ", ".join(str(g) for g in d["gxids"]),
                "on" if len(contents) == 1 else "across", ", ".join(str(c) for c in contents),
                choice, "GDD is on and breaks it within %d s" % period if gdd_on
                else "GDD is off: it stays until broken"),
            {"deadlock": d["id"], "gxids": d["gxids"], "scope": "local" if len(contents) == 1 else "global",
             "explanation": d["explanation"],
             "sessions": [{k: v.get(k) for k in ("gxid", "sess_id", "coordinator_pid", "usename",
                                                 "application_name", "state", "xact_age_s",
                                                 "query")} for v in d["vertices"]],
             "edges": [{"content": e["content"], "waiter_gxid": e["waiter"],
                        "holder_gxid": e["holder"], "lock": "%s %s" % (e["locktype"], e["mode"]),
                        "relation": e["relation_name"] or e["relation"], "kind": e["kind"]}
                       for e in d["edges"]],
             "victims": [{k: v[k] for k in ("gxid", "sess_id", "coordinator_pid", "reason")}
                         for v in victims],
             "resolution": d["resolution"], "blocked": []},
            _remedy("Cancel the victim's coordinator backend (what Greenplum's detector does), "
                    "terminate it if it stays in the cycle.", module="gp_deadlock",
                    role="gp_deadlock_resolve", playbook="resolve_hang",
                    gp_resolve_deadlocks=True, gp_deadlock_policy=analysis.policy)))
    return findings


def _blocking_chain(tree, options):
    root = tree["root"]
    longest = tree["longest_wait_s"] or 0.0
    if root["kind"] == "prepared_xact":
        text = ("The root is a prepared transaction; its two-phase commit is in progress: do not "
                "kill its coordinator backend, let it finish." if not root["in_doubt"] else
                "The root is a prepared transaction with no coordinator backend: dtx recovery "
                "resolves it; once older than prepared_xact_age it is reported as orphaned.")
        remedy = _remedy(text)
    elif root.get("prepared_on"):
        remedy = _remedy(
            "The root blocker's coordinator backend (pid %s, gxid %s) is in the middle of a two-phase "
            "commit: its transaction is prepared on content %s and the commit is being delivered. Do not "
            "cancel or terminate it (that forces a coordinator PANIC). Wait for the commit to finish; if a "
            "segment refuses COMMIT PREPARED, fix that segment and let the coordinator's retry or dtx "
            "recovery finish it; gp_prepared_xacts shows the prepared transactions and their state."
            % (root.get("coordinator_pid"), root.get("gxid"), ", ".join(str(c) for c in root["prepared_on"])),
            module="gp_prepared_xacts")
    else:
        remedy = _remedy(
            "End the root blocker's transaction: ask its owner, or terminate its coordinator "
            "backend (pg_terminate_backend(%s)) when policy allows; the waiters then proceed."
            % root.get("coordinator_pid", root.get("pid")))
    evidence = _tree_evidence(tree)
    evidence["root"] = {k: v for k, v in root.items() if k != "label"}
    evidence["root"]["label"] = root["label"]
    return Finding("blocking_chain", "high" if longest >= options.wait_threshold else "medium",
                   tree["explanation"], evidence, remedy)


def _owner(findings, tree, index):
    """The finding that already explains this tree's root, or None."""
    root = tree["root"]
    for f in findings:
        if f.cls in ("twophase_commit_retry", "orphaned_prepared_xact") and \
                root["kind"] == "prepared_xact" and root["gxid"] == f.evidence["gxid"]:
            return f
        if f.cls == "twophase_commit_retry" and root["kind"] == "session" and \
                root.get("gxid") == f.evidence["gxid"]:
            return f
        if f.cls == "syncrep_wait" and root["kind"] == "session" and any(
                content == f.evidence["content"]
                for content, _pid in index.syncrep_sessions.get(root["sess_id"], ())):
            return f
    return None


def _long_idle_in_transaction(index, facts, options, skip_sessions):
    idle = {}
    for b in index.qd_by_session.values():
        age = _seconds(index, b.state_change) or 0.0
        if (b.state in _IDLE_IN_XACT and b.sess_id not in skip_sessions
                and age >= options.idle_in_transaction_age):
            idle[b.sess_id] = (b, age)
    if not idle:
        return []  # the common case: no pass over the lock rows at all
    held = {}
    for lock in index.snapshot.locks:
        if lock.mppsessionid in idle and lock.granted and lock.locktype not in _SELF_LOCKTYPES:
            held.setdefault(lock.mppsessionid, set()).add(_lock_label(lock))
    findings = []
    for sess_id, (b, age) in sorted(idle.items(), key=lambda kv: kv[1][0].pid):
        locks = held.get(sess_id)
        if not locks:
            continue
        findings.append(Finding(
            "long_idle_in_transaction", "low",
            "session %d (QD pid %d, user %s) is %s for %.0f s holding %d lock(s)"
            % (sess_id, b.pid, b.usename, b.state, age, len(locks)),
            {"session": _session(index, b), "idle_s": age, "locks": sorted(locks)},
            _remedy("Ask the owner to end the transaction: it blocks DDL and VACUUM now and the "
                    "next writer soon. Terminate its coordinator backend only when policy "
                    "allows.")))
    return findings


def _gdd_status(facts):
    enabled = _on(facts.setting("gp_enable_global_deadlock_detector"))
    period = _int_setting(facts, "gp_global_deadlock_detector_period")
    known = "gp_enable_global_deadlock_detector" in facts.settings
    if enabled:
        summary = ("global deadlock detector on, period %d s: it breaks a global deadlock "
                   "within that time" % period)
    else:
        summary = ("global deadlock detector off%s: global deadlocks stay until someone breaks "
                   "them" % ("" if known else " (assumed: the setting was not read)"))
    return Finding("gdd_status", "info", summary,
                   {"enabled": enabled, "period_s": period, "known": known},
                   _remedy("Nothing to do: resolve_hang.yml breaks global deadlocks at once.",
                           playbook="resolve_hang"))


def _on(value):
    return str(value).lower() in ("on", "true", "1", "yes")


# ------------------------------------------------- stuck QE, segment restart

# The QD's wait events while it waits for its QEs (pgstat.c pgstat_get_wait_ipc:
# WAIT_EVENT_INTERCONNECT, WAIT_EVENT_GANG_ASSIGN, WAIT_EVENT_DISP_FINISH,
# WAIT_EVENT_DISP_RESULT; docs/greenplum-internals.md#stuck-qes). Observed on GP7: a
# query whose QE on one segment is frozen waits on IPC/Interconnect.
_QD_WAITS_ON_QES = ("Interconnect", "Dispatch/Gang-Assign", "Dispatch/Finish", "Dispatch/Result")
_PROCESS_STATES = {
    "T": "stopped (T: SIGSTOP or a debugger)", "t": "stopped by a debugger (t)",
    "D": "in uninterruptible sleep (D, usually I/O)", "R": "running (R)", "S": "sleeping (S)",
    "Z": "a zombie (Z)", "unknown": "state unknown (not readable on this host)",
}
# A segment whose last (re)initialisation is this much later than the coordinator's
# restarted on its own: gpstart starts the segments before the coordinator.
RESTART_MARGIN_S = 10.0


def _qd_waits_on_qes(backend):
    return backend.wait_event_type == "IPC" and backend.wait_event in _QD_WAITS_ON_QES


def _qe_working(backend):
    """An active QE not waiting for something another finding or another QE explains: a
    lock wait (blocking chain, deadlock), a SyncRep wait, or the interconnect / dispatch
    (it waits for another QE)."""
    if backend.state != "active" or backend.wait_event_type == "Lock":
        return False
    return not (backend.wait_event_type == "IPC"
                and (backend.wait_event == "SyncRep" or backend.wait_event in _QD_WAITS_ON_QES))


def _started_before(a, b):
    return a.backend_start is not None and (b.backend_start is None or a.backend_start < b.backend_start)


def _stuck_sessions(snapshot, options):
    """``[(qd, working QEs, done contents, QD wait seconds)]``: every coordinator backend
    active and waiting on its QEs (``_QD_WAITS_ON_QES``) for at least
    ``stuck_qe_min_wait`` seconds (from its ``state_change``: GP7 has no wait start, so an
    upper bound) that still has working QEs; ``done``: the contents where it has QEs but
    none working (idle, or waiting for the working ones)."""
    qes, qds = {}, {}
    for b in snapshot.backends:
        if (b.sess_id or 0) <= 0:
            continue
        if b.content != COORDINATOR_CONTENT:
            qes.setdefault(b.sess_id, []).append(b)
        elif b.sess_id not in qds or _started_before(b, qds[b.sess_id]):
            # The QD is the session's first coordinator backend: a query may also have an
            # entry-db QE on the coordinator, with the same sess_id, started later.
            qds[b.sess_id] = b
    out = []
    for _sess_id, qd in sorted(qds.items()):
        since = qd.state_change or qd.query_start
        if qd.state != "active" or not _qd_waits_on_qes(qd) or since is None:
            continue
        wait = (snapshot.taken_at - since).total_seconds()
        mine = qes.get(qd.sess_id, [])
        working = sorted((b for b in mine if _qe_working(b)), key=lambda b: (b.content, b.pid))
        if wait < options.stuck_qe_min_wait or not working:
            continue
        done = sorted({b.content for b in mine} - {b.content for b in working})
        out.append((qd, working, done, wait))
    return out


def stuck_qe_candidates(snapshot, options=None):
    # type: (Any, Optional[TriageOptions]) -> List[Dict[str, Any]]
    """The QEs whose ``/proc`` state ``stuck_qe`` wants (``ClusterFacts.process_states``):
    dicts ``{content, pid, sess_id, port}`` (``port``: the content's primary, None when
    the catalog has none), the working QEs of every coordinator session that has waited on
    them for at least ``stuck_qe_min_wait`` seconds. Pure; the caller reads ``/proc``."""
    options = options or TriageOptions()
    ports = {s.content: s.port for s in snapshot.segments if s.is_primary}
    return [{"content": b.content, "pid": b.pid, "sess_id": b.sess_id, "port": ports.get(b.content)}
            for _qd, working, _done, _wait in _stuck_sessions(snapshot, options) for b in working]


def _stuck_remedy(qd, qes):
    def host(q):
        return q["host"] or "its segment host"
    steps = []
    for q in qes:
        if q["process_state"] in ("T", "t"):
            steps.append("QE pid %d on %s is stopped: resume it with kill -CONT %d (or detach the "
                         "debugger); the query then continues." % (q["pid"], host(q), q["pid"]))
        elif q["process_state"] == "D":
            steps.append("QE pid %d on %s waits in the kernel, usually for I/O: check the host's "
                         "disks (iostat -x, dmesg) and its kernel stack (cat /proc/%d/stack)."
                         % (q["pid"], host(q), q["pid"]))
        else:
            steps.append("QE pid %d on %s is still working: look at the host (CPU and I/O: top, "
                         "iostat -x), at data skew of the tables the query reads "
                         "(gp_toolkit.gp_skew_coefficients) and at the QE's stack (pstack %d, or "
                         "gdb -p %d -batch -ex bt)." % (q["pid"], host(q), q["pid"], q["pid"]))
    steps.append("As a last resort cancel the query at the coordinator: pg_cancel_backend of QD "
                 "pid %d (a stopped QE sees the cancel only once resumed). This collection does "
                 "neither." % qd.pid)
    return _remedy(" ".join(steps))


def _stuck_qes(index, facts, options):
    """A QD that has waited on its QEs for ``stuck_qe_min_wait`` while one or a few of
    them still work: its QEs on other contents are done (the usual shape of a frozen or
    slow segment process), or a working QE is provably stopped (``T``) or in
    uninterruptible sleep (``D``) in ``/proc``. One finding per QD session; ``high`` once
    the QD has waited ``stuck_qe_age`` or when a QE is stopped (it never resumes by
    itself), else ``medium``. GP6 shows no QD wait event: never reported there."""
    primaries = {s.content: s for s in index.snapshot.segments if s.is_primary}
    findings = []
    for qd, working, done, wait in _stuck_sessions(index.snapshot, options):
        states = [facts.process_states.get((b.content, b.pid), "unknown") for b in working]
        if not done and not any(st in ("T", "t", "D") for st in states):
            continue  # every segment still works on it: a long query, not a stuck QE
        qes = []
        for b, st in zip(working, states):
            seg = primaries.get(b.content)
            qes.append({"content": b.content, "dbid": seg.dbid if seg else None,
                        "host": seg.hostname if seg else None, "port": seg.port if seg else None,
                        "pid": b.pid, "state": b.state,
                        "wait": "%s/%s" % (b.wait_event_type, b.wait_event) if b.wait_event else None,
                        "active_since": (b.state_change or b.query_start).isoformat()
                        if (b.state_change or b.query_start) else None,
                        "active_s": _seconds(index, b.state_change or b.query_start),
                        "process_state": st, "query": b.query})
        stopped = any(q["process_state"] in ("T", "t") for q in qes)
        severity = "high" if wait >= options.stuck_qe_age or stopped else "medium"
        first = qes[0]
        contents = sorted({q["content"] for q in qes})
        findings.append(Finding(
            "stuck_qe", severity,
            "session %d (QD pid %d) has waited %.0f s on %s/%s for content %s: %s%s" % (
                qd.sess_id, qd.pid, wait, qd.wait_event_type, qd.wait_event,
                ", ".join(str(c) for c in contents),
                "; ".join("QE pid %d on content %d (dbid %s, %s:%s) active for %s s, process %s" % (
                    q["pid"], q["content"], q["dbid"], q["host"], q["port"], q["active_s"],
                    _PROCESS_STATES.get(q["process_state"], q["process_state"])) for q in qes),
                "; its QEs on content %s are done" % ", ".join(str(c) for c in done) if done else ""),
            {"content": first["content"], "dbid": first["dbid"], "host": first["host"],
             "pid": first["pid"], "process_state": first["process_state"],
             "sess_id": qd.sess_id, "qd_pid": qd.pid,
             "qd_wait": "%s/%s" % (qd.wait_event_type, qd.wait_event), "qd_wait_s": round(wait, 1),
             "qd_since": (qd.state_change or qd.query_start).isoformat(),
             "qd": _session(index, qd), "stuck_qes": qes, "done_contents": done,
             "stuck_qe_age_s": options.stuck_qe_age},
            _stuck_remedy(qd, qes)))
    return findings


def _restart_times(snapshot):
    """content -> ``(postmaster start, children start)`` of the coordinator and each primary:
    ``pg_postmaster_start_time()`` (utility mode) and the ``backend_start`` of its
    checkpointer (``gp_stat_activity``, GP7/Cloudberry). A crash reset restarts every
    child and keeps the postmaster: its checkpointer then starts later than it (observed on
    GP7). Either may be None (not read)."""
    checkpointer = {}
    for b in snapshot.backends:
        if b.backend_type == "checkpointer" and b.backend_start is not None:
            checkpointer[b.content] = max(b.backend_start, checkpointer.get(b.content, b.backend_start))
    contents = set(snapshot.postmaster_starts) | set(checkpointer)
    return {c: (snapshot.postmaster_starts.get(c), checkpointer.get(c)) for c in contents}


def _latest(pair):
    known = [t for t in pair if t is not None]
    return max(known) if known else None


def _segments_restarted(index, facts, options):
    """A primary whose postmaster, or whose children after a crash reset, started more than
    ``RESTART_MARGIN_S`` after the coordinator's, within the last
    ``segment_restart_window`` seconds. ``medium`` for a crash reset (a backend died:
    SIGKILL, segfault, the OOM killer; every query on the segment failed and it ran crash
    recovery), ``info`` for a postmaster restart (pg_ctl, gprecoverseg, a rebalance). A
    time not read is unknown: no finding from it."""
    times = _restart_times(index.snapshot)
    coordinator = _latest(times.get(COORDINATOR_CONTENT, (None, None)))
    if coordinator is None:
        return []
    primaries = {s.content: s for s in index.snapshot.segments if s.is_primary}
    findings = []
    for content, (postmaster, children) in sorted(times.items()):
        latest = _latest((postmaster, children))
        if (content == COORDINATOR_CONTENT or latest is None or content in index.snapshot.unreachable
                or (latest - coordinator).total_seconds() <= RESTART_MARGIN_S
                or (index.taken_at - latest).total_seconds() > options.segment_restart_window):
            continue
        reset = (postmaster is not None and children is not None
                 and (children - postmaster).total_seconds() > RESTART_MARGIN_S)
        seg = primaries.get(content)
        age = _seconds(index, latest)
        where = "dbid %s (%s:%s)" % (seg.dbid, seg.hostname, seg.port) if seg else "its primary"
        if reset:
            summary = ("content %d: the primary %s reset after a crash %.0f s ago (%s): its postmaster "
                       "(up since %s) restarted every process and ran crash recovery; every query with "
                       "a QE on content %d then failed"
                       % (content, where, age, latest.isoformat(), postmaster.isoformat(), content))
        else:
            summary = ("content %d: the primary %s started %.0f s ago (%s), %.0f s after the "
                       "coordinator: it was restarted (pg_ctl, a recovery or a rebalance); queries "
                       "running on it then failed" % (content, where, age, latest.isoformat(),
                                                      (latest - coordinator).total_seconds()))
        findings.append(Finding(
            "segment_restarted", "medium" if reset else "info", summary,
            {"content": content, "dbid": seg.dbid if seg else None,
             "host": seg.hostname if seg else None, "port": seg.port if seg else None,
             "kind": "crash_reset" if reset else "restart", "restarted_at": latest.isoformat(),
             "restarted_s_ago": age,
             "postmaster_start": postmaster.isoformat() if postmaster else None,
             "children_start": children.isoformat() if children else None,
             "coordinator_start": coordinator.isoformat(),
             "window_s": options.segment_restart_window,
             "broke": ["every query with a QE on content %d at that moment failed (\"Error on receive "
                       "from seg%d ... server closed the connection unexpectedly\")" % (content, content),
                       "its mirror re-synchronises (mirror_not_in_sync until it streams again)"]
             if reset else ["queries running on content %d at that moment failed" % content]},
            _remedy("Find out why in the segment's log: gp_log_info over the minutes around "
                    "restarted_at shows its crash, crash_reset and crash_recovery events ('server "
                    "process (PID n) was terminated by signal 9', then 'all server processes "
                    "terminated; reinitializing'); on its host look for the OOM killer (dmesg) or a "
                    "core file. "
                    "Rerun the failed queries. Nothing to undo: the segment recovered by itself."
                    if reset else "Nothing to do if the restart was planned; otherwise ask who "
                    "restarted it (gp_log_info shows the shutdown request and the start).",
                    module="gp_log_info")))
    return findings


# -------------------------------------------------------------- entry point


def classify(snapshot, analysis, facts=None, options=None):
    # type: (Any, Any, Optional[ClusterFacts], Optional[TriageOptions]) -> List[Finding]
    """Classify one snapshot. ``analysis``: ``analysis.analyse(snapshot)``, whose
    ``index`` (the snapshot's ``SnapshotIndex``) is used again, not rebuilt; ``facts``:
    ``ClusterFacts`` (default: nothing beyond the snapshot, Greenplum defaults for
    settings); ``options``: ``TriageOptions``. Returns findings, most severe first,
    always ending with the ``gdd_status`` info finding."""
    facts = facts or ClusterFacts()
    options = options or TriageOptions()
    index = getattr(analysis, "index", None)
    if index is None or index.snapshot is not snapshot:
        index = None
    with gc_paused():  # indexing a million lock rows allocates much and creates no cycles
        return _classify(index or SnapshotIndex(snapshot), analysis, facts, options)


def _classify(index, analysis, facts, options):
    findings = _node_unreachable(index, facts, options)
    mirror = _mirror_loss(index, facts, options)
    findings += mirror
    findings += _fts(index, facts, options, [f for f in mirror if f.cls == "syncrep_wait"])
    findings += _twophase_retries(index, facts, options)
    findings += _orphaned_prepared(index, facts, options)
    findings += _global_deadlocks(index, facts, analysis)
    skip_sessions = {v["sess_id"] for d in analysis.deadlocks for v in d["vertices"]}
    for tree in analysis.blocking_trees:
        root = tree["root"]
        if root["kind"] == "session":
            skip_sessions.add(root["sess_id"])
        owner = _owner(findings, tree, index)
        if owner is None:
            findings.append(_blocking_chain(tree, options))
        else:
            owner.evidence.setdefault("blocked", []).append(_tree_evidence(tree))
    findings += _stuck_qes(index, facts, options)
    findings += _resource_queue_waits(index, facts, options)
    findings += _segments_restarted(index, facts, options)
    findings += _long_idle_in_transaction(index, facts, options, skip_sessions)
    findings.sort(key=lambda f: (-severity_rank(f.severity), CLASSES.index(f.cls)))
    findings.append(_gdd_status(facts))
    return findings
