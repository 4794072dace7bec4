"""Contraction precisions under the interpreter. The interpreter ignores `input_precision`, so the
kernels emulate the tensor cores there: operands rounded (tf32x3's high part, bf16) or truncated
(what a tf32 tensor core reads of an fp32 register) to their values in fp32, products exact. The
rounding helpers match bit-exact references, and the layer errors against float64 come out as
each precision predicts: tf32x3 as accurate as fp32 (the issue's 1e-5 relative target with room
to spare), tf32 and bf16 orders of magnitude coarser (so the emulation is really in effect).

Measured here (interpreter, triton 3.9; docs/kernels.md keeps the table): max error of float32
layers against float64, log-values absolute (= relative error of the probabilities), flows
relative to the largest:

                                          tf32x3   ieee     tf32     bf16
    einsum 40 x 40 -> 40, B = 17: log-values  9.0e-7   9.3e-7   9.0e-4   2.1e-3
      children's flows                        8.2e-8   1.5e-7   1.3e-4   5.5e-4
      weight flows                            2.6e-7   3.1e-7   3.9e-4   2.3e-3
    Hadamard K = 40 -> 20, A = 3: log-values  1.0e-6   6.5e-7   1.5e-3   4.6e-3
    PD 8x8 K = 10 circuit: log p, relative    1.0e-7   1.0e-7   3.1e-5   1.5e-5

(Contractions with at most 8 outputs or columns run as exact fp32 FMA reductions in every
precision; only the tensor-core paths differ.)
"""
import numpy as np
import pytest
import torch
import triton
import triton.language as tl

from layer_cases import (Bound, brute_einsum, brute_einsum_backward, brute_hadamard,
                         einsum_case, grad_out_for, hadamard_case, logs)
from pcc_kernels import triton_ops
from pcc_kernels.triton_common import round_bf16, round_tf32, truncate_tf32

pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")


@triton.jit
def _apply(x, out, n, HELPER: tl.constexpr, BLOCK: tl.constexpr):
    i = tl.arange(0, BLOCK)
    v = tl.load(x + i, mask=i < n)
    if HELPER == "round_tf32":
        v = round_tf32(v)
    elif HELPER == "truncate_tf32":
        v = truncate_tf32(v)
    else:
        v = round_bf16(v)
    tl.store(out + i, v, mask=i < n)


def apply(helper: str, x: torch.Tensor) -> torch.Tensor:
    out = torch.empty_like(x)
    _apply[(1,)](x, out, x.numel(), HELPER=helper, BLOCK=triton.next_power_of_2(x.numel()))
    return out


def samples() -> torch.Tensor:
    """fp32 values over many scales and signs, with exact ties of both roundings."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(900, generator=gen) * torch.exp(torch.randn(900, generator=gen) * 20)
    ties = torch.tensor([1 + 2.0 ** -11, 1 + 3 * 2.0 ** -11, -(1 + 2.0 ** -11),  # tf32 ties
                         1 + 2.0 ** -8, 1 + 3 * 2.0 ** -8, 0.0, 1e-30, 3.0e38])  # bf16 ties
    return torch.cat([x, ties]).float()


def test_tf32_rounding_and_truncation_are_bit_exact():
    x = samples()
    bits = x.numpy().view(np.uint32).astype(np.int64)
    sign, mag = bits & 0x80000000, bits & 0x7FFFFFFF
    nearest = sign | ((mag + 0x1000) & 0x7FFFE000)  # ties away from zero, on the magnitude
    expect = torch.from_numpy(nearest.astype(np.uint32).view(np.float32))
    assert torch.equal(apply("round_tf32", x), expect)
    truncated = torch.from_numpy((bits & 0xFFFFE000).astype(np.uint32).view(np.float32))
    assert torch.equal(apply("truncate_tf32", x), truncated)
    hi = apply("round_tf32", x)
    assert ((hi - x).abs() <= x.abs() * 2.0 ** -11).all()


def test_bf16_rounding_matches_torch():
    x = samples()
    assert torch.equal(apply("round_bf16", x), x.to(torch.bfloat16).float())


class precision:
    """Run the Triton layers in a precision, then restore the module's setting."""

    def __init__(self, name: str):
        self.name = name

    def __enter__(self):
        self.old = triton_ops.get_precision()
        triton_ops.set_precision(self.name)

    def __exit__(self, *exc):
        triton_ops.set_precision(self.old)


def log_error(actual, exact) -> float:
    """Max |log a - log e| over the nonzero entries; the zeros must agree."""
    actual = logs(actual)
    assert torch.equal(torch.isneginf(actual), torch.isneginf(exact))
    fin = torch.isfinite(exact)
    return (actual[fin] - exact[fin]).abs().max().item()


