"""Element-wise (Hadamard) product layers: the torch kernels against a float64 brute force
(forward under both semirings, child gradients and EM flows), with -inf entries, whole -inf rows,
repeated child rows and row-0 padding; and HCLT-shaped circuits end to end (normalization,
marginals against brute force, the naive backend, sampling, MPE)."""
import itertools
import math

import pytest
import torch

import pcc
from pcc.ir import Circuit, Input, Sum, default_var_names
from pcc_kernels import reference

pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")


def random_case(seed, n=5, batch=7, k=4, k_out=3, arity=3, rows_in_arena=9, neg_inf=0.2):
    gen = torch.Generator().manual_seed(seed)
    source = torch.randn(rows_in_arena, batch, k, generator=gen, dtype=torch.float64)
    if neg_inf:
        source[torch.rand(source.shape, generator=gen) < neg_inf] = -math.inf
        source[3] = -math.inf  # a whole -inf row
    source[0] = 0.0  # the padding row, log 1
    rows = torch.randint(1, rows_in_arena, (n, arity), generator=gen)
    rows[0, -1] = 0  # padding
    rows[1] = rows[2]  # repeated children across partitions
    rows[2, 0] = 3
    log_w = torch.log_softmax(torch.randn(n, k_out, k, generator=gen, dtype=torch.float64), -1)
    log_w[0, 0, 1] = -math.inf  # a zero weight
    return source, rows, log_w


def brute_terms(source, rows, log_w):
    """z[n,b,o,k] = log W[n,o,k] + sum_a source[rows[n,a],b,k]."""
    x = source[rows].sum(1)  # [N, B, K]
    return x.unsqueeze(2) + log_w.unsqueeze(1)


@pytest.mark.parametrize("semiring", ["sum", "max"])
@pytest.mark.parametrize("seed", range(4))
def test_forward_equals_brute_force(seed, semiring):
    source, rows, log_w = random_case(seed)
    out = torch.empty(rows.shape[0], source.shape[1], log_w.shape[1], dtype=torch.float64)
    reference.hadamard_forward(source, rows, log_w, out, semiring)
    z = brute_terms(source, rows, log_w)
    expected = z.amax(-1) if semiring == "max" else torch.logsumexp(z, -1)
    assert not out.isnan().any()
    assert torch.equal(torch.isinf(out), torch.isinf(expected))
    finite = torch.isfinite(expected)
    assert torch.allclose(out[finite], expected[finite], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_backward_gives_child_gradients_and_em_flows(seed):
    """flows = W * dL/dW and dL/dsource (repeats accumulated) from the posterior of each term."""
    source, rows, log_w = random_case(seed)
    n, batch, k_out = rows.shape[0], source.shape[1], log_w.shape[1]
    out = torch.empty(n, batch, k_out, dtype=torch.float64)
    reference.hadamard_forward(source, rows, log_w, out)
    grad_out = torch.randn(n, batch, k_out, dtype=torch.float64)
    grad_source = torch.zeros_like(source)
    flows = reference.hadamard_backward(source, rows, log_w, out, grad_out, grad_source)

    z = brute_terms(source, rows, log_w)
    total = torch.logsumexp(z, -1, keepdim=True)
    live = torch.isfinite(total)
    post = torch.where(live, torch.exp(z - torch.where(live, total, 0.0)), 0.0)
    contrib = post * grad_out.unsqueeze(-1)  # [N, B, Ko, K]
    assert torch.allclose(flows, contrib.sum(1), atol=1e-12)
    expected = torch.zeros_like(source)
    for a in range(rows.shape[1]):
        expected.index_add_(0, rows[:, a], contrib.sum(2))
    assert torch.allclose(grad_source[1:], expected[1:], atol=1e-12)  # row 0 is padding


def test_backward_matches_autograd_of_the_formula():
    source, rows, log_w = random_case(9, neg_inf=0.0)
    source = source.clone().requires_grad_()
    log_w = log_w.clone().requires_grad_()
    with torch.no_grad():
        out = torch.empty(rows.shape[0], source.shape[1], log_w.shape[1], dtype=torch.float64)
        reference.hadamard_forward(source, rows, log_w, out)
    grad_out = torch.randn_like(out)
    torch.logsumexp(brute_terms(source, rows, log_w), -1).backward(grad_out)
    grad_source = torch.zeros_like(source)
    flows = reference.hadamard_backward(source.detach(), rows, log_w.detach(), out, grad_out,
                                        grad_source)
    finite = torch.isfinite(log_w)
    assert torch.allclose(flows[finite], (log_w.grad)[finite], atol=1e-12)
    assert torch.allclose(grad_source[1:], source.grad[1:], atol=1e-12)


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
