"""The contraction kernel of the outer-product (einsum) layers: forward in both semirings and the
children's gradients, as one GEMM-shaped kernel over a Kronecker product of up to three factors.

    acc[n,b,c] = sum_q T[n,b,q] V[n,q,c]               (sum semiring)
    acc[n,b,c] = max_q T[n,b,q] + V[n,q,c]             (max semiring, log-values)
    T[n,b,q]   = F1[n,b,d1] F2[n,b,d2] F3[n,b,d3]       (sum; F1 + F2 + F3 for max),
                 q = (d1, d2, d3) row-major over [K1, K2, K3]
    V[n,q,c]   = hi[n*s_n + d1*s_1 + d2*s_2 + d3*s_3 + c*s_c]   (a strided view of the weights)

Forward (sum): F_j = E_j = exp(X_j - s_j) staged by `triton_stage`, V = W^T (W = exp(log_w)
from `triton_weights`), c = output unit o; epilogue out = log(acc) + S.
Forward (max): F_j = the children's log-values read from the arenas, V = log W^T; out = acc.
Gradient of child j (sum backward): F = (H, E_i for i != j), q = (o, units of the other
children), c = unit of child j, V = W viewed that way; epilogue
    dL/dX_j[n,b,c] = E_j[n,b,c] * acc[n,b,c]   added into the gradient arena at child j's rows.
That is the chain rule through out = log(sum_w W[o,w] prod_i E_i) + S, with H = dL/d(that sum).
The weights' own gradient (flows) is `triton_flows`.

Program (member n, block of BLOCK_B samples, block of BLOCK_C outputs, split s) walks its share
of q in chunks of BLOCK_Q: the [BLOCK_B, BLOCK_Q] tile T is built in registers from gathered
factor entries (no exp, no padding of the factors' widths: q is flat, only the last chunk is
masked), and contracted with the [BLOCK_Q, BLOCK_C] weight tile by `tl.dot` in the chosen
precision (tensor cores for tf32x3, tf32, bf16), or, when C <= 8 (roots, K = 1 children), by an
FMA reduction over a [BLOCK_B, BLOCK_Q, BLOCK_C] product (no padding of C to 16). With SPLIT > 1
(layers with too few programs to fill the GPU) the programs of a split write partial results
into [SPLIT, N, B, C], which the host reduces (forward), or add their share atomically (gradients).
Grid: (N * cdiv(B, BLOCK_B) * cdiv(C, BLOCK_C), SPLIT), sample blocks fastest (weight reuse).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import triton
import triton.language as tl
from torch import Tensor

from .triton_common import (Arena, Launch, arena, bench_quickly, contract, factor_rows,
                            interpreted, joined, kron_tile, matrix, member_index, next_pow2,
                            load_weights, pad_factors, padding_pruner, program_tile, safe_log,
                            split, split_for, staged, unravel)
from .triton_flows import flows_launches
from .triton_stage import stage_launch
from .triton_weights import weights_launch


@triton.jit
def accumulate(acc, tile, t_hi, t_lo, hi, lo, offs_q, qm, c, cm, s_c, SEMIRING: tl.constexpr,
               PRECISION: tl.constexpr, DOT: tl.constexpr):
    """acc (+)= tile (x) V[q-chunk, c] for one block of columns c (see the module doc)."""
    offs = offs_q[:, None] + c[None, :] * s_c
    wmask = qm[:, None] & cm[None, :]
    if SEMIRING == "max":
        v = tl.load(hi + offs, mask=wmask, other=float("-inf"))
        acc = tl.maximum(acc, tl.max(tile[:, :, None] + v[None, :, :], axis=1))
    else:
        v_hi, v_lo = load_weights(hi, lo, offs, wmask, PRECISION)
        if DOT:
            acc = contract(acc, t_hi, t_lo, v_hi, v_lo, PRECISION)
        else:
            acc += tl.sum(tile[:, :, None] * joined(v_hi, v_lo, PRECISION)[None, :, :], axis=1)
    return acc


@triton.jit
def epilogue(acc, io, grad, n, b, bm, c, cm, B, C, members, SEMIRING: tl.constexpr,
             EPILOGUE: tl.constexpr, EXCLUSIVE: tl.constexpr, TARGET_GATHER: tl.constexpr):
    """Write one block of columns: "out" (io = (out, s_n, s_b, s_c, shifts); out = log acc + S
    for the sum semiring), "partial" (io = (partial [SPLIT, N, B, C],)), or "grad"
    (io = (E_j matrix, target arena): target[rows, b, c] += E_j * acc; `grad` is the target's
    tensor)."""
    mask = bm[:, None] & cm[None, :]
    if EPILOGUE == "out":
        out, o_n, o_b, o_c, shifts = io
        if SEMIRING == "sum":
            acc = safe_log(acc) + tl.load(shifts + n * B + b, mask=bm, other=0.0)[:, None]
        tl.store(out + n * o_n + b[:, None] * o_b + c[None, :] * o_c, acc, mask=mask)
    elif EPILOGUE == "partial":
        slab = (tl.program_id(1) * members + n) * B
        tl.store(io[0] + (slab + b[:, None]) * C + c[None, :], acc, mask=mask)
    else:
        exps, target = io
        e_ptr, e_n, e_b, e_c = exps
        acc *= tl.load(e_ptr + n * e_n + b[:, None] * e_b + c[None, :] * e_c, mask=mask, other=0.0)
        t_ptr, rows, start, rows_n, rows_a, slots, t_r, t_b, t_k, t_width = target
        for a in range(slots):
            row = member_index(target, n, a, TARGET_GATHER)
            ptrs = grad + row * t_r + b[:, None] * t_b + c[None, :] * t_k
            if EXCLUSIVE:
                tl.store(ptrs, tl.load(ptrs, mask=mask, other=0.0) + acc, mask=mask)
            else:
                tl.atomic_add(ptrs, acc, mask=mask, sem="relaxed")


@triton.jit
def contract_kernel(factors, weights, io, grad, B, C, K1, K2, K3, SPLIT,
                    NF: tl.constexpr, GATHERS: tl.constexpr, SEMIRING: tl.constexpr,
                    PRECISION: tl.constexpr, EPILOGUE: tl.constexpr, FLAT_Q: tl.constexpr,
                    DOT: tl.constexpr, EXCLUSIVE: tl.constexpr, TARGET_GATHER: tl.constexpr,
                    BLOCK_B: tl.constexpr, BLOCK_Q: tl.constexpr, BLOCK_C: tl.constexpr,
                    BLOCK_C2: tl.constexpr):
    """One (member, sample block, column block, split): the column block is BLOCK_C columns
    plus, if BLOCK_C2 > 0, BLOCK_C2 more in a second accumulator that shares the product tile
    (C = 40 as 32 + 16: 1.2x padding, one tile build). See `epilogue` for `io` and `grad`."""
    blocks_b = tl.cdiv(B, BLOCK_B)
    blocks_c = tl.cdiv(C, BLOCK_C + BLOCK_C2)
    n, block_c, block_b = program_tile(tl.program_id(0), blocks_b, blocks_c)
    b = block_b * BLOCK_B + tl.arange(0, BLOCK_B)
    c0 = block_c * (BLOCK_C + BLOCK_C2)
    c = c0 + tl.arange(0, BLOCK_C)
    bm = b < B
    cm = c < C
    Q = K1 * K2 * K3
    share = tl.cdiv(tl.cdiv(Q, SPLIT), BLOCK_Q) * BLOCK_Q
    q_lo = tl.program_id(1) * share
    q_hi = tl.minimum(Q, q_lo + share)
    hi, lo, s_n, s_1, s_2, s_3, s_c = weights
    base1, base2, base3 = factor_rows(factors, n, GATHERS, NF)
    if SEMIRING == "sum":
        neutral = 0.0
    else:
        neutral = float("-inf")
    dtype = factors[0][0].dtype.element_ty
    acc = tl.full([BLOCK_B, BLOCK_C], neutral, dtype)
    if BLOCK_C2 > 0:
        c2 = c0 + BLOCK_C + tl.arange(0, BLOCK_C2)
        acc2 = tl.full([BLOCK_B, BLOCK_C2], neutral, dtype)
    for q0 in range(q_lo, q_hi, BLOCK_Q):
        q = q0 + tl.arange(0, BLOCK_Q)
        qm = q < q_hi
        tile = kron_tile(factors, base1, base2, base3, b, q, bm[:, None] & qm[None, :], K2, K3,
                         NF, SEMIRING)
        if FLAT_Q:  # q is the weights' own (unit-stride) width index
            offs_q = n * s_n + q
        else:
            d1, d2, d3 = unravel(q, K2, K3)
            offs_q = n * s_n + d1 * s_1 + d2 * s_2 + d3 * s_3
        if SEMIRING == "sum" and DOT:
            t_hi, t_lo = split(tile, PRECISION)
        else:
            t_hi = tile
            t_lo = tile
        acc = accumulate(acc, tile, t_hi, t_lo, hi, lo, offs_q, qm, c, cm, s_c, SEMIRING,
                         PRECISION, DOT)
        if BLOCK_C2 > 0:
            acc2 = accumulate(acc2, tile, t_hi, t_lo, hi, lo, offs_q, qm, c2, c2 < C, s_c,
                              SEMIRING, PRECISION, DOT)
    members = tl.num_programs(0) // (blocks_b * blocks_c)
    epilogue(acc, io, grad, n, b, bm, c, cm, B, C, members, SEMIRING, EPILOGUE, EXCLUSIVE,
             TARGET_GATHER)
    if BLOCK_C2 > 0:
        epilogue(acc2, io, grad, n, b, bm, c2, c2 < C, B, C, members, SEMIRING, EPILOGUE,
                 EXCLUSIVE, TARGET_GATHER)


# ------------------------------------------------------------------------------ tiles
def _config(block_b: int, block_q: int, block_c: int | None, warps: int, stages: int,
            block_c2: int = 0) -> triton.Config:
    kwargs = dict(BLOCK_B=block_b, BLOCK_Q=block_q)
    if block_c is not None:
        kwargs.update(BLOCK_C=block_c, BLOCK_C2=block_c2)
    return triton.Config(kwargs, num_warps=warps, num_stages=stages)


# tl.dot tiles for tensor cores: every dim >= 16; tf32x3 keeps 2 parts of each operand. The
# (B, Q, C, warps, stages, C2) with C2 > 0 cover C = 40, 48 as 32 + 16 columns.
DOT_CONFIGS = [_config(*c) for c in [(64, 32, 64, 4, 3), (128, 32, 64, 8, 3), (64, 64, 32, 8, 3),
                                     (128, 32, 32, 4, 3), (64, 32, 16, 4, 3), (128, 32, 16, 8, 3),
                                     (64, 16, 16, 4, 3), (64, 16, 32, 4, 3),
                                     (64, 32, 32, 8, 3, 16), (128, 32, 32, 8, 3, 16)]]
# FMA reductions (C <= 8, BLOCK_C = next_pow2(C) given by the host): temp <= 8192 values.
REDUCE_CONFIGS = [_config(*c) for c in [(32, 32, None, 4, 2), (64, 16, None, 4, 2),
                                        (16, 64, None, 4, 2)]]
# max-plus (BLOCK_C = min(16, next_pow2(C)) given by the host).
MAX_CONFIGS = [_config(*c) for c in [(16, 16, None, 4, 2), (32, 16, None, 4, 2),
                                     (16, 32, None, 4, 2)]]
KEY = ["B", "C", "K1", "K2", "K3", "SPLIT", "NF", "SEMIRING", "PRECISION", "EPILOGUE"]


prune_padding = padding_pruner(lambda args: {
    ("BLOCK_C", "BLOCK_C2"): args["C"], ("BLOCK_Q",): args["K1"] * args["K2"] * args["K3"]})


def _tuned(configs, restore: bool):
    return triton.autotune(configs, key=KEY, prune_configs_by={"early_config_prune": prune_padding},
                           restore_value=["grad"] if restore else None, do_bench=bench_quickly
                           )(contract_kernel)


TUNED = {("dot", False): _tuned(DOT_CONFIGS, False), ("dot", True): _tuned(DOT_CONFIGS, True),
         ("reduce", False): _tuned(REDUCE_CONFIGS, False),
         ("reduce", True): _tuned(REDUCE_CONFIGS, True),
         ("max", False): _tuned(MAX_CONFIGS, False)}


def fixed_config(batch: int, q: int, c: int, mode: str) -> triton.Config:
    """The interpreter's tiles: few, large programs and chunks (each program and loop step costs
    milliseconds regardless of size); BLOCK_B <= 32 so that B = 33 still runs two sample
    blocks."""
    block_b = min(32, next_pow2(batch, 16))
    block_c = next_pow2(c, 16) if mode == "dot" else min(16, next_pow2(c))
    block_q = min(next_pow2(q, 16), 512 if mode == "dot" else 32768 // (block_b * block_c))
    return _config(block_b, block_q, block_c if mode == "dot" else None, 4, 1)


def mode_of(semiring: str, c: int) -> str:
    """'max' (max-plus), 'dot' (tl.dot), or 'reduce' (FMA reduction for C <= 8)."""
    return "max" if semiring == "max" else ("dot" if c > 8 else "reduce")


def split_count(n: int, batch: int, q: int, c: int, device: torch.device) -> int:
    """Programs sharing one output tile (a split of q, >= 128 columns each): enough for ~2
    programs per SM on small layers (nominal 64 x 32 tiles)."""
    return split_for(n * triton.cdiv(batch, 64) * triton.cdiv(c, 32), q // 128, device)


# ------------------------------------------------------------------------------ launches
def contract_launch(factors: Sequence[tuple[Arena, bool]], weights: tuple, io: tuple,
                    grad: Tensor, n: int, batch: int, c: int, semiring: str, precision: str,
                    epilogue: str, flat_q: bool, split: int, exclusive: bool = False,
                    target_gather: bool = False, config: triton.Config | None = None) -> Launch:
    """contract_kernel over n members (see the module doc). `weights` = (hi, lo, s_n, s_1, s_2,
    s_3, s_c) with digit strides for the factors' units; `config` fixes the tiles."""
    ops, gathers = pad_factors([op for op, _ in factors], [g for _, g in factors])
    ks = [op[9] for op in ops[:len(factors)]] + [1] * (3 - len(factors))
    mode = mode_of(semiring, c)
    constexprs = dict(NF=len(factors), GATHERS=gathers, SEMIRING=semiring,
                      PRECISION=precision,
                      EPILOGUE=epilogue, FLAT_Q=flat_q, DOT=mode == "dot", EXCLUSIVE=exclusive,
                      TARGET_GATHER=target_gather)
    if mode == "reduce":
        constexprs.update(BLOCK_C=next_pow2(c), BLOCK_C2=0)
    elif mode == "max":
        constexprs.update(BLOCK_C=min(16, next_pow2(c)), BLOCK_C2=0)
    if config is not None and mode == "dot" and "BLOCK_C" not in config.kwargs:
        config = None  # a forced reduction / max-plus tile does not fit a tl.dot launch
    if config is None and interpreted(contract_kernel):
        config = fixed_config(batch, ks[0] * ks[1] * ks[2], c, mode)
    if config is not None and "BLOCK_C" in constexprs:
        config = triton.Config({k: v for k, v in config.kwargs.items()
                                if k not in ("BLOCK_C", "BLOCK_C2")},
                               num_warps=config.num_warps, num_stages=config.num_stages)

    def grid(meta):
        block_c = sum(meta.get(k, constexprs.get(k)) for k in ("BLOCK_C", "BLOCK_C2"))
        return (n * triton.cdiv(batch, meta["BLOCK_B"]) * triton.cdiv(c, block_c), split)

    restore = epilogue == "grad"
    tuned = TUNED[(mode, restore)] if mode != "max" else TUNED[("max", False)]
    return Launch(contract_kernel, grid, (ops, tuple(weights), io, grad, batch, c, *ks, split),
                  constexprs, config, tuned, tuned.configs)


