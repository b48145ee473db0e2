"""Scenario injectors: each puts the sandbox in the state of one real capture in
``fixtures/gp7/`` (same statements, same kinds of rows) and returns a handle.

Every handle has ``sessions`` (label -> {coordinator_pid, gp_session_id, gxid}),
``wait(timeout)`` (label -> {ok, error, sqlstate} of the statements left running;
ok is None for one still running at the timeout) and ``cleanup()`` (idempotent;
also a context manager). Sessions connect to the coordinator with
``application_name = 'scenario_<label>'``, as in the captures.

Distributed tables are spread by ``distkey mod segments`` (Sandbox.segment_for),
so the ids below are chosen per segment rather than copied from the captures.
"""
import threading
import time

import psycopg

APP_PREFIX = "scenario_"
TABLE_ROWS = 100


class ScenarioError(Exception):
    """The scenario could not be put in place (the message says which step)."""


def _wait_until(fn, timeout, what):
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise ScenarioError("timed out after %.0f s waiting for %s" % (timeout, what))
        time.sleep(0.1)


class Session:
    """One coordinator session (a QD) of a scenario."""

    def __init__(self, sb, label):
        self.sb = sb
        self.label = label
        self.conn = sb.connect(-1, utility=False, application_name=APP_PREFIX + label)
        self.pid = self.conn.info.backend_pid
        self.gp_session_id = int(self.conn.execute("SHOW gp_session_id").fetchone()[0])
        self.gxid = None
        self.thread = None
        self.outcome = None

    def run(self, sql):
        """Run sql now; return its rows (or None)."""
        cur = self.conn.execute(sql)
        return cur.fetchall() if cur.description else None

    def note_gxid(self):
        """Ask the session itself (it must be idle)."""
        self.gxid = int(self.run("SELECT gp_distributed_xid()")[0][0])
        return self.gxid

    def refresh_gxid(self):
        """Read the gxid of a busy session from the coordinator's registry."""
        rows = self.sb.query(-1, "SELECT gxid FROM gpsim.backend_sessions() WHERE pid = %s",
                             (self.pid,), utility=True)
        self.gxid = int(rows[0][0]) if rows else None
        return self.gxid

    def start(self, sql):
        """Run sql in the background (it is expected to block)."""

        def target():
            try:
                self.conn.execute(sql)
                self.outcome = dict(ok=True, error=None, sqlstate=None)
            except psycopg.Error as exc:
                self.outcome = dict(ok=False, error=str(exc).strip().splitlines()[0],
                                    sqlstate=exc.sqlstate)
        self.thread = threading.Thread(target=target, name="scenario-" + self.label, daemon=True)
        self.thread.start()

    def running(self):
        return self.thread is not None and self.thread.is_alive()

    def as_dict(self):
        return dict(coordinator_pid=self.pid, gp_session_id=self.gp_session_id, gxid=self.gxid)