def flow_error(actual, exact) -> float:
    assert not torch.isnan(actual).any()
    return ((actual.double() - exact).abs().max() / exact.abs().max()).item()


def einsum_errors(name: str) -> tuple[float, float, float]:
    """(log-values, children's flows, weight flows) errors of a float32 einsum (40 x 40 -> 40)
    against float64."""
    sources, rows, w = einsum_case(5, (40, 40), 40, 2, 17, ("index", "index"), torch.float32,
                                   spread=0.0)
    exact = brute_einsum(sources, rows, w, "sum")
    g = grad_out_for(torch.Generator().manual_seed(1), exact, torch.float32)
    exact_grads, exact_flows = brute_einsum_backward(sources, rows, w, g)
    with precision(name):
        bound = Bound("einsum", triton_ops, (sources, rows), 2, 17, 40, w, g, base=0.0)
        bound.layer.forward()
        bound.layer.backward()
    return (log_error(bound.out, exact), max(flow_error(a, e) for a, e in
                                             zip(bound.grads, exact_grads)),
            flow_error(bound.flows, exact_flows))


@pytest.mark.parametrize("name, low, high", [("tf32x3", 0, 2e-6), ("ieee", 0, 2e-6),
                                             ("tf32", 1e-4, 5e-3), ("bf16", 5e-4, 2e-2)])
def test_einsum_error_per_precision(name, low, high):
    errors = einsum_errors(name)
    assert low <= errors[0] <= high, errors
    assert all(e <= high for e in errors[1:]), errors


@pytest.mark.parametrize("name, high", [("tf32x3", 2e-6), ("tf32", 5e-3), ("bf16", 2e-2)])
def test_hadamard_error_per_precision(name, high):
    source, children, w = hadamard_case(9, 2, 3, 33, 40, 20, torch.float32, spread=0.0)
    exact = brute_hadamard(source, children.rows, w, "sum")
    with precision(name):
        bound = Bound("hadamard", triton_ops, (source, children.rows), 2, 33, 20, w)
        bound.layer.forward()
    assert log_error(bound.out, exact) <= high


def test_default_precision_is_tf32x3_and_float64_is_exact():
    assert triton_ops.get_precision() == "tf32x3"
    assert triton_ops.kernel_precision(torch.float64) == "ieee"
    assert triton_ops.kernel_precision(torch.float32) == "tf32x3-emulated"
    sources, rows, w = einsum_case(5, (10, 10), 20, 2, 7, ("index", "block"), torch.float64)
    with precision("bf16"):
        bound = Bound("einsum", triton_ops, (sources, rows), 2, 7, 20, w)
        bound.layer.forward()
    assert log_error(bound.out, brute_einsum(sources, rows, w, "sum")) <= 1e-12


@pytest.mark.parametrize("name, low, high", [("tf32x3", 0, 2e-7), ("bf16", 2e-6, 1e-4)])
def test_circuit_log_likelihood_error(name, low, high):
    """A whole circuit (PD 8x8, K = 10: its contractions take the tensor-core path) in float32
    on the Triton kernels against the float64 torch backend: the default tf32x3 keeps the
    relative log-likelihood error far below the issue's 1e-5, bf16 does not reach float32's
    accuracy."""
    import pcc
    from pcc.structures import poon_domingos
    circuit = poon_domingos(8, 8, 4, k=10)
    x = (torch.rand(16, 64, generator=torch.Generator().manual_seed(0)) < 0.3).float()
    exact = pcc.compile(circuit, backend="torch", dtype=torch.float64)(x.double()).detach()
    model = pcc.compile(circuit, backend="triton")
    with precision(name):
        ll = model(x).detach().double()
    rel = ((ll - exact).abs() / exact.abs()).max().item()
    assert low <= rel <= high, rel


def test_precision_set_after_binding_applies_to_bound_layers():
    """A bound layer reads the module's precision at each call (its launches for another
    precision are built on first use), as a bound model does after `set_precision`."""
    sources, rows, w = einsum_case(7, (9, 3), 20, 2, 17, ("index", "block"), torch.float32,
                                   spread=0.0)
    exact = brute_einsum(sources, rows, w, "sum")
    bound = Bound("einsum", triton_ops, (sources, rows), 2, 17, 20, w)
    bound.layer.forward()
    assert log_error(bound.out, exact) <= 2e-6
    with precision("bf16"):
        bound.layer.forward()
    assert log_error(bound.out, exact) >= 1e-4
