"""Einsum layer kernels: N partitions, each the product of a <= 3 children contracted with its
weights, in one launch (forward for both semirings, backward for the sum semiring).

    out[n,b,o] = log sum_w W[n,o,w] prod_j exp(X_j[n,b,i_j(w)])        (sum)
    out[n,b,o] = max_w  log W[n,o,w] + sum_j X_j[n,b,i_j(w)]           (max)
with X_j = src_j[rows_j[n]], w = (i_1, ..., i_a) row-major. The children are split into *lead*
children A, B (all but the last; their index combos t = i_A * K_B + i_B) and the *last* child L:
the column w = t * K_L + i_L.

Program (n, sample block, output block) walks chunks of BJ units j of L (outer loop) and CT lead
combos t (inner loop). A chunk is a register tile [BLOCK_B, CT*BJ] of products c_t(b) e_L(b, j)
(c_t = product of the lead children's shifted exps), contracted with the matching [CT*BJ, BO] slice
of the weights by `tl.dot` (sum) or a max-plus reduction (max). No [B, K1*...*Ka] tensor ever exists
outside registers. Grid: (N, cdiv(B, BLOCK_B), cdiv(Ko, BO)); sizes from `einsum_tiles`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import triton
import triton.language as tl
from torch import Tensor

from .triton_common import (Launch, Rows, add_child_grad, arena_args, child_slots, interpreted,
                            load_cols, matmul, next_pow2, row_base, row_shift, safe_log)


@triton.jit
def lead_factors(t, tm, b, bm, base_a, xa_b, xa_k, shift_a, base_b, xb_b, xb_k, shift_b, kb,
                 LEADS: tl.constexpr, SEMIRING: tl.constexpr, BLOCK_B: tl.constexpr,
                 CT: tl.constexpr, DTYPE: tl.constexpr):
    """[BLOCK_B, CT] factor of lead combos t (= i_A * kb + i_B): sum semiring
    prod_j exp(X_j[b, i_j] - shift_j[b]), max semiring sum_j X_j[b, i_j]; 0 (resp. -inf) for
    t outside the combos. With no lead child (arity 1) the neutral element."""
    mask = bm[:, None] & tm[None, :]
    if LEADS == 0:
        if SEMIRING == "sum":
            c = tl.zeros([BLOCK_B, CT], DTYPE) + tl.where(tm, 1.0, 0.0).to(DTYPE)[None, :]
        else:
            c = tl.zeros([BLOCK_B, CT], DTYPE) + tl.where(tm, 0.0, float("-inf")).to(DTYPE)[None, :]
    else:
        c = load_cols(base_a, b, xa_b, t // kb, xa_k, mask)
        if LEADS == 2:
            xb = load_cols(base_b, b, xb_b, t % kb, xb_k, mask)
            if SEMIRING == "sum":
                c = tl.exp(c - shift_a[:, None]) * tl.exp(xb - shift_b[:, None])
            else:
                c = c + xb
        elif SEMIRING == "sum":
            c = tl.exp(c - shift_a[:, None])
    return c


@triton.jit
def child_shift(base, b, bm, stride_b, stride_k, k, BK: tl.constexpr, USED: tl.constexpr):
    """Per-sample max-shift [BLOCK_B] of one child's row (zeros when the child is absent)."""
    if USED:
        cols = tl.arange(0, BK)
        shift = row_shift(load_cols(base, b, stride_b, cols, stride_k,
                                    bm[:, None] & (cols < k)[None, :]))
    else:
        shift = tl.zeros(b.shape, base.dtype.element_ty)
    return shift


