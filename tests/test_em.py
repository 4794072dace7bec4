"""EM: full-batch EM never lowers the training log-likelihood; the expected counts are right;
missing values contribute no statistics; online EM learns; nothing becomes NaN."""
import math

import pytest
import torch

from pcc.compiler import plan
from pcc.em import EM
from pcc.runtime.module import CompiledCircuit
from em_climb import assert_climbs
from random_circuits import random_circuit


def compiled(circuit, backend="torch", seed=0):
    return CompiledCircuit(circuit, plan(circuit), backend=backend, seed=seed).double()


def sample_data(seed, n, num_vars, high=2):
    gen = torch.Generator().manual_seed(seed)
    # correlated data: a hidden coin flips the mean of every variable
    z = torch.rand(n, 1, generator=gen) < 0.5
    p = torch.where(z, 0.8, 0.2).expand(n, num_vars)
    return (torch.rand(n, num_vars, generator=gen) < p).double() * (high - 1)


@pytest.mark.parametrize("seed", range(8))
def test_full_batch_em_never_lowers_likelihood(seed):
    families = [("bernoulli",), ("bernoulli", "categorical", "binomial"), ("normal",)][seed % 3]
    c = random_circuit(500 + seed, num_vars=5, families=families)
    model = compiled(c, seed=seed)
    x = sample_data(seed, 300, 5)
    if families == ("normal",):
        x = x + 0.3 * torch.randn(x.shape, generator=torch.Generator().manual_seed(seed),
                                  dtype=x.dtype)
    em = EM(model, step_size=1.0, pseudocount=0.0, min_prob=1e-12, min_var=1e-6)

    def full_batch() -> None:  # two batches accumulated, then one update
        em.accumulate(x[:150])
        em.accumulate(x[150:])
        em.update()
    assert_climbs(model, x, full_batch, 6)


def test_expected_counts_of_a_mixture_are_posteriors():
    """For a 1-variable mixture of two Bernoullis the weight counts are the summed posteriors."""
    text = """pc 1
vars 1
leaf bernoulli
input a {x0} k=2
sum top k=1 = a
root top
param a.p = [[0.9], [0.2]]
param top.weights = [[0.3, 0.7]]
"""
    import pcc
    model = pcc.compile(text, backend="torch").double()
    em = EM(model, step_size=1.0, pseudocount=0.0)
    x = torch.tensor([[1.0], [0.0], [1.0]])
    em.accumulate(x)
    counts = em._sum_counts[0][0, 0]
    post = lambda v: torch.tensor([0.3 * (0.9 if v else 0.1), 0.7 * (0.2 if v else 0.8)])
    expected = sum(post(v) / post(v).sum() for v in (1, 0, 1))
    assert torch.allclose(counts, expected.double(), atol=1e-12)
    em.update()
    weights = torch.softmax(model.sum_logits[0][0, 0], -1)
    assert torch.allclose(weights, expected.double() / 3, atol=1e-12)


def test_missing_values_contribute_no_statistics():
    """A variable that is always missing keeps its leaf parameters (EinsumNetworks would shrink
    them toward zero); the observed variable still learns."""
    c = random_circuit(7, num_vars=3, families=("bernoulli",))
    model = compiled(c)
    before = {k: v.clone() for k, v in model.named_parameters() if k.startswith("leaf")}
    x = sample_data(0, 200, 3)
    x[:, 1] = math.nan
    em = EM(model, step_size=1.0, pseudocount=0.5)
    em.step(x)
    learned = 0
    for gi, g in enumerate(model.plan.leaf_groups):
        logit, old = model.leaf_params[gi].logit, before[f"leaf_params.{gi}.logit"]
        untouched = torch.from_numpy(g.var_index == 1)
        assert torch.equal(logit[untouched], old[untouched])
        learned += int((logit[~untouched] != old[~untouched]).sum())
    assert learned > 0


