"""The gpsandbox command line against the running sandbox: status, fts control,
and a scenario held in the background until `release`."""
import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration

SANDBOX_PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "sandbox")


def cli(sb, *args, check=True):
    env = dict(os.environ, PYTHONPATH=SANDBOX_PATH, GPSANDBOX_DIR=sb.base_dir,
               GPSANDBOX_PORT=str(sb.base_port))
    proc = subprocess.run([sys.executable, "-m", "gpsandbox"] + list(args), env=env,
                          capture_output=True, text=True, timeout=120)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def test_status_json_and_text(sandbox):
    status = json.loads(cli(sandbox, "status", "--json").stdout)
    assert status["running"] and status["segments"] == 3 and len(status["nodes"]) == 7
    assert status["scenarios"] == {}
    text = cli(sandbox, "status").stdout
    assert "running" in text and str(sandbox.base_port + 7) in text


def test_fts_pause_resume(sandbox, clean_cluster):
    try:
        assert json.loads(cli(sandbox, "fts", "pause").stdout)["paused"] is True
        assert sandbox.fts.status()["paused"]
    finally:
        assert json.loads(cli(sandbox, "fts", "resume").stdout)["paused"] is False
    assert json.loads(cli(sandbox, "fts", "status").stdout)["running"] is True


def test_inject_in_background_until_release(sandbox, clean_cluster):
    report = json.loads(cli(sandbox, "inject", "blocking_chain", "--waiters", "2",
                            "--background").stdout)
    try:
        assert sorted(report["sessions"]) == ["holder", "waiter1", "waiter2"]
        held = json.loads(cli(sandbox, "status", "--json").stdout)["scenarios"]
        assert list(held) == ["blocking_chain"]
        pids = sorted(s["coordinator_pid"] for s in report["sessions"].values())
        live = sandbox.query(-1, "SELECT pid FROM pg_stat_activity WHERE application_name LIKE "
                                 "'scenario\\_%' ORDER BY pid", utility=True)
        assert [r[0] for r in live] == pids
    finally:
        assert "blocking_chain" in cli(sandbox, "release").stdout
    assert sandbox.leftovers() == []


def test_unknown_scenario_is_a_usage_error(sandbox):
    proc = cli(sandbox, "inject", "no_such_thing", check=False)
    assert proc.returncode == 2 and "invalid choice" in proc.stderr


def test_reset_undoes_what_an_interrupted_run_left(sandbox, clean_cluster):
    from gpsandbox import scenarios
    left_behind = scenarios.prepared_xact(sandbox)  # as if the test process had died
    sandbox.fts.pause()
    sandbox.stop_node(2, "m")
    try:
        assert "mirror2 is not running" in sandbox.leftovers()
        proc = cli(sandbox, "reset")
        assert "clean" in proc.stdout
        assert sandbox.leftovers() == []
    finally:
        left_behind.cleanup()
