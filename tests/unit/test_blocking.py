"""Blocking trees: roots, direct and queued waiters, sessions across nodes, prepared
transactions, wait times."""
import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.gpops.greenplum.plugins.module_utils.analyse.lock_analysis import analyse
from ansible_collections.gpops.greenplum.plugins.module_utils.analyse.blocking import _MODES, modes_conflict
from ansible_collections.gpops.greenplum.plugins.module_utils.common.records import ClusterSnapshot

from synthetic import TAKEN_AT, at, backend, lock, prepared_xact

REL = 16384


def relation_lock(content, pid, sess, mode, granted=True, **extra):
    return lock(content, pid, sess, "relation", mode, granted, relation=REL, database=5,
                relation_name="public.t", **extra)


def lock_queue_snapshot(blocking_pids=None):
    """On the coordinator: session 1 holds AccessShareLock on t (idle in transaction),
    session 2 waits for AccessExclusiveLock (20 s), then sessions 3 (AccessShareLock,
    10 s) and 4 (RowExclusiveLock, 5 s) queue behind it."""
    snap = ClusterSnapshot(taken_at=TAKEN_AT)
    snap.backends = [backend(-1, 101, 1, state="idle in transaction", state_change=at(60)),
                     backend(-1, 102, 2, state_change=at(20), wait_event_type="Lock", wait_event="relation"),
                     backend(-1, 103, 3, state_change=at(10), wait_event_type="Lock", wait_event="relation",
                             blocking_pids=blocking_pids),
                     backend(-1, 104, 4, state_change=at(5), wait_event_type="Lock", wait_event="relation")]
    snap.locks = [relation_lock(-1, 104, 4, "RowExclusiveLock", False),
                  relation_lock(-1, 103, 3, "AccessShareLock", False),
                  relation_lock(-1, 101, 1, "AccessShareLock"),
                  relation_lock(-1, 102, 2, "AccessExclusiveLock", False)]
    return snap


def only_tree(result):
    assert len(result.blocking_trees) == 1, result.blocking_trees
    return result.blocking_trees[0]


def test_conflict_table_is_postgresqls():
    for a, b in itertools.product(_MODES, repeat=2):
        assert modes_conflict(a, b) == modes_conflict(b, a)  # PostgreSQL's table is symmetric
    assert not modes_conflict("AccessShareLock", "RowExclusiveLock")
    assert not modes_conflict("RowExclusiveLock", "RowExclusiveLock")
    assert modes_conflict("ShareLock", "RowExclusiveLock")
    assert not modes_conflict("ShareLock", "ShareLock")
    assert modes_conflict("ShareUpdateExclusiveLock", "ShareUpdateExclusiveLock")
    assert all(modes_conflict("AccessExclusiveLock", m) for m in _MODES)
    assert [m for m in _MODES if modes_conflict("AccessShareLock", m)] == ["AccessExclusiveLock"]
    assert modes_conflict("SomeOtherLock", "AccessShareLock")  # unknown: assume the worst


def test_lock_queue_inferred_from_lock_rows():
    tree = only_tree(analyse(lock_queue_snapshot()))
    assert tree["root"]["sess_id"] == 1 and tree["root"]["idle_in_transaction_since"] == at(60).isoformat()
    got = {w["sess_id"]: (w["depth"], [(x["kind"], x["blocked_by"].split(" (")[0]) for x in w["waits"]])
           for w in tree["waiters"]}
    assert got == {2: (1, [("holds", "session 1")]),
                   3: (2, [("queued_behind", "session 2")]),
                   4: (2, [("queued_behind", "session 2")])}
    assert tree["longest_wait_s"] == 20.0
    assert {x["relation_name"] for w in tree["waiters"] for x in w["waits"]} == {"public.t"}


def test_pg_blocking_pids_wins_over_inference_when_collected():
    # The server says nothing blocks session 3 (e.g. it was granted meanwhile): trust it.
    tree = only_tree(analyse(lock_queue_snapshot(blocking_pids=())))
    assert sorted(w["sess_id"] for w in tree["waiters"]) == [2, 4]


def test_sessions_are_joined_across_nodes_by_session_id():
    """A QE of session 7 on content 1 waits for the xid of session 8's QE there: the
    tree names both by their coordinator backends, and the relation by the
    waiter's tuple lock."""
    snap = ClusterSnapshot(taken_at=TAKEN_AT)
    snap.backends = [backend(-1, 1007, 7, wait_event_type="IPC", wait_event="Dispatch/Result"),
                     backend(-1, 1008, 8, state="idle in transaction"),
                     backend(1, 507, 7, state_change=at(12), wait_event_type="Lock", wait_event="transactionid"),
                     backend(1, 508, 8, state="idle in transaction")]
    snap.locks = [lock(1, 508, 8, "transactionid", "ExclusiveLock", transactionid="900"),
                  lock(1, 507, 7, "transactionid", "ShareLock", False, transactionid="900"),
                  lock(1, 507, 7, "tuple", "ExclusiveLock", relation=REL, page=0, tuple=3,
                       relation_name="public.t"),
                  relation_lock(1, 507, 7, "RowExclusiveLock"), relation_lock(1, 508, 8, "RowExclusiveLock")]
    tree = only_tree(analyse(snap))
    assert (tree["root"]["sess_id"], tree["root"]["coordinator_pid"]) == (8, 1008)
    (waiter,) = tree["waiters"]
    assert (waiter["sess_id"], waiter["coordinator_pid"]) == (7, 1007)
    (wait,) = waiter["waits"]
    assert (wait["content"], wait["locktype"], wait["mode"], wait["relation_name"], wait["waiting_s"]) == (
        1, "transactionid", "ShareLock", "public.t", 12.0)


