"""The element-wise (Hadamard) product layer kernels (under the interpreter) equal a float64 brute
force and the torch backend (`pcc_kernels.reference`), forward in both semirings and backward: A = 1..8 children per member (padded slots read row
0, which holds log 1 = 0), repeated rows (the same child twice in a member, shared children across
members), -inf entries and whole -inf rows, odd batches, K_out = 1 (the FMA reduction path) and
K_out >= 16 (tl.dot), and every tile configuration of the GPU autotuner.
"""
import math

import pytest
import torch

from pcc_kernels import reference, triton_einsum, triton_flows, triton_hadamard, triton_ops
from test_kernels import arena, assert_close, log_weights

pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")


def brute_terms(source, rows, log_w):
    """z[n,b,o,k] = log W[n,o,k] + sum_a source[rows[n,a],b,k] in float64."""
    x = source.double()[rows].sum(1)  # [N, B, K]
    return x.unsqueeze(2) + log_w.double().unsqueeze(1)


def brute_forward(source, rows, log_w, semiring):
    z = brute_terms(source, rows, log_w)
    return z.amax(-1) if semiring == "max" else torch.logsumexp(z, -1)


def brute_backward(source, rows, log_w, grad_out):
    """(grad_source, flows) from post[n,b,o,k] = exp(z - out); dx added to every slot's row."""
    z = brute_terms(source, rows, log_w)
    out = torch.logsumexp(z, -1, keepdim=True)
    live = torch.isfinite(out)
    post = torch.where(live, torch.exp(z - torch.where(live, out, torch.zeros_like(out))), 0.0)
    contrib = post * grad_out.double().unsqueeze(-1)  # [N, B, Ko, K]
    dx = contrib.sum(2)
    grad = torch.zeros(source.shape, dtype=torch.float64)
    for a in range(rows.shape[1]):
        grad.index_add_(0, rows[:, a], dx)
    return grad, contrib.sum(1)


def hadamard_case(seed, n, slots, batch, k, k_out, dtype):
    """Arena with row 0 = 0 (log 1, the padding row), row 1 all -inf, row 2 -inf at sample 0;
    member 0 reads the -inf row, member 1 (if any) reads one row twice and pads its last slot
    with row 0."""
    gen = torch.Generator().manual_seed(seed)
    source = arena(gen, n + 6, batch, k, dtype)
    source[0] = 0.0
    rows = torch.randint(2, n + 6, (n, slots), generator=gen)
    rows[0, 0] = 1
    if n > 1 and slots > 1:
        rows[1, 0] = rows[1, -1]
        rows[1, -1] = 0
    if n > 2:
        rows[2] = rows[n - 1]
    return source, rows, log_weights(gen, (n, k_out, k), dtype)


# (N, A, B, K, K_out): A in 1..8, K from 2, K_out 1 (reduction path) to 20 (tl.dot).
SHAPES = [(3, 1, 7, 4, 5), (3, 2, 33, 10, 1), (2, 3, 7, 16, 20), (2, 8, 5, 40, 3),
          (3, 4, 1, 2, 2), (2, 5, 33, 12, 16)]


