"""The global wait-for graph: GDD's reduction rules, cycles, and the victims loop.

Worked examples are the ones of docs/wait-for-graph.md; random graphs are checked
against brute force (hypothesis)."""
import dataclasses
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.gpops.greenplum.plugins.module_utils.analyse.lock_analysis import analyse
from ansible_collections.gpops.greenplum.plugins.module_utils.analyse.waitgraph import (
    RULE_DOTTED, RULE_IN_DEGREE, RULE_OUT_DEGREE, WaitForGraph, gdd_reduce, strongly_connected_components)

from synthetic import snapshot_from_graph

SOLID, DOTTED = True, False
A, B, C, D = 1, 2, 3, 4  # gxids: A is the oldest

# Greenplum's src/backend/utils/gdd/README.md, "Case Analysis": seg 0: B ==> A;
# seg 1: A ~~> B (tuple lock), B ==> C, D ==> B.
GDD_README_EXAMPLE = [(0, B, A, SOLID), (1, A, B, DOTTED), (1, B, C, SOLID), (1, D, B, SOLID)]


def removed_edges(graph):
    return [(rule, graph.edges[i]) for rule, i in graph.removed]


def test_gdd_readme_example_reduces_to_nothing_in_the_readme_order():
    graph = gdd_reduce(GDD_README_EXAMPLE)
    assert graph.is_empty() and graph.cycles() == []
    # "Edges are reduced in this order: B1 ==> C1 (Rule 1), D1 ==> B1 (Rule 2),
    #  A1 ~~> B1 (Rule 3), B0 ==> A0 (Rule 1)"
    assert removed_edges(graph) == [
        (RULE_OUT_DEGREE, (1, B, C, SOLID)),
        (RULE_IN_DEGREE, (1, D, B, SOLID)),
        (RULE_DOTTED, (1, A, B, DOTTED)),
        (RULE_OUT_DEGREE, (0, B, A, SOLID)),
    ]


def test_two_segment_cycle_is_a_deadlock():
    # global_deadlock_2seg: gxid 18 waits for 17 on content 0, 17 for 18 on content 1.
    graph = gdd_reduce([(0, 18, 17, SOLID), (1, 17, 18, SOLID)])
    assert graph.remaining() == [0, 1]
    assert [sorted(c) for c in graph.cycles()] == [[17, 18]]
    assert graph.removed == []


def test_dotted_edge_to_a_vertex_idle_on_that_segment_is_removed():
    # dotted_edge_no_deadlock: B(24) ==> A(23) on seg 0; A ~~> B and B ==> C(22) on seg 1.
    graph = gdd_reduce([(0, 24, 23, SOLID), (1, 23, 24, DOTTED), (1, 24, 22, SOLID)])
    assert graph.is_empty()
    assert removed_edges(graph) == [
        (RULE_OUT_DEGREE, (1, 24, 22, SOLID)), (RULE_DOTTED, (1, 23, 24, DOTTED)),
        (RULE_OUT_DEGREE, (0, 24, 23, SOLID))]


def test_same_wait_solid_after_c_rolled_back_is_a_deadlock():
    # dotted_edge_no_deadlock__after_c_rollback: A now waits for B's xid (solid).
    graph = gdd_reduce([(0, 24, 23, SOLID), (1, 23, 24, SOLID)])
    assert [sorted(c) for c in graph.cycles()] == [[23, 24]]


def test_dotted_edge_stays_when_its_holder_waits_on_the_same_segment():
    # On seg 1 B holds a tuple lock A wants, but B itself waits there for A:
    # B cannot finish its query, so the dotted edge cannot go away.
    edges = [(0, B, A, SOLID), (1, A, B, DOTTED), (1, B, A, SOLID)]
    graph = gdd_reduce(edges)
    assert sorted(graph.remaining()) == [0, 1, 2]
    assert [sorted(c) for c in graph.cycles()] == [[A, B]]


def test_dotted_only_cycle_is_not_a_deadlock_once_a_holder_is_idle_locally():
    # A ~~> B on seg 0 and B ~~> A on seg 1: on each segment the holder waits for
    # nothing there, so each may finish its query and release: rule 3 removes both.
    graph = gdd_reduce([(0, A, B, DOTTED), (1, B, A, DOTTED)])
    assert graph.is_empty()
    assert [rule for rule, _ in graph.removed] == [RULE_DOTTED, RULE_DOTTED]


def test_several_disjoint_cycles():
    edges = [(0, 1, 2, SOLID), (1, 2, 1, SOLID),
             (0, 3, 4, SOLID), (1, 4, 5, SOLID), (2, 5, 3, SOLID),
             (0, 7, 6, SOLID), (0, 6, 7, SOLID)]
    graph = gdd_reduce(edges)
    assert sorted(graph.remaining()) == list(range(len(edges)))
    assert sorted(sorted(c) for c in graph.cycles()) == [[1, 2], [3, 4, 5], [6, 7]]


