"""Mirror-loss detection on the real Greenplum 7 captures, phase by phase, and on
GP6-shaped rows (``waiting_reason = 'replication'``)."""
import datetime
import json
import os

import pytest

from ansible_collections.gpops.greenplum.plugins.module_utils.plan import sync_replication
from ansible_collections.gpops.greenplum.plugins.module_utils.common.records import (
    Backend, SegmentConfig, rows_as_dicts)

from conftest import SHARED_FIXTURES


def load(name):
    path = os.path.join(SHARED_FIXTURES, name + ".json")
    if not os.path.exists(path):
        pytest.skip("capture %s not present" % path)
    with open(path) as f:
        cap = json.load(f)
    q = cap["queries"]
    segments = [SegmentConfig.from_row(r) for r in rows_as_dicts(
        q["gp_segment_configuration"]["columns"], q["gp_segment_configuration"]["rows"])]
    backends = [Backend.from_row(r) for r in rows_as_dicts(
        q["gp_stat_activity"]["columns"], q["gp_stat_activity"]["rows"])]
    now = datetime.datetime.fromisoformat(cap["captured_at"])
    return cap, segments, backends, now


# phase -> (waiter pids on content 0, their coordinator pids, catalog: mirror dbid 5 down?)
PHASES = {
    "mirror_down_syncrep_wait": ({21211, 21212}, {21205, 21207}, False),
    "mirror_down_syncrep_wait__after_cancel": ({21211, 21212}, {21205, 21207}, False),
    "mirror_down_syncrep_wait__after_fts_probe_grace3600": ({21211, 21212}, {21205, 21207}, False),
    "mirror_down_syncrep_wait__after_fts_probe_grace30_within_grace":
        ({21211, 21212}, {21205, 21207}, False),
    "mirror_down_syncrep_wait__long_wait_before_mark_down": ({21211, 21212}, {21205, 21207}, False),
    "mirror_down_syncrep_wait__after_fts_mark_down": (set(), set(), True),
    "mirror_down_syncrep_wait__after_recovery": (set(), set(), False),
    # I3's coordinator backend was terminated (its QE still waits); I4's QE was terminated.
    "mirror_down_syncrep_cancel_terminate": ({22380, 22386, 22395}, {22376, 22379}, False),
    "mirror_down_syncrep_cancel_terminate__after_fts_mark_down": (set(), set(), True),
}


@pytest.mark.parametrize("phase", sorted(PHASES))
def test_capture_phase(phase):
    pids, qd_pids, mirror_marked_down = PHASES[phase]
    cap, segments, backends, now = load(phase)
    found = sync_replication.mirror_loss_findings(segments, backends, now)
    assert found["coordinator_waiters"] == []
    assert found["double_faults"] == [] and found["needs_person"] is False
    if pids:
        assert [p["content"] for p in found["waiting_primaries"]] == [0]
        prim = found["waiting_primaries"][0]
        assert prim["primary"]["dbid"] == 2 and prim["mirror"]["dbid"] == 5
        assert {w["pid"] for w in prim["waiters"]} == pids
        assert {w["qd_pid"] for w in prim["waiters"]} - {None} == qd_pids
        assert prim["waiting_count"] == len(pids)
        assert all(w["waiting_seconds"] > 0 for w in prim["waiters"])
        assert prim["longest_wait_seconds"] == max(w["waiting_seconds"] for w in prim["waiters"])
        # FTS has not acted in any waiting phase: the catalog still shows u/s.
        assert prim["fts_has_acted"] is False
        assert all(w["query"].startswith("INSERT INTO t01") for w in prim["waiters"])
    else:
        assert found["waiting_primaries"] == []
    assert [m["dbid"] for m in found["mirrors_down"]] == ([5] if mirror_marked_down else [])


def test_long_wait_is_measured_from_the_commit():
    cap, segments, backends, now = load("mirror_down_syncrep_wait__long_wait_before_mark_down")
    prim = sync_replication.mirror_loss_findings(segments, backends, now)["waiting_primaries"][0]
    # Mirror stopped 05:43:52, INSERTs at 05:43:54, captured 05:46:05: about 131 s.
    assert 125 < prim["longest_wait_seconds"] < 135
    first = prim["waiters"][0]
    assert first["sess_id"] == 80 and first["qd_application_name"] == "scenario_insert_seg0_onephase"


