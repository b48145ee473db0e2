"""Log events (module_utils/logevents.py) over CSV log records captured on a real
Greenplum 7.0.0 cluster (tests/fixtures/gp7_logs/<scenario>/<node>.csv, written by
tests/fixtures/gp7_logs/capture.py): each incident is classified, attributed to its node
and session, and linked into one chain; bad input is counted, never raised."""
import json
import os

import pytest

from ansible_collections.gpops.greenplum.plugins.module_utils.analyse import log_events as L

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(os.path.dirname(HERE), "fixtures", "gp7_logs")
SCENARIOS = sorted(d for d in os.listdir(FIXTURES) if os.path.isfile(os.path.join(FIXTURES, d, "nodes.json")))


def scan(scenario, **kwargs):
    folder = os.path.join(FIXTURES, scenario)
    with open(os.path.join(folder, "nodes.json")) as f:
        nodes = json.load(f)
    s = L.LogScan(**kwargs)
    for name, node in sorted(nodes.items()):
        s.scan_file(os.path.join(folder, name), dict(node, host="sdw", file=name))
    events = s.events()
    return s, events, L.chains(events)


def of(events, cls, **where):
    return [e for e in events if e["class"] == cls
            and all(e["node"].get(k) == v for k, v in where.items())]


def chain_of(chains, event):
    return next(c for c in chains if c["id"] == event["chain"])


def test_every_capture_parses_without_a_skipped_line():
    for scenario in SCENARIOS:
        s, events, _ = scan(scenario)
        assert s.skipped == 0, (scenario, s.skipped_examples)
        assert events, scenario


def test_lock_timeout_cancel_and_terminate_attributed_to_the_session():
    _, events, chains = scan("lock_cancel_terminate")
    timeout, = of(events, "lock_timeout", content=-1, dbid=1)
    cancel, = of(events, "statement_cancelled")
    term, = of(events, "session_terminated")
    assert timeout["session"]["id"] == cancel["session"]["id"] == term["session"]["id"] == 39
    assert (timeout["log_severity"], cancel["log_severity"], term["log_severity"]) == ("ERROR", "ERROR", "FATAL")
    assert "pg_cancel_backend" in cancel["summary"]
    assert timeout["emitted_at"].startswith("postgres.c:")
    assert "src/backend/tcop/postgres.c" in timeout["sources"]
    assert timeout["raw"].startswith("2026-12-05 09:05:55.916803 UTC,")


def test_local_deadlock():
    _, events, chains = scan("local_deadlock")
    dl, = of(events, "local_deadlock")
    assert dl["severity"] == "high" and dl["node"]["content"] == -1 and dl["gxid"]
    assert "waits for AccessExclusiveLock" in dl["detail"]


def test_gdd_cycle_dump_and_victim_in_one_chain():
    _, events, chains = scan("global_deadlock_gdd")
    cycle = of(events, "gdd_cycle")
    victim, = of(events, "gdd_victim")
    assert any("Final graph is" in e["message"] for e in cycle)
    listed = [e for e in cycle if e.get("cancelled_gxids")]
    assert listed and listed[0]["cancelled_gxids"] == [victim["gxid"]]
    assert listed[0]["cancelled_pids"] == [victim["pid"]]
    assert victim["session"]["id"] == 50 and victim["node"]["content"] == -1
    chain = chain_of(chains, victim)
    assert chain["classes"][:2] == ["gdd_cycle", "gdd_victim"]
    assert chain["started_by"].startswith("coordinator: global deadlock detected!")
    assert victim["gxid"] in chain["gxids"]


