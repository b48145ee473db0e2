"""Triage inputs from the real GP7 captures (tests/fixtures/gp7): the facts a
live run reads beside the snapshot (settings, walsender states), and the
``gp_hang_info`` result a capture gives, for the triage and report tests."""
from ansible_collections.gpops.greenplum.plugins.module_utils.analyse import lock_analysis as analysis
from ansible_collections.gpops.greenplum.plugins.module_utils.analyse import hang_diagnosis as diagnosis
from ansible_collections.gpops.greenplum.plugins.module_utils.analyse import hang_classes

from captures import load_capture, snapshot_from_capture


def _rows(queries, name):
    query = queries.get(name)
    if not query or query.get("error"):
        return []
    return [dict(zip(query["columns"], row)) for row in query["rows"]]


def facts_from_capture(name, **settings):
    """``ClusterFacts`` from the capture's ``settings``/``fts_settings`` and
    ``gp_stat_replication`` queries; ``settings`` override or add GUC values."""
    queries = load_capture(name)["queries"]
    facts = hang_classes.ClusterFacts()
    for row in _rows(queries, "settings") + _rows(queries, "fts_settings"):
        facts.settings[row["name"]] = str(row["setting"])
    facts.settings.update({k: str(v) for k, v in settings.items()})
    replication = _rows(queries, "gp_stat_replication")
    if replication:
        facts.replication = {r["gp_segment_id"]: r["state"] for r in replication}
    return facts


def diagnose_capture(name, facts=None, options=None, snapshot=None):
    """What ``diagnosis.diagnose`` returns for a capture, without a server."""
    snapshot = snapshot or snapshot_from_capture(name)
    facts = facts or facts_from_capture(name)
    result = analysis.analyse(snapshot)
    findings = hang_classes.classify(snapshot, result, facts, options)
    return diagnosis.Diagnosis(snapshot, facts, result, findings, 0.0)
