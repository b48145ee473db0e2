# -*- coding: utf-8 -*-
# Copyright: gpops.greenplum contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Hang reports: one versioned JSON document and its Markdown rendering.

Pure functions, no I/O (``gp_report`` writes the files). The JSON document is
the record: what ``gp_hang_info`` found (findings, wait-for graph, the raw
snapshot taken before any action, the extra facts), what was done
(``actions``) and what was left afterwards (``after``: a later
``gp_hang_info`` result). The Markdown is rendered from that document only,
so both always say the same thing.

JSON schema, version ``SCHEMA_VERSION`` (fields are only ever added within a
version; a removal or a change of meaning bumps it), published as JSON Schema in
``docs/report-schema-v1.json``:

- ``schema_version`` (int), ``generator`` (str), ``cluster`` (str: a label for
  the cluster, e.g. the inventory host), ``taken_at`` (ISO 8601, UTC),
  ``server`` (flavor, version), ``verdict`` (``healthy`` | ``degraded`` |
  ``hung``, ``verdict_of``), ``highest_severity`` (a severity or null), ``counts`` (severity
  -> number of findings).
- ``findings``: list of {``class``, ``severity``, ``summary``, ``evidence``,
  ``remedy``} (``triage.Finding``), most severe first.
- ``graph``: {``nodes``: [{``id``, ``label``, ``roles``}], ``edges``: [{``from``,
  ``to``, ``label``, ``solid``, ``cycle``}]}: the wait-for graph, waiter ->
  holder; roles among ``cycle``, ``root``, ``victim``, ``prepared``.
- ``actions``: list of {``action``, ``target``, ``changed``, ``result``, ...} as
  the acting modules return them (empty for a read-only run).
- ``after``: null, or {``taken_at``, ``verdict``, ``findings``} from a triage
  run after the actions.
- ``snapshot``, ``facts``, ``analysis``: the raw evidence (``ClusterSnapshot``,
  ``triage.ClusterFacts`` and ``analysis.Analysis`` as dicts); a ``waits``-scoped
  snapshot holds the rows the diagnosis read and ``counts`` of every row
  (docs/collection.md), so the report is bounded by the waits, not the cluster's size.
- ``evidence`` (optional, added in 0.2.0): present when ``gp_hang_info`` with ``evidence: full``
  streamed every raw row (``{path, rows}`` or ``{path: null, error}``).
- ``timeline`` (optional, added in 0.2.0): null, or the log events of the minutes before
  (``gp_log_info``): {``window``, ``source``, ``complete``, ``stopped``, ``summary``,
  ``chains``, ``events``} (``timeline_of``), rendered as the Markdown "Timeline" section.

A timeline alone (``playbooks/postmortem.yml``): ``build_timeline_report(log_info,
cluster)`` and ``render_timeline_markdown(doc)``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import re

from ansible_collections.gpops.greenplum.plugins.module_utils.plan.reasons import Reason, message

SCHEMA_VERSION = 1
GENERATOR = "gpops.greenplum"
_SEVERITIES = ("critical", "high", "medium", "low", "info")


# Classes that say the cluster runs with less redundancy or watch than it should while
# nothing waits because of them (a content served without its mirror, a mirror
# resynchronising, FTS not running): at high severity they still make the cluster
# degraded, not hung. Critical always means hung (e.g. segment_down for a double fault).
DEGRADED_CLASSES = ("segment_down", "mirror_not_in_sync", "fts_not_running", "sync_replication_off")


def verdict_of(findings):
    """``hung`` if a finding is critical, or high of a class where something waits or is
    stuck; ``degraded`` if any other finding is high, medium or low (a content running
    without its mirror is degraded: its commits do not wait); else ``healthy`` (info
    findings are facts, not problems). ``health_check.yml`` fails on severity, not on
    the verdict."""
    if any(f["severity"] == "critical" or (f["severity"] == "high" and f.get("class") not in DEGRADED_CLASSES)
           for f in findings):
        return "hung"
    if any(f["severity"] in ("high", "medium", "low") for f in findings):
        return "degraded"
    return "healthy"


def highest_severity(findings):
    """The most severe finding's severity, or None."""
    for severity in _SEVERITIES:
        if any(f["severity"] == severity for f in findings):
            return severity
    return None


def severity_counts(findings):
    """Severity -> number of findings, every severity present."""
    return {s: sum(1 for f in findings if f["severity"] == s) for s in _SEVERITIES}


