"""The engine's linear-space arithmetic (values with a log-scale per row) in float32 is exact
against float64 log-space references: deep circuits neither underflow nor lose precision,
samples whose values leave float32's range in some layer take the float64 pass (and would be
wrong without it), zero probabilities give exact -inf, and EM's flows agree too."""
import math
import warnings

import numpy as np
import pytest
import torch

import pcc
from pcc.em import EM
from pcc.runtime import engine
from pcc.structures import hidden_chow_liu_tree, poon_domingos


def chain_text(n: int, k: int) -> str:
    """A hidden Markov chain over n binary variables: the deepest tree (n - 1 layers)."""
    lines = ["pc 1", f"vars {n}", "leaf bernoulli", ""]
    lines += [f"input leaf{v} {{x{v}}} k={k}" for v in range(n)]
    lines.append(f"sum e{n - 1} k={k} = leaf{n - 1}")
    lines += [f"sum e{v} k={k} = leaf{v} .* e{v + 1}" for v in range(n - 2, 0, -1)]
    lines += ["sum top k=1 = leaf0 .* e1", "root top"]
    return "\n".join(lines)


def randomized(model, seed: int, scale: float = 2.0):
    """Random logits (normal with std `scale`): peaked distributions, far from uniform."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64) * scale)
    return model


def float64_reference(model):
    """The same parameters, node by node in float64 log space."""
    ref = pcc.compile(model.circuit, backend="naive").double()
    ref.load_state_dict(model.state_dict())
    return ref


def relative_error(a, b):
    return ((a.double() - b.double()).abs() / b.double().abs().clamp_min(1)).max().item()


def test_a_deep_chain_neither_underflows_nor_drifts():
    model = randomized(pcc.compile(chain_text(1500, 4)), 0)
    x = torch.randint(0, 2, (8, 1500), generator=torch.Generator().manual_seed(1)).float()
    x[:, ::7] = math.nan
    with torch.no_grad():
        ll = model(x)
        expected = float64_reference(model)(x.double())
    assert (expected < -700).all(), "far below float32's exponent range in linear space"
    assert torch.isfinite(ll).all()
    assert relative_error(ll, expected) < 1e-5


def test_a_large_hclt_and_pd_match_float64():
    data = np.random.default_rng(0).integers(0, 2, (300, 400))
    hclt = randomized(pcc.compile(hidden_chow_liu_tree(data, k=8, trees=2)), 2, scale=1.0)
    pd = randomized(pcc.compile(poon_domingos(16, 16, [4], k=3)), 3, scale=1.0)
    for model, x in ((hclt, torch.from_numpy(data[:6]).float()),
                     (pd, torch.randint(0, 2, (6, 256)).float())):
        with torch.no_grad():
            ll = model(x)
            expected = model.double()(x.double())  # the engine itself, in float64
            model.float()
        assert relative_error(ll, expected) < 1e-5


OUT_OF_RANGE = """pc 1
vars 120
leaf bernoulli
input a {x0..x59} k=2
input b {x60..x119} k=2
sum top k=1 = a .* b
root top
"""


def out_of_range_model():
    """a's unit 1 and b's unit 0 give all-ones data a likelihood e^-180 times their other unit:
    in the element-wise product every unit is tiny, beyond float32's range relative to the
    children's maxima."""
    model = pcc.compile(OUT_OF_RANGE)
    with torch.no_grad():
        logit = model.leaf_params[0].logit  # one group: slots of a (60 x 2), then of b
        logit[:60, 0], logit[:60, 1] = math.log(0.9 / 0.1), math.log(0.05 / 0.95)
        logit[60:, 0], logit[60:, 1] = math.log(0.05 / 0.95), math.log(0.9 / 0.1)
    return model


def test_out_of_range_samples_are_evaluated_again_in_float64(monkeypatch):
    model = out_of_range_model()
    x = torch.ones(3, 120)
    x[1, 60:] = 0.0  # an ordinary sample (both children favour unit 0): float32 alone
    with torch.no_grad():
        expected = float64_reference(model)(x.double())
        evaluation = model.infer(model.prepare_input(x))
        assert evaluation.wide is not None and evaluation.wide_rows.tolist() == [0, 2]
        assert relative_error(evaluation.root[:, 0], expected) < 1e-6
        monkeypatch.setattr(engine, "RANGE_LIMIT", 0.0)  # float32 alone is wrong here
        assert relative_error(model(x), expected) > 1e-3


