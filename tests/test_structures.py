"""Structure generators: validity checked independently, known region counts, determinism, learning."""
from __future__ import annotations

import dataclasses
import math
from itertools import combinations

import numpy as np
import pytest

from pcc.errors import DataError
from pcc.ir import Circuit, Family, Input, Sum
from pcc.structures import defaults
from pcc.structures import (StructureError, hidden_chow_liu_tree, parse_family, poon_domingos,
                            random_binary_trees)
from pcc.structures.chow_liu import chow_liu, maximum_spanning_tree
from pcc.structures.rat import effective_depth


def region_scopes(c: Circuit) -> dict[str, frozenset[int]]:
    """Scopes computed here, independently of `Circuit.scopes`, checking the region graph on the way:
    unique names, known children, no cycle, decomposable and smooth partitions."""
    by_name = {r.name: r for r in c.regions}
    assert len(by_name) == len(c.regions), "region names repeat"
    scopes: dict[str, frozenset[int]] = {}
    visiting: set[str] = set()

    def scope(name: str) -> frozenset[int]:
        if name in scopes:
            return scopes[name]
        assert name not in visiting, f"cycle through {name}"
        visiting.add(name)
        r = by_name[name]
        if isinstance(r, Input):
            assert len(set(r.scope)) == len(r.scope) and r.scope, f"{name}: bad input scope"
            result = frozenset(r.scope)
        else:
            assert r.partitions, f"{name}: no partitions"
            unions = []
            for part in r.partitions:
                child_scopes = [scope(child) for child in part]
                assert sum(map(len, child_scopes)) == len(frozenset().union(*child_scopes)), \
                    f"{name}: partition {part} is not decomposable"
                unions.append(frozenset().union(*child_scopes))
            assert len(set(unions)) == 1, f"{name}: partitions differ in scope (not smooth)"
            result = unions[0]
        visiting.discard(name)
        scopes[name] = result
        return result

    for r in c.regions:
        scope(r.name)
    return scopes


def assert_valid(c: Circuit) -> dict[str, frozenset[int]]:
    """Independent checks, then the frontend's own checker; returns the scopes."""
    scopes = region_scopes(c)
    assert scopes[c.root] == frozenset(range(c.num_vars)), "root does not cover all variables"
    assert c.region(c.root).k == 1
    assert frozenset().union(*(frozenset(r.scope) for r in c.inputs)) == frozenset(range(c.num_vars))
    reachable, stack = set(), [c.root]
    while stack:
        name = stack.pop()
        if name not in reachable:
            reachable.add(name)
            stack.extend(c.region(name).children if isinstance(c.region(name), Sum) else ())
    assert reachable == set(scopes), "regions unreachable from the root"
    names = [r.name for r in c.regions]
    for r in c.sums:  # children come before their parents in the file
        assert all(names.index(child) < names.index(r.name) for child in r.children)
    from pcc.frontend import validate
    errors = [d for d in validate(c) if d.severity == "error"]
    assert not errors, [d.message for d in errors]
    return scopes


# ---------------------------------------------------------------- Poon-Domingos


def grid_lines(size: int, delta: float) -> list[int]:
    lines = {0, size}
    i = 1
    while math.ceil(i * delta) < size:
        lines.add(math.ceil(i * delta))
        i += 1
    return sorted(lines)


def rectangles(rows: list[int], cols: list[int]) -> set[tuple[int, int, int, int]]:
    """Every rectangle whose sides lie on the given grid lines."""
    return {(t, l, b, r) for t, b in combinations(rows, 2) for l, r in combinations(cols, 2)}


def pixels(rect, width: int, channels: int = 1) -> frozenset[int]:
    t, l, b, r = rect
    return frozenset((y * width + x) * channels + ch
                     for y in range(t, b) for x in range(l, r) for ch in range(channels))


@pytest.mark.parametrize("height,width,delta,delta_w", [
    (28, 28, 7, 7), (5, 7, 2, 2), (6, 4, 3, 1), (10, 10, 28 / 3, 4), (6, 6, 6, 2), (1, 1, 1, 1)])
