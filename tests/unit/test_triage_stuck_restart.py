"""stuck_qe and segment_restarted: the pure rules of hang_classes.py, over the real GP7 snapshots
behind them (tests/fixtures/gp7_findings: a QE frozen with SIGSTOP, a QE killed with SIGKILL)
and over hand-made variants of them (a busy healthy cluster, a QE on another host, windows)."""
import dataclasses
import datetime
import json
import os

import pytest

from ansible_collections.gpops.greenplum.plugins.module_utils.analyse import hang_diagnosis as diagnosis
from ansible_collections.gpops.greenplum.plugins.module_utils.analyse import hang_classes
from ansible_collections.gpops.greenplum.plugins.module_utils.common.records import (
    Backend, ClusterSnapshot, SegmentConfig, parse_timestamp)

from triage_inputs import diagnose_capture

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures",
                        "gp7_findings")


def load(name):
    """``(ClusterSnapshot, ClusterFacts)`` of a tests/fixtures/gp7_findings capture."""
    with open(os.path.join(FIXTURES, name + ".json")) as f:
        data = json.load(f)
    snap = ClusterSnapshot(
        taken_at=parse_timestamp(data["taken_at"]), source=data["source"], server=data["server"],
        segments=[SegmentConfig.from_row(s) for s in data["segments"]],
        backends=[Backend.from_row(b, content=b["content"]) for b in data["backends"]],
        postmaster_starts={int(c): parse_timestamp(t) for c, t in data["postmaster_starts"].items()})
    facts = hang_classes.ClusterFacts(process_states={
        tuple(int(x) for x in k.split(":")): v for k, v in data["process_states"].items()})
    return snap, facts


def findings(snap, facts=None, **options):
    return diagnose_capture("x", snapshot=snap, facts=facts or hang_classes.ClusterFacts(),
                            options=hang_classes.TriageOptions(**options)).findings


def of(found, cls):
    return [f for f in found if f.cls == cls]


def shifted(snap, seconds):
    """The same snapshot taken ``seconds`` later."""
    return dataclasses.replace(snap, taken_at=snap.taken_at + datetime.timedelta(seconds=seconds))


def replace_backend(snap, pid, **changes):
    return dataclasses.replace(snap, backends=[dataclasses.replace(b, **changes) if b.pid == pid else b
                                               for b in snap.backends])


# ------------------------------------------------------------------ stuck_qe

def test_frozen_qe_capture_names_content_pid_session_and_qd():
    snap, facts = load("stuck_qe_sigstop")
    stuck, = of(findings(snap, facts), "stuck_qe")
    ev = stuck.evidence
    assert (ev["content"], ev["dbid"], ev["host"], ev["pid"], ev["process_state"]) == (1, 3, "vm", 29645, "T")
    assert (ev["sess_id"], ev["qd_pid"], ev["qd_wait"]) == (175, 29640, "IPC/Interconnect")
    assert ev["done_contents"] == [0, 2] and ev["qd_wait_s"] >= 10
    assert ev["stuck_qes"][0]["wait"] == "Timeout/PgSleep" and ev["stuck_qes"][0]["active_s"] >= 10
    assert stuck.severity == "high"  # stopped: it never resumes by itself
    assert "kill -CONT 29645" in stuck.remedy["text"] and "pg_cancel_backend of QD pid 29640" in stuck.remedy["text"]
    assert "content 1" in stuck.summary and "QE pid 29645" in stuck.summary and "stopped" in stuck.summary


def test_candidates_are_the_working_qes_with_their_ports():
    snap, _facts = load("stuck_qe_sigstop")
    assert hang_classes.stuck_qe_candidates(snap) == [{"content": 1, "pid": 29645, "sess_id": 175, "port": 7723}]
    assert hang_classes.stuck_qe_candidates(snap, hang_classes.TriageOptions(stuck_qe_min_wait=3600)) == []


