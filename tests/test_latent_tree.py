"""Latent trees: recognized in HCLT-shaped circuits (and only there), and initialized from data
by clustering hidden states and counting."""
import itertools
import math

import numpy as np
import pytest
import torch

import pcc
from pcc.kmeans import kmeans, nearest
from pcc.latent_forest import find_latent_forest
from pcc.latent_tree import initialize
from pcc.train import evaluate
from pcc.structures import hidden_chow_liu_tree, poon_domingos, random_binary_trees


def latent_chain_data(rows=3000, num_vars=6, states=3, seed=0):
    """Samples of a hidden Markov chain z_0 -> z_1 -> ... (sticky), x_v a noisy function of z_v."""
    rng = np.random.default_rng(seed)
    z = np.zeros((rows, num_vars), dtype=np.int64)
    z[:, 0] = rng.integers(0, states, rows)
    for v in range(1, num_vars):
        move = rng.random(rows) < 0.15
        z[:, v] = np.where(move, rng.integers(0, states, rows), z[:, v - 1])
    p_one = np.linspace(0.05, 0.95, states)
    return (rng.random((rows, num_vars)) < p_one[z]).astype(np.int64)


def test_an_hclt_is_a_latent_forest_with_one_node_per_variable_and_tree():
    data = latent_chain_data()
    c = hidden_chow_liu_tree(data, k=3, trees=2)
    forest = find_latent_forest(c)
    assert forest is not None and forest.k == 3 and len(forest.roots) == 2
    assert len(forest.nodes) == 2 * data.shape[1]
    for t, r in enumerate(forest.roots):
        seen, todo = [], [r]
        while todo:
            node = forest.nodes[todo.pop()]
            seen.append(node.var)
            assert node.leaf == f"leaf{node.var}"
            assert [forest.nodes[c].var for c in node.children] == [
                int(e.split("e")[-1]) for e in node.edges]
            todo.extend(node.children)
        assert sorted(seen) == list(range(data.shape[1]))  # each tree covers every variable once


@pytest.mark.parametrize("circuit", [random_binary_trees(8, depth=2, replicas=2, k=3),
                                     poon_domingos(2, 2, [1], k=2)])
def test_other_shapes_are_not_latent_forests(circuit):
    assert find_latent_forest(circuit) is None


def test_outer_products_are_not_tree_nodes():
    text = ("pc 1\nvars 2\nleaf bernoulli\ninput a {x0} k=2\ninput b {x1} k=2\n"
            "sum e k=2 = b\nsum top k=1 = a OP e\nroot top\n")
    assert find_latent_forest(pcc.parse(text.replace("OP", ".*"))) is not None
    assert find_latent_forest(pcc.parse(text.replace("OP", "*"))) is None


def test_kmeans_separates_clear_clusters_and_never_makes_duplicate_centers():
    gen = torch.Generator().manual_seed(0)
    blobs = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]], dtype=torch.float64)
    label = torch.arange(300) % 3
    points = blobs[label] + 0.1 * torch.randn(300, 2, generator=gen, dtype=torch.float64)
    centers = kmeans(points, 3, gen)
    found = nearest(points, centers)
    assert len(set(zip(label.tolist(), found.tolist()))) == 3  # a one-to-one relabelling
    few = torch.tensor([[0.0], [1.0]] * 50, dtype=torch.float64)
    assert len(kmeans(few, 8, gen)) == 2  # two distinct points: two centers


def all_states(n):
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=n)), dtype=torch.float64)


@pytest.mark.parametrize("trees", [1, 2])
def test_initialization_from_data_beats_random_and_stays_normalized(trees):
    data = latent_chain_data()
    c = hidden_chow_liu_tree(data, k=3, trees=trees)
    model = pcc.compile(c, dtype=torch.float64)
    x = torch.from_numpy(data).double()
    mean_ll = lambda: evaluate(model, x).mean
    random_ll = mean_ll()
    initialize(model, data, find_latent_forest(c), pseudocount=0.1)
    ll = mean_ll()
    assert ll > random_ll + 0.3
    with torch.no_grad():
        assert math.isclose(float(torch.logsumexp(model(all_states(data.shape[1])), 0)), 0.0,
                            abs_tol=1e-9)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    # counting is one hard EM step: soft EM from there goes on improving the training likelihood
    em = pcc.EM(model, step_size=1.0, pseudocount=0.1)
    em.accumulate(x)
    em.update()
    assert mean_ll() >= ll - 1e-9


def test_initialization_is_seeded():
    data = latent_chain_data(rows=500)
    c = hidden_chow_liu_tree(data, k=3, trees=1)
    states = []
    for _ in range(2):
        model = pcc.compile(c, dtype=torch.float64)
        initialize(model, data, find_latent_forest(c), pseudocount=0.1, seed=7)
        states.append(model.state_dict())
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


