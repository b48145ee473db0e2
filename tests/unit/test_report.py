"""Hang reports: the JSON schema stays stable, the Markdown says what hung, why, what
was done and what is left, with a Mermaid wait-for graph whose cycle and roots are
marked. Assertions are on content, not whitespace."""
import glob
import json
import os
import re

import jsonschema

from ansible_collections.gpops.greenplum.plugins.module_utils.report import hang_report as report

from conftest import ROOT, SHARED_FIXTURES
from triage_inputs import diagnose_capture

SCHEMA_V1_KEYS = {"schema_version", "generator", "cluster", "taken_at", "server", "verdict",
                  "highest_severity", "counts", "findings", "graph", "actions", "after",
                  "snapshot", "facts", "analysis"}


def _doc(name, **kwargs):
    hang_info = json.loads(json.dumps(diagnose_capture(name).as_dict()))  # as Ansible passes it
    return report.build_report(hang_info, "mdw", **kwargs)


def _mermaid(markdown):
    return re.search(r"```mermaid\n(.*?)\n```", markdown, re.S).group(1)


def test_schema_v1_is_stable():
    doc = _doc("global_deadlock_2seg")
    assert set(doc) == SCHEMA_V1_KEYS and doc["schema_version"] == 1
    assert doc["verdict"] == "hung" and doc["highest_severity"] == "critical"
    assert doc["counts"] == {"critical": 1, "high": 0, "medium": 0, "low": 0, "info": 1}
    assert set(doc["findings"][0]) == {"class", "severity", "summary", "evidence", "remedy"}
    assert set(doc["graph"]) == {"nodes", "edges"}
    assert {"locks", "edges", "backends", "segments", "taken_at"} <= set(doc["snapshot"])
    assert doc["actions"] == [] and doc["after"] is None


def test_json_text_is_deterministic_and_round_trips():
    doc = _doc("blocking_chain")
    text = report.to_json(doc)
    assert text == report.to_json(_doc("blocking_chain"))
    assert json.loads(text) == json.loads(json.dumps(doc))
    assert report.report_basename(doc) == "gp-hang-mdw-20261121T054210"


def test_basename_is_a_safe_file_name():
    doc = dict(_doc("healthy_baseline"), cluster="prod cluster/../x")
    assert report.report_basename(doc) == "gp-hang-prod_cluster_.._x-20261121T054046"


def test_deadlock_graph_marks_cycle_and_victim():
    doc = _doc("global_deadlock_2seg")
    nodes = {n["id"]: n for n in doc["graph"]["nodes"]}
    assert set(nodes) == {"s10", "s11"}
    assert nodes["s11"]["roles"] == ["cycle", "victim"] and nodes["s10"]["roles"] == ["cycle"]
    assert {(e["from"], e["to"], e["cycle"]) for e in doc["graph"]["edges"]} == {
        ("s10", "s11", True), ("s11", "s10", True)}
    mermaid = _mermaid(report.render_markdown(doc))
    assert mermaid.startswith("flowchart LR")
    assert re.search(r'n\d+ -- "seg 0: transactionid ShareLock on t01" --> n\d+', mermaid)
    assert re.search(r'n\d+ -- "seg 1: transactionid ShareLock on t01" --> n\d+', mermaid)
    assert "linkStyle 0,1 stroke:#c00" in mermaid
    assert re.search(r"class n\d+,n\d+ cycle", mermaid) and re.search(r"class n1 victim", mermaid)


def test_dotted_edge_is_drawn_dotted_and_root_marked():
    doc = _doc("dotted_edge_no_deadlock")
    mermaid = report.render_mermaid(doc["graph"])
    assert re.search(r'-\. "seg 1: tuple ExclusiveLock on t105" \.->', mermaid)
    root = next(n for n in doc["graph"]["nodes"] if "root" in n["roles"])
    assert root["id"] == "s18" and "idle in transaction" in root["label"]
    assert "linkStyle" not in mermaid


def test_lock_queue_edges_say_queued_behind():
    doc = _doc("blocking_chain_lock_queue")
    labels = [e["label"] for e in doc["graph"]["edges"]]
    assert sum("queued behind" in label for label in labels) == 2
    assert {(e["from"], e["to"]) for e in doc["graph"]["edges"]} == {
        ("s30", "s29"), ("s31", "s30"), ("s32", "s30")}


def test_prepared_transaction_node():
    doc = _doc("prepared_xact_retry_commit_prepared")
    node = next(n for n in doc["graph"]["nodes"] if n["id"] == "p38")
    assert node["roles"] == ["prepared", "root"] and "QD pid 20540" in node["label"]


def test_markdown_sections_for_a_deadlock():
    doc = _doc("global_deadlock_2seg")
    text = report.render_markdown(doc, "gp-hang-mdw-20261121T054125.json")
    for heading in ("# Greenplum hang report: mdw: HUNG", "## What hung", "## Why, with evidence",
                    "## Wait-for graph", "## What was done", "## What is left", "## Raw evidence"):
        assert heading in text
    assert "**CRITICAL** `global_deadlock`" in text
    assert "| 18 | 11 | 19885 |" in text  # the victims table row
    assert "module `gpops.greenplum.gp_deadlock`" in text
    assert "`gp-hang-mdw-20261121T054125.json`" in text
    assert "Nothing: this run changed nothing." in text


