"""The passes: layers are depth-minimal and respect dependencies; groups hold one shape each;
the plan's rows and index arrays point at the right nodes."""
import numpy as np
import pytest

from pcc.passes import EinsumOp, HadamardGroup, HadamardOp, group_by_shape, layerize, make_plan
from pcc.passes.group import bucket
from pcc.region_graph import partition_children, to_graph
from pcc.structures import poon_domingos, random_binary_trees
from random_circuits import random_circuit

CIRCUITS = [random_circuit(s, num_vars=5, families=("bernoulli", "categorical")) for s in range(6)]
CIRCUITS += [random_circuit(s, num_vars=5, families=("bernoulli", "normal"), mixed=0.7) for s in range(3)]
CIRCUITS += [poon_domingos(4, 4, [2], k=3), random_binary_trees(9, depth=3, replicas=3, k=2)]


@pytest.mark.parametrize("circuit", CIRCUITS)
def test_layers_respect_dependencies_and_are_minimal(circuit):
    graph = to_graph(circuit)
    level = layerize(graph).level
    for node in graph:
        children = list(graph.successors(node))
        if node[0] == "partition":
            assert level[node] == 1 + max(level[c] for c in children)  # as early as possible
        elif children:
            assert level[node] == max(level[c] for c in children)
        else:
            assert level[node] == 0


@pytest.mark.parametrize("circuit", CIRCUITS)
def test_groups_partition_the_nodes_by_shape(circuit):
    graph = to_graph(circuit)
    layering = layerize(graph)
    groups = group_by_shape(graph, layering)
    seen = []
    for g in groups:
        if isinstance(g, HadamardGroup):
            for region, p in g.members:
                node = ("partition", region, p)
                ks = {graph.nodes[("region", c)]["k"] for c in partition_children(graph, node)}
                assert graph.nodes[node]["elementwise"] and ks == {g.k_in} and g.k_in > 1
                assert len(partition_children(graph, node)) <= g.arity
                assert layering.level[node] == g.level
                assert graph.nodes[("region", region)]["k"] == g.k_out
                seen.append(node)
        elif hasattr(g, "child_k"):
            for region, p in g.members:
                ks = tuple(graph.nodes[("region", c)]["k"]
                           for c in partition_children(graph, ("partition", region, p)))
                assert layering.level[("partition", region, p)] == g.level
                assert graph.nodes[("region", region)]["k"] == g.k_out
                if g.is_product:
                    assert len(ks) <= len(g.child_k) == bucket(len(ks))
                else:
                    assert ks == g.child_k
                    assert not graph.nodes[("partition", region, p)]["elementwise"]
                seen.append(("partition", region, p))
        else:
            for region in g.members:
                parts = graph.out_degree(("region", region))
                assert 1 < parts <= g.num_parts == bucket(parts)
    expected = {n for n in graph if n[0] == "partition"}
    assert sorted(seen) == sorted(expected)  # every partition exactly once


@pytest.mark.parametrize("circuit", CIRCUITS)
def test_plan_rows_point_at_children(circuit):
    graph = to_graph(circuit)
    plan = make_plan(graph, group_by_shape(graph, layerize(graph)), circuit.root, circuit.vars)
    written: dict[int, set] = {}
    for i, g in enumerate(plan.leaf_groups):
        rows = plan.leaf_rows(i)
        for region, row in zip(g.regions, rows):
            assert plan.region_row[region] == (g.k, row)
        written.setdefault(g.k, set()).update(rows.tolist())
    for op in plan.ops:
        if isinstance(op, EinsumOp):
            for j, rows in enumerate(op.child_rows):
                rows = np.arange(rows, rows + len(op.members)) if isinstance(rows, int) else rows
                for (region, p), row in zip(op.members, rows):
                    children = partition_children(graph, ("partition", region, p))
                    if j < len(children):
                        assert plan.region_row[children[j]] == (op.child_k[j], row)
                        assert row in written[op.child_k[j]]  # produced before it is read
                    else:
                        assert row == 0  # padding reads log 1
            k = op.k_out
        elif isinstance(op, HadamardOp):
            for (region, p), rows in zip(op.members, op.child_rows):
                children = partition_children(graph, ("partition", region, p))
                assert [plan.region_row[c] for c in children] == [(op.k_in, r) for r in
                                                                  rows[:len(children)]]
                assert all(r in written[op.k_in] for r in rows[:len(children)])
                assert (rows[len(children):] == 0).all()  # padding reads log 1
            k = op.k_out
        else:
            for (region, rows, mask) in zip(op.members, op.part_rows, op.mask):
                parts = [plan.partition_row[(region, p)][1] for p in range(mask.sum())]
                assert list(rows[mask]) == parts
            k = op.k
        block = set(range(op.out_start, op.out_start + len(op.members)))
        assert not block & written.get(k, set())  # each row written once
        written.setdefault(k, set()).update(block)


def einsum_child_rows(circuit) -> list:
    """Every child slot's rows of every einsum op of the circuit's plan: an int start row (a view
    of contiguous rows) or an index array (a gather)."""
    graph = to_graph(circuit)
    plan = make_plan(graph, group_by_shape(graph, layerize(graph)), circuit.root, circuit.vars)
    return [rows for op in plan.ops if isinstance(op, EinsumOp) for rows in op.child_rows]


@pytest.mark.parametrize("circuit", CIRCUITS + [poon_domingos(8, 8, [4, 2], k=3)])
def test_a_contiguous_run_of_rows_is_read_as_a_view(circuit):
    """No op gathers rows that form one ascending block: those are read as views."""
    for rows in einsum_child_rows(circuit):
        assert isinstance(rows, int) or not (len(rows) and (np.diff(rows) == 1).all()), rows


@pytest.mark.parametrize("num_vars, depth, replicas", [(16, 3, 4), (50, 4, 7), (9, 3, 3)])
def test_rat_children_are_all_read_as_views(num_vars, depth, replicas):
    """RAT trees consume each region once: the planner lays out every group's members top-down
    so that every child slot of every einsum is one contiguous block, read without a gather."""
    rows = einsum_child_rows(random_binary_trees(num_vars, depth=depth, replicas=replicas, k=3))
    assert rows and all(isinstance(r, int) for r in rows), rows


def test_bucket_pads_less_than_twice():
    for n in range(1, 300):
        assert n <= bucket(n) < 2 * n or n <= 4 and bucket(n) == n
