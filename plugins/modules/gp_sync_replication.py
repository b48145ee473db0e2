#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: gpops.greenplum contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: gp_sync_replication
short_description: Switch a primary's synchronous replication off or on the way FTS does, only when proven safe
description:
  - When a mirror dies, commits on its primary wait in C(SyncRep) until FTS marks the mirror
    down and switches that primary's synchronous replication off. Cancel does not release
    them and terminating sessions makes it worse. When FTS is slow, paused or hung, this
    module releases the wait exactly as FTS would. Try M(gpops.greenplum.gp_fts_probe) first.
  - O(state=off) writes C(synchronous_standby_names = '') and reloads the primary, only when
    its mirror is proven not streaming (C(pg_stat_replication) on the primary, read now in
    utility mode, has no C(gp_walreceiver) walsender in state C(streaming); the catalog
    status is reported beside it) or O(force=true). O(state=on) writes C('*') only when the
    mirror streams and its flush lag is at most O(max_lag_bytes). O(state=auto) does
    whichever the mirror's state requires, or nothing.
  - Greenplum 7 and Cloudberry, C(ALTER SYSTEM SET synchronous_standby_names = ...) then
    C(SELECT pg_catalog.pg_reload_conf()) over a utility-mode connection to the primary; FTS writes the
    same C(postgresql.auto.conf). Greenplum 6, the same value in C(gp_replication.conf) in
    the primary's data directory, then reload; the module must then run on the segment host.
    Never C(ALTER SYSTEM RESET), which deletes FTS's line.
  - "The invariant, as Patroni's strict synchronous mode: synchronous replication is given up
    only for a primary whose mirror is proven not streaming, or by the operator's explicit
    O(force); the result says so with RV(durability_risk). The catalog is never touched; FTS
    sets C('*') again by itself when the mirror streams (after C(gprecoverseg))."
  - "FTS first (O(path=auto)): where the FTS process runs, a switch-off is made by FTS itself.
    On the primary, C(gp_fts_mark_mirror_down_grace_period) (read there, by FTS's message handler,
    not on the coordinator) is set to 0 with C(ALTER SYSTEM) and reloaded, one
    C(gp_request_fts_probe_scan()) is requested on the coordinator, and the exact previous value is
    restored (C(ALTER SYSTEM SET) to it when it came from C(postgresql.auto.conf), else
    C(ALTER SYSTEM RESET)) and reloaded in a C(finally). FTS then marks the mirror down in the
    catalog first and switches synchronous replication off second, the safe order. Only where FTS
    cannot act (its process is known not to run, or the probe is not answered, or it did not mark
    the mirror down) is the value written directly (RV(path) says which)."
  - Every switch is a step of a plan (RV(plan)) with a reason code and a guard, carried out by
    one executor (RV(outcomes)), the guard re-read on the primary right before the write; the
    primary's C(synchronous_standby_names) must still be the value judged and the mirror's
    walsender still not streaming (switch-off) or streaming and caught up (switch-on). A walsender
    whose state this role cannot read is C(unknown) and never licenses a switch.
  - A double fault (primary down and its mirror down or not in sync) is reported in
    RV(needs_person) and never acted on. The coordinator (content -1) is refused, it ignores
    C(synchronous_standby_names); for a connected but stalled standby coordinator use
    O(standby_walsender).
version_added: 0.1.0
author:
  - gpops.greenplum contributors (@gpops)
extends_documentation_fragment:
  - gpops.greenplum.connection
