"""Sampling is exact: sample frequencies match the exact joint (and conditionals) of random
discrete circuits by a chi-square test; temperature, class roots, Normal leaves, backends."""
import math

import numpy as np
import pytest
import torch
from scipy import stats

import pcc
from pcc.compiler import plan
from pcc.errors import DataError, ShapeError
from pcc.queries import sample
from pcc.queries.roots import root_values
from pcc.runtime.module import CompiledCircuit
from query_helpers import (all_states, chi_square_p, compiled, families_of, state_index,
                           support_sizes)
from random_circuits import random_circuit

DISCRETE = ("bernoulli", "categorical", "binomial")
N = 200_000
P_MIN = 1e-3


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("seed", range(6))
def test_samples_match_the_joint(seed):
    c = random_circuit(500 + seed, num_vars=4, families=DISCRETE, root_k=1 + seed % 2)
    model = compiled(c, seed=seed)
    sizes = support_sizes(c)
    unit = seed % 2  # the last unit of a root with two units (class-conditional)
    joint = model(all_states(c, families_of(c)))
    probs = (joint[:, unit] if joint.dim() == 2 else joint).exp()
    x = sample(model, N, generator=gen(seed), root_unit=unit if c.region(c.root).k > 1 else None)
    assert x.shape == (N, 4) and not torch.isnan(x).any()
    assert chi_square_p(x, probs, sizes) > P_MIN


@pytest.mark.parametrize("seed", range(4))
def test_conditional_samples_match_the_conditional(seed):
    c = random_circuit(600 + seed, num_vars=4, families=DISCRETE)
    model = compiled(c, seed=seed)
    states = all_states(c, families_of(c))
    joint = model(states).exp()
    rng = gen(seed)
    evidence = states[torch.randint(len(states), (2,), generator=rng)].clone()
    evidence[0, :2] = math.nan  # row 0: x0, x1 free; row 1: x2, x3 free
    evidence[1, 2:] = math.nan
    x = sample(model, N, evidence, generator=rng)  # N / 2 samples per evidence row
    for row in range(2):
        drawn = x[row * N // 2:(row + 1) * N // 2]
        observed = ~torch.isnan(evidence[row])
        assert (drawn[:, observed] == evidence[row, observed]).all()
        agree = ((states == evidence[row]) | ~observed).all(1)
        posterior = torch.where(agree, joint, torch.zeros_like(joint))
        assert chi_square_p(drawn, posterior / posterior.sum(), support_sizes(c)) > P_MIN


MIXTURE = """pc 1
vars 2
leaf bernoulli
input a {x0} k=3
input b {x1} k=1
sum top k=1 = a * b
root top
param a.p = [[0.0], [1.0], [1.0]]
param b.p = [[0.5]]
param top.weights = [[[0.2], [0.5], [0.3]]]
"""


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0])
def test_temperature_draws_choices_from_softmax_of_logits_over_t(temperature):
    """x0 = 0 exactly when component 0 is chosen: P = w0^(1/T) / sum_k wk^(1/T)."""
    model = pcc.compile(MIXTURE, backend="torch").double()
    w = torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64) ** (1 / temperature)
    expected = (w[0] / w.sum()).item()
    x = sample(model, 50_000, temperature=temperature, generator=gen(1))
    zeros = int((x[:, 0] == 0).sum())
    assert stats.binomtest(zeros, len(x), expected).pvalue > P_MIN


def test_temperature_zero_takes_the_heaviest_component():
    model = pcc.compile(MIXTURE, backend="torch")
    x = sample(model, 1000, temperature=0.0, generator=gen(2))
    assert (x[:, 0] == 1).all()  # component 1 (weight 0.5) is a point mass at x0 = 1
    with pytest.raises(ValueError, match="temperature"):
        sample(model, 10, temperature=-1.0)


def test_normal_samples_follow_the_density():
    """Kolmogorov-Smirnov against the CDF of a one-variable Normal-leaf circuit (by quadrature)."""
    c = random_circuit(303, num_vars=1, families=("normal",))
    model = compiled(c, seed=3)
    grid = torch.linspace(-15, 15, 30001, dtype=torch.float64)
    density = model(grid.unsqueeze(1)).exp().detach()
    cdf = torch.cumulative_trapezoid(density, grid)
    cdf = torch.cat([cdf.new_zeros(1), cdf]).numpy()
    x = sample(model, 20_000, generator=gen(3))[:, 0].numpy()
    assert stats.kstest(x, lambda t: np.interp(t, grid.numpy(), cdf)).pvalue > P_MIN