def test_utility_rows_of_the_primary_alone():
    """The module reads pg_stat_activity on the primary in utility mode: no QD rows."""
    cap, segments, _, now = load("mirror_down_syncrep_wait")
    q = cap["queries"]["utility_content0.pg_stat_activity"]
    rows = [Backend.from_row(r, content=0) for r in rows_as_dicts(q["columns"], q["rows"])]
    waits = sync_replication.syncrep_waiters(rows, now)
    assert {w["pid"] for w in waits} == {21211, 21212}
    assert all(w["qd_pid"] is None for w in waits)


NOW = datetime.datetime(2026, 11, 21, 6, 0, tzinfo=datetime.timezone.utc)


def gp6_backend(content, pid, sess, reason, waiting, seconds_ago, state="idle in transaction"):
    t = (NOW - datetime.timedelta(seconds=seconds_ago)).isoformat()
    return Backend.from_row({
        "gp_segment_id": content, "pid": pid, "sess_id": sess, "datname": "postgres",
        "usename": "gpadmin", "state": state, "waiting": waiting, "waiting_reason": reason,
        "state_change": t, "query_start": t, "query": "INSERT INTO t VALUES (1)"})


def gp6_segments(mirror_status="u", mode="s"):
    rows = []
    for dbid, content, role in ((1, -1, "p"), (2, 0, "p"), (3, 1, "p"), (4, 0, "m"), (5, 1, "m")):
        st = mirror_status if (role == "m" and content == 1) else "u"
        md = mode if content == 1 else "s"
        rows.append(SegmentConfig(dbid=dbid, content=content, role=role, preferred_role=role,
                                  mode=md if content >= 0 else "n", status=st, port=6000 + dbid,
                                  hostname="sdw", address="sdw", datadir="/d%d" % dbid))
    return rows


def test_gp6_rows_waiting_reason_replication():
    backends = [
        gp6_backend(-1, 100, 7, None, False, 30, state="active"),
        gp6_backend(1, 200, 7, "replication", True, 29),
        gp6_backend(1, 201, 8, "lock", True, 40),
        gp6_backend(0, 300, 9, None, False, 0, state="idle"),
    ]
    found = sync_replication.mirror_loss_findings(gp6_segments(), backends, NOW)
    assert [p["content"] for p in found["waiting_primaries"]] == [1]
    (w,) = found["waiting_primaries"][0]["waiters"]
    assert (w["pid"], w["qd_pid"], w["waiting_seconds"]) == (200, 100, 29.0)


def test_double_fault_and_not_in_sync():
    segs = gp6_segments(mirror_status="d", mode="n")
    found = sync_replication.mirror_loss_findings(segs, [], NOW, unreachable={1: "connection refused"})
    assert found["needs_person"] is True
    (df,) = found["double_faults"]
    assert df["content"] == 1 and df["reason"] == "connection refused" and "person" in df["action"]
    assert [m["content"] for m in found["mirrors_down"]] == [1]
    # Up but not in sync (resynchronising): reported, not a double fault while the primary answers.
    found = sync_replication.mirror_loss_findings(gp6_segments(mode="n"), [], NOW)
    assert [m["content"] for m in found["mirrors_not_in_sync"]] == [1]
    assert found["double_faults"] == []


def test_coordinator_waiters_are_separate():
    b = gp6_backend(-1, 100, 7, "replication", True, 12, state="active")
    found = sync_replication.mirror_loss_findings(gp6_segments(), [b], NOW)
    assert found["waiting_primaries"] == []
    assert [w["pid"] for w in found["coordinator_waiters"]] == [100]


def test_pairs_by_content_after_failover():
    segs = [SegmentConfig(2, 0, "m", "p", "n", "d", 1, "h", "h", "/a"),
            SegmentConfig(5, 0, "p", "m", "n", "u", 2, "h", "h", "/b")]
    pair = sync_replication.pairs_by_content(segs)[0]
    assert pair["primary"].dbid == 5 and pair["mirror"].dbid == 2
