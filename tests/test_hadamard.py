"""Element-wise (Hadamard) product layers: the torch layer (`reference.HadamardLayer`) against a
float64 brute force in log space (forward under both semirings, children's flows and EM flows),
with zero entries, whole zero rows, repeated child rows and row-0 padding, and the brute force's
backward against autograd of its formula; and HCLT-shaped circuits end to end (normalization,
marginals against brute force, the naive backend, sampling, MPE)."""
import itertools
import math

import pytest
import torch

import pcc
from layer_cases import (Bound, assert_close, assert_flows, brute_hadamard,
                         brute_hadamard_backward, grad_out_for, hadamard_case, hadamard_terms,
                         logs)
from pcc.ir import Circuit, Input, Sum, default_var_names
from pcc_kernels import reference

pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")

# (N, A, B, K, K_out)
SHAPES = [(5, 3, 7, 4, 3), (4, 1, 5, 6, 1), (3, 6, 9, 2, 5)]


@pytest.mark.parametrize("semiring", ["sum", "max"])
@pytest.mark.parametrize("seed, shape", list(enumerate(SHAPES)))
def test_layer_equals_brute_force(seed, shape, semiring):
    n, slots, batch, k, k_out = shape
    source, children, w = hadamard_case(seed, n, slots, batch, k, k_out, torch.float64)
    bound = Bound("hadamard", reference, (source, children.rows), n, batch, k_out, w)
    bound.layer.forward(semiring)
    assert_close(logs(bound.out), brute_hadamard(source, children.rows, w, semiring), 1e-12,
                 semiring)
    assert (bound.out.values.amax(-1) == 1).logical_or(bound.out.values.amax(-1) == 0).all()


@pytest.mark.parametrize("seed, shape", list(enumerate(SHAPES)))
def test_backward_gives_children_flows_and_em_flows(seed, shape):
    """flows = W * dL/dW, and dL/dlog x added into every child's row (repeats accumulated,
    padding row 0 untouched) from the posterior of each term."""
    n, slots, batch, k, k_out = shape
    source, children, w = hadamard_case(seed, n, slots, batch, k, k_out, torch.float64)
    exact = brute_hadamard(source, children.rows, w, "sum")
    g = grad_out_for(torch.Generator().manual_seed(seed), exact, torch.float64)
    bound = Bound("hadamard", reference, (source, children.rows), n, batch, k_out, w, g, 0.5)
    bound.layer.forward()
    bound.layer.backward()
    [grad], flows = brute_hadamard_backward(source, children.rows, w, g)
    assert_flows(bound.flows, flows, 1e-12, "weight flows")
    assert_flows(bound.grads[0] - 0.5, grad, 1e-12, "children's flows")


def test_brute_force_backward_is_autograd_of_the_formula():
    """The brute force's flows are the gradients of sum(g * log y) with respect to log W and
    the children's log-values (each child row once per slot that reads it)."""
    source, children, w = hadamard_case(9, 5, 3, 7, 4, 3, torch.float64)
    rows = children.rows
    log_w = torch.log(w).requires_grad_()
    log_x = logs(source).requires_grad_()
    g = torch.rand(5, 7, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    z = log_x[rows].sum(1).unsqueeze(2) + log_w.unsqueeze(1)
    assert torch.equal(z.detach(), hadamard_terms(source, rows, w))
    dead = torch.isneginf(z).all(-1)  # zero outputs (logsumexp's backward is NaN there)
    y = torch.logsumexp(torch.where(dead.unsqueeze(-1), 0.0, z), -1)
    g = g.masked_fill(dead, 0.0)
    (g * y).sum().backward()
    [grad], flows = brute_hadamard_backward(source, rows, w, g)
    finite = torch.isfinite(log_w)
    assert torch.allclose(flows[finite], log_w.grad[finite], atol=1e-12)
    live = torch.isfinite(log_x)
    assert torch.allclose(grad[1:][live[1:]], log_x.grad[1:][live[1:]], atol=1e-12)


# ----------------------------------------------------------------------------- whole circuits
def hclt_chain(num_vars=4, k=3, root_k=1):
    """A hidden Chow-Liu tree over a star plus a chain: x0 is the root; x1, x2 its children; x3 a
    child of x1. Unit i of each tree node is the element-wise product of the node's leaf and its
    children's edge sums."""
    children = {0: [1, 2], 1: [3], 2: [], 3: []}
    regions = [Input(f"x{v}", (v,), k) for v in range(num_vars)]
    for v in (3, 2, 1):
        parts = (f"x{v}", *(f"e{c}" for c in children[v]))
        regions.append(Sum(f"e{v}", k, (parts,), elementwise=(0,)))
    regions.append(Sum("top", root_k, (("x0", "e1", "e2"),), elementwise=(0,)))
    from pcc.ir import Family
    return Circuit(default_var_names(num_vars), tuple(regions), "top", Family("bernoulli"))


def all_states(n):
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=n)), dtype=torch.float64)


