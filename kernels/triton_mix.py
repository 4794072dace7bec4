"""Mix layers: per region, a weighted log-sum-exp (or max) over its P partitions' rows.

    z[n,p,b,k] = log M[n,p,k] + src[rows[n,p], b, k]
    out[n,b,k] = log sum_p exp(z[n,p,b,k])          (sum; max over p for the max semiring)
backward:  post = exp(z - out) (0 where out = -inf),  c = post * dL/dout
           dL/dsrc[rows[n,p]] += c  (atomic: rows repeat across regions),  flows[n,p,k] = sum_b c
A separate launch from the einsums: a region's partitions are rows of other einsum groups, so the
mix cannot live in one einsum program's epilogue. Elementwise and bound by memory bandwidth: no
contraction, so the weights stay in log space (added, never exponentiated on their own).
Grid: (N, cdiv(B, BLOCK_B)); each program holds a [BLOCK_B, next_pow2(K)] tile and walks p with
an online log-sum-exp that takes one exp per term: with m the running maximum,
    z > m:  total = total * exp(m - z) + 1,  m = z        else:  total += exp(z - m)
(exp(min - max) either way; -inf terms add exp(-inf) = 0). Padded partitions (log M = -inf,
row 0) contribute 0 and are skipped by the gradient adds. The backward writes each sample
block's flows to its own slice of [blocks, N, P, K], which the host sums (no atomics on flows).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from .triton_common import (ELEMENTWISE, Launch, arena, interpreted, member_index, next_pow2,
                            rows_per_program)


@triton.jit
def mix_term(source, log_m, n, p, b, k, K, mask):
    """z[b, k] = log M[n,p,k] + src[rows[n,p], b, k] as [BLOCK_B, BK] (-inf where masked), with
    log M[n,p,:] [BK] and the row rows[n,p]."""
    ptr, rows, start, rows_n, rows_a, slots, s_r, s_b, s_k, width = source
    lm_ptr, lm_n, lm_p, lm_k = log_m
    row = member_index(source, n, p, True)
    lm = tl.load(lm_ptr + n * lm_n + p * lm_p + k * lm_k, mask=k < K, other=float("-inf"))
    vals = tl.load(ptr + row * s_r + b[:, None] * s_b + k[None, :] * s_k, mask=mask,
                   other=float("-inf"))
    return vals + lm[None, :], lm, row


@triton.jit
def mix_fwd_kernel(source, log_m, out, B, K, SEMIRING: tl.constexpr, BLOCK_B: tl.constexpr,
                   BK: tl.constexpr):
    """out[n, b-block, :] by an online log-sum-exp (or max) over the P partitions."""
    n = tl.program_id(0).to(tl.int64)
    b = tl.program_id(1) * BLOCK_B + tl.arange(0, BLOCK_B)
    k = tl.arange(0, BK)
    mask = (b < B)[:, None] & (k < K)[None, :]
    dtype = source[0].dtype.element_ty
    top = tl.full([BLOCK_B, BK], float("-inf"), dtype)
    total = tl.zeros([BLOCK_B, BK], dtype)
    for p in range(source[5]):
        z, _, _ = mix_term(source, log_m, n, p, b, k, K, mask)
        if SEMIRING == "sum":
            bigger = z > top
            new_top = tl.maximum(top, z)
            ref = tl.where(new_top == float("-inf"), 0.0, new_top)
            e = tl.exp(tl.minimum(top, z) - ref)
            total = tl.where(bigger, total * e + 1.0, total + e)
            top = new_top
        else:
            top = tl.maximum(top, z)
    if SEMIRING == "sum":
        top = safe_log_total(total, top)
    o_ptr, o_n, o_b, o_k = out
    tl.store(o_ptr + n * o_n + b[:, None] * o_b + k[None, :] * o_k, top, mask=mask)


@triton.jit
def safe_log_total(total, top):
    """log(total) + top: total >= 1 where some term is finite; -inf where every term is -inf."""
    return tl.where(total > 0, tl.log(tl.where(total > 0, total, 1.0)) + top, float("-inf"))


@triton.jit
def mix_bwd_kernel(source, log_m, out, grad_out, grad, flows, B, K, BLOCK_B: tl.constexpr,
                   BK: tl.constexpr):
    """Backward of the sum semiring; flows = (partials, s_block, s_n, s_p, s_k)."""
    n = tl.program_id(0).to(tl.int64)
    b = tl.program_id(1) * BLOCK_B + tl.arange(0, BLOCK_B)
    k = tl.arange(0, BK)
    mask = (b < B)[:, None] & (k < K)[None, :]
    o_ptr, o_n, o_b, o_k = out
    g_ptr, g_n, g_b, g_k = grad_out
    y = tl.load(o_ptr + n * o_n + b[:, None] * o_b + k[None, :] * o_k, mask=mask,
                other=float("-inf"))
    g = tl.load(g_ptr + n * g_n + b[:, None] * g_b + k[None, :] * g_k, mask=mask, other=0.0)
    live = y > float("-inf")
    y = tl.where(live, y, 0.0)
    ptr, rows, start, rows_n, rows_a, slots, s_r, s_b, s_k, width = source
    f_ptr, f_s, f_n, f_p, f_k = flows
    for p in range(slots):
        z, lm, row = mix_term(source, log_m, n, p, b, k, K, mask)
        c = tl.where(live, tl.exp(z - y), 0.0) * g
        used = lm > float("-inf")
        tl.atomic_add(grad + row * s_r + b[:, None] * s_b + k[None, :] * s_k, c,
                      mask=mask & used[None, :], sem="relaxed")
        tl.store(f_ptr + tl.program_id(1) * f_s + n * f_n + p * f_p + k * f_k, tl.sum(c, axis=0),
                 mask=k < K)


def _grid_and_block(n: int, batch: int, k: int, kernel) -> tuple[tuple[int, int], int]:
    block_b = rows_per_program(batch, k, interpreted(kernel))
    return (n, triton.cdiv(batch, block_b)), block_b


def mix_forward_steps(source: Tensor, rows: Tensor, log_m: Tensor, out: Tensor,
                      semiring: str) -> list:
    n, batch, k = out.shape
    grid, block_b = _grid_and_block(n, batch, k, mix_fwd_kernel)
    op, _ = arena(source, rows)
    return [Launch(mix_fwd_kernel, lambda meta: grid,
                   (tuple(op), (log_m, *log_m.stride()), (out, *out.stride()), batch, k),
                   dict(SEMIRING=semiring, BLOCK_B=block_b, BK=next_pow2(k)),
                   ELEMENTWISE)]


def mix_backward_steps(source: Tensor, rows: Tensor, log_m: Tensor, out: Tensor,
                       grad_out: Tensor, grad_source: Tensor) -> tuple[list, Tensor]:
    """(steps, flows [N, P, K]): the kernel adds dL/dsource into grad_source; each sample block
    writes its flows to its own slice of a partials buffer, summed by the host."""
    n, batch, k = out.shape
    grid, block_b = _grid_and_block(n, batch, k, mix_bwd_kernel)
    flows = torch.empty(log_m.shape, dtype=log_m.dtype, device=log_m.device)
    blocks = grid[1]
    partial = flows if blocks == 1 else torch.empty(blocks, *log_m.shape, dtype=log_m.dtype,
                                                    device=log_m.device)
    f_strides = (0, *flows.stride()) if blocks == 1 else partial.stride()
    op, _ = arena(source, rows)
    steps: list = [Launch(mix_bwd_kernel, lambda meta: grid,
                          (tuple(op), (log_m, *log_m.stride()), (out, *out.stride()),
                           (grad_out, *grad_out.stride()), grad_source, (partial, *f_strides),
                           batch, k),
                          dict(BLOCK_B=block_b, BK=next_pow2(k)), ELEMENTWISE)]
    if blocks > 1:
        steps.append(lambda: torch.sum(partial, 0, out=flows))
    return steps, flows
