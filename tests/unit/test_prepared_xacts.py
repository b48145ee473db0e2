"""Orphaned prepared transactions (module_utils/prepared.py classify) on real GP7 captures
and on the cases around them."""
import dataclasses
import datetime

import pytest

from ansible_collections.gpops.greenplum.plugins.module_utils.plan import prepared_xacts as prepared
from ansible_collections.gpops.greenplum.plugins.module_utils.common.records import PreparedXact

from captures import snapshot_from_capture


def _by_content(decisions):
    return {d["content"]: d for d in decisions}


@pytest.mark.parametrize("source", ["dispatch", "utility"])
def test_in_doubt_commit_the_coordinator_still_has_is_left_alone(source):
    """GP7 capture: the QD wrote its commit record and stopped before COMMIT PREPARED;
    gxid 36 is prepared on contents 0 and 1 and still in gp_distributed_xacts."""
    snap = snapshot_from_capture("prepared_xact_in_doubt", source)
    decisions = prepared.classify(snap, min_age=0)
    assert {d["content"] for d in decisions} == {0, 1}
    for d in decisions:
        assert d["verdict"] == prepared.IN_PROGRESS and d["gxid"] == 36
        assert d["reason"] == "coordinator_has_gxid" and "gp_distributed_xacts" in d["why"]
        assert d["prepared_on"] == [0, 1]
    assert _by_content(decisions)[0]["waiters"] == [{"pid": 20487, "mppsessionid": 43}]
    assert _by_content(decisions)[1]["waiters"] == []


def test_retry_commit_prepared_is_in_progress():
    snap = snapshot_from_capture("prepared_xact_retry_commit_prepared")
    decisions = prepared.classify(snap, min_age=0)
    assert decisions and all(d["verdict"] == prepared.IN_PROGRESS for d in decisions)


def test_after_resume_nothing_is_prepared():
    assert prepared.classify(snapshot_from_capture("prepared_xact_in_doubt__after_resume"), min_age=0) == []


def _orphan_snapshot():
    """The in-doubt capture with the coordinator's knowledge of gxid 36 removed."""
    snap = snapshot_from_capture("prepared_xact_in_doubt")
    snap.dist_xacts = [dx for dx in snap.dist_xacts if dx.gxid != 36]
    snap.locks = [lk for lk in snap.locks if not (lk.content == -1 and lk.locktype == "distributed xid")]
    return snap


def test_orphan_old_enough_unknown_to_the_coordinator():
    decisions = prepared.classify(_orphan_snapshot(), min_age=0, committed=set())
    d = _by_content(decisions)[0]
    assert d["verdict"] == prepared.ORPHANED and d["waiters"][0]["pid"] == 20487
    assert any("records no commit" in e for e in d["evidence"])


def test_young_committed_foreign_and_coordinator_rows_are_never_orphans():
    snap = _orphan_snapshot()
    assert {d["verdict"] for d in prepared.classify(snap, min_age=3600)} == {prepared.TOO_YOUNG}
    assert {d["verdict"] for d in prepared.classify(snap, 0, committed={"36"})} == {prepared.COMMITTED}
    unchecked = prepared.classify(snap, 0, None, "relation \"gp_distributed_log\" does not exist")
    assert {d["verdict"] for d in unchecked} == {prepared.ORPHANED}
    assert any("commit log not checked" in e for e in unchecked[0]["evidence"])
    px = snap.prepared_xacts[0]
    snap.prepared_xacts = [dataclasses.replace(px, gid="my-own-2pc"), dataclasses.replace(px, content=-1)]
    verdicts = {d["gid"]: d["verdict"] for d in prepared.classify(snap, min_age=0)}
    assert verdicts == {"my-own-2pc": prepared.FOREIGN_GID, "36": prepared.COORDINATOR}


def test_gp6_gid_gives_the_gxid():
    px = PreparedXact(content=0, transaction="9", gid="1690000000-0000012345",
                      prepared=datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc), owner="g", database="d")
    assert px.gxid == 12345


def test_plan_rolls_back_orphans_commits_committed_and_refuses_the_rest():
    snap = _orphan_snapshot()
    decisions = prepared.classify(snap, 0, committed=set())
    plan = prepared.plan(snap, decisions, 0, committed=set())
    assert [(s.action, s.reason.value, s.facts["content"]) for s in plan.steps] == [
        ("rollback_prepared", "orphaned_prepared_xact", 0), ("rollback_prepared", "orphaned_prepared_xact", 1)]
    px = {p.content: p for p in snap.prepared_xacts}[0]
    guard = plan.steps[0].guard
    assert guard.kind == "prepared_xact" and guard.facts == {
        "content": 0, "gid": "36", "gxid": 36, "prepared": px.prepared, "owner": px.owner, "database": px.database}
    assert plan.as_dicts()["steps"][0]["guard"]["prepared"] == px.prepared.isoformat()

    committed = prepared.plan(snap, prepared.classify(snap, 0, {"36"}), 0, {"36"})
    assert {(s.action, s.reason.value) for s in committed.steps} == {("commit_prepared", "committed_elsewhere")}
    young = prepared.plan(snap, prepared.classify(snap, 3600, {"36"}), 3600, {"36"})
    assert young.steps == () and {r.reason.value for r in young.refusals} == {"too_young"}


def test_unknown_commit_log_or_segment_plans_nothing_there():
    snap = _orphan_snapshot()
    decisions = prepared.classify(snap, 0, None, "a segment is down")
    assert decisions[0]["verdict"] == prepared.ORPHANED and "could not be read" in decisions[0]["why"]
    plan = prepared.plan(snap, decisions, 0, None, "a segment is down")
    assert plan.steps == () and {r.reason.value for r in plan.refusals} == {"commit_log_unknown"}
    snap.unreachable = {2: "timeout: no answer within 5.0 s"}
    plan = prepared.plan(snap, prepared.classify(snap, 0, set()), 0, set())
    refused = [r.as_dict() for r in plan.refusals]
    assert refused == [{"target": "content 2", "reason": "prepared_xacts_unknown",
                        "why": "pg_prepared_xacts of content 2 could not be read (timeout: no answer within 5.0 s)",
                        "facts": {"content": 2, "detail": "timeout: no answer within 5.0 s"}}]
    assert all(s.guard.facts["content"] != 2 for s in plan.steps)


def test_in_progress_is_refused_with_its_code():
    snap = snapshot_from_capture("prepared_xact_in_doubt")
    plan = prepared.plan(snap, prepared.classify(snap, 0, set()), 0, set())
    assert plan.steps == () and {r.reason.value for r in plan.refusals} == {"coordinator_has_gxid"}
    assert "gp_distributed_xacts has it" in plan.refusals[0].why
