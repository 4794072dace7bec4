"""Element-wise products that look their first children up in a point block's table: in a
latent tree every node's product reads its variable's leaf, and when nothing else reads those
leaf rows the engine does not write them (`pcc.runtime.engine._point_firsts`). Checked against
the naive node-by-node evaluator in float64 (values in both semirings with missing values, EM
statistics), against the same layers without the lookup (every arena row, as queries read
them), and for which blocks are looked up."""
import math

import numpy as np
import pytest
import torch

import pcc
from pcc.structures import hidden_chow_liu_tree
from test_point_sums import assert_equals_the_unfolded_layers, assert_same_em_statistics, models

TREE = """pc 1
vars 5
leaf bernoulli
input l0 {x0} k=3
input l1 {x1} k=3
input l2 {x2} k=3 categorical(n=4)
input l3 {x3} k=3
input l4 {x4} k=3
sum e3 k=3 = l3
sum e4 k=3 = l4
sum e2 k=3 = l2 .* e3 .* e4
sum e1 k=3 = l1
sum top k=1 = l0 .* e1 .* e2
root top
"""
# the same, but a Kronecker product also reads two of the Bernoulli leaves' rows
SHARED = TREE.replace("sum e1 k=3 = l1\n", "sum e1 k=3 = l1\nsum o k=3 = l3 * l4\n").replace(
    "sum e2 k=3 = l2 .* e3 .* e4", "sum e2 k=3 = l2 .* e3 .* e4 | l2 .* o")


def data(n: int = 40) -> torch.Tensor:
    gen = torch.Generator().manual_seed(1)
    x = torch.randint(0, 2, (n, 5), generator=gen).double()
    x[:, 2] = torch.randint(0, 4, (n,), generator=gen).double()
    x[torch.rand(x.shape, generator=gen) < 0.25] = math.nan
    return x


def looked_up(model, batch: int = 7) -> set[int]:
    """The leaf blocks whose rows a binding of `model` looks up instead of writing."""
    program = model.program(torch.device("cpu"))
    bound = program.bind(batch, torch.zeros(1, dtype=torch.float64), backward=True)
    return {block for block, _ in bound.point_firsts.values()}


def test_products_look_up_leaves_that_nothing_else_reads():
    assert len(looked_up(models(TREE)[0])) == 2  # the Bernoulli and the categorical block
    assert len(looked_up(models(SHARED)[0])) == 1  # the Kronecker product reads l3 and l4


def test_a_latent_tree_looks_up_all_its_leaves():
    rows = np.random.default_rng(0).integers(0, 2, (200, 9)).astype(float)
    model = pcc.compile(hidden_chow_liu_tree(rows, k=4, trees=2))
    assert looked_up(model) == set(model.program(torch.device("cpu")).point_blocks)


@pytest.mark.parametrize("text", [TREE, SHARED], ids=["tree", "shared"])
@pytest.mark.parametrize("semiring", ["sum", "max"])
def test_every_arena_row_equals_the_layers_without_lookups(text, semiring):
    assert_equals_the_unfolded_layers(*models(text), data(), semiring)


@pytest.mark.parametrize("text", [TREE, SHARED], ids=["tree", "shared"])
def test_float32_values_and_mpe_match_float64(text):
    fast, naive = models(text)
    x = data()
    single = pcc.compile(text)
    single.load_state_dict({k: v.float() for k, v in fast.state_dict().items()})
    with torch.no_grad():
        want = naive(x)
        got = single(x.float()).double()
    assert torch.allclose(got, want, rtol=1e-5, atol=1e-5)
    states, logp = fast.mpe(x)
    assert torch.allclose(logp, naive(states), atol=1e-12)


@pytest.mark.parametrize("text", [TREE, SHARED], ids=["tree", "shared"])
def test_em_statistics_equal_the_naive_evaluator(text):
    assert_same_em_statistics(*models(text), data())
