"""gp_hang_info through Ansible on the sandbox: each injected hang is reported as the
right finding, and only it (besides the gdd_status info finding), at the right
severity; read-only (changed false, check mode alike); a frozen segment costs at most
the time budget and is named."""
import time

import pytest
from gpsandbox import scenarios

from playbook import run_tasks

pytestmark = pytest.mark.integration


def problems(result):
    assert not result.get("failed"), result.get("msg")
    assert result["changed"] is False
    assert result["findings"][-1]["class"] == "gdd_status"
    return {f["class"]: f["severity"] for f in result["findings"] if f["severity"] != "info"}


def finding(result, cls):
    (match,) = [f for f in result["findings"] if f["class"] == cls]
    return match


def diagnose(sb, *args_list, check=False):
    return run_tasks([("gp_hang_info", args, check) for args in args_list], env=sb.coordinator_env())


def test_healthy_cluster_has_no_finding_and_check_mode_is_the_same(clean_cluster):
    real, checked = run_tasks([("gp_hang_info", {}), ("gp_hang_info", {}, True)],
                              env=clean_cluster.coordinator_env())
    assert problems(real) == {} and problems(checked) == {}
    assert real["verdict"] == "healthy" and real["highest_severity"] == "info"
    assert real["snapshot"]["source"] == "dispatch" and real["snapshot"]["unreachable"] == {}


def test_global_deadlock(clean_cluster):
    with scenarios.global_deadlock(clean_cluster) as dl:
        (result,) = diagnose(clean_cluster, {})
        assert problems(result) == {"global_deadlock": "critical"}
        f = finding(result, "global_deadlock")
        b = dl.sessions["B"]
        assert [v["gxid"] for v in f["evidence"]["victims"]] == [b["gxid"]]
        assert f["evidence"]["victims"][0]["coordinator_pid"] == b["coordinator_pid"]
        assert f["remedy"]["module"] == "gpops.greenplum.gp_deadlock"


def test_blocking_chain_and_its_threshold(clean_cluster):
    with scenarios.blocking_chain(clean_cluster, waiters=3) as chain:
        default, strict = diagnose(clean_cluster, {}, {"wait_threshold": 0})
        assert problems(default) == {"blocking_chain": "medium"}
        assert problems(strict) == {"blocking_chain": "high"}
        root = finding(default, "blocking_chain")["evidence"]["root"]
        assert root["coordinator_pid"] == chain.sessions["holder"]["coordinator_pid"]
        assert root["state"].startswith("idle in transaction")
        assert finding(default, "blocking_chain")["evidence"]["waiter_count"] == 3


def test_lock_queue_counts_waiters_behind_the_queued_lock(clean_cluster):
    with scenarios.lock_queue(clean_cluster, waiters=2) as queue:
        (result,) = diagnose(clean_cluster, {})
        assert problems(result) == {"blocking_chain": "medium"}
        evidence = finding(result, "blocking_chain")["evidence"]
        assert evidence["root"]["coordinator_pid"] == queue.sessions["holder"]["coordinator_pid"]
        assert evidence["waiter_count"] == 3


def fts_budget(result):
    """FTS's whole budget to mark a dead mirror down, from the settings read (seconds)."""
    s = {k: float(v) for k, v in result["facts"]["settings"].items() if k.startswith("gp_fts_")}
    return (s["gp_fts_probe_interval"] + s["gp_fts_mark_mirror_down_grace_period"]
            + s["gp_fts_probe_timeout"] * (s["gp_fts_probe_retries"] + 1))


def test_mirror_down_syncrep_wait_then_fts_not_probing(clean_cluster):
    # The scenario pauses the sandbox's FTS: once the commits have waited longer than FTS's
    # whole budget (its settings are small on the sandbox), FTS is not probing.
    with scenarios.mirror_down_syncrep(clean_cluster, content=0):
        (result,) = diagnose(clean_cluster, {})
        evidence = finding(result, "syncrep_wait")["evidence"]
        assert evidence["content"] == 0 and evidence["waiting_count"] >= 2
        assert evidence["mirror"]["status"] == "u" and evidence["fts_has_acted"] is False
        budget = fts_budget(result)
        expected = {"syncrep_wait": "critical"}
        if evidence["longest_wait_seconds"] > budget:
            expected["fts_not_probing"] = "high"
        assert problems(result) == expected
        time.sleep(max(0.0, budget + 1 - evidence["longest_wait_seconds"]))
        (later,) = diagnose(clean_cluster, {})
        assert problems(later) == {"syncrep_wait": "critical", "fts_not_probing": "high"}
        assert finding(later, "fts_not_probing")["evidence"]["contents"] == [0]


def test_frozen_segment_is_named_within_the_budget(clean_cluster):
    with scenarios.frozen_segment(clean_cluster, content=1):
        started = time.monotonic()
        (result,) = diagnose(clean_cluster, {"statement_timeout": 8})
        elapsed = time.monotonic() - started
        assert problems(result) == {"node_unreachable": "critical"}
        nodes = finding(result, "node_unreachable")["evidence"]["nodes"]
        assert [n["content"] for n in nodes] == [1]
        assert result["elapsed_s"] < 8 * 2 + 5  # one statement_timeout, and some slack
        assert elapsed < 120  # ansible-playbook start included