def test_missing_values_are_not_counted_as_zeros():
    """A variable missing in most rows gets its leaf tables from the observed rows only."""
    data = latent_chain_data(rows=2000).astype(float)
    data[:, 2] = 1.0
    data[:1500, 2] = np.nan  # x2 is always 1 where observed
    c = hidden_chow_liu_tree(np.nan_to_num(data).astype(np.int64), k=3, trees=1)
    model = pcc.compile(c, dtype=torch.float64)
    initialize(model, data, find_latent_forest(c), pseudocount=0.1)
    p_one = {(prm.region, prm.field): prm.values for prm in model.ir_params()}[("leaf2", "p")]
    # states that saw observed rows: p(x2 = 1) = 1; states that saw none: the prior's 0.5
    # (counting the missing cells as 0 would put every state near 0.25)
    assert max(p_one) > 0.99 and min(p_one) > 0.49


def tree_data(rows: int, num_vars: int, values: int, seed: int) -> np.ndarray:
    """Rows of a random tree-shaped Bayesian network: the plain Chow-Liu tree's own family."""
    rng = np.random.default_rng(seed)
    x = np.zeros((rows, num_vars), dtype=np.int64)
    x[:, 0] = rng.integers(0, values, rows)
    for v in range(1, num_vars):
        parent = int(rng.integers(0, v))
        copy = rng.random(rows) < 0.8
        x[:, v] = np.where(copy, x[:, parent], rng.integers(0, values, rows))
    return x


def plain_chow_liu(train: np.ndarray, test: np.ndarray, values: int) -> float:
    """Mean test log-likelihood of the plain Chow-Liu tree of `train` (Laplace count 1), by
    direct evaluation of its conditional tables."""
    from pcc.structures.chow_liu import chow_liu
    tree = chow_liu(train, 1.0)
    total = np.zeros(len(test))
    for v, p in enumerate(tree.parent):
        parent_train = train[:, p] if p >= 0 else np.zeros(len(train), dtype=np.int64)
        counts = np.ones((values if p >= 0 else 1, values))
        np.add.at(counts, (parent_train, train[:, v]), 1.0)
        table = np.log(counts / counts.sum(1, keepdims=True))
        total += table[test[:, p] if p >= 0 else 0, test[:, v]]
    return float(total.mean())


@pytest.mark.parametrize("values, k, trees", [(2, 2, 1), (2, 5, 3), (3, 4, 2)])
def test_the_plain_chow_liu_tree_embeds_exactly(values, k, trees):
    """embed_chow_liu makes the latent tree compute the plain Chow-Liu tree of its first tree
    (K >= the number of values; the unused states get 1e-12 of the mass)."""
    from pcc.latent_tree import embed_chow_liu
    data = tree_data(400, 7, values, seed=values + k)
    model = pcc.compile(hidden_chow_liu_tree(data, k=k, trees=trees), dtype=torch.float64)
    assert embed_chow_liu(model, data[:300], find_latent_forest(model.circuit))
    expected = plain_chow_liu(data[:300], data[300:], values)
    assert evaluate(model, data[300:]).mean == pytest.approx(expected, abs=1e-8)


def test_a_variable_with_more_values_than_states_cannot_embed_the_plain_tree():
    from pcc.latent_tree import embed_chow_liu
    data = tree_data(200, 5, 4, seed=1)
    model = pcc.compile(hidden_chow_liu_tree(data, k=3, trees=1))
    before = [p.clone() for p in model.parameters()]
    assert not embed_chow_liu(model, data, find_latent_forest(model.circuit))
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_training_a_latent_tree_never_ends_below_its_plain_chow_liu_tree():
    """On data that are a tree, with few rows, training over-fits below the plain tree on
    validation; fit then keeps the plain tree (and says so), never a worse model."""
    from pcc.train import TrainConfig, fit
    data = tree_data(560, 12, 2, seed=3)
    train, valid = data[:160], data[160:]
    model = pcc.compile(hidden_chow_liu_tree(train, k=16, trees=2), dtype=torch.float64)
    history = fit(model, train, valid, TrainConfig(epochs=3, batch_size=16, step_size=0.9,
                                                   pseudocount=1e-3, patience=3, polish=2,
                                                   members=1, init="data"), progress=False)
    floor = plain_chow_liu(train, valid, 2)
    assert history.plain_tree
    assert evaluate(model, valid).mean == pytest.approx(floor, abs=1e-8)
    assert history.best_valid == pytest.approx(floor, abs=1e-8)
