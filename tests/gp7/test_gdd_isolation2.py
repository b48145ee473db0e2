"""Greenplum's own global deadlock tests (src/test/isolation2/sql/gdd/*.sql, expected
outputs in src/test/isolation2/expected/gdd/*.out of Greenplum 7.0.0-beta.0) on a real
Greenplum 7 cluster, with gp_deadlock in the place of Greenplum's detector.

Each case is the .sql's script, statement for statement, in isolation2's notation:

- ``10: SQL`` runs now in session 10 (and must succeed);
- ``10&: SQL  -- waits on seg 0, 1`` starts it in the background; the test then polls
  until session 10 has an ungranted lock on each named content (``-1`` the coordinator),
  in place of isolation2's "the QD is blocked" check and of ``barrier()``
  (``pg_sleep(4)``): the next statement starts only once this one really waits there;
- ``open 10 20``: the .sql's ``10: RESET optimizer;`` ``20: RESET optimizer;`` (the
  gangs are made in that order) then ``10: BEGIN;`` ``20: BEGIN;`` (gxids in that order);
- ``10q:`` ends the session (its open transaction rolls back); ``10<q:`` is ``10<:``
  then ``10q:``;
- ``10<:`` the background statement completes; ``10<: cancelled`` it fails with the
  cancel gp_deadlock sends; ``10<: ERROR text`` it fails with an error holding text;
- ``fault NAME suspend on seg 0 for 1`` / ``triggered`` / ``reset``: gp_inject_fault
  on that primary (for session 1 only), gp_wait_until_triggered_fault;
- ``10&  -- waits on seg 1 (transactionid)``: the running statement waits (now)
  there for that lock type;
- ``no deadlock: 0: 20 ==> 10, ...``: gp_deadlock finds no deadlock, state=resolved
  changes nothing, every background statement still waits, and gp_locks_info shows
  exactly the wait edges listed after the colon, if any (the .sql waits
  ``pg_sleep(20)`` there for Greenplum's detector to prove the same).

``segid(seg, idx)`` and the reference table ``t0r`` are prepare.sql's, created in the
test database. The detector is on with a one hour period on the demo cluster, so
gp_deadlock acts first, and Greenplum takes its GDD-on lock modes (e.g. RowExclusiveLock
on the coordinator for UPDATE).

After the script: ``gp_deadlock state=detected`` must report ``cycles`` (the edges of
each deadlock, ``content: waiter ==> holder`` solid or ``~~>`` dotted, as the .sql's
comments write them) and ``victims`` (the sessions the .out shows "cancelled by global
deadlock detector", or fewer where the per-cycle choice is provably enough: see
dist-deadlock-104); ``state=resolved`` cancels exactly them; a second run changes
nothing and finds no deadlock; then ``finish`` replays the .out's endings.
"""
import collections
import contextlib
import re

import pytest

from lockwaits import wait_blocked
from playbook import run_tasks

pytestmark = pytest.mark.gp7

PREPARE = """
DROP TABLE IF EXISTS t0p;
CREATE TABLE t0p (id int, val int);
INSERT INTO t0p (id, val) SELECT i, i FROM pg_catalog.generate_series(1, 100) i;
DROP TABLE IF EXISTS t0r;
CREATE TABLE t0r (id int, val int, segid int) DISTRIBUTED REPLICATED;
INSERT INTO t0r (id, val, segid) SELECT id, val, gp_segment_id FROM t0p;
CREATE OR REPLACE FUNCTION segid(seg int, idx int)
RETURNS int AS $$
  SELECT id FROM t0r
  WHERE segid=$1
  ORDER BY id LIMIT 1 OFFSET ($2-1)
$$ LANGUAGE sql;
"""

Case = collections.namedtuple("Case", "name setup script cycles victims finish")


def table(name):
    """The .sql's usual table: (id int, val int) with ids and values 1 to 100."""
    return ("DROP TABLE IF EXISTS {0}; CREATE TABLE {0} (id int, val int); "
            "INSERT INTO {0} (id, val) SELECT i, i FROM generate_series(1, 100) i;".format(name))


