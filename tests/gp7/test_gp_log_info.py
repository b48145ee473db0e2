"""gp_log_info on real Greenplum 7: each incident is caused for real, then the module
(through Ansible) must find it in Greenplum's own logs, classified, attributed to the
right node and session, and chained; with the coordinator down it reads the files."""
import glob
import os
import signal
import time

import psycopg
import pytest

from gpcluster import wait_for
from playbook import run_task

pytestmark = pytest.mark.gp7


def log_info(gp, since, **args):
    args = dict(since=str(since - 1.0), **args)
    result = run_task("gp_log_info", args, env=gp.env())
    assert not result.get("failed"), result.get("msg")
    assert result["changed"] is False and result["complete"] is True
    return result


def of(result, cls, **node):
    return [e for e in result["events"] if e["class"] == cls
            and all(e["node"].get(k) == v for k, v in node.items())]


def chain(result, event):
    return next(c for c in result["chains"] if c["id"] == event["chain"])


def set_guc(gp, name, value):
    proc = gp.as_os_user("gpconfig -c %s -v %s --skipvalidation && gpstop -u" % (name, value))
    # gpstop -u exits 1 when a node is down ("Some segment postmasters were not reloaded")
    assert proc.returncode == 0 or "were not reloaded" in proc.stdout, proc.stdout + proc.stderr


@pytest.fixture
def table(gp):
    gp.query("DROP TABLE IF EXISTS tlog; CREATE TABLE tlog (id int, val int) DISTRIBUTED BY (id); "
             "INSERT INTO tlog SELECT i, i FROM generate_series(1, 100) i")
    out = {}
    for seg, ident in gp.query("SELECT gp_segment_id, id FROM tlog ORDER BY id"):
        out.setdefault(seg, []).append(ident)
    return out


def test_lock_timeout_cancel_terminate_and_gdd_victim(gp, table):
    t0 = time.time()
    holder, waiter = gp.session("holder"), gp.session("waiter")
    holder.sql("BEGIN")
    holder.sql("LOCK TABLE tlog IN ACCESS EXCLUSIVE MODE")
    waiter.sql("SET lock_timeout = '500ms'")
    with pytest.raises(psycopg.errors.LockNotAvailable):
        waiter.sql("SELECT count(*) FROM tlog")
    waiter.sql("SET lock_timeout = 0")
    waiter.send("SELECT count(*) FROM tlog")
    assert waiter.waiting()
    gp.query("SELECT pg_catalog.pg_cancel_backend(%s)", (waiter.pid,))
    assert waiter.result(10)[0] == "error"
    doomed = gp.session("doomed")
    doomed.send("SELECT count(*) FROM tlog")
    assert doomed.waiting()
    gp.query("SELECT pg_catalog.pg_terminate_backend(%s)", (doomed.pid,))
    assert doomed.result(10)[0] == "error"
    holder.sql("ROLLBACK")

    set_guc(gp, "gp_global_deadlock_detector_period", 5)
    try:
        s10, s20 = gp.session("con10"), gp.session("con20")
        s10.sql("BEGIN")
        s20.sql("BEGIN")
        s10.sql("UPDATE tlog SET val = val WHERE id = %s", (table[0][0],))
        s20.sql("UPDATE tlog SET val = val WHERE id = %s", (table[1][0],))
        victim_gxid = s20.gxid()
        s20.send("UPDATE tlog SET val = val WHERE id = %s", (table[0][0],))
        assert s20.waiting()
        s10.send("UPDATE tlog SET val = val WHERE id = %s", (table[1][0],))
        kind, err = s20.result(30)   # GDD cancels the youngest: s20
        assert kind == "error" and "global deadlock detector" in str(err)
        assert s10.result(10)[0] == "ok"
    finally:
        set_guc(gp, "gp_global_deadlock_detector_period", 3600)

    result = log_info(gp, t0, source="coordinator")
    assert result["source"] == "gp_log_system"
    timeout, = [e for e in of(result, "lock_timeout", content=-1) if e["session"]["id"] == waiter.sess_id]
    assert timeout["node"]["dbid"] == 1 and timeout["pid"] == waiter.pid
    assert [e["session"]["id"] for e in of(result, "statement_cancelled")] == [waiter.sess_id]
    assert doomed.sess_id in [e["session"]["id"] for e in of(result, "session_terminated")]
    victim, = of(result, "gdd_victim", content=-1)
    assert victim["session"]["id"] == s20.sess_id and victim["gxid"] == victim_gxid
    cycle = [e for e in of(result, "gdd_cycle") if e.get("cancelled_gxids")]
    assert cycle and cycle[0]["cancelled_gxids"] == [victim_gxid]
    c = chain(result, victim)
    assert c["classes"][:2] == ["gdd_cycle", "gdd_victim"] and cycle[0]["chain"] == c["id"]
    assert "global deadlock detected" in c["started_by"]


