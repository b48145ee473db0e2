"""OpenMetrics text of a health check (module_utils/openmetrics.py) from a real GP7 capture
diagnosed by the triage, and the timeline section of the hang hang_report."""
import json
import os

from ansible_collections.gpops.greenplum.plugins.module_utils.analyse import log_events as logevents
from ansible_collections.gpops.greenplum.plugins.module_utils.report import openmetrics
from ansible_collections.gpops.greenplum.plugins.module_utils.report import hang_report
from triage_inputs import diagnose_capture

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures", "gp7_logs")


def _log_info():
    s = logevents.LogScan()
    folder = os.path.join(FIXTURES, "qe_sigkill_restart")
    with open(os.path.join(folder, "nodes.json")) as f:
        for name, node in json.load(f).items():
            s.scan_file(os.path.join(folder, name), node)
    events = s.events()
    chains = logevents.chains(events)
    return {"events": events, "chains": chains, "summary": logevents.summary(events), "source": "files",
            "window": {"since": "a", "until": "b"}, "complete": True, "stats": s.stats()}


def test_mirror_down_capture_as_metrics():
    info = json.loads(json.dumps(diagnose_capture("mirror_down_syncrep_wait").as_dict()))
    text = openmetrics.render(info, 'mdw "1"', _log_info())
    lines = text.splitlines()
    assert lines[-1] == "# EOF" and text.endswith("\n")
    assert 'gpops_findings{cluster="mdw \\"1\\"",class="syncrep_wait",severity="critical"} 1' in lines
    assert 'gpops_verdict{cluster="mdw \\"1\\"",verdict="hung"} 1' in lines
    assert 'gpops_up{cluster="mdw \\"1\\""} 1' in lines
    waiting = [ln for ln in lines if ln.startswith("gpops_longest_wait_seconds")][0]
    assert float(waiting.split()[-1]) > 0
    assert any(ln.startswith('gpops_log_events{cluster="mdw \\"1\\"",class="crash",severity="critical"}') for ln in lines)
    assert any(ln.startswith("gpops_gdd_enabled") for ln in lines)
    assert all(ln.startswith("#") or ln.startswith("gpops_") for ln in lines)
    assert openmetrics.render(info, 'mdw "1"', _log_info()) == text     # same input, same text
    assert openmetrics.file_name("mdw/1 x") == "gpops_mdw_1_x.prom"


def test_timeline_section_next_to_the_graph():
    info = json.loads(json.dumps(diagnose_capture("global_deadlock_2seg").as_dict()))
    doc = hang_report.build_report(info, "mdw", log_info=_log_info())
    md = hang_report.render_markdown(doc)
    assert md.index("## Wait-for graph") < md.index("## Timeline") < md.index("## What was done")
    assert "content 1: server process" in md and doc["timeline"]["events_total"] >= len(doc["timeline"]["events"])
    assert "timeline" not in hang_report.build_report(info, "mdw")
