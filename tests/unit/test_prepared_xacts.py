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
        assert "gp_distributed_xacts" in d["reason"]
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
