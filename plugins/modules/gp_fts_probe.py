#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: gpops.greenplum contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: gp_fts_probe
short_description: Ask Greenplum's FTS for a probe cycle now and report what it changed
description:
  - Calls C(gp_request_fts_probe_scan()) on the coordinator (dispatch mode). The call is
    synchronous, it waits for a whole new FTS probe cycle to start and finish, so when it
    returns the catalog shows FTS's verdict (Greenplum C(cdbfts.c), C(FtsNotifyProber)).
  - This is the safe first remedy when commits hang in C(SyncRep) because a mirror is gone
    and FTS has not acted yet. Once the mirror has been down longer than
    C(gp_fts_mark_mirror_down_grace_period), the probe marks it down, writes
    C(gp_configuration_history), switches its primary's synchronous replication off, and
    the waiting commits return. Inside the grace period the primary asks for retries and
    nothing changes.
  - The call is bounded by O(timeout), by default C(gp_fts_probe_timeout) x
    (C(gp_fts_probe_retries) + 1) plus a margin, read from the coordinator (Greenplum's
    defaults 20 s and 5 where a setting does not exist). A probe that does not finish in
    time (FTS paused, hung or busy) is reported, not waited on.
  - Returns C(gp_segment_configuration) before and after, the differences per dbid (role,
    status, mode) and the new C(gp_configuration_history) rows. C(changed) is true only
    when the catalog changed.
  - A cluster without mirrors is reported as such and not probed (FTS skips probing it,
    its log says C(skipping FTS probes due to no mirrors)).
version_added: 0.1.0
author:
  - gpops.greenplum contributors (@gpops)
extends_documentation_fragment:
  - gpops.greenplum.connection
options:
  timeout:
    description:
      - Seconds the probe call may take. Default computed from the coordinator's FTS
        settings as described above.
    type: float
  wait_for_grace:
    description:
      - When the probe changed nothing because a lost mirror is still inside its grace period,
        wait for that period to end and probe once more, if it ends within this many seconds.
        C(0) (the default) never waits.
      - The end is read from the primary's log (C(gp_toolkit.gp_log_system)); inside the grace
        period each probe makes the primary log C(requesting fts retry as mirror didn't connect
        yet but in grace period), with the walsender's disconnect time and the postmaster's start
        as detail (Greenplum C(gp_replication.c), C(is_probe_retry_needed)); the period ends
        C(gp_fts_mark_mirror_down_grace_period) seconds after the later of the two. Without
        such a line the first C(SyncRep) wait on that primary bounds it (exact when the mirror
        went away before that commit began to wait).
    type: float
    default: 0
attributes:
  check_mode:
    support: full
    description: Reports the current catalog and FTS settings and does not probe.
  diff_mode:
    support: none
    description: The module reports catalog changes in RV(changes), not as a diff.
seealso:
  - module: gpops.greenplum.gp_sync_replication
  - name: Greenplum FTS (gp_request_fts_probe_scan)
    description: Fault tolerance service and the on-demand probe.
    link: https://docs.vmware.com/en/VMware-Greenplum/7/greenplum-database/admin_guide-highavail-topics-g-detecting-a-failed-segment.html
notes:
  - FTS's own settings decide what the probe does; this module never changes them or the catalog.
  - Where no FTS process runs on the coordinator (a standby coordinator, Cloudberry built with
    external FTS), Greenplum returns from C(gp_request_fts_probe_scan()) at once without probing;
    SQL cannot tell that from a fast healthy cycle, so when the module runs on the coordinator
    host it looks for the C(ftsprobe process) in the process table (RV(fts_process_running)).
"""

EXAMPLES = r"""
- name: Let FTS mark a dead mirror down and release the commits waiting for it
  gpops.greenplum.gp_fts_probe:
    login_host: mdw
    login_user: gpadmin
  register: fts

- name: Show what FTS changed
  ansible.builtin.debug:
    var: fts_probe.changes
"""

RETURN = r"""
probed:
  description: Whether C(gp_request_fts_probe_scan()) was called.
  returned: always
  type: bool
  sample: true