def width_strides(ks: Sequence[int]) -> list[int]:
    """Strides of each child's unit in the row-major width index w = (i_1, ..., i_a)."""
    strides, step = [], 1
    for k in reversed(ks):
        strides.append(step)
        step *= k
    return strides[::-1]


def finish_split(partial: Tensor, out: Tensor, shifts: Tensor | None, semiring: str) -> None:
    """out = log(sum_s partial[s]) + S (sum) or max_s partial[s] (max)."""
    if semiring == "max":
        torch.amax(partial, 0, out=out) if out.is_contiguous() else out.copy_(partial.amax(0))
    else:
        out.copy_(partial.sum(0).log_().add_(shifts.unsqueeze(-1)))


# ------------------------------------------------------------------------------ layers
def einsum_forward_steps(sources: Sequence[Tensor], rows: Sequence, log_w: Tensor, out: Tensor,
                         semiring: str, precision: str, split: int | None = None,
                         config: triton.Config | None = None) -> list:
    """The launches (and host steps) of an einsum forward of 1-3 children with width > 1:
    sum: weights pre-pass, staging, contraction; max: the contraction on log-values."""
    n, batch, k_out = out.shape
    ks = [s.shape[2] for s in sources]
    q = log_w.shape[-1]
    if split is None:
        split = split_count(n, batch, q, k_out, out.device)
    strides = width_strides(ks)
    strides = strides + [0] * (3 - len(ks))
    steps: list = []
    if semiring == "sum":
        prep, hi, lo = weights_launch(log_w, precision)
        stage, exps, shifts, _ = stage_launch([arena(s, r) for s, r in zip(sources, rows)], n,
                                              batch)
        steps += [prep, stage]
        factors = [staged(e) for e in exps]
        weights = (hi, lo, hi.stride(0), *strides, hi.stride(1))
    else:
        factors = [arena(s, r) for s, r in zip(sources, rows)]
        log_w = log_w.contiguous()
        weights = (log_w, log_w, log_w.stride(0), *strides, log_w.stride(1))
        shifts = None
    if split == 1:
        io = (out, *out.stride(), out if shifts is None else shifts)
        steps.append(contract_launch(factors, weights, io, out, n, batch, k_out, semiring,
                                     precision, "out", True, 1, config=config))
    else:
        partial = torch.empty(split, n, batch, k_out, dtype=out.dtype, device=out.device)
        steps.append(contract_launch(factors, weights, (partial,), partial, n, batch, k_out,
                                     semiring, precision, "partial", True, split, config=config))
        steps.append(lambda: finish_split(partial, out, shifts, semiring))
    return steps