options:
  content:
    description:
      - Content id of the segment whose acting primary is switched. Default, all primaries.
      - Content -1 (the coordinator) is refused.
    type: int
  dbid:
    description:
      - Dbid of the primary to switch (it must be the acting primary of its content).
    type: int
  state:
    description:
      - V(off), switch synchronous replication off where the mirror is proven not streaming.
      - V(on), switch it on where the mirror streams and has caught up.
      - V(auto), on where caught up, off where proven not streaming, else nothing.
    type: str
    choices: ['off', 'on', auto]
  force:
    description:
      - With O(state=off), switch off even where the mirror streams. Gives up durability with
        no need; FTS sets C('*') again at its next probe while the mirror streams.
    type: bool
    default: false
  only_waiting:
    description:
      - Switch off only primaries where backends wait in C(SyncRep) now.
    type: bool
    default: false
  max_lag_bytes:
    description:
      - With O(state=on) or V(auto), the largest mirror flush lag (bytes of WAL behind the
        primary's current position) that counts as caught up.
    type: int
    default: 0
  method:
    description:
      - How the value is written. V(auto), C(gp_replication.conf) on Greenplum 6 or where the
        current value comes from that file or the file exists in the data directory on this
        host, else V(alter_system).
    type: str
    choices: [auto, alter_system, gp_replication_conf]
    default: auto
  wait_timeout:
    description:
      - Seconds to wait, per primary, for the new value to be in effect and for the waiting
        backends to be released.
    type: float
    default: 10
  standby_walsender:
    description:
      - Look at the coordinator's walsender serving the standby coordinator. The coordinator
        waits for a connected standby regardless of C(synchronous_standby_names), so a stalled
        standby blocks coordinator commits.
      - V(check), take two samples O(stall_threshold) seconds apart and report whether it is
        stalled. V(terminate), also end that walsender (only it) when it is proven stalled,
        no flush or replay progress between the samples, WAL pending for it, and commits
        waiting in C(SyncRep) on the coordinator.
    type: str
    choices: [check, terminate]
  stall_threshold:
    description:
      - Seconds between the two samples of O(standby_walsender).
    type: float
    default: 10
  allow_sync_off:
    description:
      - With V(false), a switch-off is decided and shown in RV(plan) as a refusal with reason
        C(not_allowed), never carried out; the run reports C(changed=false) and no warning about it.
    type: bool
    default: true
  path:
    description:
      - How a switch-off is made. V(auto), FTS first where its process runs (or cannot be checked
        from this host), the direct write where it is known not to run or did not act.
        V(fts), FTS only (no direct write when it does not act). V(direct), the direct write
        only, the catalog then still says the mirror is up until FTS marks it down.
      - After a direct switch-off, where the FTS process runs on this host, one FTS probe is
        requested; with sync off FTS marks the absent mirror down whatever its grace period,
        which closes the window in which a crash of the primary would promote it
        (docs/mirror-loss.md, "The window after a direct switch"). Best effort; see C(window).
    type: str
    choices: [auto, fts, direct]
    default: auto
  fts_probe_timeout:
    description:
      - Seconds the FTS probe of the FTS-first path may take; V(0) computes it from the
        coordinator's FTS settings as M(gpops.greenplum.gp_fts_probe) does.
    type: float
    default: 0
attributes:
  check_mode:
    support: full
    description:
      - Observes and decides, returns the plan (RV(plan); RV(outcomes) all C(planned)), runs nothing,
        reports C(changed=false) and warns only about the state as it is.
  diff_mode:
    support: full
    description: Shows each primary's C(synchronous_standby_names) before and after.
seealso:
  - module: gpops.greenplum.gp_fts_probe
  - name: Patroni synchronous replication modes
    description: The model for the stated invariant.
    link: https://patroni.readthedocs.io/en/latest/replication_modes.html
"""

EXAMPLES = r"""
- name: Release commits waiting for a dead mirror, where FTS has not acted
  gpops.greenplum.gp_sync_replication:
    state: 'off'
    only_waiting: true
  register: sync

- name: Say what durability was traded
  ansible.builtin.debug:
    msg: "{{ sync.warnings | default([]) }}"
  when: sync.durability_risk

- name: Back on for content 0 once its mirror streams again
  gpops.greenplum.gp_sync_replication:
    content: 0
    state: 'on'

- name: End the coordinator's walsender if the standby coordinator is stalled
  gpops.greenplum.gp_sync_replication:
    standby_walsender: terminate
    stall_threshold: 15
"""

RETURN = r"""
primaries:
  description: One entry per primary looked at.
  returned: when O(state) is set
  type: list
  elements: dict
  contains:
    content: {description: Content id., type: int, sample: 0}
    dbid: {description: Dbid of the acting primary., type: int, sample: 2}
    mirror:
      description: "The mirror in the catalog (dbid, role, status, mode, hostname, port), or null."
      type: dict
      sample: {dbid: 5, role: m, status: u, mode: s, hostname: sdw1, port: 7005}
    reachable: {description: Whether the primary answered in utility mode., type: bool, sample: true}
    unreachable_reason: {description: "Why it did not, or null.", type: str, sample: "timeout: no answer within 30.0 s"}
    mirror_alive:
      description:
        - When the primary did not answer, whether its mirror's postmaster runs (it refuses sessions
          "in recovery"); C(false) makes it a double fault even while the catalog, not yet updated
          by FTS, says up and in sync. Null when not checked or unknown.
      type: bool
      sample: false
    before:
      description: "C(synchronous_standby_names) before, with C(source) and C(sourcefile)."
      type: dict
      sample: {setting: "*", source: configuration file, sourcefile: /data/primary/gpseg0/postgresql.auto.conf}
    after:
      description: "Same after (equal to C(before) when nothing was done)."
      type: dict
      sample: {setting: "", source: configuration file, sourcefile: /data/primary/gpseg0/postgresql.auto.conf}
    replication:
      description: >-
        The mirror's walsender on the primary, C(state) (null when none), C(sync_state), C(pid),
        C(flush_lag_bytes), C(replay_lag_bytes), C(lag_bytes).
      type: dict
      sample: {state: null, sync_state: null, pid: null, flush_lag_bytes: null, replay_lag_bytes: null, lag_bytes: null}
    syncrep_waiters:
      description: Backends waiting in C(SyncRep) on this primary before acting (pid, sess_id, waiting_seconds, state, query, ...).
      type: list
      sample: [{pid: 21211, sess_id: 80, waiting_seconds: 12.4, state: idle in transaction, query: "INSERT INTO t01 VALUES (2, -1)"}]
    waiters_after: {description: Pids still waiting after the switch., type: list, sample: []}
    verdict:
      description: "C(switch_off), C(switch_on), C(keep), C(refuse) or C(needs_person)."
      type: str
      sample: switch_off
    reason:
      description: Why, naming the evidence.
      type: str
      sample: "mirror dbid 5 is proven not streaming: its walsender state is absent (catalog status u, mode s)"
    durability_risk:
      description: Commits on this primary are acknowledged without its mirror having them.
      type: bool
      sample: true
    method: {description: "C(alter_system) or C(gp_replication_conf) when written directly.", type: str, sample: alter_system}
    path: {description: "C(fts) or C(direct) when switched off, else null.", type: str, sample: fts}
    code: {description: "The decision's reason code.", type: str, sample: mirror_lost_commits_wait}
    outcome: {description: "The last step's result for this primary, or null.", type: str, sample: done}
    fts:
      description: "FTS-first path, C(probe), C(grace_before), C(grace_after) (the grace period restored), C(mirror_status)."
      type: dict
      sample: {probe: {completed: true, seconds: 0.4}, grace_after: "30", mirror_status: d}
    fts_after_switch:
      description:
        - After a direct switch-off where FTS runs, the probe requested to close the window
          (C(completed), C(seconds), C(error)) and the mirror's catalog C(status) after it.
      type: dict
      sample: {probe: {completed: true, seconds: 0.3, error: null}, mirror_status: d}
  sample:
    - content: 0
      dbid: 2
      mirror: {dbid: 5, role: m, status: u, mode: s, hostname: sdw1, port: 7005}
      reachable: true
      before: {setting: "*", source: configuration file, sourcefile: /data/primary/gpseg0/postgresql.auto.conf}
      after: {setting: "", source: configuration file, sourcefile: /data/primary/gpseg0/postgresql.auto.conf}
      replication: {state: null, sync_state: null, pid: null, flush_lag_bytes: null, replay_lag_bytes: null, lag_bytes: null}
      syncrep_waiters: [{pid: 21211, sess_id: 80, waiting_seconds: 12.4, query: "INSERT INTO t01 VALUES (2, -1)"}]
      waiters_after: []
      verdict: switch_off
      reason: "mirror dbid 5 is proven not streaming: its walsender state is absent (catalog status u, mode s)"
      durability_risk: true
      method: alter_system
