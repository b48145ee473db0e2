#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: gpops.greenplum contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: gp_log_info
short_description: What happened - Greenplum's own log events of a time window, classified and chained
description:
  - Reads the CSV logs of every node for a time window (C(since)/C(until), or the last
    C(last_minutes) minutes) and returns the incident events among them, classified (global
    deadlock victims and GDD's cycle dump, local deadlocks, lock and statement timeouts,
    cancelled and terminated statements, FTS actions, synchronous replication off and on,
    PANIC and FATAL with their context, failed distributed transactions, dispatcher connection
    errors, out of memory and resource group limits, crashes, restarts and crash recovery,
    C(postmaster.pid) lock files, Slony's C(sl_nodelock-pkey)), each with severity, node
    (content, dbid, host), session (C(gp_session_id), C(gp_command_count)), gxid, the Greenplum
    source files that emit the message, and the raw record as evidence.
  - Events are linked into chains by session, distributed transaction (gxid) and time, so that
    each chain says what started it (for example segment PANIC -> coordinator "Retry Commit
    Prepared" -> reset). Signals from M(gpops.greenplum.gp_signal_audit_info) sent to a process
    of a chain join it.
  - Source C(auto) reads C(gp_toolkit.gp_log_system) when the coordinator answers (the
    coordinator's and every primary's logs; not the mirrors'), and FTS's changes of the segment
    configuration from C(pg_catalog.gp_configuration_history) (FTS records them there, not in the
    log), else the files
    C(<data directory>/log/*.csv) of O(data_directories) on the host the module runs on (a role
    or a loop over the hosts gathers them across segment hosts). Mirror and standby logs are
    read from files only.
  - Bounded by O(max_lines) lines read, O(max_events) events and O(deadline) seconds. The
    result says when a bound stopped the scan, with C(complete) false and C(stats.stopped).
  - Read-only; runs the same in check mode.
version_added: 0.2.0
author: gpops.greenplum contributors (@gpops)
extends_documentation_fragment:
  - gpops.greenplum.connection
options:
  since:
    description:
      - Start of the window (inclusive), as epoch seconds, ISO 8601 (without a zone, UTC), a log time
        (C(2026-12-05 09:04:00 UTC)) or relative (C(-30m), C(-2h)).
      - Default C(until) minus O(last_minutes).
    type: str
  until:
    description: End of the window (exclusive), in the same forms as O(since). Default now.
    type: str
  last_minutes:
    description: The window's length when O(since) is not given.
    type: float
    default: 15
  source:
    description:
      - C(auto) tries the coordinator (C(gp_toolkit.gp_log_system)) and falls back to the files of
        O(data_directories) when it does not answer or the query fails; C(coordinator) and C(files)
        use only one.
    type: str
    choices: [auto, coordinator, files]
    default: auto
  data_directories:
    description:
      - Data directories on this host whose C(log/*.csv) files are read (C(source=files), or the
        fallback of C(source=auto)). The node's dbid is read from C(internal.auto.conf), its role
        from C(standby.signal), its content from each record (C(seg<N>)).
    type: list
    elements: path
    default: []
  host:
    description: The host name recorded for events read from files. Default this host's name.
    type: str
  signals:
    description:
      - Signals from a registered M(gpops.greenplum.gp_signal_audit_info) result (its C(signals));
        a signal sent to the process of an event within a chain's time joins that chain.
    type: list
    elements: dict
    default: []
  merge_events:
    description:
      - Events of other M(gpops.greenplum.gp_log_info) results (for example of each segment host's
        files, read with C(source=files) and C(delegate_to)) to merge with this one's before the
        events are chained; an event read twice (same time, process and message) is kept once.
    type: list
    elements: dict
    default: []
  min_severity:
    description: Leave out events below this severity.
    type: str
    choices: [critical, high, medium, low, info]
    default: info
  max_lines:
    description: Read at most this many log lines (files) or rows (coordinator).
    type: int
    default: 2000000
  max_events:
    description: Keep at most this many events.
    type: int
    default: 5000
  deadline:
    description: Stop scanning after this many seconds (the events found so far are returned).
    type: float
    default: 60
attributes:
  check_mode:
    support: full
    description: It only reads logs and catalog views, so check mode runs it as usual.
  diff_mode:
    support: none
    description: It changes no file and no setting.
notes:
  - C(gp_toolkit.gp_log_system) needs a superuser; it reads every CSV file of every primary, so
    O(statement_timeout) bounds it on the server.
  - Times in the result are UTC. Log times in another zone than UTC/GMT or a numeric offset are
    taken as UTC.
seealso:
  - name: Greenplum gp_toolkit log views (gp_log_system)
    description: The views over every segment's and the coordinator's CSV logs.
    link: https://docs.vmware.com/en/VMware-Greenplum/7/greenplum-database/ref_guide-gp_toolkit.html
  - name: Greenplum 7 source of the classified messages
    description: Each class cites its source files (docs/log-timeline.md).
    link: https://github.com/greenplum-db/gpdb-archive/blob/main/src/backend/cdb/cdbtm.c
  - module: gpops.greenplum.gp_hang_info
  - module: gpops.greenplum.gp_signal_audit_info
  - module: gpops.greenplum.gp_report
"""

EXAMPLES = r"""
- name: What happened in the last 30 minutes (coordinator up, else the local files)
  gpops.greenplum.gp_log_info:
    last_minutes: 30
    data_directories:
      - /data/coordinator/gpseg-1
  register: gp_log

- name: After the fact, a given window, from the files of this segment host
  gpops.greenplum.gp_log_info:
    source: files
    since: "2026-12-05T02:50:00Z"
    until: "2026-12-05T03:30:00Z"
    data_directories: "{{ gp_segment_data_directories }}"
    min_severity: medium
  register: gp_log

- name: Show the chains
  ansible.builtin.debug:
    msg: "{{ gp_log.timeline }}"
"""

RETURN = r"""
source:
  description: Where the records came from, C(gp_log_system) or C(files).
  returned: always
  type: str
  sample: gp_log_system
fallback_reason:
  description: Why C(source=auto) read the files instead of the coordinator, or null.
  returned: always
  type: str
  sample: "timeout: connection to 127.0.0.1:5432 failed: connection refused"
window:
  description: The window scanned, C(since) and C(until) (ISO 8601 UTC) and C(seconds).
  returned: always
  type: dict
  sample: {since: "2026-12-05T09:00:00+00:00", until: "2026-12-05T09:15:00+00:00", seconds: 900.0}
events:
  description: The classified events, oldest first.
  returned: always
  type: list
  elements: dict
  sample:
    - time: "2026-12-05T09:06:07.568000+00:00"
      class: gdd_victim
      severity: high
      node: {content: -1, dbid: 1, host: mdw, role: p}
      pid: 21204
      session: {id: 50, command: 5}
      gxid: 13
      log_severity: ERROR
      message: 'canceling statement due to user request: "cancelled by global deadlock detector"'
      summary: 'coordinator: canceling statement due to user request: "cancelled by global deadlock detector" (session 50)'
      sources: [src/backend/utils/gdd/gddbackend.c, src/backend/tcop/postgres.c]
      emitted_at: "postgres.c:4041"
      chain: 3
      raw: '2026-12-05 09:06:07.568139 UTC,"gpadmin","gpops_test",p21204,...'
chains:
  description:
    - Linked events, oldest first; C(started_by) is the first event's summary, C(text) the
      classes in order, C(events) indexes into RV(events).
  returned: always
  type: list
  elements: dict
  sample:
    - id: 1
      started_by: "content 0: fault triggered, fault name:'finish_prepared_start_of_function' fault type:'panic'"
      severity: critical
      text: panic → crash → crash_reset → crash_recovery → restart_done → dtx_failure
      contents: [-1, 0]
      sessions: [363]
      gxids: [19]
      events: [0, 1, 2]
      signals: []
summary:
  description: Number of events by class and severity.
  returned: always
  type: dict
  sample: {gdd_victim: {high: 1}, crash: {critical: 2}}
timeline:
  description: Short lines for the play output, one per chain.
  returned: always
  type: list
  elements: str
  sample: ["3 log event(s), 1 chain(s)", "chain 1 [high] 2026-12-05T09:06:06+00:00: gdd_cycle → gdd_victim (started by: ...)"]
complete:
  description: False when a bound (max_lines, max_events, deadline) stopped the scan.
  returned: always
  type: bool
  sample: true
stats:
  description:
    - Lines read, records, records in the window, events, skipped (malformed) lines with up to 5
      examples, files read, unreadable files or directories, and why the scan stopped (or null).
  returned: always
  type: dict
  sample: {lines_read: 841, records: 703, records_in_window: 585, events: 69, skipped_lines: 0,
           skipped_examples: [], files: [], unreadable: [], stopped: null, complete: true}
"""

import os
import socket
import time

from ansible.module_utils.basic import missing_required_lib

from ansible_collections.gpops.greenplum.plugins.module_utils.collect import topology as catalog
from ansible_collections.gpops.greenplum.plugins.module_utils.analyse import log_events as logevents
from ansible_collections.gpops.greenplum.plugins.module_utils.collect import log_rows
from ansible_collections.gpops.greenplum.plugins.module_utils.collect.connection import (
    HAS_PSYCOPG, PSYCOPG_IMPORT_ERROR, GpConnectionError, connect)
from ansible_collections.gpops.greenplum.plugins.module_utils.common.module_base import gp_module


def _from_coordinator(p, scan, since, until):
    """Read gp_log_system into ``scan``; returns None, or why it could not."""
    if not HAS_PSYCOPG:
        return "psycopg (version 3) is not installed"
    budget = max(1.0, min(p["statement_timeout"] or 30.0, scan.deadline - time.time()))
    try:
        with connect(p, statement_timeout=budget) as conn:
            nodes = {}
            for s in catalog.segment_configuration(conn):
                if s.role == "p":
                    nodes[s.content] = {"content": s.content, "dbid": s.dbid, "host": s.hostname, "role": "p"}
            rows = log_rows.log_window_rows(conn, since, until, logevents.MESSAGE_PATTERN, p["max_lines"])
            history = log_rows.config_history_rows(conn, since, until, p["max_lines"])
    except GpConnectionError as exc:
        return str(exc)
    except Exception as exc:  # noqa: BLE001 - any server error makes the files the source
        return "reading gp_toolkit.gp_log_system failed: %s" % (str(exc).strip().splitlines() or ["?"])[0]
    for row in rows:
        seg = row[11] or ""
        content = int(seg[3:]) if seg.startswith("seg") and seg[3:].lstrip("-").isdigit() else None
        scan.add_row(row, nodes.get(content, {"content": content}))
    for row in history:
        scan.add_row(logevents.history_record(*row), dict(nodes.get(-1, {"content": -1}), table="gp_configuration_history"))
    if len(rows) >= p["max_lines"]:
        scan.stopped = "max_lines: %d rows read from gp_log_system, the rest was not read" % len(rows)
    return None


def _from_files(p, scan):
    host = p["host"] or socket.gethostname()
    for datadir in p["data_directories"]:
        node = logevents.node_of_datadir(datadir, host)
        files = logevents.log_files(datadir)
        if not files:
            reason = ("does not exist" if not os.path.exists(datadir) else
                      "is not readable" if not os.access(os.path.join(datadir, "log"), os.R_OK | os.X_OK)
                      else "has no log/*.csv files")
            scan.unreadable.append({"path": datadir, "error": "data directory %s" % reason})
            continue
        for path in files:
            scan.scan_file(path, node)
            if scan.stopped:
                return


def main():
    spec = dict(
        since=dict(type="str"), until=dict(type="str"), last_minutes=dict(type="float", default=15.0),
        source=dict(type="str", default="auto", choices=["auto", "coordinator", "files"]),
        data_directories=dict(type="list", elements="path", default=[]),
        host=dict(type="str"),
        signals=dict(type="list", elements="dict", default=[]),
        merge_events=dict(type="list", elements="dict", default=[]),
        min_severity=dict(type="str", default="info", choices=list(logevents.SEVERITIES)),
        max_lines=dict(type="int", default=2000000),
        max_events=dict(type="int", default=5000),
        deadline=dict(type="float", default=60.0),
    )
    module = gp_module(spec, needs_psycopg=False)
    p = module.params
    now = time.time()
    try:
        until = logevents.parse_when(p["until"], now) if p["until"] else now
    except ValueError as exc:
        module.fail_json(msg="until: %s" % exc)
    try:
        since = logevents.parse_when(p["since"], now) if p["since"] else until - p["last_minutes"] * 60.0
    except ValueError as exc:
        module.fail_json(msg="since: %s" % exc)
    if since >= until:
        module.fail_json(msg="since (%s) is not before until (%s): the window is empty"
                         % (logevents.iso(since), logevents.iso(until)))
    if p["source"] == "files" and not p["data_directories"]:
        module.fail_json(msg="source=files needs data_directories (the data directories whose "
                             "log/*.csv files to read)")

    scan = logevents.LogScan(since, until, p["max_lines"], now + p["deadline"], p["max_events"])
    source, fallback = None, None
    if p["source"] in ("auto", "coordinator"):
        why = _from_coordinator(p, scan, since, until)
        if why is None:
            source = "gp_log_system"
        elif p["source"] == "coordinator":
            if why == "psycopg (version 3) is not installed":
                module.fail_json(msg=missing_required_lib("psycopg (version 3)"), exception=PSYCOPG_IMPORT_ERROR)
            module.fail_json(msg="the coordinator's logs could not be read: %s" % why)
        elif not p["data_directories"]:
            module.fail_json(msg="the coordinator's logs could not be read (%s) and no data_directories "
                                 "were given to read the log files instead" % why)
        else:
            fallback = why
    if source is None:
        source = "files"
        _from_files(p, scan)
        if scan.unreadable and not scan.files:
            module.fail_json(msg="no log file could be read: %s" % "; ".join(
                "%s: %s" % (u["path"], u["error"]) for u in scan.unreadable),
                fallback_reason=fallback, stats=scan.stats())
        for u in scan.unreadable:
            module.warn("not read: %s: %s" % (u["path"], u["error"]))

    floor = logevents.SEVERITY_RANK[p["min_severity"]]
    events = logevents.merge(scan.events(), p["merge_events"])
    events = [e for e in events if logevents.SEVERITY_RANK.get(e.get("severity"), 0) >= floor]
    chains = logevents.chains(events, p["signals"])
    stats = scan.stats()
    if stats["stopped"]:
        module.warn("log scan incomplete: %s" % stats["stopped"])
    module.exit_json(
        changed=False, source=source, fallback_reason=fallback,
        window={"since": logevents.iso(since), "until": logevents.iso(until), "seconds": round(until - since, 3)},
        events=events, chains=chains, summary=logevents.summary(events),
        timeline=logevents.timeline_lines(events, chains), complete=stats["complete"], stats=stats)


if __name__ == "__main__":
    main()
