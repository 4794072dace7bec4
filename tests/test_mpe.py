"""MPE: exact on selective circuits (equal to the brute-force argmax, with and without evidence);
on other circuits a state whose exact probability is reported and bounded by brute force."""
import math

import pytest
import torch

import pcc
from pcc.compiler import plan
from pcc.queries import mpe
from pcc.runtime.module import CompiledCircuit
from query_helpers import (all_states, compiled, families_of, is_selective, selective_circuit)
from random_circuits import random_circuit

DISCRETE = ("bernoulli", "categorical", "binomial")


def selective_seeds(count: int, num_vars: int) -> list[int]:
    """Seeds of `selective_circuit` that are selective (checked by brute force), both kinds of
    root (one partition, two mixed partitions) included."""
    seeds = []
    for seed in range(200):
        c = selective_circuit(seed, num_vars)
        if is_selective(compiled(c), all_states(c, families_of(c))):
            seeds.append(seed)
        if len(seeds) == count:
            return seeds
    raise AssertionError("too few selective circuits")


def random_evidence(states: torch.Tensor, rows: int, seed: int) -> torch.Tensor:
    """Complete states with a random half of their values hidden (row 0: all hidden)."""
    g = torch.Generator().manual_seed(seed)
    x = states[torch.randint(len(states), (rows,), generator=g)].clone()
    x[torch.rand(x.shape, generator=g) < 0.5] = math.nan
    x[0] = math.nan
    return x


def brute_force_max(joint: torch.Tensor, states: torch.Tensor, evidence: torch.Tensor):
    """Per evidence row, max over consistent complete states of log p: [B]."""
    agree = ((states.unsqueeze(0) == evidence.unsqueeze(1)) | torch.isnan(evidence).unsqueeze(1))
    return torch.where(agree.all(-1), joint.unsqueeze(0), -math.inf).amax(1)


def naive(circuit) -> CompiledCircuit:
    """The circuit evaluated node by node (no kernel), in float64, for brute force."""
    return pcc.compile(circuit, backend="naive", dtype=torch.float64)


@pytest.mark.parametrize("seed", selective_seeds(10, num_vars=6))
def test_mpe_is_exact_on_selective_circuits(seed):
    """Against brute force over the joint of the naive backend, which shares no kernel with the
    max-product passes or the likelihood of the torch backend."""
    c = selective_circuit(seed, num_vars=6)
    model = compiled(c)
    states = all_states(c, families_of(c))
    joint = naive(c)(states)
    evidence = random_evidence(states, 16, seed)
    found, log_prob = mpe(model, evidence)
    best = brute_force_max(joint, states, evidence)
    assert torch.allclose(log_prob, best, atol=1e-9)
    observed = ~torch.isnan(evidence)
    assert (found[observed] == evidence[observed]).all() and not torch.isnan(found).any()
    # the max-product value at the root is the max itself on a selective circuit
    assert torch.allclose(model.upward(evidence, "max")[1][model.plan.region_row[c.root][1], :, 0],
                          best, atol=1e-9)


def test_selectivity_check_finds_non_selective_circuits():
    """The generator's two-partition roots are sometimes not selective, and the check says so."""
    flags = []
    for seed in range(20):
        c = selective_circuit(seed, num_vars=5)
        flags.append(is_selective(compiled(c), all_states(c, families_of(c))))
    assert any(flags) and not all(flags)


@pytest.mark.parametrize("seed", range(8))
def test_mpe_on_non_selective_circuits_is_bounded_by_brute_force(seed):
    """Max-product is an approximation here: the state's log-probability is exact (the circuit's
    value at that state), at most the true max, and at least the root's max-product value."""
    c = random_circuit(800 + seed, num_vars=4, families=DISCRETE, root_k=1 + seed % 2)
    model = compiled(c, seed=seed)
    states = all_states(c, families_of(c))
    evidence = random_evidence(states, 12, seed)
    unit = seed % 2
    joint = model(states)
    joint = joint[:, unit] if joint.dim() == 2 else joint
    found, log_prob = mpe(model, evidence, root_unit=unit if seed % 2 else None)
    value = model(found)
    assert torch.allclose(log_prob, value[:, unit] if value.dim() == 2 else value, atol=1e-12)
    assert (log_prob <= brute_force_max(joint, states, evidence) + 1e-9).all()
    root_max = model.upward(evidence, "max")[c.region(c.root).k][
        model.plan.region_row[c.root][1], :, unit]
    assert (log_prob >= root_max - 1e-9).all()


def test_mpe_handles_impossible_evidence_and_finds_the_hand_computed_state():
    text = """pc 1
vars 3
leaf bernoulli
input a {x0, x1} k=2
input b {x2} k=2
sum top k=1 = a * b
root top
param a.p = [[0.0, 1.0], [1.0, 1.0]]
param b.p = [[0.3], [0.9]]
param top.weights = [[[0.1, 0.2], [0.3, 0.4]]]
"""
    nan = math.nan
    evidence = torch.tensor([[nan, 0.0, nan],   # x1 = 0 is impossible
                             [nan, nan, nan], [0.0, nan, 0.0]])
    for backend in ("torch", "naive"):  # the states' probabilities: by the kernels, node by node
        model = pcc.compile(text, backend=backend, dtype=torch.float64)
        found, log_prob = mpe(model, evidence)
        assert log_prob[0] == -math.inf and torch.isfinite(log_prob[1:]).all()
        assert not torch.isnan(found).any() and found[0, 1] == 0
        # no evidence: the max over the 8 states is p(1, 1, 1) = 0.3 * 0.3 + 0.4 * 0.9
        assert found[1].tolist() == [1.0, 1.0, 1.0]
        assert math.isclose(log_prob[1].item(), math.log(0.45), abs_tol=1e-12)
        # x0 = x2 = 0: unit a0 (x1 = 1), then b: 0.1 * 0.7 + 0.2 * 0.1 = 0.09
        assert found[2].tolist() == [0.0, 1.0, 0.0]
        assert math.isclose(log_prob[2].item(), math.log(0.09), abs_tol=1e-12)


def test_mpe_with_the_triton_kernels_equals_the_torch_kernels():
    """The max-product upward pass through the Triton kernels (interpreter on CPU, see conftest)."""
    c = random_circuit(850, num_vars=5, families=DISCRETE)
    models = [CompiledCircuit(c, plan(c), backend=b, seed=2) for b in ("torch", "triton")]
    evidence = random_evidence(all_states(c, families_of(c)), 6, 3).float()
    (s1, lp1), (s2, lp2) = (mpe(m, evidence) for m in models)
    assert torch.equal(s1, s2) and torch.allclose(lp1, lp2, atol=1e-4)
