"""A real global deadlock on real Greenplum 7 (isolation2 gdd/dist-deadlock-01's
shape): gp_deadlock finds the cycle, check mode leaves it, state=resolved cancels
the youngest transaction (the victim Greenplum's detector cancels), the survivor
completes, and a second run changes nothing."""
import pytest

from playbook import run_tasks

pytestmark = pytest.mark.gp7


def ids_by_segment(gp, table):
    rows = gp.query("SELECT gp_segment_id, id FROM %s ORDER BY id" % table)
    out = {}
    for seg, ident in rows:
        out.setdefault(seg, []).append(ident)
    return out


@pytest.fixture
def table(gp):
    gp.query("DROP TABLE IF EXISTS t01; CREATE TABLE t01 (id int, val int) DISTRIBUTED BY (id); "
             "INSERT INTO t01 SELECT i, i FROM generate_series(1, 100) i")
    return ids_by_segment(gp, "t01")


def test_global_deadlock_found_and_broken(gp, table):
    s10, s20 = gp.session("con10"), gp.session("con20")
    s10.sql("BEGIN"); s20.sql("BEGIN")
    s10.sql("UPDATE t01 SET val = val WHERE id = %s", (table[0][0],))
    s20.sql("UPDATE t01 SET val = val WHERE id = %s", (table[1][0],))
    s20.send("UPDATE t01 SET val = val WHERE id = %s", (table[0][0],))
    assert s20.waiting()
    s10.send("UPDATE t01 SET val = val WHERE id = %s", (table[1][0],))
    assert s10.waiting()

    env = gp.env()
    detected, planned = run_tasks([("gp_deadlock", {"state": "detected"}),
                                   ("gp_deadlock", {"state": "resolved"}, True)], env=env)
    assert not detected.get("failed"), detected.get("msg")
    assert len(detected["deadlocks"]) == 1
    assert detected["victims"][0]["coordinator_pid"] == s20.pid
    assert planned["changed"] is True and s10.waiting() and s20.waiting()

    resolved, again = run_tasks([("gp_deadlock", {"state": "resolved"}),
                                 ("gp_deadlock", {"state": "resolved"})], env=env)
    assert not resolved.get("failed"), resolved.get("msg")
    assert resolved["changed"] is True
    kind, err = s20.result(15)
    assert kind == "error" and "canceling statement" in str(err)
    assert s10.result(15)[0] == "ok"
    assert again["changed"] is False and again["deadlocks"] == []


def test_an_unwritable_report_dir_never_keeps_resolve_hang_from_breaking_the_deadlock(gp, table, tmp_path):
    """Issue 13: the evidence step reports its own failure and the run goes on: the deadlock
    found is broken, the summary says what could not be saved, and the play fails only at
    the end. The report directory is a regular file (refused even for root)."""
    from playbooks import run_playbook

    s10, s20 = gp.session("con10"), gp.session("con20")
    s10.sql("BEGIN")
    s20.sql("BEGIN")
    s10.sql("UPDATE t01 SET val = val WHERE id = %s", (table[0][0],))
    s20.sql("UPDATE t01 SET val = val WHERE id = %s", (table[1][0],))
    s20.send("UPDATE t01 SET val = val WHERE id = %s", (table[0][0],))
    assert s20.waiting()
    s10.send("UPDATE t01 SET val = val WHERE id = %s", (table[1][0],))
    assert s10.waiting()

    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the report directory should be\n")
    play = run_playbook(gp, "resolve_hang.yml", tmp_path, gp_report_dir=str(blocker), gp_timeline_minutes=0)
    kind, err = s20.result(15)
    assert kind == "error" and "canceling statement" in str(err), play.out[-3000:]
    assert s10.result(15)[0] == "ok"
    assert "Evidence not saved:" in play.out
    assert "evidence before acting (gp_report to %s): dest: %s exists and is not a directory" % (
        blocker, blocker) in play.out
    assert "report after acting (gp_report to %s)" % blocker in play.out
    assert play.rc != 0 and play.recap["failed"] == 1  # only the final task, after the remedy
    assert "Fail when a remedy failed or the evidence was not saved" in play.out
    assert "Traceback" not in play.out
