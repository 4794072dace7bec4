"""Region graph <-> networkx round trip, depth, counts, parameter counts and the summary text."""
from __future__ import annotations

import dataclasses

import networkx as nx
import pytest
from hypothesis import given, settings, strategies as st

from pcc.ir import Circuit, Family, Input, Param, Sum
from pcc.region_graph import (counts, depth, from_graph, leaf_parameter_count, parameter_count,
                              sum_parameter_count, summary, to_graph)
from pcc.structures import poon_domingos, random_binary_trees

CATEGORICAL3 = Family("categorical", (("n", 3),))


def small_circuit() -> Circuit:
    """top = mix of a*b and e*b; e = c*d. Input `b` names its own family, `a` lists its scope unsorted."""
    return Circuit(
        vars=("x0", "x1", "x2", "x3"),
        regions=(
            Input("a", (1, 0), 2),
            Input("b", (2, 3), 3, CATEGORICAL3),
            Input("c", (0,), 2),
            Input("d", (1,), 2),
            Sum("e", 2, (("c", "d"),)),
            Sum("top", 1, (("a", "b"), ("e", "b"))),
        ),
        root="top",
        leaf=Family("bernoulli"),
        params=(Param("e", "weights", 0, (2, 2, 2), (0.125,) * 8),),
    )


def test_to_graph_nodes_edges_and_attributes():
    g = to_graph(small_circuit())
    assert set(g.nodes) == {("region", n) for n in "abcde"} | {("region", "top")} | {
        ("partition", "e", 0), ("partition", "top", 0), ("partition", "top", 1)}
    assert g.nodes["region", "top"] == {"kind": "sum", "scope": frozenset({0, 1, 2, 3}), "k": 1}
    assert g.nodes["region", "a"]["family"] == "bernoulli"
    assert g.nodes["region", "a"]["declared_family"] is None
    assert g.nodes["region", "b"]["family"] == "categorical(n=3)"
    assert g.nodes["region", "b"]["scope"] == frozenset({2, 3})
    assert g.nodes["partition", "top", 1]["scope"] == frozenset({0, 1, 2, 3})
    assert set(g.successors(("partition", "top", 1))) == {("region", "e"), ("region", "b")}
    assert g.edges[("partition", "top", 1), ("region", "e")]["position"] == 0
    assert g.edges[("partition", "top", 1), ("region", "b")]["position"] == 1
    assert list(g.predecessors(("region", "b"))) == [("partition", "top", 0), ("partition", "top", 1)]
    assert nx.is_directed_acyclic_graph(g)
    assert g.number_of_edges() == 3 + 6  # region -> partition, partition -> child


def test_round_trip_is_exact():
    c = small_circuit()
    back = from_graph(to_graph(c))
    assert back == c
    assert back.regions == c.regions  # same order too
    assert back.region("a").scope == (1, 0)
    assert back.region("b").family == CATEGORICAL3 and back.region("a").family is None
    assert back.params == c.params


def test_from_graph_follows_the_graph_node_order_and_overrides():
    c = small_circuit()
    g = to_graph(c)
    shuffled = nx.DiGraph(**g.graph)
    shuffled.add_nodes_from(reversed(list(g.nodes(data=True))))
    shuffled.add_edges_from(g.edges(data=True))
    back = from_graph(shuffled, vars=("a", "b", "c", "d"), leaf=Family("normal"))
    assert [r.name for r in back.regions] == [r.name for r in reversed(c.regions)]
    assert set(back.regions) == set(c.regions)
    assert back.vars == ("a", "b", "c", "d") and back.leaf == Family("normal")
    assert back.root == "top"


