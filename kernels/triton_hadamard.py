"""Element-wise (Hadamard) product layers: N members, each the element-wise product of A children
of one arena (all with K units), contracted with its weights.

    x[n,b,k]   = sum_a source[rows[n,a], b, k]           (log of the element-wise product;
                                                          padded slots read row 0, log 1 = 0)
    sum:  out[n,b,o] = log sum_k W[n,o,k] exp(x[n,b,k]),   W = exp(log_w)  [N, Ko, K]
    max:  out[n,b,o] = max_k log_w[n,o,k] + x[n,b,k]
backward (sum):
    flows[n,o,k] = sum_b W[n,o,k] exp(x[n,b,k] - out[n,b,o]) dL/dout[n,b,o]     (0 where out = -inf)
    dx[n,b,k]    = sum_o W[n,o,k] exp(x[n,b,k] - out[n,b,o]) dL/dout[n,b,o]
    grad_source[rows[n,a]] += dx[n]  for every slot a (rows repeat: atomic adds)

Forward kernel: program (member n, block of BLOCK_O outputs, block of BLOCK_B samples) walks K in
chunks of BLOCK_K: the [BLOCK_B, BLOCK_K] log-product tile is summed over the A slots in
registers, max-shifted with a running per-sample maximum m (acc is rescaled by exp(m - m') when
the maximum grows, as in an online softmax, so K is read once), exponentiated and contracted with
the [BLOCK_K, BLOCK_O] slice of W^T by `tl.dot` (FMA reduction when Ko <= 8). Epilogue
out = log(acc) + m. The weights come exponentiated (and split) from `triton_weights`.
Grid: (N * cdiv(Ko, BLOCK_O) * cdiv(B, BLOCK_B),), sample blocks fastest.

Backward: `triton_stage` stages E = exp(x - s) (x summed over the slots) and
H = dL/dout * exp(s - out); then dx = E * (H @ W) is the einsum contraction kernel with one
factor (H) whose epilogue adds dx into every slot's row, and the flows are `triton_flows`.
"""
from __future__ import annotations

import triton
import triton.language as tl
from torch import Tensor

from .triton_common import (Launch, arena, bench_quickly, contract, interpreted, joined,
                            load_weights, matrix, next_pow2, padding_pruner, program_tile,
                            safe_log, split, staged, summed_rows)
from .triton_einsum import contract_launch, split_count
from .triton_flows import flows_launches
from .triton_stage import stage_launch
from .triton_weights import weights_launch


@triton.jit
def hadamard_fwd_kernel(source, weights, out, B, K, KO, GATHER: tl.constexpr,
                        SEMIRING: tl.constexpr, PRECISION: tl.constexpr, DOT: tl.constexpr,
                        BLOCK_B: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_O: tl.constexpr):
    """out[n, b-block, o-block] (see the module doc); weights = (hi, lo, s_n, s_o, s_k): W from
    the pre-pass (sum) or log W (max)."""
    n, block_o, block_b = program_tile(tl.program_id(0), tl.cdiv(B, BLOCK_B), tl.cdiv(KO, BLOCK_O))
    o = block_o * BLOCK_O + tl.arange(0, BLOCK_O)
    b = block_b * BLOCK_B + tl.arange(0, BLOCK_B)
    bm = b < B
    om = o < KO
    hi, lo, w_n, w_o, w_k = weights
    dtype = source[0].dtype.element_ty
    top = tl.full([BLOCK_B], float("-inf"), dtype)
    if SEMIRING == "sum":
        acc = tl.zeros([BLOCK_B, BLOCK_O], dtype)
    else:
        acc = tl.full([BLOCK_B, BLOCK_O], float("-inf"), dtype)
    for k0 in range(0, K, BLOCK_K):
        k = k0 + tl.arange(0, BLOCK_K)
        km = k < K
        x = summed_rows(source, n, b, k, bm[:, None] & km[None, :], GATHER)
        offs = n * w_n + k[:, None] * w_k + o[None, :] * w_o
        wmask = km[:, None] & om[None, :]
        if SEMIRING == "sum":
            new_top = tl.maximum(top, tl.max(x, axis=1))
            ref = tl.where(new_top == float("-inf"), 0.0, new_top)
            acc *= tl.exp(top - ref)[:, None]
            e = tl.exp(x - ref[:, None])
            w_hi, w_lo = load_weights(hi, lo, offs, wmask, PRECISION)
            if DOT:
                e_hi, e_lo = split(e, PRECISION)
                acc = contract(acc, e_hi, e_lo, w_hi, w_lo, PRECISION)
            else:
                acc += tl.sum(e[:, :, None] * joined(w_hi, w_lo, PRECISION)[None, :, :], axis=1)
            top = new_top
        else:
            log_w = tl.load(hi + offs, mask=wmask, other=float("-inf"))
            acc = tl.maximum(acc, tl.max(x[:, :, None] + log_w[None, :, :], axis=1))
    if SEMIRING == "sum":
        acc = safe_log(acc) + tl.where(top == float("-inf"), 0.0, top)[:, None]
    o_ptr, o_n, o_b, o_o = out
    tl.store(o_ptr + n * o_n + b[:, None] * o_b + o[None, :] * o_o, acc,
             mask=bm[:, None] & om[None, :])