def test_markdown_healthy():
    text = report.render_markdown(_doc("healthy_baseline"))
    assert "HEALTHY" in text and "Nothing: no finding above info." in text
    assert 'empty["no lock waits"]' in text


def test_actions_and_what_is_left():
    after = json.loads(json.dumps(diagnose_capture("global_deadlock_2seg__after_cancel").as_dict()))
    actions = [{"action": "cancel", "target": "coordinator pid 19885 (gxid 18)", "changed": True,
                "result": "cancelled"}]
    doc = _doc("global_deadlock_2seg", actions=actions, after=after)
    assert doc["after"]["verdict"] == "healthy" and doc["actions"] == actions
    text = report.render_markdown(doc)
    assert "- cancel coordinator pid 19885 (gxid 18) (changed): cancelled" in text
    assert "Re-checked at 2026-11-21T05:41:27.315603+00:00: healthy." in text
    lines = report.summary_lines(doc)
    assert lines[0] == "mdw: HUNG (1 critical, 1 info)"
    assert lines[-2].startswith("done: cancel") and lines[-1] == "after: healthy"


def test_action_target_from_what_acting_modules_return():
    actions = [{"action": "cancel", "pid": 6912, "sess_id": 28, "gxid": 7, "result": "done",
                "statement": "SELECT pg_cancel_backend(a.pid) ..."}]
    doc = _doc("global_deadlock_2seg", actions=actions)
    text = report.render_markdown(doc)
    assert "- cancel pid 6912 session 28 gxid 7: done" in text
    assert "| cancel | 6912 | 28 | 7 | done | SELECT pg_cancel_backend(a.pid) ... |" in text


def test_sentence_actions_of_the_stale_lock_modules_are_kept_as_said():
    said = "removed stale /data/primary/gpseg0/postmaster.pid (PID 4242 is sleep, not the server)"
    doc = _doc("global_deadlock_2seg", actions=[said])
    assert doc["actions"] == [{"action": said}]
    assert "- " + said in report.render_markdown(doc)


def test_mermaid_escapes_quotes_and_brackets():
    graph = {"nodes": [{"id": "s1", "label": 'app "x" <y>', "roles": []},
                       {"id": "s2", "label": "b", "roles": ["root"]}],
             "edges": [{"from": "s1", "to": "s2", "label": 'seg 0: "q"', "solid": True,
                        "cycle": False}]}
    mermaid = report.render_mermaid(graph)
    assert 'n0["app #quot;x#quot; #lt;y#gt;"]' in mermaid
    assert 'n0 -- "seg 0: #quot;q#quot;" --> n1' in mermaid and "class n1 root" in mermaid


def test_evidence_tables_escape_pipes():
    doc = _doc("blocking_chain")
    doc["findings"][0]["evidence"]["root"]["query"] = "SELECT 1 | 2"
    assert "SELECT 1 \\| 2" in report.render_markdown(doc)


def test_every_capture_report_validates_against_the_published_schema():
    with open(os.path.join(ROOT, "docs", "report-schema-v1.json")) as f:
        schema = json.load(f)
    after = json.loads(json.dumps(diagnose_capture("healthy_baseline").as_dict()))
    for path in sorted(glob.glob(os.path.join(SHARED_FIXTURES, "*.json"))):
        doc = _doc(os.path.basename(path)[:-5], actions=[{"action": "noop"}], after=after)
        jsonschema.validate(json.loads(report.to_json(doc)), schema)
    assert set(schema["required"]) == SCHEMA_V1_KEYS


def test_executor_steps_are_rendered_from_their_reason_codes():
    """gp_deadlock's actions are executor outcomes: the report shows the code and the
    message made from the code's facts (not a free sentence), FAILED lines as said."""
    from ansible_collections.gpops.greenplum.plugins.module_utils.act.deadlock_breaker import action_dict
    from ansible_collections.gpops.greenplum.plugins.module_utils.act.executor import Outcome
    from ansible_collections.gpops.greenplum.plugins.module_utils.plan.reasons import Reason
    from ansible_collections.gpops.greenplum.plugins.module_utils.plan.steps import Guard, Step
    guard = Guard("transaction", {"pid": 6912, "backend_start": None, "sess_id": 28, "gxid": 7, "xact_start": None})
    step = Step("cancel", "coordinator pid 6912", Reason.DEADLOCK_VICTIM,
                {"deadlock": 1, "gxid": 7, "pid": 6912, "sess_id": 28, "why": "youngest"}, guard)
    skipped = action_dict(Outcome.skipped(step, Reason.GUARD_TRANSACTION_ENDED, pid=6912, gxid=7))
    done = action_dict(Outcome.done(step, "pg_cancel_backend"))
    doc = _doc("global_deadlock_2seg", actions=[done, skipped, "FAILED: mirror loss (gp_mirror_failure): x"])
    text = report.render_markdown(doc)
    assert ("- cancel coordinator pid 6912: skipped [guard_transaction_ended] "
            "(pid 6912 no longer runs gxid 7 (its transaction ended))") in text
    assert ("- cancel coordinator pid 6912: done [deadlock_victim] "
            "(victim of deadlock 1: gxid 7, coordinator pid 6912 (youngest))") in text
    assert "- FAILED: mirror loss (gp_mirror_failure): x" in text
