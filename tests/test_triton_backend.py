"""backend='triton' (kernels under the Triton interpreter on CPU) computes what backend='torch'
does: log-likelihoods, gradients, max-product values and EM updates on random circuits; without
CUDA and without the interpreter it raises BackendError, and torch.compile works around it."""
import math
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from pcc.compiler import plan
from pcc.em import EM
from pcc.runtime.module import CompiledCircuit
from random_circuits import random_circuit

pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")

ALL_FAMILIES = ("bernoulli", "categorical", "binomial", "normal")


def pair(circuit, seed, dtype=torch.float64):
    """The same circuit and parameters on the torch and the triton backend."""
    return [CompiledCircuit(circuit, plan(circuit), backend=b, seed=seed).to(dtype)
            for b in ("torch", "triton")]


def batch(circuit, seed, size=7, missing=0.3):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 2, (size, circuit.num_vars), generator=gen).double()
    x[torch.rand(x.shape, generator=gen) < missing] = math.nan
    return x


@pytest.mark.parametrize("seed", range(6))
def test_forward_and_gradients_match_torch(seed):
    c = random_circuit(500 + seed, num_vars=5, families=ALL_FAMILIES, root_k=1 + seed % 2)
    x = batch(c, seed)
    results = []
    for model in pair(c, seed):
        xi = x.clone().requires_grad_()
        out = model(xi)
        out.sum().backward()
        results.append([out.detach(), xi.grad] + [p.grad for p in model.parameters()])
    (out_torch, *grads_torch), (out_triton, *grads_triton) = results
    assert torch.isfinite(out_torch).all()
    assert torch.allclose(out_triton, out_torch, atol=1e-10, rtol=0)
    for a, b in zip(grads_triton, grads_torch):
        assert (a is None) == (b is None)
        if a is not None:
            assert not torch.isnan(a).any()
            assert torch.allclose(torch.nan_to_num(a), torch.nan_to_num(b), atol=1e-9, rtol=0)


@pytest.mark.parametrize("seed", range(3))
def test_max_product_values_match_torch(seed):
    c = random_circuit(600 + seed, num_vars=5, families=("bernoulli", "categorical"))
    x = batch(c, seed)
    arenas = [model.upward(x, semiring="max") for model in pair(c, seed)]
    assert arenas[0].keys() == arenas[1].keys()
    for k in arenas[0]:
        assert torch.allclose(arenas[1][k], arenas[0][k], atol=1e-10, rtol=0)


def test_impossible_evidence_gives_minus_inf_and_finite_gradients():
    """Bernoulli leaves with p in {0, 1} (logits +-inf): x0 = 1 surely, so rows with x0 = 0 are
    impossible (-inf); other variables get some deterministic units, so -inf enters the einsums
    unit by unit. Backpropagating the possible rows gives no NaN."""
    c = random_circuit(700, num_vars=4, families=("bernoulli",))
    models = pair(c, 0)
    with torch.no_grad():
        for model in models:
            for group, params in zip(model.plan.leaf_groups, model.leaf_params):
                logit = params.logit
                var = torch.from_numpy(group.var_index).unsqueeze(1).expand_as(logit)
                logit.masked_fill_(logit > 1.5, -math.inf)
                logit.masked_fill_(var == 0, math.inf)
    x = batch(c, 1, size=16, missing=0.0)
    outs = []
    for model in models:
        model.zero_grad()
        out = model(x)
        out[torch.isfinite(out)].sum().backward()
        outs.append(out.detach())
        assert all(not torch.isnan(p.grad).any() for p in model.parameters() if p.grad is not None)
    fin = torch.isfinite(outs[0])
    assert fin.any() and not fin.all()
    assert torch.equal(torch.isfinite(outs[1]), fin) and not torch.isnan(outs[1]).any()
    assert torch.allclose(outs[1][fin], outs[0][fin], atol=1e-9)
    for a, b in zip(models[1].parameters(), models[0].parameters()):
        assert (a.grad is None) == (b.grad is None)
        assert a.grad is None or torch.allclose(a.grad, b.grad, atol=1e-9)


@pytest.mark.parametrize("seed", range(2))
def test_em_step_matches_torch(seed):
    """One online EM step in float32 gives the same parameters on both backends."""
    c = random_circuit(800 + seed, num_vars=5, families=("bernoulli", "normal"))
    models = pair(c, seed, torch.float32)
    x = batch(c, seed, size=33).float()
    lls = [EM(model, step_size=0.5).step(x) for model in models]
    assert math.isclose(lls[0], lls[1], rel_tol=1e-5, abs_tol=1e-5)
    for (name, a), (_, b) in zip(models[1].named_parameters(), models[0].named_parameters()):
        assert torch.allclose(a, b, atol=2e-5, rtol=1e-5), name