def test_state_unknown_still_reported_from_idle_siblings_medium_below_age_high_above():
    snap, _facts = load("stuck_qe_sigstop")
    stuck, = of(findings(snap), "stuck_qe")  # /proc not read: e.g. the QE runs on another host
    assert stuck.evidence["process_state"] == "unknown" and stuck.severity == "medium"
    assert "unknown" in stuck.summary and "kill -CONT" not in stuck.remedy["text"]
    assert "pstack 29645" in stuck.remedy["text"]
    stuck, = of(findings(shifted(snap, 60)), "stuck_qe")
    assert stuck.severity == "high" and stuck.evidence["stuck_qe_age_s"] == 60.0


def test_slow_running_qe_is_reported_with_its_state():
    snap, _facts = load("stuck_qe_sigstop")
    stuck, = of(findings(snap, hang_classes.ClusterFacts(process_states={(1, 29645): "R"})), "stuck_qe")
    assert stuck.severity == "medium" and "running (R)" in stuck.summary
    stuck, = of(findings(snap, hang_classes.ClusterFacts(process_states={(1, 29645): "D"})), "stuck_qe")
    assert "cat /proc/29645/stack" in stuck.remedy["text"]


def test_short_wait_below_minimum_is_not_reported():
    snap, facts = load("stuck_qe_sigstop")
    assert of(findings(snap, facts, stuck_qe_min_wait=3600), "stuck_qe") == []


def test_every_segment_still_working_is_a_long_query_not_a_stuck_qe():
    snap, _facts = load("stuck_qe_sigstop")
    busy = snap
    for pid in (29644, 29646):  # the QEs of contents 0 and 2, active again
        busy = replace_backend(busy, pid, state="active", wait_event_type="Timeout", wait_event="PgSleep")
    assert of(findings(busy), "stuck_qe") == []
    # ... unless /proc proves one of them stopped
    stuck, = of(findings(busy, hang_classes.ClusterFacts(process_states={(1, 29645): "T"})), "stuck_qe")
    assert stuck.evidence["done_contents"] == []


@pytest.mark.parametrize("wait", [("Lock", "transactionid"), ("IPC", "SyncRep"), ("IPC", "Interconnect")])
def test_qe_waiting_for_a_lock_syncrep_or_another_qe_is_not_stuck(wait):
    snap, facts = load("stuck_qe_sigstop")
    snap = replace_backend(snap, 29645, wait_event_type=wait[0], wait_event=wait[1])
    assert of(findings(snap, facts), "stuck_qe") == []


def test_qd_not_waiting_on_its_qes_is_not_reported():
    snap, facts = load("stuck_qe_sigstop")
    snap = replace_backend(snap, 29640, wait_event_type=None, wait_event=None)  # GP6 shows no wait
    assert of(findings(snap, facts), "stuck_qe") == []


def test_qe_process_state_checks_the_process_title(tmp_path):
    proc = tmp_path / "proc"
    (proc / "4242").mkdir(parents=True)
    (proc / "stat").write_text("cpu 1 2 3\nbtime 1700000000\n")
    (proc / "4242" / "stat").write_text("4242 (postgres) T 1 4242 4242 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 100 0 0\n")
    (proc / "4242" / "status").write_text("Name:\tpostgres\nUid:\t1000\t1000\t1000\t1000\n")
    (proc / "4242" / "cmdline").write_bytes(
        b"postgres:  7723, gpadmin gpops_test 127.0.0.1(50080) con175 seg1 cmd4 slice1 MPPEXEC SELECT\0")
    assert diagnosis.qe_process_state(4242, 7723, 175, 1, str(proc)) == "T"
    assert diagnosis.qe_process_state(4242, 7724, 175, 1, str(proc)) == "unknown"  # another segment's port
    assert diagnosis.qe_process_state(4242, 7723, 176, 1, str(proc)) == "unknown"  # another session
    assert diagnosis.qe_process_state(4243, 7723, 175, 1, str(proc)) == "unknown"  # no such process here
    assert diagnosis.qe_process_state(4242, 7723, 175, 1, str(tmp_path / "none")) == "unknown"


