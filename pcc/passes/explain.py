"""`pcc compile --explain`: the plan as a table of layers and fused ops, with their cost.

Per op and per sample: FLOPs counts multiply-adds as 2 (einsum: building the K1*...*Ka outer
product, the contraction with the [Ko, K1*...*Ka] weights, the exp/log of the max-shift;
hadamard: adding A children's K log-values, the contraction with the [Ko, K] weights, the exp/log;
mix: a weighted log-sum-exp over P), bytes counts float32 reads of the inputs and writes of the outputs
(weights are read once per batch, listed as parameters).
"""
from __future__ import annotations

from dataclasses import dataclass

from .plan import EinsumOp, HadamardOp, Op, Plan

FLOAT_BYTES = 4


@dataclass(frozen=True)
class OpCost:
    params: int
    flops: int  # per sample
    bytes: int  # per sample


def op_cost(op: Op) -> OpCost:
    if isinstance(op, HadamardOp):
        n, ko, k = op.weight_shape
        arity = op.child_rows.shape[1]
        return OpCost(n * ko * k, n * ((arity - 1) * k + 2 * k * ko + k + ko),
                      FLOAT_BYTES * n * (arity * k + ko))
    if isinstance(op, EinsumOp):
        n, ko, width = op.weight_shape
        arity = len(op.child_k)
        flops = n * ((arity - 1) * width + 2 * width * ko + sum(op.child_k) + ko) \
            if op.has_weights else n * arity * ko
        return OpCost(n * ko * width if op.has_weights else 0, flops,
                      FLOAT_BYTES * n * (sum(op.child_k) + ko))
    n, p, k = op.weight_shape
    return OpCost(n * p * k, 4 * n * p * k, FLOAT_BYTES * n * k * (p + 1))


def leaf_params(plan: Plan) -> int:
    total = 0
    for g in plan.leaf_groups:
        extra = int(g.family.arg("n", 1)) if g.family.name == "categorical" else 1
        fields = 2 if g.family.name == "normal" else 1
        total += len(g.var_index) * g.k * extra * fields
    return total


def explain(plan: Plan) -> str:
    """A readable table of the plan (see module doc)."""
    lines = [f"plan: {plan.num_vars} variables, {len(plan.leaf_groups)} leaf groups, "
             f"{len(plan.ops)} fused ops in {plan.depth} layers; arenas "
             + ", ".join(f"K={k}: {rows} rows" for k, rows in sorted(plan.arena_rows.items()))]
    lines.append("")
    lines.append(f"{'layer':>5}  {'op':<8} {'nodes':>7}  {'shape':<28} {'gather':<8} "
                 f"{'params':>10} {'FLOPs/sample':>13} {'bytes/sample':>13}")
    lp = leaf_params(plan)
    leaf_flops = sum(len(g.var_index) * g.k * 4 for g in plan.leaf_groups)
    leaf_bytes = sum(FLOAT_BYTES * len(g.regions) * g.k for g in plan.leaf_groups)
    for g in plan.leaf_groups:
        lines.append(f"{0:>5}  {'leaf':<8} {len(g.regions):>7}  "
                     f"{f'{g.family} K={g.k}, {len(g.var_index)} slots':<28} "
                     f"{'table' if g.table else 'slots':<8} "
                     f"{'':>10} {'':>13} {'':>13}")
    totals = OpCost(lp, leaf_flops, leaf_bytes)
    for op in plan.ops:
        cost = op_cost(op)
        totals = OpCost(totals.params + cost.params, totals.flops + cost.flops,
                        totals.bytes + cost.bytes)
        if isinstance(op, EinsumOp):
            kind = "product" if not op.has_weights else "einsum"
            shape = f"{'x'.join(map(str, op.child_k))} -> {op.k_out}"
            gathers = sum(not isinstance(r, int) for r in op.child_rows)
            gather = f"{gathers}/{len(op.child_rows)}"
        elif isinstance(op, HadamardOp):
            arity = op.child_rows.shape[1]
            kind, shape, gather = "hadamard", f"{arity} x {op.k_in} -> {op.k_out}", f"{arity}/{arity}"
        else:
            kind, shape, gather = "mix", f"P={op.part_rows.shape[1]}, K={op.k}", "1/1"
        lines.append(f"{op.level:>5}  {kind:<8} {len(op.members):>7}  {shape:<28} {gather:<8} "
                     f"{cost.params:>10,} {cost.flops:>13,} {cost.bytes:>13,}")
    lines.append("")
    lines.append(f"total: {totals.params:,} parameters ({lp:,} in leaves), "
                 f"{totals.flops:,} FLOPs and {totals.bytes:,} bytes per sample")
    return "\n".join(lines)