def _config(block_b: int, block_k: int, block_o: int | None, warps: int, stages: int):
    kwargs = dict(BLOCK_B=block_b, BLOCK_K=block_k)
    if block_o is not None:
        kwargs["BLOCK_O"] = block_o
    return triton.Config(kwargs, num_warps=warps, num_stages=stages)


DOT_CONFIGS = [_config(*c) for c in [(64, 32, 64, 4, 3), (128, 32, 64, 8, 3), (64, 64, 32, 8, 3),
                                     (64, 32, 16, 4, 3), (64, 16, 16, 4, 3), (128, 16, 32, 4, 3)]]
REDUCE_CONFIGS = [_config(*c) for c in [(32, 32, None, 4, 2), (64, 16, None, 4, 2)]]
MAX_CONFIGS = [_config(*c) for c in [(16, 16, None, 4, 2), (32, 16, None, 4, 2)]]
KEY = ["B", "K", "KO", "SEMIRING", "PRECISION"]


prune_padding = padding_pruner(lambda args: {("BLOCK_O",): args["KO"], ("BLOCK_K",): args["K"]})


TUNED = {mode: triton.autotune(configs, key=KEY, do_bench=bench_quickly,
                               prune_configs_by={"early_config_prune": prune_padding}
                               )(hadamard_fwd_kernel)
         for mode, configs in (("dot", DOT_CONFIGS), ("reduce", REDUCE_CONFIGS),
                               ("max", MAX_CONFIGS))}


def hadamard_forward_steps(source: Tensor, rows: Tensor, log_w: Tensor, out: Tensor,
                           semiring: str, precision: str,
                           config: triton.Config | None = None) -> list:
    """Weights pre-pass (sum) and the fused forward kernel."""
    n, batch, k_out = out.shape
    k = source.shape[2]
    steps: list = []
    if semiring == "sum":
        prep, hi, lo = weights_launch(log_w, precision)
        steps.append(prep)
    else:
        hi = lo = log_w.contiguous()
    mode = "max" if semiring == "max" else ("dot" if k_out > 8 else "reduce")
    op, gather = arena(source, rows)
    constexprs = dict(GATHER=gather, SEMIRING=semiring, PRECISION=precision, DOT=mode == "dot")
    if mode != "dot":
        constexprs["BLOCK_O"] = next_pow2(k_out) if mode == "reduce" else min(16, next_pow2(k_out))
    if config is None and interpreted(hadamard_fwd_kernel):
        config = _config(min(32, next_pow2(batch, 16)), min(next_pow2(k, 16), 512),
                         next_pow2(k_out, 16) if mode == "dot" else None, 4, 1)
    if config is not None and "BLOCK_O" in constexprs:
        config = triton.Config({a: v for a, v in config.kwargs.items() if a != "BLOCK_O"},
                               num_warps=config.num_warps, num_stages=config.num_stages)

    def grid(meta):
        block_o = meta.get("BLOCK_O", constexprs.get("BLOCK_O"))
        return (n * triton.cdiv(k_out, block_o) * triton.cdiv(batch, meta["BLOCK_B"]),)

    tuned = TUNED[mode]
    steps.append(Launch(hadamard_fwd_kernel, grid,
                        (tuple(op), (hi, lo, *hi.stride()), (out, *out.stride()), batch, k, k_out),
                        constexprs, config, tuned, tuned.configs))
    return steps


def hadamard_backward_steps(source: Tensor, rows: Tensor, log_w: Tensor, out: Tensor,
                            grad_out: Tensor, grad_source: Tensor, precision: str,
                            split: int | None = None, config: triton.Config | None = None,
                            flow_config: triton.Config | None = None) -> tuple[list, Tensor]:
    """(steps, flows): weights pre-pass, staging (E, H), dx into every slot's row, flows."""
    n, batch, k_out = out.shape
    k = source.shape[2]
    prep, hi, lo = weights_launch(log_w, precision)
    stage, exps, _, h = stage_launch([arena(source, rows)], n, batch, out, grad_out)
    parts = split if split is not None else split_count(n, batch, k_out, k, out.device)
    target, _ = arena(grad_source, rows)
    weights = (hi, lo, hi.stride(0), hi.stride(1), 0, 0, hi.stride(2))
    dx = contract_launch([staged(h)], weights, (tuple(matrix(exps[0])), tuple(target)),
                         grad_source, n, batch, k, "sum", precision, "grad", False, parts,
                         exclusive=False, target_gather=True, config=config)
    flow_steps, flows = flows_launches(h, [staged(exps[0])[0]], log_w, precision, split,
                                       flow_config)
    return [prep, stage, dx] + flow_steps, flows