def test_pd_single_delta_regions_are_the_grid_rectangles(height, width, delta, delta_w):
    c = poon_domingos(height, width, [delta], deltas_w=[delta_w], k=2)
    scopes = assert_valid(c)
    rows, cols = grid_lines(height, delta), grid_lines(width, delta_w)
    expected = rectangles(rows, cols)
    assert sorted(scopes.values(), key=sorted) == sorted((pixels(r, width) for r in expected), key=sorted)
    cells = {r for r in expected if rows.index(r[2]) - rows.index(r[0]) == 1
             and cols.index(r[3]) - cols.index(r[1]) == 1}
    assert {frozenset(i.scope) for i in c.inputs} == {pixels(r, width) for r in cells}
    # an a x b cell rectangle splits at its a - 1 inner row lines and b - 1 inner column lines
    assert sum(len(s.partitions) for s in c.sums) == sum(
        rows.index(b) - rows.index(t) - 1 + cols.index(r) - cols.index(l) - 1 for t, l, b, r in expected)
    assert all(len(p) == 2 for s in c.sums for p in s.partitions)


def test_pd_28x28_delta7_counts():
    c = poon_domingos(28, 28, 7)
    assert (len(c.regions), len(c.inputs), len(c.sums)) == (100, 16, 84)
    assert sum(len(s.partitions) for s in c.sums) == 200
    assert {len(i.scope) for i in c.inputs} == {49}
    assert len(c.region(c.root).partitions) == 6


def test_pd_two_deltas_refine_inside_the_coarse_cells():
    c = poon_domingos(8, 8, [4, 2])
    scopes = assert_valid(c)
    coarse = rectangles([0, 4, 8], [0, 4, 8])
    cells = [(t, l, t + 4, l + 4) for t in (0, 4) for l in (0, 4)]
    fine = {(t + a, l + b, t + c_, l + d) for t, l, _, _ in cells
            for a, b, c_, d in rectangles([0, 2, 4], [0, 2, 4])}
    assert set(scopes.values()) == {pixels(r, 8) for r in coarse | fine}
    assert len(c.regions) == 9 + 4 * (9 - 1)
    assert {len(i.scope) for i in c.inputs} == {4} and len(c.inputs) == 16
    # a coarse cell splits only at the fine lines inside it
    assert c.region("r0_0_4_4").partitions == (("r0_0_2_4", "r2_0_4_4"), ("r0_0_4_2", "r0_2_4_4"))


def test_pd_28x28_single_pixels_with_deltas_7_and_1():
    c = poon_domingos(28, 28, [7, 1], k=1)
    assert len(c.regions) == 100 + 16 * (28 * 28 - 1)  # 4x4 coarse grid, then 28 rectangles^2 per cell - 1
    assert len(c.inputs) == 784 and all(len(i.scope) == 1 for i in c.inputs)


def test_pd_channels_are_folded_into_pixels():
    c = poon_domingos(4, 6, 2, channels=3)
    scopes = assert_valid(c)
    assert c.num_vars == 4 * 6 * 3
    assert set(scopes.values()) == {pixels(r, 6, 3) for r in rectangles([0, 2, 4], [0, 2, 4, 6])}
    assert c.region("r0_0_2_2").scope == tuple(sorted(pixels((0, 0, 2, 2), 6, 3)))


def test_pd_channel_split_splits_each_cell_down_to_one_input_per_channel():
    folded, split = poon_domingos(4, 6, 2, channels=3), poon_domingos(4, 6, 2, channels=3, channel_split=True)
    scopes = assert_valid(split)
    cells = rectangles([0, 2, 4], [0, 2, 4, 6])
    assert {r.name for r in split.inputs} == {f"r{t}_{l}_{b}_{r}_c{c}_{c + 1}" for t, l, b, r in
                                              (cell for cell in cells if cell[2] - cell[0] == 2
                                               and cell[3] - cell[1] == 2) for c in range(3)}
    assert len(split.sums) == len(folded.sums) + 2 * len(folded.inputs)  # C - 1 more per cell
    assert split.region("r0_0_2_2_c1_2").scope == (1, 4, 19, 22)  # channel 1 of (0,0) (0,1) (1,0) (1,1)
    assert split.region("r0_0_2_2").partitions == (("r0_0_2_2_c0_1", "r0_0_2_2_c1_3"),)
    assert scopes["r0_0_2_2"] == pixels((0, 0, 2, 2), 6, 3)
    assert {name: s for name, s in scopes.items() if "_c" not in name} == assert_valid(folded)