# The usual ending: 20 is the victim, 10 completes once 20's transaction is gone.
TWENTY_CANCELLED = """
        20<q: cancelled
        10<:
        10q:"""

CASES = [
    Case("dist-deadlock-01", table("t01"), """
        open 10 20
        10: UPDATE t01 SET val=val WHERE id=segid(0,1);
        20: UPDATE t01 SET val=val WHERE id=segid(1,1);
        20&: UPDATE t01 SET val=val WHERE id=segid(0,1);  -- waits on seg 0
        10&: UPDATE t01 SET val=val WHERE id=segid(1,1);  -- waits on seg 1""",
         [["0: 20 ==> 10", "1: 10 ==> 20"]], ["20"], TWENTY_CANCELLED),
    Case("dist-deadlock-04", """
        DROP TABLE IF EXISTS t04a;
        CREATE TABLE t04a (id int, val int);
        INSERT INTO t04a (id, val) SELECT i, i FROM generate_series(1, 100) i;
        DROP TABLE IF EXISTS t04b;""", """
        open 10 20
        10: UPDATE t04a SET val=val WHERE id=segid(0,1);
        10: CREATE TABLE t04b (id int);
        20: UPDATE t04a SET val=val WHERE id=segid(1,1);
        10&: UPDATE t04a SET val=val WHERE id=segid(1,1);  -- waits on seg 1
        20&: CREATE TABLE t04b (id int);  -- waits on seg -1""",
         [["1: 10 ==> 20", "-1: 20 ==> 10"]], ["20"], TWENTY_CANCELLED),
    Case("dist-deadlock-05", """
        DROP TABLE IF EXISTS t05;
        CREATE TABLE t05 (id int primary key);""", """
        open 10 20
        10: INSERT INTO t05 VALUES(segid(0,1));
        20: INSERT INTO t05 VALUES(segid(1,1));
        20&: INSERT INTO t05 VALUES(segid(0,1));  -- waits on seg 0
        10&: INSERT INTO t05 VALUES(segid(1,1));  -- waits on seg 1""",
         [["0: 20 ==> 10", "1: 10 ==> 20"]], ["20"], TWENTY_CANCELLED),
    Case("dist-deadlock-06", table("t06"), """
        open 10 20
        10: UPDATE t06 SET val=7 WHERE val=segid(0,1);
        20: UPDATE t06 SET val=8 WHERE val=segid(1,1);
        10&: UPDATE t06 SET val=8 WHERE val=segid(1,1);  -- waits on seg 1
        20&: UPDATE t06 SET val=7 WHERE val=segid(0,1);  -- waits on seg 0""",
         [["1: 10 ==> 20", "0: 20 ==> 10"]], ["20"], TWENTY_CANCELLED),
    Case("dist-deadlock-07", """
        DROP TABLE IF EXISTS t07a;
        DROP TABLE IF EXISTS t07b;
        CREATE TABLE t07a (c1 int, c2 int);
        CREATE TABLE t07b (c1 int, c2 int);
        INSERT INTO t07a (c1, c2) SELECT i, i FROM generate_series(1, 100) i;
        INSERT INTO t07b (c1, c2) SELECT i, i FROM generate_series(1, 100) i;""", """
        open 10 20 30 40
        10: UPDATE t07b SET c2 = 11 WHERE c1 = segid(0,1);
        20: UPDATE t07b SET c2 = 22 WHERE c1 = segid(1,1);
        30: LOCK t07a;
        30&: UPDATE t07b SET c2 = 21 WHERE c1 = segid(0,1);  -- waits on seg 0
        10&: UPDATE t07b SET c2 = 12 WHERE c1 = segid(1,1);  -- waits on seg 1
        40: UPDATE t07b SET c2 = 13 WHERE c1 = segid(0,2);
        40&: LOCK t07a;  -- waits on seg -1
        20&: UPDATE t07b SET c2 = 23 WHERE c1 = segid(0,2);  -- waits on seg 0""",
         [["0: 30 ==> 10", "1: 10 ==> 20", "-1: 40 ==> 30", "0: 20 ==> 40"]], ["40"], """
        40<q: cancelled
        20<q:
        10<q:
        30<:
        30q:"""),
    Case("dist-deadlock-102", table("t102"), """
        open 10 20 30
        30: UPDATE t102 SET val=30 WHERE id=segid(1,1);
        10: UPDATE t102 SET val=10 WHERE id=segid(0,1);
        20: UPDATE t102 SET val=10 WHERE id=segid(1,2);
        20&: UPDATE t102 SET val=20 WHERE id IN (segid(0,1), segid(1,1));  -- waits on seg 0, 1
        10&: UPDATE t102 SET val=10 WHERE id=segid(1,2);  -- waits on seg 1""",
         [["0: 20 ==> 10", "1: 10 ==> 20"]], ["20"], TWENTY_CANCELLED),
    Case("dist-deadlock-103", table("t103"), """
        open 10 20 30
        10: UPDATE t103 SET val=val WHERE id=segid(0,1);
        10: UPDATE t103 SET val=val WHERE id=segid(1,2);
        20: UPDATE t103 SET val=val WHERE id=segid(1,1);
        20&: UPDATE t103 SET val=val WHERE id=segid(0,1);  -- waits on seg 0
        30&: UPDATE t103 SET val=val WHERE id=segid(1,2);  -- waits on seg 1
        10&: UPDATE t103 SET val=val WHERE id=segid(1,1);  -- waits on seg 1""",
         [["0: 20 ==> 10", "1: 10 ==> 20"]], ["20"], """
        20<q: cancelled
        10<q:
        30<:
        30q:"""),
    # Two cycles, {30, 40} and {10, 20}, joined by 20 ==> 50 ==> 30. Greenplum cancels the
    # largest gxid of the whole graph in turn: 50 (on no cycle), then 40, then 20 (the .sql
    # says so: "one extra transaction will be cancelled"). gp_deadlock chooses inside each
    # cycle: 40 and 20 break both, and 50 only waits for 30 until 30 ends.
    Case("dist-deadlock-104", table("t104"), """
        open 10 20 30 40 50
        10: UPDATE t104 SET val=val WHERE id=segid(0,1);
        40: UPDATE t104 SET val=val WHERE id=segid(1,4);
        30: UPDATE t104 SET val=val WHERE id IN (segid(0,3), segid(1,3));
        30&: UPDATE t104 SET val=val WHERE id=segid(1,4);  -- waits on seg 1
        50: UPDATE t104 SET val=val WHERE id=segid(1,5);
        50&: UPDATE t104 SET val=val WHERE id=segid(1,3);  -- waits on seg 1
        20: UPDATE t104 SET val=val WHERE id=segid(1,2);
        20&: UPDATE t104 SET val=val WHERE id IN (segid(0,1), segid(1,5));  -- waits on seg 0, 1
        40&: UPDATE t104 SET val=val WHERE id=segid(0,3);  -- waits on seg 0
        10&: UPDATE t104 SET val=val WHERE id=segid(1,2);  -- waits on seg 1""",
         [["1: 30 ==> 40", "0: 40 ==> 30"], ["0: 20 ==> 10", "1: 10 ==> 20"]], ["40", "20"], """
        40<q: cancelled
        20<q: cancelled
        30<q:
        50<q:
        10<:
        10q:"""),
    Case("dist-deadlock-106", table("t106"), """
        open 10 20 30
        30: UPDATE t106 SET val=30 WHERE id=segid(1,1);
        10: UPDATE t106 SET val=10 WHERE val=segid(0,2);
        20&: UPDATE t106 SET val=20 WHERE val=segid(1,1);  -- waits on seg 1
        10&: UPDATE t106 SET val=10 WHERE val=segid(1,1);  -- waits on seg 1
        30&: UPDATE t106 SET val=30 WHERE id=segid(0,2);  -- waits on seg 0""",
         [["1: 20 ==> 30", "1: 10 ~~> 20", "0: 30 ==> 10"]], ["30"], """
        30<q: cancelled
        20<q:
        10<:
        10q:"""),
    # Before 30 ends, 10 waits for 20's tuple lock (dotted) on seg 1 while 20 waits for
    # the idle 30 there: no deadlock (GDD's rule 3). 30's end turns 10's wait into a wait
    # for 20's transaction: a real deadlock.
    Case("non-lock-105", table("t105"), """
        open 10 20 30
        30: UPDATE t105 SET val=30 WHERE id=segid(1,1);
        10: UPDATE t105 SET val=10 WHERE val=segid(0,2);
        20&: UPDATE t105 SET val=20 WHERE val=segid(0,2) OR id=segid(1,1);  -- waits on seg 0, 1
        10&: UPDATE t105 SET val=10 WHERE val=segid(1,1);  -- waits on seg 1
        no deadlock: 0: 20 ==> 10, 1: 20 ==> 30, 1: 10 ~~> 20
        30q:
        10&  -- waits on seg 1 (transactionid)""",
         [["0: 20 ==> 10", "1: 10 ==> 20"]], ["20"], TWENTY_CANCELLED),
    Case("non-lock-107", table("t107"), """
        open 10 20 30 40
        30: UPDATE t107 SET val=30 WHERE id=segid(1,1);
        10: UPDATE t107 SET val=10 WHERE val=segid(0,2);
        20: UPDATE t107 SET val=20 WHERE id=segid(1,2);
        20&: UPDATE t107 SET val=20 WHERE val=segid(0,2) OR id=segid(1,1);  -- waits on seg 0, 1
        10&: UPDATE t107 SET val=10 WHERE val=segid(1,1);  -- waits on seg 1
        40&: UPDATE t107 SET val=40 WHERE id=segid(1,2);  -- waits on seg 1
        no deadlock: 0: 20 ==> 10, 1: 20 ==> 30, 1: 10 ~~> 20, 1: 40 ==> 20
        30q:
        10&  -- waits on seg 1 (transactionid)""",
         [["0: 20 ==> 10", "1: 10 ==> 20"]], ["20"], """
        20<q: cancelled
        10<q:
        40<:
        40q:"""),
    # ANALYZEs wait for 10's ShareUpdateExclusiveLock: no cycle. (The .sql's comment says
    # "on seg1"; on Greenplum 7 they wait on the coordinator, and the edges are dotted.)
    Case("non-lock-108", table("t108"), """
        open 10 20 30
        10: INSERT INTO t108 VALUES(segid(1,1),segid(1,1));
        20: INSERT INTO t108 VALUES(segid(1,1),segid(1,1));
        30: INSERT INTO t108 VALUES(segid(1,1),segid(1,1));
        10: ANALYZE t108;
        20&: ANALYZE t108;  -- waits on seg -1
        30&: ANALYZE t108;  -- waits on seg -1
        no deadlock: -1: 20 ~~> 10, -1: 30 ~~> 10""",
         [], [], """
        10q:
        20<q:
        30<:
        30q:"""),
    Case("dist-deadlock-upsert", """
        DROP TABLE IF EXISTS t_upsert;
        CREATE TABLE t_upsert (id int, val int) distributed by (id);
        CREATE UNIQUE INDEX uidx_t_upsert on t_upsert(id, val);
        INSERT INTO t_upsert (id, val) SELECT i, i FROM generate_series(1, 100) i;""", """
        open 10 20
        10: INSERT INTO t_upsert VALUES (segid(0,1), segid(0,1)) on conflict (id, val) do update set val = 999;
        20: INSERT INTO t_upsert VALUES (segid(1,1), segid(1,1)) on conflict (id, val) do update set val = 888;
        20&: INSERT INTO t_upsert VALUES (segid(0,1), segid(0,1)) on conflict (id, val) do update set val = 666;
        20&  -- waits on seg 0 (transactionid)
        10&: INSERT INTO t_upsert VALUES (segid(1,1), segid(1,1)) on conflict (id, val) do update set val = 777;
        10&  -- waits on seg 1 (transactionid)""",
         [["0: 20 ==> 10", "1: 10 ==> 20"]], ["20"], TWENTY_CANCELLED),
    # A deadlock local to seg 1 (10 <==> 30): Postgres's own deadlock check breaks it there,
    # cancelling 10 as the .out shows. Made deterministic: 10's check runs 3 s after it starts
    # waiting (30 waits well before), 30's would run after a minute. Nothing is left for
    # gp_deadlock.
    Case("local-deadlock-03", table("t03"), """
        10: RESET optimizer;
        20: RESET optimizer;
        30: RESET optimizer;
        10: SET deadlock_timeout = '3s';
        30: SET deadlock_timeout = '60s';
        10: BEGIN;
        20: BEGIN;
        30: BEGIN;
        10: UPDATE t03 SET val=val WHERE id IN (segid(0,2), segid(1,2));
        20: UPDATE t03 SET val=val WHERE id=segid(0,1);
        30: UPDATE t03 SET val=val WHERE id=segid(1,1);
        10&: UPDATE t03 SET val=val WHERE id IN (segid(0,1), segid(1,1));  -- waits on seg 0, 1
        30&: UPDATE t03 SET val=val WHERE id=segid(1,2);  -- waits on seg 1
        10<: ERROR deadlock detected
        30<:
        no deadlock:""",
         [], [], """
        30q:
        20q:
        10q:"""),
    Case("update-deadlock-root-leaf-concurrent-op", """
        DROP TABLE IF EXISTS part_tbl;
        CREATE TABLE part_tbl (a int, b int, c int) PARTITION BY RANGE(b) (START(1) END(2) EVERY(1));
        INSERT INTO part_tbl SELECT i, 1, i FROM generate_series(1,100)i;""", """
        1: BEGIN;
        1: UPDATE part_tbl_1_prt_1 SET c = segid(2,1) WHERE c = segid(2,1);
        2: BEGIN;
        2: UPDATE part_tbl SET c = segid(1,1) WHERE c = segid(1,1);
        1&: UPDATE part_tbl_1_prt_1 SET c = segid(1,1) WHERE c = segid(1,1);  -- waits on seg 1
        2&: UPDATE part_tbl SET c = segid(2,1) WHERE c = segid(2,1);  -- waits on seg 2""",
         [["1: 1 ==> 2", "2: 2 ==> 1"]], ["2"], """
        1<:
        2<: cancelled
        1: ROLLBACK;
        2: ROLLBACK;"""),
    Case("delete-deadlock-root-leaf-concurrent-op", """
        DROP TABLE IF EXISTS part_tbl;
        CREATE TABLE part_tbl (a int, b int, c int) PARTITION BY RANGE(b) (START(1) END(2) EVERY(1));
        INSERT INTO part_tbl SELECT i, 1, i FROM generate_series(1,100)i;""", """
        1: BEGIN;
        1: DELETE FROM part_tbl_1_prt_1 WHERE c = segid(2,1);
        2: BEGIN;
        2: DELETE FROM part_tbl WHERE c = segid(1,1);
        1&: DELETE FROM part_tbl_1_prt_1 WHERE c = segid(1,1);  -- waits on seg 1
        2&: DELETE FROM part_tbl WHERE c = segid(2,1);  -- waits on seg 2""",
         [["1: 1 ==> 2", "2: 2 ==> 1"]], ["2"], """
        1<:
        2<: cancelled
        1: ROLLBACK;
        2: ROLLBACK;"""),
    # Session 1's INSERT into the root is held (fault) on seg 0 before it locks the leaf;
    # the TRUNCATE of the leaf then locks it on seg 0 and waits for 1 on seg 1 and 2; once
    # released, 1 waits for 2 on seg 0.
    Case("insert_root_partition_truncate_deadlock", """
        DROP TABLE IF EXISTS rank_13652;
        create table rank_13652 (id int, year int)
        partition by range (year)
        (start (2006) end (2009) every (1));""", """
        fault func_init_plan_end suspend on seg 0 for 1
        1&: insert into rank_13652 select i,i%3+2006 from generate_series(1, 30)i;
        fault func_init_plan_end triggered on seg 0
        2&: truncate rank_13652_1_prt_2;  -- waits on seg 1, 2
        fault func_init_plan_end reset on seg 0
        1&  -- waits on seg 0 (relation)""",
         [["0: 1 ==> 2", "1: 2 ==> 1", "2: 2 ==> 1"]], ["2"], """
        1<:
        2<: cancelled
        1q:
        2q:"""),
]