plan:
  description:
    - The typed plan (C(steps), C(refusals)); each step has C(action) (C(fts_mark_down), C(sync_off),
      C(sync_on)), C(target), C(reason) (a stable code, e.g. C(mirror_lost_commits_wait)), C(why),
      C(facts) and C(guard) (C(kind) C(mirror), C(setting) and C(walsender_state) judged, C(require));
      each refusal C(target), C(reason) (e.g. C(not_allowed), C(mirror_state_unknown), C(double_fault)),
      C(why), C(facts).
  returned: when O(state) is set
  type: dict
  sample: {steps: [], refusals: [{target: "content 0 (dbid 2)", reason: not_allowed,
           why: "switching synchronous replication off is not allowed here (allow_sync_off is false)"}]}
outcomes:
  description:
    - One per step run, the step with C(result) (C(done), C(skipped), C(failed), C(planned) in check
      mode), C(detail), C(guard_failed) (a reason code), C(statement), C(at).
  returned: when O(state) is set
  type: list
  elements: dict
  sample: []
path:
  description: "C(fts) (FTS marked the mirror down, then switched sync off), C(direct), C(mixed), or null when nothing was switched off."
  returned: when O(state) is set
  type: str
  sample: fts
window:
  description: Per content switched off, what window of lost commits remains (docs/mirror-loss.md).
  returned: when O(state) is set
  type: list
  elements: str
  sample: ["content 0: FTS marked mirror dbid 5 down before synchronous replication went off: ..."]