def test_pd_k_leaf_and_names():
    c = poon_domingos(4, 4, 2, k=7, leaf=Family("binomial", (("n", 255),)))
    assert c.leaf == Family("binomial", (("n", 255),))
    assert all(r.k == 7 for r in c.regions if r.name != c.root)
    assert c.root == "r0_0_4_4" and c.vars[:2] == ("x0", "x1")


@pytest.mark.parametrize("kwargs,message", [
    (dict(height=0, width=4, deltas=2), "height"),
    (dict(height=4, width=4, deltas=0.5), "delta"),
    (dict(height=4, width=4, deltas=[]), "at least one"),
    (dict(height=4, width=4, deltas=[2, 1], deltas_w=[2]), "as many deltas"),
    (dict(height=4, width=4, deltas=2, k=0), "k must"),
    (dict(height=4, width=4, deltas=2, channels=0), "channels"),
    (dict(height=4, width=4, deltas=2, leaf=Family("poisson")), "unknown leaf family"),
])
def test_pd_rejects_bad_arguments(kwargs, message):
    with pytest.raises(StructureError, match=message):
        poon_domingos(**kwargs)


# ---------------------------------------------------------------- RAT-SPN


def tree_leaves(c: Circuit, name: str, level: int = 0):
    """(input, level) pairs below region `name`, following its one partition."""
    r = c.region(name)
    if isinstance(r, Input):
        yield r, level
        return
    assert len(r.partitions) == 1
    for child in r.partitions[0]:
        yield from tree_leaves(c, child, level + 1)


@pytest.mark.parametrize("num_vars,depth,replicas", [
    (16, 4, 3), (16, 2, 10), (17, 3, 2), (100, 5, 4), (1, 3, 2), (2, 5, 3), (3, 5, 2), (3, 0, 2), (5, 9, 1)])