# --------------------------------------------------------- segment_restarted

def test_crash_reset_capture_names_content_and_reset_time():
    snap, facts = load("segment_reset_sigkill")
    found = findings(snap, facts)
    restarted, = of(found, "segment_restarted")
    ev = restarted.evidence
    assert (ev["content"], ev["dbid"], ev["kind"], restarted.severity) == (1, 3, "crash_reset", "medium")
    assert ev["postmaster_start"] == snap.postmaster_starts[1].isoformat()
    assert parse_timestamp(ev["restarted_at"]) > parse_timestamp(ev["postmaster_start"])
    assert ev["restarted_s_ago"] < 30 and "seg1" in ev["broke"][0]
    assert restarted.remedy["module"] == "gpops.greenplum.gp_log_info"
    assert "reset after a crash" in restarted.summary


def test_restart_outside_the_window_is_not_reported():
    snap, facts = load("segment_reset_sigkill")
    age = of(findings(snap, facts), "segment_restarted")[0].evidence["restarted_s_ago"]
    assert of(findings(shifted(snap, 2), facts, segment_restart_window=age + 1), "segment_restarted") == []
    assert of(findings(shifted(snap, 3700), facts), "segment_restarted") == []


def test_postmaster_restart_after_the_coordinator_is_info():
    snap, facts = load("stuck_qe_sigstop")  # content 1's primary was restarted with pg_ctl before
    restarted, = of(findings(snap, facts), "segment_restarted")
    assert restarted.severity == "info" and restarted.evidence["kind"] == "restart"
    assert restarted.evidence["content"] == 1


def test_segments_started_with_the_cluster_are_not_reported():
    snap, facts = load("segment_reset_sigkill")
    coordinator = snap.postmaster_starts[-1]
    early = coordinator - datetime.timedelta(seconds=1)
    snap = dataclasses.replace(
        snap, postmaster_starts={c: early if c >= 0 else t for c, t in snap.postmaster_starts.items()},
        backends=[dataclasses.replace(b, backend_start=early) if b.backend_type == "checkpointer" and b.content >= 0
                  else b for b in snap.backends])
    assert of(findings(snap, facts), "segment_restarted") == []


def test_unknown_start_times_give_no_finding():
    snap, facts = load("segment_reset_sigkill")
    no_coordinator = dataclasses.replace(
        snap, postmaster_starts={c: t for c, t in snap.postmaster_starts.items() if c != -1},
        backends=[b for b in snap.backends if b.content != -1])
    assert of(findings(no_coordinator, facts), "segment_restarted") == []
    unreachable = dataclasses.replace(snap, unreachable={1: "timeout"})
    assert of(findings(unreachable, facts), "segment_restarted") == []


def test_gp6_rows_without_checkpointer_use_the_postmaster_start():
    snap, facts = load("segment_reset_sigkill")
    gp6 = dataclasses.replace(snap, backends=[b for b in snap.backends if b.backend_type == "client backend"],
                              postmaster_starts=dict(snap.postmaster_starts))
    gp6.postmaster_starts[1] = snap.postmaster_starts[0]  # started with the cluster
    assert of(findings(gp6, facts), "segment_restarted") == []  # the reset is invisible without it
    gp6.postmaster_starts[1] = snap.taken_at - datetime.timedelta(seconds=20)
    restarted, = of(findings(gp6, facts), "segment_restarted")
    assert restarted.evidence["kind"] == "restart" and restarted.evidence["children_start"] is None


def test_an_entry_db_qe_on_the_coordinator_is_not_a_second_qd():
    snap, facts = load("stuck_qe_sigstop")
    qd = next(b for b in snap.backends if b.pid == 29640)
    entry = dataclasses.replace(qd, pid=29650, backend_start=qd.backend_start + datetime.timedelta(seconds=1))
    snap = dataclasses.replace(snap, backends=snap.backends + [entry])
    stuck, = of(findings(snap, facts), "stuck_qe")
    assert stuck.evidence["qd_pid"] == 29640