def finding_lines(findings):
    """``[severity] class: summary``, one line per finding."""
    return ["[%s] %s: %s" % (f["severity"], f["class"], f["summary"]) for f in findings]


def build_report(hang_info, cluster, actions=None, after=None, log_info=None):
    """The JSON report document (a dict) from a ``gp_hang_info`` result.

    ``hang_info``: dict with ``findings``, ``snapshot``, ``facts``, ``analysis`` (as
    ``gp_hang_info`` returns them); the graph is drawn from ``analysis``. ``cluster``: label.
    ``actions``: list of dicts (what was done); a plain sentence (as the stale-lock
    modules return their actions) becomes ``{"action": sentence}``. ``after``: optional later
    ``gp_hang_info`` result. ``log_info``: optional ``gp_log_info`` result (the timeline).
    Raises KeyError when ``hang_info`` lacks ``findings`` or ``snapshot``."""
    findings = list(hang_info["findings"])
    snapshot = hang_info["snapshot"]
    doc = {
        "schema_version": SCHEMA_VERSION,
        "generator": GENERATOR,
        "cluster": str(cluster),
        "taken_at": snapshot.get("taken_at"),
        "server": snapshot.get("server") or {},
        # gp_hang_info lists at most bounds.TOP_LIMIT findings of a class: its verdict
        # and counts are of every finding, so they win over a recount of the listed ones.
        "verdict": hang_info.get("verdict") or verdict_of(findings),
        "highest_severity": hang_info.get("highest_severity") or highest_severity(findings),
        "counts": hang_info.get("counts") or severity_counts(findings),
        "findings": findings,
        "graph": wait_for_graph(hang_info.get("analysis") or {}),
        "actions": [a if isinstance(a, dict) else {"action": str(a)} for a in actions or []],
        "after": None,
        "snapshot": snapshot,
        "facts": hang_info.get("facts") or {},
        "analysis": hang_info.get("analysis") or {},
    }
    if hang_info.get("evidence") is not None:
        doc["evidence"] = hang_info["evidence"]
    if hang_info.get("findings_omitted"):  # only then: schema 1 documents stay as they were
        doc["findings_omitted"] = dict(hang_info["findings_omitted"])
    if log_info is not None:
        doc["timeline"] = timeline_of(log_info)
    if after is not None:
        doc["after"] = {"taken_at": after["snapshot"].get("taken_at"),
                        "verdict": verdict_of(after["findings"]),
                        "findings": list(after["findings"])}
    return doc


def report_basename(doc):
    """``gp-hang-<cluster>-<taken_at as YYYYmmddTHHMMSS>``, safe as a file name; the same
    triage gives the same name, so writing its report again changes nothing."""
    stamp = re.sub(r"[^0-9T]", "", str(doc.get("taken_at") or ""))[:15]
    cluster = re.sub(r"[^A-Za-z0-9_.-]+", "_", doc["cluster"]).strip("_") or "cluster"
    return "gp-hang-%s-%s" % (cluster, stamp or "unknown")


def to_json(doc):
    """Stable text: sorted keys, two-space indent, trailing newline."""
    return json.dumps(doc, indent=2, sort_keys=True, default=str) + "\n"


def summary_lines(doc):
    """Short lines for the play output: the verdict, then one line per finding."""
    lines = ["%s: %s (%s)" % (doc["cluster"], doc["verdict"].upper(),
                              ", ".join("%d %s" % (n, s) for s, n in doc["counts"].items() if n)
                              or "no findings")]
    lines += finding_lines(doc["findings"])
    lines += ["%s: %d more findings of this class are not listed" % (cls, n)
              for cls, n in sorted((doc.get("findings_omitted") or {}).items())]
    if doc["actions"]:
        lines.append("done: " + "; ".join(_action_text(a) for a in doc["actions"]))
    if doc["after"] is not None:
        lines.append("after: %s" % doc["after"]["verdict"])
    return lines


# -------------------------------------------------------------- wait-for graph


def _where(content):
    return "coordinator" if content == -1 else "seg %s" % content


def _edge_node(edge, side):
    """Node id of one end of an analysis graph edge: the distributed session (``s``),
    the prepared transaction when no backend holds the lock (``p``), else the gxid."""
    gxid, session = edge[side], edge["%s_sessionid" % side]
    if side == "holder" and edge.get("holder_is_prepared"):
        return "p%s" % gxid
    return "s%s" % session if session and session > 0 else "g%s" % gxid


