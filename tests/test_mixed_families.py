"""Inputs whose variables have several families (`leaf F {vars}`): checked, printed, compiled
without an extra layer, and exact for every query: likelihoods and marginals against brute force
and the naive evaluator, EM against a hand-computed M-step, samples by a chi-square test, MPE
against brute force; params per part round-trip through text and other formats."""
import math

import pytest
import torch

import pcc
from pcc import checkpoint
from pcc.frontend import check_source, parse, to_text, validate
from pcc.interchange.export import export_text
from pcc.ir import Circuit, Family, Input, LeafScope, Sum
from pcc.queries import mpe, sample
from em_climb import assert_climbs
from query_helpers import all_states, chi_square_p, compiled, families_of, support_sizes
from random_circuits import random_circuit
from test_mpe import brute_force_max, random_evidence
from test_runtime_exact import assert_marginals_are_brute_force_sums, assert_same_values_and_gradients

DISCRETE = ("bernoulli", "categorical", "binomial")
MIXED = """pc 1
vars a b c d
leaf bernoulli
leaf categorical(n=3) {b, d}
input ab {a, b} k=2
input cd {c, d} k=2
sum top k=1 = ab * cd
root top
"""


def mixed_circuit(seed: int, families=DISCRETE, num_vars: int = 4, root_k: int = 1) -> Circuit:
    """A random circuit with at least one mixed input (the first seed from `seed` on)."""
    for s in range(seed, seed + 200):
        c = random_circuit(s, num_vars=num_vars, families=families, mixed=0.8, root_k=root_k)
        if any(c.is_mixed(r) for r in c.inputs):
            return c
    raise AssertionError("no mixed circuit")


# ---------------------------------------------------------------------------- the language

def test_an_input_takes_each_variables_family_and_splits_into_parts():
    c = parse(MIXED)
    ab = c.region("ab")
    assert c.is_mixed(ab) and c.family_of(ab) is None
    assert c.families_of(ab) == (Family("bernoulli"), Family("categorical", (("n", 3),)))
    assert c.input_parts(ab) == ((Family("bernoulli"), (0,)), (Family("categorical", (("n", 3),)), (1,)))
    assert parse(to_text(c)) == c and "leaf categorical(n=3) {b, d}" in to_text(c)


def test_a_hand_built_mixed_circuit_validates_and_prints():
    c = Circuit(("a", "b"), (Input("m", (1, 0), 3), Sum("top", 1, (("m",),))), "top", Family("normal"),
                leaf_scopes=(LeafScope(Family("binomial", (("n", 4),)), (1,)),))
    assert validate(c) == []
    assert parse(to_text(c)) == c
    assert c.input_parts(c.region("m"))[0] == (Family("binomial", (("n", 4),)), (1,))


@pytest.mark.parametrize("text, kind, message", [
    (MIXED + "param ab.p = [[0.5], [0.5]]\n", "param-index",
     "param ab.p needs a part index: input 'ab' mixes 2 families, one part each ([0] bernoulli over a; "
     "[1] categorical(n=3) over b)"),
    (MIXED + "param ab.p[2] = [[0.5], [0.5]]\n", "param-index",
     "param ab.p[2]: input 'ab' has no part 2; it mixes 2 families, one part each ([0] bernoulli over a; "
     "[1] categorical(n=3) over b)"),
    (MIXED + "param ab.p[1] = [[0.5], [0.5]]\n", "param-unknown-field",
     "'p' is not a parameter of part 1 of input 'ab' (categorical(n=3) over b); its parameters: probs"),
    (MIXED + "param ab.probs[1] = [[0.5], [0.5]]\n", "param-shape",
     "param ab.probs[1] has shape [2, 1], expected [2, 1, 3]"),
    (MIXED.replace("leaf bernoulli\n", "").replace("{b, d}", "{b, c, d}"), "missing-family",
     "input 'ab' has no leaf family for a: give one with `leaf FAMILY {a}`, name one after the input's k, "
     "or set a default with `leaf`"),
    (MIXED.replace("leaf bernoulli\n", "leaf bernoulli\nleaf normal {b}\n"), "family-conflict",
     "variable b is categorical(n=3) in `leaf categorical(n=3) {..}` on line 5 but normal in "
     "`leaf normal {..}` on line 4"),
    (MIXED.replace("{b, d}", "{b, 7}"), "var-out-of-range",
     "variable 7 in the scope of `leaf categorical(n=3) {..}` on line 4 is out of range: the circuit "
     "has 4 variables (0..3)"),
    (MIXED.replace("{b, d}", "{}"), "empty-scope", "`leaf categorical(n=3) {..}` on line 4 has an empty scope"),
    (MIXED.replace("categorical(n=3) {", "categorical {"), "bad-family-args",
     "categorical needs n, e.g. categorical(n=4) (in `leaf categorical {..}` on line 4)"),
    (MIXED.replace("input cd {c, d} k=2", "input cd {c, d} k=2 bernoulli"), "family-conflict",
     "variable d is bernoulli in input 'cd' but categorical(n=3) in `leaf categorical(n=3) {..}` on line 4; "
     "name no family on input 'cd' (its variables then take theirs)"),
])
def test_mixed_inputs_get_precise_diagnostics(text, kind, message):
    _, found = check_source(text)
    errors = [(d.kind, d.message) for d in found if d.severity == "error"]
    assert errors == [(kind, message)]