@triton.jit
def children(xa, xa_r, xa_b, xa_k, ra, sa, ka, xb, xb_r, xb_b, xb_k, rb, sb, kb,
             xl, xl_r, xl_b, xl_k, rl, sl, kl, n, b, bm, LEADS: tl.constexpr, SHIFT: tl.constexpr,
             GA: tl.constexpr, GB: tl.constexpr, GL: tl.constexpr, BKA: tl.constexpr,
             BKB: tl.constexpr, BKL: tl.constexpr):
    """Row pointers of children A, B, L for partition n, and their max-shifts [BLOCK_B] (zeros
    unless SHIFT)."""
    base_a = row_base(xa, ra, sa, n, xa_r, GA)
    base_b = row_base(xb, rb, sb, n, xb_r, GB)
    base_l = row_base(xl, rl, sl, n, xl_r, GL)
    if SHIFT:
        shift_a = child_shift(base_a, b, bm, xa_b, xa_k, ka, BKA, LEADS >= 1)
        shift_b = child_shift(base_b, b, bm, xb_b, xb_k, kb, BKB, LEADS == 2)
        shift_l = child_shift(base_l, b, bm, xl_b, xl_k, kl, BKL, True)
    else:
        shift_a = child_shift(base_a, b, bm, xa_b, xa_k, ka, BKA, False)
        shift_b = shift_a
        shift_l = shift_a
    return base_a, base_b, base_l, shift_a, shift_b, shift_l


@triton.jit
def weight_tile(lw, lw_n, lw_o, lw_w, n, t0, T, j0, kl, o, KO, CT: tl.constexpr,
                BJ: tl.constexpr):
    """log W[n, o, t*kl + j] for the chunk's lead combos t0.. and units j0..: [CT*BJ, BO] (-inf
    where padded), with its mask and element offsets."""
    q = tl.arange(0, CT * BJ)
    t = t0 + q // BJ
    j = j0 + q % BJ
    mask = ((t < T) & (j < kl))[:, None] & (o < KO)[None, :]
    offs = n * lw_n + (t * kl + j)[:, None] * lw_w + o[None, :] * lw_o
    return tl.load(lw + offs, mask=mask, other=float("-inf")), mask, offs


@triton.jit
def einsum_fwd_kernel(
        xa, xa_r, xa_b, xa_k, ra, sa, ka,
        xb, xb_r, xb_b, xb_k, rb, sb, kb,
        xl, xl_r, xl_b, xl_k, rl, sl, kl,
        lw, lw_n, lw_o, lw_w, out, out_n, out_b, out_k, B, KO,
        LEADS: tl.constexpr, GA: tl.constexpr, GB: tl.constexpr, GL: tl.constexpr,
        SEMIRING: tl.constexpr, PRECISION: tl.constexpr, BLOCK_B: tl.constexpr,
        BKA: tl.constexpr, BKB: tl.constexpr, BKL: tl.constexpr, BJ: tl.constexpr,
        CT: tl.constexpr, BO: tl.constexpr):
    """out[n, b-block, o-block] (see module doc)."""
    dtype = out.dtype.element_ty
    n = tl.program_id(0).to(tl.int64)  # 64-bit offsets: n * stride may pass 2^31
    b = tl.program_id(1) * BLOCK_B + tl.arange(0, BLOCK_B)
    o = tl.program_id(2) * BO + tl.arange(0, BO)
    bm = b < B
    base_a, base_b, base_l, shift_a, shift_b, shift_l = children(
        xa, xa_r, xa_b, xa_k, ra, sa, ka, xb, xb_r, xb_b, xb_k, rb, sb, kb,
        xl, xl_r, xl_b, xl_k, rl, sl, kl, n, b, bm, LEADS, SEMIRING == "sum", GA, GB, GL,
        BKA, BKB, BKL)
    if SEMIRING == "sum":
        acc = tl.zeros([BLOCK_B, BO], dtype)
    else:
        acc = tl.full([BLOCK_B, BO], float("-inf"), dtype)
    T = ka * kb
    for j0 in range(0, kl, BJ):
        j = j0 + tl.arange(0, BJ)
        last = load_cols(base_l, b, xl_b, j, xl_k, bm[:, None] & (j < kl)[None, :])
        if SEMIRING == "sum":
            last = tl.exp(last - shift_l[:, None])
        for t0 in range(0, T, CT):
            t = t0 + tl.arange(0, CT)
            c = lead_factors(t, t < T, b, bm, base_a, xa_b, xa_k, shift_a, base_b, xb_b, xb_k,
                             shift_b, kb, LEADS, SEMIRING, BLOCK_B, CT, dtype)
            log_w, _, _ = weight_tile(lw, lw_n, lw_o, lw_w, n, t0, T, j0, kl, o, KO, CT, BJ)
            if SEMIRING == "sum":
                tile = tl.reshape(c[:, :, None] * last[:, None, :], [BLOCK_B, CT * BJ])
                acc += matmul(tile, tl.exp(log_w), PRECISION)
            else:
                tile = tl.reshape(c[:, :, None] + last[:, None, :], [BLOCK_B, CT * BJ])
                acc = tl.maximum(acc, tl.max(tile[:, :, None] + log_w[None, :, :], axis=1))
    if SEMIRING == "sum":
        acc = safe_log(acc) + (shift_a + shift_b + shift_l)[:, None]
    tl.store(out + n * out_n + b[:, None] * out_b + o[None, :] * out_k, acc,
             mask=bm[:, None] & (o < KO)[None, :])