@pytest.mark.parametrize("trees", [1, 2])
def test_hclt_element_wise_layers_match_torch(trees):
    """A hidden Chow-Liu tree (element-wise product layers, a mixture of trees at the root):
    log-likelihoods, gradients and an EM step equal the torch backend's."""
    from pcc.structures import hidden_chow_liu_tree
    gen = torch.Generator().manual_seed(trees)
    data = (torch.rand(200, 6, generator=gen) < 0.4).long().numpy()
    c = hidden_chow_liu_tree(data, k=3, trees=trees)
    x = batch(c, trees, size=9)
    results = []
    for model in pair(c, trees):
        out = model(x)
        out.sum().backward()
        results.append([out.detach()] + [p.grad for p in model.parameters()])
    for a, b in zip(*results):
        assert (a is None) == (b is None)
        assert a is None or torch.allclose(a, b, atol=1e-9, rtol=0)
    models = pair(c, trees, torch.float32)
    lls = [EM(model, step_size=0.5).step(x.float()) for model in models]
    assert math.isclose(lls[0], lls[1], rel_tol=1e-5)
    for a, b in zip(models[1].parameters(), models[0].parameters()):
        assert torch.allclose(a, b, atol=2e-5, rtol=1e-5)


def test_hclt_with_a_joint_leaf_matches_torch():
    """An HCLT whose correlated continuous columns share an mvnormal leaf (the leaf stage is
    torch's on every backend; the layers above it are the kernels): log-likelihoods with
    missing values, gradients and an EM step equal the torch backend's."""
    from pcc.structures import hidden_chow_liu_tree
    gen = torch.Generator().manual_seed(3)
    f = torch.randn(200, 1, generator=gen, dtype=torch.float64)
    data = torch.cat([f + 0.1 * torch.randn(200, 3, generator=gen, dtype=torch.float64),
                      torch.randn(200, 2, generator=gen, dtype=torch.float64)], 1)
    c = hidden_chow_liu_tree(data.numpy(), k=3, trees=2)
    assert any(r.family is None and len(r.scope) == 3 for r in c.inputs)
    x = data[:9].clone()
    x[torch.rand(x.shape, generator=gen) < 0.3] = math.nan
    results = []
    for model in pair(c, 3):
        out = model(x)
        out.sum().backward()
        results.append([out.detach()] + [p.grad for p in model.parameters()])
    for a, b in zip(*results):
        assert torch.allclose(a, b, atol=1e-9, rtol=0)
    models = pair(c, 3, torch.float32)
    lls = [EM(model, step_size=0.5).step(x.float()) for model in models]
    assert math.isclose(lls[0], lls[1], rel_tol=1e-5)
    for a, b in zip(models[1].parameters(), models[0].parameters()):
        assert torch.allclose(a, b, atol=2e-5, rtol=1e-5)


def test_torch_compile_graph_breaks_around_kernels():
    """The kernel entry points are excluded from tracing, so a compiled model runs them eagerly
    (tracing the interpreter would fail with KeyError(torch.uint64))."""
    c = random_circuit(900, num_vars=4)
    model = CompiledCircuit(c, plan(c), backend="triton")
    x = batch(c, 0, size=5, missing=0.0).float()
    compiled = torch.compile(model, backend="eager")
    out = compiled(x)
    assert torch.allclose(out, model(x))
    out.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_triton_without_cuda_or_interpreter_is_a_backend_error():
    script = textwrap.dedent("""
        import torch
        import pcc
        from pcc.compiler import plan
        from pcc.runtime.module import CompiledCircuit
        from random_circuits import random_circuit
        c = random_circuit(1)
        model = CompiledCircuit(c, plan(c), backend="triton")
        try:
            model(torch.zeros(2, c.num_vars))
        except pcc.BackendError as exc:
            print("BackendError:", exc)
    """)
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.pathsep.join([os.path.dirname(__file__), *sys.path])
    env["CUDA_VISIBLE_DEVICES"] = ""
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert "BackendError: backend='triton' needs a CUDA device, or TRITON_INTERPRET=1" \
        in done.stdout
    assert "active drivers" not in done.stdout + done.stderr
