"""Mirror loss on real Greenplum 7: a commit on primary 0 waits in SyncRep once mirror 0
is stopped, and resolve_hang.yml (role gp_mirror_failure) releases it.

- Default FTS (grace 30 s from the walsender's disconnect): the play reads when the grace
  period ends from the primary's FTS log line, waits for it (gp_mirror_failure_wait_for_grace)
  and probes again, so the commit is released by the play itself, not by FTS's own schedule;
  afterwards the content runs without its mirror: verdict ``degraded`` (not ``hung``), and
  health_check.yml reports it and fails at its severity (high).
- FTS first (default FTS, gp_sync_replication state=off): the primary's grace period is
  lowered for one probe, FTS marks the mirror down and switches sync off itself, the commit
  returns well before the 30 s grace period, and the grace period is back as it was.
- Check mode and "not allowed" (FTS held back): the plan (a fts_mark_down step, or a
  not_allowed refusal), changed false, no warning about a change; nothing changes.
- FTS held back (gp_fts_probe_interval and gp_fts_mark_mirror_down_grace_period raised with
  gpconfig + gpstop -u): without gp_allow_sync_off the play does not switch and says so, the
  commit keeps waiting. With path direct the switch releases the commit and the probe the
  module requests right after it marks the mirror down (sync off: the grace period no longer
  holds FTS back).
- FTS cannot act (every probe skipped with the fts_probe fault), path direct: the commit
  returns while the catalog still says the mirror is up: the second run and health_check.yml
  report sync_replication_off (high). When the mirror streams again, gp_sync_replication
  state=auto turns sync replication back on (FTS, skipping, would not).
"""
import contextlib
import time

import pytest

from gpcluster import wait_for
from playbook import run_tasks
from playbooks import run_playbook

pytestmark = pytest.mark.gp7

GRACE = "gp_fts_mark_mirror_down_grace_period"


@pytest.fixture
def content0_id(gp):
    gp.query("DROP TABLE IF EXISTS mloss; CREATE TABLE mloss (id int) DISTRIBUTED BY (id); "
             "INSERT INTO mloss SELECT generate_series(1, 30)")
    return gp.query("SELECT min(id) FROM mloss WHERE gp_segment_id = 0")[0][0]


def waiting_commit(gp, content0_id):
    """Stop mirror 0, then a one-segment commit on primary 0: it waits in SyncRep."""
    gp.stop_node(0, "m")
    s = gp.session("mloss-commit")
    s.send("INSERT INTO mloss VALUES (%s)", (content0_id,))
    assert s.waiting(2), "the commit did not wait in SyncRep"
    assert wait_for(lambda: gp.query(
        "SELECT 1 FROM pg_catalog.gp_stat_activity WHERE gp_segment_id = 0 AND wait_event = 'SyncRep'"),
        timeout=10)
    return s


def setting(gp, name):
    return gp.query("SELECT setting FROM pg_catalog.pg_settings WHERE name = %s", (name,))[0][0]


def primary_setting(gp, name, content=0):
    """(setting, source) of a setting on the acting primary of ``content`` (utility mode)."""
    return tuple(gp.query("SELECT setting, source FROM pg_catalog.pg_settings WHERE name = %s",
                          (name,), content=content)[0])


def sync_names(gp, content):
    return gp.query("SELECT pg_catalog.current_setting('synchronous_standby_names')", content=content)[0][0]


