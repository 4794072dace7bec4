"""The forward kernel of the weighted product layers (einsum and element-wise): product,
contraction and normalization in one program.

For member n and sample b, with up to three factors F_f (each the element-wise product of its
slots' rows: one slot per einsum child, A slots for an element-wise product) in linear space:

    p[b,q]  = F1[b,d1] F2[b,d2] F3[b,d3],      q = (d1, d2, d3) row-major over [K1, K2, K3]
    y[b,o]  = sum_q W[n,o,q] p[b,q]            (max semiring: max_q W[n,o,q] p[b,q])
    norm[b] = max(max_o y[b,o], TINY),  values = y / norm,  scales = sum_f,slots s + log(norm)

(TINY = the smallest normal float: an all-zero row stays 0.) Einsum: F_f = child f, W [N, Ko,
K1*K2*K3]. Element-wise product: one factor whose A slots are the children, W [N, Ko, K].

Program (member n, block of BLOCK_B samples) holds every output unit of its rows, so the row
maximum is known in registers: the columns are BLOCK_C (+ BLOCK_C2 in a second accumulator that
shares the product tile: Ko = 40 as 32 + 16) wide (SINGLE), or, for wider layers, groups of
that many columns whose raw y is stored, then divided by the row maximum in a second pass. It
walks q in chunks of BLOCK_Q: the [BLOCK_B, BLOCK_Q] tile p is built in registers from the
gathered factor entries (no padding of the factors' widths: q is flat, only the last chunk is
masked) and contracted with the [BLOCK_Q, BLOCK_C] weight tile W^T by `tl.dot` in the chosen
precision (`triton_common.contract`), by an FMA reduction when Ko <= 8 (roots), or by a
max-product reduction (max semiring). One launch per layer; grid (N * cdiv(B, BLOCK_B),).
"""
from __future__ import annotations

from typing import Sequence

import triton
import triton.language as tl

from .triton_common import (Launch, Operand, Output, accumulate, bench_quickly, interpreted,
                            kron_tile, limits, member_scale, next_pow2, pad3, padding,
                            padding_pruner, tile)


@triton.jit
def contract_columns(factors, w, n, b, bm, c0, C, Q, K2, K3, NF: tl.constexpr,
                     GATHERS: tl.constexpr, SEMIRING: tl.constexpr, PRECISION: tl.constexpr,
                     DOT: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_Q: tl.constexpr,
                     BLOCK_C: tl.constexpr, BLOCK_C2: tl.constexpr):
    """y for columns [c0, c0 + BLOCK_C) and, if BLOCK_C2 > 0, the next BLOCK_C2 (else the
    first block again): (acc [BLOCK_B, BLOCK_C], acc2)."""
    c = c0 + tl.arange(0, BLOCK_C)
    cm = c < C
    acc = tl.zeros([BLOCK_B, BLOCK_C], w[0].dtype.element_ty)
    acc2 = acc
    if BLOCK_C2 > 0:
        c2 = c0 + BLOCK_C + tl.arange(0, BLOCK_C2)
        acc2 = tl.zeros([BLOCK_B, BLOCK_C2], w[0].dtype.element_ty)
    for q0 in range(0, Q, BLOCK_Q):
        q = q0 + tl.arange(0, BLOCK_Q)
        qm = q < Q
        tile = kron_tile(factors, n, b, q, bm[:, None] & qm[None, :], K2, K3, NF, GATHERS)
        rows = w[0] + n * w[1] + q[:, None] * w[3]
        v = tl.load(rows + c[None, :] * w[2], mask=qm[:, None] & cm[None, :], other=0.0)
        acc = accumulate(acc, tile, v, SEMIRING, PRECISION, DOT)
        if BLOCK_C2 > 0:
            v2 = tl.load(rows + c2[None, :] * w[2], mask=qm[:, None] & (c2 < C)[None, :],
                         other=0.0)
            acc2 = accumulate(acc2, tile, v2, SEMIRING, PRECISION, DOT)
    return acc, acc2


@triton.jit
def store_columns(out, n, b, bm, c0, C, y, norm, BLOCK_C: tl.constexpr):
    """values[n, b, c0:c0+BLOCK_C] = y / norm (norm [BLOCK_B, 1], or 1 for raw values)."""
    c = c0 + tl.arange(0, BLOCK_C)
    tl.store(out[0] + n * out[3] + b[:, None] * out[4] + c[None, :] * out[5], y / norm,
             mask=bm[:, None] & (c < C)[None, :])