STEP = re.compile(r"^(?P<label>\d+)(?P<kind>&|<|q|<q|):\s*(?P<sql>.*?)"
                  r"\s*(?:--\s*waits on seg (?P<segs>[-\d, ]+))?$")
WAIT_AGAIN = re.compile(r"^(?P<label>\d+)&\s+--\s*waits on seg (?P<segs>[-\d, ]+) \((?P<locktype>\w+)\)$")
FAULT = re.compile(r"^fault (?P<name>\w+) (?P<kind>suspend|triggered|reset) on seg (?P<seg>\d+)"
                   r"(?: for (?P<label>\d+))?$")


def contents(text):
    return {int(s) for s in text.replace(",", " ").split()}


class Runner:
    """Plays one case's script on the cluster: sessions by label, waits checked in
    pg_locks (lockwaits.py: ungranted rows of the session on the named contents)."""

    def __init__(self, gp, monitor):
        self.gp, self.monitor = gp, monitor
        self.sessions = {}
        self.tables = []

    def setup(self, sql):
        """Run a case's setup; the tables it creates are dropped after the test."""
        self.tables += re.findall(r"CREATE TABLE (\w+)", sql, flags=re.IGNORECASE)
        self.gp.query(sql)

    def session(self, label):
        if label not in self.sessions:
            self.sessions[label] = self.gp.session("con" + label)
        return self.sessions[label]

    def wait_until_blocked(self, label, segs, line, locktype=None):
        wait_blocked(self.monitor, self.sessions[label], segs, line, locktype)

    def still_waiting(self):
        return [label for label, s in self.sessions.items()
                if s._pending is not None and not s._pending.done()]

    def play(self, script):
        for line in (raw.strip() for raw in script.strip().splitlines()):
            if not line:
                continue
            if line.startswith("no deadlock"):
                edges = line.partition(":")[2].strip()
                self.no_deadlock([e.strip() for e in edges.split(",")] if edges else None)
                continue
            if line.startswith("open "):
                labels = line.split()[1:]
                for label in labels:
                    self.session(label).sql("RESET optimizer")
                for label in labels:
                    self.session(label).sql("BEGIN")
                continue
            fault = FAULT.match(line)
            if fault:
                self.fault(fault)
                continue
            again = WAIT_AGAIN.match(line)
            if again:  # the same background statement now waits elsewhere (or again)
                self.wait_until_blocked(again["label"], contents(again["segs"]), line, again["locktype"])
                continue
            m = STEP.match(line)
            assert m, "bad script line: %r" % line
            label, kind, sql = m["label"], m["kind"], m["sql"]
            if kind == "q":
                self.session(label).close()
                del self.sessions[label]
            elif kind == "&":
                self.session(label).send(sql)
                if m["segs"]:
                    self.wait_until_blocked(label, contents(m["segs"]), line)
                else:
                    assert self.session(label).waiting(), line
            elif kind in ("<", "<q"):
                self.expect_result(label, sql, line)
                if kind == "<q":
                    self.session(label).close()
                    del self.sessions[label]
            else:
                self.session(label).sql(sql)

    def expect_result(self, label, expected, line):
        outcome, value = self.sessions[label].result(30)
        if not expected:
            assert outcome == "ok", "%s: %s %s" % (line, outcome, value)
        elif expected == "cancelled":
            assert outcome == "error", "%s: %s %s" % (line, outcome, value)
            assert "canceling statement due to user request" in str(value), value
            assert "gpops.greenplum to break a global deadlock" in str(value), value
        else:
            assert expected.startswith("ERROR "), line
            assert outcome == "error" and expected[len("ERROR "):] in str(value), "%s: %s %s" % (
                line, outcome, value)

    def fault(self, m):
        if m["kind"] == "suspend":
            extra = {"sid": self.session(m["label"]).sess_id} if m["label"] else {}
            assert self.gp.inject_fault(m["name"], "suspend", content=int(m["seg"]), **extra) == "Success:"
        elif m["kind"] == "triggered":
            assert self.gp.wait_fault_triggered(m["name"], content=int(m["seg"])) == "Success:"
        else:
            assert self.gp.inject_fault(m["name"], "reset", content=int(m["seg"])) == "Success:"

    def no_deadlock(self, edges=None):
        """gp_deadlock finds nothing and does nothing; gp_locks_info shows the wait
        edges ``edges`` (when given): the waits are there, GDD's rules reduce them."""
        waiting = self.still_waiting()
        locks, detected, resolved = run_tasks([("gp_locks_info", {}), ("gp_deadlock", {"state": "detected"}),
                                               ("gp_deadlock", {"state": "resolved"})], env=self.gp.env())
        for r in (locks, detected, resolved):
            assert not r.get("failed"), r.get("msg")
        for r in (detected, resolved):
            assert (r["changed"], r["deadlocks"], r["victims"], r["actions"]) == (False, [], [], []), r["summary"]
        assert locks["analysis"]["verdict"] != "deadlock"
        if edges is not None:
            assert self.edge_texts(locks["edges"]) == sorted(edges), locks["analysis"]["summary"]
        assert self.still_waiting() == waiting  # nothing was cancelled

    # --- reading gp_deadlock's answer in the script's labels ---------------------------
    def label_of_session(self):
        return {s.sess_id: label for label, s in self.sessions.items()}

    def edge_texts(self, edges):
        """Wait edges (dicts with content, waiter/holder_sessionid, solid) as the .sql's
        comments write them, ``content: waiter ==> holder`` (``~~>`` dotted), by label."""
        labels = self.label_of_session()

        def name(sess_id):
            return labels.get(sess_id, "sess%s" % sess_id)
        return sorted({"%s: %s %s %s" % (e["content"], name(e["waiter_sessionid"]), "==>" if e["solid"] else "~~>",
                                         name(e["holder_sessionid"])) for e in edges})

    def cycles(self, result):
        return sorted(self.edge_texts(d["edges"]) for d in result["deadlocks"])

    def victims(self, result):
        labels = self.label_of_session()
        return sorted(labels.get(v["sess_id"], "sess%s" % v["sess_id"]) for v in result["victims"])