def _info_node(info):
    if info["kind"] == "session":
        return "s%s" % info["sess_id"]
    if info["kind"] == "prepared_xact":
        return "p%s" % info["gxid"]
    return "b%s_%s" % (info["content"], info["pid"])


def _info_label(info):
    if info.get("kind") == "prepared_xact":
        return "prepared gxid %s\ncontent %s · %.0f s old%s" % (
            info["gxid"], ", ".join(str(c) for c in info["contents"]), info.get("age_s") or 0.0,
            "\nQD pid %s committing" % info["coordinator_pid"] if info.get("coordinator_pid") else "")
    if info.get("kind") == "backend":
        return "pid %s on %s\n%s" % (info["pid"], _where(info["content"]), info.get("state") or "")
    lines = ["session %s" % info.get("sess_id"), " · ".join(
        "%s %s" % (name, info[key]) for name, key in (("QD pid", "coordinator_pid"), ("gxid", "gxid"))
        if info.get(key) is not None)]
    if info.get("state"):
        age = info.get("state_age_s")
        lines.append("%s%s" % (info["state"], " %.0f s" % age if age is not None else ""))
    return "\n".join(lines)


def wait_for_graph(analysis):
    """The wait-for graph to draw, from ``analysis.Analysis.as_dict()``.

    Nodes are distributed sessions (``s<sess_id>``), prepared transactions
    (``p<gxid>``), other backends (``b<content>_<pid>``); edges go waiter -> holder,
    one per node and lock (``label``: segment, lock type and mode, relation),
    from the deadlock cycles (``cycle`` true), the GDD reduction log, the edges left
    out of the GDD graph, and the blocking trees (lock-queue waits included).
    Returns {``nodes``: [{id, label, roles}], ``edges``: [{from, to, label, solid,
    cycle}]}, in a stable order."""
    nodes, edges = {}, {}

    def node(node_id, label=None):
        entry = nodes.setdefault(node_id, {"id": node_id, "label": None, "roles": []})
        if label and not entry["label"]:
            entry["label"] = label
        return entry

    def add_edge(src, dst, content, label, solid=True, cycle=False):
        node(src)
        node(dst)
        key = (src, dst, content)
        if key in edges:
            edges[key]["cycle"] = edges[key]["cycle"] or cycle
            return
        edges[key] = {"from": src, "to": dst, "label": "%s: %s" % (_where(content), label),
                      "solid": solid, "cycle": cycle}

    def lock_text(locktype, mode, relation_name):
        return "%s %s%s" % (locktype, mode, " on %s" % relation_name if relation_name else "")

    for d in analysis.get("deadlocks", []):
        for v in d["vertices"]:
            node("s%s" % v["sess_id"], _info_label(dict(v, kind="session")))["roles"].append("cycle")
        for e in d["edges"]:
            add_edge(_edge_node(e, "waiter"), _edge_node(e, "holder"), e["content"],
                     lock_text(e["locktype"], e["mode"], e.get("relation_name")),
                     e["solid"], cycle=True)
    for v in analysis.get("victims", []):
        node("s%s" % v["sess_id"])["roles"].append("victim")
    graph = analysis.get("graph") or {}
    for item in list(graph.get("reduction", [])) + list(graph.get("dropped_edges", [])):
        e = item["edge"]
        add_edge(_edge_node(e, "waiter"), _edge_node(e, "holder"), e["content"],
                 lock_text(e["locktype"], e["mode"], e.get("relation_name")), e["solid"])
    for tree in analysis.get("blocking_trees", []):
        infos = [tree["root"]] + list(tree["waiters"])
        by_label = {i["label"]: _info_node(i) for i in infos}
        for info in infos:
            node(_info_node(info), _info_label(info))
        node(_info_node(tree["root"]))["roles"].append("root")
        for waiter in tree["waiters"]:
            for w in waiter["waits"]:
                text = lock_text(w["locktype"], w["mode"], w.get("relation_name"))
                if w.get("kind") == "queued_behind":
                    text += " (queued behind)"
                add_edge(_info_node(waiter), by_label.get(w["blocked_by"], w["blocked_by"]),
                         w["content"], text)
    for entry in nodes.values():
        if entry["id"].startswith("p"):
            entry["roles"].append("prepared")
        entry["roles"] = sorted(set(entry["roles"]))
        entry["label"] = entry["label"] or (
            "session %s" % entry["id"][1:] if entry["id"].startswith("s") else entry["id"])
    return {"nodes": sorted(nodes.values(), key=lambda n: n["id"]),
            "edges": sorted(edges.values(), key=lambda e: (e["from"], e["to"], e["label"]))}