class Scenario:
    """A scenario in place; see the module doc."""

    name = "scenario"

    def __init__(self, sb):
        self.sb = sb
        self._sessions = {}
        self._cleaned = False
        self._undo = []          # extra clean-up steps, run last-in first-out

    # public handle ---------------------------------------------------------
    @property
    def sessions(self):
        return {label: s.as_dict() for label, s in self._sessions.items()}

    def wait(self, timeout=30):
        deadline = time.monotonic() + timeout
        out = {}
        for label, s in self._sessions.items():
            if s.thread is None:
                continue
            s.thread.join(max(0.0, deadline - time.monotonic()))
            out[label] = s.outcome if not s.running() else dict(ok=None, error=None, sqlstate=None)
        return out

    # True: undo the injected fault before ending the sessions (their commits
    # wait for it and ignore cancel)
    restore_first = False

    def cleanup(self):
        if self._cleaned:
            return
        self._cleaned = True
        try:
            if self.restore_first:
                self._run_undo()
            self._end_sessions()
        finally:
            self._run_undo()

    def _run_undo(self):
        while self._undo:
            self._undo.pop()()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.cleanup()

    # helpers ----------------------------------------------------------------
    def session(self, label):
        s = Session(self.sb, label)
        self._sessions[label] = s
        return s

    def _end_sessions(self):
        with self.sb.connect(-1, utility=True) as admin:
            for s in self._sessions.values():
                if s.running():
                    admin.execute("SELECT pg_cancel_backend(%s)", (s.pid,))
            for s in self._sessions.values():
                if s.thread is not None:
                    s.thread.join(5)
                if s.running():  # e.g. a commit in SyncRep ignores cancel
                    admin.execute("SELECT pg_terminate_backend(%s)", (s.pid,))
                    s.thread.join(10)
        for s in self._sessions.values():
            try:
                if not s.conn.closed and not s.running():
                    s.conn.execute("ROLLBACK")
            except psycopg.Error:
                pass
            s.conn.close()
        # a backend leaves pg_stat_activity a moment after its client closed
        pids = [s.pid for s in self._sessions.values()]
        if pids:
            with self.sb.connect(-1, utility=True) as admin:
                _wait_until(lambda: not admin.execute(
                    "SELECT 1 FROM pg_catalog.pg_stat_activity WHERE pid = ANY(%s)",
                    (pids,)).fetchone(), 30, "the scenario's sessions to end")

    def seg_rows(self, content, sql, params=None):
        return self.sb.query(content, sql, params, utility=True, timeout=10)

    def waiting_on_segment(self, content, session, what="transactionid"):
        """True when `session`'s QE on `content` waits for a lock."""
        return self.seg_rows(content, "SELECT 1 FROM gpsim.local_locks WHERE NOT granted AND "
                                      "mppsessionid = %s AND locktype = %s",
                             (session.gp_session_id, what))

    def waiting_on_coordinator(self, session):
        return self.sb.query(-1, "SELECT 1 FROM pg_catalog.pg_locks WHERE NOT granted AND pid = %s",
                             (session.pid,), utility=True)


def _ids_on(sb, contents, start=1):
    """One distribution key value per content, the smallest >= start."""
    out = []
    for c in contents:
        v = start
        while sb.segment_for(v) != c:
            v += 1
        out.append(v)
    return out


def _table(sb, name, text=False):
    """(Re)create a scenario table of TABLE_ROWS rows: (id int, val int) with
    val = id as in the captures' t01/t105, or (id int, v text) as their t."""
    ids = range(1, TABLE_ROWS + 1)
    if text:
        sb.create_table(name, "id int, v text", "id", rows=[(i, "row %d" % i) for i in ids])
    else:
        sb.create_table(name, "id int, val int", "id", rows=[(i, i) for i in ids])


def _safely(scenario, build):
    try:
        build()
    except BaseException:
        scenario.cleanup()
        raise
    return scenario


# --------------------------------------------------------------- deadlocks
class GlobalDeadlock(Scenario):
    """global_deadlock_2seg: A and B update rows on two segments in opposite
    order; each segment has one solid transactionid/ShareLock edge, no node sees a
    cycle. Sessions A (older gxid) and B (younger)."""

    name = "global_deadlock"

    def __init__(self, sb, table="gpsb_t01", contents=(0, 1)):
        super().__init__(sb)
        self.table = table
        self.ids = _ids_on(sb, contents, start=1)
        _safely(self, self._build)

    def _build(self):
        _table(self.sb, self.table)
        t, (x, y) = self.table, self.ids
        a, b = self.session("A"), self.session("B")
        a.run("BEGIN")
        a.run("UPDATE %s SET val=val WHERE id=%d" % (t, x))
        a.note_gxid()
        b.run("BEGIN")
        b.run("UPDATE %s SET val=val WHERE id=%d" % (t, y))
        b.note_gxid()
        b.start("UPDATE %s SET val=val WHERE id=%d" % (t, x))
        _wait_until(lambda: self.waiting_on_segment(self.sb.segment_for(x), b), 10, "B to wait")
        a.start("UPDATE %s SET val=val WHERE id=%d" % (t, y))
        _wait_until(lambda: self.waiting_on_segment(self.sb.segment_for(y), a), 10, "A to wait")