fts_state:
  description:
    - C(probed) (the call finished a probe cycle), C(timeout) (no cycle finished within
      RV(probe_timeout)), C(error) (the call failed, see C(probe.error)), C(no_mirrors)
      (mirrorless cluster, not probed), C(check_mode) (not probed).
  returned: always
  type: str
  sample: probed
probe:
  description: The call's outcome; null when not probed.
  returned: always
  type: dict
  sample: {completed: true, seconds: 0.052, error: null}
probes:
  description: Every probe call of this run (two when it waited for a grace period), each like RV(probe).
  returned: when probed
  type: list
  elements: dict
  sample: [{completed: true, seconds: 4.41, error: null}, {completed: true, seconds: 0.05, error: null}]
grace:
  description:
    - After a finished probe, per content whose mirror the catalog still calls up and whose primary
      logged FTS retries (or has C(SyncRep) waiters); when the mirror went away, when the grace period
      ends (C(ends_at), C(seconds_left) at the time of reading; C(exact) false when bounded by the first
      C(SyncRep) wait), C(source) (C(log) or C(syncrep_wait)); C(waited_s) the seconds waited before the
      second probe (null when not waited). Null when not probed or the probe did not finish.
  returned: when probed
  type: dict
  sample: {grace_s: 30, log_error: null, waited_s: 27.3, contents: [{content: 0, source: log, exact: true,
           disconnected_at: "2026-12-05T09:05:55+00:00", accepting_since: "2026-12-05T09:05:25+00:00",
           ends_at: "2026-12-05T09:06:25+00:00", seconds_left: 26.3}]}
fts_process_running:
  description:
    - Whether the coordinator's C(ftsprobe process) runs, from the process table of this host
      (FTS is not listed in C(pg_stat_activity)); null when this host cannot tell (the
      coordinator runs elsewhere). Without it Greenplum returns from the call at once and
      nothing is probed.
  returned: always
  type: bool
  sample: true
probe_timeout:
  description: Seconds the call was allowed.
  returned: always
  type: float
  sample: 125.0
fts_settings:
  description: FTS settings read on the coordinator (seconds; retries a count), with C(source) per setting (C(server) or C(default)).
  returned: always
  type: dict
  sample: {gp_fts_probe_interval: 60, gp_fts_probe_timeout: 20, gp_fts_probe_retries: 5,
           gp_fts_mark_mirror_down_grace_period: 30, source: {gp_fts_probe_timeout: server}}
before:
  description: C(gp_segment_configuration) rows before the probe.
  returned: always
  type: list
  elements: dict
  sample: [{dbid: 5, content: 0, role: m, preferred_role: m, mode: s, status: u, port: 7005,
            hostname: sdw1, address: sdw1, datadir: /data/mirror/gpseg0}]
after:
  description: C(gp_segment_configuration) rows after the probe (same as RV(before) when not probed).
  returned: always
  type: list
  elements: dict
  sample: [{dbid: 5, content: 0, role: m, preferred_role: m, mode: n, status: d, port: 7005,
            hostname: sdw1, address: sdw1, datadir: /data/mirror/gpseg0}]
changes:
  description: Per dbid, the fields that changed (C([old, new])).
  returned: always
  type: list
  elements: dict
  sample: [{dbid: 2, content: 0, changes: {mode: [s, n]}},
           {dbid: 5, content: 0, changes: {status: [u, d], mode: [s, n]}}]
history:
  description: New C(gp_configuration_history) rows written during the probe.
  returned: always
  type: list
  elements: dict
  sample: [{time: "2026-11-21T05:46:06.4+00:00", dbid: 5,
            description: "FTS: update role, status, and mode for dbid 5 with contentid 0 to m, d, and n"}]
summary:
  description: Short human lines saying what happened.
  returned: always
  type: list
  elements: str
  sample: ["FTS probe cycle finished in 0.05 s", "dbid 5 (content 0): status u -> d, mode s -> n"]