# ----------------------------------------------------------------- Mermaid


def _mermaid_text(text):
    # Mermaid labels are quoted; quotes and angle brackets become entity codes.
    return (str(text).replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;")
            .replace("\n", "<br/>"))


_CLASS_DEFS = (
    "classDef cycle fill:#fdd,stroke:#c00,stroke-width:2px",
    "classDef root fill:#ffd8a8,stroke:#d9480f,stroke-width:3px",
    "classDef victim fill:#fff,stroke:#c00,stroke-width:3px,stroke-dasharray:4 2",
    "classDef prepared fill:#e7f5ff,stroke:#1971c2",
)


def render_mermaid(graph):
    """A ``flowchart LR``: one node per distributed transaction or session, an edge
    waiter -> holder per lock wait, labelled with the segment and the lock; dotted
    edges (locks that may be released before the holder's transaction ends) drawn
    dotted; cycle edges thick red; cycle, root, victim and prepared-transaction
    nodes styled by class."""
    ids = {}
    lines = ["flowchart LR"]
    for i, node in enumerate(graph.get("nodes", [])):
        ids[node["id"]] = "n%d" % i
        lines.append('  n%d["%s"]' % (i, _mermaid_text(node["label"])))
    cycle_links = []
    link = 0
    for edge in graph.get("edges", []):
        if edge["from"] not in ids or edge["to"] not in ids:
            continue
        arrow = '-- "%s" -->' if edge.get("solid", True) else '-. "%s" .->'
        lines.append("  %s %s %s" % (ids[edge["from"]], arrow % _mermaid_text(edge["label"]),
                                     ids[edge["to"]]))
        if edge.get("cycle"):
            cycle_links.append(str(link))
        link += 1
    if not ids:
        lines.append('  empty["no lock waits"]')
    lines.extend("  " + c for c in _CLASS_DEFS)
    for role in ("cycle", "root", "prepared", "victim"):
        members = [ids[n["id"]] for n in graph.get("nodes", []) if role in n.get("roles", ())]
        if members:
            lines.append("  class %s %s" % (",".join(members), role))
    if cycle_links:
        lines.append("  linkStyle %s stroke:#c00,stroke-width:3px" % ",".join(cycle_links))
    return "\n".join(lines)


# ---------------------------------------------------------------- Markdown


def _cell(value, limit=120):
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        value = ", ".join(str(v) for v in value)
    elif isinstance(value, dict):
        value = ", ".join("%s=%s" % (k, v) for k, v in value.items())
    text = str(value).replace("|", "\\|").replace("\n", " ")
    return text if limit is None or len(text) <= limit else text[:limit - 3] + "..."


def _table(rows):
    keys = []
    for row in rows:
        keys.extend(k for k in row if k not in keys)
    out = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    out += ["| " + " | ".join(_cell(row.get(k)) for k in keys) + " |" for row in rows]
    return out


def _evidence(evidence):
    out = []
    tables = []
    for key, value in evidence.items():
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            tables.append((key, value))
        elif isinstance(value, dict) and value and all(not isinstance(v, (dict, list))
                                                       for v in value.values()):
            tables.append((key, [value]))
        else:
            out.append("- %s: %s" % (key, _cell(value, None) if value not in (None, [], {}) else "-"))
    for key, rows in tables:
        out += ["", "%s:" % key, ""] + _table(rows)
    return out


def _remedy(remedy):
    out = ["**Remedy:** %s" % remedy.get("text", "")]
    offered = [("module", remedy.get("module")), ("role", remedy.get("role")),
               ("playbook", remedy.get("playbook"))]
    offered = ["%s `%s`" % (kind, name) for kind, name in offered if name]
    if offered:
        out.append("This collection offers: %s." % ", ".join(offered))
    variables = remedy.get("variables") or {}
    if variables:
        out.append("Variables: %s." % ", ".join("`%s: %s`" % (k, json.dumps(v))
                                                for k, v in variables.items()))
    return out


_TARGET_KEYS = (("content", "content"), ("dbid", "dbid"), ("pid", "pid"), ("sess_id", "session"),
                ("gxid", "gxid"), ("gid", "gid"))


