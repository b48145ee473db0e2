"""The typed plan of the sync switch (plan/sync_replication.py): an unknown walsender state
never licenses a switch, a switch-off is a step with a reason code and a mirror guard,
"not allowed" is a refusal, FTS first where FTS runs; and the triage finding that stays
after a switch-off (sync_replication_off)."""
import dataclasses
import itertools

import pytest

from ansible_collections.gpops.greenplum.plugins.module_utils.analyse import hang_classes
from ansible_collections.gpops.greenplum.plugins.module_utils.plan import sync_replication as sr
from ansible_collections.gpops.greenplum.plugins.module_utils.plan.reasons import Reason

from test_syncrep_decision import pair
from triage_inputs import diagnose_capture, facts_from_capture

# What a role without pg_read_all_stats sees in pg_stat_replication for the mirror's walsender.
UNPRIVILEGED_ROWS = [{"pid": 4242, "application_name": "gp_walreceiver", "state": None,
                      "sync_state": None, "flush_lag_bytes": None, "replay_lag_bytes": None}]


def unknown_pair(setting="*"):
    return dataclasses.replace(pair(setting=setting), replication=sr.Replication.from_rows(UNPRIVILEGED_ROWS))


def test_null_walsender_columns_are_unknown_not_absent():
    rep = sr.Replication.from_rows(UNPRIVILEGED_ROWS)
    assert rep.unknown and not rep.known and not rep.streaming and rep.state_text == "unknown"
    assert sr.Replication.from_rows([]).known and sr.Replication.from_rows([]).state_text == "absent"


@pytest.mark.parametrize("wanted,force,setting", list(itertools.product(sr.WANTED_STATES, (False, True), ("*", ""))))
def test_unknown_walsender_state_never_switches(wanted, force, setting):
    if force and wanted != "off":
        return
    d = sr.decide_sync(unknown_pair(setting), wanted, force=force)
    assert d.verdict == sr.REFUSE and not d.acts and d.code == Reason.MIRROR_STATE_UNKNOWN
    plan = sr.build_plan([(unknown_pair(setting), d, [{"pid": 1}])], path=sr.PATH_FTS)
    assert plan.steps == ()
    assert [r.reason for r in plan.refusals] == [Reason.MIRROR_STATE_UNKNOWN]
    assert "unknown" in plan.as_dicts()["refusals"][0]["why"]


def lost():
    st = pair(rep_state=None)
    return st, sr.decide_sync(st, "off"), [{"pid": 7}]


def test_switch_off_is_a_step_with_reason_and_mirror_guard():
    st, d, waiters = lost()
    assert d.verdict == sr.SWITCH_OFF and d.code == Reason.MIRROR_LOST_COMMITS_WAIT
    plan = sr.build_plan([(st, d, waiters)], path=sr.PATH_DIRECT).as_dicts()
    step, = plan["steps"]
    assert step["action"] == "sync_off" and step["reason"] == "mirror_lost_commits_wait"
    assert step["guard"] == {"kind": "mirror", "content": 0, "primary_dbid": 2, "mirror_dbid": 5,
                             "setting": "*", "walsender_state": "absent", "require": "not_streaming",
                             "max_lag_bytes": None}
    assert step["facts"]["value"] == "" and step["facts"]["waiters"] == 1
    assert plan["refusals"] == []


def test_fts_path_makes_the_step_fts_mark_down():
    st, d, waiters = lost()
    step, = sr.build_plan([(st, d, waiters)], path=sr.PATH_FTS).steps
    assert step.action == "fts_mark_down" and step.reason == Reason.MIRROR_LOST_COMMITS_WAIT
    assert step.facts["path"] == "fts"
    # The switch back on is never an FTS step.
    on = pair(rep_state="streaming", setting="")
    step, = sr.build_plan([(on, sr.decide_sync(on, "on"), [])], path=sr.PATH_FTS, max_lag_bytes=8).steps
    assert step.action == "sync_on" and step.reason == Reason.MIRROR_STREAMING_AGAIN
    assert step.guard.facts["require"] == "streaming" and step.guard.facts["max_lag_bytes"] == 8


def test_not_allowed_is_a_refusal_and_no_step():
    st, d, waiters = lost()
    plan = sr.build_plan([(st, d, waiters)], allow_sync_off=False, path=sr.PATH_FTS)
    assert plan.steps == ()
    refusal, = plan.as_dicts()["refusals"]
    assert refusal["reason"] == "not_allowed" and refusal["facts"]["option"] == "allow_sync_off"
    assert refusal["why"] == "switching synchronous replication off is not allowed here (allow_sync_off is false)"


def test_choose_path():
    assert sr.choose_path("auto", True) == "fts" and sr.choose_path("auto", None) == "fts"
    assert sr.choose_path("auto", False) == "direct"
    assert sr.choose_path("direct", True) == "direct" and sr.choose_path("fts", False) == "fts"
    with pytest.raises(ValueError, match="path must be one of"):
        sr.choose_path("fast", True)


def test_refusals_of_healthy_primaries_are_left_out_unless_noted():
    healthy = pair()
    d = sr.decide_sync(healthy, "off")
    assert d.code == Reason.MIRROR_STREAMING
    assert sr.build_plan([(healthy, d, [])], noted=lambda *_: False).refusals == ()
    assert [r.reason for r in sr.build_plan([(healthy, d, [])]).refusals] == [Reason.MIRROR_STREAMING]


# ------------------------------------------------------------- the finding that stays

def _classes(findings):
    return {f.cls: f for f in findings if f.severity != "info"}


def test_sync_off_with_mirror_up_in_catalog_is_a_high_finding():
    facts = facts_from_capture("healthy_baseline")
    facts.replication[1] = None
    facts.sync_standby_names = {0: "*", 1: "", 2: "*"}
    found = _classes(diagnose_capture("healthy_baseline", facts=facts).findings)
    assert set(found) == {"sync_replication_off"}  # not also mirror_not_in_sync ("commits wait")
    f = found["sync_replication_off"]
    assert f.severity == "high" and f.evidence["content"] == 1 and f.evidence["durability_traded"]
    assert "acknowledged without the mirror" in f.summary and "promote" in f.summary
    assert f.remedy["module"] == "gpops.greenplum.gp_sync_replication" and f.remedy["variables"] == {"state": "auto"}


def test_sync_off_with_mirror_streaming_again_is_medium():
    facts = facts_from_capture("healthy_baseline")
    facts.sync_standby_names = {0: "*", 1: "", 2: "*"}
    f = _classes(diagnose_capture("healthy_baseline", facts=facts).findings)["sync_replication_off"]
    assert f.severity == "medium" and f.evidence["walsender_state"] == "streaming"


def test_sync_setting_unknown_makes_no_finding():
    facts = facts_from_capture("healthy_baseline")
    facts.sync_standby_names = None
    assert _classes(diagnose_capture("healthy_baseline", facts=facts).findings) == {}


def test_mirror_marked_down_is_segment_down_only_with_the_setting_in_evidence():
    facts = hang_classes.ClusterFacts(sync_standby_names={0: "", 1: "*", 2: "*"})
    found = _classes(diagnose_capture("mirror_down_syncrep_wait__after_fts_mark_down", facts=facts).findings)
    assert set(found) == {"segment_down"}
    f = found["segment_down"]
    assert f.evidence["synchronous_standby_names"] == "" and "durability traded" in f.remedy["text"]