switched_off:
  description: Contents whose synchronous replication this run switched off (either path).
  returned: when O(state) is set
  type: list
  elements: int
  sample: [0]
would_switch_off:
  description: Contents a switch-off is planned for (check mode) or was refused for as not allowed.
  returned: when O(state) is set
  type: list
  elements: int
  sample: [0]
sync_off:
  description: Mirrored contents whose C(synchronous_standby_names) is empty now, after the run.
  returned: when O(state) is set
  type: list
  elements: int
  sample: [0]
durability_risk:
  description: True when synchronous replication is off on any mirrored primary looked at, as it is after the run (check mode, as it is now).
  returned: always
  type: bool
  sample: true
needs_person:
  description: Contents with a double fault or an inconsistent catalog; never acted on.
  returned: always
  type: list
  elements: dict
  sample: [{content: 1, reason: "double fault on content 1: ..."}]
executed_queries:
  description: What was run (nothing in check mode, see RV(plan)), prefixed with the target.
  returned: always
  type: list
  elements: str
  sample: ["content 0 (dbid 2): ALTER SYSTEM SET synchronous_standby_names = ''",
           "content 0 (dbid 2): SELECT pg_catalog.pg_reload_conf()"]
actions:
  description:
    - Human lines, one per primary switched (or, in check mode, to be switched), needing a
      person, or refused where commits wait or where O(content)/O(dbid) named it.
  returned: always
  type: list
  elements: str
  sample: ["content 0 (dbid 2): 2 backend(s) waiting in SyncRep (longest 12.4 s); switch_off: mirror dbid 5 is proven not streaming: ..."]
summary:
  description: One line per primary with backends waiting in SyncRep or a decision other than C(keep).
  returned: always
  type: list
  elements: str
  sample: ["content 0 (dbid 2): 2 backend(s) waiting in SyncRep (longest 12.4 s); switch_off: mirror dbid 5 is proven not streaming: ..."]
unreachable_nodes:
  description:
    - Contents whose primary did not answer, with the reason (not C(unreachable), which
      Ansible reads as an unreachable host).
  returned: always
  type: dict
  sample: {"1": "timeout: no answer within 30.0 s"}
standby_walsender:
  description:
    - With O(standby_walsender), the two samples (C(first), C(second)), C(elapsed) seconds,
      C(stalled), C(reason), C(pid), C(pending_bytes), C(coordinator_waiters) and C(terminated).
  returned: when O(standby_walsender) is set
  type: dict
  sample: {stalled: true, pid: 4242, pending_bytes: 8192, terminated: true, elapsed: 10.0,
           reason: "no flush/replay progress for 10.0 s ...", coordinator_waiters: []}
