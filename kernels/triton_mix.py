"""Mix kernels: per region, a weighted log-sum-exp (or max) over its P partitions' rows.

    z[n,p,b,k] = log M[n,p,k] + src[rows[n,p], b, k]
    out[n,b,k] = log sum_p exp(z[n,p,b,k])          (sum; max over p for the max semiring)
backward:  post = exp(z - out) (0 where out = -inf),  c = post * dL/dout
           dL/dsrc[rows[n,p]] += c  (atomic; rows may repeat),  flows[n,p,k] = sum_b c
A separate launch from the einsum: a region's partitions are rows of other einsum groups, so the
mix cannot live in one einsum program's epilogue. Grid: (N, cdiv(B, BLOCK_B)); each program holds
a [BLOCK_B, BK] tile and walks p with an online (running-max) log-sum-exp, so z is never stored.
Padded partitions (log M = -inf) contribute 0 and are skipped by the backward's atomics.
"""
from __future__ import annotations

import triton
import triton.language as tl
from torch import Tensor

from .triton_common import (Launch, arena_args, interpreted, next_pow2, rows_per_program,
                            safe_log)


@triton.jit
def mix_terms(x, x_r, x_b, x_k, rows, rows_n, rows_p, lm, lm_n, lm_p, lm_k, n, p, b, k, K,
              mask):
    """z[b, k] = log M[n,p,k] + src[rows[n,p], b, k] as [BLOCK_B, BK] (-inf where masked), with
    log M[n,p,:] [BK] and the row rows[n,p]."""
    row = tl.load(rows + n * rows_n + p * rows_p).to(tl.int64)
    log_m = tl.load(lm + n * lm_n + p * lm_p + k * lm_k, mask=k < K, other=float("-inf"))
    vals = tl.load(x + row * x_r + b[:, None] * x_b + k[None, :] * x_k, mask=mask,
                   other=float("-inf"))
    return vals + log_m[None, :], log_m, row


@triton.jit
def mix_fwd_kernel(x, x_r, x_b, x_k, rows, rows_n, rows_p, lm, lm_n, lm_p, lm_k,
                   out, out_n, out_b, out_k, B, K, P,
                   SEMIRING: tl.constexpr, BLOCK_B: tl.constexpr, BK: tl.constexpr):
    """out[n, b-block, :] by an online log-sum-exp (or max) over the P partitions."""
    n = tl.program_id(0).to(tl.int64)  # 64-bit offsets: n * stride may pass 2^31
    b = tl.program_id(1) * BLOCK_B + tl.arange(0, BLOCK_B)
    k = tl.arange(0, BK)
    mask = (b < B)[:, None] & (k < K)[None, :]
    dtype = out.dtype.element_ty
    top = tl.full([BLOCK_B, BK], float("-inf"), dtype)
    total = tl.zeros([BLOCK_B, BK], dtype)
    for p in range(P):
        z, _, _ = mix_terms(x, x_r, x_b, x_k, rows, rows_n, rows_p, lm, lm_n, lm_p, lm_k,
                            n, p, b, k, K, mask)
        if SEMIRING == "sum":
            new_top = tl.maximum(top, z)
            ref = tl.where(new_top == float("-inf"), 0.0, new_top)
            total = total * tl.exp(top - ref) + tl.exp(z - ref)
            top = new_top
        else:
            top = tl.maximum(top, z)
    if SEMIRING == "sum":
        top = safe_log(total) + top  # total >= 1 unless every term is -inf (then -inf + -inf)
    tl.store(out + n * out_n + b[:, None] * out_b + k[None, :] * out_k, top, mask=mask)


@triton.jit
def mix_bwd_kernel(x, x_r, x_b, x_k, rows, rows_n, rows_p, lm, lm_n, lm_p, lm_k,
                   out, out_n, out_b, out_k, gout, gout_n, gout_b, gout_k, gx, gx_r, gx_b, gx_k,
                   flows, B, K, P, BLOCK_B: tl.constexpr, BK: tl.constexpr):
    """Backward of the sum semiring; `flows` has the strides of lm."""
    n = tl.program_id(0).to(tl.int64)  # 64-bit offsets: n * stride may pass 2^31
    b = tl.program_id(1) * BLOCK_B + tl.arange(0, BLOCK_B)
    k = tl.arange(0, BK)
    mask = (b < B)[:, None] & (k < K)[None, :]
    tile = n * out_n + b[:, None] * out_b + k[None, :] * out_k
    y = tl.load(out + tile, mask=mask, other=float("-inf"))
    g = tl.load(gout + n * gout_n + b[:, None] * gout_b + k[None, :] * gout_k, mask=mask,
                other=0.0)
    live = y > float("-inf")
    y = tl.where(live, y, 0.0)
    for p in range(P):
        z, log_m, row = mix_terms(x, x_r, x_b, x_k, rows, rows_n, rows_p, lm, lm_n, lm_p,
                                      lm_k, n, p, b, k, K, mask)
        c = tl.where(live, tl.exp(z - y), 0.0) * g
        used = log_m > float("-inf")
        tl.atomic_add(gx + row * gx_r + b[:, None] * gx_b + k[None, :] * gx_k, c,
                      mask=mask & used[None, :], sem="relaxed")
        tl.atomic_add(flows + n * lm_n + p * lm_p + k * lm_k, tl.sum(c, axis=0), mask=used,
                      sem="relaxed")


def mix_forward_launch(source: Tensor, rows: Tensor, log_m: Tensor, out: Tensor,
                       semiring: str) -> Launch:
    n, p = rows.shape
    batch, k = out.shape[1:]
    block_b = rows_per_program(batch, k, interpreted(mix_fwd_kernel))
    return Launch(mix_fwd_kernel, (n, triton.cdiv(batch, block_b)),
                  (*arena_args(source), rows, *rows.stride(), *arena_args(log_m),
                   *arena_args(out), batch, k, p),
                  dict(SEMIRING=semiring, BLOCK_B=block_b, BK=next_pow2(k)))


def mix_backward_launch(source: Tensor, rows: Tensor, log_m: Tensor, out: Tensor,
                        grad_out: Tensor, grad_source: Tensor, flows: Tensor) -> Launch:
    """mix_bwd_kernel adding dL/dsource into grad_source and M * dL/dM into `flows` (zeroed,
    with log_m's strides)."""
    n, p = rows.shape
    batch, k = out.shape[1:]
    block_b = rows_per_program(batch, k, interpreted(mix_bwd_kernel))
    return Launch(mix_bwd_kernel, (n, triton.cdiv(batch, block_b)),
                  (*arena_args(source), rows, *rows.stride(), *arena_args(log_m),
                   *arena_args(out), *arena_args(grad_out), *arena_args(grad_source), flows,
                   batch, k, p),
                  dict(BLOCK_B=block_b, BK=next_pow2(k)))
