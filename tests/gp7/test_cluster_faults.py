"""Cluster faults on real Greenplum 7, each diagnosed from a real run: the standby
coordinator stopped (commits do not wait), a stopped primary (FTS fails over to the
mirror, then gprecoverseg rebalances), the coordinator down (nothing acts, no traceback),
health_check.yml on a healthy cluster and during a global deadlock, a QE frozen with SIGSTOP
(stuck_qe) and a QE killed with SIGKILL (segment_restarted)."""
import contextlib
import datetime
import os
import shlex
import signal
import threading
import time

import pytest

from gpcluster import wait_for
from playbook import run_tasks
from playbooks import run_playbook

pytestmark = pytest.mark.gp7


def classes(result):
    return [f["class"] for f in result["findings"]]


def test_standby_coordinator_stopped_commits_do_not_wait(gp, tmp_path):
    gp.stop_node(-1, "m")
    try:
        gp.query("DROP TABLE IF EXISTS sby; CREATE TABLE sby (id int) DISTRIBUTED BY (id)")
        s = gp.session("sby-commit")
        s.send("INSERT INTO sby SELECT generate_series(1, 10)")
        assert s.result(10)[0] == "ok", "a commit waited for the stopped standby coordinator"
        info, = run_tasks([("gp_hang_info", {})], env=gp.env())
        assert not info.get("failed"), info.get("msg")
        print("standby stopped: verdict %s; %s" % (info["verdict"], info["summary"]))
        assert "syncrep_wait" not in classes(info)
        standby = [f for f in info["findings"] if f["evidence"].get("content") == -1]
        assert standby and standby[0]["class"] == "mirror_not_in_sync", info["summary"]
        assert "standby coordinator" in standby[0]["summary"]
        assert info["verdict"] == "degraded"
    finally:
        gp.start_node(-1, "m")
        assert wait_for(lambda: gp.query("SELECT 1 FROM pg_catalog.pg_stat_replication WHERE state = 'streaming'",
                                         dbname="postgres"), timeout=60)


def test_stopped_primary_fails_over_then_rebalanced(gp):
    gp.stop_node(1, "p")
    info, probe = run_tasks([("gp_hang_info", {}), ("gp_fts_probe", {})], env=gp.env())
    print("primary 1 stopped: %s" % info["summary"])
    print("gp_fts_probe right after the stop: %s" % probe["summary"])
    assert info["verdict"] == "hung" and "node_unreachable" in classes(info)
    # FTS fails the primary over to its mirror (on this build a probe right after the stop may
    # still change nothing: probe until it does).
    started = time.monotonic()

    def failed_over():
        gp.query("SELECT pg_catalog.gp_request_fts_probe_scan()", dbname="postgres")
        return {(n["dbid"], n["role"], n["status"]) for n in gp.configuration() if n["content"] == 1} == {
            (6, "p", "u"), (3, "m", "d")}
    assert wait_for(failed_over, timeout=90, interval=1), gp.configuration()
    print("failed over %.0f s after the first probe" % (time.monotonic() - started))
    after, seg = run_tasks([("gp_hang_info", {}), ("gp_segment_info", {})], env=gp.env())
    print("after failover: %s | gp_segment_info: %s" % (after["summary"], seg.get("summary")))
    down = [f for f in after["findings"] if f["class"] == "segment_down"]
    assert down and down[0]["evidence"]["content"] == 1 and down[0]["evidence"]["failed_over"] is True
    assert after["verdict"] == "degraded"
    contents = [x if isinstance(x, int) else x.get("content") for x in seg["summary"]["failed_over"]]
    assert 1 in contents and seg["summary"]["healthy"] is False, seg["summary"]
    started = time.monotonic()
    gp.restore()  # gprecoverseg, then gprecoverseg -r: back in preferred roles
    print("restore (gprecoverseg + rebalance): %.0f s" % (time.monotonic() - started))
    assert gp.healthy()
    final, seg = run_tasks([("gp_hang_info", {}), ("gp_segment_info", {})], env=gp.env())
    assert final["verdict"] == "healthy", final["summary"]
    assert seg["summary"]["healthy"] is True and seg["summary"]["failed_over"] == [], seg["summary"]


