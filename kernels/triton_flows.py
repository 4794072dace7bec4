"""Weight flows of a weighted product layer (EM's expected counts, W * dL/dW): a contraction over
the batch, with no atomics; it also stages h for the children's gradients.

    h[n,b,o]     = g[n,b,o] / (v[n,b,o] norm[n,b] + TINY)      dL/d(the raw output y = W p)
    flows[n,o,q] = W[n,o,q] * sum_b h[n,b,o] p[n,b,q],   p[b,q] = F1[b,d1] F2[b,d2] F3[b,d3]

with g = dL/dlog y the output's flows, v and norm the forward's values and norms, and p the
forward's product tile rebuilt from the factors (`triton_einsum`; q = (d1, d2, d3) row-major,
the width index of W [N, Ko, Q]). The flows are overwritten.

Program (member n, block of BLOCK_O outputs, block of BLOCK_Q columns) loops over the batch in
chunks of BLOCK_B: h^T [BLOCK_O, BLOCK_B] is computed from g, v and norm (and stored into the
staging buffer H [N, B, Ko] by the programs of the first column block, for `triton_grads`), the
tile p^T chunk [BLOCK_B, BLOCK_Q] is built from gathered factor entries, and acc [BLOCK_O,
BLOCK_Q] += h^T p by `tl.dot` in the chosen precision, or, when Ko <= 8, by an FMA reduction.
Epilogue: acc * W. Every flow is written by exactly one program (deterministic).
Grid: (N * cdiv(Ko, BLOCK_O) * cdiv(Q, BLOCK_Q),), column blocks fastest.
"""
from __future__ import annotations

from typing import Sequence

import triton
import triton.language as tl
from torch import Tensor

from .triton_common import (Launch, Operand, Output, Weights, accumulate, bench_quickly,
                            interpreted, kron_tile, limits, next_pow2, output_grad, pad3,
                            padding_pruner, tile, without)


@triton.jit
def flows_kernel(factors, out, grad_out, h, w, flows, B, KO, K1, K2, K3, NF: tl.constexpr,
                 GATHERS: tl.constexpr, PRECISION: tl.constexpr, DOT: tl.constexpr,
                 TINY: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_O: tl.constexpr,
                 BLOCK_Q: tl.constexpr):
    """Flows of one (member, output block, column block); h is the contiguous [N, B, Ko]
    staging buffer."""
    Q = K1 * K2 * K3
    blocks_q = tl.cdiv(Q, BLOCK_Q)
    blocks_o = tl.cdiv(KO, BLOCK_O)
    pid = tl.program_id(0)
    n = (pid // (blocks_q * blocks_o)).to(tl.int64)
    block_q = pid % blocks_q
    o = ((pid // blocks_q) % blocks_o) * BLOCK_O + tl.arange(0, BLOCK_O)
    q = block_q * BLOCK_Q + tl.arange(0, BLOCK_Q)
    om = o < KO
    qm = q < Q
    acc = tl.zeros([BLOCK_O, BLOCK_Q], w[0].dtype.element_ty)
    for b0 in range(0, B, BLOCK_B):
        b = b0 + tl.arange(0, BLOCK_B)
        bm = b < B
        mask = om[:, None] & bm[None, :]
        ht = output_grad(out, grad_out, n, b[None, :], o[:, None], bm[None, :], mask, TINY)
        if block_q == 0:
            tl.store(h + (n * B + b[None, :]) * KO + o[:, None], ht, mask=mask)
        tile = kron_tile(factors, n, b, q, bm[:, None] & qm[None, :], K2, K3, NF, GATHERS)
        acc = accumulate(acc, ht, tile, "sum", PRECISION, DOT)
    offs = n * w[1] + o[:, None] * w[2] + q[None, :] * w[3]
    mask = om[:, None] & qm[None, :]
    acc *= tl.load(w[0] + offs, mask=mask, other=0.0)
    tl.store(flows[0] + n * flows[1] + o[:, None] * flows[2] + q[None, :] * flows[3], acc,
             mask=mask)


def _config(*row) -> triton.Config:
    """(BLOCK_B, BLOCK_O or None, BLOCK_Q, warps, stages)."""
    return tile(("BLOCK_B", "BLOCK_O", "BLOCK_Q"), *row)


DOT_CONFIGS = [_config(*c) for c in [(32, 64, 64, 4, 3), (32, 32, 64, 4, 3), (64, 32, 32, 4, 3),
                                     (32, 16, 64, 4, 3), (32, 64, 128, 8, 3), (32, 16, 16, 4, 3),
                                     (32, 64, 16, 4, 3)]]
REDUCE_CONFIGS = [_config(*c) for c in [(32, None, 32, 4, 2), (16, None, 64, 4, 2),
                                        (64, None, 16, 4, 2)]]
KEY = ["B", "KO", "K1", "K2", "K3", "NF", "PRECISION"]

prune_padding = padding_pruner(lambda args: {
    ("BLOCK_O",): args["KO"], ("BLOCK_Q",): args["K1"] * args["K2"] * args["K3"]})

TUNED = {mode: triton.autotune(configs, key=KEY, do_bench=bench_quickly,
                               prune_configs_by={"early_config_prune": prune_padding}
                               )(flows_kernel)
         for mode, configs in (("dot", DOT_CONFIGS), ("reduce", REDUCE_CONFIGS))}


def flows_launch(factors: Sequence[tuple[Operand, bool]], ks: Sequence[int], out: Output,
                 grad_out: Tensor, h: Tensor, w: Weights, flows: Tensor, precision: str,
                 config: triton.Config | None = None) -> Launch:
    """flows_kernel over the N members of `out` (see the module doc); `h` [N, B, Ko] is the
    contiguous staging buffer it writes."""
    n, batch, k_out = grad_out.shape
    ops, gathers = pad3([op for op, _ in factors], [g for _, g in factors])
    ks = list(ks) + [1] * (3 - len(ks))
    q = ks[0] * ks[1] * ks[2]
    dot = k_out > 8
    constexprs = dict(NF=len(factors), GATHERS=gathers, PRECISION=precision, DOT=dot,
                      TINY=limits(flows.dtype)["TINY"])
    if not dot:
        constexprs["BLOCK_O"] = next_pow2(k_out)
    if config is None and interpreted(flows_kernel):
        config = _config(min(32, next_pow2(batch, 16)), next_pow2(k_out, 16) if dot else None,
                         min(next_pow2(q, 16), 512 if dot else 4096 // next_pow2(k_out)), 4, 1)
    if not dot:
        config = without(config, "BLOCK_O")

    def grid(meta):
        block_o = meta.get("BLOCK_O", constexprs.get("BLOCK_O"))
        return (n * triton.cdiv(k_out, block_o) * triton.cdiv(q, meta["BLOCK_Q"]),)

    tuned = TUNED["dot" if dot else "reduce"]
    return Launch(flows_kernel, grid,
                  (ops, tuple(out), (grad_out, *grad_out.stride()), h, tuple(w),
                   (flows, *flows.stride()), batch, k_out, *ks),
                  constexprs, config, tuned, tuned.configs)
