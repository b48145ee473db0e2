"""The hang classifier over every real GP7 capture, and over GP6-shaped rows.

Each capture must be classified as its ``description`` says (the healthy ones as
healthy: nothing but the ``gdd_status`` info finding)."""
import dataclasses
import datetime
import glob
import os

import pytest

from ansible_collections.gpops.greenplum.plugins.module_utils.analyse import hang_classes
from ansible_collections.gpops.greenplum.plugins.module_utils.common.records import (
    Backend, ClusterSnapshot, DistributedXact, LockRecord, PreparedXact, SegmentConfig, WaitEdge)

from captures import snapshot_from_capture
from conftest import SHARED_FIXTURES
from triage_inputs import diagnose_capture, facts_from_capture

SYNCREP = {"syncrep_wait": "critical"}
# capture -> {class: severity} of every finding above info, as its description says.
EXPECTED = {
    "healthy_baseline": {},
    "healthy_after_restore": {},
    "blocking_chain": {"blocking_chain": "medium"},
    "blocking_chain_lock_queue": {"blocking_chain": "medium"},
    "dotted_edge_no_deadlock": {"blocking_chain": "medium"},
    "dotted_edge_no_deadlock__after_c_rollback": {"global_deadlock": "critical"},
    "dotted_edge_no_deadlock__after_cancel": {},
    "global_deadlock_2seg": {"global_deadlock": "critical"},
    "global_deadlock_2seg__after_cancel": {},
    "global_deadlock_2seg_gdd_resolved": {"global_deadlock": "critical"},
    "mirror_down_syncrep_wait": SYNCREP,
    "mirror_down_syncrep_wait__after_cancel": SYNCREP,
    "mirror_down_syncrep_wait__after_fts_probe_grace3600": SYNCREP,
    "mirror_down_syncrep_wait__after_fts_probe_grace30_within_grace": SYNCREP,
    "mirror_down_syncrep_wait__long_wait_before_mark_down": SYNCREP,
    "mirror_down_syncrep_wait__after_fts_mark_down": {"segment_down": "high"},
    "mirror_down_syncrep_wait__after_recovery": {},
    "mirror_down_syncrep_cancel_terminate": SYNCREP,
    "mirror_down_syncrep_cancel_terminate__after_fts_mark_down": {"segment_down": "high"},
    "syncrep_alter_system_precedence": {},
    "prepared_xact_in_doubt": {"blocking_chain": "medium"},
    "prepared_xact_in_doubt__after_resume": {},
    "prepared_xact_retry_commit_prepared": {"twophase_commit_retry": "critical"},
    "prepared_xact_retry_commit_prepared__after_reset": {},
}


def _problems(findings):
    return {f.cls: f.severity for f in findings if f.severity != "info"}


def _one(findings, cls):
    matching = [f for f in findings if f.cls == cls]
    assert len(matching) == 1, [f.as_dict() for f in findings]
    return matching[0]


def test_every_capture_has_an_expectation():
    names = {os.path.basename(p)[:-5] for p in glob.glob(os.path.join(SHARED_FIXTURES, "*.json"))}
    assert names == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_capture_classified_as_described(name):
    findings = diagnose_capture(name).findings
    assert _problems(findings) == EXPECTED[name]
    assert len([f for f in findings if f.severity != "info"]) == len(EXPECTED[name])
    assert findings[-1].cls == "gdd_status" and findings[-1].severity == "info"
    for f in findings:
        assert f.cls in hang_classes.CLASSES and f.severity in hang_classes.SEVERITIES
        assert f.summary and f.remedy["text"]
    ranks = [hang_classes.severity_rank(f.severity) for f in findings]
    assert ranks == sorted(ranks, reverse=True)


def test_global_deadlock_names_cycle_victim_and_edges():
    f = _one(diagnose_capture("global_deadlock_2seg").findings, "global_deadlock")
    assert f.evidence["gxids"] == [17, 18]
    assert [v["gxid"] for v in f.evidence["victims"]] == [18]
    assert f.evidence["victims"][0]["coordinator_pid"] == 19885
    assert sorted(e["content"] for e in f.evidence["edges"]) == [0, 1]
    assert {e["kind"] for e in f.evidence["edges"]} == {"solid"}
    assert f.remedy["module"] == "gpops.greenplum.gp_deadlock"
    assert f.remedy["variables"]["gp_resolve_deadlocks"] is True