def test_prepared_transaction_without_coordinator_is_an_in_doubt_root():
    snap = ClusterSnapshot(taken_at=TAKEN_AT)
    prepared, rows = prepared_xact(0, 55, "700", 9, seconds=300)
    snap.prepared_xacts, snap.locks = [prepared], rows
    snap.backends = [backend(-1, 1010, 10), backend(0, 510, 10, state_change=at(30))]
    snap.locks.append(lock(0, 510, 10, "transactionid", "ShareLock", False, transactionid="700"))
    result = analyse(snap)
    assert result.verdict == "blocking" and result.victims == []
    tree = only_tree(result)
    root = tree["root"]
    assert (root["kind"], root["gxid"], root["contents"], root["transactions"], root["age_s"], root["in_doubt"]) == (
        "prepared_xact", 55, [0], {"0": "700"}, 300.0, True)
    assert tree["explanation"].startswith("prepared transaction gxid 55 (content 0 transaction 700) blocks 1 session")
    assert "in doubt" in tree["explanation"]


def test_waitstart_is_preferred_when_the_server_has_it():
    snap = lock_queue_snapshot()
    snap.locks = [relation_lock(-1, 102, 2, "AccessExclusiveLock", False, waitstart=at(42).isoformat())
                  if r.pid == 102 else r for r in snap.locks]
    assert only_tree(analyse(snap))["longest_wait_s"] == 42.0


def test_utility_mode_holder_is_named_by_its_node_and_pid():
    snap = ClusterSnapshot(taken_at=TAKEN_AT)
    snap.backends = [backend(0, 600, -1, state="idle in transaction", application_name="psql"),
                     backend(0, 601, 11, state_change=at(3)), backend(-1, 1011, 11)]
    snap.locks = [relation_lock(0, 600, -1, "AccessExclusiveLock"),
                  relation_lock(0, 601, 11, "AccessShareLock", False)]
    tree = only_tree(analyse(snap))
    assert tree["root"]["label"] == "backend pid 600 on content 0 (no distributed session)"
    assert tree["root"]["application_name"] == "psql"


def test_nothing_waits_means_no_tree():
    snap = ClusterSnapshot(taken_at=TAKEN_AT, locks=[relation_lock(-1, 101, 1, "AccessShareLock")])
    result = analyse(snap)
    assert (result.verdict, result.blocking_trees) == ("none", [])


# --------------------------------------------------------- random lock queues

def simulate_queue(requests):
    """PostgreSQL's rule for a new request on one lock: granted when it conflicts
    with no granted mode and no request already waiting, else it queues.
    Returns ``[(session, mode, granted)]`` in arrival order."""
    state = []
    for session, mode in requests:
        blocked = any(modes_conflict(mode, m) for _s, m, granted in state if granted) or any(
            modes_conflict(mode, m) for _s, m, granted in state if not granted)
        state.append((session, mode, not blocked))
    return state


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(_MODES), min_size=1, max_size=7))
def test_inferred_blockers_are_what_pg_blocking_pids_reports(modes):
    """Each waiter is blocked by the conflicting holders and the conflicting
    requests queued ahead of it, and the tree's depth follows from that."""
    state = simulate_queue(list(enumerate(modes, 1)))
    snap = ClusterSnapshot(taken_at=TAKEN_AT)
    for session, mode, granted in state:
        snap.backends.append(backend(-1, 100 + session, session, state_change=at(100 - session)))
        snap.locks.append(relation_lock(-1, 100 + session, session, mode, granted))
    result = analyse(snap)
    got, counted = {}, {}
    for tree in result.blocking_trees:
        for w in tree["waiters"]:
            # A tree lists the waits on its own members; the others are counted (and listed
            # in their trees): a lock held by N sessions must not cost N trees x N waits.
            got.setdefault(w["sess_id"], set()).update(
                (x["kind"], int(x["blocked_by"].split()[1])) for x in w["waits"])
            counted.setdefault(w["sess_id"], set()).add(len(w["waits"]) + w["waits_outside_tree"])
    expected = {}
    for k, (session, mode, granted) in enumerate(state):
        if granted:
            continue
        expected[session] = {("holds", s) for s, m, g in state if g and modes_conflict(mode, m)} | {
            ("queued_behind", s) for s, m, g in state[:k] if not g and modes_conflict(mode, m)}
    # Only waiters that reach a root are in a tree; in one queue every waiter does.
    assert got == {s: b for s, b in expected.items() if b}
    assert counted == {s: {len(b)} for s, b in expected.items() if b}
    assert result.verdict == ("blocking" if expected else "none")


def test_root_waiting_in_syncrep_is_explained_as_such():
    # Session 1's commit waits for a dead mirror on content 0 while holding its row lock.
    snap = ClusterSnapshot(taken_at=TAKEN_AT)
    snap.backends = [backend(-1, 101, 1), backend(0, 501, 1, state="idle in transaction", wait_event="SyncRep"),
                     backend(-1, 102, 2), backend(0, 502, 2, state_change=at(8))]
    snap.locks = [lock(0, 501, 1, "transactionid", "ExclusiveLock", transactionid="900"),
                  lock(0, 502, 2, "transactionid", "ShareLock", False, transactionid="900")]
    result = analyse(snap)
    tree = only_tree(result)
    assert tree["root"]["sess_id"] == 1 and tree["root"]["syncrep_contents"] == [0]
    assert "waits for synchronous replication (SyncRep) on content 0" in tree["explanation"]
    assert "do not kill it" in tree["explanation"]
