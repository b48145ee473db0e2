# -*- coding: utf-8 -*-
# Copyright: gpops.greenplum contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The whole hang diagnosis, once: collect, analyse, classify. Read-only.

- ``diagnose(params, policy='youngest', never_choose=None, options=None,
  proc='/proc') -> Diagnosis``: the lock snapshot (``snapshot.take_snapshot``)
  and the extra facts (``collect_facts``) are read at the same time, each
  bounded by the ``statement_timeout`` option, so the whole run takes about
  one ``statement_timeout`` at most; then ``lock_analysis.analyse`` and
  ``hang_classes.classify``. A coordinator that cannot be reached is a finding
  (``node_unreachable``, content -1), not an error: a health job needs facts
  even when the server is sick. But a failure that is the tool's own fault
  (``connection.is_tool_error``: authentication, a missing database, a refused
  setting, a missing privilege, on any node) is never a cluster finding: it raises
  ``GpConnectionError`` naming the nodes and the cause. Raises ValueError (naming
  ``policy`` or ``never_choose``) before any I/O, ``NotGreenplumError`` for another server.
- ``collect_facts(params, timeout) -> hang_classes.ClusterFacts``: on the coordinator
  (one connection from ``connection.connect``, so with ``statement_timeout`` and
  ``lock_timeout``): the settings in ``SETTINGS`` (``pg_settings``), the
  mirrors' walsender states (``gp_stat_replication``), each primary's
  ``synchronous_standby_names`` (``gp_toolkit.gp_param_setting``) and, only when
  ``gp_resource_manager`` is ``queue``, ``gp_toolkit.gp_locks_on_resqueue``
  (both in docs/greenplum-internals.md#resource-queues). Whatever could not be read is
  named in ``ClusterFacts.errors`` and left unknown, never guessed.
- ``fts_process_running(port, datadir, proc='/proc') -> bool or None``: whether
  the coordinator's FTS probe process runs on this host.
- ``qe_process_state(pid, port, sess_id, content, proc='/proc') -> str``: the
  ``/proc`` state letter of a QE on this host, or ``unknown``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import os
import threading
import time

from ansible_collections.gpops.greenplum.plugins.module_utils.analyse import hang_classes, lock_analysis
from ansible_collections.gpops.greenplum.plugins.module_utils.collect import connection, privileges, sql
from ansible_collections.gpops.greenplum.plugins.module_utils.common import bounds
from ansible_collections.gpops.greenplum.plugins.module_utils.plan import victims
from ansible_collections.gpops.greenplum.plugins.module_utils.report import hang_report
from ansible_collections.gpops.greenplum.plugins.module_utils.collect.connection import (
    GpConnectionError, connect, is_tool_error, query, run_with_deadline)
from ansible_collections.gpops.greenplum.plugins.module_utils.collect.procinfo import (
    ProcUnreadable, check_proc, read_cmdline, read_process)
from ansible_collections.gpops.greenplum.plugins.module_utils.common.records import (
    COORDINATOR_CONTENT, ClusterSnapshot)
from ansible_collections.gpops.greenplum.plugins.module_utils.collect.snapshot import take_snapshot, write_evidence
from ansible_collections.gpops.greenplum.plugins.module_utils.analyse.hang_classes import ClusterFacts

SETTINGS = (
    "gp_enable_global_deadlock_detector", "gp_global_deadlock_detector_period",
    "gp_fts_probe_interval", "gp_fts_probe_timeout", "gp_fts_probe_retries",
    "gp_fts_mark_mirror_down_grace_period", "gp_resource_manager",
    "gp_dtx_recovery_prepared_period", "dtx_phase2_retry_second",
)
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
    """(fact name, SQL, arguments) to run on the coordinator, in order; the walsender
    states only for a login that can read them (``privileges.Privileges.reads_replication``:
    to any other, ``gp_stat_replication`` shows NULL states, which would read as "not
    streaming"); the resource-queue view only where queues queue
    (``gp_resource_manager = 'queue'``)."""
    yield "privileges", sql.LOGIN_PRIVILEGES, (list(privileges.PREDEFINED_ROLES),)
    yield "settings", sql.SETTINGS_BY_NAME, (list(SETTINGS),)
    if "privileges" in facts_so_far.errors:
        facts_so_far.errors["replication"] = "%sthe login role's privileges could not be read (%s); left unknown" % (
            PRIVILEGE_PREFIX, facts_so_far.errors["privileges"])
    if facts_so_far.errors.get("replication") is None:
        yield "replication", sql.GP_REPLICATION_STATES, None
    yield "sync_standby_names", sql.PRIMARY_SETTINGS, ("synchronous_standby_names",)
    if facts_so_far.setting("gp_resource_manager") == "queue":
        yield "resqueue_locks", sql.RESQUEUE_LOCKS, None


PRIVILEGE_PREFIX = "privilege: "


def _privilege_gaps(facts, found):
    """Name in ``facts.errors`` (``privilege: ...``) what this login cannot read: the
    mirrors' walsender states (left unknown, never read as not streaming) and other
    roles' sessions (their identity unknown)."""
    for fact, need in (("replication", "read_replication"), ("sessions", "see_sessions")):
        lacking = privileges.missing(found, (need,))
        if lacking:
            facts.errors[fact] = PRIVILEGE_PREFIX + lacking + "; left unknown"


def tool_warnings(facts):
    """The ``facts.errors`` that are the tool's own limits (a missing privilege), not
    the cluster's state: what ``gp_hang_info`` warns about."""
    return ["%s: %s" % (name, text) for name, text in sorted(facts.errors.items())
            if text.startswith(PRIVILEGE_PREFIX)]


def collect_facts(params, timeout):
    """See the module docstring; ``timeout``: seconds for all of it. The views read
    exist in GP6, GP7 and Cloudberry alike."""
    facts = ClusterFacts()
    deadline = time.monotonic() + timeout

    def bounded(fn):
        return run_with_deadline(fn, max(0.0, deadline - time.monotonic()))

    ok, conn = bounded(lambda: connect(params))
    if not ok:
        facts.errors["coordinator"] = conn
    else:
        for name, statement, args in _statements(facts):
            ok, rows = bounded(lambda statement=statement, args=args: query(conn, statement, args))
            if not ok:
                facts.errors[name] = rows
                if rows.startswith("timeout"):
                    break  # the connection is still busy in the abandoned thread
                continue
            if name == "privileges":
                _privilege_gaps(facts, privileges.Privileges(
                    rows[0]["login_user"], bool(rows[0]["superuser"]), frozenset(rows[0]["member_of"] or ())))
            elif name == "settings":
                facts.settings = {r["name"]: str(r["setting"]) for r in rows}
            elif name == "replication":
                facts.replication = _replication_states(rows)
            elif name == "sync_standby_names":
                facts.sync_standby_names = {int(r["content"]): r["setting"] for r in rows}
            else:
                facts.resqueue_locks = [dict(r) for r in rows]
        else:
            conn.close()
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
        check_proc(proc)
        pids = [int(name) for name in os.listdir(proc) if name.isdigit()]
        for pid in pids:  # only each cmdline: a full read_process of every process took 0.1 s
            title = " ".join(read_cmdline(pid, proc) or ())
            if FTS_TITLE in title and str(port) in title.replace(",", " ").split():
                return True
        postmaster = _postmaster_pid(datadir)
        if postmaster is None or read_process(postmaster, proc) is None:
            return None
        return False
    except (ProcUnreadable, OSError):
        return None


def qe_process_state(pid, port, sess_id, content, proc="/proc"):
    """The one-letter state (``/proc/<pid>/stat``: ``R``, ``S``, ``D``, ``T``, ...) of the
    QE ``pid`` of session ``sess_id`` on the primary of ``content`` listening on ``port``,
    when that process runs on this host; else ``unknown``. Identity: a QE's process title
    is ``postgres:  <port>, <user> <db> <client> con<sess_id> seg<content> cmd<n> ...``
    (``ps_status.c``; observed on GP7), so a pid reused by another process, or the same
    pid on another host's segment, never lends its state."""
    if not port or not sess_id:
        return "unknown"
    try:
        info = read_process(pid, proc)
    except (ProcUnreadable, OSError):
        return "unknown"
    if info is None:
        return "unknown"
    words = " ".join(info.cmdline).replace(",", " ").split()
    if not {str(port), "con%d" % sess_id, "seg%d" % content} <= set(words):
        return "unknown"
    return info.state


class Diagnosis:
    """What ``diagnose`` found: ``snapshot`` (``ClusterSnapshot``), ``facts``
    (``ClusterFacts``), ``analysis`` (``lock_analysis.Analysis``), ``findings`` (list of
    ``hang_classes.Finding``), ``elapsed_s`` (seconds). ``as_dict()`` is what
    ``gp_hang_info`` returns and what ``hang_report.build_report`` takes."""

    evidence = None

    def __init__(self, snapshot, facts, analysis_, findings, elapsed_s):
        self.snapshot, self.facts, self.analysis = snapshot, facts, analysis_
        self.findings, self.elapsed_s = findings, elapsed_s

    def as_dict(self):
        """The module result. Bounded (``common.bounds``): at most ``TOP_LIMIT`` findings
        of a class listed (``findings_omitted``: ``{class: number}`` of the rest, one
        summary line each); verdict, counts and highest severity are of every finding."""
        findings = [f.as_dict() for f in self.findings]
        listed, omitted = bounds.top_per_class(findings)
        return {
            "verdict": hang_report.verdict_of(findings),
            "highest_severity": hang_report.highest_severity(findings),
            "counts": hang_report.severity_counts(findings),
            "summary": hang_report.finding_lines(listed) + [
                "%s: %d more findings of this class are not listed (the first %d are)"
                % (cls, n, bounds.TOP_LIMIT) for cls, n in sorted(omitted.items())],
            "findings": listed,
            "findings_omitted": omitted,
            "server": dict(self.snapshot.server),
            "elapsed_s": self.elapsed_s,
            "analysis": self.analysis.as_dict(),
            "facts": self.facts.as_dict(),
            "tool_warnings": tool_warnings(self.facts),
            "snapshot": self.snapshot.as_dict(),
            "evidence": self.evidence,
        }


def _facts_in_background(params, timeout):
    """Start ``collect_facts`` in a daemon thread (an abandoned one never keeps the
    process alive); the returned function waits for it until ``deadline`` (monotonic)."""
    box = {}
    thread = threading.Thread(target=lambda: box.update(facts=collect_facts(params, timeout)),
                              name="gpops-facts", daemon=True)
    thread.start()

    def result(deadline):
        thread.join(max(0.0, deadline - time.monotonic()))
        if "facts" in box:
            return box["facts"]
        return ClusterFacts(errors={"facts": "timeout: no answer within %.1f s" % timeout})
    return result


def diagnose(params, policy="youngest", never_choose=None, options=None, proc="/proc", evidence_path=None):
    """See the module docstring. ``params``: the connection options
    (``connection.connection_argument_spec``); ``options``: ``hang_classes.TriageOptions``.
    The snapshot is wait-scoped (``take_snapshot(scope='waits')``, docs/collection.md).
    ``evidence_path``: write every row there too (``snapshot.write_evidence``), after
    the analysed snapshot; ``Diagnosis.evidence`` then says where and how many rows, or
    why it failed (a failure is named, never a finding)."""
    victims.check_policy(policy)
    victims.compile_never_choose(never_choose)
    started = time.monotonic()
    timeout = float(params.get("statement_timeout") or 30.0)
    facts_result = _facts_in_background(params, timeout)
    idle_age = (options or hang_classes.TriageOptions()).idle_in_transaction_age
    evidence = None
    try:
        snap = take_snapshot(params, timeout=timeout, scope="waits", idle_age=idle_age)
    except GpConnectionError as exc:
        if exc.tool_error:
            raise
        snap = ClusterSnapshot(taken_at=datetime.datetime.now(datetime.timezone.utc),
                               unreachable={COORDINATOR_CONTENT: str(exc)})
    own = {c: r for c, r in snap.unreachable.items() if is_tool_error(r)}
    if own:
        raise GpConnectionError(", ".join("content %s" % c for c in sorted(own)), "; ".join(
            own[c] for c in sorted(own)))
    facts = facts_result(started + timeout + 1.0)
    if evidence_path is not None and snap.server:
        try:
            server = connection.ServerInfo(**snap.server)
            evidence = {"path": evidence_path, "rows": write_evidence(params, server, evidence_path, timeout)}
        except (GpConnectionError, OSError, connection.psycopg.Error) as exc:
            evidence = {"path": None, "error": "evidence not written: %s" % exc}
    coordinator = next((s for s in snap.segments if s.content == COORDINATOR_CONTENT
                        and s.role == "p"), None)
    # The test sandbox's FTS is not a child of the coordinator's postmaster: unknown there.
    if coordinator is not None and snap.server.get("flavor") != "sandbox":
        facts.fts_running = fts_process_running(coordinator.port, coordinator.datadir, proc)
    for qe in hang_classes.stuck_qe_candidates(snap, options):
        facts.process_states[(qe["content"], qe["pid"])] = qe_process_state(
            qe["pid"], qe["port"], qe["sess_id"], qe["content"], proc)
    result = lock_analysis.analyse(snap, policy=policy, never_choose=never_choose)
    findings = hang_classes.classify(snap, result, facts, options)
    diagnosis_ = Diagnosis(snap, facts, result, findings, round(time.monotonic() - started, 3))
    diagnosis_.evidence = evidence
    return diagnosis_
