"""`pcc compile --explain`: the plan as a table of layers and fused ops, with their cost
(every column is described in docs/cli.md, "Reading --explain").

Per op and per sample: FLOPs counts multiply-adds as 2 (einsum: building the K1*...*Ka
Kronecker product, the contraction with the [Ko, K1*...*Ka] weights, the normalization: a max
and a division per output unit, a logarithm per row; hadamard: multiplying A children's K
values, the contraction with the [Ko, K] weights, the normalization; point sum: a sum over an
input of one discrete variable, folded into a table over its S values (per batch: (S+1) K Ko
multiply-adds; per sample: a lookup of Ko values); mix: scaling and adding P partitions, the
normalization; leaf: 4 per slot and unit, a density and its product into the region; mixed
inputs: adding the parts), bytes counts float32 reads of the inputs and writes of the outputs
(weights are read once per batch, listed as parameters).

Tied regions (`tie a b c`) share parameters: an op's params column counts the weight rows it is
the first to use (`+N tied` adds those of rows an earlier op counted), a leaf group's its
parameter rows, and a list of the tie groups follows the table; the total counts each once.
"""
from __future__ import annotations

from dataclasses import dataclass

from .plan import EinsumOp, HadamardOp, LeafGroup, MixedLeaves, Op, Plan

FLOAT_BYTES = 4
_LINE = 100  # width of a regions listing


@dataclass(frozen=True)
class OpCost:
    params: int
    flops: int  # per sample
    bytes: int  # per sample

    def __add__(self, other: "OpCost") -> "OpCost":
        return OpCost(self.params + other.params, self.flops + other.flops, self.bytes + other.bytes)


def op_cost(op: Op) -> OpCost:
    if isinstance(op, HadamardOp):
        n, ko, k = op.weight_shape
        arity = op.child_rows.shape[1]
        return OpCost(n * ko * k, n * ((arity - 1) * k + 2 * k * ko + 2 * ko + 1),
                      FLOAT_BYTES * n * (arity * k + ko))
    if isinstance(op, EinsumOp) and op.points is not None:
        n, ko, width = op.weight_shape
        return OpCost(n * ko * width, n * ko, FLOAT_BYTES * n * (1 + ko))
    if isinstance(op, EinsumOp):
        n, ko, width = op.weight_shape
        arity = len(op.child_k)
        flops = n * ((arity - 1) * width + 2 * width * ko + 2 * ko + 1) \
            if op.has_weights else n * arity * ko
        return OpCost(n * ko * width if op.has_weights else 0, flops,
                      FLOAT_BYTES * n * (sum(op.child_k) + ko))
    n, p, k = op.weight_shape
    return OpCost(n * p * k, 4 * n * p * k, FLOAT_BYTES * n * k * (p + 1))


def leaf_cost(g: LeafGroup) -> OpCost:
    """A leaf group: its parameters (per parameter row, one per slot but for tied inputs, and
    unit: n for categorical(n), 2 for normal, 1 else), 4 FLOPs per slot and unit, and its K
    values per region written."""
    slots = len(g.var_index)
    return OpCost(g.num_param_rows * g.k * _row_params(g), 4 * slots * g.k,
                  FLOAT_BYTES * len(g.regions) * g.k)


def _row_params(g: LeafGroup) -> int:
    """Parameters per (parameter row, unit) of a leaf group's family."""
    if g.family.name == "mvnormal":
        return 1 + int(g.family.arg("d"))  # a mean and a row of the covariance's factor
    extra = int(g.family.arg("n", 1)) if g.family.name == "categorical" else 1
    return extra * (2 if g.family.name == "normal" else 1)


def mixed_cost(block: MixedLeaves, plan: Plan) -> OpCost:
    """Adding the parts of mixed inputs: one add per part value, each part read, the sum written."""
    parts = sum(len(plan.leaf_groups[i].regions) for i, _ in block.parts)
    return OpCost(0, parts * block.k, FLOAT_BYTES * block.k * (parts + len(block.regions)))


def leaf_params(plan: Plan) -> int:
    return sum(leaf_cost(g).params for g in plan.leaf_groups)


