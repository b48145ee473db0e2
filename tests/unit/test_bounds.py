"""The size bound of module results and reports (common/bounds.py,
docs/collection.md "The size bound"): a lock held by many sessions while one request
waits for it makes one blocking tree and one blocking_chain finding per holder, each
naming every holder; the JSON lists the first ones and counts the rest, the verdict and
counts stay those of every finding."""
import json

from ansible_collections.gpops.greenplum.plugins.module_utils.analyse import hang_classes
from ansible_collections.gpops.greenplum.plugins.module_utils.analyse.hang_diagnosis import Diagnosis
from ansible_collections.gpops.greenplum.plugins.module_utils.analyse.lock_analysis import analyse
from ansible_collections.gpops.greenplum.plugins.module_utils.common import bounds
from ansible_collections.gpops.greenplum.plugins.module_utils.common.records import ClusterSnapshot
from ansible_collections.gpops.greenplum.plugins.module_utils.report import hang_report

from synthetic import TAKEN_AT, at, backend, lock

HOLDERS = 120


def _queue_behind_many_holders(holders=HOLDERS):
    """``holders`` sessions idle in transaction hold RowExclusiveLock on one table on the
    coordinator; session 1000 waits for AccessExclusiveLock (30 s); 1001 queues behind it."""
    snap = ClusterSnapshot(taken_at=TAKEN_AT)
    rel = dict(relation=16384, database=5, relation_name="public.t")
    for i in range(1, holders + 1):
        snap.backends.append(backend(-1, 100 + i, i, state="idle in transaction", state_change=at(60)))
        snap.locks.append(lock(-1, 100 + i, i, "relation", "RowExclusiveLock", True, **rel))
    snap.backends += [backend(-1, 5000, 1000, state_change=at(30), wait_event_type="Lock", wait_event="relation"),
                      backend(-1, 5001, 1001, state_change=at(20), wait_event_type="Lock", wait_event="relation")]
    snap.locks += [lock(-1, 5000, 1000, "relation", "AccessExclusiveLock", False, **rel),
                   lock(-1, 5001, 1001, "relation", "AccessShareLock", False, **rel)]
    return snap


def test_bound_lists_cuts_every_list_and_counts_what_it_left_out():
    value = {"a": list(range(60)), "b": [{"c": list(range(51)), "d": [1]}], "e": "x" * 5}
    got = bounds.bound_lists(value, limit=50)
    assert got["a"] == list(range(50)) and got["a_omitted"] == 10
    assert got["b"][0]["c"] == list(range(50)) and got["b"][0]["c_omitted"] == 1
    assert "d_omitted" not in got["b"][0] and "b_omitted" not in got
    assert value["a"] == list(range(60)), "the input is not changed"


def test_many_holders_give_a_bounded_result_with_every_finding_counted():
    snap = _queue_behind_many_holders()
    result = analyse(snap)
    findings = hang_classes.classify(snap, result, hang_classes.ClusterFacts())
    chains = [f for f in findings if f.cls == "blocking_chain"]
    assert len(result.blocking_trees) == len(chains) == HOLDERS  # the analysis keeps every one
    out = Diagnosis(snap, hang_classes.ClusterFacts(), result, findings, 0.1).as_dict()
    listed = [f for f in out["findings"] if f["class"] == "blocking_chain"]
    assert len(listed) == bounds.TOP_LIMIT
    assert out["findings_omitted"] == {"blocking_chain": HOLDERS - bounds.TOP_LIMIT}
    assert out["counts"][chains[0].severity] >= HOLDERS
    assert out["verdict"] == hang_report.verdict_of([f.as_dict() for f in findings]) != "healthy"
    assert any("blocking_chain: %d more" % (HOLDERS - bounds.TOP_LIMIT) in line for line in out["summary"])
    trees = out["analysis"]["blocking_trees"]
    assert len(trees) == bounds.TOP_LIMIT and out["analysis"]["blocking_trees_omitted"] == HOLDERS - bounds.TOP_LIMIT
    waiter = next(w for w in trees[0]["waiters"] if w["sess_id"] == 1000)
    # Its wait on this tree's root is listed; those on the other holders are counted (listed
    # in their own trees), so the trees do not grow with the square of the holders.
    assert [w["blocked_by"] for w in waiter["waits"]] == [trees[0]["root"]["label"]]
    assert waiter["waits_outside_tree"] == HOLDERS - 1 and "waits_omitted" not in waiter
    chain = next(f for f in listed if f["evidence"]["root"]["label"] == trees[0]["root"]["label"])
    entry = next(w for w in chain["evidence"]["waiters"] if w["depth"] == 1)
    assert len(entry["waits"]) == 1 and entry["waits_outside_tree"] == HOLDERS - 1
    # The report keeps the verdict and counts of every finding, and says what it does not list.
    doc = hang_report.build_report(out, "c")
    assert doc["counts"] == out["counts"] and doc["findings_omitted"] == out["findings_omitted"]
    assert "blocking_chain`: %d more" % (HOLDERS - bounds.TOP_LIMIT) in hang_report.render_markdown(doc)


def test_the_result_does_not_grow_with_the_square_of_the_holders():
    sizes = {}
    for holders in (40, 160):
        snap = _queue_behind_many_holders(holders)
        result = analyse(snap)
        findings = hang_classes.classify(snap, result, hang_classes.ClusterFacts())
        out = Diagnosis(snap, hang_classes.ClusterFacts(), result, findings, 0.1).as_dict()
        sizes[holders] = len(json.dumps(out, default=str))
    # 4 x the holders: the snapshot's rows grow 4 x, the listed trees and findings not at all.
    assert sizes[160] < 2.5 * sizes[40], sizes