def test_the_sampler_agrees_with_the_naive_backend():
    """The sampler's upward pass runs the torch kernels; the naive backend evaluates the circuit
    node by node, without them. The probabilities of the evidence the sampler conditions on
    equal the naive ones (float64, every unit of a class root), and sample frequencies match the
    naive joint and conditional."""
    c = random_circuit(702, num_vars=4, families=DISCRETE, root_k=2)
    sampler = CompiledCircuit(c, plan(c), backend="torch", seed=2).double()
    reference = CompiledCircuit(c, plan(c), backend="naive", seed=2).double()
    states = all_states(c, families_of(c))
    evidence = states.clone()
    evidence[torch.rand(states.shape, generator=gen(9)) < 0.5] = math.nan
    arenas = sampler.upward(evidence)
    for unit in range(2):
        units = torch.full((len(evidence),), unit)
        assert torch.allclose(root_values(sampler, arenas, units), reference(evidence)[:, unit],
                              atol=1e-9)
    joint = reference(states)[:, 1].exp()
    x = sample(sampler, N, generator=gen(7), root_unit=1)
    assert chi_square_p(x, joint, support_sizes(c)) > P_MIN
    row = evidence[len(evidence) // 3]
    agree = ((states == row) | torch.isnan(row)).all(1)
    posterior = torch.where(agree, joint, torch.zeros_like(joint))
    x = sample(sampler, N, row, generator=gen(8), root_unit=1)
    assert chi_square_p(x, posterior / posterior.sum(), support_sizes(c)) > P_MIN


def test_the_triton_kernels_draw_the_same_samples():
    """The same plan and downward pass with the Triton kernels (under the interpreter on CPU,
    see conftest), in float32 like the torch model."""
    c = random_circuit(700, num_vars=5, families=DISCRETE)
    reference = CompiledCircuit(c, plan(c), backend="torch", seed=1)
    other = CompiledCircuit(c, plan(c), backend="triton", seed=1)
    evidence = torch.tensor([[1.0, math.nan, math.nan, 0.0, math.nan],
                             [math.nan, 1.0, 2.0, math.nan, math.nan]])
    for ev in (None, evidence):
        assert torch.equal(sample(reference, 500, ev, generator=gen(4)),
                           sample(other, 500, ev, generator=gen(4)))


def test_class_root_needs_a_unit_and_takes_one_per_sample():
    c = random_circuit(701, num_vars=4, families=DISCRETE, root_k=3)
    model = compiled(c)
    with pytest.raises(ShapeError, match="root has 3 units"):
        sample(model, 10)
    with pytest.raises(ShapeError, match="0..2"):
        sample(model, 10, root_unit=3)
    units = torch.arange(3000) % 3
    x = sample(model, 3000, root_unit=units, generator=gen(5))
    sizes = support_sizes(c)
    joint = model(all_states(c, families_of(c))).exp()
    for u in range(3):  # every unit's rows follow that unit's density (a coarse check)
        assert chi_square_p(x[units == u], joint[:, u], sizes) > P_MIN
    assert state_index(x, sizes).max() < len(joint)


def test_impossible_evidence_and_bad_shapes_are_clear_errors():
    model = pcc.compile(MIXTURE.replace("[[0.5]]", "[[1.0]]"), backend="torch")  # x1 = 1 surely
    evidence = torch.tensor([[math.nan, 1.0], [math.nan, 0.0]])
    with pytest.raises(DataError, match="^row 2: .*probability 0"):  # the second row, from 1
        sample(model, 4, evidence)
    with pytest.raises(ShapeError, match="divide"):
        sample(model, 5, torch.full((2, 2), math.nan))
    with pytest.raises(ShapeError, match=r"\[B, 2\]"):
        sample(model, 4, torch.zeros(1, 3))


def test_the_chi_square_check_rejects_a_wrong_sampler():
    """Power check: samples at temperature 0.5 are not samples of the joint, and the test says so."""
    c = random_circuit(501, num_vars=4, families=DISCRETE)
    model = compiled(c, seed=1)
    probs = model(all_states(c, families_of(c))).exp()
    x = sample(model, N, temperature=0.5, generator=gen(6))
    assert chi_square_p(x, probs, support_sizes(c)) < 1e-6


def test_a_root_input_region_samples_its_chosen_unit():
    model = pcc.compile("pc 1\nvars 2\nleaf bernoulli\ninput a {x0, x1} k=2\nroot a\n"
                        "param a.p = [[0.0, 1.0], [1.0, 1.0]]\n", backend="torch")
    x = sample(model, 4, root_unit=torch.tensor([0, 1, 1, 0]))
    assert x.tolist() == [[0, 1], [1, 1], [1, 1], [0, 1]]