def test_qe_killed_by_sigkill_postmaster_reset_and_dispatcher_error_chained(gp, table):
    t0 = time.time()
    s = gp.session("killed")
    s.sql("BEGIN")
    s.sql("UPDATE tlog SET val = val WHERE id = %s", (table[1][0],))
    qe = gp.backend_pids(1, "sess_id = %d" % s.sess_id)[0]
    os.kill(qe, signal.SIGKILL)
    with pytest.raises(psycopg.Error):
        s.sql("COMMIT")
    assert wait_for(lambda: gp.query("SELECT count(*) FROM tlog")[0][0] == 100, timeout=60)

    result = log_info(gp, t0)
    dbid = gp.node(1)["dbid"]
    killed = [e for e in of(result, "crash", content=1, dbid=dbid)
              if "(PID %d) was terminated by signal 9" % qe in e["message"]]
    assert killed and killed[0]["severity"] == "critical"
    c = chain(result, killed[0])
    assert c["started_by"] == killed[0]["summary"]
    for cls in ("crash_reset", "crash_recovery", "restart_done", "dispatcher_error"):
        assert cls in c["classes"], (cls, c)
    lost = [e for e in of(result, "dispatcher_error", content=-1) if "seg1" in e["message"]]
    assert lost and lost[0]["chain"] == c["id"] and lost[0]["session"]["id"] == s.sess_id


def test_failed_abort_broadcast_and_segment_panic_in_commit_prepared(gp, table):
    t0 = time.time()
    s = gp.session("aborter")
    s.sql("SET dtx_phase2_retry_second = 2")
    s.sql("BEGIN")
    s.sql("UPDATE tlog SET val = val + 1 WHERE id = %s", (table[0][0],))
    s.sql("UPDATE tlog SET val = val + 1 WHERE id = %s", (table[1][0],))
    gxid = s.gxid()
    gp.inject_fault("transaction_abort_after_distributed_prepared", "error")
    gp.inject_fault("finish_prepared_start_of_function", "error", content=0, end_occurrence=-1)
    with pytest.raises(psycopg.Error):
        s.sql("COMMIT")
    left = gp.query("SELECT gp_execution_segment(), gid FROM gp_dist_random('pg_prepared_xacts')")
    assert left == [(0, str(gxid))]   # the failed abort broadcast left it prepared on content 0
    gp.reset_faults()
    with gp.connect(content=0) as conn:
        conn.execute("ROLLBACK PREPARED '%d'" % gxid)

    c2 = gp.session("committer")
    c2.sql("BEGIN")
    c2.sql("UPDATE tlog SET val = val + 1 WHERE id = %s", (table[0][1],))
    c2.sql("UPDATE tlog SET val = val + 1 WHERE id = %s", (table[1][1],))
    gxid2 = c2.gxid()
    gp.inject_fault("finish_prepared_start_of_function", "panic", content=0)
    c2.sql("COMMIT")   # the coordinator retries Commit Prepared until content 0 is back
    assert wait_for(lambda: gp.query("SELECT count(*) FROM tlog")[0][0] == 100, timeout=60)

    result = log_info(gp, t0)
    unable = [e for e in of(result, "dtx_failure", content=-1) if "unable to complete 'Abort' broadcast" in e["message"]]
    assert len(unable) == 1 and unable[0]["gxid"] == gxid
    c = chain(result, unable[0])
    assert gxid in c["gxids"] and 0 in c["contents"]

    panic, = [e for e in of(result, "panic", content=0) if e["gxid"] == gxid2]
    assert panic["node"]["dbid"] == gp.node(0)["dbid"] and panic["severity"] == "critical"
    assert "two_phase_commit" in panic["context"]
    c = chain(result, panic)
    assert c["started_by"] == panic["summary"]
    retry = [e for e in of(result, "dtx_failure", content=-1) if e["gxid"] == gxid2]
    assert retry and all(e["chain"] == c["id"] for e in retry)
    assert {"crash", "crash_recovery", "restart_done"} <= set(c["classes"])


def test_mirror_stopped_and_marked_down_by_fts(gp, table):
    t0 = time.time()
    default = gp.query("SELECT boot_val FROM pg_catalog.pg_settings "
                       "WHERE name = 'gp_fts_mark_mirror_down_grace_period'")[0][0]
    mirror = gp.node(2, "m")
    set_guc(gp, "gp_fts_mark_mirror_down_grace_period", 2)
    try:
        gp.stop_node(2, "m")
        time.sleep(3)
        assert wait_for(lambda: gp.query("SELECT gp_request_fts_probe_scan()", dbname="postgres")
                        and [n for n in gp.configuration() if n["dbid"] == mirror["dbid"] and n["status"] == "d"],
                        timeout=60, interval=2)
    finally:
        set_guc(gp, "gp_fts_mark_mirror_down_grace_period", default)

    result = log_info(gp, t0)
    down = [e for e in of(result, "fts_config_change", content=-1) if e["fts"]["dbid"] == mirror["dbid"]]
    assert down and down[0]["fts"]["status"] == "d" and down[0]["severity"] == "high"
    off, = [e for e in of(result, "syncrep_off", content=2) if "due to FTS request" in e["message"]]
    assert off["node"]["dbid"] == gp.node(2)["dbid"] and off["chain"] == down[0]["chain"]
    c = chain(result, down[0])
    assert {"fts_config_change", "syncrep_off"} <= set(c["classes"])