def test_from_graph_of_a_hand_built_graph():
    g = nx.DiGraph()
    g.add_node(("region", "l"), kind="input", scope=frozenset({1}), k=2)
    g.add_node(("region", "r"), kind="input", scope=frozenset({0}), k=2)
    g.add_node(("region", "top"), kind="sum", scope=frozenset({0, 1}), k=1)
    g.add_edge(("region", "top"), ("partition", "top", 0))
    g.add_edge(("partition", "top", 0), ("region", "r"), position=1)
    g.add_edge(("partition", "top", 0), ("region", "l"), position=0)
    c = from_graph(g, vars=("x0", "x1"), root="top", leaf=Family("bernoulli"))
    assert c.regions == (Input("l", (1,), 2), Input("r", (0,), 2), Sum("top", 1, (("l", "r"),)))
    assert c.params == () and c.version == 1


def test_to_graph_rejects_a_repeated_child():
    c = dataclasses.replace(small_circuit(), regions=small_circuit().regions[:-1] + (
        Sum("top", 1, (("a", "a"),)),))
    with pytest.raises(ValueError, match="twice"):
        to_graph(c)


def test_depth_and_counts():
    c = small_circuit()
    assert depth(c) == 2  # top -> e -> c
    assert counts(c) == {"regions": 6, "inputs": 4, "sums": 2, "partitions": 3, "edges": 6}
    leaf_only = Circuit(("x0",), (Input("a", (0,), 1),), "a", Family("bernoulli"))
    assert depth(leaf_only) == 0
    assert counts(leaf_only)["partitions"] == 0


def test_parameter_count_by_hand():
    c = small_circuit()
    # top: 1*2*3 + 1*2*3 weights + 1*2 mixing; e: 2*2*2
    assert sum_parameter_count(c) == 6 + 6 + 2 + 8
    # a: bernoulli 2 units * 2 vars; b: categorical(n=3) 3 * 2 * 3; c, d: 2 * 1 each
    assert leaf_parameter_count(c) == 4 + 18 + 2 + 2
    assert parameter_count(c) == 48
    normal = dataclasses.replace(c, leaf=Family("normal"))  # mean and std per unit and variable
    assert leaf_parameter_count(normal) == 8 + 18 + 4 + 4


def test_summary_fields_and_text():
    s = summary(small_circuit())
    assert (s.num_vars, s.num_inputs, s.num_sums, s.num_partitions) == (4, 4, 2, 3)
    assert (s.max_arity, s.max_partitions, s.depth) == (2, 2, 2)
    assert s.leaves_per_family == (("bernoulli", 3), ("categorical(n=3)", 1))
    assert s.k_values == (1, 2, 3)
    assert s.parameter_count == 48
    text = str(s)
    assert "6 (4 inputs, 2 sums, 3 partitions)" in text
    assert "depth 2" in text and "bernoulli x3" in text and "48" in text
    assert len(text.splitlines()) <= 10


def test_pd_summary_matches_hand_count():
    s = summary(poon_domingos(28, 28, 7, k=10))
    assert s.leaf_parameters == 16 * 10 * 49  # 16 cells of 7x7 pixels, 10 bernoullis each
    # A rectangle of a x b cells has a + b - 2 partitions; the root (4 x 4) has 6 and holds 1 unit.
    # Weights: 1*10*10 per root partition, 10*10*10 per other one (200 partitions in all).
    weights = 6 * 100 + (200 - 6) * 1000
    # Mixing where P > 1: every partition except those of the 24 rectangles of 1 x 2 or 2 x 1 cells.
    mixing = 1 * 6 + 10 * (200 - 6 - 24)
    assert s.sum_parameters == weights + mixing == 196_306
    assert (s.depth, s.max_partitions, s.k_values) == (6, 6, (1, 10))


@settings(max_examples=25, deadline=None)
@given(num_vars=st.integers(1, 40), depth_=st.integers(0, 6), replicas=st.integers(1, 4),
       seed=st.integers(0, 1000))
def test_round_trip_of_generated_circuits(num_vars, depth_, replicas, seed):
    c = random_binary_trees(num_vars, depth_, replicas, k=3, seed=seed)
    g = to_graph(c)
    assert from_graph(g) == c
    assert g.nodes["region", c.root]["scope"] == frozenset(range(num_vars))