def test_online_em_learns_and_stays_finite():
    c = random_circuit(11, num_vars=6, families=("bernoulli", "categorical"))
    model = compiled(c)
    x = sample_data(1, 2000, 6)
    with torch.no_grad():
        start = model(x).mean().item()
    em = EM(model, step_size=0.2, pseudocount=0.1)
    for i in range(0, 2000, 50):
        em.step(x[i:i + 50])
    with torch.no_grad():
        end = model(x).mean().item()
    assert end > start + 0.3
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_em_with_naive_backend_matches_torch_backend():
    c = random_circuit(13, num_vars=4, families=("bernoulli", "normal"))
    x = sample_data(2, 64, 4)
    models = [compiled(c, b, seed=3) for b in ("torch", "naive")]
    for m in models:
        EM(m, step_size=0.5, pseudocount=0.1).step(x)
    for (n1, p1), (n2, p2) in zip(*(m.named_parameters() for m in models)):
        assert n1 == n2 and torch.allclose(p1, p2, atol=1e-9)


def test_step_equals_accumulate_then_update():
    """`step` updates straight from the engine's flow buffers; over several online steps the
    parameters equal, bit for bit, those of `accumulate` (which copies them) then `update`."""
    c = random_circuit(17, num_vars=6, families=("bernoulli", "categorical"))
    x = sample_data(3, 120, 6)
    streamed, plain = compiled(c, seed=5), compiled(c, seed=5)
    assert {"EinsumOp", "HadamardOp", "MixOp"} <= {type(op).__name__ for op in streamed.plan.ops}
    em_streamed = EM(streamed, step_size=0.3, pseudocount=0.1)
    em_plain = EM(plain, step_size=0.3, pseudocount=0.1)
    for start in range(0, 120, 40):
        em_streamed.step(x[start: start + 40])
        em_plain.accumulate(x[start: start + 40])
        em_plain.update()
    for (n1, p1), (n2, p2) in zip(streamed.named_parameters(), plain.named_parameters()):
        assert n1 == n2 and torch.equal(p1, p2), n1


@pytest.mark.parametrize("streamed", [True, False], ids=["step", "accumulate+update"])
def test_sum_units_without_flow_keep_their_weights(streamed):
    """Unit 1 of `ab` has weight 0 in its only parent, so it never receives flow: its weights
    stay as they are, while unit 0's are re-estimated."""
    import pcc
    text = """pc 1
vars 4
leaf bernoulli
input a {x0} k=2
input b {x1} k=2
input c {x2} k=2
input d {x3} k=2
sum ab k=2 = a * b
sum cd k=2 = c * d
sum top k=1 = ab * cd
root top
param top.weights = [[[0.5, 0.5], [0.0, 0.0]]]
"""
    model = pcc.compile(text, backend="torch").double()
    part, _, _ = model._locate()
    i, m = part[("ab", 0)]
    em = EM(model, step_size=1.0, pseudocount=0.1)  # (projects the logits onto log-weights)
    before = model.sum_logits[i][m].clone()
    x = sample_data(4, 50, 4)
    if streamed:
        em.step(x)
    else:
        em.accumulate(x)
        em.update()
    after = model.sum_logits[i][m]
    assert torch.equal(after[1], before[1])
    assert not torch.allclose(after[0], before[0])
    assert all(torch.isfinite(p[p > -math.inf]).all() for p in model.parameters())


def test_a_flow_float32_cannot_hold_counts_as_none_in_float64_too():
    """Unit 1 of s has posterior e^-128 at x = 0: float32 flushes its flow to zero, float64
    does not; both must make the same M-step (the unit keeps its weights)."""
    import pcc
    text = """pc 1
vars 1
leaf normal
input b {x0} k=2
sum s k=2 = b
sum top k=1 = s
root top
param b.mean = [[0.0], [16.0]]
param b.std = [[1.0], [1.0]]
param s.weights = [[1.0, 0.0], [0.0, 1.0]]
param top.weights = [[0.5, 0.5]]
"""
    weights = []
    for dtype in (torch.float32, torch.float64):
        model = pcc.compile(text, dtype=dtype)
        em = EM(model, step_size=1.0, pseudocount=0.1)
        em.step(torch.zeros(8, 1, dtype=dtype))
        weights.append([p for p in model.ir_params() if p.region == "s"][0].values)
    assert weights[0] == pytest.approx(weights[1], abs=1e-6)
    assert weights[0][2:] == pytest.approx([0.0, 1.0], abs=1e-6)  # unit 1 kept its weights
