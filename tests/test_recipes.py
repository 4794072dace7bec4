"""Training recipes are chosen from the circuit: latent trees get data initialization and a
polish bounded by the work budget; other circuits the RAT recipe; explicit settings win."""
import dataclasses

import numpy as np
import pytest
import torch

import pcc
from pcc.compiler import plan
from pcc.structures import hidden_chow_liu_tree, random_binary_trees
from pcc.train import (DEFAULT_RECIPE, LATENT_TREE_RECIPE, LATENT_TREE_WORK, MIN_POLISH,
                       TrainConfig, fit, recipe_for)


def data(rows=400, num_vars=6, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.integers(0, 2, rows)
    return (rng.random((rows, num_vars)) < np.where(z[:, None] == 1, 0.8, 0.2)).astype(np.int64)


def test_latent_trees_get_their_recipe_and_others_the_default():
    hclt = hidden_chow_liu_tree(data(), k=3)
    assert recipe_for(hclt) == LATENT_TREE_RECIPE and recipe_for(hclt).init == "data"
    assert recipe_for(random_binary_trees(6, depth=2, replicas=2)) == DEFAULT_RECIPE
    with_params = pcc.compile(hclt)
    fixed = dataclasses.replace(hclt, params=with_params.ir_params())
    # a latent tree with its own parameters (pcc structure hclt --init data) keeps its recipe
    # and starts from them
    assert recipe_for(fixed) == dataclasses.replace(LATENT_TREE_RECIPE, init="keep")


def test_a_latent_tree_with_continuous_leaves_is_initialized_from_the_data():
    from pcc.ir import Family
    rng = np.random.default_rng(0)
    z = rng.integers(0, 3, 600)
    x = z[:, None] * 2.0 + rng.normal(size=(600, 4))
    continuous = hidden_chow_liu_tree(x, k=3, trees=1)
    assert continuous.leaf == Family("normal") and recipe_for(continuous) == LATENT_TREE_RECIPE
    model = pcc.compile(continuous, dtype=torch.float64)
    random_start = float(model(torch.tensor(x)).mean().detach())
    fit(model, x[:400], x[400:], TrainConfig(epochs=0, polish=0, members=1), progress=False)
    means = sorted(model.leaf_params[0].mean[0].tolist())
    assert means == pytest.approx([0.0, 2.0, 4.0], abs=0.35)  # the three clusters of x0
    assert float(model(torch.tensor(x)).mean().detach()) > random_start + 1.0


def test_the_polish_shrinks_to_fit_the_work_budget():
    hclt = hidden_chow_liu_tree(data(), k=3)
    p = plan(hclt)
    from pcc.passes.explain import op_cost
    flops = sum(op_cost(op).flops for op in p.ops)
    assert recipe_for(hclt, p, 100).polish == LATENT_TREE_RECIPE.polish  # small: the full polish
    rows = int(LATENT_TREE_WORK // flops) // 50
    assert recipe_for(hclt, p, rows).polish == 50 - LATENT_TREE_RECIPE.epochs
    assert recipe_for(hclt, p, 10 ** 12).polish == MIN_POLISH


def test_explicit_settings_override_the_recipe():
    hclt = hidden_chow_liu_tree(data(), k=3)
    config = TrainConfig(batch_size=7, init="keep").resolved(hclt)
    assert (config.batch_size, config.init) == (7, "keep")
    assert config.step_size == LATENT_TREE_RECIPE.step_size


def test_data_initialization_and_training_are_reproducible():
    x = data()
    hclt = hidden_chow_liu_tree(x, k=3)
    states = []
    for _ in range(2):
        model = pcc.compile(hclt, dtype=torch.float64)
        fit(model, x[:300], x[300:], TrainConfig(epochs=2, polish=2, seed=3), progress=False)
        states.append(model.state_dict())
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


def test_keep_starts_from_the_models_parameters():
    """init="keep" (continuing a checkpoint) must not re-initialize: with no epochs and no polish
    the parameters stay as they were, where "data" sets them from the data."""
    x = data()
    hclt = hidden_chow_liu_tree(x, k=3)
    for init, same in (("keep", True), ("data", False)):
        model = pcc.compile(hclt, dtype=torch.float64, seed=1)
        before = {k: v.clone() for k, v in model.state_dict().items()}
        fit(model, x, None, TrainConfig(epochs=0, polish=0, init=init), progress=False)
        change = max(float((before[k] - v).abs().max()) for k, v in model.state_dict().items())
        assert (change < 1e-9) == same and (change > 1e-3) != same