server:
  description: Flavor and version of the coordinator.
  returned: always
  type: dict
  sample: {flavor: greenplum, major: 7, version: 7.0.0, version_num: 70000, pg_version: "12.12",
           version_string: "PostgreSQL 12.12 (Greenplum Database 7.0.0 build commit:0a7a3566) ..."}
"""

import time
import traceback

from ansible_collections.gpops.greenplum.plugins.module_utils.collect import topology as catalog
from ansible_collections.gpops.greenplum.plugins.module_utils.act import fts_probe
from ansible_collections.gpops.greenplum.plugins.module_utils.analyse.hang_diagnosis import fts_process_running
from ansible_collections.gpops.greenplum.plugins.module_utils.collect.connection import (
    GpConnectionError, NotGreenplumError, connect, run_with_deadline, server_info)
from ansible_collections.gpops.greenplum.plugins.module_utils.common.module_base import gp_module


def _change_line(change):
    if change.get("added") or change.get("removed"):
        return "dbid %d (content %d): %s" % (change["dbid"], change["content"],
                                             "added" if change.get("added") else "removed")
    return "dbid %d (content %d): %s" % (change["dbid"], change["content"], ", ".join(
        "%s %s -> %s" % (f, old, new) for f, (old, new) in sorted(change["changes"].items())))


def _grace_lines(grace, settings, waited, bound):
    """What the primaries' logs (or the first SyncRep waits) say about when each lost
    mirror's grace period ends, and whether this run waited for it."""
    lines = []
    period = grace["grace_s"]
    for w in grace["contents"]:
        if w["source"] == "log":
            head = "content %d: mirror lost at %s (walsender disconnect, the primary's FTS log line)" % (
                w["content"], w["disconnected_at"] or "primary start %s" % w["accepting_since"])
        else:
            head = ("content %d: no FTS retry line in the log%s; bounded by the first SyncRep wait at %s"
                    % (w["content"], " (%s)" % grace["log_error"] if grace["log_error"] else "",
                       w["first_wait_at"]))
        if w["seconds_left"] > 0:
            lines.append("%s; FTS's grace period (%d s) ends %sat %s, in %.0f s: until then FTS leaves "
                         "the mirror up and commits wait" % (head, period, "" if w["exact"] else "at the latest ",
                                                             w["ends_at"], w["seconds_left"]))
        else:
            lines.append("%s; FTS's grace period (%d s) ended at %s" % (head, period, w["ends_at"]))
    pending = [w for w in grace["contents"] if w["seconds_left"] > 0]
    if pending and waited is None:
        lines.append("not waited for the grace period (it ends in %.0f s; wait_for_grace %.0f s): FTS "
                     "marks the mirror down on its first probe after %s (every gp_fts_probe_interval, %d s)"
                     % (max(w["seconds_left"] for w in pending), bound,
                        max(w["ends_at"] for w in pending), settings["gp_fts_probe_interval"]))
    return lines