class DottedEdge(Scenario):
    """dotted_edge_no_deadlock: C idles in transaction after updating a row on
    content 1; A updates a row on content 0; B waits on content 0 for A (solid)
    and on content 1 for C while holding the tuple lock; A then waits on content 1
    for B's tuple lock (a dotted edge). No deadlock until end_c() rolls C back."""

    name = "dotted_edge"

    def __init__(self, sb, table="gpsb_t105"):
        super().__init__(sb)
        self.table = table
        self.x0, self.x1 = _ids_on(sb, (0, 1), start=31)
        _safely(self, self._build)

    def _build(self):
        _table(self.sb, self.table)
        t, x0, x1 = self.table, self.x0, self.x1
        a, b, c = self.session("A"), self.session("B"), self.session("C")
        c.run("BEGIN")
        c.run("UPDATE %s SET val=30 WHERE id=%d" % (t, x1))
        c.note_gxid()
        a.run("BEGIN")
        a.run("UPDATE %s SET val=10 WHERE val=%d" % (t, x0))
        a.note_gxid()
        b.run("BEGIN")
        b.start("UPDATE %s SET val=20 WHERE val=%d OR id=%d" % (t, x0, x1))
        _wait_until(lambda: self.waiting_on_segment(0, b) and self.waiting_on_segment(1, b),
                    10, "B to wait on contents 0 and 1")
        b.refresh_gxid()
        a.start("UPDATE %s SET val=10 WHERE val=%d" % (t, x1))
        _wait_until(lambda: self.waiting_on_segment(1, a, "tuple"), 10, "A to wait for the tuple lock")

    def end_c(self):
        """ROLLBACK session C: B gets the row, A now waits for B's xid: a deadlock."""
        self._sessions["C"].run("ROLLBACK")
        a = self._sessions["A"]
        _wait_until(lambda: self.waiting_on_segment(1, a, "transactionid"), 10,
                    "A to wait for B's transaction")


# --------------------------------------------------------- blocking chains
class BlockingChain(Scenario):
    """blocking_chain: 'holder' LOCKs the table ACCESS EXCLUSIVE and idles in
    transaction; waiter1..K run SELECT count(*) and wait on the coordinator."""

    name = "blocking_chain"
    holder_sql = "LOCK TABLE {t} IN ACCESS EXCLUSIVE MODE"
    first_waiter = 1

    def __init__(self, sb, waiters=3, table="gpsb_t"):
        super().__init__(sb)
        self.table = table
        self.waiters = waiters
        _safely(self, self._build)

    def _build(self):
        _table(self.sb, self.table, text=True)
        holder = self.session("holder")
        holder.run("BEGIN")
        holder.run(self.holder_sql.format(t=self.table))
        holder.note_gxid()
        self._queue_behind_holder()
        for i in range(self.first_waiter, self.first_waiter + self.waiters):
            w = self.session("waiter%d" % i)
            w.start("SELECT count(*) FROM %s" % self.table)
            _wait_until(lambda w=w: self.waiting_on_coordinator(w), 10, "waiter%d to wait" % i)

    def _queue_behind_holder(self):
        """Nothing between the holder and the waiters here."""


class LockQueue(BlockingChain):
    """blocking_chain_lock_queue: 'holder' read the table in an open transaction;
    'ddl_waiter' waits for ACCESS EXCLUSIVE; waiter2.. (SELECT count(*)) queue
    behind that waiting request, with no edge in gp_dist_wait_status()."""

    name = "lock_queue"
    holder_sql = "SELECT count(*) FROM {t}"
    first_waiter = 2

    def __init__(self, sb, waiters=2, table="gpsb_t"):
        super().__init__(sb, waiters=waiters, table=table)

    def _queue_behind_holder(self):
        ddl = self.session("ddl_waiter")
        ddl.run("BEGIN")
        ddl.start("LOCK TABLE %s IN ACCESS EXCLUSIVE MODE" % self.table)
        _wait_until(lambda: self.waiting_on_coordinator(ddl), 10, "ddl_waiter to wait")
        ddl.refresh_gxid()