def test_em_flows_of_out_of_range_samples_equal_float64():
    model = out_of_range_model()
    ref = float64_reference(model)
    x = torch.ones(4, 120)
    x[1, :30] = 0.0
    em, em_ref = EM(model), EM(ref)
    em.accumulate(x)
    em_ref.accumulate(x.double())
    assert em.rows == em_ref.rows == 4
    for counts, expected in zip(em._sum_counts + em._mix_counts,
                                em_ref._sum_counts + em_ref._mix_counts):
        assert torch.allclose(counts.double(), expected, rtol=1e-5, atol=1e-6)
    for stats, expected in zip(em._leaf_stats, em_ref._leaf_stats):
        for key in expected:
            assert torch.allclose(stats[key].double(), expected[key], rtol=1e-5, atol=1e-6)


ZEROS = """pc 1
vars 4
leaf bernoulli
input a {x0, x1} k=2
input b {x2, x3} k=2
sum ab k=2 = a * b
sum top k=1 = ab
root top
param a.p = [[1.0, 0.5], [0.0, 0.5]]
param b.p = [[0.5, 1.0], [0.5, 1.0]]
param ab.weights = [[[1.0, 0.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 1.0]]]
"""


def test_zero_probabilities_give_exact_minus_inf_and_finite_flows():
    model = pcc.compile(ZEROS)
    states = torch.tensor([[a, b, c, d] for a in (0, 1) for b in (0, 1) for c in (0, 1)
                           for d in (0, 1)], dtype=torch.float32)
    with torch.no_grad():
        ll = model(states)
        expected = float64_reference(model)(states.double())
    assert torch.equal(torch.isinf(ll), torch.isinf(expected)) and torch.isinf(ll).any()
    finite = torch.isfinite(expected)
    assert torch.allclose(ll[finite].double(), expected[finite], atol=1e-6)
    assert abs(torch.logsumexp(ll, 0).item()) < 1e-6
    ll.requires_grad_(False)
    em = EM(model, step_size=0.5)
    em.step(states[finite])
    assert all(not p.isnan().any() for p in model.parameters())
    out = model(states[finite])
    out.sum().backward()
    assert all(p.grad is None or not p.grad.isnan().any() for p in model.parameters())


@pytest.mark.parametrize("semiring_query", ["mpe", "sample"])
def test_queries_see_log_values_of_out_of_range_samples(semiring_query):
    """MPE and sampling read every node's log-value: the float64 pass's for its samples."""
    model = out_of_range_model()
    x = torch.full((2, 120), math.nan)
    x[:, :100] = 1.0
    if semiring_query == "mpe":
        states, logp = model.mpe(x)
        assert torch.isfinite(logp).all()
        with torch.no_grad():
            assert torch.allclose(model(states).double(), logp.double(), rtol=1e-5)
    else:
        samples = model.sample(5, x[:1], generator=torch.Generator().manual_seed(0))
        assert torch.equal(samples[:, :100], x[:1, :100].expand(5, -1))


def normal_chain(depth: int, far: float, near: float) -> str:
    """Element-wise products of normal leaves, each favouring the other unit: at x = 0 the first
    leaf's unit 1 is e^(-far^2/2) below its unit 0 (beyond float32's range for far > 13.2), and
    every later leaf favours unit 1 by e^(near^2/2), so that unit 1 carries the likelihood."""
    lines = ["pc 1", f"vars {depth + 1}", "leaf normal", "input a {x0} k=2"]
    lines += [f"input b{i} {{x{i}}} k=2" for i in range(1, depth + 1)]
    lines.append("sum s1 k=2 = a .* b1")
    lines += [f"sum s{i} k=2 = s{i - 1} .* b{i}" for i in range(2, depth + 1)]
    lines += [f"sum top k=1 = s{depth}", "root top", f"param a.mean = [[0.0], [{far}]]",
              "param a.std = [[1.0], [1.0]]"]
    for i in range(1, depth + 1):
        lines += [f"param b{i}.mean = [[{near}], [0.0]]", f"param b{i}.std = [[1.0], [1.0]]",
                  f"param s{i}.weights = [[1.0, 0.0], [0.0, 1.0]]"]
    return "\n".join(lines + ["param top.weights = [[0.5, 0.5]]"])