@pytest.fixture(scope="module")
def prepared(gp7):
    gp7.query(PREPARE)
    for seg in (0, 1, 2):  # prepare.sql's check: enough rows on every segment
        assert gp7.query("SELECT segid(%s, 10) IS NOT NULL", (seg,)) == [(True,)]
    yield gp7
    gp7.query("DROP FUNCTION IF EXISTS segid(int, int); DROP TABLE IF EXISTS t0r; DROP TABLE IF EXISTS t0p")


@pytest.fixture
def runner(prepared, gp):
    """A Runner; afterwards its sessions are closed and the tables its setup made dropped."""
    with gp.connect(application_name="gdd-monitor") as monitor:
        runner = Runner(gp, monitor)
        yield runner
    for session in runner.sessions.values():
        session.close()
    for name in runner.tables:
        gp.query("DROP TABLE IF EXISTS %s" % name)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_gdd_isolation2(runner, case):
    gp = runner.gp
    runner.setup(case.setup)
    runner.play(case.script)

    if case.cycles:
        waiting = runner.still_waiting()
        detected, resolved, again = run_tasks([("gp_deadlock", {"state": "detected"}),
                                               ("gp_deadlock", {"state": "resolved"}),
                                               ("gp_deadlock", {"state": "resolved"})], env=gp.env())
        assert not detected.get("failed"), detected.get("msg")
        assert runner.cycles(detected) == sorted(sorted(c) for c in case.cycles), detected["summary"]
        assert runner.victims(detected) == sorted(case.victims), detected["summary"]
        assert {d["scope"] for d in detected["deadlocks"]} == {"global"}

        assert not resolved.get("failed"), resolved.get("msg")
        assert resolved["changed"] is True and resolved["deadlocks_after"] == []
        cancelled = {a["pid"] for a in resolved["actions"] if a["action"] == "cancel" and a["result"] == "done"}
        assert cancelled == {runner.sessions[v].pid for v in case.victims}, resolved["actions"]
        assert not any(a["action"] == "terminate" for a in resolved["actions"]), resolved["actions"]
        assert set(case.victims) <= set(waiting)

        assert not again.get("failed"), again.get("msg")
        assert (again["changed"], again["deadlocks"], again["actions"]) == (False, [], [])
    runner.play(case.finish)
    assert runner.still_waiting() == []