def test_coordinator_down_nothing_acts_no_traceback(gp, tmp_path):
    coordinator = gp.node(-1, "p")
    with open(os.path.join(coordinator["datadir"], "postmaster.opts")) as f:
        opts = shlex.split(f.read())[1:]  # the postgres command line gpstart used
    gp.stop_node(-1, "p", mode="fast")
    try:
        info, = run_tasks([("gp_hang_info", {"connect_timeout": 3})], env=gp.env())
        text = str(info)
        assert "Traceback" not in text
        print("coordinator down, gp_hang_info: %s" % (info.get("msg") or info.get("summary")))
        if info.get("failed"):
            assert "coordinator" in info["msg"].lower()
        else:
            assert info["verdict"] == "hung" and classes(info)[0] == "node_unreachable"
        play = run_playbook(gp, "resolve_hang.yml", tmp_path, gp_connect_timeout=3)
        assert "Traceback" not in play.out
        assert play.recap["failed"] == 1 and play.recap["changed"] == 0, play.out[-3000:]
        assert "The coordinator did not answer" in play.out and "Nothing was cancelled" in play.out
    finally:
        proc = gp.as_os_user("pg_ctl start -w -t 120 -l %s/pg_ctl.log -D %s -o %s" % (
            coordinator["datadir"], coordinator["datadir"],
            shlex.quote(" ".join(shlex.quote(o) for o in opts if o not in ("-D", coordinator["datadir"])))))
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert wait_for(gp.answers, timeout=60)
        assert wait_for(lambda: gp.query("SELECT 1 FROM pg_catalog.pg_stat_replication WHERE state = 'streaming'",
                                         dbname="postgres"), timeout=60)  # the standby reconnects


def test_health_check_healthy_passes_global_deadlock_fails(gp, tmp_path):
    check = run_playbook(gp, "health_check.yml", tmp_path)
    cluster = check.stats["clusters"]["localhost"]
    assert check.rc == 0 and cluster["verdict"] == "healthy" and check.stats["failing"] == [], check.out[-3000:]

    gp.query("DROP TABLE IF EXISTS hc; CREATE TABLE hc (id int, val int) DISTRIBUTED BY (id); "
             "INSERT INTO hc SELECT i, i FROM generate_series(1, 100) i")
    ids = {}
    for seg, ident in gp.query("SELECT gp_segment_id, id FROM hc ORDER BY id"):
        ids.setdefault(seg, ident)
    a, b = gp.session("hc-a"), gp.session("hc-b")
    a.sql("BEGIN"); b.sql("BEGIN")
    a.sql("UPDATE hc SET val = val WHERE id = %s", (ids[0],))
    b.sql("UPDATE hc SET val = val WHERE id = %s", (ids[1],))
    b.send("UPDATE hc SET val = val WHERE id = %s", (ids[0],))
    assert b.waiting()
    a.send("UPDATE hc SET val = val WHERE id = %s", (ids[1],))
    assert a.waiting()
    check = run_playbook(gp, "health_check.yml", tmp_path)
    cluster = check.stats["clusters"]["localhost"]
    assert cluster["verdict"] == "hung" and cluster["classes"][0] == "global_deadlock"
    assert cluster["highest_severity"] == "critical" and check.stats["failing"] == ["localhost"]
    assert check.rc != 0 and "gp_fail_severity=high" in check.out
    assert a.waiting(0.1) and b.waiting(0.1), "health_check.yml is read-only"


def _sleep_on_segments(seconds_on_1, seconds_elsewhere):
    """A query over every primary with one QE per segment, each sleeping once (gp_id has one
    row per segment): content 1 for ``seconds_on_1``, the others for ``seconds_elsewhere``.
    Returns 3 (the number of primaries) when it completes."""
    return ("SELECT count(*) FROM gp_dist_random('pg_catalog.gp_id') WHERE pg_catalog.pg_sleep("
            "CASE WHEN pg_catalog.gp_execution_segment() = 1 THEN %s ELSE %s END) IS NOT NULL"
            % (float(seconds_on_1), float(seconds_elsewhere)))