def test_prepared_xact_in_doubt_then_orphaned(clean_cluster):
    with scenarios.prepared_xact(clean_cluster, content=0) as px:
        young, orphan = diagnose(clean_cluster, {}, {"prepared_xact_age": 0})
        assert problems(young) == {"blocking_chain": "medium"}
        assert finding(young, "blocking_chain")["evidence"]["root"]["kind"] == "prepared_xact"
        assert problems(orphan) == {"orphaned_prepared_xact": "high"}
        evidence = finding(orphan, "orphaned_prepared_xact")["evidence"]
        assert [p["gid"] for p in evidence["prepared"]] == [px.gid]
        assert evidence["blocked"][0]["waiter_count"] == 1


def test_bad_input_names_the_option(clean_cluster):
    bad_age, bad_filter = diagnose(clean_cluster, {"wait_threshold": -1},
                                   {"never_choose": "usename =="})
    assert bad_age["failed"] and "wait_threshold" in bad_age["msg"]
    assert bad_filter["failed"] and "never_choose" in bad_filter["msg"]


def test_never_waits_on_a_lock_itself(clean_cluster):
    # A session holding pg_class exclusively blocks every catalog read on the coordinator;
    # the diagnosis must give up after its lock_timeout and say why, not queue behind it.
    with clean_cluster.connect(-1) as holder:
        holder.execute("BEGIN")
        holder.execute("LOCK TABLE pg_catalog.pg_class IN ACCESS EXCLUSIVE MODE")
        started = time.monotonic()
        (result,) = diagnose(clean_cluster, {"statement_timeout": 20})
        elapsed = time.monotonic() - started
        holder.execute("ROLLBACK")
    assert problems(result) == {"node_unreachable": "critical"}, result.get("summary")
    reasons = [n["reason"] for n in finding(result, "node_unreachable")["evidence"]["nodes"]]
    # Usually the catalog read hits lock_timeout; when the relcache init file is being
    # rebuilt, the new connection's own start-up reads pg_class and connect_timeout ends it.
    assert any("lock timeout" in r or r.startswith("timeout") or "timeout:" in r for r in reasons), reasons
    assert result["elapsed_s"] < 20 and elapsed < 120, (result["elapsed_s"], elapsed)


def test_dotted_edge_is_no_deadlock_until_c_ends(clean_cluster):
    with scenarios.dotted_edge(clean_cluster) as de:
        (before,) = diagnose(clean_cluster, {})
        assert problems(before) == {"blocking_chain": "medium"}
        root = finding(before, "blocking_chain")["evidence"]["root"]
        assert root["coordinator_pid"] == de.sessions["C"]["coordinator_pid"]
        de.end_c()
        (after,) = diagnose(clean_cluster, {})
        assert problems(after) == {"global_deadlock": "critical"}
        victims = finding(after, "global_deadlock")["evidence"]["victims"]
        assert [v["gxid"] for v in victims] == [de.sessions["B"]["gxid"]]


def test_prepared_xact_whose_commit_is_in_progress_is_never_orphaned(clean_cluster):
    # As in the capture: PREPAREd on two segments, the QD suspended before COMMIT PREPARED;
    # even with prepared_xact_age 0 it is the root of a chain, never an orphan.
    with scenarios.prepared_xact(clean_cluster, content=0, orphan=False) as px:
        (result,) = diagnose(clean_cluster, {"prepared_xact_age": 0})
        assert problems(result) == {"blocking_chain": "medium"}
        f = finding(result, "blocking_chain")
        assert f["evidence"]["root"]["kind"] == "prepared_xact"
        assert f["evidence"]["root"]["in_doubt"] is False
        assert f["evidence"]["root"]["coordinator_pid"] == px.sessions["committer"]["coordinator_pid"]
        assert "do not kill" in f["remedy"]["text"]


def test_evidence_full_streams_every_row_to_a_file_and_the_result_stays_scoped(clean_cluster, tmp_path):
    """evidence: full writes every pg_locks row to a JSON-lines file (changed true); the
    result keeps only the rows the diagnosis read, with counts of all; check mode writes
    nothing; a missing evidence_dir is named."""
    import json
    import os
    with scenarios.global_deadlock(clean_cluster):
        full, checked, bad = run_tasks(
            [("gp_hang_info", {"evidence": "full", "evidence_dir": str(tmp_path)}),
             ("gp_hang_info", {"evidence": "full", "evidence_dir": str(tmp_path)}, True),
             ("gp_hang_info", {"evidence": "full"})], env=clean_cluster.coordinator_env())
    assert full["changed"] is True and "global_deadlock" in {f["class"] for f in full["findings"]}
    path = full["evidence"]["path"]
    assert os.path.dirname(path) == str(tmp_path)
    with open(path) as fh:
        lines = [json.loads(line) for line in fh]
    locks = [line["row"] for line in lines if line["item"] == "locks"]
    assert len(locks) == full["evidence"]["rows"]["locks"] > 0
    snapshot = full["snapshot"]
    assert snapshot["scope"] == "waits"
    assert snapshot["counts"]["lock_rows_read"] == len(snapshot["locks"]) <= snapshot["counts"]["lock_rows"]
    assert snapshot["counts"]["waiting_lock_rows"] >= 2
    assert checked["changed"] is False and checked["evidence"]["path"] is None
    assert os.listdir(str(tmp_path)) == [os.path.basename(path)]
    assert bad.get("failed") and "evidence_dir" in bad["msg"]
