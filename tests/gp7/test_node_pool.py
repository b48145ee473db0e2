"""The per-node fallback on real Greenplum 7 (issue 13): a bounded pool (max_workers) that
cancels the statements it abandons, so a slow node costs its timeout and no statement of
the tool goes on running on any node.
"""
import os
import signal
import time

import pytest

from playbook import run_tasks

from ansible_collections.gpops.greenplum.plugins.module_utils.collect import connection
from ansible_collections.gpops.greenplum.plugins.module_utils.common.records import SegmentConfig

pytestmark = pytest.mark.gp7

APP = connection.APPLICATION_NAME


def tool_sessions(gp, content):
    """The tool's sessions on one node, by application_name (utility mode, this node's own)."""
    return gp.query("SELECT pid, state, query FROM pg_catalog.pg_stat_activity WHERE application_name = %s",
                    (APP,), content=content)


def segment(gp, content):
    n = gp.node(content)
    return SegmentConfig.from_row(dict(n, hostname="127.0.0.1", address="127.0.0.1"))


def test_abandoned_statements_are_cancelled_and_the_pool_is_bounded(gp):
    params = dict(login_host="127.0.0.1", login_port=gp.port, login_user="gpadmin", login_db="postgres",
                  connect_timeout=5, statement_timeout=60.0)
    nodes = [segment(gp, c) for c in (0, 1, 2)]
    at_once, peak = [0], [0]

    def slow(node):
        at_once[0] += 1
        peak[0] = max(peak[0], at_once[0])
        try:
            with connection.connect(params, host=node.address, port=node.port, utility=True) as conn:
                return connection.query(conn, "SELECT pg_catalog.pg_sleep(30)")
        finally:
            at_once[0] -= 1

    started = time.monotonic()
    results, unreachable = connection.run_on_nodes(nodes, slow, 3.0, max_workers=2)
    elapsed = time.monotonic() - started
    assert results == {}
    assert elapsed < 3.0 + connection.CANCEL_WAIT_S + 1.0
    assert peak[0] <= 2
    # Two ran and were cancelled at the deadline; the third was never started.
    assert sum("not started" in r for r in unreachable.values()) == 1, unreachable
    # This process still holds its threads: only the cancel can have ended the statements.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(tool_sessions(gp, c) for c in (0, 1, 2)):
        time.sleep(0.2)
    assert not any(tool_sessions(gp, c) for c in (0, 1, 2)), [tool_sessions(gp, c) for c in (0, 1, 2)]


def frozen(gp, content):
    """pids of the node's postmaster and its children, for SIGSTOP / SIGCONT."""
    node = gp.node(content)
    postmaster = gp.postmaster_pid(node["datadir"])
    pids = [postmaster]
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open("/proc/%s/stat" % pid) as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == postmaster:
                        pids.append(int(pid))
            except (OSError, ValueError, IndexError):
                pass
    return pids


def _signal(pid, signum):
    """A child of the postmaster may exit between the listing and the signal."""
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def test_a_frozen_primary_costs_its_timeout_and_leaves_no_session_behind(gp):
    pids = frozen(gp, 1)
    for pid in pids:
        _signal(pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        result, = run_tasks([("gp_locks_info", {"statement_timeout": 6, "max_workers": 2})], env=gp.env())
        elapsed = time.monotonic() - started
    finally:
        for pid in pids:
            _signal(pid, signal.SIGCONT)
    assert not result.get("failed"), result.get("msg")
    assert list(result["unreachable_nodes"]) == ["1"], result["unreachable_nodes"]
    assert result["unreachable_nodes"]["1"].startswith("timeout")
    assert result["source"] == "utility"
    assert elapsed < 6 + connection.CANCEL_WAIT_S + 10  # ansible-playbook's own start included
    # The other nodes: no session of the tool left (coordinator, contents 0 and 2).
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(tool_sessions(gp, c) for c in (-1, 0, 2)):
        time.sleep(0.5)
    assert not any(tool_sessions(gp, c) for c in (-1, 0, 2)), [tool_sessions(gp, c) for c in (-1, 0, 2)]
