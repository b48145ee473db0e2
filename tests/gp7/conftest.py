"""Fixtures for the tests on a real Greenplum 7 cluster (tests/gp7/gpcluster.py,
scripts/greenplum-cluster.sh): the cluster is built, created or started once per test
session, used by one test session at a time, and each test starts and ends on a
healthy cluster (every node up and in sync, no faults, no test sessions left).

GPOPS_GP7_DIR / GPOPS_GP7_PORT choose the cluster (defaults /var/tmp/gpops-gp7 and
7700), so several developers on one machine can run separate clusters.
"""
import os
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
for _path in (HERE, os.path.dirname(HERE), os.path.join(os.path.dirname(HERE), "integration")):
    if _path not in sys.path:
        sys.path.insert(0, _path)

import session_lock  # noqa: E402  (needs the path above)
from gpcluster import GP7Cluster  # noqa: E402


def exclusive(cluster, wait=float(os.environ.get("GPOPS_GP7_LOCK_WAIT", "1800"))):
    """One test session at a time per cluster (tests/session_lock.py)."""
    return session_lock.exclusive(cluster.base_dir, wait, "Greenplum cluster",
                                  "GPOPS_GP7_DIR / GPOPS_GP7_PORT")


@pytest.fixture(scope="session")
def gp7():
    """The running real Greenplum 7 cluster, healthy, used by this test session alone."""
    cluster = GP7Cluster.from_env()
    with exclusive(cluster):
        started = time.monotonic()
        cluster.ensure_running()
        cluster.restore()
        print("\ngp7: cluster ready on port %d in %.0f s" % (cluster.port, time.monotonic() - started))
        yield cluster


@pytest.fixture
def gp(gp7):
    """The cluster for one test: healthy before; after the test every session it
    opened is closed and the cluster restored (nodes started, mirrors recovered)."""
    sessions = []
    real_session = gp7.session

    def session(label, **kwargs):
        s = real_session(label, **kwargs)
        sessions.append(s)
        return s

    gp7.session = session
    try:
        yield gp7
    finally:
        gp7.session = real_session
        for s in sessions:
            s.close()
        gp7.restore()