def _action_text(action):
    """``<action> <target>`` then ``(changed)`` and ``: <result>``; the target is the
    action's ``target`` or, as acting modules report it, its content/dbid/pid/session/gxid/gid."""
    what = action.get("action") or action.get("module") or "action"
    target = action.get("target") or " ".join(
        "%s %s" % (label, action[key]) for key, label in _TARGET_KEYS
        if action.get(key) is not None)
    text = "%s %s" % (what, target) if target else str(what)
    if "changed" in action:
        text += " (changed)" if action["changed"] else " (no change)"
    if action.get("result"):
        text += ": %s" % action["result"]
    code = _reason_code(action.get("guard_failed")) or _reason_code(action.get("reason"))
    if code is not None:  # a step of the executor: the code, and its message made from the facts
        facts = dict(action.get("facts") or {}, **(action.get("guard") or {}))
        text += " [%s] (%s)" % (code.value, message(code, **facts))
    return text


def _reason_code(value):
    """The ``reasons.Reason`` named by ``value``, or None (free text, or nothing)."""
    try:
        return Reason(value) if isinstance(value, str) else None
    except ValueError:
        return None


def render_markdown(doc, json_name=None):
    """The report for people, from the JSON document ``doc`` (``build_report``).
    ``json_name``: file name of the JSON report, cited as the raw evidence."""
    findings = doc["findings"]
    problems = [f for f in findings if f["severity"] != "info"]
    facts = [f for f in findings if f["severity"] == "info"]
    server = doc.get("server") or {}
    out = ["# Greenplum hang report: %s: %s" % (doc["cluster"], doc["verdict"].upper()), "",
           "- taken at: %s" % doc["taken_at"],
           "- server: %s" % (server.get("version_string") or server.get("version")
                             or _cell(server) or "unknown"),
           "- snapshot source: %s" % doc["snapshot"].get("source", "unknown"),
           "- report schema: %d" % doc["schema_version"], "", "## What hung", ""]
    if problems:
        out += ["- **%s** `%s`: %s" % (f["severity"].upper(), f["class"], f["summary"])
                for f in problems]
    else:
        out.append("Nothing: no finding above info.")
    out += ["- `%s`: %d more findings of this class are not listed (the report lists the first of each"
            " class; see docs/collection.md, \"The size bound\")" % (cls, n)
            for cls, n in sorted((doc.get("findings_omitted") or {}).items())]
    out += [""] + ["- info `%s`: %s" % (f["class"], f["summary"]) for f in facts]
    out += ["", "## Why, with evidence", ""]
    for n, f in enumerate(problems, 1):
        out += ["### %d. %s (%s)" % (n, f["class"], f["severity"]), "", f["summary"], ""]
        out += _evidence(f["evidence"]) + [""] + _remedy(f["remedy"]) + [""]
    if not problems:
        out += ["No lock waits, replication waits, unreachable nodes or stuck transactions.", ""]
    out += ["## Wait-for graph", "",
            "Arrows go from the waiting transaction to the one it waits for, labelled with the "
            "segment and the lock. Red thick edges form a deadlock cycle; orange nodes are root "
            "blockers; a dashed red border marks the victim; dotted arrows are locks that may be "
            "released before the holder's transaction ends.", "",
            "```mermaid", render_mermaid(doc["graph"]), "```", ""]
    if doc.get("timeline") is not None:
        out += render_timeline(doc["timeline"])
    out += ["## What was done", ""]
    if doc["actions"]:
        out += ["- " + _action_text(a) for a in doc["actions"]] + ["", "Details:", ""]
        out += _table(doc["actions"])
    else:
        out.append("Nothing: this run changed nothing.")
    out += ["", "## What is left", ""]
    after = doc.get("after")
    if after is None:
        out.append("Not re-checked after the actions: every finding above still stands." if
                   doc["actions"] else "Every finding above (nothing was done).")
    else:
        left = [f for f in after["findings"] if f["severity"] != "info"]
        out.append("Re-checked at %s: %s." % (after["taken_at"], after["verdict"]))
        out += ["- **%s** `%s`: %s" % (f["severity"].upper(), f["class"], f["summary"])
                for f in left]
    out += ["", "## Raw evidence", "",
            "The snapshot taken before any action (locks, wait edges, sessions, segments, "
            "prepared transactions), the extra facts and the analysis are in %s under "
            "`snapshot`, `facts` and `analysis`." % (
                "`%s`" % json_name if json_name else "the JSON report"), ""]
    return "\n".join(out)


# ---------------------------------------------------------------- timeline

TIMELINE_EVENTS = 300   # events kept in a report (the chains name what started each)