def test_qe_killed_by_sigkill_crash_reset_recovery_and_dispatcher_in_one_chain():
    _, events, chains = scan("qe_sigkill_restart")
    crash = of(events, "crash", content=1, role="p")
    assert any("terminated by signal 9" in e["message"] for e in crash)
    assert crash[0]["node"]["dbid"] == 3 and crash[0]["severity"] == "critical"
    disp = [e for e in of(events, "dispatcher_error", content=-1) if "Error on receive from seg1" in e["message"]]
    assert disp and disp[0]["segments_named"] == [1]
    chain = chain_of(chains, crash[0])
    assert chain["started_by"].startswith("content 1: server process")
    for cls in ("crash", "crash_reset", "crash_recovery", "restart_done", "dispatcher_error"):
        assert cls in chain["classes"], cls
    assert disp[0]["chain"] == chain["id"] and chain["contents"] == [-1, 1]


def test_failed_abort_broadcast_chained_by_gxid_and_session_resets():
    _, events, chains = scan("abort_broadcast_failed")
    unable = [e for e in of(events, "dtx_failure") if "unable to complete 'Abort' broadcast" in e["message"]]
    assert len(unable) == 1 and unable[0]["gxid"] == 18
    first = [e for e in of(events, "dtx_failure") if e["gxid"] == 18]
    chain = chain_of(chains, unable[0])
    assert all(e["chain"] == chain["id"] for e in first)
    seg_faults = of(events, "fault_injected", content=0)
    assert seg_faults and all(e["chain"] == chain["id"] for e in seg_faults)   # by the session resets
    assert chain["gxids"] == [18] and "two_phase_commit" in unable[0]["context"]


def test_segment_panic_during_commit_prepared_starts_the_chain():
    _, events, chains = scan("segment_panic_commit_prepared")
    panic, = of(events, "panic")
    assert panic["node"] == {"content": 0, "dbid": 2, "role": "p", "host": "sdw", "file": "seg0.csv"}
    assert panic["severity"] == "critical" and panic["gxid"] == 19 and panic["cause_class"] == "fault_injected"
    retry = [e for e in of(events, "dtx_failure", content=-1) if "Retrying" in e["message"]]
    assert retry and retry[0]["gxid"] == 19
    chain = chain_of(chains, panic)
    assert chain["started_by"] == panic["summary"] and chain["severity"] == "critical"
    assert retry[0]["chain"] == chain["id"]
    assert {"crash", "crash_recovery", "restart_done", "dtx_failure"} <= set(chain["classes"])


def test_window_excludes_and_min_bounds_are_said():
    s, events, _ = scan("qe_sigkill_restart", since=L.parse_when("2026-12-05 09:06:09.6 UTC"))
    assert events and all(e["epoch"] >= L.parse_when("2026-12-05T09:06:09.6") for e in events)
    s, events, _ = scan("qe_sigkill_restart", max_lines=10)
    assert s.stopped.startswith("max_lines") and not s.stats()["complete"]
    s, events, _ = scan("qe_sigkill_restart", max_events=2)
    assert len(events) == 2 and s.stopped.startswith("max_events")


def test_signal_joins_the_chain_of_its_target():
    _, events, chains = scan("qe_sigkill_restart")
    crash = of(events, "crash", content=1)[0]
    killed = [e for e in of(events, "crash", content=1) if "terminated by signal 9" in e["message"]][0]
    pid = int(killed["message"].split("PID ")[1].split(")")[0])
    target = dict(killed, pid=pid)
    events.append(target)
    signal = {"signal": "SIGKILL", "target_pid": pid, "epoch": killed["epoch"] - 0.01,
              "sender": {"exe": "/usr/bin/kill"}}
    chains = L.chains(sorted(events, key=lambda e: e["epoch"]), [signal])
    joined = [c for c in chains if c["signals"]]
    assert joined and joined[0]["text"].startswith("signal SIGKILL → ") and crash["node"]["content"] == 1


# ------------------------------------------------------------------ bad input


GOOD = ('2026-12-05 09:05:55.916803 UTC,"gpadmin","gpops_test",p20588,th1688025472,"127.0.0.1","54334",'
        '2026-12-05 09:05:54 UTC,0,con39,cmd4,seg-1,,,,sx1,"ERROR","55P03","canceling statement due to lock '
        'timeout",,,,,"SELECT count(*) FROM t01",22,,"postgres.c",3986,\n')


