"""The global deadlock is gone: the youngest session (B) was cancelled, the
survivor (A) went on and committed, no lock wait is left on any node."""
from gphosts import COORDINATOR_HOST, node, read_json, sql

testinfra_hosts = [COORDINATOR_HOST]


def _report(host):
    return read_json(host, "deadlock.json")


def test_victim_cancelled_survivor_committed(host):
    sessions = _report(host)["sessions"]
    assert sessions["A"]["outcome"] and sessions["B"]["outcome"], "still deadlocked: %s" % sessions
    assert sessions["A"]["outcome"]["ok"] is True
    assert sessions["A"]["outcome"]["committed"] is True
    assert sessions["B"]["outcome"]["ok"] is False
    assert sessions["B"]["outcome"]["sqlstate"] in ("57014", "57P01")  # cancelled / terminated


def test_survivor_commit_is_visible(host):
    report = _report(host)
    assert report["sessions"]["A"]["outcome"], "A never got through"
    marked = report["sessions"]["A"]["outcome"]["marked_id"]
    owner = node(host, marked % 2)  # the sandbox spreads rows by id mod segments
    assert sql(host, "SELECT val FROM %s WHERE id = %d" % (report["table"], marked),
               port=owner["port"], utility=True) == [["-1"]]


def test_no_lock_wait_left_on_any_node(host):
    assert sql(host, "SELECT count(*) FROM gp_dist_wait_status()") == [["0"]]
    assert sql(host, "SELECT count(*) FROM pg_locks WHERE NOT granted") == [["0"]]


def test_cluster_still_whole(host):
    assert sql(host, "SELECT count(*) FROM gp_segment_configuration "
                     "WHERE status <> 'u' OR role <> preferred_role") == [["0"]]