def timeline_of(log_info):
    """The report's ``timeline`` from a ``gp_log_info`` result: its window, source,
    completeness, summary and chains, and up to ``TIMELINE_EVENTS`` events (chained ones
    first, then the most severe) without their raw records."""
    events = list(log_info.get("events") or [])
    keep = sorted(range(len(events)), key=lambda i: (events[i].get("chain") is None,
                                                     _SEVERITIES.index(events[i].get("severity", "info"))))
    keep = sorted(keep[:TIMELINE_EVENTS])
    stats = log_info.get("stats") or {}
    return {
        "window": log_info.get("window") or {}, "source": log_info.get("source"),
        "complete": log_info.get("complete", True), "stopped": stats.get("stopped"),
        "skipped_lines": stats.get("skipped_lines", 0), "summary": log_info.get("summary") or {},
        "chains": [{k: v for k, v in c.items() if k != "events"} for c in log_info.get("chains") or []],
        "events": [{k: events[i].get(k) for k in ("time", "severity", "class", "node", "pid", "session",
                                                  "gxid", "summary", "chain", "emitted_at", "sources")}
                   for i in keep],
        "events_total": len(events),
    }


def _node_text(node):
    node = node or {}
    text = _where(node.get("content")) if node.get("content") is not None else "?"
    if node.get("dbid") is not None:
        text += " dbid %s" % node["dbid"]
    if node.get("role") == "m":
        text += " (mirror)"
    return text


def render_timeline(timeline, heading="##"):
    """The Markdown "Timeline" section: the window, the chains (what started each), then
    the events as a table."""
    window = timeline.get("window") or {}
    out = ["%s Timeline" % heading, "",
           "Greenplum's own log events from %s to %s (source: %s)%s." % (
               window.get("since", "?"), window.get("until", "?"), timeline.get("source") or "?",
               "" if timeline.get("complete", True) else
               "; **incomplete**: %s" % (timeline.get("stopped") or "a bound was reached"))]
    if timeline.get("skipped_lines"):
        out.append("%d malformed log line(s) skipped." % timeline["skipped_lines"])
    out.append("")
    chains = timeline.get("chains") or []
    if not timeline.get("events"):
        out += ["No incident event in the logs of this window.", ""]
        return out
    if chains:
        out += ["%s# Chains" % heading, ""]
        for c in chains:
            out.append("%d. **%s** %s → %s: %s. Started by: %s%s" % (
                c["id"], c["severity"].upper(), c["start"], c["end"], c["text"], c["started_by"],
                "; signals: %s" % ", ".join("%s from %s" % (sig.get("signal"), (sig.get("sender") or {}).get("exe"))
                                            for sig in c["signals"]) if c.get("signals") else ""))
        out.append("")
    out += ["%s# Events" % heading, ""]
    rows = [{"time": e["time"], "chain": e.get("chain"), "severity": e["severity"], "class": e["class"],
             "node": _node_text(e.get("node")), "session": (e.get("session") or {}).get("id"),
             "gxid": e.get("gxid"), "what": e.get("summary")} for e in timeline["events"]]
    out += _table(rows)
    if timeline.get("events_total", 0) > len(rows):
        out.append("")
        out.append("%d more event(s) in the gp_log_info result." % (timeline["events_total"] - len(rows)))
    out.append("")
    return out


def build_timeline_report(log_info, cluster):
    """A report of the timeline alone (postmortem): ``schema_version``, ``generator``,
    ``kind`` ``timeline``, ``cluster``, ``taken_at`` (the window's end), ``highest_severity``,
    ``timeline``."""
    timeline = timeline_of(log_info)
    return {"schema_version": SCHEMA_VERSION, "generator": GENERATOR, "kind": "timeline",
            "cluster": str(cluster), "taken_at": timeline["window"].get("until"),
            "highest_severity": highest_severity(timeline["events"]), "counts": severity_counts(timeline["events"]),
            "timeline": timeline}


def timeline_basename(doc):
    """``gp-timeline-<cluster>-<window end as YYYYmmddTHHMMSS>``."""
    return report_basename(doc).replace("gp-hang-", "gp-timeline-", 1)


def render_timeline_markdown(doc):
    out = ["# Greenplum incident timeline: %s" % doc["cluster"], "",
           "- window end: %s" % doc["taken_at"],
           "- most severe event: %s" % (doc["highest_severity"] or "none"), ""]
    return "\n".join(out + render_timeline(doc["timeline"]))
