"""An EinsumNetworks-style evaluation of a compiled plan, as a baseline for benchmarks.

It follows the reference code's computation pattern (not its code): values in [B, K, regions]
layout; each layer concatenates all earlier outputs of a K and gathers its inputs from that with
index_select; each einsum layer max-shifts its children, exponentiates, and contracts with
`torch.einsum('bip,bjp,pijo->bop')` under autograd (which keeps the [B, K, K, P] outer product
for the backward); mixing layers pad to the largest partition count and use an einsum as well.
Only arity-2 einsums and mixing are supported (what PD and RAT structures need).
"""
from __future__ import annotations

import torch

from pcc.passes import EinsumOp


def einet_style_forward(model, x: torch.Tensor) -> torch.Tensor:
    """log p(x) [B] for a CompiledCircuit of binary partitions, EinsumNetworks style."""
    x = model.prepare_input(x)
    batch = x.shape[0]
    outputs: dict[int, list[tuple[int, torch.Tensor]]] = {}  # K -> [(first row, [B, K, n])]
    for k, rows in model.plan.arena_rows.items():
        outputs[k] = [(0, torch.zeros(batch, k, 1, dtype=x.dtype, device=x.device))]
    for (k, start, _), values in zip(model.plan.leaf_blocks,
                                     model.leaf_blocks(model.leaf_values(x))):
        outputs[k].append((start, values.permute(1, 2, 0)))
    log_w = model.log_weights()
    weight = iter(log_w)
    level, cache = None, {}
    for op in model.plan.ops:
        layer = (op.level, isinstance(op, EinsumOp))  # einsum and mixing layers alternate
        if layer != level:  # a new layer: concatenate everything produced so far, per K
            level, cache = layer, {k: _concat(parts) for k, parts in outputs.items()}
        if isinstance(op, EinsumOp):
            left, right = (_gather(cache[k], rows, len(op.members))
                           for k, rows in zip(op.child_k, op.child_rows))
            lm = left.amax(1, keepdim=True).detach().clamp_min(-1e30)
            rm = right.amax(1, keepdim=True).detach().clamp_min(-1e30)
            w = torch.exp(next(weight)) if op.has_weights else torch.ones(
                len(op.members), op.k_out, 1, dtype=x.dtype, device=x.device)
            w = w.view(len(op.members), op.k_out, *op.child_k).permute(0, 2, 3, 1)
            prob = torch.einsum("bip,bjp,pijo->bop", torch.exp(left - lm), torch.exp(right - rm),
                                w)
            out = torch.log(prob) + lm + rm
            outputs[op.k_out].append((op.out_start, out))
        else:
            n, p = op.part_rows.shape
            idx = torch.as_tensor(op.part_rows, device=x.device).reshape(-1)
            vals = cache[op.k].index_select(2, idx).view(batch, op.k, n, p)
            m = vals.amax(3, keepdim=True).detach().clamp_min(-1e30)
            mix = torch.exp(next(weight)).permute(2, 0, 1)  # [K, N, P]
            out = torch.log(torch.einsum("bknp,knp->bkn", torch.exp(vals - m), mix)) + m[..., 0]
            outputs[op.k].append((op.out_start, out))
    k, row = model.plan.region_row[model.plan.root]
    return _concat(outputs[k])[:, 0, row]


def _concat(parts: list[tuple[int, torch.Tensor]]) -> torch.Tensor:
    """Outputs laid out by their first row (rows not produced yet are absent at the end)."""
    return torch.cat([t for _, t in sorted(parts, key=lambda p: p[0])], 2)


def _gather(values: torch.Tensor, rows, n: int) -> torch.Tensor:
    if isinstance(rows, int):
        return values[:, :, rows: rows + n]
    return values.index_select(2, torch.as_tensor(rows, device=values.device))