def leaf_chain(depth: int, far: float, near: float, mixing: float) -> pcc.CompiledCircuit:
    """`normal_chain` with sums that keep `mixing` of the other unit (weights 1 - m, m)."""
    text = normal_chain(depth, far, near).replace(
        "[[1.0, 0.0], [0.0, 1.0]]", f"[[{1 - mixing}, {mixing}], [{mixing}, {1 - mixing}]]")
    return pcc.compile(text)


@pytest.mark.parametrize("depth, far, near, mixing",
                         [(5, 14.5, 6.6, 0.0), (5, 14.5, 6.6, 1e-6), (1, 30.0, 30.0, 1e-6)],
                         ids=["lost-leaf-unit-zero-weights", "lost-leaf-unit-floored-weights",
                              "children-disagree"])
def test_leaf_units_beyond_float32s_range_are_exact(depth, far, near, mixing):
    """A leaf unit e^-105 below its row's best is lost to float32; with zero weights a chain of
    products brings it back (every sample takes the float64 pass: `careful`), with weights of
    at least 2^-70 the sums keep what it could change below float32's precision (float32
    alone), and where two leaves disagree the product's norm sends the sample to float64."""
    model = leaf_chain(depth, far, near, mixing)
    x = torch.zeros(3, depth + 1)
    x[1, 0] = far  # the same circuit where the leaf's units are close
    x[2, 0] = math.nan
    ref = float64_reference(model)
    with torch.no_grad():
        got, want = model(x).double(), ref(x.double())
        assert torch.allclose(got, want, rtol=1e-5, atol=1e-5), (got, want)
        wide = model.infer(model.prepare_input(x)).wide_rows
        if depth > 1:
            assert model.careful() == (mixing == 0.0)
            assert (wide is None) == (mixing > 0.0)
    stats = [EM(m) for m in (model, ref)]
    for em, rows in zip(stats, (x, x.double())):
        em.accumulate(rows)
    for got, want in zip(stats[0]._leaf_stats, stats[1]._leaf_stats):
        for key in want:
            assert torch.allclose(got[key].double(), want[key], rtol=1e-5, atol=1e-4), key


def test_samples_beyond_float64s_range_are_exact_or_said():
    """Two leaves whose units disagree by 800 nats: the element-wise product of their rows is 0
    even in float64. The log-likelihood is evaluated again in log space (exact); EM
    statistics, gradients and MPE say (RangeWarning) that they may be inexact."""
    model = leaf_chain(1, 40.0, 40.0, 1e-6)
    x = torch.zeros(2, 2)
    x[1, 0] = 40.0  # an ordinary sample beside it
    want = float64_reference(model)(x.double())
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("error")
        assert torch.allclose(model(x).double(), want, rtol=1e-6)
    with pytest.warns(engine.RangeWarning, match="1 of 2 samples .* EM statistics"):
        EM(model).accumulate(x)
    with pytest.warns(engine.RangeWarning, match="gradients"):
        model(x).sum().backward()
    with pytest.warns(engine.RangeWarning, match="MPE"):
        model.mpe(x)


def lost_inside_text(depth: int = 7) -> str:
    """Element-wise products of point inputs under sums with identity weights (zeros elsewhere):
    at x = 1 the first product multiplies two units of e^-60 into one below float32's range,
    and each later leaf favours that unit by e^21 (each product's largest drops by e^-21.7, less
    than RANGE_LIMIT), so that the lost unit carries the likelihood at the end."""
    lines = ["pc 1", f"vars {depth + 1}", "leaf bernoulli", "input a {x0} k=2"]
    lines += [f"input b{i} {{x{i}}} k=2" for i in range(1, depth + 1)]
    lines.append("sum s1 k=2 = a .* b1")
    lines += [f"sum s{i} k=2 = s{i - 1} .* b{i}" for i in range(2, depth + 1)]
    lines += [f"sum top k=1 = s{depth}", "root top"]
    small, favour = math.exp(-60.0), math.exp(-21.0)
    lines += [f"param a.p = [[{small}], [0.5]]", f"param b1.p = [[{small}], [0.5]]"]
    for i in range(1, depth + 1):
        if i > 1:
            lines.append(f"param b{i}.p = [[0.5], [{0.5 * favour}]]")
        lines.append(f"param s{i}.weights = [[1.0, 0.0], [0.0, 1.0]]")
    return "\n".join(lines + ["param top.weights = [[0.5, 0.5]]"])