def test_dotted_edge_deadlock_after_rollback_victim_is_youngest():
    f = _one(diagnose_capture("dotted_edge_no_deadlock__after_c_rollback").findings,
             "global_deadlock")
    assert f.evidence["gxids"] == [23, 24]
    assert [v["sess_id"] for v in f.evidence["victims"]] == [17]


def test_blocking_chain_root_state_age_and_waiters():
    f = _one(diagnose_capture("blocking_chain").findings, "blocking_chain")
    root = f.evidence["root"]
    assert (root["sess_id"], root["coordinator_pid"]) == (23, 20166)
    assert root["state"] == "idle in transaction" and root["state_age_s"] > 0
    assert f.evidence["waiter_count"] == 3
    assert "20166" in f.remedy["text"]


def test_lock_queue_waiters_count_behind_the_queued_ddl():
    f = _one(diagnose_capture("blocking_chain_lock_queue").findings, "blocking_chain")
    assert f.evidence["root"]["sess_id"] == 29
    assert f.evidence["waiter_count"] == 3
    waits = [w for waiter in f.evidence["waiters"] for w in waiter["waits"]]
    assert sum("queued_behind" in w for w in waits) == 2


def test_blocking_chain_is_high_once_the_wait_reaches_the_threshold():
    options = hang_classes.TriageOptions(wait_threshold=1.0)
    f = _one(diagnose_capture("blocking_chain", options=options).findings, "blocking_chain")
    assert f.severity == "high"


def test_syncrep_wait_carries_mirror_state_and_never_kill_remedy():
    f = _one(diagnose_capture("mirror_down_syncrep_wait").findings, "syncrep_wait")
    assert f.evidence["content"] == 0 and f.evidence["waiting_count"] == 2
    assert f.evidence["mirror"]["dbid"] == 5
    assert (f.evidence["mirror"]["status"], f.evidence["mirror"]["mode"]) == ("u", "s")
    assert f.evidence["walsender_state"] is None and f.evidence["fts_has_acted"] is False
    assert "walsender absent" in f.summary
    assert "never kill" in f.remedy["text"]
    assert f.remedy["module"] == "gpops.greenplum.gp_fts_probe"


def test_syncrep_qe_left_by_terminated_qd_is_still_reported():
    f = _one(diagnose_capture("mirror_down_syncrep_cancel_terminate").findings, "syncrep_wait")
    assert f.evidence["waiting_count"] == 3
    assert None in {w["qd_pid"] for w in f.evidence["waiters"]}


def test_fts_not_probing_when_the_wait_outlasts_probe_interval_grace_and_retries():
    name = "mirror_down_syncrep_wait__long_wait_before_mark_down"
    facts = facts_from_capture(name, gp_fts_probe_interval=10, gp_fts_mark_mirror_down_grace_period=5,
                               gp_fts_probe_timeout=1, gp_fts_probe_retries=0)
    findings = diagnose_capture(name, facts=facts).findings
    f = _one(findings, "fts_not_probing")
    assert f.severity == "high" and f.evidence["budget_s"] == 16 and f.evidence["contents"] == [0]
    assert _one(findings, "syncrep_wait").severity == "critical"


def test_fts_not_running_only_when_known():
    facts = facts_from_capture("healthy_baseline")
    facts.fts_running = False
    f = _one(diagnose_capture("healthy_baseline", facts=facts).findings, "fts_not_running")
    assert f.severity == "high" and f.remedy["role"] == "gpops.greenplum.gp_mirror_failure"
    facts.fts_running = None
    assert _problems(diagnose_capture("healthy_baseline", facts=facts).findings) == {}


def test_mirror_not_streaming_while_catalog_says_in_sync():
    facts = facts_from_capture("healthy_baseline")
    facts.replication[1] = None
    f = _one(diagnose_capture("healthy_baseline", facts=facts).findings, "mirror_not_in_sync")
    assert f.severity == "medium" and f.evidence["content"] == 1
    assert "walsender is absent" in f.summary


def test_no_mirror_finding_for_a_primary_that_did_not_answer():
    snap = snapshot_from_capture("healthy_baseline")
    facts = facts_from_capture("healthy_baseline")
    facts.replication[1] = None
    findings = diagnose_capture("x", facts=facts,
                                snapshot=_with(snap, unreachable={1: "timeout: no answer"})).findings
    assert _problems(findings) == {"node_unreachable": "critical"}