def test_cut_and_malformed_lines_are_counted_and_skipped():
    lines = [
        "continuation of a record that started in the previous file\n",
        GOOD[:GOOD.index("timeout") + 9] + "\n",             # cut right after the message
        GOOD,
        '2026-12-05 09:05:56.0 UTC,"unterminated,"canceling statement due to lock timeout\n',  # open quote
        "2026-13-45 99:99:99.0 UTC,x,canceling statement due to lock timeout\n",  # not a time
        GOOD.replace("09:05:55", "09:05:57"),
    ]
    s = L.LogScan()
    s.scan_lines(lines, {"content": -1})
    events = s.events()
    assert [e["time"] for e in events] == ["2026-12-05T09:05:55.916803+00:00", "2026-12-05T09:05:57.916803+00:00"]
    assert s.skipped == 4
    reasons = " ".join(x["reason"] for x in s.stats()["skipped_examples"])
    assert "outside any record" in reasons and "fields" in reasons and "no valid time" in reasons


def test_unreadable_and_missing_files_are_reported_not_raised(tmp_path):
    s = L.LogScan()
    s.scan_file(str(tmp_path / "nope.csv"), {})
    assert s.unreadable[0]["path"].endswith("nope.csv") and s.events() == []


@pytest.mark.parametrize("text,expected", [
    ("2026-12-05 09:05:55.5 UTC", 1796462755.5),
    ("2026-12-05 10:05:55.5 +01", 1796462755.5),
    ("2026-12-05T09:05:55.5Z", 1796462755.5),
    ("1796462755.5", 1796462755.5),
])
def test_times(text, expected):
    assert L.parse_when(text) == pytest.approx(expected)


def test_relative_and_bad_times():
    assert L.parse_when("-30m", now=1000000.0) == 1000000.0 - 1800
    with pytest.raises(ValueError):
        L.parse_when("yesterday")


def test_every_class_names_a_source_file_that_exists_in_greenplum_7():
    src = "/tmp/gpsrc/gpdb-7.0.0-beta.0"
    for rule in L.RULES:
        assert rule.sources and rule.what
        if os.path.isdir(src):
            for path in rule.sources:
                assert os.path.exists(os.path.join(src, path)), (rule.name, path)


def test_mirror_stopped_then_marked_down_by_fts_and_sync_off_in_one_chain():
    s, _, _ = scan("mirror_down_fts")
    with open(os.path.join(FIXTURES, "mirror_down_fts", "gp_configuration_history.json")) as f:
        for row in json.load(f):      # FTS writes its changes there, not to the log
            s.add_row(L.history_record(*row), {"content": -1, "dbid": 1, "role": "p"})
    events = s.events()
    chains = L.chains(events)
    down, = [e for e in of(events, "fts_config_change") if e["fts"]["status"] == "d"]
    assert down["fts"] == {"dbid": 7, "content": 2, "role": "m", "status": "d", "mode": "n"}
    assert down["severity"] == "high" and "marked DOWN" in down["summary"]
    back = [e for e in of(events, "fts_config_change") if e["fts"]["mode"] == "s"]
    assert back and all(e["severity"] == "info" for e in back)
    off = of(events, "syncrep_off", content=2, dbid=4)
    assert any("due to FTS request" in e["message"] for e in off)
    stop, = [e for e in of(events, "shutdown", content=2, role="m") if "immediate shutdown" in e["message"]]
    c = chain_of(chains, down)
    assert all(e["chain"] == c["id"] for e in off + [stop])
    assert c["started_by"].startswith("content 2 mirror: received immediate shutdown request")


def test_merge_keeps_an_event_read_twice_once():
    _, events, _ = scan("qe_sigkill_restart")
    merged = L.merge(events[:5], events[3:] + [{"junk": 1}])
    assert len(merged) == len(events)