"""

import dataclasses
import time

from ansible_collections.gpops.greenplum.plugins.module_utils.act import executor, fts_probe
from ansible_collections.gpops.greenplum.plugins.module_utils.act import sync_replication_switch as replication
from ansible_collections.gpops.greenplum.plugins.module_utils.analyse.hang_diagnosis import fts_process_running
from ansible_collections.gpops.greenplum.plugins.module_utils.collect import topology as catalog
from ansible_collections.gpops.greenplum.plugins.module_utils.plan.reasons import Reason
from ansible_collections.gpops.greenplum.plugins.module_utils.collect import sql
from ansible_collections.gpops.greenplum.plugins.module_utils.plan import sync_replication
from ansible_collections.gpops.greenplum.plugins.module_utils.collect.connection import (
    GpConnectionError, NotGreenplumError, connect, query, server_info)
from ansible_collections.gpops.greenplum.plugins.module_utils.common.module_base import gp_module, require_privileges
from ansible_collections.gpops.greenplum.plugins.module_utils.common.records import (
    COORDINATOR_CONTENT, Backend)


def _validate(module):
    p = module.params
    bad = None
    if p["content"] == COORDINATOR_CONTENT:
        bad = ("content: -1 is the coordinator, which ignores synchronous_standby_names; "
               "use standby_walsender for a stalled standby coordinator")
    if bad is None and p["content"] is not None and p["content"] < -1:
        bad = "content must be -1 or more (a segment's content id), got %d" % p["content"]
    if bad is None and p["force"] and p["state"] != "off":
        bad = "force applies to state=off only (it never switches on a mirror that does not stream)"
    if bad:
        module.fail_json(msg=bad)


def _targets(module, segments):
    """The acting primaries selected by content/dbid (all by default)."""
    p = module.params
    pairs = sync_replication.pairs_by_content(segments)
    contents = sorted(c for c in pairs if c != COORDINATOR_CONTENT)
    if p["dbid"] is not None:
        seg = next((s for s in segments if s.dbid == p["dbid"]), None)
        if seg is None:
            module.fail_json(msg="dbid: no segment with dbid %d in gp_segment_configuration" % p["dbid"])
        if seg.content == COORDINATOR_CONTENT:
            module.fail_json(msg="dbid: %d is the coordinator or its standby, which ignore "
                                 "synchronous_standby_names; use standby_walsender" % p["dbid"])
        acting = pairs[seg.content]["primary"]
        if acting is None or acting.dbid != seg.dbid:
            module.fail_json(msg="dbid: %d is not the acting primary of content %d (role %s); the "
                                 "acting primary is dbid %s" % (seg.dbid, seg.content, seg.role,
                                                                acting.dbid if acting else "none"))
        contents = [seg.content]
    elif p["content"] is not None:
        if p["content"] not in pairs:
            module.fail_json(msg="content: no segment with content %d; contents are %s"
                                 % (p["content"], ", ".join(map(str, contents))))
        contents = [p["content"]]
    return [(c, pairs[c]["primary"], pairs[c]["mirror"]) for c in contents
            if pairs[c]["primary"] is not None]


def _line(entry):
    waiters = entry["syncrep_waiters"]
    waiting = ("%d backend(s) waiting in SyncRep (longest %s s); " % (
        len(waiters), waiters[0]["waiting_seconds"]) if waiters else "")
    return "content %d (dbid %d): %s%s: %s" % (
        entry["content"], entry["dbid"], waiting, entry["verdict"], entry["reason"])


def _setting_text(entries, key):
    return "".join("content %d (dbid %d): synchronous_standby_names = %r\n"
                   % (e["content"], e["dbid"], (e[key] or {}).get("setting")) for e in entries)


def _plan(module, server, targets):
    """Observe every target primary in parallel and decide (no action)."""
    p = module.params
    observed, unreachable = replication.observe_primaries(p, server, [t[1] for t in targets],
                                                          p["statement_timeout"])
    # A primary that does not answer: does its mirror run? (double fault or failover to come)
    alive = replication.mirrors_alive(p, server, [m for c, _p, m in targets if c in unreachable and m],
                                      p["statement_timeout"])
    entries = []
    for content, primary, mirror in targets:
        obs = observed.get(content)
        rep = obs["replication"] if obs else sync_replication.Replication()
        setting = obs["setting"] if obs else {"setting": None, "source": None, "sourcefile": None}
        waiters = sync_replication.syncrep_waiters(obs["backends"], obs["now"]) if obs else []
        pair = sync_replication.PairState(primary=primary, mirror=mirror, primary_reachable=obs is not None,
                                          replication=rep, setting=setting["setting"],
                                          mirror_alive=alive.get(content))
        decision = sync_replication.decide_sync(pair, p["state"], force=p["force"], max_lag_bytes=p["max_lag_bytes"])
        if p["only_waiting"]:
            decision = sync_replication.require_waiters(decision, waiters)
        entries.append(dict(
            content=content, dbid=primary.dbid, hostname=primary.hostname, port=primary.port,
            mirror=sync_replication.seg_brief(mirror), reachable=obs is not None,
            unreachable_reason=unreachable.get(content), mirror_alive=alive.get(content),
            before=setting, after=setting,
            replication=rep.as_dict(), syncrep_waiters=waiters, waiters_after=[],
            verdict=decision.verdict, reason=decision.reason, code=decision.as_dict()["code"],
            durability_risk=decision.durability_risk, method=None, path=None, outcome=None,
            _pair=pair, _decision=decision))
    return entries, unreachable


def _noted(selected):
    """A refusal matters where commits wait or where the operator named the primary; on
    every healthy primary of a cluster-wide run it is only noise."""
    def noted(pair, decision, waiters):
        return decision.verdict != sync_replication.REFUSE or bool(waiters) or selected
    return noted


def _fts_running(segments):
    coordinator = catalog.coordinator(segments)
    return fts_process_running(coordinator.port, coordinator.datadir) if coordinator else None


def _execute(module, server, segments, entries, plan):
    """Run the plan's steps with the executor. FTS first: an ``fts_mark_down`` step whose
    FTS did not act (probe not answered, mirror not marked down) is followed, with
    ``path: auto``, by the direct ``sync_off`` step for the same content (its own guard
    re-checked); once FTS did not answer a probe, the remaining contents go direct."""
    p = module.params
    by_content = {e["content"]: e for e in entries}
    primaries = {c: e["_pair"].primary for c, e in by_content.items()}
    mirrors = {c: e["_pair"].mirror for c, e in by_content.items()}
    methods = {c: replication.choose_method(p["method"], server, e["before"], primaries[c].datadir)
               for c, e in by_content.items()}
    details = {}
    settings = {}
    if any(s.action == "fts_mark_down" for s in plan.steps) and not module.check_mode:
        conn = connect(p, server=server)
        try:
            settings = fts_probe.fts_settings(conn)
        finally:
            conn.close()
    probe_timeout = p["fts_probe_timeout"] or (fts_probe.probe_timeout(settings) if settings else 0)
    runners = {
        "sync_off": replication.switch_runner(p, server, primaries, methods, p["wait_timeout"], details),
        "sync_on": replication.switch_runner(p, server, primaries, methods, p["wait_timeout"], details),
        "fts_mark_down": fts_probe.fts_mark_down_runner(p, server, primaries, mirrors, probe_timeout,
                                                        p["wait_timeout"], details)}
    outcomes = []
    fts_answering = True
    for step in plan.steps:
        content = step.guard.facts["content"]
        if step.action == "fts_mark_down" and not fts_answering and p["path"] == "auto":
            step = dataclasses.replace(step, action="sync_off", facts=dict(
                step.facts, path=sync_replication.PATH_DIRECT,
                fallback="FTS did not answer a probe earlier in this run"))
        outcome = executor.run_step(step, runners, module.check_mode)
        outcomes.append(outcome)
        if step.action == "fts_mark_down" and outcome.result == "failed":
            probe = details.get(content, {}).get("probe") or {}
            fts_answering = fts_answering and bool(probe.get("completed"))
            if p["path"] == "auto":
                direct = dataclasses.replace(step, action="sync_off", facts=dict(
                    step.facts, path=sync_replication.PATH_DIRECT, fallback=outcome.detail))
                details.setdefault(content, {})["fts_outcome"] = outcome.as_dict()
                outcome = executor.run_step(direct, runners, module.check_mode)
                outcomes.append(outcome)
                step = direct
        entry = by_content[content]
        info = details.get(content, {})
        entry.update(method=methods[content] if step.action != "fts_mark_down" else None,
                     path=step.facts.get("path"), outcome=outcome.result)
        if outcome.result == "done":
            entry["after"] = info.get("after", entry["after"])
            entry["waiters_after"] = info.get("waiters_after", [])
        for key in ("probe", "grace_before", "grace_after", "mirror_status"):
            if key in info:
                entry.setdefault("fts", {})[key] = info[key]
    return outcomes


def _close_window(module, server, segments, entries, switched, result):
    """After a direct switch-off, one FTS probe where FTS runs: with sync off, FTS marks
    the absent mirror down at once, whatever its grace period, which closes the window in
    which a crash of the primary would promote a mirror lacking the commits acknowledged
    since the switch (``fts_probe.probe_after_direct_switch``). Best effort: the switch is
    done either way, and the window says what FTS did. Not in check mode, not where the
    FTS process is not known to run (on a segment host, say)."""
    direct = {e["content"]: e["mirror"]["dbid"] for e in entries
              if e["content"] in switched and e["path"] == sync_replication.PATH_DIRECT and e["mirror"]}
    if not direct or module.check_mode or not _fts_running(segments):
        return
    p = module.params
    after = fts_probe.probe_after_direct_switch(p, server, direct, p["fts_probe_timeout"] or None)
    result["executed_queries"].extend("coordinator: %s" % q for q in after["executed_queries"])
    for entry in entries:
        if entry["content"] in direct:
            entry["fts_after_switch"] = {"probe": after["probe"],
                                         "mirror_status": after["mirror_status"].get(entry["content"])}


def _window(entry):
    """What window remains after this entry's switch-off (docs/mirror-loss.md)."""
    if entry["path"] == sync_replication.PATH_FTS:
        return ("content %d: FTS marked mirror dbid %d down before synchronous replication went off: a "
                "crash of the primary now is a double fault, never a promotion of the stale mirror; "
                "commits are acknowledged without a mirror copy until gprecoverseg"
                % (entry["content"], entry["mirror"]["dbid"]))
    mirror = entry["mirror"]
    if mirror is None:
        return "content %d has no mirror: nothing is traded" % entry["content"]
    after = entry.get("fts_after_switch") or {}
    if after.get("mirror_status") == "d":
        return ("content %d: FTS marked mirror dbid %d down in the probe this run requested right after "
                "the direct switch (%.1f s): the window in which a crash of the primary would have "
                "promoted a mirror lacking the commits acknowledged since the switch lasted that long; "
                "commits are acknowledged without a mirror copy until gprecoverseg"
                % (entry["content"], mirror["dbid"], after["probe"]["seconds"] or 0.0))
    probe = after.get("probe")
    told = ("" if probe is None else
            "; the probe requested after the switch %s" % (
                "left it up" if probe["completed"] else "did not complete (%s)" % probe["error"]))
    return ("content %d: the catalog still says mirror dbid %d is up and in sync until FTS marks it "
            "down (its next probe: with sync off, the grace period no longer holds it back)%s: a crash "
            "of this primary meanwhile lets FTS promote a mirror that lacks the commits acknowledged "
            "since the switch" % (entry["content"], mirror["dbid"], told))


