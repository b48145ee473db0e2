"""Integration fixtures: the sandbox cluster (tests/sandbox/gpsandbox), started once
per test session and reused when one with the same topology already runs.

GPSANDBOX_DIR / GPSANDBOX_PORT choose the cluster (defaults /tmp/gpsandbox and
7000), so several developers on one machine can run separate clusters.
"""
import os
import sys

import pytest

_SANDBOX = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "sandbox")
if _SANDBOX not in sys.path:
    sys.path.insert(0, _SANDBOX)

from gpsandbox import Sandbox, SandboxError  # noqa: E402  (needs the path above)

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import session_lock  # noqa: E402  (tests/, added above)


def exclusive(sb, wait=float(os.environ.get("GPSANDBOX_LOCK_WAIT", "1800"))):
    """One test session at a time per sandbox (tests/session_lock.py)."""
    return session_lock.exclusive(sb.base_dir, wait, "sandbox", "GPSANDBOX_DIR / GPSANDBOX_PORT")


@pytest.fixture(scope="session")
def sandbox():
    """The running Sandbox (3 primaries with mirrors, GP7 replication conf), used by
    this test session alone. Stopped at the end only if this session started it."""
    sb = Sandbox.from_env()
    with exclusive(sb):
        yield from _session_sandbox(sb)


def _session_sandbox(sb):
    started_here = not sb.running()
    status = sb.start(segments=3, mirrors=True, replication_conf="gp7")
    if not started_here and sb.leftovers():
        try:  # a reused cluster that an interrupted run left dirty
            left = sb.reset()
        except SandboxError as exc:
            left = [str(exc)]
        if left:
            sb.stop()
            status = sb.start(segments=3, mirrors=True, replication_conf="gp7")
            started_here = True
    if started_here:
        print("\ngpsandbox: 3 segments with mirrors started in %s s" % status["start_seconds"])
    yield sb
    if started_here:
        sb.stop()


def assert_clean(sb, when):
    left = sb.leftovers()
    if left:
        pytest.fail("sandbox not clean %s: %s" % (when, "; ".join(left)), pytrace=False)


@pytest.fixture
def clean_cluster(sandbox):
    """The sandbox, checked to hold no scenario sessions, prepared transactions,
    paused FTS, stopped/frozen nodes or failed-over pairs before and after the
    test (scenarios must always clean up)."""
    assert_clean(sandbox, "before the test")
    yield sandbox
    assert_clean(sandbox, "after the test")
