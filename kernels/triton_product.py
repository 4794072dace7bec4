"""Width-1 einsums (every child has K = 1): plain products, the same in both semirings.

    out[n,b,o] = sum_j X_j[n,b,0] + log W[n,o,0]
backward: dL/dX_j[n,b,0] += sum_o g[n,b,o];  flows[n,o,0] = sum_b g[n,b,o]
(exactly the reference, which propagates g even where out = -inf).
Grid: (N, cdiv(B, BLOCK_B)), one [BLOCK_B, BKO] tile per program; children A, B, L as in
`triton_einsum` (absent ones never read).
"""
from __future__ import annotations

from typing import Sequence

import triton
import triton.language as tl
from torch import Tensor

from .triton_common import (Launch, Rows, add_child_grad, arena_args, child_slots, interpreted,
                            next_pow2, row_base, rows_per_program)


@triton.jit
def child_sum(xa, xa_r, xa_b, ra, sa, xb, xb_r, xb_b, rb, sb, xl, xl_r, xl_b, rl, sl, n, b, bm,
              LEADS: tl.constexpr, GA: tl.constexpr, GB: tl.constexpr, GL: tl.constexpr):
    """sum_j X_j[n, b, 0] as [BLOCK_B]."""
    s = tl.load(row_base(xl, rl, sl, n, xl_r, GL) + b * xl_b, mask=bm, other=0.0)
    if LEADS >= 1:
        s += tl.load(row_base(xa, ra, sa, n, xa_r, GA) + b * xa_b, mask=bm, other=0.0)
    if LEADS == 2:
        s += tl.load(row_base(xb, rb, sb, n, xb_r, GB) + b * xb_b, mask=bm, other=0.0)
    return s


@triton.jit
def product_fwd_kernel(
        xa, xa_r, xa_b, xa_k, ra, sa, ka,
        xb, xb_r, xb_b, xb_k, rb, sb, kb,
        xl, xl_r, xl_b, xl_k, rl, sl, kl,
        lw, lw_n, lw_o, lw_w, out, out_n, out_b, out_k, B, KO,
        LEADS: tl.constexpr, GA: tl.constexpr, GB: tl.constexpr, GL: tl.constexpr,
        BLOCK_B: tl.constexpr, BKO: tl.constexpr):
    """out[n, b-block, :] = sum_j X_j[n, b, 0] + log W[n, :, 0]."""
    n = tl.program_id(0).to(tl.int64)  # 64-bit offsets: n * stride may pass 2^31
    b = tl.program_id(1) * BLOCK_B + tl.arange(0, BLOCK_B)
    bm = b < B
    o = tl.arange(0, BKO)
    om = o < KO
    s = child_sum(xa, xa_r, xa_b, ra, sa, xb, xb_r, xb_b, rb, sb, xl, xl_r, xl_b, rl, sl, n, b, bm,
                  LEADS, GA, GB, GL)
    w = tl.load(lw + n * lw_n + o * lw_o, mask=om, other=0.0)
    tl.store(out + n * out_n + b[:, None] * out_b + o[None, :] * out_k, s[:, None] + w[None, :],
             mask=bm[:, None] & om[None, :])


@triton.jit
def product_bwd_kernel(
        xa, xa_r, xa_b, xa_k, ra, sa, ka, ga, ga_r, ga_b, ga_k,
        xb, xb_r, xb_b, xb_k, rb, sb, kb, gb, gb_r, gb_b, gb_k,
        xl, xl_r, xl_b, xl_k, rl, sl, kl, gl, gl_r, gl_b, gl_k,
        gout, gout_n, gout_b, gout_k, flows, fl_n, fl_o, B, KO,
        LEADS: tl.constexpr, GA: tl.constexpr, GB: tl.constexpr, GL: tl.constexpr,
        BLOCK_B: tl.constexpr, BKO: tl.constexpr):
    """flows[n, :, 0] += sum_b g;  dL/dX_j[n, b-block, 0] += sum_o g  (atomic)."""
    n = tl.program_id(0).to(tl.int64)  # 64-bit offsets: n * stride may pass 2^31
    b = tl.program_id(1) * BLOCK_B + tl.arange(0, BLOCK_B)
    bm = b < B
    o = tl.arange(0, BKO)
    om = o < KO
    g = tl.load(gout + n * gout_n + b[:, None] * gout_b + o[None, :] * gout_k,
                mask=bm[:, None] & om[None, :], other=0.0)
    tl.atomic_add(flows + n * fl_n + o * fl_o, tl.sum(g, axis=0), mask=om, sem="relaxed")
    g_units = tl.sum(g, axis=1)[:, None]
    unit = tl.arange(0, 1)
    add_child_grad(gl, gl_r, gl_b, gl_k, rl, sl, n, b, bm, unit, 1, g_units, GL)
    if LEADS >= 1:
        add_child_grad(ga, ga_r, ga_b, ga_k, ra, sa, n, b, bm, unit, 1, g_units, GA)
    if LEADS == 2:
        add_child_grad(gb, gb_r, gb_b, gb_k, rb, sb, n, b, bm, unit, 1, g_units, GB)


def product_forward_launch(sources: Sequence[Tensor], rows: Sequence[Rows], log_w: Tensor,
                           out: Tensor) -> Launch:
    n, batch, k_out = out.shape
    args, gathers, _ = child_slots(sources, rows)
    block_b = rows_per_program(batch, k_out, interpreted(product_fwd_kernel))
    return Launch(product_fwd_kernel, (n, triton.cdiv(batch, block_b)),
                  (*args[0], *args[1], *args[2], *arena_args(log_w), *arena_args(out), batch,
                   k_out),
                  dict(LEADS=len(sources) - 1, GA=gathers[0], GB=gathers[1], GL=gathers[2],
                       BLOCK_B=block_b, BKO=next_pow2(k_out)))


def product_backward_launch(sources: Sequence[Tensor], rows: Sequence[Rows], grad_out: Tensor,
                            grad_sources: Sequence[Tensor], flows: Tensor) -> Launch:
    n, batch, k_out = grad_out.shape
    args, gathers, _ = child_slots(sources, rows, grad_sources)
    block_b = rows_per_program(batch, k_out, interpreted(product_bwd_kernel))
    return Launch(product_bwd_kernel, (n, triton.cdiv(batch, block_b)),
                  (*args[0], *args[1], *args[2], *arena_args(grad_out), flows,
                   *flows.stride()[:2], batch, k_out),
                  dict(LEADS=len(sources) - 1, GA=gathers[0], GB=gathers[1], GL=gathers[2],
                       BLOCK_B=block_b, BKO=next_pow2(k_out)))
