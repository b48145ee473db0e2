"""Property: between plan and execution, whatever happens to the victims' sessions
(the transaction ends, the client retries in the same session, the session ends and
a new one gets the pid), the executor never signals a backend whose current
transaction is not the one planned.

The guard source is an in-memory model of coordinator backends that signals a
backend when every column the runner names in ``where`` matches its current state,
exactly as the ``WHERE`` of ``sql.signal_transaction`` does: a runner that left out the
gxid or ``xact_start`` would signal the retry and fail this test."""
import datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.gpops.greenplum.plugins.module_utils.act import deadlock_breaker
from ansible_collections.gpops.greenplum.plugins.module_utils.analyse.lock_analysis import analyse
from ansible_collections.gpops.greenplum.plugins.module_utils.common.records import Backend
from ansible_collections.gpops.greenplum.plugins.module_utils.plan.deadlock_plan import plan_deadlocks
from ansible_collections.gpops.greenplum.plugins.module_utils.plan.reasons import Reason

from synthetic import at, qd_pid, snapshot_from_graph

T0 = datetime.datetime(2026, 11, 21, 5, 0, 0, tzinfo=datetime.timezone.utc)


class Model:
    """Coordinator backends by pid: ``{pid: {backend_start, sess_id, xact_start, gxid}}``."""

    def __init__(self, snapshot):
        self.clock = 0
        self.next_gxid = 1000
        self.next_session = 5000
        self.backends = {}
        for x in snapshot.dist_xacts:
            qd = next(b for b in snapshot.backends if b.sess_id == x.gp_session_id and b.content == -1)
            self.backends[qd.pid] = {"backend_start": qd.backend_start, "sess_id": qd.sess_id,
                                     "xact_start": qd.xact_start, "gxid": x.gxid}
        self.signalled = []  # (pid, the state it had when signalled)

    def tick(self):
        self.clock += 1
        return T0 + datetime.timedelta(seconds=self.clock)

    def apply(self, event, pid):
        b = self.backends.get(pid)
        if event == "end" and b:  # the transaction ends; the session stays idle
            b["gxid"], b["xact_start"] = None, None
        elif event == "retry" and b:  # a new transaction in the same session
            self.next_gxid += 1
            b["gxid"], b["xact_start"] = self.next_gxid, self.tick()
        elif event == "new_session":  # the backend exits; a new one gets the same pid
            self.next_gxid += 1
            self.next_session += 1
            self.backends[pid] = {"backend_start": self.tick(), "sess_id": self.next_session,
                                  "xact_start": self.tick(), "gxid": self.next_gxid}
        elif event == "exit":
            self.backends.pop(pid, None)

    # The guard source interface of backend_signals.signal_transaction.
    def signal(self, action, where, message):
        b = self.backends.get(where["pid"])
        if b is None or any(b[k] != v for k, v in where.items() if k != "pid"):
            return None
        self.signalled.append((where["pid"], dict(b)))
        return True

    def current(self, pid):
        b = self.backends.get(pid)
        if b is None:
            return None
        backend = Backend.from_row({"pid": pid, "sess_id": b["sess_id"], "backend_start": b["backend_start"],
                                    "xact_start": b["xact_start"], "backend_type": "client backend",
                                    "datname": "postgres"}, content=-1)
        return {"backend": backend, "gxids": [b["gxid"]] if b["gxid"] else []}


@st.composite
def scenario(draw):
    # Random cycles over distinct gxids, each cycle spanning two or three contents.
    n_cycles = draw(st.integers(1, 3))
    edges, gxid = [], 10
    for _ in range(n_cycles):
        size = draw(st.integers(2, 3))
        members = list(range(gxid, gxid + size))
        gxid += size
        for i, waiter in enumerate(members):
            edges.append((i % 2, waiter, members[(i + 1) % size], True))
    snap = snapshot_from_graph(edges, qd_extra={g: {"backend_start": at(3600), "xact_start": at(60 + g)}
                                                for g in range(10, gxid)},
                               read=["locks", "edges", "activity", "dist_xacts", "prepared_xacts"])
    events = draw(st.lists(st.tuples(st.sampled_from(["end", "retry", "new_session", "exit", "none"]),
                                     st.sampled_from(range(10, gxid))), max_size=8))
    return snap, events


@settings(max_examples=300, deadline=None)
@given(scenario(), st.sampled_from(["before_recheck", "after_recheck"]))
def test_never_signals_a_backend_whose_transaction_is_not_the_planned_one(case, when):
    """``when``: the events happen before the light re-check of the cycle (which then
    sees the model) or between that re-check and the signal (the re-check still sees
    the planned gxids: only the guard in the signalling statement stands between)."""
    snap, events = case
    plan = plan_deadlocks(snap, analyse(snap), terminate=True, cancel_grace=0)
    assert plan.steps, "every random cycle has a victim"
    model = Model(snap)
    planned_gxids = {x.gxid for x in snap.dist_xacts}

    def apply_events():
        for event, gxid in events:
            model.apply(event, qd_pid(gxid))

    if when == "before_recheck":
        apply_events()

        def poll():
            return {b["gxid"] for b in model.backends.values() if b["gxid"]}
    else:
        pending = [True]

        def poll():
            if pending:  # the re-check answers from the planned state, then the world moves
                pending.pop()
                apply_events()
                return planned_gxids
            return {b["gxid"] for b in model.backends.values() if b["gxid"]}
    done = []
    deadlock_breaker.break_deadlocks(model, plan, 0, poll, done, sleep=lambda s: None)
    planned = {s.guard.facts["pid"]: s.guard.facts for s in plan.steps}
    for pid, state in model.signalled:
        assert (state["gxid"], state["xact_start"]) == (planned[pid]["gxid"], planned[pid]["xact_start"])
    # Every step not signalled says why, with a reason code.
    for action in done:
        assert action["result"] in ("done", "skipped"), action
        if action["result"] == "skipped":
            assert action["guard_failed"] in {r.value for r in Reason}