def test_files_when_the_coordinator_is_down(gp, tmp_path):
    t0 = time.time()
    datadirs = sorted(glob.glob(os.path.join(gp.base_dir, "datadirs", "*", "demoDataDir*"))
                      + [os.path.join(gp.base_dir, "datadirs", "standby")])
    coordinator = gp.node(-1)["datadir"]
    gp.stop_node(-1)
    try:
        time.sleep(1)
        result = run_task("gp_log_info", {"since": str(t0 - 1), "data_directories": datadirs + [str(tmp_path / "gone")]},
                          env=gp.env())
        assert not result.get("failed"), result.get("msg")
        assert result["source"] == "files" and "connection refused" in result["fallback_reason"]
        assert any("gone" in u["path"] and "does not exist" in u["error"] for u in result["stats"]["unreadable"])
        stop, = [e for e in of(result, "shutdown", content=-1, dbid=1) if "immediate shutdown" in e["message"]]
        assert stop["node"]["role"] == "p" and stop["node"]["datadir"] == coordinator
        assert result["stats"]["lines_read"] > 0 and result["stats"]["skipped_lines"] == 0

        refused = run_task("gp_log_info", {"since": str(t0 - 1)}, env=gp.env())
        assert refused["failed"] and "no data_directories" in refused["msg"]
    finally:
        proc = gp.as_os_user("pg_ctl start -w -t 120 -o '-c gp_role=dispatch' -l %s/pg_ctl.log -D %s"
                             % (coordinator, coordinator))
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert wait_for(gp.answers, timeout=60)


def run_playbook(name, extra_vars, env, tmp_path):
    import json
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    inventory = tmp_path / "inventory"
    inventory.write_text("[greenplum]\nmdw ansible_connection=local ansible_python_interpreter=%s\n" % sys.executable)
    run_env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(root, ".collections"),
                   ANSIBLE_CONFIG=os.path.join(root, "ansible.cfg"), ANSIBLE_NOCOLOR="1",
                   ANSIBLE_LOCALHOST_WARNING="false", **env)
    proc = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", str(inventory),
                           "-e", json.dumps(extra_vars), os.path.join(root, "playbooks", name)],
                          cwd=root, env=run_env, capture_output=True, text=True, timeout=300)
    return proc.returncode, proc.stdout + proc.stderr


def test_health_check_timeline_and_metrics_then_postmortem(gp, tmp_path):
    t0 = time.time()
    s = gp.session("killed2")
    s.sql("BEGIN")
    s.sql("SELECT count(*) FROM gp_dist_random('gp_id')")
    qe = gp.backend_pids(2, "sess_id = %d" % s.sess_id)[0]
    os.kill(qe, signal.SIGKILL)
    assert wait_for(lambda: gp.query("SELECT count(*) FROM gp_dist_random('gp_id')")[0][0] == 3, timeout=60)
    reports, metrics = tmp_path / "reports", tmp_path / "metrics"
    rc, out = run_playbook("health_check.yml", {"gp_report_dir": str(reports), "gp_metrics_dir": str(metrics),
                                                "gp_fail_severity": "never", "gp_timeline_minutes": 2},
                           gp.env(), tmp_path)
    assert rc == 0, out[-3000:]
    md, = glob.glob(str(reports / "gp-hang-mdw-*.md"))
    text = open(md).read()
    assert text.index("## Wait-for graph") < text.index("## Timeline") and "(PID %d) was terminated by signal 9" % qe in text
    prom = open(str(metrics / "gpops_mdw.prom")).read()
    assert 'gpops_up{cluster="mdw"} 1' in prom and prom.endswith("# EOF\n")
    assert 'gpops_log_events{cluster="mdw",class="crash",severity="critical"}' in prom

    rc, out = run_playbook("postmortem.yml", {"gp_since": str(t0 - 1), "gp_report_dir": str(reports)},
                           gp.env(), tmp_path)
    assert rc == 0, out[-3000:]
    md, = glob.glob(str(reports / "gp-timeline-mdw-*.md"))
    text = open(md).read()
    assert "### Chains" in text and "content 2: server process (PID %d) was terminated by signal 9" % qe in text