def main():
    module = gp_module(dict(timeout=dict(type="float"), wait_for_grace=dict(type="float", default=0)))
    p = module.params

    try:
        conn = connect(p)
        server = server_info(conn)
        before = catalog.segment_configuration(conn)
        settings = fts_probe.fts_settings(conn)
        last = fts_probe.history_last_time(conn)
    except (GpConnectionError, NotGreenplumError) as exc:
        module.fail_json(msg=str(exc))
    except Exception as exc:
        module.fail_json(msg="reading the coordinator's catalog failed: %s" % exc,
                         exception=traceback.format_exc())
    timeout = p["timeout"] or fts_probe.probe_timeout(settings)
    coordinator = catalog.coordinator(before)
    fts_running = fts_process_running(coordinator.port, coordinator.datadir) if coordinator else None
    result = dict(changed=False, probed=False, probe=None, probe_timeout=timeout,
                  fts_process_running=fts_running, fts_settings=settings, server=server.as_dict(),
                  before=[s.as_dict() for s in before], after=[s.as_dict() for s in before],
                  changes=[], history=[], summary=[])

    if not catalog.mirrors(before) or module.check_mode:
        conn.close()
    if not catalog.mirrors(before):
        result.update(fts_state="no_mirrors", summary=[
            "no mirrors: FTS does not probe a mirrorless cluster; nothing to probe"])
        module.exit_json(**result)
    if module.check_mode:
        result.update(fts_state="check_mode", summary=[
            "check mode: not probed; FTS would wait up to %.0f s for a cycle" % timeout])
        module.exit_json(**result)

    def probe_once(conn):
        """One probe; the server's time just before it (the retry lines it makes are newer)."""
        started = fts_probe.server_now(conn)
        # The server-side statement_timeout ends the call; the client-side deadline
        # covers a coordinator that stops answering altogether.
        ok, probe = run_with_deadline(lambda: fts_probe.request_probe(conn, timeout),
                                      timeout + p["connect_timeout"] + 5)
        if ok:
            conn.close()  # else its thread still waits on it; the process exit ends both
        else:
            probe = {"completed": False, "seconds": timeout, "error": probe}
        return started, probe

    def read_after(started):
        """The catalog after a probe and the grace windows of mirrors it left up."""
        with connect(p) as after_conn:
            after = catalog.segment_configuration(after_conn)
            up = {s.content for s in catalog.mirrors(after) if s.status == "u"}
            grace = fts_probe.grace_windows(after_conn, started, settings["gp_fts_mark_mirror_down_grace_period"], up)
            return after, grace

    try:
        started, probe = probe_once(conn)
        probes = [probe]
        after, grace = read_after(started) if probe["completed"] else (None, None)
        pending = [w for w in (grace or {}).get("contents", []) if w["seconds_left"] > 0]
        wait = max([w["seconds_left"] for w in pending] or [0]) + fts_probe.GRACE_MARGIN_S
        waited = None
        if pending and 0 < p["wait_for_grace"] and wait <= p["wait_for_grace"]:
            time.sleep(wait)
            waited = round(wait, 1)
            started, probe = probe_once(connect(p))
            probes.append(probe)
        with connect(p) as after_conn:
            after = catalog.segment_configuration(after_conn)
            history = fts_probe.history_since(after_conn, last)
    except Exception as exc:
        module.fail_json(msg="the probe ran (%s) but re-reading the catalog failed: %s" % (probe, exc),
                         probed=True, probe=probe)
    changes = fts_probe.catalog_diff(before, after)
    state = "probed" if probe["completed"] else (
        "timeout" if (probe["error"] or "").startswith("timeout") else "error")
    lines = []
    for n, one in enumerate(probes):
        lines.append(("FTS probe cycle finished in %.2f s" % one["seconds"] if one["completed"]
                      else "FTS probe did not finish: %s" % one["error"])
                     + (" (again, after waiting %.0f s for the grace period to end)" % waited if n else ""))
        if n == 0 and grace:
            lines += _grace_lines(grace, settings, waited, p["wait_for_grace"])
    lines += [_change_line(c) for c in changes]
    if probe["completed"] and not changes and fts_running is False:
        lines.append("no ftsprobe process of the coordinator on this host: Greenplum then returns "
                     "from gp_request_fts_probe_scan() at once without probing")
    elif probe["completed"] and not changes:
        lines.append("catalog unchanged (a mirror is marked down only after "
                     "gp_fts_mark_mirror_down_grace_period, %d s%s, from its disconnect)"
                     % (settings["gp_fts_mark_mirror_down_grace_period"],
                        "" if settings["source"]["gp_fts_mark_mirror_down_grace_period"] == "server"
                        else " by default"))
    if not probe["completed"]:
        module.warn(lines[-1] if len(probes) > 1 else lines[0])
    if grace is not None:
        grace = dict(grace, waited_s=waited)
    result.update(changed=bool(changes), probed=True, probe=probe, probes=probes, fts_state=state,
                  grace=grace, after=[s.as_dict() for s in after], changes=changes, history=history,
                  summary=lines)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