def _standby_walsender(module):
    """Two samples of the coordinator's walsender for the standby; end it when stalled."""
    p = module.params
    conn = connect(p)
    try:
        first = replication.walsender_sample(conn)
        started = time.monotonic()
        time.sleep(p["stall_threshold"])
        second = replication.walsender_sample(conn)
        elapsed = time.monotonic() - started
        now = query(conn, sql.NOW)[0]["now"]
        backends = [Backend.from_row(r, content=COORDINATOR_CONTENT)
                    for r in query(conn, sql.LOCAL_ACTIVITY)]
        waiters = [w for w in sync_replication.syncrep_waiters(backends, now)
                   if w["content"] == COORDINATOR_CONTENT]
        verdict = sync_replication.standby_walsender_stalled(first, second, elapsed, p["stall_threshold"], waiters)
        terminated = False
        if verdict["stalled"] and p["standby_walsender"] == "terminate" and not module.check_mode:
            terminated = replication.terminate_walsender(conn, verdict["pid"])
        return dict(verdict, first=first, second=second, elapsed=round(elapsed, 3),
                    coordinator_waiters=waiters, terminated=terminated,
                    would_terminate=verdict["stalled"] and p["standby_walsender"] == "terminate")
    finally:
        conn.close()


def main():
    module = gp_module(
        dict(content=dict(type="int"), dbid=dict(type="int"),
             state=dict(type="str", choices=list(sync_replication.WANTED_STATES)),
             force=dict(type="bool", default=False), only_waiting=dict(type="bool", default=False),
             max_lag_bytes=dict(type="int", default=0),
             method=dict(type="str", choices=list(replication.METHODS), default="auto"),
             wait_timeout=dict(type="float", default=10.0),
             standby_walsender=dict(type="str", choices=["check", "terminate"]),
             stall_threshold=dict(type="float", default=10.0),
             allow_sync_off=dict(type="bool", default=True),
             path=dict(type="str", choices=list(sync_replication.PATHS), default="auto"),
             fts_probe_timeout=dict(type="float", default=0.0)),
        mutually_exclusive=[["content", "dbid"]],
        required_one_of=[["state", "standby_walsender"]])
    _validate(module)
    p = module.params
    result = dict(changed=False, durability_risk=False, needs_person=[], executed_queries=[],
                  actions=[], summary=[], unreachable_nodes={})
    # Without them pg_stat_replication reads as NULLs: a streaming mirror would look gone.
    needs = ["read_replication"] + (["alter_system"] if p["state"] else []) + (
        ["terminate_walsender"] if p["standby_walsender"] == "terminate" else [])
    require_privileges(module, needs, "gp_sync_replication", **result)
    try:
        conn = connect(p)
        server = server_info(conn)
        segments = catalog.segment_configuration(conn)
        conn.close()
    except (GpConnectionError, NotGreenplumError) as exc:
        module.fail_json(msg=str(exc), **result)

    failures = []
    if p["state"]:
        entries, unreachable = _plan(module, server, _targets(module, segments))
        selected = p["content"] is not None or p["dbid"] is not None
        path = sync_replication.choose_path(
            p["path"], _fts_running(segments) if p["path"] == "auto" else None)
        plan = sync_replication.build_plan(
            [(e["_pair"], e["_decision"], e["syncrep_waiters"]) for e in entries],
            allow_sync_off=p["allow_sync_off"], path=path, noted=_noted(selected),
            max_lag_bytes=p["max_lag_bytes"])
        outcomes = _execute(module, server, segments, entries, plan)
        not_allowed = {r.facts["content"] for r in plan.refusals if r.reason == Reason.NOT_ALLOWED}
        for entry in entries:
            entry.pop("_pair")
            entry.pop("_decision")
            if entry["content"] in not_allowed:
                entry["reason"] = "not allowed (allow_sync_off is false): " + entry["reason"]
            noted = entry["verdict"] not in (sync_replication.KEEP, sync_replication.REFUSE) or (
                entry["verdict"] == sync_replication.REFUSE and (entry["syncrep_waiters"] or selected))
            if noted:
                result["actions"].append(_line(entry))
            if noted or entry["syncrep_waiters"]:
                result["summary"].append(_line(entry))
        done = [o for o in outcomes if o.result == "done"]
        switched = [o.step.guard.facts["content"] for o in done if o.step.action != "sync_on"]
        for o in outcomes:
            if o.result == "failed" and not any(d.step.guard.facts["content"] == o.step.guard.facts["content"]
                                                for d in done):
                failures.append("%s: %s" % (o.step.target, o.detail))
        for o in outcomes:
            if o.result != "planned":
                result["executed_queries"].extend("%s: %s" % (o.step.target, q)
                                                  for q in o.statement.split("; ") if q)
        _close_window(module, server, segments, entries, switched, result)
        # Durability risk after the run: the settings as they are now (check mode: unchanged).
        off_now = [e["content"] for e in entries
                   if e["mirror"] is not None and e["reachable"]
                   and not sync_replication.is_sync_on((e["after"] or {}).get("setting"))]
        paths = sorted({e["path"] for e in entries if e["content"] in switched and e["path"]})
        result.update(
            primaries=entries, unreachable_nodes={str(k): v for k, v in unreachable.items()},
            plan=plan.as_dicts(), outcomes=[o.as_dict() for o in outcomes],
            changed=bool(done), durability_risk=bool(off_now), sync_off=off_now,
            switched_off=switched,
            would_switch_off=sorted({s.guard.facts["content"] for s in plan.steps if s.action != "sync_on"}
                                    | not_allowed),
            path=paths[0] if len(paths) == 1 else ("mixed" if paths else None),
            window=[_window(e) for e in entries if e["content"] in switched],
            needs_person=[{"content": e["content"], "reason": e["reason"]}
                          for e in entries if e["verdict"] == sync_replication.NEEDS_PERSON],
            diff=dict(before=_setting_text(entries, "before"), after=_setting_text(entries, "after")))
        if off_now:
            module.warn(sync_replication.DURABILITY_WARNING.format(contents=", ".join(map(str, off_now))))
        for item in result["needs_person"]:
            module.warn("needs a person: " + item["reason"])
    if p["standby_walsender"]:
        try:
            result["standby_walsender"] = _standby_walsender(module)
        except Exception as exc:
            failures.append("standby walsender check failed: %s" % " ".join(str(exc).split()))
        else:
            result["changed"] = result["changed"] or bool(
                result["standby_walsender"]["terminated"] or (
                    module.check_mode and result["standby_walsender"]["would_terminate"]))
            if result["standby_walsender"]["stalled"]:
                result["actions"].append("standby walsender pid %s: %s%s" % (
                    result["standby_walsender"]["pid"], result["standby_walsender"]["reason"],
                    "; terminated" if result["standby_walsender"]["terminated"] else ""))
    if failures:
        module.fail_json(msg="; ".join(failures), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