def test_segment_down_after_fts_mark_down_no_syncrep_wait():
    f = _one(diagnose_capture("mirror_down_syncrep_wait__after_fts_mark_down").findings,
             "segment_down")
    assert f.evidence["mirror"]["dbid"] == 5 and f.evidence["content"] == 0


def _with(snapshot, **changes):
    return dataclasses.replace(snapshot, **changes)


def test_double_fault_is_critical():
    snap = snapshot_from_capture("mirror_down_syncrep_wait__after_fts_mark_down")
    segments = [dataclasses.replace(s, status="d") if s.dbid == 2 else s for s in snap.segments]
    findings = diagnose_capture("x", facts=hang_classes.ClusterFacts(),
                                snapshot=_with(snap, segments=segments)).findings
    f = _one(findings, "segment_down")
    assert f.severity == "critical" and "double fault" in f.summary


def test_twophase_commit_retry_keeps_its_waiter_as_evidence_not_as_a_chain():
    findings = diagnose_capture("prepared_xact_retry_commit_prepared").findings
    f = _one(findings, "twophase_commit_retry")
    assert f.evidence["gxid"] == 38 and f.evidence["qd"]["pid"] == 20540
    assert f.evidence["original_sess_id"] == 47 and f.evidence["qd"]["sess_id"] == 66
    assert f.evidence["prepared_on_contents"] == [0]
    assert f.evidence["blocked"][0]["waiter_count"] == 1
    assert "Never cancel or terminate" in f.remedy["text"]


def test_in_doubt_prepared_root_is_a_chain_not_an_orphan():
    f = _one(diagnose_capture("prepared_xact_in_doubt").findings, "blocking_chain")
    assert f.evidence["root"]["kind"] == "prepared_xact" and f.evidence["root"]["gxid"] == 36
    assert "do not kill" in f.remedy["text"]


def test_orphaned_prepared_xact_when_the_coordinator_lost_the_gxid():
    snap = snapshot_from_capture("prepared_xact_in_doubt")
    lost = _with(snap, dist_xacts=[x for x in snap.dist_xacts if x.gxid != 36],
                 locks=[lock for lock in snap.locks if lock.locktype != "distributed xid"
                        or lock.transactionid != "36"])
    young = diagnose_capture("x", snapshot=lost, facts=hang_classes.ClusterFacts()).findings
    assert "orphaned_prepared_xact" not in _problems(young)  # 3 s old < 120 s
    options = hang_classes.TriageOptions(prepared_xact_age=1.0)
    findings = diagnose_capture("x", snapshot=lost, facts=hang_classes.ClusterFacts(), options=options).findings
    assert _problems(findings) == {"orphaned_prepared_xact": "high"}
    f = _one(findings, "orphaned_prepared_xact")
    assert [p["content"] for p in f.evidence["prepared"]] == [0, 1]
    assert any("RowExclusiveLock" in lock for lock in f.evidence["prepared"][0]["locks"])
    assert f.evidence["blocked"][0]["waiter_count"] == 1
    assert f.remedy["module"] == "gpops.greenplum.gp_prepared_xacts"
    assert f.remedy["variables"] == {"state": "absent", "gids": ["36"], "min_age": 1.0}


def test_resource_queue_wait_only_when_resource_manager_is_queue():
    rows = [{"lorusename": "etl", "lorrsqname": "pg_default", "lorlocktype": "resource queue",
             "lorobjid": 6055, "lorpid": 20166, "lormode": "ExclusiveLock", "lorgranted": True},
            {"lorusename": "etl", "lorrsqname": "pg_default", "lorlocktype": "resource queue",
             "lorobjid": 6055, "lorpid": 20168, "lormode": "ExclusiveLock", "lorgranted": False}]
    facts = facts_from_capture("blocking_chain", gp_resource_manager="queue")
    facts.resqueue_locks = rows
    f = _one(diagnose_capture("blocking_chain", facts=facts).findings, "resource_queue_wait")
    assert f.evidence["queue"] == "pg_default" and f.evidence["running_pids"] == [20166]
    assert f.evidence["waiting"][0]["pid"] == 20168 and f.severity == "medium"
    facts.settings["gp_resource_manager"] = "none"
    assert "resource_queue_wait" not in _problems(diagnose_capture("blocking_chain", facts=facts).findings)