def test_local_deadlock_with_a_slow_local_detector_is_broken_by_gp_deadlock(runner):
    """local-deadlock-03 with Postgres's own check a minute away on both sessions: the
    cycle 10 <==> 30 on seg 1 is a deadlock for GDD's rules too ("gdd can also detect
    local deadlocks"); gp_deadlock cancels the youngest, 30, and 10 completes."""
    gp = runner.gp
    case = next(c for c in CASES if c.name == "local-deadlock-03")
    runner.setup(case.setup)
    # The case's script until both wait, with 10's check a minute away too.
    script = case.script.replace("'3s'", "'60s'").split("10<:")[0]
    runner.play(script)
    detected, resolved, again = run_tasks([("gp_deadlock", {"state": "detected"}),
                                           ("gp_deadlock", {"state": "resolved"}),
                                           ("gp_deadlock", {"state": "resolved"})], env=gp.env())
    assert runner.cycles(detected) == [["1: 10 ==> 30", "1: 30 ==> 10"]], detected["summary"]
    assert runner.victims(detected) == ["30"]
    (deadlock,) = detected["deadlocks"]
    assert (deadlock["scope"], deadlock["contents"]) == ("local", [1])
    assert deadlock["explanation"].startswith("Local deadlock on content 1 between 2 distributed transactions")
    assert detected["summary"][0].startswith("1 local deadlock (content 1); victim: ")
    assert resolved["changed"] is True and resolved["deadlocks_after"] == []
    # seg 1's deadlock_timeout (1 s) was waited for, and the cycle was still there.
    assert [(c["content"], c["wait"], c["broken_by_node"]) for c in resolved["local_checks"]] == [(1, True, False)]
    assert (again["changed"], again["deadlocks"]) == (False, [])
    runner.play("""
        30<q: cancelled
        20q:
        10<:
        10q:""")


