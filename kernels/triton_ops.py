"""The layer kernels on Triton, with the signatures and semantics of `pcc_kernels.reference`.

    einsum_forward / einsum_backward       triton_einsum (+ triton_weights, triton_stage,
                                           triton_flows), or triton_product (width 1)
    hadamard_forward / hadamard_backward   triton_hadamard (+ the same pre-passes and flows)
    mix_forward / mix_backward             triton_mix

Runs on CUDA tensors, or on CPU tensors when TRITON_INTERPRET=1 was set before this module was
imported (`INTERPRETED`). float32 and float64 tensors; einsums of arity <= 3 (more children fall
back to the reference). Contractions of float32 run in precision "tf32x3" by default (three tf32
tensor-core products per product of split operands: fp32-like error); `set_precision("ieee" |
"tf32" | "bf16" | "tf32x3")` or `precision=` on a call selects another. float64 always runs
"ieee". Under the interpreter, which ignores `input_precision`, the tensor-core precisions are
emulated (operands rounded to tf32 / bf16 values, exact products), so their error is tested on
the CPU. Child gradients are added into arenas with atomic adds where rows may repeat, so their
last bits may vary from run to run on a GPU; the weight flows are written without atomics. Every
entry point is excluded from torch.compile tracing.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from . import reference
from .triton_common import PRECISIONS, Launch, Rows, check_dtype, interpreted
from .triton_einsum import contract_kernel, einsum_backward_steps, einsum_forward_steps
from .triton_hadamard import hadamard_backward_steps, hadamard_forward_steps
from .triton_mix import mix_backward_steps, mix_forward_steps
from .triton_product import product_backward_steps, product_forward_steps

MAX_ARITY = 3
INTERPRETED = interpreted(contract_kernel)
SEMIRINGS = ("sum", "max")
DEFAULT_PRECISION = "tf32x3"

_precision = DEFAULT_PRECISION


def set_precision(precision: str) -> None:
    """Contraction precision of later calls: 'tf32x3' (default), 'ieee', 'tf32' or 'bf16'."""
    global _precision
    _precision = _check_precision(precision)


def get_precision() -> str:
    return _precision


def _check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return precision


def kernel_precision(precision: str | None, dtype: torch.dtype) -> str:
    """The PRECISION the kernels run: 'ieee' for float64, the emulated variant of a tensor-core
    precision under the interpreter."""
    chosen = _precision if precision is None else _check_precision(precision)
    if dtype == torch.float64 or chosen == "ieee":
        return "ieee"
    return f"{chosen}-emulated" if INTERPRETED else chosen


def _check_semiring(semiring: str) -> None:
    if semiring not in SEMIRINGS:
        raise ValueError(f"semiring must be 'sum' or 'max', got {semiring!r}")


def run(steps: Sequence) -> None:
    """Run a layer's launches and host steps in order."""
    for step in steps:
        step.run() if isinstance(step, Launch) else step()


@torch.compiler.disable
def einsum_forward(sources: Sequence[Tensor], rows: Sequence[Rows], log_w: Tensor, out: Tensor,
                   semiring: str = "sum", *, precision: str | None = None) -> None:
    """Write the einsum of N partitions into `out` [N, B, Ko] (see `pcc_kernels.reference`)."""
    _check_semiring(semiring)
    if len(sources) > MAX_ARITY:
        reference.einsum_forward(sources, rows, log_w, out, semiring)
        return
    check_dtype(out, log_w, *sources)
    if out.numel() == 0:
        return
    if log_w.shape[-1] == 1:
        run(product_forward_steps(sources, rows, log_w, out))
    else:
        run(einsum_forward_steps(sources, rows, log_w, out, semiring,
                                 kernel_precision(precision, out.dtype)))


@torch.compiler.disable
def einsum_backward(sources: Sequence[Tensor], rows: Sequence[Rows], log_w: Tensor, out: Tensor,
                    grad_out: Tensor, grad_sources: Sequence[Tensor], *,
                    precision: str | None = None) -> Tensor:
    """Add dL/dX_j into grad_sources[j] at rows[j]; return the flows W * dL/dW [N, Ko, width]."""
    if len(sources) > MAX_ARITY:
        return reference.einsum_backward(sources, rows, log_w, out, grad_out, grad_sources)
    check_dtype(out, log_w, grad_out, *sources, *grad_sources)
    if out.numel() == 0:
        return torch.zeros_like(log_w)
    if log_w.shape[-1] == 1:
        steps, flows = product_backward_steps(sources, rows, grad_out, grad_sources, log_w)
    else:
        steps, flows = einsum_backward_steps(sources, rows, log_w, out, grad_out, grad_sources,
                                             kernel_precision(precision, out.dtype))
    run(steps)
    return flows


@torch.compiler.disable
def hadamard_forward(source: Tensor, rows: Tensor, log_w: Tensor, out: Tensor,
                     semiring: str = "sum", *, precision: str | None = None) -> None:
    """Write out[n,b,o] = log sum_k W[n,o,k] exp(sum_a source[rows[n,a],b,k]) into `out`
    [N, B, Ko] (max over k of log W + x for the max semiring)."""
    _check_semiring(semiring)
    check_dtype(out, log_w, source)
    if out.numel() == 0:
        return
    run(hadamard_forward_steps(source, rows, log_w, out, semiring,
                               kernel_precision(precision, out.dtype)))


@torch.compiler.disable
def hadamard_backward(source: Tensor, rows: Tensor, log_w: Tensor, out: Tensor, grad_out: Tensor,
                      grad_source: Tensor, *, precision: str | None = None) -> Tensor:
    """Add dL/dsource into grad_source at every slot's row; return the flows W * dL/dW
    [N, Ko, K]."""
    check_dtype(out, log_w, source, grad_out, grad_source)
    if out.numel() == 0:
        return torch.zeros_like(log_w)
    steps, flows = hadamard_backward_steps(source, rows, log_w, out, grad_out, grad_source,
                                           kernel_precision(precision, out.dtype))
    run(steps)
    return flows


@torch.compiler.disable
def mix_forward(source: Tensor, rows: Tensor, log_m: Tensor, out: Tensor,
                semiring: str = "sum") -> None:
    """Write out[n,b,k] = log sum_p M[n,p,k] exp(source[rows[n,p],b,k]) into `out` [N, B, K]."""
    _check_semiring(semiring)
    check_dtype(out, log_m, source)
    if out.numel() == 0:
        return
    run(mix_forward_steps(source, rows, log_m, out, semiring))


@torch.compiler.disable
def mix_backward(source: Tensor, rows: Tensor, log_m: Tensor, out: Tensor, grad_out: Tensor,
                 grad_source: Tensor) -> Tensor:
    """Add dL/dsource at rows into grad_source; return the flows M * dL/dM, [N, P, K]."""
    check_dtype(out, log_m, source, grad_out, grad_source)
    if out.numel() == 0:
        return torch.zeros_like(log_m)
    steps, flows = mix_backward_steps(source, rows, log_m, out, grad_out, grad_source)
    run(steps)
    return flows
