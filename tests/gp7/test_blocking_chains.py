"""Blocking chains on real Greenplum 7, seen through gp_locks_info and gp_hang_info:
the root blocker and its waiters are reported, and gp_deadlock state=resolved kills
nothing (no cycle).

- Row chain: 'holder' updated a row on segment 0 and idles in transaction; waiter1
  waits for its transaction there, waiter2 and waiter3 for waiter1's tuple lock
  (dotted edges behind a solid one).
- Lock queue: 'holder' read the table and idles in transaction; 'ddl' waits on the
  coordinator for ACCESS EXCLUSIVE; waiter2 and waiter3 (SELECTs) queue behind that
  waiting request: Postgres's lock queue, which gp_dist_wait_status() does not show
  (no edge for them), pg_blocking_pids() does.
"""
import pytest

from lockwaits import wait_blocked
from playbook import run_tasks

pytestmark = pytest.mark.gp7

WAITERS = ("waiter1", "waiter2", "waiter3")


@pytest.fixture
def table(gp):
    gp.query("DROP TABLE IF EXISTS chain_t; CREATE TABLE chain_t (id int, val int) DISTRIBUTED BY (id); "
             "INSERT INTO chain_t SELECT i, i FROM pg_catalog.generate_series(1, 100) i")
    yield gp.query("SELECT min(id) FROM chain_t WHERE gp_segment_id = 0")[0][0]
    gp.end_test_sessions()  # a failed test may leave a holder; the gp fixture restores the rest
    gp.query("DROP TABLE chain_t")


@pytest.fixture
def monitor(gp):
    with gp.connect(application_name="chain-monitor") as conn:
        yield conn


def inspect(gp):
    """gp_locks_info, gp_hang_info and gp_deadlock state=resolved, in one play."""
    locks, hang, resolved = run_tasks([("gp_locks_info", {"waiting_only": True}), ("gp_hang_info", {}),
                                       ("gp_deadlock", {"state": "resolved"})], env=gp.env())
    for r in (locks, hang, resolved):
        assert not r.get("failed"), r.get("msg")
    return locks, hang, resolved


def assert_root_and_nothing_killed(locks, hang, resolved, holder, waiters):
    analysis = locks["analysis"]
    assert analysis["verdict"] == "blocking" and analysis["deadlocks"] == [], analysis["summary"]
    (tree,) = analysis["blocking_trees"]
    assert tree["root"]["coordinator_pid"] == holder.pid and tree["root"]["sess_id"] == holder.sess_id
    assert tree["root"]["state"] == "idle in transaction"
    assert tree["waiter_count"] == len(waiters)
    assert sorted(w["coordinator_pid"] for w in tree["waiters"]) == sorted(w.pid for w in waiters)

    (chain,) = [f for f in hang["findings"] if f["class"] == "blocking_chain"]
    assert chain["evidence"]["root"]["coordinator_pid"] == holder.pid
    assert chain["evidence"]["waiter_count"] == len(waiters)
    assert not [f for f in hang["findings"] if f["class"] == "global_deadlock"]
    assert hang["changed"] is False

    assert (resolved["changed"], resolved["deadlocks"], resolved["victims"], resolved["actions"]) == (
        False, [], [], [])
    assert all(w.waiting(0.2) for w in waiters)


def test_row_chain_behind_an_idle_in_transaction_holder(gp, table, monitor):
    holder = gp.session("holder")
    holder.sql("BEGIN")
    holder.sql("UPDATE chain_t SET val = val + 1 WHERE id = %s", (table,))
    waiters = [gp.session(label) for label in WAITERS]
    for w in waiters:
        w.send("UPDATE chain_t SET val = val + 1 WHERE id = %s", (table,))
        wait_blocked(monitor, w, {0}, w.label)

    locks, hang, resolved = inspect(gp)
    assert_root_and_nothing_killed(locks, hang, resolved, holder, waiters)
    edges = {(e["waiter_sessionid"], e["holder_sessionid"], e["solid"]) for e in locks["edges"]}
    assert (waiters[0].sess_id, holder.sess_id, True) in edges  # a transaction wait: solid
    assert {(w.sess_id, waiters[0].sess_id, False) for w in waiters[1:]} <= edges  # its tuple lock: dotted

    holder.sql("COMMIT")
    for w in waiters:  # each commits in turn and lets the next one in
        assert w.result(30)[0] == "ok"
    assert gp.query("SELECT val FROM chain_t WHERE id = %s", (table,)) == [(table + 4,)]


def test_lock_queue_behind_a_waiting_access_exclusive_request(gp, table, monitor):
    holder, ddl = gp.session("holder"), gp.session("ddl")
    holder.sql("BEGIN")
    holder.sql("SELECT count(*) FROM chain_t")
    ddl.sql("BEGIN")
    ddl.send("LOCK TABLE chain_t IN ACCESS EXCLUSIVE MODE")
    wait_blocked(monitor, ddl, {-1}, "LOCK TABLE")
    queued = [gp.session(label) for label in WAITERS[1:]]
    for w in queued:
        w.send("SELECT count(*) FROM chain_t")
        wait_blocked(monitor, w, {-1}, w.label)

    locks, hang, resolved = inspect(gp)
    assert_root_and_nothing_killed(locks, hang, resolved, holder, [ddl] + queued)
    # The queue is no edge of gp_dist_wait_status(): only the LOCK TABLE's wait is one.
    assert {e["waiter_sessionid"] for e in locks["edges"]} == {ddl.sess_id}
    assert {e["holder_sessionid"] for e in locks["edges"]} == {holder.sess_id}
    blocking = {b["pid"]: b["blocking_pids"] for b in locks["backends"]
                if b["content"] == -1 and b["wait_event_type"] == "Lock"}
    assert blocking[ddl.pid] == [holder.pid]
    assert all(blocking[w.pid] == [ddl.pid] for w in queued)

    holder.sql("COMMIT")
    assert ddl.result(30)[0] == "ok"
    ddl.sql("COMMIT")
    for w in queued:
        assert w.result(30) == ("ok", [(100,)])