def test_rat_structure(num_vars, depth, replicas):
    c = random_binary_trees(num_vars, depth, replicas, k=4, seed=1)
    assert_valid(c)
    d = min(depth, int(math.log2(num_vars)))
    root = c.region(c.root)
    assert len(root.partitions) == replicas
    assert len(c.inputs) == replicas * 2 ** d
    assert len(c.sums) == (1 + replicas * (2 ** d - 2) if d else 1)
    for part in root.partitions:
        assert len(part) == (2 if d else 1)
        leaves = [leaf for child in part for leaf in tree_leaves(c, child, 1)]
        assert {level for _, level in leaves} == {max(d, 1)}  # the root's children are level 1
        assert sorted(v for leaf, _ in leaves for v in leaf.scope) == list(range(num_vars))
        sizes = {len(leaf.scope) for leaf, _ in leaves}
        assert sizes <= {num_vars // 2 ** d, -(-num_vars // 2 ** d)}
    replica_regions = [{r.name for r in c.regions if r.name.startswith(f"rep{i}_")} for i in range(replicas)]
    assert sum(map(len, replica_regions)) == len(c.regions) - 1  # replicas share nothing but the root


def test_rat_is_deterministic_by_seed():
    assert random_binary_trees(32, 3, 4, seed=7) == random_binary_trees(32, 3, 4, seed=7)
    assert random_binary_trees(32, 3, 4, seed=7) != random_binary_trees(32, 3, 4, seed=8)
    c = random_binary_trees(32, 3, 4, seed=7)
    scopes = region_scopes(c)
    assert len({scopes[f"rep{i}_2"] for i in range(4)}) > 1  # replicas split differently


def test_rat_defaults_and_depth_clamp():
    assert effective_depth(1, 5) == 0 and effective_depth(3, 5) == 1 and effective_depth(1024, 20) == 10
    c = random_binary_trees(784)
    assert len(c.region(c.root).partitions) == defaults.RAT_REPLICAS
    assert len(c.inputs) == defaults.RAT_REPLICAS * 2 ** defaults.RAT_MAX_DEPTH
    assert {r.k for r in c.regions if r.name != c.root} == {10}
    assert c.leaf == Family("bernoulli")


@pytest.mark.parametrize("kwargs,message", [
    (dict(num_vars=0), "vars"), (dict(num_vars=4, depth=-1), "depth"), (dict(num_vars=4, replicas=0), "replicas"),
    (dict(num_vars=4, k=0), "k must"), (dict(num_vars=4, seed=-3), "seed")])
def test_rat_rejects_bad_arguments(kwargs, message):
    with pytest.raises(StructureError, match=message):
        random_binary_trees(**kwargs)


# ---------------------------------------------------------------- hidden Chow-Liu trees


def chain_data(order: list[int], rows: int = 3000, flip: float = 0.1, seed: int = 0) -> np.ndarray:
    """Binary samples of a Markov chain visiting the variables in `order`, each step flipping w.p. `flip`."""
    rng = np.random.default_rng(seed)
    data = np.zeros((rows, len(order)), dtype=np.int64)
    data[:, order[0]] = rng.integers(0, 2, rows)
    for prev, var in zip(order, order[1:]):
        data[:, var] = data[:, prev] ^ (rng.random(rows) < flip)
    return data


CHAIN = [3, 0, 5, 1, 6, 2, 4]


def test_chow_liu_recovers_a_chain_rooted_at_its_middle():
    tree = chow_liu(chain_data(CHAIN), 1.0)
    assert {frozenset(e) for e in tree.edges()} == {frozenset(e) for e in zip(CHAIN, CHAIN[1:])}
    assert tree.root == CHAIN[3]
    order = tree.top_down()
    assert sorted(order) == list(range(7)) and all(order.index(p) < order.index(v)
                                                   for p, v in tree.edges())


@pytest.mark.parametrize("seed", range(5))
def test_prim_finds_a_maximum_spanning_tree(seed):
    """The same total weight as networkx's Kruskal on random dense weights."""
    import networkx as nx
    rng = np.random.default_rng(seed)
    n = 12
    w = rng.random((n, n))
    w = (w + w.T) / 2
    neighbours = maximum_spanning_tree(w)
    edges = {frozenset((v, u)) for v in range(n) for u in neighbours[v]}
    assert len(edges) == n - 1
    graph = nx.Graph()
    graph.add_weighted_edges_from((i, j, w[i, j]) for i in range(n) for j in range(i + 1, n))
    expected = nx.maximum_spanning_tree(graph).size(weight="weight")
    assert math.isclose(sum(w[tuple(e)] for e in edges), expected)
    assert nx.is_tree(nx.Graph([tuple(e) for e in edges]))


def test_mutual_information_matches_a_direct_count(monkeypatch):
    from pcc.structures import chow_liu as module
    data = np.array([[0, 1, 2], [1, 1, 0], [1, 0, 2], [0, 0, 1], [1, 1, 2]])
    alpha, c = 0.5, 3
    expected = np.zeros((3, 3))
    for i, j in combinations(range(3), 2):
        table = np.full((c, c), alpha)
        for row in data:
            table[row[i], row[j]] += 1
        p = table / table.sum()
        expected[i, j] = expected[j, i] = sum(
            p[a, b] * math.log(p[a, b] / (p[a].sum() * p[:, b].sum())) for a in range(c) for b in range(c))
    mi = module.mutual_information(data, alpha)
    off_diagonal = ~np.eye(3, dtype=bool)
    assert np.allclose(mi[off_diagonal], expected[off_diagonal])
    monkeypatch.setattr(module, "_ROWS_PER_CHUNK", 2)  # counting in chunks changes nothing
    assert np.allclose(module.mutual_information(data, alpha), mi)


def test_mutual_information_with_missing_values_counts_the_rows_where_both_are_observed():
    """A missing value (NaN) drops the row from the pairs it is in, and only from those."""
    from pcc.structures.chow_liu import check_values, mutual_information
    rng = np.random.default_rng(0)
    data = chain_data(CHAIN, rows=300).astype(np.float64)[:, :4]
    data[rng.random(data.shape) < 0.2] = np.nan
    mi = mutual_information(check_values(data, None, missing=True), 1.0)
    for i, j in combinations(range(4), 2):
        both = ~np.isnan(data[:, i]) & ~np.isnan(data[:, j])
        pair = check_values(data[both][:, [i, j]], None)
        assert mi[i, j] == pytest.approx(mutual_information(pair, 1.0)[0, 1], rel=1e-9)


def test_hclt_learns_from_data_with_missing_values_and_checks_the_rest():
    data = chain_data(CHAIN, rows=500).astype(np.float64)
    holes = data.copy()
    holes[np.random.default_rng(1).random(data.shape) < 0.02] = np.nan
    circuit = hidden_chow_liu_tree(holes, k=2, trees=1)
    assert_valid(circuit)
    assert circuit == hidden_chow_liu_tree(data, k=2, trees=1)  # a few holes: the same tree
    holes[3, 2] = 0.5
    with pytest.raises(DataError, match="row 4, column 3"):
        hidden_chow_liu_tree(holes, leaf=Family("bernoulli"))
    mixed = hidden_chow_liu_tree(holes, k=2, trees=1)  # a fraction: column 3 is continuous
    assert mixed.var_family(2) == Family("normal") and mixed.var_family(0) == Family("bernoulli")


def test_hclt_on_a_chain():
    c = hidden_chow_liu_tree(chain_data(CHAIN), k=3, trees=1)
    assert_valid(c)
    assert [r.name for r in c.inputs] == [f"leaf{v}" for v in range(7)]
    assert all(len(i.scope) == 1 and i.k == 3 for i in c.inputs)
    # one edge sum per non-root variable plus the root, each one element-wise partition
    assert len(c.sums) == 7 and all(s.elementwise == (0,) or len(s.partitions[0]) == 1
                                    for s in c.sums)
    middle = CHAIN[3]
    assert c.region("top").partitions == ((f"leaf{middle}", f"e{CHAIN[2]}", f"e{CHAIN[4]}"),)
    assert c.region(f"e{CHAIN[2]}").partitions == ((f"leaf{CHAIN[2]}", f"e{CHAIN[1]}"),)
    assert c.region(f"e{CHAIN[0]}").partitions == ((f"leaf{CHAIN[0]}",),)  # a tree leaf
    from pcc.region_graph import sum_parameter_count
    assert sum_parameter_count(c) == 6 * 3 * 3 + 3


def star_data(rows: int = 3000, leaves: int = 6) -> np.ndarray:
    rng = np.random.default_rng(1)
    hub = rng.integers(0, 2, rows)
    return np.stack([hub] + [hub ^ (rng.random(rows) < 0.1) for _ in range(leaves)], axis=1)


def test_hclt_star_is_one_wide_element_wise_product():
    c = hidden_chow_liu_tree(star_data(), k=4, trees=1)
    assert_valid(c)
    assert c.region("top").partitions == (("leaf0", *(f"e{v}" for v in range(1, 7))),)
    assert c.region("top").elementwise == (0,)
    from pcc.region_graph import depth
    assert depth(c) == 2


def test_hclt_mixture_of_trees_shares_the_leaves():
    data = chain_data(CHAIN, rows=400)
    c = hidden_chow_liu_tree(data, k=2, trees=3, seed=1)
    assert_valid(c)
    assert len(c.inputs) == 7 and len(c.sums) == 3 * 6 + 1
    top = c.region("top")
    assert len(top.partitions) == 3 and top.elementwise == (0, 1, 2)
    assert all(part[0].startswith("leaf") and all(ch.startswith(f"t{m}_e") for ch in part[1:])
               for m, part in enumerate(top.partitions))
    assert c == hidden_chow_liu_tree(data, k=2, trees=3, seed=1)  # seeded bootstraps
    single = hidden_chow_liu_tree(data, k=2, trees=1)
    assert [r for r in c.regions if r.name.startswith("t0_")] == [
        dataclasses.replace(r, name=f"t0_{r.name}", partitions=tuple(
            tuple(ch if ch.startswith("leaf") else f"t0_{ch}" for ch in p) for p in r.partitions))
        for r in single.sums if r.name != "top"]  # tree 0 is the data's own Chow-Liu tree


def test_hclt_categorical_data_and_leaf_choice():
    data = chain_data([0, 1, 2, 3]) + chain_data([0, 1, 2, 3], seed=5)  # values 0..2
    c = hidden_chow_liu_tree(data)
    assert_valid(c)
    assert c.leaf == Family("categorical", (("n", 3),))
    binomial = Family("binomial", (("n", 4),))
    assert hidden_chow_liu_tree(data, leaf=binomial).leaf == binomial


def test_hclt_single_variable():
    c = hidden_chow_liu_tree(np.array([[0], [1], [1]]), k=5, trees=1)
    assert_valid(c)
    assert c.regions == (Input("leaf0", (0,), 5), Sum("top", 1, (("leaf0",),)))


def test_hclt_loads_debd_files(tmp_path):
    data = chain_data(CHAIN, rows=500)
    path = tmp_path / "chain.train.data"
    path.write_text("".join(",".join(map(str, row)) + "\n" for row in data))
    assert hidden_chow_liu_tree(path) == hidden_chow_liu_tree(data)


@pytest.mark.parametrize("text,row,col,leaf", [
    ("0,1\n1,x\n", 1, 1, None), ("0,1\n1,-1\n", 1, 1, "bernoulli"),
    ("0,1\n1,1.5\n", 1, 1, "categorical(n=3)"), ("0,1\n1\n", 1, None, None), ("", None, None, None),
    ("0,1\n1,inf\n", 1, 1, None)])
def test_hclt_bad_debd_files_name_the_cell(tmp_path, text, row, col, leaf):
    path = tmp_path / "bad.data"
    path.write_text(text)
    with pytest.raises(DataError) as info:
        hidden_chow_liu_tree(path, leaf=None if leaf is None else parse_family(leaf))
    assert (info.value.path, info.value.row, info.value.column) == (str(path), row, col)
    assert str(path) in str(info.value)


def test_hclt_bad_data():
    with pytest.raises(DataError, match="missing.data: no such data file"):
        hidden_chow_liu_tree("/nonexistent/missing.data")
    with pytest.raises(DataError, match="every value is missing"):
        hidden_chow_liu_tree(np.full((2, 2), np.nan))
    with pytest.raises(DataError, match="2-D"):
        hidden_chow_liu_tree(np.array([0, 1]))
    with pytest.raises(DataError, match="outside the support"):
        hidden_chow_liu_tree(np.array([[0, 1], [2, 0]]), leaf=Family("bernoulli"))
    assert hidden_chow_liu_tree(np.array([[0, 1], [1, 0]]), leaf=Family("normal")).leaf == \
        Family("normal")  # every column continuous, as asked
    with pytest.raises(StructureError, match="trees must be"):
        hidden_chow_liu_tree(np.array([[0, 1], [1, 0]]), trees=0)


# ---------------------------------------------------------------- leaf families


def test_parse_family():
    assert parse_family("bernoulli") == Family("bernoulli")
    assert parse_family("categorical(n=4)") == Family("categorical", (("n", 4),))
    assert parse_family(" binomial( n = 255 ) ") == Family("binomial", (("n", 255),))
    assert parse_family("normal()") == Family("normal")
    for bad, message in [("categorical", "needs n="), ("categorical(n=1)", ">= 2"), ("poisson", "unknown"),
                         ("normal(n=3)", "no argument"), ("binomial(n=2.5)", "integer"),
                         ("categorical(n)", "KEY=NUMBER"), ("cat egorical", "expected NAME")]:
        with pytest.raises(StructureError, match=message):
            parse_family(bad)


# ---------------------------------------------------------------- committed examples


def test_committed_examples_are_what_the_generators_make():
    from pathlib import Path

    from pcc.frontend import load
    examples = Path(__file__).resolve().parent.parent / "ir_examples"
    pd = load(examples / "pd28x28_k10.pc")  # pcc structure pd --height 28 --width 28 --delta 7 -k 10 --leaf 'binomial(n=255)'
    assert pd == poon_domingos(28, 28, 7, k=10, leaf=Family("binomial", (("n", 255),)))
    assert load(examples / "rat16.pc") == random_binary_trees(16)  # pcc structure rat --vars 16
    assert_valid(pd)


# ---------------------------------------------------------------- continuous and mixed columns

def test_column_families_by_the_values_each_column_holds():
    from pcc.structures.chow_liu import column_families
    x = np.array([[0, 2, 0.5, -1, 40, np.nan], [1, 0, 1.0, 2, 3, 1], [1, 1, 2.0, 0, 1, np.nan]])
    assert [f.name for f in column_families(x)] == ["bernoulli", "categorical", "normal",
                                                    "normal", "normal", "bernoulli"]
    assert column_families(x)[1] == Family("categorical", (("n", 3),))


def test_gaussian_mutual_information_of_correlated_normals():
    from pcc.structures.chow_liu import mixed_mutual_information
    rng = np.random.default_rng(0)
    z = rng.normal(size=20000)
    x = np.stack([z, 0.6 * z + 0.8 * rng.normal(size=20000), rng.normal(size=20000)], 1)
    mi = mixed_mutual_information(x, np.zeros(3, dtype=bool), 1.0)
    assert mi[0, 1] == pytest.approx(-0.5 * np.log(1 - 0.36), rel=0.03)
    assert mi[0, 2] < 1e-3 and np.allclose(mi, mi.T) and np.all(np.diag(mi) == 0)
    holes = x.copy()
    holes[rng.random(x.shape) < 0.3] = np.nan  # the rows where both are seen
    assert mixed_mutual_information(holes, np.zeros(3, dtype=bool), 1.0)[0, 1] == \
        pytest.approx(mi[0, 1], rel=0.06)


def test_mixed_mutual_information_of_a_discrete_and_a_continuous_column():
    from pcc.structures.chow_liu import mixed_mutual_information
    rng = np.random.default_rng(1)
    d = rng.integers(0, 2, 20000)
    x = np.stack([d, 2.0 * d + rng.normal(size=20000), rng.normal(size=20000)], 1).astype(float)
    mi = mixed_mutual_information(x, np.array([True, False, False]), 1.0)
    # var(x1) = 1 + 4 * 0.25 = 2, var(x1 | d) = 1: MI = log(2) / 2 for this Gaussian estimate
    assert mi[0, 1] == pytest.approx(0.5 * np.log(2.0), rel=0.03) and mi[1, 0] == mi[0, 1]
    assert mi[0, 2] < 1e-3
    tree = hidden_chow_liu_tree(x, k=2, trees=1)
    assert tree.var_family(0) == Family("bernoulli") and tree.var_family(1) == Family("normal")


def test_a_csv_header_names_the_variables(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("age,smoker,weight\n30,0,70.5\n40,1,80.25\n35,1,\n50,0,90\n")
    circuit = hidden_chow_liu_tree(path, k=2, trees=1)
    assert circuit.vars == ("age", "smoker", "weight")
    (tmp_path / "u.csv").write_text("a b,c,d\n1,0,2.5\n2,1,3.5\n")
    assert hidden_chow_liu_tree(tmp_path / "u.csv", k=2, trees=1).vars == ("x0", "x1", "x2")