def test_cycle_with_a_tail_keeps_only_the_cycle():
    # C waits for A (a tail into the cycle), B also waits for D, which waits for nothing.
    edges = [(0, A, B, SOLID), (1, B, A, SOLID), (1, C, A, SOLID), (0, B, D, SOLID)]
    graph = gdd_reduce(edges)
    assert sorted(graph.remaining()) == [0, 1]
    assert (RULE_OUT_DEGREE, (0, B, D, SOLID)) in removed_edges(graph)
    assert (RULE_IN_DEGREE, (1, C, A, SOLID)) in removed_edges(graph)


def test_path_between_two_cycles_stays_but_is_no_cycle():
    # cycle {1,2} -> 9 -> cycle {3,4}: 9 has in and out edges, so GDD keeps it.
    edges = [(0, 1, 2, SOLID), (1, 2, 1, SOLID), (0, 2, 9, SOLID), (1, 9, 3, SOLID),
             (0, 3, 4, SOLID), (1, 4, 3, SOLID)]
    graph = gdd_reduce(edges)
    assert len(graph.remaining()) == len(edges)
    assert sorted(sorted(c) for c in graph.cycles()) == [[1, 2], [3, 4]]


def test_victims_are_chosen_inside_cycles_not_on_the_path_between_them():
    # Greenplum's detector would cancel the largest gxid, 9, which breaks nothing.
    snap = snapshot_from_graph([(0, 1, 2, SOLID), (1, 2, 1, SOLID), (0, 2, 9, SOLID), (1, 9, 3, SOLID),
                                (0, 3, 4, SOLID), (1, 4, 3, SOLID)])
    result = analyse(snap)
    assert [v["gxid"] for v in result.victims] == [4, 2]


def test_self_wait_is_a_cycle_of_one():
    graph = gdd_reduce([(0, 5, 5, SOLID)])
    assert graph.cycles() == [[5]]


def test_remove_vertex_then_reduce_breaks_the_cycle():
    graph = gdd_reduce([(0, 18, 17, SOLID), (1, 17, 18, SOLID), (1, 19, 18, SOLID)])
    assert graph.remaining() == [0, 1]
    graph.remove_vertex(18)
    graph.reduce()
    assert graph.is_empty()


def test_tarjan_needs_no_recursion_on_a_long_chain():
    n = 100000
    successors = {i: [i + 1] for i in range(n)}
    successors[n] = [0]
    components = strongly_connected_components(range(n + 1), lambda v: successors[v])
    assert len(components) == 1 and len(components[0]) == n + 1


# ----------------------------------------------------------------- random graphs

def naive_reduce(edges):
    """GDD's rules applied literally until nothing changes: the set of edges left."""
    alive = set(range(len(edges)))
    changed = True
    while changed:
        changed = False
        for v in {x for i in alive for x in edges[i][1:3]}:
            outs = {i for i in alive if edges[i][1] == v}
            ins = {i for i in alive if edges[i][2] == v}
            if not outs or not ins:  # rules 1 and 2
                alive -= outs | ins
                changed = True
        for i in sorted(alive):  # rule 3
            content, _waiter, holder, solid = edges[i]
            if not solid and not any(edges[j][0] == content and edges[j][1] == holder for j in alive):
                alive.discard(i)
                changed = True
    return alive


def simple_cycle_vertices(vertices, succ):
    """Vertices on some simple cycle, by brute force over vertex sequences."""
    on_cycle = set()
    for size in range(1, len(vertices) + 1):
        for seq in itertools.permutations(vertices, size):
            if seq[0] == min(seq) and all(seq[(k + 1) % size] in succ.get(seq[k], ()) for k in range(size)):
                on_cycle.update(seq)
    return on_cycle


def reach(start, succ):
    seen, stack = set(start), list(start)
    while stack:
        for w in succ.get(stack.pop(), ()):
            if w not in seen:
                seen.add(w)
                stack.append(w)
    return seen


vertex = st.integers(min_value=1, max_value=5)
mixed_edges = st.lists(st.tuples(st.integers(-1, 2), vertex, vertex, st.booleans()), max_size=12)
solid_edges = st.lists(st.tuples(st.integers(-1, 2), vertex, vertex, st.just(SOLID)), max_size=10)


@settings(max_examples=300, deadline=None)
@given(mixed_edges)
def test_reduction_equals_the_naive_fixed_point(edges):
    assert set(gdd_reduce(edges).remaining()) == naive_reduce(edges)


