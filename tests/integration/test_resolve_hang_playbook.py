"""playbooks/resolve_hang.yml end to end on the sandbox: a real global deadlock is
found and broken (the youngest transaction is the victim, the survivor commits),
check mode leaves both sessions waiting, a second run changes nothing, a blocking
chain without a cycle is left alone, and an unreachable coordinator fails the play
with a message naming the cause, having done nothing."""
import os
import re
import subprocess
import sys

import psycopg
import pytest
from gpsandbox import scenarios

pytestmark = pytest.mark.integration

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RECAP = re.compile(r"^localhost\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


def resolve_hang(sandbox, *extra, env=None):
    """Run the playbook against the sandbox's coordinator; return (recap dict, output)."""
    run_env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"), ANSIBLE_NOCOLOR="1",
                   ANSIBLE_LOCALHOST_WARNING="false", **sandbox.coordinator_env())
    run_env.update(env or {})
    cmd = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", "localhost,", "-c", "local",
           "-e", "gp_hosts=localhost", "-e", "ansible_python_interpreter=" + sys.executable,
           os.path.join(ROOT, "playbooks", "resolve_hang.yml")] + list(extra)
    proc = subprocess.run(cmd, env=run_env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    match = RECAP.search(proc.stdout)
    assert match, "no PLAY RECAP:\n%s\n%s" % (proc.stdout[-3000:], proc.stderr[-3000:])
    ok, changed, unreachable, failed = map(int, match.groups())
    return dict(ok=ok, changed=changed, unreachable=unreachable, failed=failed), proc.stdout


def test_global_deadlock_found_broken_and_second_run_unchanged(sandbox, tmp_path):
    with scenarios.global_deadlock(sandbox) as deadlock:
        victim_gxid = max(s["gxid"] for s in deadlock.sessions.values())

        recap, out = resolve_hang(sandbox, "--check")
        assert recap["failed"] == 0, out
        assert "global_deadlock" in out and "gxid %d" % victim_gxid in out
        assert deadlock.wait(timeout=3) == {"A": {"ok": None, "error": None, "sqlstate": None},
                                            "B": {"ok": None, "error": None, "sqlstate": None}}, \
            "check mode must leave both sessions waiting"

        recap, out = resolve_hang(sandbox, "-e", "gp_report_dir=%s" % tmp_path)
        assert recap["failed"] == 0 and recap["changed"] >= 1, out
        outcomes = deadlock.wait(timeout=30)
        victim = [label for label, s in deadlock.sessions.items() if s["gxid"] == victim_gxid][0]
        survivor = "A" if victim == "B" else "B"
        assert outcomes[victim]["ok"] is False and outcomes[victim]["sqlstate"] == "57014"
        assert outcomes[survivor]["ok"] is True
        # The survivor's own connection (the scenario API has no public accessor for it):
        # its distributed transaction is still open and commits.
        conn = deadlock._sessions[survivor].conn
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        conn.execute("COMMIT")
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        reports = sorted(os.listdir(tmp_path))
        assert any(r.endswith(".json") for r in reports) and any(r.endswith(".md") for r in reports)

        recap, out = resolve_hang(sandbox)
        assert recap["failed"] == 0 and recap["changed"] == 0, out
        assert "What was done:" in out and '"nothing"' in out


def test_blocking_chain_is_reported_and_nothing_is_killed(sandbox):
    with scenarios.blocking_chain(sandbox, waiters=2) as chain:
        recap, out = resolve_hang(sandbox)
        assert recap["failed"] == 0 and recap["changed"] == 0, out
        assert "blocking_chain" in out
        assert all(o["ok"] is None for o in chain.wait(timeout=2).values()), "a waiter was disturbed"


def test_unreachable_coordinator_fails_naming_the_cause(sandbox):
    recap, out = resolve_hang(sandbox, "-e", "gp_connect_timeout=2", env={"PGPORT": "1"})
    assert recap["failed"] == 1 and recap["changed"] == 0, out
    assert "The coordinator did not answer" in out and "connection refused" in out
