"""Width-1 einsums (every child has K = 1): plain products, the same in both semirings.

    out[n,b,o] = sum_j X_j[n,b,0] + log W[n,o,0]
backward: dL/dX_j[n,b,0] += sum_o g[n,b,o];  flows[n,o,0] = sum_b g[n,b,o]
(exactly the reference, which propagates g even where out = -inf). Elementwise, bound by memory.
Grid: (N, cdiv(B, BLOCK_B)), one [BLOCK_B, next_pow2(Ko)] tile per program; the children are
Arena operands (as the contraction's factors). Child gradients are added atomically where rows
may repeat (gathered rows, or another child of the op adding into the same arena) and by plain
read-add-write into exclusive blocks; each sample block writes its flows to its own slice of
[blocks, N, Ko], which the host sums.
"""
from __future__ import annotations

from typing import Sequence

import torch
import triton
import triton.language as tl
from torch import Tensor

from .triton_common import (ELEMENTWISE, Launch, arena, factor_rows, interpreted, member_index,
                            next_pow2, pad_factors, rows_per_program)


@triton.jit
def child_sum(children, n, b, bm, NF: tl.constexpr, GATHERS: tl.constexpr):
    """sum_j X_j[row_j(n), b, 0] as [BLOCK_B]."""
    base1, base2, base3 = factor_rows(children, n, GATHERS, NF)
    s = tl.load(base1 + b * children[0][7], mask=bm, other=0.0)
    if NF >= 2:
        s += tl.load(base2 + b * children[1][7], mask=bm, other=0.0)
    if NF == 3:
        s += tl.load(base3 + b * children[2][7], mask=bm, other=0.0)
    return s


@triton.jit
def product_fwd_kernel(children, log_w, out, B, KO, NF: tl.constexpr, GATHERS: tl.constexpr,
                       BLOCK_B: tl.constexpr, BKO: tl.constexpr):
    """out[n, b-block, :] = sum_j X_j[n, b, 0] + log W[n, :, 0]."""
    n = tl.program_id(0).to(tl.int64)
    b = tl.program_id(1) * BLOCK_B + tl.arange(0, BLOCK_B)
    bm = b < B
    o = tl.arange(0, BKO)
    om = o < KO
    s = child_sum(children, n, b, bm, NF, GATHERS)
    lw_ptr, lw_n, lw_o, lw_w = log_w
    w = tl.load(lw_ptr + n * lw_n + o * lw_o, mask=om, other=0.0)
    o_ptr, o_n, o_b, o_o = out
    tl.store(o_ptr + n * o_n + b[:, None] * o_b + o[None, :] * o_o, s[:, None] + w[None, :],
             mask=bm[:, None] & om[None, :])


@triton.jit
def add_unit_grad(child, grad, n, b, bm, g, GATHER: tl.constexpr, EXCLUSIVE: tl.constexpr):
    """grad[row of member n, b, 0] += g [BLOCK_B]."""
    ptrs = grad + member_index(child, n, 0, GATHER) * child[6] + b * child[7]
    if EXCLUSIVE:
        tl.store(ptrs, tl.load(ptrs, mask=bm, other=0.0) + g, mask=bm)
    else:
        tl.atomic_add(ptrs, g, mask=bm, sem="relaxed")


@triton.jit
def product_bwd_kernel(children, grads, grad_out, flows, B, KO, NF: tl.constexpr,
                       GATHERS: tl.constexpr, EXCLUSIVE: tl.constexpr, BLOCK_B: tl.constexpr,
                       BKO: tl.constexpr):
    """flows[block, n, :] = sum_b g;  dL/dX_j[n, b-block, 0] += sum_o g."""
    n = tl.program_id(0).to(tl.int64)
    b = tl.program_id(1) * BLOCK_B + tl.arange(0, BLOCK_B)
    bm = b < B
    o = tl.arange(0, BKO)
    om = o < KO
    g_ptr, g_n, g_b, g_o = grad_out
    g = tl.load(g_ptr + n * g_n + b[:, None] * g_b + o[None, :] * g_o,
                mask=bm[:, None] & om[None, :], other=0.0)
    f_ptr, f_s, f_n, f_o = flows
    tl.store(f_ptr + tl.program_id(1) * f_s + n * f_n + o * f_o, tl.sum(g, axis=0), mask=om)
    g_units = tl.sum(g, axis=1)
    add_unit_grad(children[0], grads[0], n, b, bm, g_units, GATHERS[0], EXCLUSIVE[0])
    if NF >= 2:
        add_unit_grad(children[1], grads[1], n, b, bm, g_units, GATHERS[1], EXCLUSIVE[1])
    if NF == 3:
        add_unit_grad(children[2], grads[2], n, b, bm, g_units, GATHERS[2], EXCLUSIVE[2])


def _children(sources: Sequence[Tensor], rows: Sequence) -> tuple[tuple, tuple]:
    return pad_factors(*zip(*[arena(s, r) for s, r in zip(sources, rows)]))


def product_forward_steps(sources: Sequence[Tensor], rows: Sequence, log_w: Tensor,
                          out: Tensor) -> list:
    n, batch, k_out = out.shape
    children, gathers = _children(sources, rows)
    block_b = rows_per_program(batch, k_out, interpreted(product_fwd_kernel))
    grid = (n, triton.cdiv(batch, block_b))
    return [Launch(product_fwd_kernel, lambda meta: grid,
                   (children, (log_w, *log_w.stride()), (out, *out.stride()), batch, k_out),
                   dict(NF=len(sources), GATHERS=gathers, BLOCK_B=block_b, BKO=next_pow2(k_out)),
                   ELEMENTWISE)]


def _storage(t: Tensor) -> int:
    return t.untyped_storage().data_ptr()


def product_backward_steps(sources: Sequence[Tensor], rows: Sequence, grad_out: Tensor,
                           grad_sources: Sequence[Tensor], log_w: Tensor) -> tuple[list, Tensor]:
    """(steps, flows [N, Ko, 1])."""
    n, batch, k_out = grad_out.shape
    children, gathers = _children(sources, rows)
    exclusive = [isinstance(r, int) and sum(_storage(g) == _storage(grad) for g in grad_sources)
                 == 1 for r, grad in zip(rows, grad_sources)]
    exclusive += [False] * (3 - len(exclusive))
    grads = tuple(grad_sources) + (grad_sources[0],) * (3 - len(grad_sources))
    block_b = rows_per_program(batch, k_out, interpreted(product_bwd_kernel))
    grid = (n, triton.cdiv(batch, block_b))
    flows = torch.empty(log_w.shape, dtype=log_w.dtype, device=log_w.device)
    partial = flows if grid[1] == 1 else torch.empty(grid[1], *log_w.shape[:2],
                                                     dtype=log_w.dtype, device=log_w.device)
    f_strides = (0, *flows.stride()[:2]) if grid[1] == 1 else partial.stride()
    steps: list = [Launch(product_bwd_kernel, lambda meta: grid,
                          (children, grads, (grad_out, *grad_out.stride()), (partial, *f_strides),
                           batch, k_out),
                          dict(NF=len(sources), GATHERS=gathers, EXCLUSIVE=tuple(exclusive),
                               BLOCK_B=block_b, BKO=next_pow2(k_out)),
                          ELEMENTWISE)]
    if grid[1] > 1:
        steps.append(lambda: torch.sum(partial, 0, out=flows.squeeze(-1)))
    return steps, flows
