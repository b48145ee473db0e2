"""playbooks/health_check.yml for real: read-only, publishes set_stats under one key,
fails only at or above gp_fail_severity, refuses destructive variables.

The refusal and unreachable-coordinator tests need no cluster; the others run on the
sandbox (``sandbox`` fixture of tests/integration/conftest.py)."""
import json
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ANSIBLE_PLAYBOOK = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")


def run_health_check(extra_vars, env=None, tmp_path=None, timeout=300, hosts=("localhost",)):
    """Run the playbook; ``hosts``: inventory lines of group greenplum (each run locally).
    Returns (exit code, output, gpops_health stats or None)."""
    inventory = os.path.join(str(tmp_path), "inventory")
    with open(inventory, "w") as f:
        f.write("[greenplum]\n" + "".join(
            "%s ansible_connection=local ansible_python_interpreter=%s\n" % (host, sys.executable)
            for host in hosts))
    run_env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(ROOT, ".collections"),
                   ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"), ANSIBLE_NOCOLOR="1",
                   ANSIBLE_SHOW_CUSTOM_STATS="1", ANSIBLE_LOCALHOST_WARNING="false")
    for name in ("PGHOST", "PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE", "PGOPTIONS"):
        run_env.pop(name, None)
    run_env.update(env or {})
    proc = subprocess.run([ANSIBLE_PLAYBOOK, "-i", inventory, "-e", json.dumps(extra_vars),
                           os.path.join(ROOT, "playbooks", "health_check.yml")],
                          cwd=ROOT, env=run_env, capture_output=True, text=True, timeout=timeout,
                          check=False)
    output = proc.stdout + proc.stderr
    # The default callback prints per_host: false stats as "RUN: {json}" on one line.
    found = re.search(r"^\s*RUN: (\{.*\})\s*$", proc.stdout, re.M)
    stats = json.loads(found.group(1)).get("gpops_health") if found else None
    return proc.returncode, output, stats


@pytest.mark.parametrize("variable, value", [("gp_resolve_deadlocks", True),
                                             ("gp_resolve_orphaned_prepared", "true"),
                                             ("gp_allow_sync_off", "yes"),
                                             ("gp_deadlock_terminate", 1)])
def test_refuses_destructive_variables(tmp_path, variable, value):
    rc, output, stats = run_health_check({variable: value}, tmp_path=tmp_path)
    assert rc != 0 and stats is None
    assert "read-only" in output and variable in output
    assert "Diagnose" not in output  # refused before connecting to anything


def test_false_values_are_not_refused_and_unreachable_coordinator_is_a_finding(tmp_path):
    # Nothing listens on port 1: the coordinator does not answer; the job still publishes.
    env = {"PGHOST": "127.0.0.1", "PGPORT": "1", "PGCONNECT_TIMEOUT": "2"}
    rc, output, stats = run_health_check(
        {"gp_resolve_deadlocks": False, "gp_allow_sync_off": "false", "gp_fail_severity": "never"},
        env=env, tmp_path=tmp_path)
    assert rc == 0, output
    cluster = stats["clusters"]["localhost"]
    assert cluster["verdict"] == "hung" and cluster["classes"][0] == "node_unreachable"
    assert cluster["highest_severity"] == "critical" and stats["failing"] == []

    rc, output, stats = run_health_check({"gp_fail_severity": "critical"}, env=env, tmp_path=tmp_path)
    assert rc != 0 and stats["failing"] == ["localhost"]
    assert "gp_fail_severity=critical" in output


def test_bad_fail_severity_is_refused(tmp_path):
    rc, output, _stats = run_health_check({"gp_fail_severity": "urgent"}, tmp_path=tmp_path)
    assert rc != 0 and "gp_fail_severity must be one of" in output


def _classes(cluster):
    """The finding classes but ``segment_restarted``: earlier tests of the session stop and
    start sandbox nodes, which that finding reports, truthfully, for an hour."""
    return [c for c in cluster["classes"] if c != "segment_restarted"]


@pytest.mark.integration
def test_healthy_cluster_passes_and_publishes(clean_cluster, tmp_path):
    reports = tmp_path / "reports"
    rc, output, stats = run_health_check({"gp_report_dir": str(reports)},
                                         env=clean_cluster.coordinator_env(), tmp_path=tmp_path)
    assert rc == 0, output
    cluster = stats["clusters"]["localhost"]
    assert cluster["verdict"] == "healthy" and cluster["failing"] is False and stats["failing"] == []
    assert _classes(cluster) == ["gdd_status"]
    assert cluster["report"].startswith(str(reports)) and os.path.exists(cluster["report"])
    assert "localhost: HEALTHY" in output


@pytest.mark.integration
def test_fails_only_at_or_above_the_threshold(clean_cluster, tmp_path):
    from gpsandbox import scenarios
    with scenarios.blocking_chain(clean_cluster, waiters=2):
        env = clean_cluster.coordinator_env()
        rc, output, stats = run_health_check({}, env=env, tmp_path=tmp_path)  # medium < high
        assert rc == 0, output
        assert _classes(stats["clusters"]["localhost"]) == ["blocking_chain", "gdd_status"]
        assert stats["clusters"]["localhost"]["highest_severity"] == "medium"
        rc, output, stats = run_health_check({"gp_fail_severity": "medium"}, env=env,
                                             tmp_path=tmp_path)
        assert rc != 0 and stats["failing"] == ["localhost"]
        assert "blocking_chain" in output


@pytest.mark.integration
def test_many_clusters_one_key_only_the_bad_one_fails(clean_cluster, tmp_path):
    env = clean_cluster.coordinator_env()
    good = ("gp-good gp_login_host=127.0.0.1 gp_login_port=%s gp_login_user=%s gp_login_db=%s"
            % (env["PGPORT"], env["PGUSER"], env["PGDATABASE"]))
    bad = "gp-bad gp_login_host=127.0.0.1 gp_login_port=1 gp_connect_timeout=2"
    rc, output, stats = run_health_check({}, env={"PGPASSWORD": env["PGPASSWORD"]},
                                         tmp_path=tmp_path, hosts=(good, bad))
    assert rc != 0
    assert set(stats["clusters"]) == {"gp-good", "gp-bad"} and stats["failing"] == ["gp-bad"]
    assert stats["clusters"]["gp-good"]["verdict"] == "healthy"
    assert stats["clusters"]["gp-bad"]["classes"][0] == "node_unreachable"
    assert "gp-good: HEALTHY" in output