def shape_id(shape):
    n, slots, batch, k, k_out = shape
    return f"N{n} A{slots} B{batch} K{k}->{k_out}"


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("semiring", ["sum", "max"])
@pytest.mark.parametrize("shape", SHAPES, ids=shape_id)
def test_hadamard_forward(shape, semiring, dtype):
    n, slots, batch, k, k_out = shape
    source, rows, log_w = hadamard_case(sum(shape), n, slots, batch, k, k_out, dtype)
    out = torch.full((n, batch, k_out), math.nan, dtype=dtype)
    triton_ops.hadamard_forward(source, rows, log_w, out, semiring)
    assert_close(out, brute_forward(source, rows, log_w, semiring), dtype, "vs brute force")
    ref = torch.empty_like(out)
    reference.hadamard_forward(source, rows, log_w, ref, semiring)
    assert_close(out, ref, dtype, "vs reference")
    assert torch.isneginf(out[0]).all(), "a member with an all -inf child is -inf"


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("shape", SHAPES, ids=shape_id)
def test_hadamard_backward(shape, dtype):
    n, slots, batch, k, k_out = shape
    source, rows, log_w = hadamard_case(sum(shape) + 1, n, slots, batch, k, k_out, dtype)
    out = brute_forward(source, rows, log_w, "sum").to(dtype)
    grad_out = torch.randn(out.shape, generator=torch.Generator().manual_seed(3), dtype=dtype)
    grad = torch.zeros_like(source)
    flows = triton_ops.hadamard_backward(source, rows, log_w, out, grad_out, grad)
    brute_grad, brute_flows = brute_backward(source, rows, log_w, grad_out)
    assert flows.shape == log_w.shape and flows.dtype == dtype
    assert_close(flows, brute_flows, dtype, "flows")
    assert_close(grad, brute_grad, dtype, "source gradient")
    ref_grad = torch.zeros_like(source)
    ref_flows = reference.hadamard_backward(source, rows, log_w, out, grad_out, ref_grad)
    assert_close(flows, ref_flows, dtype, "flows vs reference")
    assert_close(grad, ref_grad, dtype, "gradient vs reference")
    assert (grad[1] == 0).all(), "the all -inf row gets zero gradient"
    assert (flows[0] == 0).all(), "a -inf member has no flow"


def run_tiled(source, rows, log_w, config, grad_config, flow_config, split):
    n, k_out = log_w.shape[:2]
    out = torch.full((n, source.shape[1], k_out), math.nan, dtype=log_w.dtype)
    triton_ops.run(triton_hadamard.hadamard_forward_steps(source, rows, log_w, out, "sum", "ieee",
                                                          config))
    grad = torch.zeros_like(source)
    steps, flows = triton_hadamard.hadamard_backward_steps(
        source, rows, log_w, out, torch.ones_like(out), grad, "ieee", split, grad_config,
        flow_config)
    triton_ops.run(steps)
    return out, grad, flows


@pytest.mark.parametrize("index", range(len(triton_hadamard.DOT_CONFIGS)))
def test_hadamard_tuned_tiles(index):
    """Each forward tile configuration of the autotuner (several K chunks, so the running
    maximum rescales the accumulator; output and sample blocks), with gradient and flow tiles
    and a split in 2, is exact."""
    config = triton_hadamard.DOT_CONFIGS[index]
    grad_config = triton_einsum.DOT_CONFIGS[index % len(triton_einsum.DOT_CONFIGS)]
    flow_config = triton_flows.DOT_CONFIGS[index % len(triton_flows.DOT_CONFIGS)]
    source, rows, log_w = hadamard_case(index, 2, 3, 70, 40, 20, torch.float64)
    source[3, :, 30:] += 40.0  # the maximum of a row sits in a later K chunk
    out, grad, flows = run_tiled(source, rows, log_w, config, grad_config, flow_config, 2)
    assert_close(out, brute_forward(source, rows, log_w, "sum"), torch.float64, "forward")
    brute_grad, brute_flows = brute_backward(source, rows, log_w, torch.ones_like(out))
    assert_close(flows, brute_flows, torch.float64, "flows")
    assert_close(grad, brute_grad, torch.float64, "gradient")


def test_hadamard_empty_batch():
    source, rows, log_w = hadamard_case(0, 2, 2, 5, 4, 3, torch.float64)
    out = torch.empty(2, 0, 3, dtype=torch.float64)
    triton_ops.hadamard_forward(source[:, :0], rows, log_w, out)
    flows = triton_ops.hadamard_backward(source[:, :0], rows, log_w, out, out,
                                         torch.zeros_like(source[:, :0]))
    assert flows.shape == log_w.shape and not flows.any()