def test_two_default_leaf_statements_are_still_a_duplicate():
    _, found = check_source(MIXED.replace("leaf bernoulli\n", "leaf bernoulli\nleaf normal\n"))
    assert [d.kind for d in found] == ["duplicate-statement"]


# ---------------------------------------------------------------------------- the plan

def test_a_mixed_input_adds_no_layer_and_no_weights():
    """The same circuit with two one-family inputs joined by sums (the workaround) has a K x K x K
    weight layer more; the mixed input is one arena row per region, like any input."""
    model = pcc.compile(MIXED)
    assert model.plan.depth == 1 and len(model.sum_logits) == 1
    assert [len(b.regions) for b in model.plan.mixed_leaves] == [2]
    assert [g.out_start for g in model.plan.leaf_groups] == [None, None]


# ---------------------------------------------------------------------------- exactness

@pytest.mark.parametrize("seed", range(6))
def test_mixed_discrete_circuits_sum_to_one_and_marginals_are_brute_force_sums(seed):
    c = mixed_circuit(10 * seed)
    model = compiled(c, seed=seed)
    states = all_states(c, families_of(c))
    assert abs(torch.logsumexp(model(states), 0).item()) < 1e-10
    assert_marginals_are_brute_force_sums(c, model, seed)


@pytest.mark.parametrize("seed", range(4))
def test_mixed_circuits_equal_the_naive_evaluator_with_gradients(seed):
    c = mixed_circuit(100 + 10 * seed, families=("bernoulli", "normal", "categorical"), num_vars=5,
                      root_k=1 + seed % 2)
    fast, naive = compiled(c, seed=seed), compiled(c, "naive", seed=seed)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 2, (6, c.num_vars), generator=gen).double()
    x[torch.rand(x.shape, generator=gen) < 0.25] = math.nan
    assert_same_values_and_gradients(fast, naive, x)


def test_em_on_a_mixed_mixture_is_the_hand_computed_m_step():
    """Two components, each bernoulli(a) * categorical(b): one EM step with pseudocount 0 sets
    p_k(a=1) and probs_k(b) to the posterior-weighted frequencies and the weights to the mean
    posteriors."""
    text = """pc 1
vars a b
leaf bernoulli
leaf categorical(n=3) {b}
input ab {a, b} k=2
sum top k=1 = ab
root top
param ab.p[0] = [[0.9], [0.2]]
param ab.probs[1] = [[[0.5, 0.3, 0.2]], [[0.1, 0.1, 0.8]]]
param top.weights = [[0.4, 0.6]]
"""
    model = pcc.compile(text, dtype=torch.float64)
    x = torch.tensor([[1, 0], [0, 2], [1, 2], [0, 1], [1, 1]], dtype=torch.float64)
    pa, w = torch.tensor([0.9, 0.2], dtype=torch.float64), torch.tensor([0.4, 0.6], dtype=torch.float64)
    pb = torch.tensor([[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]], dtype=torch.float64)
    joint = w * torch.where(x[:, :1] == 1, pa, 1 - pa) * pb[:, x[:, 1].long()].t()  # [N, 2]
    post = joint / joint.sum(1, keepdim=True)
    pcc.EM(model, step_size=1.0, pseudocount=0.0, min_prob=1e-12).step(x)
    params = {(p.region, p.field, p.index): torch.tensor(p.values, dtype=torch.float64).view(p.shape)
              for p in model.ir_params()}
    counts = torch.stack([post[x[:, 1] == s].sum(0) for s in range(3)], 1)  # [2, 3]
    assert torch.allclose(params[("ab", "p", 0)].view(2), (post * x[:, :1]).sum(0) / post.sum(0), atol=1e-9)
    assert torch.allclose(params[("ab", "probs", 1)].view(2, 3), counts / post.sum(0).unsqueeze(1), atol=1e-9)
    assert torch.allclose(params[("top", "weights", 0)].view(2), post.mean(0), atol=1e-9)