@triton.jit
def einsum_bwd_kernel(
        xa, xa_r, xa_b, xa_k, ra, sa, ka, ga, ga_r, ga_b, ga_k,
        xb, xb_r, xb_b, xb_k, rb, sb, kb, gb, gb_r, gb_b, gb_k,
        xl, xl_r, xl_b, xl_k, rl, sl, kl, gl, gl_r, gl_b, gl_k,
        lw, lw_n, lw_o, lw_w, out, out_n, out_b, out_k, gout, gout_n, gout_b, gout_k,
        flows, B, KO,
        LEADS: tl.constexpr, GA: tl.constexpr, GB: tl.constexpr, GL: tl.constexpr,
        PRECISION: tl.constexpr, BLOCK_B: tl.constexpr, BKA: tl.constexpr, BKB: tl.constexpr,
        BKL: tl.constexpr, BJ: tl.constexpr, CT: tl.constexpr, BO: tl.constexpr):
    """Sum-semiring backward of one (partition, sample block, output block), tiled as the forward.

    h[b,o] = dL/dout * exp(shift - out) (0 where out = -inf) is dL/d(sum_w W e-products); per
    chunk: flows[o, w] += W[o,w] * sum_b h[b,o] tile[b,w] (atomic: sample blocks race), and
    d = h @ W_chunk^T = dL/dtile (this output block's share). The children get
    dL/dX_j = e_j * dL/de_j, summed in registers and added to the gradient arenas atomically
    (rows repeat across partitions, and output blocks add shares)."""
    dtype = out.dtype.element_ty
    n = tl.program_id(0).to(tl.int64)  # 64-bit offsets: n * stride may pass 2^31
    b = tl.program_id(1) * BLOCK_B + tl.arange(0, BLOCK_B)
    o = tl.program_id(2) * BO + tl.arange(0, BO)
    bm = b < B
    base_a, base_b, base_l, shift_a, shift_b, shift_l = children(
        xa, xa_r, xa_b, xa_k, ra, sa, ka, xb, xb_r, xb_b, xb_k, rb, sb, kb,
        xl, xl_r, xl_b, xl_k, rl, sl, kl, n, b, bm, LEADS, True, GA, GB, GL, BKA, BKB, BKL)

    omask = bm[:, None] & (o < KO)[None, :]
    y = tl.load(out + n * out_n + b[:, None] * out_b + o[None, :] * out_k, mask=omask,
                other=float("-inf"))
    g = tl.load(gout + n * gout_n + b[:, None] * gout_b + o[None, :] * gout_k, mask=omask,
                other=0.0)
    live = y > float("-inf")
    shift = (shift_a + shift_b + shift_l)[:, None]
    h = tl.where(live, g * tl.exp(tl.where(live, shift - y, 0.0)), 0.0)

    cols_a = tl.arange(0, BKA)
    cols_b = tl.arange(0, BKB)
    grad_a = tl.zeros([BLOCK_B, BKA], dtype)
    grad_b = tl.zeros([BLOCK_B, BKB], dtype)
    T = ka * kb
    for j0 in range(0, kl, BJ):
        j = j0 + tl.arange(0, BJ)
        e_last = tl.exp(load_cols(base_l, b, xl_b, j, xl_k, bm[:, None] & (j < kl)[None, :])
                        - shift_l[:, None])
        grad_l = tl.zeros([BLOCK_B, BJ], dtype)
        for t0 in range(0, T, CT):
            t = t0 + tl.arange(0, CT)
            c = lead_factors(t, t < T, b, bm, base_a, xa_b, xa_k, shift_a, base_b, xb_b, xb_k,
                             shift_b, kb, LEADS, "sum", BLOCK_B, CT, dtype)
            log_w, wmask, woffs = weight_tile(lw, lw_n, lw_o, lw_w, n, t0, T, j0, kl, o, KO,
                                              CT, BJ)
            w = tl.exp(log_w)
            tile = tl.reshape(c[:, :, None] * e_last[:, None, :], [BLOCK_B, CT * BJ])
            flow = matmul(tl.trans(h), tile, PRECISION) * tl.trans(w)
            tl.atomic_add(flows + tl.trans(woffs), flow, mask=tl.trans(wmask), sem="relaxed")
            d = tl.reshape(matmul(h, tl.trans(w), PRECISION), [BLOCK_B, CT, BJ])
            grad_l += tl.sum(c[:, :, None] * d, axis=1)
            if LEADS >= 1:
                v = c * tl.sum(d * e_last[:, None, :], axis=2)  # e_A e_B dL/d(e_A e_B), [B, CT]
                hit_a = (t // kb)[None, :, None] == cols_a[None, None, :]
                grad_a += tl.sum(tl.where(hit_a, v[:, :, None], 0.0), axis=1)
                if LEADS == 2:
                    hit_b = (t % kb)[None, :, None] == cols_b[None, None, :]
                    grad_b += tl.sum(tl.where(hit_b, v[:, :, None], 0.0), axis=1)
        add_child_grad(gl, gl_r, gl_b, gl_k, rl, sl, n, b, bm, j, kl, grad_l * e_last, GL)
    if LEADS >= 1:
        add_child_grad(ga, ga_r, ga_b, ga_k, ra, sa, n, b, bm, cols_a, ka, grad_a, GA)
    if LEADS == 2:
        add_child_grad(gb, gb_r, gb_b, gb_k, rb, sb, n, b, bm, cols_b, kb, grad_b, GB)


@dataclass(frozen=True)
class EinsumTiles:
    """Compile-time sizes of one einsum launch."""

    block_b: int  # samples per program
    bk: tuple[int, int, int]  # padded K of children A, B, L (their shift loads)
    bj: int  # units of L per chunk
    ct: int  # lead combos per chunk
    bo: int  # outputs per program
    num_warps: int = 4

    def constexprs(self) -> dict[str, int]:
        return dict(BLOCK_B=self.block_b, BKA=self.bk[0], BKB=self.bk[1], BKL=self.bk[2],
                    BJ=self.bj, CT=self.ct, BO=self.bo)


def chunk(k: int, smallest: int, largest: int) -> int:
    """Power-of-two chunk for k units (largest >= 16): next_pow2(k) (at least `smallest`) if it is
    <= largest, else the size in {16, ..., largest} whose cover of k pads least, the larger on
    ties (K = 40 with largest 32: 16, covering 48 rather than 64)."""
    if next_pow2(k) <= largest:
        return next_pow2(k, smallest)
    sizes = [s for s in (16, 32, 64) if s <= largest]
    return min(sizes, key=lambda s: (triton.cdiv(k, s) * s, -s))


def einsum_tiles(batch: int, n: int, child_k: Sequence[int], k_out: int, semiring: str,
                 backward: bool, interpret: bool) -> EinsumTiles:
    """Tile sizes for an einsum of N partitions over `batch` samples (see docs/kernels.md).

    `child_k` is ordered (A, B, L), absent leads as 1. The sum semiring contracts on tl.dot, whose
    every dim must be >= 16 (triton 3.6): BLOCK_B, BO and CT*BJ. On a GPU exact fp32 dots run on
    FMAs that keep whole operand strips in registers, so the dims stay <= 32 (<= 16 for the
    backward's contraction dims) with 8 warps: no spills on sm90 (tests/gpu_compile.py
    --resources). The forward's BLOCK_B drops from 32 to 16 when that gives fewer than 1024
    programs. The max semiring keeps its [BLOCK_B, CT*BJ, BO] max-plus temporary <= 4096 values.
    Under the interpreter every program costs ~10 ms, so there is one output block and chunks as
    large as numpy likes (BLOCK_B <= 32 keeps batch masks tested at B > 32)."""
    ka, kb, kl = child_k
    combos = ka * kb
    bk = (next_pow2(ka), next_pow2(kb), next_pow2(kl))
    if interpret:
        bj, bo = bk[2], next_pow2(k_out, 16 if semiring == "sum" else 1)
        block_b = min(32, next_pow2(batch, 16))
        ct = max(16 // bj, min(next_pow2(combos), 1024 // bj))
        return EinsumTiles(block_b, bk, bj, ct, bo)
    if semiring == "sum":
        depth = 16 if backward else 32  # CT * BJ
        bj, bo = chunk(kl, 1, depth), chunk(k_out, 16, 32)
        ct = max(16 // bj, min(next_pow2(combos), depth // bj))
        block_b = 16 if backward else 32
        if n * triton.cdiv(batch, block_b) * triton.cdiv(k_out, bo) < 1024:
            block_b = 16
        return EinsumTiles(block_b, bk, bj, ct, bo, num_warps=8)
    bj, bo = chunk(kl, 1, 16), chunk(k_out, 1, 16)
    block_b = min(16, next_pow2(batch))
    ct = max(1, min(next_pow2(combos), 4096 // (block_b * bj * bo)))
    return EinsumTiles(block_b, bk, bj, ct, bo)


def einsum_forward_launch(sources: Sequence[Tensor], rows: Sequence[Rows], log_w: Tensor,
                          out: Tensor, semiring: str, precision: str) -> Launch:
    """einsum_fwd_kernel writing out [N, B, Ko] from 1 to 3 children (see module doc)."""
    n, batch, k_out = out.shape
    args, gathers, ks = child_slots(sources, rows)
    tiles = einsum_tiles(batch, n, ks, k_out, semiring, False, interpreted(einsum_fwd_kernel))
    return Launch(einsum_fwd_kernel, (n, triton.cdiv(batch, tiles.block_b),
                                     triton.cdiv(k_out, tiles.bo)),
                  (*args[0], *args[1], *args[2], *arena_args(log_w), *arena_args(out), batch,
                   k_out),
                  dict(LEADS=len(sources) - 1, GA=gathers[0], GB=gathers[1], GL=gathers[2],
                       SEMIRING=semiring, PRECISION=precision, **tiles.constexprs()),
                  tiles.num_warps)


def einsum_backward_launch(sources: Sequence[Tensor], rows: Sequence[Rows], log_w: Tensor,
                           out: Tensor, grad_out: Tensor, grad_sources: Sequence[Tensor],
                           flows: Tensor, precision: str) -> Launch:
    """einsum_bwd_kernel adding dL/dX into grad_sources and W * dL/dW into `flows` (zeroed,
    with log_w's strides)."""
    n, batch, k_out = out.shape
    args, gathers, ks = child_slots(sources, rows, grad_sources)
    tiles = einsum_tiles(batch, n, ks, k_out, "sum", True, interpreted(einsum_bwd_kernel))
    return Launch(einsum_bwd_kernel, (n, triton.cdiv(batch, tiles.block_b),
                                     triton.cdiv(k_out, tiles.bo)),
                  (*args[0], *args[1], *args[2], *arena_args(log_w), *arena_args(out),
                   *arena_args(grad_out), flows, batch, k_out),
                  dict(LEADS=len(sources) - 1, GA=gathers[0], GB=gathers[1], GL=gathers[2],
                       PRECISION=precision, **tiles.constexprs()),
                  tiles.num_warps)
