# -*- coding: utf-8 -*-
# Copyright: gpops.greenplum contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A health check's findings as OpenMetrics text, one file per cluster for
node_exporter's textfile collector (``gp_openmetrics`` writes it).

``render(hang_info, cluster, log_info=None) -> str``: gauges only, every sample labelled
``cluster``; ends with ``# EOF``. Pure: the same input gives the same text (the time is the
snapshot's, not the clock's), so rewriting an unchanged file changes nothing.

Metrics (prefix ``gpops_``): ``up`` (the coordinator answered), ``verdict`` (one-hot by
``verdict``), ``findings`` (by ``class`` and ``severity``), ``sessions_waiting`` (distributed
sessions waiting on a lock or for synchronous replication), ``longest_wait_seconds``,
``segments_down``, ``segments_not_in_sync`` (contents whose pair is not in sync),
``gdd_enabled`` and ``gdd_period_seconds`` (-1 when unknown), ``snapshot_timestamp_seconds``,
and from ``gp_log_info``: ``log_events`` (by ``class`` and ``severity``) and ``log_chains``
(by ``severity``).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import re

PREFIX = "gpops_"
VERDICTS = ("healthy", "degraded", "hung")


def _escape(value):
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels):
    return "{%s}" % ",".join('%s="%s"' % (k, _escape(v)) for k, v in labels)


def _number(value):
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return repr(round(value, 3))
    return str(value)


def _epoch(iso):
    try:
        when = datetime.datetime.fromisoformat(str(iso).replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.timezone.utc)
    return when.timestamp()


def _waits(hang_info):
    """(distributed sessions waiting, longest wait in seconds)."""
    snapshot = hang_info.get("snapshot") or {}
    sessions = set()
    for b in snapshot.get("backends") or []:
        if b.get("sess_id", -1) > 0 and (b.get("waiting") or b.get("wait_event_type") == "Lock"
                                         or b.get("wait_event") == "SyncRep"):
            sessions.add(b["sess_id"])
    longest = 0.0
    for tree in (hang_info.get("analysis") or {}).get("blocking_trees") or []:
        longest = max(longest, tree.get("longest_wait_s") or 0.0)
    for f in hang_info.get("findings") or []:
        ev = f.get("evidence") or {}
        for key in ("longest_wait_seconds", "longest_wait_s"):
            if isinstance(ev.get(key), (int, float)):
                longest = max(longest, float(ev[key]))
    return len(sessions), longest


def render(hang_info, cluster, log_info=None):
    cl = ("cluster", cluster)
    out = []

    def metric(name, help_text, samples):
        out.append("# HELP %s%s %s" % (PREFIX, name, help_text))
        out.append("# TYPE %s%s gauge" % (PREFIX, name))
        for labels, value in samples:
            out.append("%s%s%s %s" % (PREFIX, name, _labels([cl] + list(labels)), _number(value)))

    snapshot = hang_info.get("snapshot") or {}
    findings = hang_info.get("findings") or []
    segments = snapshot.get("segments") or []
    metric("up", "1 when the coordinator answered the health check.",
           [((), "-1" not in (snapshot.get("unreachable") or {}))])
    verdict = hang_info.get("verdict")
    metric("verdict", "The health check's verdict (one-hot).",
           [((("verdict", v),), v == verdict) for v in VERDICTS])
    counts = {}
    for f in findings:
        key = (f["class"], f["severity"])
        counts[key] = counts.get(key, 0) + 1
    metric("findings", "Findings of the health check by class and severity.",
           [((("class", c), ("severity", s)), n) for (c, s), n in sorted(counts.items())])
    waiting, longest = _waits(hang_info)
    metric("sessions_waiting", "Distributed sessions waiting on a lock or for synchronous replication.",
           [((), waiting)])
    metric("longest_wait_seconds", "The longest lock or replication wait seen.", [((), float(longest))])
    metric("segments_down", "Nodes marked down in gp_segment_configuration.",
           [((), sum(1 for s in segments if s.get("status") == "d"))])
    metric("segments_not_in_sync", "Contents whose primary and mirror are not in sync.",
           [((), len({s["content"] for s in segments
                      if s.get("content", -1) >= 0 and s.get("mode") == "n"}))])
    gdd = next((f.get("evidence") or {} for f in findings if f["class"] == "gdd_status"), {})
    metric("gdd_enabled", "1 when the global deadlock detector is on, 0 off, -1 unknown.",
           [((), -1 if gdd.get("enabled") is None else int(bool(gdd.get("enabled"))))])
    metric("gdd_period_seconds", "gp_global_deadlock_detector_period (-1 unknown).",
           [((), gdd.get("period_s") if gdd.get("period_s") is not None else -1)])
    taken = _epoch(snapshot.get("taken_at")) if snapshot.get("taken_at") else None
    metric("snapshot_timestamp_seconds", "When the health check's snapshot was taken.",
           [((), float(taken) if taken is not None else -1)])
    if log_info is not None:
        per = []
        for cls, by_sev in sorted((log_info.get("summary") or {}).items()):
            for sev, n in sorted(by_sev.items()):
                per.append(((("class", cls), ("severity", sev)), n))
        metric("log_events", "Greenplum log events of the timeline window by class and severity.", per)
        chains = {}
        for c in log_info.get("chains") or []:
            chains[c["severity"]] = chains.get(c["severity"], 0) + 1
        metric("log_chains", "Incident chains in the timeline window by their highest severity.",
               [((("severity", s),), n) for s, n in sorted(chains.items())])
    out.append("# EOF")
    return "\n".join(out) + "\n"


def file_name(cluster):
    """``gpops_<cluster>.prom`` (the textfile collector reads ``*.prom``)."""
    return "gpops_%s.prom" % (re.sub(r"[^A-Za-z0-9_.-]+", "_", str(cluster)).strip("_") or "cluster")
