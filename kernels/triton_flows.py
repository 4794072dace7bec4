"""Weight flows of a sum layer (EM's expected counts, W * dL/dW): a contraction over the batch,
with no atomics.

    flows[n,o,q] = W[n,o,q] * sum_b H[n,b,o] T[n,b,q],    T[n,b,q] = prod_f E_f[n,b,d_f(q)]
H = dL/d(sum_q W T) and E_f are staged by `triton_stage` (q = (d1, d2, d3) row-major, the width
index of log_w [N, Ko, Q]). Used by the einsum layers (E_f = the children) and the element-wise
product layers (one factor: the exponentiated product).

Program (member n, block of BLOCK_O outputs, block of BLOCK_Q columns, split s) loops over its
share of the batch in chunks of BLOCK_B: acc[BLOCK_O, BLOCK_Q] += H^T chunk @ T chunk by
`tl.dot` in the chosen precision, or, when Ko <= 8, by an FMA reduction over a
[BLOCK_O, BLOCK_B, BLOCK_Q] product. Epilogue: acc * exp(log_w) (the weights are exponentiated
once, where each flow is written). Every flow is written by exactly one program; with SPLIT > 1
(too few programs to fill the GPU) the splits write partials [SPLIT, N, Ko, Q] and the host sums
them (deterministic, unlike atomics).
Grid: (N * cdiv(Ko, BLOCK_O) * cdiv(Q, BLOCK_Q), SPLIT), column blocks fastest.
"""
from __future__ import annotations

from typing import Sequence

import torch
import triton
import triton.language as tl
from torch import Tensor

from .triton_common import (Arena, Launch, bench_quickly, contract, factor_rows, interpreted,
                            kron_tile, next_pow2, pad_factors, padding_pruner, program_tile, split,
                            split_for)


@triton.jit
def flows_kernel(h, factors, log_w, flows, B, KO, K1, K2, K3, SPLIT,
                 NF: tl.constexpr, GATHERS: tl.constexpr, PRECISION: tl.constexpr,
                 DOT: tl.constexpr,
                 BLOCK_B: tl.constexpr, BLOCK_O: tl.constexpr, BLOCK_Q: tl.constexpr):
    """Flows of one (member, output block, column block) from one share of the batch; `flows`
    = (ptr, s_split, s_n, s_o, s_q) (s_split is 0 without a split)."""
    Q = K1 * K2 * K3
    n, block_o, block_q = program_tile(tl.program_id(0), tl.cdiv(Q, BLOCK_Q), tl.cdiv(KO, BLOCK_O))
    o = block_o * BLOCK_O + tl.arange(0, BLOCK_O)
    q = block_q * BLOCK_Q + tl.arange(0, BLOCK_Q)
    om = o < KO
    qm = q < Q
    share = tl.cdiv(tl.cdiv(B, SPLIT), BLOCK_B) * BLOCK_B
    b_lo = tl.program_id(1) * share
    b_hi = tl.minimum(B, b_lo + share)
    h_ptr, h_n, h_b, h_o = h
    base1, base2, base3 = factor_rows(factors, n, GATHERS, NF)
    acc = tl.zeros([BLOCK_O, BLOCK_Q], factors[0][0].dtype.element_ty)
    for b0 in range(b_lo, b_hi, BLOCK_B):
        b = b0 + tl.arange(0, BLOCK_B)
        bm = b < b_hi
        ht = tl.load(h_ptr + n * h_n + b[None, :] * h_b + o[:, None] * h_o,
                     mask=om[:, None] & bm[None, :], other=0.0)
        tile = kron_tile(factors, base1, base2, base3, b, q, bm[:, None] & qm[None, :], K2, K3,
                         NF, "sum")
        if DOT:
            h_hi, h_lo = split(ht, PRECISION)
            t_hi, t_lo = split(tile, PRECISION)
            acc = contract(acc, h_hi, h_lo, t_hi, t_lo, PRECISION)
        else:
            acc += tl.sum(ht[:, :, None] * tile[None, :, :], axis=1)
    lw_ptr, lw_n, lw_o, lw_q = log_w
    mask = om[:, None] & qm[None, :]
    w = tl.exp(tl.load(lw_ptr + n * lw_n + o[:, None] * lw_o + q[None, :] * lw_q, mask=mask,
                       other=float("-inf")))
    f_ptr, f_s, f_n, f_o, f_q = flows
    tl.store(f_ptr + tl.program_id(1) * f_s + n * f_n + o[:, None] * f_o + q[None, :] * f_q,
             acc * w, mask=mask)