@triton.jit
def einsum_fwd_kernel(factors, w, out, B, C, K1, K2, K3, NF: tl.constexpr,
                      GATHERS: tl.constexpr, SEMIRING: tl.constexpr, PRECISION: tl.constexpr,
                      DOT: tl.constexpr, SINGLE: tl.constexpr, TINY: tl.constexpr,
                      FLOOR: tl.constexpr,
                      BLOCK_B: tl.constexpr, BLOCK_Q: tl.constexpr, BLOCK_C: tl.constexpr,
                      BLOCK_C2: tl.constexpr):
    """One (member, sample block): values, norms and scales of its rows (see the module doc)."""
    blocks_b = tl.cdiv(B, BLOCK_B)
    n = (tl.program_id(0) // blocks_b).to(tl.int64)
    b = (tl.program_id(0) % blocks_b) * BLOCK_B + tl.arange(0, BLOCK_B)
    bm = b < B
    Q = K1 * K2 * K3
    scale = member_scale(factors[0], n, b, bm, tl.zeros([BLOCK_B], w[0].dtype.element_ty),
                         GATHERS[0], FLOOR)
    if NF >= 2:
        scale = member_scale(factors[1], n, b, bm, scale, GATHERS[1], FLOOR)
    if NF == 3:
        scale = member_scale(factors[2], n, b, bm, scale, GATHERS[2], FLOOR)
    if SINGLE:
        acc, acc2 = contract_columns(factors, w, n, b, bm, 0, C, Q, K2, K3, NF, GATHERS, SEMIRING,
                                     PRECISION, DOT, BLOCK_B, BLOCK_Q, BLOCK_C, BLOCK_C2)
        top = tl.max(acc, axis=1)
        if BLOCK_C2 > 0:
            top = tl.maximum(top, tl.max(acc2, axis=1))
        norm = tl.maximum(top, TINY)
        store_columns(out, n, b, bm, 0, C, acc, norm[:, None], BLOCK_C)
        if BLOCK_C2 > 0:
            store_columns(out, n, b, bm, BLOCK_C, C, acc2, norm[:, None], BLOCK_C2)
    else:  # column groups: raw values first, then divided by the row maximum
        top = tl.zeros([BLOCK_B], w[0].dtype.element_ty)
        for c0 in range(0, C, BLOCK_C + BLOCK_C2):
            acc, acc2 = contract_columns(factors, w, n, b, bm, c0, C, Q, K2, K3, NF, GATHERS,
                                         SEMIRING, PRECISION, DOT, BLOCK_B, BLOCK_Q, BLOCK_C,
                                         BLOCK_C2)
            top = tl.maximum(top, tl.max(acc, axis=1))
            store_columns(out, n, b, bm, c0, C, acc, 1.0, BLOCK_C)
            if BLOCK_C2 > 0:
                top = tl.maximum(top, tl.max(acc2, axis=1))
                store_columns(out, n, b, bm, c0 + BLOCK_C, C, acc2, 1.0, BLOCK_C2)
        norm = tl.maximum(top, TINY)
        tl.debug_barrier()  # every thread's raw values are stored before any is read back
        for c0 in range(0, C, BLOCK_C):
            c = c0 + tl.arange(0, BLOCK_C)
            ptrs = out[0] + n * out[3] + b[:, None] * out[4] + c[None, :] * out[5]
            mask = bm[:, None] & (c < C)[None, :]
            tl.store(ptrs, tl.load(ptrs, mask=mask, other=0.0) / norm[:, None], mask=mask)
    offs = n * out[6] + b * out[7]
    tl.store(out[2] + offs, norm, mask=bm)
    tl.store(out[1] + offs, scale + tl.log(norm), mask=bm)


# ------------------------------------------------------------------------------ tiles
def _config(*row) -> triton.Config:
    """(BLOCK_B, BLOCK_Q, warps, stages)."""
    return tile(("BLOCK_B", "BLOCK_Q"), *row)


# tl.dot tiles (every dot dim >= 16); the columns (BLOCK_C, BLOCK_C2) are chosen by the host.
DOT_CONFIGS = [_config(*c) for c in [(64, 32, 4, 3), (128, 32, 8, 3), (64, 16, 4, 3),
                                     (128, 16, 8, 3), (64, 32, 8, 3), (32, 32, 8, 3),
                                     (64, 16, 8, 3)]]
# FMA reductions (Ko <= 8) and max-products: [BLOCK_B, BLOCK_Q, BLOCK_C] temporaries <= 8192.
REDUCE_CONFIGS = [_config(*c) for c in [(32, 32, 4, 2), (64, 16, 4, 2), (16, 64, 4, 2)]]
MAX_CONFIGS = [_config(*c) for c in [(16, 16, 4, 2), (32, 8, 4, 2), (8, 32, 4, 2)]]
KEY = ["B", "C", "K1", "K2", "K3", "NF", "SEMIRING", "PRECISION"]
# Register values per thread a dot configuration may hold in its accumulators and split operand
# tiles (more spills registers; measured with tests/gpu_compile.py --resources).
VALUES_PER_THREAD = 72
MAX_COLUMNS = 32  # column group of the max semiring (its product temporary is 3-D)
WIDEST = 128  # the most columns one program holds (wider layers run column groups of 64)


def _prune(configs, named_args: dict, **kwargs) -> list:
    """The configurations whose registers fit (dot: accumulators and the hi/lo parts of both
    operand tiles; otherwise the [BLOCK_B, BLOCK_Q, columns] product), then those padding Q
    least (at most 1.5x)."""
    columns = kwargs["BLOCK_C"] + kwargs["BLOCK_C2"]

    def fits(cfg) -> bool:
        rows, chunk = cfg.kwargs["BLOCK_B"], cfg.kwargs["BLOCK_Q"]
        if not kwargs["DOT"]:
            return rows * chunk * columns <= 8192
        values = rows * columns + 2 * chunk * (rows + columns)
        return values <= VALUES_PER_THREAD * 32 * cfg.num_warps
    return _prune_q([cfg for cfg in configs if fits(cfg)] or configs[:1], named_args, **kwargs)


_prune_q = padding_pruner(lambda args: {("BLOCK_Q",): args["K1"] * args["K2"] * args["K3"]})
TUNED = {mode: triton.autotune(configs, key=KEY, do_bench=bench_quickly,
                               prune_configs_by={"early_config_prune": _prune}
                               )(einsum_fwd_kernel)
         for mode, configs in (("dot", DOT_CONFIGS), ("reduce", REDUCE_CONFIGS),
                               ("max", MAX_CONFIGS))}


def mode_of(semiring: str, c: int) -> str:
    """'max' (max-product), 'dot' (tl.dot), or 'reduce' (FMA reduction for C <= 8)."""
    return "max" if semiring == "max" else ("dot" if c > 8 else "reduce")


def columns_for(c: int, mode: str) -> tuple[int, int, bool]:
    """(BLOCK_C, BLOCK_C2, SINGLE): the least padded cover of c output columns by a block of a
    power of two >= 16 (tl.dot's minimum) and optionally a smaller one (40 = 32 + 16, 20 =
    16 + 16) of at most WIDEST columns; wider layers run in groups of 64 (max semiring: groups of
    MAX_COLUMNS)."""
    if mode == "reduce":
        return next_pow2(c), 0, True
    if mode == "max":
        block = min(next_pow2(c), MAX_COLUMNS)
        return block, 0, c <= block
    if c > WIDEST:
        return 64, 0, False
    covers = [(p, q) for p in (16, 32, 64, 128) for q in (0, 16, 32, 64)
              if q <= p and c <= p + q <= WIDEST]
    return (*min(covers, key=lambda pair: (sum(pair), pair[1])), True)


def fixed_config(batch: int, q: int, columns: int, mode: str) -> triton.Config:
    """The interpreter's tiles: few, large programs and chunks (each program and loop step costs
    milliseconds regardless of size); BLOCK_B <= 32 so that B = 33 still runs two sample
    blocks."""
    block_b = min(32, next_pow2(batch, 16))
    block_q = min(next_pow2(q, 16), 512 if mode == "dot" else max(1, 32768 // (block_b * columns)))
    return _config(block_b, block_q, 4, 1)


def forward_launch(factors: Sequence[tuple[Operand, bool]], w, out: Output, n: int, batch: int,
                   c: int, ks: Sequence[int], semiring: str, precision: str,
                   columns: tuple[int, int, bool] | None = None,
                   config: triton.Config | None = None) -> Launch:
    """einsum_fwd_kernel over n members (see the module doc): `factors` (operand, GATHER) of up
    to three factors with ks units, `w` the weights tuple, `columns` / `config` force tiles."""
    ops, gathers = pad3([op for op, _ in factors], [g for _, g in factors])
    ks = list(ks) + [1] * (3 - len(ks))
    mode = mode_of(semiring, c)
    block_c, block_c2, single = columns or columns_for(c, mode)
    constexprs = dict(NF=len(factors), GATHERS=gathers, SEMIRING=semiring, PRECISION=precision,
                      DOT=mode == "dot", SINGLE=single, BLOCK_C=block_c,
                      BLOCK_C2=block_c2, **limits(w[0].dtype))
    if config is None and interpreted(einsum_fwd_kernel):
        config = fixed_config(batch, ks[0] * ks[1] * ks[2], block_c + block_c2, mode)

    def grid(meta):
        return (n * triton.cdiv(batch, meta["BLOCK_B"]),)

    tuned = TUNED[mode]
    return Launch(einsum_fwd_kernel, grid, (ops, tuple(w), tuple(out), batch, c, *ks),
                  constexprs, config, tuned, tuned.configs)


def column_padding(c: int, mode: str) -> float:
    """How much the forward's columns pad c (for tests and docs)."""
    block_c, block_c2, single = columns_for(c, mode)
    return padding(c, block_c + block_c2) if single else padding(c, block_c)