def test_resource_queue_wait_from_lock_rows_when_the_view_was_not_read():
    snap = snapshot_from_capture("blocking_chain")
    queue_locks = [LockRecord.from_row(dict(gp_segment_id=-1, pid=pid, mppsessionid=sess,
                                            locktype="resource queue", objid=6055,
                                            mode="ExclusiveLock", granted=granted))
                   for pid, sess, granted in ((20166, 23, True), (20168, 24, False))]
    facts = facts_from_capture("blocking_chain", gp_resource_manager="queue")
    findings = diagnose_capture("x", facts=facts,
                                snapshot=_with(snap, locks=snap.locks + queue_locks)).findings
    f = _one(findings, "resource_queue_wait")
    assert f.evidence["queue"] == "6055" and [w["pid"] for w in f.evidence["waiting"]] == [20168]


def test_long_idle_in_transaction_holding_locks():
    name = "dotted_edge_no_deadlock__after_cancel"
    options = hang_classes.TriageOptions(idle_in_transaction_age=0.0)
    findings = [f for f in diagnose_capture(name, options=options).findings
                if f.cls == "long_idle_in_transaction"]
    assert findings and {f.severity for f in findings} == {"low"}
    assert all(f.evidence["locks"] for f in findings)
    # The survivor A (session 16) holds its row locks; the cancelled B and C hold none.
    assert {f.evidence["session"]["sess_id"] for f in findings} == {16}


def test_blocking_root_is_not_reported_again_as_idle_in_transaction():
    options = hang_classes.TriageOptions(idle_in_transaction_age=0.0)
    assert _problems(diagnose_capture("blocking_chain", options=options).findings) == {
        "blocking_chain": "medium"}


def test_gdd_status_from_settings():
    f = diagnose_capture("healthy_baseline").findings[-1]
    assert f.evidence == {"enabled": False, "period_s": 120, "known": True}
    facts = facts_from_capture("healthy_baseline", gp_enable_global_deadlock_detector="on",
                               gp_global_deadlock_detector_period=5)
    f = diagnose_capture("healthy_baseline", facts=facts).findings[-1]
    assert f.evidence["enabled"] is True and "5 s" in f.summary


def test_unreachable_segment_is_critical_and_named():
    snap = snapshot_from_capture("global_deadlock_2seg", source="utility")
    findings = diagnose_capture("global_deadlock_2seg", snapshot=snap).findings
    f = _one(findings, "node_unreachable")
    assert f.severity == "critical" and [n["content"] for n in f.evidence["nodes"]] == [2]
    assert f.evidence["nodes"][0]["address"] == "vm:7004"


def test_coordinator_unreachable_is_a_finding():
    snap = ClusterSnapshot(taken_at=datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc),
                           unreachable={-1: "cannot reach coordinator (mdw:5432): timeout"})
    findings = diagnose_capture("x", snapshot=snap, facts=hang_classes.ClusterFacts()).findings
    assert _problems(findings) == {"node_unreachable": "critical"}


# ----------------------------------------------------------------- GP6 rows

T0 = datetime.datetime(2026, 11, 21, 5, 0, 0, tzinfo=datetime.timezone.utc)


def _ts(seconds_before):
    return (T0 - datetime.timedelta(seconds=seconds_before)).isoformat()


def _gp6_segments():
    rows = [(1, -1, "p", "n", "u", 5432), (2, 0, "p", "s", "u", 6000), (3, 1, "p", "s", "u", 6001),
            (4, 0, "m", "s", "u", 7000), (5, 1, "m", "s", "u", 7001)]
    return [SegmentConfig.from_row(dict(dbid=d, content=c, role=r, preferred_role=r, mode=m,
                                        status=s, port=p, hostname="sdw", address="sdw",
                                        datadir="/data/%d" % d)) for d, c, r, m, s, p in rows]


def _gp6_backend(content, pid, sess, state, waiting=False, reason=None, started=10):
    # GP6 pg_stat_activity: waiting / waiting_reason, no wait_event*, no backend_type.
    return Backend.from_row(dict(gp_segment_id=content, pid=pid, sess_id=sess, datname="prod",
                                 usename="etl", state=state, waiting=waiting,
                                 waiting_reason=reason, query_start=_ts(started),
                                 state_change=_ts(started), xact_start=_ts(started + 1),
                                 query="UPDATE t SET v = v"))


