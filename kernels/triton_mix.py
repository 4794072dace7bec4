"""Mix layers: per region, a weighted sum (or max) over its P partitions' rows, scales aligned.

    c[p,b]   = exp(s_p[b] - top[b]),   top = max_p s_p  over the real partitions (mask)
    y[b,k]   = sum_p M[n,p,k] c[p,b] x_p[b,k]           (max semiring: max_p)
    norm[b]  = max(max_k y[b,k], TINY),  values = y / norm,  scales = top + log(norm)
backward, with h = g / (v norm + TINY) (= dL/dy) and t_p = M c x_p:
    grads[rows[n,p]] += t_p * h     (atomic: rows may repeat across regions)
    flows[n,p,k]      = sum_b t_p * h                      (overwritten)

Padded partitions (mask 0; M = 0, row 0) contribute nothing and get no flow. No contraction:
elementwise, bound by memory bandwidth.

Forward: grid (N, cdiv(B, BLOCK_B)); each program holds a [BLOCK_B, next_pow2(K)] tile and walks
p with an online maximum of the scales (the sum is rescaled by exp(top - top') when it grows, one
exp per partition and sample, none per unit). Backward: grid (N,); each program walks the whole
batch in blocks (the maximum of the scales first, then the partitions), so it owns its region's
flows and adds them up in place without atomics (deterministic).
"""
from __future__ import annotations

import triton
import triton.language as tl
from torch import Tensor

from .triton_common import (Launch, Operand, Output, elementwise, limits, member_index,
                            next_pow2, output_grad)


@triton.jit
def partition(source, live, n, p, b, bm):
    """(row, real [1], scale [BLOCK_B]) of member n's partition p; the scale is -inf where
    padded or masked."""
    row = member_index(source, n, p, True)
    real = tl.load(live + n * source[4] + p * source[5] + tl.zeros([1], tl.int32)) != 0
    s = tl.load(source[1] + row * source[10] + b * source[11], mask=bm & real,
                other=float("-inf"))
    return row, real, s


@triton.jit
def top_scale(source, live, n, b, bm, BLOCK_B: tl.constexpr):
    """max_p s_p over the real partitions [BLOCK_B], 0 where there is none (-inf)."""
    top = tl.full([BLOCK_B], float("-inf"), source[1].dtype.element_ty)
    for p in range(source[6]):
        row, real, s = partition(source, live, n, p, b, bm)
        top = tl.maximum(top, s)
    return tl.where(top == float("-inf"), 0.0, top)


@triton.jit
def mix_fwd_kernel(source, live, m, out, B, K, SEMIRING: tl.constexpr, TINY: tl.constexpr,
                   BLOCK_B: tl.constexpr, BK: tl.constexpr):
    """values, norms and scales of region n's sample block (see the module doc)."""
    n = tl.program_id(0).to(tl.int64)
    b = tl.program_id(1) * BLOCK_B + tl.arange(0, BLOCK_B)
    k = tl.arange(0, BK)
    bm = b < B
    km = k < K
    mask = bm[:, None] & km[None, :]
    dtype = source[0].dtype.element_ty
    top = tl.full([BLOCK_B], float("-inf"), dtype)
    acc = tl.zeros([BLOCK_B, BK], dtype)
    for p in range(source[6]):
        row, real, s = partition(source, live, n, p, b, bm)
        new_top = tl.maximum(top, s)
        ref = tl.where(new_top == float("-inf"), 0.0, new_top)
        weight = tl.load(m[0] + n * m[1] + p * m[2] + k * m[3], mask=km & real, other=0.0)
        x = tl.load(source[0] + row * source[7] + b[:, None] * source[8] + k[None, :] * source[9],
                    mask=mask & real[None, :], other=0.0)
        term = weight[None, :] * tl.exp(s - ref)[:, None] * x
        if SEMIRING == "max":
            acc = tl.maximum(acc * tl.exp(top - ref)[:, None], term)
        else:
            acc = acc * tl.exp(top - ref)[:, None] + term
        top = new_top
    norm = tl.maximum(tl.max(acc, axis=1), TINY)
    tl.store(out[0] + n * out[3] + b[:, None] * out[4] + k[None, :] * out[5], acc / norm[:, None],
             mask=mask)
    offs = n * out[6] + b * out[7]
    tl.store(out[2] + offs, norm, mask=bm)
    tl.store(out[1] + offs, tl.where(top == float("-inf"), 0.0, top) + tl.log(norm), mask=bm)


@triton.jit
def mix_bwd_kernel(source, live, m, out, grad_out, grad, flows, B, K, TINY: tl.constexpr,
                   BLOCK_B: tl.constexpr, BK: tl.constexpr):
    """Children's and weights' flows of region n (see the module doc)."""
    n = tl.program_id(0).to(tl.int64)
    k = tl.arange(0, BK)
    km = k < K
    for b0 in range(0, B, BLOCK_B):
        b = b0 + tl.arange(0, BLOCK_B)
        bm = b < B
        mask = bm[:, None] & km[None, :]
        ref = top_scale(source, live, n, b, bm, BLOCK_B)
        h = output_grad(out, grad_out, n, b[:, None], k[None, :], bm[:, None], mask, TINY)
        for p in range(source[6]):
            row, real, s = partition(source, live, n, p, b, bm)
            weight = tl.load(m[0] + n * m[1] + p * m[2] + k * m[3], mask=km & real, other=0.0)
            x = tl.load(source[0] + row * source[7] + b[:, None] * source[8]
                        + k[None, :] * source[9], mask=mask & real[None, :], other=0.0)
            contrib = weight[None, :] * tl.exp(s - ref)[:, None] * x * h
            tl.atomic_add(grad + row * source[7] + b[:, None] * source[8] + k[None, :] * source[9],
                          contrib, mask=mask & real[None, :], sem="relaxed")
            f_ptrs = flows[0] + n * flows[1] + p * flows[2] + k * flows[3]
            before = tl.load(f_ptrs, mask=km & (b0 > 0), other=0.0)
            tl.store(f_ptrs, before + tl.sum(contrib, axis=0), mask=km)
        tl.debug_barrier()  # this block's flows are stored before the next block reads them


def mix_forward_launch(source: Operand, live: Tensor, m: Tensor, out: Output, n: int, batch: int,
                       k: int, semiring: str) -> Launch:
    """`live` [N, P] (int8, nonzero for real partitions) with the strides of source's rows."""
    return Launch(mix_fwd_kernel, lambda meta: (n, triton.cdiv(batch, meta["BLOCK_B"])),
                  (tuple(source), live, (m, *m.stride()), tuple(out), batch, k),
                  dict(SEMIRING=semiring, TINY=limits(m.dtype)["TINY"], BK=next_pow2(k)),
                  elementwise(batch, k, mix_fwd_kernel))


def mix_backward_launch(source: Operand, live: Tensor, m: Tensor, out: Output, grad_out: Tensor,
                        grad: Tensor, flows: Tensor) -> Launch:
    n, batch, k = grad_out.shape
    if tuple(grad.stride()) != tuple(source[7:10]):
        raise ValueError("a flow arena must have its value arena's strides")
    return Launch(mix_bwd_kernel, lambda meta: (n,),
                  (tuple(source), live, (m, *m.stride()), tuple(out),
                   (grad_out, *grad_out.stride()), grad, (flows, *flows.stride()), batch, k),
                  dict(TINY=limits(m.dtype)["TINY"], BK=next_pow2(k)),
                  elementwise(batch, k, mix_bwd_kernel))