def test_hclt_is_normalized_and_equals_the_naive_evaluator():
    model = pcc.compile(hclt_chain(), dtype=torch.float64, seed=3)
    naive = pcc.compile(hclt_chain(), dtype=torch.float64, backend="naive")
    naive.load_state_dict(model.state_dict())
    x = all_states(4)
    logp = model(x)
    assert math.isclose(float(torch.logsumexp(logp.detach(), 0)), 0.0, abs_tol=1e-12)
    assert torch.allclose(logp, naive(x), atol=1e-12)


def test_hclt_marginals_equal_brute_force():
    model = pcc.compile(hclt_chain(), dtype=torch.float64, seed=5).requires_grad_(False)
    joint = model(all_states(4))
    for observed in itertools.product([0.0, 1.0, math.nan], repeat=4):
        x = torch.tensor([observed], dtype=torch.float64)
        keep = torch.ones(16, dtype=torch.bool)
        for v, value in enumerate(observed):
            if not math.isnan(value):
                keep &= all_states(4)[:, v] == value
        assert math.isclose(float(model(x)), float(torch.logsumexp(joint[keep], 0)),
                            abs_tol=1e-10)


def test_hclt_hidden_states_are_a_latent_tree():
    """With one-hot edge weights (z_child = z_parent) and root weights, the HCLT is a mixture
    over z0 of products of the leaves: the element-wise product ties every unit i together."""
    model = pcc.compile(hclt_chain(k=2), dtype=torch.float64, seed=1)
    with torch.no_grad():
        for w in model.sum_logits:
            if w.shape[1] == 2:
                w.copy_(torch.log(torch.eye(2, dtype=torch.float64).clamp_min(1e-300)).expand_as(w))
    params = {(prm.region, prm.field): torch.tensor(prm.values, dtype=torch.float64)
              for prm in model.ir_params()}
    p = {f"x{v}": params[(f"x{v}", "p")] for v in range(4)}  # [K]: p(x_v = 1 | z_v = i)
    root_w = params[("top", "weights")]
    x = all_states(4)
    expected = sum(root_w[i] * math.prod(
        torch.where(x[:, v] == 1, p[f"x{v}"][i], 1 - p[f"x{v}"][i]) for v in range(4))
        for i in range(2))
    assert torch.allclose(model(x), torch.log(expected), atol=1e-10)


def test_hclt_conditional_samples_match_the_conditional():
    """The downward pass picks one hidden state for all children of an element-wise product
    from the product of their values (here evidence below it decides the state)."""
    from query_helpers import chi_square_p
    from pcc.queries import sample
    model = pcc.compile(hclt_chain(k=3), dtype=torch.float64, seed=11).requires_grad_(False)
    states = all_states(4)
    joint = model(states).exp()
    evidence = torch.tensor([[math.nan, math.nan, 1.0, 0.0], [1.0, math.nan, math.nan, 1.0]],
                            dtype=torch.float64)
    n = 100_000
    x = sample(model, 2 * n, evidence, generator=torch.Generator().manual_seed(0))
    for row in range(2):
        observed = ~torch.isnan(evidence[row])
        agree = ((states == evidence[row]) | ~observed).all(1)
        posterior = torch.where(agree, joint, torch.zeros_like(joint))
        assert chi_square_p(x[row * n:(row + 1) * n], posterior / posterior.sum(), [2] * 4) > 1e-3


def test_hclt_mpe_is_a_consistent_state_between_max_product_and_the_brute_force_max():
    model = pcc.compile(hclt_chain(k=3), dtype=torch.float64, seed=4).requires_grad_(False)
    states = all_states(4)
    joint = model(states)
    evidence = states.clone()
    evidence[torch.rand(evidence.shape, generator=torch.Generator().manual_seed(1)) < 0.6] = math.nan
    found, log_prob = model.mpe(evidence)
    agree = (states.unsqueeze(0) == evidence.unsqueeze(1)) | torch.isnan(evidence).unsqueeze(1)
    best = torch.where(agree.all(-1), joint.unsqueeze(0), -math.inf).amax(1)
    max_product = model.upward(evidence, "max")[1][model.plan.region_row["top"][1], :, 0]
    observed = ~torch.isnan(evidence)
    assert (found[observed] == evidence[observed]).all()
    assert torch.allclose(log_prob, model(found), atol=1e-12)
    assert (log_prob <= best + 1e-12).all() and (log_prob >= max_product - 1e-12).all()