def test_gp6_global_deadlock_from_gp6_rows():
    edges = [WaitEdge.from_row(dict(segid=0, waiter_dxid="1001", holder_dxid="1000",
                                    holdTillEndXact=True, waiter_lpid=301, holder_lpid=300,
                                    waiter_lockmode="ShareLock", waiter_locktype="transactionid",
                                    waiter_sessionid=11, holder_sessionid=10)),
             WaitEdge.from_row(dict(segid=1, waiter_dxid="1000", holder_dxid="1001",
                                    holdTillEndXact=True, waiter_lpid=400, holder_lpid=401,
                                    waiter_lockmode="ShareLock", waiter_locktype="transactionid",
                                    waiter_sessionid=10, holder_sessionid=11))]
    backends = [_gp6_backend(-1, 100, 10, "active", started=30), _gp6_backend(-1, 101, 11, "active"),
                _gp6_backend(0, 300, 10, "idle in transaction"),
                _gp6_backend(0, 301, 11, "active", True, "lock"),
                _gp6_backend(1, 400, 10, "active", True, "lock"),
                _gp6_backend(1, 401, 11, "idle in transaction")]
    snap = ClusterSnapshot(taken_at=T0, segments=_gp6_segments(), edges=edges, backends=backends,
                           dist_xacts=[DistributedXact(1000, 10), DistributedXact(1001, 11)])
    findings = diagnose_capture("x", snapshot=snap, facts=hang_classes.ClusterFacts()).findings
    assert _problems(findings) == {"global_deadlock": "critical"}
    f = _one(findings, "global_deadlock")
    assert [v["coordinator_pid"] for v in f.evidence["victims"]] == [101]


def test_gp6_syncrep_wait_from_waiting_reason_replication():
    backends = [_gp6_backend(-1, 100, 10, "active"),
                _gp6_backend(0, 300, 10, "idle in transaction", True, "replication", started=40)]
    snap = ClusterSnapshot(taken_at=T0, segments=_gp6_segments(), backends=backends)
    f = _one(diagnose_capture("x", snapshot=snap, facts=hang_classes.ClusterFacts()).findings,
             "syncrep_wait")
    assert f.evidence["content"] == 0 and f.evidence["waiters"][0]["qd_pid"] == 100


def test_gp6_orphaned_prepared_xact_gid_with_timestamp():
    prepared = PreparedXact.from_row(dict(transaction="900", gid="1690000000-0000000777",
                                          prepared=_ts(600), owner="gpadmin", database="prod"),
                                     content=1)
    lock = LockRecord.from_row(dict(gp_segment_id=1, pid=None, mppsessionid=12,
                                    locktype="transactionid", transactionid="900",
                                    mode="ExclusiveLock", granted=True, virtualtransaction="3/9"))
    snap = ClusterSnapshot(taken_at=T0, segments=_gp6_segments(), prepared_xacts=[prepared],
                           locks=[lock], dist_xacts=[DistributedXact(0, 0)],
                           backends=[_gp6_backend(-1, 100, 10, "idle")])
    f = _one(diagnose_capture("x", snapshot=snap, facts=hang_classes.ClusterFacts()).findings,
             "orphaned_prepared_xact")
    assert f.evidence["gxid"] == 777 and f.evidence["prepared"][0]["age_s"] == 600.0
    assert f.evidence["prepared"][0]["locks"] == ["content 1: transactionid ExclusiveLock on xid 900"]


def test_old_prepared_xact_with_a_foreign_gid_is_reported_too():
    prepared = PreparedXact.from_row(dict(transaction="901", gid="manual-fix", prepared=_ts(900),
                                          owner="dba", database="prod"), content=0)
    snap = ClusterSnapshot(taken_at=T0, segments=_gp6_segments(), prepared_xacts=[prepared],
                           dist_xacts=[DistributedXact(0, 0)])
    f = _one(diagnose_capture("x", snapshot=snap, facts=hang_classes.ClusterFacts()).findings,
             "orphaned_prepared_xact")
    assert f.evidence["gxid"] is None and f.evidence["prepared"][0]["verdict"] == "foreign_gid"
    assert "module" not in f.remedy and "did not form this gid" in f.remedy["text"]


def test_severity_rank_rejects_unknown():
    assert hang_classes.severity_rank("critical") > hang_classes.severity_rank("info")
    with pytest.raises(ValueError):
        hang_classes.severity_rank("urgent")