# ------------------------------------------------------ mirrors and segments
class MirrorDownSyncRep(Scenario):
    """mirror_down_syncrep_wait: FTS paused, the mirror of `content` stopped
    (immediate); 'insert_seg0_onephase' (one-phase commit on that segment) and
    'insert_multiseg_2pc' (two-phase commit) wait in SyncRep on the primary.
    Clean-up restarts the mirror, resumes FTS and waits until the pair is
    back in sync ('u'/'s')."""

    name = "mirror_down_syncrep"
    restore_first = True

    def __init__(self, sb, content=0, table="gpsb_t01"):
        super().__init__(sb)
        self.content = content
        self.table = table
        _safely(self, self._build)

    def _build(self):
        _table(self.sb, self.table)
        self.sb.fts.pause()
        self._undo.append(self._restore)
        self.sb.stop_node(self.content, "m", mode="immediate")
        one = self.session("insert_seg0_onephase")
        two = self.session("insert_multiseg_2pc")
        key = _ids_on(self.sb, (self.content,), start=TABLE_ROWS + 1)[0]
        one.start("INSERT INTO %s VALUES (%d, -1)" % (self.table, key))
        two.start("INSERT INTO %s SELECT 1000+i, i FROM generate_series(1,10) i" % self.table)
        _wait_until(lambda: len(self.syncrep_waiters()) >= 2, 15, "two commits to wait in SyncRep")

    def syncrep_waiters(self):
        """pids of the backends waiting in SyncRep on the primary."""
        return [r[0] for r in self.seg_rows(
            self.content, "SELECT pid FROM pg_catalog.pg_stat_activity WHERE wait_event = 'SyncRep'")]

    def _restore(self):
        self.sb.start_node(self.content, "m")
        self.sb.fts.resume()
        _wait_until(self._in_sync, 60, "content %d to be back in sync" % self.content)

    def _in_sync(self):
        rows = self.sb.query(-1, "SELECT count(*) FROM gpsim.gp_segment_configuration WHERE "
                                 "content = %s AND status = 'u' AND mode = 's'",
                             (self.content,), utility=True)
        return rows[0][0] == 2


class FrozenSegment(Scenario):
    """A primary (and all its processes) stopped with SIGSTOP: dispatched views
    fail after gpsim.gather_timeout; utility connections to it time out. FTS is
    paused meanwhile (it would fail the segment over, as Greenplum's does)."""

    name = "frozen_segment"

    def __init__(self, sb, content=0):
        super().__init__(sb)
        self.content = content
        sb.fts.pause()
        self._undo.append(sb.fts.resume)
        self.node = sb.freeze(content)
        self._undo.append(lambda: sb.thaw(content))


