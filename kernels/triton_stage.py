"""Staging pre-pass of a contraction: each factor's row exponentiated once per layer call.

Per member n and sample b, for each of the NF children (a child may read A rows of its arena
and sum them: the log of an element-wise product):
    x_f[b,k] = sum_a X_f[rows_f[n,a], b, k]
    s_f[b]   = max_k x_f[b,k]  (0 if the row is all -inf)
    E_f[n,b,k] = exp(x_f[b,k] - s_f[b])          in [0, 1]; -inf inputs give exactly 0
    S[n,b]   = sum_f s_f[b]
backward also (sum semiring, given the forward's out and dL/dout):
    H[n,b,o] = dL/dout[n,b,o] * exp(S[n,b] - out[n,b,o])   (0 where out = -inf)
H is dL/d(sum_w W[o,w] prod_f E_f), because out = log(that sum) + S.
Grid: (N, cdiv(B, BLOCK_B)); each program holds [BLOCK_B, next_pow2(K_f)] tiles. The buffers
E_f [N, B, K_f], S [N, B] and H [N, B, Ko] are contiguous; the contraction kernels gather from
them without any further exp.
"""
from __future__ import annotations

from typing import Sequence

import torch
import triton
import triton.language as tl
from torch import Tensor

from .triton_common import (ELEMENTWISE, Arena, Launch, Matrix, interpreted, matrix, next_pow2,
                            pad_factors, row_shift, summed_rows)


@triton.jit
def stage_one(op, stage, n, b, bm, B, GATHER: tl.constexpr, BK: tl.constexpr):
    """E = exp(x - s) of one factor into stage [N, B, K] (contiguous); returns s [BLOCK_B]."""
    k = op[9]
    cols = tl.arange(0, BK)
    mask = bm[:, None] & (cols < k)[None, :]
    x = summed_rows(op, n, b, cols, mask, GATHER)
    s = row_shift(x)
    tl.store(stage + (n * B + b[:, None]) * k + cols[None, :], tl.exp(x - s[:, None]), mask=mask)
    return s


@triton.jit
def stage_kernel(factors, stages, shifts, out, grad_out, h, B, KO,
                 NF: tl.constexpr, GATHERS: tl.constexpr, BKS: tl.constexpr,
                 BACKWARD: tl.constexpr, BLOCK_B: tl.constexpr, BKO: tl.constexpr):
    """E_f, S (and H when BACKWARD) for one member and sample block (see module doc)."""
    n = tl.program_id(0).to(tl.int64)
    b = tl.program_id(1) * BLOCK_B + tl.arange(0, BLOCK_B)
    bm = b < B
    total = stage_one(factors[0], stages[0], n, b, bm, B, GATHERS[0], BKS[0])
    if NF >= 2:
        total += stage_one(factors[1], stages[1], n, b, bm, B, GATHERS[1], BKS[1])
    if NF == 3:
        total += stage_one(factors[2], stages[2], n, b, bm, B, GATHERS[2], BKS[2])
    tl.store(shifts + n * B + b, total, mask=bm)
    if BACKWARD:
        out_ptr, out_n, out_b, out_o = out
        g_ptr, g_n, g_b, g_o = grad_out
        o = tl.arange(0, BKO)
        mask = bm[:, None] & (o < KO)[None, :]
        y = tl.load(out_ptr + n * out_n + b[:, None] * out_b + o[None, :] * out_o, mask=mask,
                    other=float("-inf"))
        g = tl.load(g_ptr + n * g_n + b[:, None] * g_b + o[None, :] * g_o, mask=mask, other=0.0)
        live = y > float("-inf")
        hv = tl.where(live, g * tl.exp(tl.where(live, total[:, None] - y, 0.0)), 0.0)
        tl.store(h + (n * B + b[:, None]) * KO + o[None, :], hv, mask=mask)


def stage_launch(factors: Sequence[tuple[Arena, bool]], n: int, batch: int,
                 out: Tensor | None = None, grad_out: Tensor | None = None
                 ) -> tuple[Launch, list[Tensor], Tensor, Tensor | None]:
    """(launch, E_f buffers, S, H): stage the factors of n members (and H if grad_out given)."""
    like = factors[0][0].ptr
    stages = [torch.empty(n, batch, op.k, dtype=like.dtype, device=like.device)
              for op, _ in factors]
    shifts = torch.empty(n, batch, dtype=like.dtype, device=like.device)
    backward = grad_out is not None
    k_out = out.shape[2] if backward else 1
    h = torch.empty(n, batch, k_out, dtype=like.dtype, device=like.device) if backward else None
    ops, gathers = pad_factors([op for op, _ in factors], [g for _, g in factors])
    bks = tuple(next_pow2(op[9]) for op in ops)
    interpret = interpreted(stage_kernel)
    widest = max(max(bks), next_pow2(k_out))
    block_b = min(next_pow2(batch), max(1, (16384 if interpret else 4096) // widest))
    out_m = matrix(out) if backward else Matrix(shifts, 0, 0, 0)
    grad_m = matrix(grad_out) if backward else out_m
    stage_ptrs = tuple(stages) + (stages[0],) * (3 - len(stages))
    launch = Launch(
        stage_kernel, lambda meta: (n, triton.cdiv(batch, block_b)),
        (ops, stage_ptrs, shifts, tuple(out_m), tuple(grad_m), shifts if h is None else h,
         batch, k_out),
        dict(NF=len(factors), GATHERS=gathers, BKS=bks, BACKWARD=backward, BLOCK_B=block_b,
             BKO=next_pow2(k_out)),
        ELEMENTWISE)
    return launch, stages, shifts, h
