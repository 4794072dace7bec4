"""Marginals and conditionals equal brute-force sums over the joint; conditionals normalize;
p(e) = 0 gives NaN (undefined), p(q, e) = 0 gives -inf; the module's methods delegate."""
import math

import pytest
import torch

import pcc
from pcc.errors import ShapeError
from pcc.queries import conditional, marginal
from query_helpers import all_states, compiled, families_of
from random_circuits import random_circuit

DISCRETE = ("bernoulli", "categorical", "binomial")


def brute_log_sum(joint: torch.Tensor, states: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """log sum of the joint over the states that agree with each row of x (NaN = any): [B]."""
    agree = ((states.unsqueeze(0) == x.unsqueeze(1)) | torch.isnan(x).unsqueeze(1)).all(-1)
    return torch.logsumexp(torch.where(agree, joint.unsqueeze(0), -math.inf), 1)


@pytest.mark.parametrize("seed", range(6))
def test_marginal_and_conditional_equal_brute_force(seed):
    c = random_circuit(900 + seed, num_vars=5, families=DISCRETE)
    model = compiled(c, seed=seed)
    states = all_states(c, families_of(c))
    joint = model(states).detach()
    g = torch.Generator().manual_seed(seed)
    x = states[torch.randint(len(states), (10,), generator=g)].clone()
    x[torch.rand(x.shape, generator=g) < 0.3] = math.nan
    query = torch.rand(x.shape, generator=g) < 0.4
    assert torch.allclose(marginal(model, x), brute_log_sum(joint, states, x), atol=1e-10)
    evidence = x.masked_fill(query, math.nan)
    expected = brute_log_sum(joint, states, x) - brute_log_sum(joint, states, evidence)
    assert torch.allclose(conditional(model, query, x), expected, atol=1e-10)
    assert torch.allclose(model.conditional(query, x), expected, atol=1e-10)
    assert torch.equal(model.marginal(x), marginal(model, x))


def test_conditional_normalizes_over_the_query():
    c = random_circuit(950, num_vars=4, families=DISCRETE)
    model = compiled(c)
    states = all_states(c, families_of(c))
    query = torch.tensor([True, False, True, False])
    x = states.clone()
    x[:, 1] = states[5, 1]  # evidence x1, x3 fixed; the query x0, x2 runs over all values
    x[:, 3] = states[5, 3]
    x = torch.unique(x, dim=0)
    assert abs(torch.logsumexp(conditional(model, query, x), 0).item()) < 1e-10


def test_zero_probability_evidence_and_query():
    text = """pc 1
vars 2
leaf bernoulli
input a {x0} k=1
input b {x1} k=1
sum top k=1 = a * b
root top
param a.p = [[1.0]]
param b.p = [[0.0]]
"""
    model = pcc.compile(text, backend="torch").double()
    query = torch.tensor([True, False])
    out = conditional(model, query, torch.tensor([[1.0, 0.0], [0.0, 0.0], [1.0, 1.0]]))
    assert out[0] == 0.0  # p(x0 = 1 | x1 = 0) = 1
    assert out[1] == -math.inf  # p(x0 = 0 | x1 = 0) = 0
    assert torch.isnan(out[2])  # p(x1 = 1) = 0: undefined


def test_conditional_keeps_gradients_and_checks_the_mask():
    model = pcc.compile("ir_examples/params_inline.pc", backend="torch")
    x = torch.tensor([[1.0, 0.0, 1.0]])
    conditional(model, torch.tensor([True, False, False]), x).sum().backward()
    assert all(p.grad is not None for p in model.sum_logits)
    with pytest.raises(ShapeError, match="marginalize mask"):
        conditional(model, torch.tensor([True, False]), x)