@pytest.mark.parametrize("seed", range(3))
def test_full_batch_em_on_mixed_circuits_never_lowers_the_likelihood(seed):
    c = mixed_circuit(200 + 10 * seed, num_vars=5)
    model = compiled(c, seed=seed)
    gen = torch.Generator().manual_seed(seed)
    sizes = support_sizes(c)
    x = torch.stack([torch.randint(0, s, (300,), generator=gen) for s in sizes], 1).double()
    em = pcc.EM(model, step_size=1.0, pseudocount=0.0, min_prob=1e-12)
    assert_climbs(model, x, lambda: em.step(x), 5)


@pytest.mark.parametrize("seed", range(3))
def test_samples_of_mixed_circuits_match_the_joint(seed):
    c = mixed_circuit(300 + 10 * seed)
    model = compiled(c, seed=seed)
    probs = model(all_states(c, families_of(c))).exp()
    x = sample(model, 100_000, generator=torch.Generator().manual_seed(seed))
    assert chi_square_p(x, probs, support_sizes(c)) > 1e-3


@pytest.mark.parametrize("seed", range(3))
def test_mpe_of_mixed_circuits_is_bounded_by_brute_force(seed):
    c = mixed_circuit(400 + 10 * seed)
    model = compiled(c, seed=seed)
    states = all_states(c, families_of(c))
    evidence = random_evidence(states, 10, seed)
    found, log_prob = mpe(model, evidence)
    assert torch.allclose(log_prob, model(found), atol=1e-12)
    assert (log_prob <= brute_force_max(model(states), states, evidence) + 1e-9).all()
    root_max = model.upward(evidence, "max")[c.region(c.root).k][model.plan.region_row[c.root][1], :, 0]
    assert (log_prob >= root_max - 1e-9).all()


# ---------------------------------------------------------------------------- params per part

def test_params_of_the_parts_round_trip_through_text_and_checkpoints(tmp_path):
    c = mixed_circuit(500, families=("bernoulli", "normal", "categorical"), num_vars=5)
    model = compiled(c, seed=3)
    with_params = parse(to_text(Circuit(c.vars, c.regions, c.root, c.leaf, model.ir_params(),
                                        leaf_scopes=c.leaf_scopes)))
    again = compiled(with_params, seed=9)
    again.load_ir_params(with_params.params)
    x = torch.randint(0, 2, (8, c.num_vars)).double()
    assert torch.allclose(model(x), again(x), atol=1e-9)
    mixed = next(r for r in c.inputs if c.is_mixed(r))
    assert {p.index for p in with_params.params if p.region == mixed.name} == set(range(len(c.input_parts(mixed))))
    expected = model(x)
    checkpoint.save(model.float(), tmp_path / "m.pt")
    assert torch.allclose(pcc.load(tmp_path / "m.pt").double()(x), expected, atol=1e-4)


def test_a_mixed_circuit_exports_to_a_node_level_format_with_the_same_distribution():
    model = pcc.compile(MIXED, dtype=torch.float64)
    circuit = Circuit(*(getattr(model.circuit, f) for f in ("vars", "regions", "root", "leaf")),
                      params=model.ir_params(), leaf_scopes=model.circuit.leaf_scopes)
    from interchange_helpers import import_text
    again = import_text(export_text(circuit, "spflow")[""], "spflow")
    states = all_states(model.circuit, families_of(model.circuit))
    assert torch.allclose(model(states), compiled(again)(states), atol=1e-9)
