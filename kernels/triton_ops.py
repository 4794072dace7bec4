"""The layer kernels on Triton, with the signatures and semantics of `pcc_kernels.reference`.

    einsum_forward / einsum_backward   triton_einsum (width > 1) or triton_product (width 1)
    mix_forward / mix_backward         triton_mix

Runs on CUDA tensors, or on CPU tensors when TRITON_INTERPRET=1 was set before this module was
imported (`INTERPRETED`). float32 and float64 tensors; einsums of arity <= 3 (more children fall
back to the reference). Contractions are exact fp32 (`input_precision="ieee"`) unless a precision
is opted into: `set_precision("tf32x3" | "tf32" | "bf16")` or `precision=` on the einsum calls.
They are for GPUs: the interpreter computes tf32x3 and tf32 dots in full fp32 and cannot run bf16
dots (refused there); float64 always uses "ieee".
Gradient arenas and flows are accumulated with atomic adds, so the last bits of the backward may
vary from run to run on a GPU. Every entry point is excluded from torch.compile tracing.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from . import reference
from .triton_common import PRECISIONS, Rows, check_dtype, interpreted
from .triton_einsum import einsum_backward_launch, einsum_forward_launch, einsum_fwd_kernel
from .triton_mix import mix_backward_launch, mix_forward_launch
from .triton_product import product_backward_launch, product_forward_launch

MAX_ARITY = 3
INTERPRETED = interpreted(einsum_fwd_kernel)
SEMIRINGS = ("sum", "max")

_precision = "ieee"


def set_precision(precision: str) -> None:
    """Contraction precision of later einsum calls: 'ieee' (default), 'tf32x3', 'tf32' or 'bf16'."""
    global _precision
    _precision = _check_precision(precision)


def get_precision() -> str:
    return _precision


def _check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return precision


def _resolve(precision: str | None, dtype: torch.dtype) -> str:
    chosen = _precision if precision is None else _check_precision(precision)
    if INTERPRETED and chosen == "bf16":
        raise ValueError("precision 'bf16' needs a GPU: the Triton interpreter cannot run bf16 dots")
    return "ieee" if dtype == torch.float64 else chosen


def _check_semiring(semiring: str) -> None:
    if semiring not in SEMIRINGS:
        raise ValueError(f"semiring must be 'sum' or 'max', got {semiring!r}")


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
        launch = product_forward_launch(sources, rows, log_w, out)
    else:
        launch = einsum_forward_launch(sources, rows, log_w, out, semiring,
                                       _resolve(precision, out.dtype))
    launch.run()


@torch.compiler.disable
def einsum_backward(sources: Sequence[Tensor], rows: Sequence[Rows], log_w: Tensor, out: Tensor,
                    grad_out: Tensor, grad_sources: Sequence[Tensor], *,
                    precision: str | None = None) -> Tensor:
    """Add dL/dX_j into grad_sources[j] at rows[j]; return the flows W * dL/dW [N, Ko, width]."""
    if len(sources) > MAX_ARITY:
        return reference.einsum_backward(sources, rows, log_w, out, grad_out, grad_sources)
    check_dtype(out, log_w, grad_out, *sources, *grad_sources)
    log_w = log_w.contiguous()
    flows = torch.zeros_like(log_w)
    if out.numel() == 0:
        return flows
    if log_w.shape[-1] == 1:
        launch = product_backward_launch(sources, rows, grad_out, grad_sources, flows)
    else:
        launch = einsum_backward_launch(sources, rows, log_w, out, grad_out, grad_sources, flows,
                                        _resolve(precision, out.dtype))
    launch.run()
    return flows


# Element-wise (Hadamard) layers run on the torch kernels until their Triton kernel lands.
hadamard_forward = torch.compiler.disable(reference.hadamard_forward)
hadamard_backward = torch.compiler.disable(reference.hadamard_backward)


@torch.compiler.disable
def mix_forward(source: Tensor, rows: Tensor, log_m: Tensor, out: Tensor,
                semiring: str = "sum") -> None:
    """Write out[n,b,k] = log sum_p M[n,p,k] exp(source[rows[n,p],b,k]) into `out` [N, B, K]."""
    _check_semiring(semiring)
    check_dtype(out, log_m, source)
    if out.numel() == 0:
        return
    mix_forward_launch(source, rows.contiguous(), log_m, out, semiring).run()


@torch.compiler.disable
def mix_backward(source: Tensor, rows: Tensor, log_m: Tensor, out: Tensor, grad_out: Tensor,
                 grad_source: Tensor) -> Tensor:
    """Add dL/dsource at rows into grad_source; return the flows M * dL/dM, [N, P, K]."""
    check_dtype(out, log_m, source, grad_out, grad_source)
    log_m = log_m.contiguous()
    flows = torch.zeros_like(log_m)
    if out.numel() == 0:
        return flows
    mix_backward_launch(source, rows.contiguous(), log_m, out, grad_out, grad_source,
                        flows).run()
    return flows
