"""Children's flows of a weighted product layer: one GEMM-shaped contraction per child, added
into the child's flow arena.

With h = dL/d(the raw output y = W p) staged by `triton_flows` and p = F1 (x) F2 (x) F3 the
forward's product (`triton_einsum`), the flow into unit c of factor j is

    dL/dlog F_j[b,c] = F_j[b,c] sum_{o, d_i (i != j)} h[b,o] W[o,(.., c, ..)] prod_{i!=j} F_i[b,d_i]

(einsum: F_j is child j; element-wise product: one factor, p = the product of the slots, and
every slot's child gets dL/dlog p). So it is the forward's contraction over q = (o, the other
factors' units), with the factors (H, F_i for i != j), columns c = the units of factor j, and
the weights viewed with digit strides:

    acc[b,c] = sum_q T[b,q] V[q,c],   T[b,q] = h[b,o] F_i[b,d_i] ...,   V[q,c] = W[n,o,(.., c, ..)]
    grads[rows_j[n, a], b, c] += F_j[b,c] * acc[b,c]         for every slot a of factor j

Program (member n, block of BLOCK_B samples, block of BLOCK_C columns) walks q in chunks of
BLOCK_Q as the forward does (`tl.dot` in the chosen precision, an FMA reduction for C <= 8).
The adds are atomic where rows may repeat (gathered rows; slots), plain read-add-writes into an
exclusive block; padding slots of element-wise products (row 0) get nothing, as in the
reference. Grid: (N * cdiv(B, BLOCK_B) * cdiv(C, BLOCK_C),), sample blocks fastest.
"""
from __future__ import annotations

from typing import Sequence

import triton
import triton.language as tl
from torch import Tensor

from .triton_common import (Launch, Operand, accumulate, add_rows, bench_quickly, interpreted,
                            kron_tile, member_units, next_pow2, pad3, padding_pruner, tile,
                            unravel, without)


@triton.jit
def grads_kernel(factors, w, target, grad, B, C, K1, K2, K3, NF: tl.constexpr,
                 GATHERS: tl.constexpr, TARGET_GATHER: tl.constexpr, EXCLUSIVE: tl.constexpr,
                 SKIP_ROW0: tl.constexpr, PRECISION: tl.constexpr, DOT: tl.constexpr,
                 BLOCK_B: tl.constexpr, BLOCK_Q: tl.constexpr, BLOCK_C: tl.constexpr):
    """One (member, sample block, column block); w = (ptr, s_n, s_1, s_2, s_3, s_c): the digit
    strides of q = (d1, d2, d3) and the column stride."""
    blocks_b = tl.cdiv(B, BLOCK_B)
    blocks_c = tl.cdiv(C, BLOCK_C)
    pid = tl.program_id(0)
    n = (pid // (blocks_b * blocks_c)).to(tl.int64)
    c = ((pid // blocks_b) % blocks_c) * BLOCK_C + tl.arange(0, BLOCK_C)
    b = (pid % blocks_b) * BLOCK_B + tl.arange(0, BLOCK_B)
    bm = b < B
    cm = c < C
    Q = K1 * K2 * K3
    acc = tl.zeros([BLOCK_B, BLOCK_C], w[0].dtype.element_ty)
    for q0 in range(0, Q, BLOCK_Q):
        q = q0 + tl.arange(0, BLOCK_Q)
        qm = q < Q
        tile = kron_tile(factors, n, b, q, bm[:, None] & qm[None, :], K2, K3, NF, GATHERS)
        d1, d2, d3 = unravel(q, K2, K3)
        offs = n * w[1] + d1 * w[2] + d2 * w[3] + d3 * w[4]
        v = tl.load(w[0] + offs[:, None] + c[None, :] * w[5], mask=qm[:, None] & cm[None, :],
                    other=0.0)
        acc = accumulate(acc, tile, v, "sum", PRECISION, DOT)
    mask = bm[:, None] & cm[None, :]
    acc *= member_units(target, n, b, c, mask, TARGET_GATHER)
    add_rows(target, grad, n, b, c, mask, acc, TARGET_GATHER, EXCLUSIVE, SKIP_ROW0)


def _config(*row) -> triton.Config:
    """(BLOCK_B, BLOCK_Q, BLOCK_C or None, warps, stages)."""
    return tile(("BLOCK_B", "BLOCK_Q", "BLOCK_C"), *row)


DOT_CONFIGS = [_config(*c) for c in [(64, 32, 64, 4, 3), (128, 32, 64, 8, 3), (64, 64, 32, 8, 3),
                                     (128, 32, 32, 4, 3), (64, 32, 16, 4, 3), (128, 32, 16, 8, 3),
                                     (64, 16, 16, 4, 3), (64, 16, 32, 4, 3)]]
REDUCE_CONFIGS = [_config(*c) for c in [(32, 32, None, 4, 2), (64, 16, None, 4, 2),
                                        (16, 64, None, 4, 2)]]
KEY = ["B", "C", "K1", "K2", "K3", "NF", "PRECISION"]

prune_padding = padding_pruner(lambda args: {
    ("BLOCK_C",): args["C"], ("BLOCK_Q",): args["K1"] * args["K2"] * args["K3"]})

TUNED = {mode: triton.autotune(configs, key=KEY, do_bench=bench_quickly, restore_value=["grad"],
                               prune_configs_by={"early_config_prune": prune_padding}
                               )(grads_kernel)
         for mode, configs in (("dot", DOT_CONFIGS), ("reduce", REDUCE_CONFIGS))}


def grads_launch(factors: Sequence[tuple[Operand, bool]], ks: Sequence[int], w: tuple,
                 target: tuple[Operand, bool], grad: Tensor, n: int, batch: int, precision: str,
                 exclusive: bool = False, skip_row0: bool = False,
                 config: triton.Config | None = None) -> Launch:
    """grads_kernel over n members: factors (H first) with ks units, `w` = (ptr, s_n, s_1, s_2,
    s_3, s_c), `target` the factor whose flows are added into `grad` (same strides as its
    values)."""
    ops, gathers = pad3([op for op, _ in factors], [g for _, g in factors])
    ks = list(ks) + [1] * (3 - len(ks))
    target_op, target_gather = target
    c = target_op.k
    if tuple(grad.stride()) != tuple(target_op[7:10]):
        raise ValueError("a flow arena must have its value arena's strides")
    dot = c > 8
    constexprs = dict(NF=len(factors), GATHERS=gathers, TARGET_GATHER=target_gather,
                      EXCLUSIVE=exclusive, SKIP_ROW0=skip_row0, PRECISION=precision, DOT=dot)
    if not dot:
        constexprs["BLOCK_C"] = next_pow2(c)
    if config is None and interpreted(grads_kernel):
        block_b = min(32, next_pow2(batch, 16))
        block_c = next_pow2(c, 16) if dot else next_pow2(c)
        q = ks[0] * ks[1] * ks[2]
        chunk = min(next_pow2(q, 16), 512 if dot else 32768 // (block_b * block_c))
        config = _config(block_b, chunk, block_c if dot else None, 4, 1)
    if not dot:
        config = without(config, "BLOCK_C")

    def grid(meta):
        block_c = meta.get("BLOCK_C", constexprs.get("BLOCK_C"))
        return (n * triton.cdiv(batch, meta["BLOCK_B"]) * triton.cdiv(c, block_c),)

    tuned = TUNED["dot" if dot else "reduce"]
    return Launch(grads_kernel, grid, (ops, tuple(w), tuple(target_op), grad, batch, c, *ks),
                  constexprs, config, tuned, tuned.configs)
