"""Width-1 einsums (every child has K = 1): plain products without weights, the same in both
semirings.

    y[n,b]       = prod_j X_j[n,b,0],   norm = max(y, TINY)
    values[n,b,o] = y / norm  (every output unit),  scales = sum_j s_j + log(norm)
backward: dL/dlog X_j[n,b,0] += sum_o g[n,b,o]   (each output unit is the product)

Elementwise, bound by memory. Grid: (N, cdiv(B, BLOCK_B)), one [BLOCK_B, next_pow2(Ko)] tile
per program; the children are Operands (as the contraction's factors). Child flows are added
atomically where rows may repeat (gathered rows, or another child of the op adding into the same
arena) and by plain read-add-write into exclusive blocks.
"""
from __future__ import annotations

from typing import Sequence

import triton
import triton.language as tl
from torch import Tensor

from .triton_common import (Launch, Operand, Output, add_rows, elementwise, limits,
                            member_scale, member_units, next_pow2, pad3)


@triton.jit
def product_fwd_kernel(children, out, B, KO, NF: tl.constexpr, GATHERS: tl.constexpr,
                       TINY: tl.constexpr, FLOOR: tl.constexpr, BLOCK_B: tl.constexpr,
                       BKO: tl.constexpr):
    """values, norms and scales of member n's sample block (see the module doc)."""
    n = tl.program_id(0).to(tl.int64)
    b = tl.program_id(1) * BLOCK_B + tl.arange(0, BLOCK_B)
    bm = b < B
    unit = tl.zeros([1], tl.int32)
    y = member_units(children[0], n, b, unit, bm[:, None], GATHERS[0])
    scale = member_scale(children[0], n, b, bm, tl.zeros([BLOCK_B], y.dtype), GATHERS[0], FLOOR)
    if NF >= 2:
        y *= member_units(children[1], n, b, unit, bm[:, None], GATHERS[1])
        scale = member_scale(children[1], n, b, bm, scale, GATHERS[1], FLOOR)
    if NF == 3:
        y *= member_units(children[2], n, b, unit, bm[:, None], GATHERS[2])
        scale = member_scale(children[2], n, b, bm, scale, GATHERS[2], FLOOR)
    norm = tl.maximum(tl.max(y, axis=1), TINY)
    o = tl.arange(0, BKO)
    v = y / norm[:, None] + tl.zeros([BLOCK_B, BKO], y.dtype)
    tl.store(out[0] + n * out[3] + b[:, None] * out[4] + o[None, :] * out[5], v,
             mask=bm[:, None] & (o < KO)[None, :])
    offs = n * out[6] + b * out[7]
    tl.store(out[2] + offs, norm, mask=bm)
    tl.store(out[1] + offs, scale + tl.log(norm), mask=bm)


@triton.jit
def product_bwd_kernel(children, grads, grad_out, B, KO, NF: tl.constexpr,
                       GATHERS: tl.constexpr, EXCLUSIVE: tl.constexpr, BLOCK_B: tl.constexpr,
                       BKO: tl.constexpr):
    """dL/dlog X_j[n, b-block, 0] += sum_o g."""
    n = tl.program_id(0).to(tl.int64)
    b = tl.program_id(1) * BLOCK_B + tl.arange(0, BLOCK_B)
    bm = b < B
    o = tl.arange(0, BKO)
    g = tl.load(grad_out[0] + n * grad_out[1] + b[:, None] * grad_out[2] + o[None, :] * grad_out[3],
                mask=bm[:, None] & (o < KO)[None, :], other=0.0)
    total = tl.sum(g, axis=1)[:, None]
    unit = tl.zeros([1], tl.int32)
    add_rows(children[0], grads[0], n, b, unit, bm[:, None], total, GATHERS[0], EXCLUSIVE[0],
             False)
    if NF >= 2:
        add_rows(children[1], grads[1], n, b, unit, bm[:, None], total, GATHERS[1],
                 EXCLUSIVE[1], False)
    if NF == 3:
        add_rows(children[2], grads[2], n, b, unit, bm[:, None], total, GATHERS[2],
                 EXCLUSIVE[2], False)


def product_forward_launch(children: Sequence[tuple[Operand, bool]], out: Output, n: int,
                           batch: int, k_out: int) -> Launch:
    ops, gathers = pad3([op for op, _ in children], [g for _, g in children])
    return Launch(product_fwd_kernel, lambda meta: (n, triton.cdiv(batch, meta["BLOCK_B"])),
                  (ops, tuple(out), batch, k_out),
                  dict(NF=len(children), GATHERS=gathers, BKO=next_pow2(k_out),
                       **limits(out.values.dtype)),
                  elementwise(batch, k_out, product_fwd_kernel))


def _storage(t: Tensor) -> int:
    return t.untyped_storage().data_ptr()


def product_backward_launch(children: Sequence[tuple[Operand, bool]], grads: Sequence[Tensor],
                            grad_out: Tensor) -> Launch:
    """Adds into grads[j] (child j's flow arena, with its value arena's strides)."""
    n, batch, k_out = grad_out.shape
    ops, gathers = pad3([op for op, _ in children], [g for _, g in children])
    exclusive = [not gather and sum(_storage(g) == _storage(grad) for g in grads) == 1
                 for (_, gather), grad in zip(children, grads)]
    exclusive += [False] * (3 - len(exclusive))
    padded = tuple(grads) + (grads[0],) * (3 - len(grads))
    return Launch(product_bwd_kernel, lambda meta: (n, triton.cdiv(batch, meta["BLOCK_B"])),
                  (ops, padded, (grad_out, *grad_out.stride()), batch, k_out),
                  dict(NF=len(children), GATHERS=gathers, EXCLUSIVE=tuple(exclusive),
                       BKO=next_pow2(k_out)), elementwise(batch, k_out, product_bwd_kernel))
