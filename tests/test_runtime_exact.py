"""The compiled module is exact: normalized, marginals equal brute-force sums, equal to the naive
node-by-node evaluator, in float64, on random circuits of every family."""
import itertools
import math

import pytest
import torch

import pcc
from pcc.compiler import plan
from pcc.runtime.module import CompiledCircuit
from random_circuits import SUPPORT, random_circuit

DISCRETE = ("bernoulli", "categorical", "binomial")


def compiled(circuit, backend="torch", seed=0):
    return CompiledCircuit(circuit, plan(circuit), backend=backend, seed=seed).double()


def all_states(circuit, var_family):
    sizes = [SUPPORT[var_family[v]] for v in range(circuit.num_vars)]
    return torch.tensor(list(itertools.product(*(range(s) for s in sizes))), dtype=torch.float64)


def families_of(circuit):
    out = {}
    for r in circuit.inputs:
        for v, family in zip(r.scope, circuit.families_of(r)):
            out[v] = family.name
    return out


@pytest.mark.parametrize("seed", range(12))
def test_discrete_circuit_sums_to_one(seed):
    c = random_circuit(seed, num_vars=4, families=DISCRETE)
    model = compiled(c, seed=seed)
    total = torch.logsumexp(model(all_states(c, families_of(c))), 0)
    assert abs(total.item()) < 1e-10


@pytest.mark.parametrize("seed", range(8))
def test_marginals_equal_brute_force(seed):
    c = random_circuit(100 + seed, num_vars=4, families=DISCRETE)
    assert_marginals_are_brute_force_sums(c, compiled(c, seed=seed), seed)


def assert_marginals_are_brute_force_sums(c, model, seed: int) -> None:
    """For random rows with random variables missing, log p(x_obs) is the log of the sum of the
    joint over the states that agree with x_obs."""
    states = all_states(c, families_of(c))
    joint = model(states)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(4):
        missing = torch.rand(c.num_vars, generator=gen) < 0.5
        x = states[torch.randint(len(states), (1,), generator=gen)].clone()
        x[0, missing] = math.nan
        agree = ((states == x) | missing).all(1)
        brute = torch.logsumexp(joint[agree], 0)
        assert torch.allclose(model(x)[0], brute, atol=1e-10)


@pytest.mark.parametrize("seed", range(10))
def test_compiled_equals_naive(seed):
    c = random_circuit(200 + seed, num_vars=5, families=("bernoulli", "categorical", "binomial",
                                                         "normal"), root_k=1 + seed % 2)
    fast, naive = compiled(c, seed=seed), compiled(c, "naive", seed=seed)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 2, (7, c.num_vars), generator=gen).double()
    x[torch.rand(x.shape, generator=gen) < 0.3] = math.nan
    assert torch.allclose(fast(x), naive(x), atol=1e-6, rtol=0)


@pytest.mark.parametrize("seed", range(4))
def test_normal_circuit_integrates_to_one(seed):
    c = random_circuit(300 + seed, num_vars=1, families=("normal",))
    model = compiled(c, seed=seed)
    grid = torch.linspace(-12, 12, 20001, dtype=torch.float64)
    density = model(grid.unsqueeze(1)).exp()
    assert abs(torch.trapezoid(density, grid).item() - 1) < 1e-5


@pytest.mark.parametrize("seed", range(6))
def test_gradients_equal_naive(seed):
    """The engine's explicit backward gives the same gradients as autograd through the naive
    evaluator, for every parameter and for continuous inputs."""
    c = random_circuit(400 + seed, num_vars=4, families=("bernoulli", "normal"))
    fast, naive = compiled(c, seed=seed), compiled(c, "naive", seed=seed)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 2, (5, c.num_vars), generator=gen).double()
    x[torch.rand(x.shape, generator=gen) < 0.2] = math.nan
    assert_same_values_and_gradients(fast, naive, x)


def assert_same_values_and_gradients(fast, naive, x) -> None:
    """Both models give the same log-probabilities of x and the same gradients of their sum, for
    x (NaN for missing) and for every parameter (None for both where a parameter is not used)."""
    grads = []
    for m in (fast, naive):
        xi = x.clone().requires_grad_()
        m.zero_grad()
        out = m(xi)
        out.sum().backward()
        grads.append([out.detach(), xi.grad] + [p.grad for p in m.parameters()])
    for a, b in zip(*grads):
        assert (a is None) == (b is None)
        assert a is None or torch.allclose(torch.nan_to_num(a), torch.nan_to_num(b), atol=1e-8)


def test_impossible_evidence_is_minus_inf_without_nan():
    """Bernoulli leaves with p in {0, 1} make some states impossible: log p = -inf, gradients 0."""
    text = """pc 1
vars 2
leaf bernoulli
input a {x0} k=2
input b {x1} k=2
sum top k=1 = a * b
root top
param a.p = [[0.0], [1.0]]
param b.p = [[1.0], [1.0]]
"""
    model = pcc.compile(text, backend="torch").double()
    x = torch.tensor([[0.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    out = model(x)
    assert out[0] == -math.inf and torch.isfinite(out[1:]).all()
    out[1:].sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