def test_default_fts_grace_waited_commit_released_then_degraded(gp, content0_id, tmp_path):
    assert setting(gp, GRACE) == "30"
    s = waiting_commit(gp, content0_id)
    started = time.monotonic()
    play = run_playbook(gp, "resolve_hang.yml", tmp_path, gp_report_dir=str(tmp_path / "report"))
    took = time.monotonic() - started
    assert play.rc == 0 and play.recap["failed"] == 0, play.out[-4000:]
    # The play knew the grace period from the primary's log, said when it ends, waited, probed again.
    assert "content 0: mirror lost at" in play.out and "the primary's FTS log line" in play.out
    assert "FTS's grace period (30 s) ends at" in play.out
    assert "again, after waiting" in play.out
    # ... and its own probe marked the mirror down (FTS's own 60 s schedule did not).
    assert "dbid 5 (content 0): mode s -> n, status u -> d" in play.out, play.out[-4000:]
    assert s.result(1)[0] == "ok", "the commit is still waiting after resolve_hang.yml (%.0f s)" % took
    assert "keep waiting until FTS acts" not in play.out
    doc = play.report
    assert doc["verdict"] == "hung" and doc["findings"][0]["class"] == "syncrep_wait"
    # After: content 0 runs without its mirror: degraded, not hung; commits do not wait.
    after = doc["after"]
    assert [f["class"] for f in after["findings"] if f["severity"] != "info"] == ["segment_down"]
    assert after["verdict"] == "degraded", after
    assert "Verdict: hung" in play.out

    # health_check.yml with the mirror down: reported, verdict DEGRADED, fails at its severity (high).
    check = run_playbook(gp, "health_check.yml", tmp_path)
    cluster = check.stats["clusters"]["localhost"]
    assert cluster["verdict"] == "degraded" and cluster["highest_severity"] == "high"
    assert cluster["classes"][0] == "segment_down" and check.stats["failing"] == ["localhost"]
    assert check.rc != 0 and "localhost: DEGRADED" in check.out

    # Recovery with gprecoverseg (incremental), then sync replication back on: FTS sets '*'
    # when it sees the mirror streaming; gp_sync_replication state=auto makes sure of it.
    assert sync_names(gp, 0) == ""
    started = time.monotonic()
    proc = gp.as_os_user("gprecoverseg -a", timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert wait_for(lambda: gp.query("SELECT 1 FROM pg_catalog.pg_stat_replication WHERE "
                                     "application_name = 'gp_walreceiver' AND state = 'streaming'",
                                     content=0), timeout=60)
    print("gprecoverseg: %.0f s; synchronous_standby_names on primary 0 then: %r"
          % (time.monotonic() - started, sync_names(gp, 0)))
    auto, = run_tasks([("gp_sync_replication", {"state": "auto", "content": 0})], env=gp.env())
    assert not auto.get("failed") and auto["durability_risk"] is False, auto
    assert sync_names(gp, 0) == "*"
    assert wait_for(lambda: gp.query("SELECT sync_state FROM pg_catalog.pg_stat_replication WHERE "
                                     "application_name = 'gp_walreceiver'", content=0) == [("sync",)],
                    timeout=10)
    gp.query("SELECT pg_catalog.gp_request_fts_probe_scan()")  # the catalog: in sync again
    assert wait_for(gp.healthy, timeout=10)


def test_fts_first_path_mirror_marked_down_commit_released_grace_restored(gp, content0_id):
    before = primary_setting(gp, GRACE)
    assert before[0] == "30"  # the default grace; its source may be a file after gpconfig -c ... -v 30
    mirror = gp.node(0, "m")
    stopped_at = time.monotonic()
    s = waiting_commit(gp, content0_id)
    res, = run_tasks([("gp_sync_replication", {"state": "off", "only_waiting": True})], env=gp.env())
    released_after = time.monotonic() - stopped_at
    assert not res.get("failed"), res
    assert res["path"] == "fts" and res["switched_off"] == [0] and res["changed"] is True, res
    step, = res["plan"]["steps"]
    assert step["action"] == "fts_mark_down" and step["reason"] == "mirror_lost_commits_wait"
    assert step["guard"]["kind"] == "mirror" and step["guard"]["setting"] == "*"
    assert step["guard"]["walsender_state"] == "absent" and step["guard"]["require"] == "not_streaming"
    outcome, = res["outcomes"]
    assert outcome["result"] == "done" and "FTS marked mirror dbid %d down" % mirror["dbid"] in outcome["detail"]
    assert s.result(5)[0] == "ok"
    print("FTS-first: commit released %.1f s after the mirror stopped (grace 30 s)" % released_after)
    assert released_after < 25, "released %.1f s after the mirror stopped" % released_after
    # FTS itself marked the mirror down (the safe order) and switched sync off on the primary.
    assert [n["status"] for n in gp.configuration() if n["dbid"] == mirror["dbid"]] == ["d"]
    assert sync_names(gp, 0) == ""
    # The grace period is back exactly (no line left in postgresql.auto.conf).
    assert primary_setting(gp, GRACE) == before
    entry = next(e for e in res["primaries"] if e["content"] == 0)
    assert entry["fts"]["grace_after"] == "30" and entry["fts"]["mirror_status"] == "d"
    assert any("FTS marked mirror dbid %d down before" % mirror["dbid"] in w for w in res["window"])
    # Greenplum's own state now: mirror down, sync off; segment_down, not sync_replication_off.
    after, = run_tasks([("gp_hang_info", {})], env=gp.env())
    classes = {f["class"]: f for f in after["findings"] if f["severity"] != "info"}
    assert set(classes) == {"segment_down"}, after["summary"]
    assert classes["segment_down"]["evidence"]["synchronous_standby_names"] == ""
    assert "durability traded" in classes["segment_down"]["remedy"]["text"]


@pytest.fixture
def fts_held_back(gp7):
    """gp_fts_probe_interval and the mirror-down grace period at 3600 s (gpconfig +
    gpstop -u), restored afterwards."""
    def gpconfig(args):
        proc = gp7.as_os_user("gpconfig %s && gpstop -u -a" % args)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    names = ("gp_fts_probe_interval", GRACE)
    gpconfig(" && gpconfig ".join("-c %s -v 3600" % n for n in names))
    assert wait_for(lambda: setting(gp7, GRACE) == "3600", timeout=10)
    try:
        yield
    finally:
        gp7.restart_stopped_mirrors()  # gpstop -u fails while a postmaster is stopped
        gpconfig(" && gpconfig ".join("-r %s" % n for n in names))


def no_change_warning(out):
    """No warning speaks of synchronous replication being off (nothing was switched)."""
    return "synchronous replication is off on content" not in out


def test_check_mode_and_not_allowed_plan_only_changed_false(gp, fts_held_back, content0_id, tmp_path):
    s = waiting_commit(gp, content0_id)
    checked, refused = run_tasks([
        ("gp_sync_replication", {"state": "off", "only_waiting": True}, True),
        ("gp_sync_replication", {"state": "off", "only_waiting": True, "allow_sync_off": False})],
        env=gp.env())
    for res in (checked, refused):
        assert not res.get("failed") and res["changed"] is False, res
        assert res["durability_risk"] is False and res["switched_off"] == [] and res["executed_queries"] == []
        assert not any("synchronous replication is off" in w for w in res.get("warnings", [])), res
    step, = checked["plan"]["steps"]
    assert step["action"] == "fts_mark_down" and step["reason"] == "mirror_lost_commits_wait"
    assert [o["result"] for o in checked["outcomes"]] == ["planned"]
    assert refused["plan"]["steps"] == [] and refused["outcomes"] == []
    refusal, = refused["plan"]["refusals"]
    assert refusal["reason"] == "not_allowed" and refusal["facts"]["option"] == "allow_sync_off"
    assert refused["would_switch_off"] == [0]

    # The playbook: --check, then a real run without gp_allow_sync_off.
    for extra in ({"_check": True}, {}):
        play = run_playbook(gp, "resolve_hang.yml", tmp_path, check=extra.get("_check", False))
        assert play.rc == 0 and play.recap["failed"] == 0, play.out[-4000:]
        assert no_change_warning(play.out), play.out[-4000:]
        assert "Switched synchronous replication off" not in play.out
    assert play.recap["changed"] == 0, play.out[-4000:]
    assert "NOT switched off (gp_allow_sync_off is false): content 0" in play.out
    assert s.waiting(1), "the commit was released although nothing was allowed"
    assert sync_names(gp, 0) == "*" and primary_setting(gp, GRACE)[0] == "3600"


def test_direct_switch_then_fts_probe_marks_the_mirror_down(gp, fts_held_back, content0_id):
    """FTS held back by its grace period (3600 s), path direct: the switch releases the
    commit, then the probe the module requests marks the mirror down at once (with sync
    off the grace period no longer holds FTS back), and the window says so."""
    mirror = gp.node(0, "m")
    s = waiting_commit(gp, content0_id)
    res, = run_tasks([("gp_sync_replication", {"state": "off", "only_waiting": True, "path": "direct"})],
                     env=gp.env())
    assert not res.get("failed") and res["changed"] is True and res["switched_off"] == [0], res
    assert res["path"] == "direct" and s.result(10)[0] == "ok"
    entry = next(e for e in res["primaries"] if e["content"] == 0)
    after = entry["fts_after_switch"]
    assert after["probe"]["completed"] is True and after["mirror_status"] == "d", after
    assert "coordinator: SELECT pg_catalog.gp_request_fts_probe_scan()" in res["executed_queries"]
    window, = res["window"]
    assert "FTS marked mirror dbid %d down in the probe this run requested" % mirror["dbid"] in window
    assert [n["status"] for n in gp.configuration() if n["dbid"] == mirror["dbid"]] == ["d"]
    assert sync_names(gp, 0) == ""
    assert primary_setting(gp, GRACE)[0] == "3600"  # the grace period was never touched
    # Greenplum's own state now: the mirror down, sync off: segment_down, durability traded.
    info, = run_tasks([("gp_hang_info", {})], env=gp.env())
    classes = {f["class"]: f for f in info["findings"] if f["severity"] != "info"}
    assert set(classes) == {"segment_down"}, info["summary"]
    assert "durability traded" in classes["segment_down"]["remedy"]["text"]


def test_fts_not_probing_direct_switch_durability_finding_then_sync_back_on(gp, fts_held_back, content0_id,
                                                                            tmp_path):
    """Every FTS probe skipped (FTS cannot act): the direct switch releases the commit, the
    probe requested after it changes nothing and the window says so; the catalog still says
    the mirror is up, so sync_replication_off (high) stays on every later run and fails the
    health job, until the mirror streams again and state=auto turns sync back on."""
    with fts_probes_skipped(gp):
        s = waiting_commit(gp, content0_id)
        play = run_playbook(gp, "resolve_hang.yml", tmp_path, gp_allow_sync_off=True,
                            gp_mirror_failure_path="direct")
        assert play.rc == 0 and play.recap["failed"] == 0, play.out[-4000:]
        assert "Switched synchronous replication off on content 0 (path direct): DURABILITY TRADED" in play.out
        assert "the catalog still says mirror dbid" in play.out
        assert "the probe requested after the switch left it up" in play.out, play.out[-4000:]
        assert s.result(10)[0] == "ok", "the commit still waits after the switch"
        assert sync_names(gp, 0) == ""
        assert gp.node(0, "m")["status"] == "u"  # FTS skipped every probe: the catalog still says up
        second_run_health_job_sync_back_on(gp, tmp_path, content0_id)


@contextlib.contextmanager
def fts_probes_skipped(gp):
    """Every FTS probe cycle skipped (fault ``fts_probe`` on the coordinator, as Greenplum's
    own FTS tests hold it back) for the block, reset after it: FTS runs but cannot act.
    Raising the grace period is not enough once a primary runs with
    synchronous_standby_names = '': then any probe marks its absent mirror down
    (docs/mirror-loss.md, "The window after a direct switch")."""
    gp.inject_fault("fts_probe", "skip", end_occurrence=-1)
    try:
        yield
    finally:
        gp.inject_fault("fts_probe", "reset")


def second_run_health_job_sync_back_on(gp, tmp_path, content0_id):
    # The second run: nothing to do, and it says what durability was traded.
    again = run_playbook(gp, "resolve_hang.yml", tmp_path, gp_report_dir=str(tmp_path / "again"))
    assert again.rc == 0 and again.recap["failed"] == 0, again.out[-4000:]
    assert "Durability traded (until gprecoverseg" in again.out, again.out[-4000:]
    finding = next(f for f in again.report["findings"] if f["class"] == "sync_replication_off")
    assert finding["severity"] == "high" and finding["evidence"]["content"] == 0
    assert finding["remedy"]["module"] == "gpops.greenplum.gp_sync_replication"
    assert "mirror_not_in_sync" not in [f["class"] for f in again.report["findings"]]
    # The health job at its default severity fails on it.
    check = run_playbook(gp, "health_check.yml", tmp_path)
    cluster = check.stats["clusters"]["localhost"]
    assert "sync_replication_off" in cluster["classes"] and cluster["highest_severity"] == "high"
    assert check.rc != 0 and check.stats["failing"] == ["localhost"]

    # The mirror is back (FTS never marked it down: starting it is its recovery) and streams;
    # FTS, held back, leaves sync replication off: gp_sync_replication state=auto turns it on.
    gp.start_node(0, "m")
    assert wait_for(lambda: gp.query("SELECT 1 FROM pg_catalog.pg_stat_replication WHERE "
                                     "application_name = 'gp_walreceiver' AND state = 'streaming'",
                                     content=0), timeout=30)
    planned, done, again = run_tasks([("gp_sync_replication", {"state": "auto", "content": 0}, True),
                                      ("gp_sync_replication", {"state": "auto", "content": 0}),
                                      ("gp_sync_replication", {"state": "auto", "content": 0})], env=gp.env())
    assert planned["changed"] is False and [s["action"] for s in planned["plan"]["steps"]] == ["sync_on"], planned
    assert planned["plan"]["steps"][0]["reason"] == "mirror_streaming_again"
    assert done["changed"] is True and not done.get("failed"), done
    assert "ALTER SYSTEM SET synchronous_standby_names = '*'" in " ".join(done["executed_queries"])
    assert sync_names(gp, 0) == "*"
    assert wait_for(lambda: gp.query("SELECT sync_state FROM pg_catalog.pg_stat_replication WHERE "
                                     "application_name = 'gp_walreceiver'", content=0) == [("sync",)],
                    timeout=10)
    assert again["changed"] is False and again["durability_risk"] is False
    gp.query("INSERT INTO mloss VALUES (%s)", (content0_id,))  # commits with the mirror in sync