def explain(plan: Plan, regions: bool = False) -> str:
    """A readable table of the plan (see the module doc); `regions` lists under each row the
    regions (or partitions, `name[p]`) it computes."""
    arenas = ", ".join(f"K={k}: {rows}" for k, rows in sorted(plan.arena_rows.items()))
    header = (f"plan: {_count(plan.num_vars, 'variable')}, {_count(len(plan.leaf_groups), 'leaf group')}, "
              f"{_count(len(plan.ops), 'fused op')} in {_count(plan.depth, 'layer')}; "
              f"arena rows per K: {arenas}")
    rows: list[tuple[list[str], OpCost, list[str]]] = []
    for g in plan.leaf_groups:
        how = "table" if g.table else "per slot"
        tied = len(g.var_index) - g.num_param_rows
        shape = f"{g.family} K={g.k}: {_count(len(g.var_index), 'slot')}" + (
            f" ({tied} tied)" if tied else "") + f", {how}"
        kind = "leaf" if g.out_start is not None else "parts"  # of mixed inputs
        rows.append((["0", kind, str(len(g.regions)), shape, "-"], leaf_cost(g), list(g.regions)))
    for block in plan.mixed_leaves:
        shape = f"K={block.k}, from {_count(len(block.parts), 'parts group')}"
        rows.append((["0", "mixed", str(len(block.regions)), shape, "-"], mixed_cost(block, plan),
                     list(block.regions)))
    counted: set = set()  # weight rows (`Plan.weight_key`) counted by an earlier op
    tied: list[int] = [0] * len(rows)  # per row of the table, the parameters counted before
    for op in plan.ops:
        cost = op_cost(op)
        if plan.tie_owner and cost.params:
            keys = [plan.weight_key(m) for m in op.members]
            new = len(set(keys) - counted)
            counted.update(keys)
            tied.append(cost.params * (len(keys) - new) // len(keys))
            cost = OpCost(cost.params - tied[-1], cost.flops, cost.bytes)
        else:
            tied.append(0)
        rows.append((_op_cells(op), cost, _op_members(op, plan)))
    totals = OpCost(0, 0, 0)
    for _, cost, _ in rows:
        totals = totals + cost
    table = [["layer", "op", "nodes", "shape", "gathered", "params", "FLOPs/sample", "bytes/sample"]]
    table += [cells + [f"{cost.params:,}" + (f" +{t:,} tied" if t else ""), f"{cost.flops:,}",
                       f"{cost.bytes:,}"] for (cells, cost, _), t in zip(rows, tied)]
    widths = [max(len(r[c]) for r in table) for c in range(len(table[0]))]
    right = {0, 2, 5, 6, 7}
    lines = [header, ""]
    for i, cells in enumerate(table):
        lines.append("  ".join(cell.rjust(w) if c in right else cell.ljust(w)
                               for c, (cell, w) in enumerate(zip(cells, widths))).rstrip())
        if regions and i:
            lines += _wrapped(rows[i - 1][2], widths[0] + 2)
    lines.append("")
    lines += _tie_lines(plan)
    lines.append(f"total: {totals.params:,} parameters ({leaf_params(plan):,} in leaves), "
                 f"{totals.flops:,} FLOPs and {totals.bytes:,} bytes per sample")
    return "\n".join(lines)


def _tie_lines(plan: Plan) -> list[str]:
    """The tie groups: owner, parameters (counted once) and members."""
    groups: dict[str, list[str]] = {}
    for region, owner in plan.tie_owner.items():
        groups.setdefault(owner, []).append(region)
    if not groups:
        return []
    params = dict.fromkeys(groups, 0)  # the owner's own weights and leaf parameters
    for op in plan.ops:
        if isinstance(op, EinsumOp) and not op.has_weights:
            continue
        _, rows, cols = op.weight_shape
        for m in op.members:
            if (m[0] if isinstance(m, tuple) else m) in params:
                params[m[0] if isinstance(m, tuple) else m] += rows * cols
    for g in plan.leaf_groups:
        for m, r in enumerate(g.regions):
            if r in params:
                params[r] += int((g.slot_region == m).sum()) * g.k * _row_params(g)
    lines = [f"{_count(len(groups), 'tie group')} (parameters counted once):"]
    for owner, members in groups.items():
        lines.append(f"  {owner}: {params[owner]:,} parameters, shared by "
                     f"{_count(len(members), 'region')}:")
        lines += _wrapped(members, 4)
    return lines + [""]


def _op_cells(op: Op) -> list[str]:
    """layer, op, nodes, shape, gathered."""
    if isinstance(op, EinsumOp) and op.points is not None:
        kind = "point sum"
        shape = f"{op.child_k[0]} -> {op.k_out}, table"
        gathered = "1 of 1"
    elif isinstance(op, EinsumOp):
        kind = "einsum" if op.has_weights else "product"
        shape = f"{'x'.join(map(str, op.child_k))} -> {op.k_out}"
        gathered = f"{sum(not isinstance(r, int) for r in op.child_rows)} of {len(op.child_rows)}"
    elif isinstance(op, HadamardOp):
        arity = op.child_rows.shape[1]
        kind, shape, gathered = "hadamard", f"{arity} x {op.k_in} -> {op.k_out}", f"{arity} of {arity}"
    else:
        kind, shape, gathered = "mix", f"P={op.part_rows.shape[1]}, K={op.k}", "1 of 1"
    return [str(op.level), kind, str(len(op.members)), shape, gathered]


def _op_members(op: Op, plan: Plan) -> list[str]:
    """The regions an op computes: sums by name, a partition of a sum with several as `name[p]`."""
    if isinstance(op, (EinsumOp, HadamardOp)):
        return [r if plan.num_partitions.get(r, 1) == 1 else f"{r}[{p}]" for r, p in op.members]
    return list(op.members)


def _wrapped(names: list[str], indent: int) -> list[str]:
    """`names` as indented lines of at most _LINE characters."""
    lines, line = [], ""
    for name in names:
        if line and indent + len(line) + 2 + len(name) > _LINE:
            lines.append(" " * indent + line + ",")
            line = ""
        line = f"{line}, {name}" if line else name
    return lines + [" " * indent + line]


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