def einsum_backward_steps(sources: Sequence[Tensor], rows: Sequence, log_w: Tensor, out: Tensor,
                          grad_out: Tensor, grad_sources: Sequence[Tensor], precision: str,
                          split: int | None = None, config: triton.Config | None = None,
                          flow_config: triton.Config | None = None) -> tuple[list, Tensor]:
    """(steps, flows) of the sum-semiring backward: weights pre-pass, staging (E_j, S, H), one
    contraction per child (its gradient, added into grad_sources[j] at rows[j]), the flows."""
    n, batch, k_out = out.shape
    ks = [s.shape[2] for s in sources]
    prep, hi, lo = weights_launch(log_w, precision)
    stage, exps, _, h = stage_launch([arena(s, r) for s, r in zip(sources, rows)], n, batch,
                                     out, grad_out)
    steps: list = [prep, stage]
    strides = width_strides(ks)
    h_op = staged(h)
    for j, (grad, r) in enumerate(zip(grad_sources, rows)):
        others = [i for i in range(len(ks)) if i != j]
        q = k_out * math.prod(ks[i] for i in others)
        parts = split if split is not None else split_count(n, batch, q, ks[j], out.device)
        factors = [h_op] + [staged(exps[i]) for i in others]
        digit = [hi.stride(1)] + [strides[i] for i in others]
        weights = (hi, lo, hi.stride(0), *digit, *[0] * (3 - len(digit)), strides[j])
        target, gather = arena(grad, r)
        io = (tuple(matrix(exps[j])), tuple(target))
        steps.append(contract_launch(factors, weights, io, grad, n, batch, ks[j], "sum",
                                     precision, "grad", False, parts,
                                     exclusive=not gather and parts == 1,
                                     target_gather=gather, config=config))
    flow_steps, flows = flows_launches(h, [staged(e)[0] for e in exps], log_w, precision,
                                       split, flow_config)
    return steps + flow_steps, flows
