"""Waiting for a session to really wait on a lock, on the nodes named: polls the
coordinator's ``pg_catalog.pg_locks`` (in dispatch mode it holds every primary's rows)
for ungranted rows of the session, in place of fixed sleeps (isolation2's
``barrier()`` is ``pg_sleep(4)``)."""
import pytest

from gpcluster import wait_for


def blocked_on(monitor, sess_id, locktype=None):
    """Contents (-1 the coordinator) where session ``sess_id`` has an ungranted lock
    (of ``locktype`` when given); ``monitor`` is an autocommit connection to the coordinator."""
    rows = monitor.execute(
        "SELECT DISTINCT gp_segment_id FROM pg_catalog.pg_locks WHERE NOT granted AND mppsessionid = %s"
        " AND (%s::text IS NULL OR locktype = %s)", (sess_id, locktype, locktype)).fetchall()
    return {r[0] for r in rows}


def wait_blocked(monitor, session, contents, what="", locktype=None, timeout=30):
    """Poll until the background statement of ``session`` (gpcluster.Session) waits on
    every content of ``contents``; fail the test when it finishes instead or does not
    wait there within ``timeout`` seconds."""
    pending = session._pending
    if not wait_for(lambda: set(contents) <= blocked_on(monitor, session.sess_id, locktype) or pending.done(),
                    timeout=timeout, interval=0.05):
        pytest.fail("%s: session %s waits on %s, not on %s" % (
            what, session.label, sorted(blocked_on(monitor, session.sess_id)), sorted(contents)))
    if pending.done():
        pytest.fail("%s: session %s finished instead of waiting: %s" % (what, session.label, session.result(0)))