def _proc_state(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


@contextlib.contextmanager
def _stopped(pid):
    """SIGSTOP ``pid`` for the block, SIGCONT after it, always. Test harnesses of other
    clusters on a shared machine that predate the per-cluster ``thaw_all`` send SIGCONT to
    every stopped process: a keeper stops the QE again at once (counted in ``thawed``)."""
    done, thawed = threading.Event(), []

    def keep():
        while not done.wait(0.05):
            if _proc_state(pid) not in ("T", None):
                thawed.append(time.monotonic())
                os.kill(pid, signal.SIGSTOP)
    os.kill(pid, signal.SIGSTOP)
    keeper = threading.Thread(target=keep, daemon=True)
    keeper.start()
    try:
        yield thawed
    finally:
        done.set()
        keeper.join(5)
        os.kill(pid, signal.SIGCONT)
        if thawed:
            print("the QE was resumed by someone else %d time(s) and stopped again" % len(thawed))


def _spin_on_segment_1(iterations):
    """A query over every primary with one QE per segment (gp_id has one row per segment), the
    QE of content 1 busy on the CPU for ``iterations`` turns of a PL/pgSQL loop (``_SPIN``:
    about 0.6 s per 5 million on an idle 2-core machine, a few times that when loaded), the
    others done at once. CPU work, not pg_sleep: a stopped QE makes no progress, however long
    it is stopped. Returns 3."""
    return ("SELECT count(*) FROM gp_dist_random('pg_catalog.gp_id') WHERE public.gpops_spin("
            "CASE WHEN pg_catalog.gp_execution_segment() = 1 THEN %d ELSE 1 END) > 0" % iterations)


# STABLE, not VOLATILE: PL/pgSQL evaluates each expression of a VOLATILE function under a new
# snapshot (pl_exec.c exec_eval_simple_expr: GetTransactionSnapshot, so ProcArrayLock at
# every turn of the loop). SIGSTOP then often takes the QE holding ProcArrayLock, and no
# session of its node starts or ends until SIGCONT: the whole primary freezes, not one QE
# (seen in CI: "failed to acquire resources on one or more segments" three times running).
# A STABLE function's loop takes no lock at all.
_SPIN = ("CREATE OR REPLACE FUNCTION public.gpops_spin(n bigint) RETURNS bigint LANGUAGE plpgsql "
         "STABLE AS $$ DECLARE i bigint := 0; BEGIN WHILE i < n LOOP i := i + 1; END LOOP; "
         "RETURN i; END $$")


def _frozen_while_active(gp, sess_id, pid):
    """SIGSTOP has taken the QE in the middle of its work: T in /proc, active in the catalog
    (read by a new session of every node: False when one cannot start, see _frozen_qe)."""
    try:
        return _proc_state(pid) == "T" and gp.query(
            "SELECT 1 FROM pg_catalog.gp_stat_activity WHERE sess_id = %s AND pid = %s AND state = 'active'",
            (sess_id, pid))
    except Exception:  # noqa: BLE001 - e.g. "failed to acquire resources on one or more segments"
        return False


@contextlib.contextmanager
def _frozen_qe(gp, sess_id, pid, attempts=3):
    """The QE stopped (``_stopped``) at a moment when its node still starts new sessions.
    SIGSTOP may take it while it holds a shared-memory lock a starting backend needs (see
    ``_SPIN``); then no new session of that node starts until SIGCONT ("failed to acquire
    resources on one or more segments ... FTS detected one or more segments are down"),
    which is not the incident this test is about: such a moment is thawed and another
    taken."""
    for _attempt in range(attempts):
        with _stopped(pid):
            if wait_for(lambda: _frozen_while_active(gp, sess_id, pid), timeout=5):
                yield
                return
        time.sleep(0.5)
    pytest.fail("the QE %d could not be frozen while its node still starts sessions (%d attempts)"
                % (pid, attempts))


def _active_qe(gp, sess_id, content):
    rows = gp.query("SELECT pid FROM pg_catalog.gp_stat_activity WHERE sess_id = %s AND gp_segment_id = %s "
                    "AND state = 'active'", (sess_id, content))
    return rows[0][0] if rows else None


def test_frozen_qe_is_a_stuck_qe_until_sigcont(gp, tmp_path):
    """A QE on primary 1 frozen with SIGSTOP during a query over every segment: the QD waits on
    IPC/Interconnect, the QEs of content 0 and 2 finish and go idle. gp_hang_info names the QE
    (content 1, its pid, /proc state T), its session and QD; health_check.yml fails at its
    default severity (high); after SIGCONT the query finishes and the finding is gone."""
    gp.query(_SPIN)
    s = gp.session("frozen-qe")
    s.send(_spin_on_segment_1(50000000))
    pid = wait_for(lambda: _active_qe(gp, s.sess_id, 1), timeout=10)
    assert pid, "no active QE of the query on content 1"
    with _frozen_qe(gp, s.sess_id, pid):
        started = time.monotonic()
        assert wait_for(lambda: not _active_qe(gp, s.sess_id, 0) and not _active_qe(gp, s.sess_id, 2), timeout=30)
        time.sleep(max(0.0, 11 - (time.monotonic() - started)))  # past stuck_qe_min_wait (10 s)
        info, = run_tasks([("gp_hang_info", {})], env=gp.env())
        print("frozen QE %d: %s" % (pid, info["summary"]))
        stuck = [f for f in info["findings"] if f["class"] == "stuck_qe"]
        assert len(stuck) == 1, info["summary"]
        ev = stuck[0]["evidence"]
        assert (ev["content"], ev["dbid"], ev["pid"], ev["process_state"]) == (1, gp.node(1)["dbid"], pid, "T")
        assert (ev["sess_id"], ev["qd_pid"], ev["qd_wait"]) == (s.sess_id, s.pid, "IPC/Interconnect")
        assert ev["done_contents"] == [0, 2] and ev["qd_wait_s"] >= 10
        assert stuck[0]["severity"] == "high" and info["verdict"] == "hung"
        assert "kill -CONT %d" % pid in stuck[0]["remedy"]["text"]
        check = run_playbook(gp, "health_check.yml", tmp_path, gp_timeline_minutes=0)
        cluster = check.stats["clusters"]["localhost"]
        assert "stuck_qe" in cluster["classes"] and check.stats["failing"] == ["localhost"], check.out[-3000:]
        assert check.rc != 0 and cluster["verdict"] == "hung"
        assert s.waiting(0.1), "the query must still wait: nothing was done to it"
    assert s.result(120) == ("ok", [(3,)])
    after, = run_tasks([("gp_hang_info", {})], env=gp.env())
    assert "stuck_qe" not in classes(after), after["summary"]


def test_long_query_on_every_segment_is_not_a_stuck_qe(gp):
    """Healthy and busy: every segment's QE still works on the query after stuck_qe_min_wait,
    none is done and none is stopped, so no QE is singled out."""
    s = gp.session("busy")
    s.send(_sleep_on_segments(120, 120))  # cancelled when the test ends
    assert wait_for(lambda: all(_active_qe(gp, s.sess_id, c) for c in (0, 1, 2)), timeout=10)
    time.sleep(3)
    info, = run_tasks([("gp_hang_info", {"stuck_qe_min_wait": 3})], env=gp.env())
    qd = [b for b in info["snapshot"]["backends"] if b["content"] == -1 and b["pid"] == s.pid]
    assert qd and qd[0]["wait_event"] == "Interconnect", qd  # the QD did wait on its QEs
    assert "stuck_qe" not in classes(info), info["summary"]
    assert info["verdict"] == "healthy", info["summary"]


def test_qe_killed_segment_reset_is_segment_restarted(gp):
    """kill -9 of a QE on primary 1 during a query: the query fails, the primary's postmaster
    resets its children and runs crash recovery (pg_postmaster_start_time() unchanged, a new
    checkpointer). gp_hang_info names content 1 and the reset time (medium); with a window
    shorter than the reset's age it is not reported. The primary is restarted at the end, so
    later tests see a restart (info), not a crash reset."""
    before, = run_tasks([("gp_hang_info", {})], env=gp.env())
    assert not [f for f in before["findings"] if f["class"] == "segment_restarted"
                and f["evidence"]["kind"] == "crash_reset"], before["summary"]
    s = gp.session("killed-qe")
    s.send(_sleep_on_segments(20, 1))
    pid = wait_for(lambda: _active_qe(gp, s.sess_id, 1), timeout=10)
    assert pid
    killed_at = time.time()
    os.kill(pid, signal.SIGKILL)
    try:
        status, error = s.result(30)
        assert status == "error" and "seg1" in str(error), (status, error)
        assert wait_for(lambda: _answers(gp, 1), timeout=60)
        info, = run_tasks([("gp_hang_info", {})], env=gp.env())
        print("QE %d killed: %s" % (pid, info["summary"]))
        restarted = [f for f in info["findings"] if f["class"] == "segment_restarted"]
        assert [f["evidence"]["content"] for f in restarted] == [1], info["summary"]
        ev = restarted[0]["evidence"]
        assert ev["kind"] == "crash_reset" and restarted[0]["severity"] == "medium"
        assert ev["dbid"] == gp.node(1)["dbid"] and ev["postmaster_start"] < ev["restarted_at"]
        reset_at = datetime.datetime.fromisoformat(ev["restarted_at"]).timestamp()
        assert abs(reset_at - killed_at) < 30, (ev, killed_at)
        assert info["verdict"] in ("degraded", "hung")
        time.sleep(3)
        small, = run_tasks([("gp_hang_info", {"segment_restart_window": 1})], env=gp.env())
        assert "segment_restarted" not in classes(small), small["summary"]
    finally:
        proc = gp.as_os_user("pg_ctl restart -w -t 120 -m fast -D %s" % gp.node(1)["datadir"])
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert wait_for(lambda: _answers(gp, 1), timeout=60)
    after, = run_tasks([("gp_hang_info", {})], env=gp.env())
    print("after the restart of primary 1: %s" % after["summary"])
    kinds = [(f["evidence"]["content"], f["evidence"]["kind"], f["severity"])
             for f in after["findings"] if f["class"] == "segment_restarted"]
    assert kinds == [(1, "restart", "info")], after["summary"]


def _answers(gp, content):
    try:
        return bool(gp.query("SELECT 1", content=content, dbname="postgres"))
    except Exception:  # noqa: BLE001 - not answering yet
        return False
