"""Weight pre-pass: the linear-space weights of a layer, once per call, in the contraction's
operand format, so that no contraction program exponentiates (or splits) a weight.

    hi, lo = split(exp(log_w))        flat over log_w's elements (log_w made contiguous)
tf32x3: hi = W rounded to tf32, lo = W - hi (both fp32); bf16: hi = W in bfloat16; otherwise
hi = W in the input dtype (lo is hi). One program per BLOCK elements.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from .triton_common import Launch, interpreted, split


@triton.jit
def weights_kernel(log_w, hi, lo, numel, PRECISION: tl.constexpr, BLOCK: tl.constexpr):
    """hi[i], lo[i] = split(exp(log_w[i])) for a block of flat indices."""
    i = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = i < numel
    w_hi, w_lo = split(tl.exp(tl.load(log_w + i, mask=mask, other=float("-inf"))), PRECISION)
    tl.store(hi + i, w_hi, mask=mask)
    if PRECISION == "tf32x3" or PRECISION == "tf32x3-emulated":
        tl.store(lo + i, w_lo, mask=mask)


def weights_launch(log_w: Tensor, precision: str) -> tuple[Launch, Tensor, Tensor]:
    """(launch, hi, lo): hi and lo have log_w's shape, contiguous (lo is hi unless tf32x3)."""
    log_w = log_w.contiguous()
    dtype = torch.bfloat16 if precision == "bf16" else log_w.dtype
    hi = torch.empty(log_w.shape, dtype=dtype, device=log_w.device)
    lo = torch.empty_like(hi) if precision.startswith("tf32x3") else hi
    block = 16384 if interpreted(weights_kernel) else 1024
    numel = log_w.numel()
    return Launch(weights_kernel, lambda meta: (triton.cdiv(numel, block),),
                  (log_w, hi, lo, numel), dict(PRECISION=precision, BLOCK=block),
                  triton.Config({}, num_warps=4)), hi, lo