def _config(block_b: int, block_o: int | None, block_q: int, warps: int, stages: int):
    kwargs = dict(BLOCK_B=block_b, BLOCK_Q=block_q)
    if block_o is not None:
        kwargs["BLOCK_O"] = block_o
    return triton.Config(kwargs, num_warps=warps, num_stages=stages)


DOT_CONFIGS = [_config(*c) for c in [(32, 64, 64, 4, 3), (32, 32, 64, 4, 3), (64, 32, 32, 4, 3),
                                     (32, 16, 64, 4, 3), (32, 64, 128, 8, 3), (32, 16, 16, 4, 3),
                                     (32, 64, 16, 4, 3)]]
REDUCE_CONFIGS = [_config(*c) for c in [(32, None, 32, 4, 2), (16, None, 64, 4, 2),
                                        (64, None, 16, 4, 2)]]
KEY = ["B", "KO", "K1", "K2", "K3", "SPLIT", "NF", "PRECISION"]  # batch, K's, and the variant


prune_padding = padding_pruner(lambda args: {
    ("BLOCK_O",): args["KO"], ("BLOCK_Q",): args["K1"] * args["K2"] * args["K3"]})


TUNED = {mode: triton.autotune(configs, key=KEY, do_bench=bench_quickly,
                               prune_configs_by={"early_config_prune": prune_padding}
                               )(flows_kernel)
         for mode, configs in (("dot", DOT_CONFIGS), ("reduce", REDUCE_CONFIGS))}


def split_count(n: int, batch: int, k_out: int, q: int, device: torch.device) -> int:
    """Batch shares per flow tile (>= 128 samples each): ~2 programs per SM on small layers."""
    return split_for(n * triton.cdiv(k_out, 32) * triton.cdiv(q, 64), batch // 128, device)


def flows_launches(h: Tensor, factors: Sequence[Arena], log_w: Tensor, precision: str,
                   split: int | None = None, config: triton.Config | None = None
                   ) -> tuple[list, Tensor]:
    """(steps, flows [N, Ko, Q]): flows_kernel, then the sum of the split partials if split."""
    n, batch, k_out = h.shape
    q = log_w.shape[-1]
    flows = torch.empty(log_w.shape, dtype=log_w.dtype, device=log_w.device)
    if split is None:
        split = split_count(n, batch, k_out, q, log_w.device)
    target = flows if split == 1 else torch.empty(split, *log_w.shape, dtype=log_w.dtype,
                                                  device=log_w.device)
    f_strides = (0, *flows.stride()) if split == 1 else target.stride()
    ops, gathers = pad_factors(factors, [False] * len(factors))
    ks = [op[9] for op in ops[:len(factors)]] + [1] * (3 - len(factors))
    dot = k_out > 8
    constexprs = dict(NF=len(factors), GATHERS=gathers, PRECISION=precision, DOT=dot)
    if not dot:
        constexprs["BLOCK_O"] = next_pow2(k_out)
    if config is not None and dot and "BLOCK_O" not in config.kwargs:
        config = None  # a forced reduction tile does not fit a tl.dot launch
    if config is None and interpreted(flows_kernel):
        config = _config(min(32, next_pow2(batch, 16)), next_pow2(k_out, 16) if dot else None,
                         min(next_pow2(q, 16), 512 if dot else 4096 // next_pow2(k_out)), 4, 1)
    if config is not None and not dot and "BLOCK_O" in config.kwargs:
        config = triton.Config({k: v for k, v in config.kwargs.items() if k != "BLOCK_O"},
                               num_warps=config.num_warps, num_stages=config.num_stages)

    def grid(meta):
        block_o = meta.get("BLOCK_O", constexprs.get("BLOCK_O"))
        return (n * triton.cdiv(k_out, block_o) * triton.cdiv(q, meta["BLOCK_Q"]), split)

    tuned = TUNED["dot" if dot else "reduce"]
    steps: list = [Launch(flows_kernel, grid,
                          ((h, *h.stride()), ops, (log_w, *log_w.stride()), (target, *f_strides),
                           batch, k_out, *ks, split),
                          constexprs, config, tuned, tuned.configs)]
    if split > 1:
        steps.append(lambda: torch.sum(target, 0, out=flows))
    return steps, flows