@settings(max_examples=300, deadline=None)
@given(solid_edges)
def test_solid_graph_deadlocks_iff_it_has_a_cycle_and_keeps_exactly_the_edges_between_cycles(edges):
    """With solid edges only, rules 1 and 2 keep a vertex iff it is reachable from a
    cycle and reaches a cycle; the edges left are all edges among those vertices."""
    succ, pred = {}, {}
    for _c, w, h, _s in edges:
        succ.setdefault(w, set()).add(h)
        pred.setdefault(h, set()).add(w)
    vertices = sorted(set(succ) | set(pred))
    cycles = simple_cycle_vertices(vertices, succ)
    graph = gdd_reduce(edges)
    assert (not graph.is_empty()) == bool(cycles)
    kept = reach(cycles, succ) & reach(cycles, pred)
    assert set(graph.remaining()) == {i for i, e in enumerate(edges) if e[1] in kept and e[2] in kept}
    assert set().union(*graph.cycles()) == cycles if cycles else graph.cycles() == []


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(vertex, vertex), max_size=12))
def test_tarjan_components_are_the_mutually_reachable_classes(pairs):
    succ = {}
    for w, h in pairs:
        succ.setdefault(w, set()).add(h)
    vertices = sorted({v for p in pairs for v in p})
    components = strongly_connected_components(vertices, lambda v: sorted(succ.get(v, ())))
    assert sorted(v for comp in components for v in comp) == vertices
    comp_of = {v: i for i, comp in enumerate(components) for v in comp}
    for v, w in itertools.product(vertices, repeat=2):
        mutual = w in reach([v], succ) | {v} and v in reach([w], succ) | {w}
        assert (comp_of[v] == comp_of[w]) == mutual


@settings(max_examples=150, deadline=None)
@given(mixed_edges, st.sampled_from(["youngest", "oldest", "least_work"]))
def test_removing_the_victims_leaves_an_empty_reduced_graph(edges, policy):
    result = analyse(snapshot_from_graph(edges), policy=policy)
    graph = WaitForGraph(edges).reduce()
    assert (result.verdict == "deadlock") == (not graph.is_empty())
    for victim in result.victims:
        graph.remove_vertex(victim["gxid"])
    graph.reduce()
    assert graph.is_empty()
    assert result.unresolved == []  # nobody is protected here
    for d in result.deadlocks:  # a victim among its own members, or another cycle's victim ended it
        mine = [v for v in result.victims if v["deadlock"] == d["id"]]
        assert all(v["gxid"] in d["gxids"] for v in mine)
        assert d["resolution"] == ("victim" if mine else "released_by_other_victim")


def test_a_cycle_held_by_a_dotted_edge_into_another_cycle_ends_with_that_cycles_victim():
    # Content 0: 1 ~~> 3, 2 ~~> 1, 3 ~~> 3; content 1: 1 ==> 2. The cycle {1, 2} holds
    # only while 1 waits for 3 on content 0 (so 1 cannot release the tuple lock 2
    # wants there); cancelling 3, the youngest, ends both.
    result = analyse(snapshot_from_graph([(0, 1, 3, DOTTED), (0, 2, 1, DOTTED), (0, 3, 3, DOTTED),
                                          (1, 1, 2, SOLID)]))
    assert [(d["gxids"], d["resolution"]) for d in result.deadlocks] == [
        ([1, 2], "released_by_other_victim"), ([3], "victim")]
    assert [v["gxid"] for v in result.victims] == [3]


def test_bad_policy_is_rejected_before_anything_else():
    with pytest.raises(ValueError, match="^policy: unknown victim policy 'largest'"):
        analyse(snapshot_from_graph([]), policy="largest")


def holder_prepared(snap, content, holder):
    """Make the edges to ``holder`` on ``content`` point at a prepared transaction (holder_lpid 0)."""
    snap.edges = [dataclasses.replace(e, holder_pid=0) if (e.content, e.holder_gxid) == (content, holder) else e
                  for e in snap.edges]
    return snap


def test_wait_for_a_prepared_transaction_is_an_edge_but_never_a_deadlock():
    result = analyse(holder_prepared(snapshot_from_graph([(0, 7, 9, SOLID)]), 0, 9))
    assert result.graph["edges"] == 1 and result.graph["dropped_edges"] == []
    assert [r["rule"] for r in result.graph["reduction"]] == [RULE_OUT_DEGREE]
    assert (result.deadlocks, result.victims) == ([], [])
    assert result.graph["reduction"][0]["edge"]["holder_is_prepared"]


def test_prepared_vertex_is_never_the_victim():
    # Not a state Greenplum reaches (a prepared transaction waits for nothing), but
    # should a snapshot show it, the prepared vertex is not chosen.
    result = analyse(holder_prepared(snapshot_from_graph([(0, 1, 2, SOLID), (1, 2, 1, SOLID)]), 0, 2))
    (victim,) = result.victims
    assert victim["gxid"] == 1 and "gxid 2 (prepared transaction" in victim["reason"]