class PreparedXact(Scenario):
    """prepared_xact_in_doubt: a transaction of 'committer' is PREPARED on the
    segments (gid = its gxid) and 'waiter' updates the same row on `content` and
    waits for it (holder pid 0).

    orphan=True (default): the committer updated one row and committed with the
    fault gpsim.fault_skip_commit_prepared, so the prepared transaction stays on
    `content` and the coordinator no longer knows its gxid (what dtx recovery would
    abort). Clean-up rolls it back (utility mode).
    orphan=False (as in the capture): the committer updated rows on `content` and
    the next content and its COMMIT is suspended between PREPARE and COMMIT
    PREPARED (fault gpsim.fault_suspend_commit_prepared, GP's
    dtm_broadcast_commit_prepared): the coordinator still knows the gxid and the
    committer's QD is 'active' in COMMIT. Clean-up resumes it: the commit completes.
    """

    name = "prepared_xact"
    restore_first = True

    def __init__(self, sb, content=0, table="gpsb_t01", orphan=True):
        super().__init__(sb)
        self.content = content
        self.table = table
        self.orphan = orphan
        contents = (content,) if orphan else (content, (content + 1) % sb.state()["segments"])
        self.keys = _ids_on(sb, contents, start=1)
        self.contents = contents
        self.gid = None
        _safely(self, self._build)

    def _build(self):
        _table(self.sb, self.table)
        committer = self.session("committer")
        committer.run("BEGIN")
        for key in self.keys:
            committer.run("UPDATE %s SET val=val+1 WHERE id=%d" % (self.table, key))
        committer.note_gxid()
        self.gid = str(committer.gxid)
        self._undo.append(self._rollback_prepared)
        if self.orphan:
            committer.run("SET gpsim.fault_skip_commit_prepared = on")
            committer.run("COMMIT")
            committer.run("RESET gpsim.fault_skip_commit_prepared")
        else:
            committer.run("SET gpsim.fault_suspend_commit_prepared = on")
            self._undo.append(self._resume)
            committer.start("COMMIT")
            _wait_until(lambda: all(self._prepared_on(c) for c in self.contents), 15,
                        "the commit to be prepared on contents %s" % (self.contents,))
        waiter = self.session("waiter")
        waiter.run("BEGIN")
        waiter.start("UPDATE %s SET val=val WHERE id=%d" % (self.table, self.keys[0]))
        _wait_until(lambda: self.waiting_on_segment(self.content, waiter), 10, "the waiter to wait")
        waiter.refresh_gxid()

    def _prepared_on(self, content):
        return self.seg_rows(content, "SELECT 1 FROM pg_catalog.pg_prepared_xacts WHERE gid = %s",
                             (self.gid,))

    def _resume(self):
        self.sb.query(-1, "SELECT gpsim.fault_resume(%s)", (int(self.gid),), utility=True)
        self._sessions["committer"].thread.join(30)

    def _rollback_prepared(self):
        for c in self.contents:
            if self._prepared_on(c):
                self.seg_rows(c, "ROLLBACK PREPARED '%s'" % self.gid)


# public entry points (the contract; docs/sandbox.md) ----------------------------
def global_deadlock(sb, **kw):
    """GlobalDeadlock: A and B deadlocked across contents 0 and 1."""
    return GlobalDeadlock(sb, **kw)


def dotted_edge(sb, **kw):
    """DottedEdge: a dotted tuple-lock edge, no deadlock until .end_c()."""
    return DottedEdge(sb, **kw)


def blocking_chain(sb, waiters=3, **kw):
    """BlockingChain: an idle-in-transaction root and `waiters` waiters."""
    return BlockingChain(sb, waiters=waiters, **kw)


def lock_queue(sb, **kw):
    """LockQueue: waiters queued behind a waiting ACCESS EXCLUSIVE request."""
    return LockQueue(sb, **kw)


def mirror_down_syncrep(sb, content=0, **kw):
    """MirrorDownSyncRep: commits waiting in SyncRep, FTS paused, mirror stopped."""
    return MirrorDownSyncRep(sb, content=content, **kw)


def frozen_segment(sb, content=0):
    """FrozenSegment: a primary stopped with SIGSTOP."""
    return FrozenSegment(sb, content=content)


def prepared_xact(sb, content=0, orphan=True, **kw):
    """PreparedXact: a prepared transaction on a segment blocking a waiter."""
    return PreparedXact(sb, content=content, orphan=orphan, **kw)


SCENARIOS = dict(global_deadlock=global_deadlock, dotted_edge=dotted_edge,
                 blocking_chain=blocking_chain, lock_queue=lock_queue,
                 mirror_down_syncrep=mirror_down_syncrep, frozen_segment=frozen_segment,
                 prepared_xact=prepared_xact)