@contextlib.contextmanager
def cluster_deadlock_timeout(gp, value):
    """``deadlock_timeout`` set to ``value`` on the coordinator and every primary
    (ALTER SYSTEM, reload), reset afterwards."""
    contents = [-1] + sorted({n["content"] for n in gp.configuration() if n["content"] >= 0})
    try:
        for content in contents:
            gp.query("ALTER SYSTEM SET deadlock_timeout = '%s'" % value, content=content)
            gp.query("SELECT pg_catalog.pg_reload_conf()", content=content)
        yield
    finally:
        for content in contents:
            gp.query("ALTER SYSTEM RESET deadlock_timeout", content=content)
            gp.query("SELECT pg_catalog.pg_reload_conf()", content=content)


def test_local_deadlock_is_left_to_the_node_s_own_check(runner):
    """local-deadlock-03 as the .sql runs it (no session setting), with seg 1's
    deadlock_timeout at 8 s so that gp_deadlock state=resolved runs while the cycle is
    there: it waits for seg 1's own check, which cancels 10 ("deadlock detected") as
    the .out shows, and cancels nothing itself."""
    gp = runner.gp
    case = next(c for c in CASES if c.name == "local-deadlock-03")
    runner.setup(case.setup)
    script = "\n".join(line for line in case.script.split("10<:")[0].splitlines() if "deadlock_timeout" not in line)
    with cluster_deadlock_timeout(gp, "8s"):
        runner.play(script)
        (resolved,) = run_tasks([("gp_deadlock", {"state": "resolved"})], env=gp.env())
        assert not resolved.get("failed"), resolved.get("msg")
        assert resolved["summary"][0].startswith("1 local deadlock (content 1); victim: "), resolved["summary"]
        (check,) = resolved["local_checks"]
        assert check["sess_ids"] == sorted(runner.sessions[label].sess_id for label in ("10", "30"))
        assert (check["content"], check["deadlock_timeout_s"], check["wait"], check["broken_by_node"]) == (
            1, 8.0, True, True)
        assert (resolved["changed"], resolved["actions"], resolved["deadlocks"], resolved["victims"]) == (
            False, [], [], [])
        runner.play("""
            10<: ERROR deadlock detected
            30<q:
            20q:
            10q:""")