def test_weights_below_the_floor_send_every_sample_to_float64(monkeypatch):
    model = pcc.compile(lost_inside_text())
    x = torch.ones(2, 8)
    x[1, 3] = math.nan
    ref = float64_reference(model)
    with torch.no_grad():
        want = ref(x.double())
        assert model.careful()
        assert torch.allclose(model(x).double(), want, rtol=1e-5)
    stats = [EM(m) for m in (model, ref)]
    for em, rows in zip(stats, (x, x.double())):
        em.accumulate(rows)
    for got, expected in zip(stats[0]._sum_counts, stats[1]._sum_counts):
        assert torch.allclose(got.double(), expected, rtol=1e-5, atol=1e-6)
    monkeypatch.setattr(pcc.runtime.module.CompiledCircuit, "careful", lambda *_, **__: False)
    with torch.no_grad():
        assert relative_error(model(x), want) > 1e-3  # the norms alone miss it


def test_trained_weights_keep_float32():
    data = np.random.default_rng(0).integers(0, 2, (200, 12))
    model = pcc.compile(hidden_chow_liu_tree(data, k=4, trees=2))
    assert not model.careful()
    EM(model).step(torch.from_numpy(data).float())
    assert not model.careful()


def test_a_long_chains_log_scale_does_not_drift():
    """A hidden Markov model over 5,000 steps with uniform emissions (exactly -L log 4 for any
    sequence): each layer adds its log-norm to a running scale of about |log p|, which float32
    would round by an ulp of ~1e4 per step (2.7e-5 relative here); the scales are float64."""
    from pcc.structures.hmm import hidden_markov_model
    steps = 5000
    model = pcc.compile(hidden_markov_model(steps, 4, 4))
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.zeros_like(p) if "leaf" in name
                    else torch.randn(p.shape, generator=gen, dtype=p.dtype) * 2)
        x = torch.randint(0, 4, (3, steps), generator=gen).float()
        exact = -steps * math.log(4)
        assert relative_error(model(x), torch.full((3,), exact, dtype=torch.float64)) < 1e-6


def test_em_vouches_for_the_weights_it_floors(monkeypatch):
    """After an EM update from weights at least WEIGHT_FLOOR, `careful` does not read the new
    weights again (EM's M-step floors them at min_prob); from zero weights it does, and finds
    the zeros that rows without flow keep."""
    data = np.random.default_rng(0).integers(0, 2, (64, 10))
    x = torch.from_numpy(data).float()
    reads = []
    smallest = pcc.runtime.module.CompiledCircuit.careful

    def counted(self, *args, **kwargs):
        kept = self.__dict__.get("_careful")
        if kept is None or not kept[0].matches([*self.sum_logits, *self.mix_logits],
                                               self._raw_weights):
            reads.append(1)
        return smallest(self, *args, **kwargs)
    monkeypatch.setattr(pcc.runtime.module.CompiledCircuit, "careful", counted)
    model = pcc.compile(hidden_chow_liu_tree(data, k=4, trees=2))
    em = EM(model)
    for _ in range(3):
        em.step(x)
    assert len(reads) == 1
    zeros = pcc.compile("""pc 1
vars 1
leaf bernoulli
input a {x0} k=2
sum s k=2 = a
sum top k=1 = s
root top
param s.weights = [[1.0, 0.0], [0.0, 1.0]]
param top.weights = [[1.0, 0.0]]
""")
    EM(zeros).step(torch.ones(4, 1))
    with zeros.em_mode():  # as the next E-step asks
        assert zeros.careful()  # s's unit 1 gets no flow (top's weight 0): its row keeps its 0


def test_a_leaf_beyond_float64s_range_under_zero_weights_is_said():
    """With identity weights (zeros: every sample takes the float64 pass) a leaf unit 800 nats
    below its row's best is lost even in float64, and no norm shows it: EM says so."""
    model = leaf_chain(1, 40.0, 0.0, 0.0)
    assert model.careful()
    with pytest.warns(engine.RangeWarning, match="1 of 1 samples"):
        EM(model).accumulate(torch.zeros(1, 2))
