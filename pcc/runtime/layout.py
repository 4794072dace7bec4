"""Where every weighted op's parameters live: a few pooled tensors instead of one per op.

The weights of all einsum and Hadamard ops whose members have the same shape [Ko, width] are
rows of one tensor [N, Ko, width] (a *pool*); the mixing weights of all mix ops with the same
[P, K] likewise. Op j reads the rows [start, start + n) of its pool. So normalizing the weights,
exponentiating them once per pass and EM's M-step are one call per pool, whatever the number of
layers, and a row of a pool is one member's (partition's or region's) weights.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..passes import EinsumOp, HadamardOp, MixOp, Plan


@dataclass(frozen=True)
class WeightSlot:
    """An op's weights: rows [start, start + n) of pool `pool` of kind 'sum' or 'mix'."""

    kind: str
    pool: int
    start: int
    n: int


@dataclass(frozen=True)
class Layout:
    """The pools (shape per member, rows) of each kind, and each plan op's slot (None for plain
    products)."""

    sum_pools: tuple[tuple[tuple[int, int], int], ...]  # ((Ko, width), rows)
    mix_pools: tuple[tuple[tuple[int, int], int], ...]  # ((P, K), rows)
    slots: tuple[WeightSlot | None, ...]

    @property
    def weighted(self) -> list[WeightSlot]:
        """The slots of the weighted ops, in op order."""
        return [s for s in self.slots if s is not None]

    def pool_index(self, slot: WeightSlot) -> int:
        """The slot's pool in the list of all pools, sum pools first."""
        return slot.pool if slot.kind == "sum" else len(self.sum_pools) + slot.pool


def weight_layout(plan: Plan) -> Layout:
    """Pool every weighted op of `plan` by kind and per-member weight shape, in op order."""
    shapes: dict[str, dict[tuple[int, int], int]] = {"sum": {}, "mix": {}}
    rows: dict[str, list[int]] = {"sum": [], "mix": []}
    slots: list[WeightSlot | None] = []
    for op in plan.ops:
        if isinstance(op, EinsumOp) and not op.has_weights:
            slots.append(None)
            continue
        kind = "mix" if isinstance(op, MixOp) else "sum"
        assert isinstance(op, (EinsumOp, HadamardOp, MixOp))
        shape = tuple(op.weight_shape[1:])
        pools = shapes[kind]
        if shape not in pools:
            pools[shape] = len(pools)
            rows[kind].append(0)
        pool = pools[shape]
        n = op.weight_shape[0]
        slots.append(WeightSlot(kind, pool, rows[kind][pool], n))
        rows[kind][pool] += n

    def listed(kind):
        return tuple((shape, rows[kind][i]) for shape, i in shapes[kind].items())
    return Layout(listed("sum"), listed("mix"), tuple(slots))


def pool_members(plan: Plan, layout: Layout) -> dict[str, list]:
    """The member each row of every pool holds, by state_dict name: `sum_logits.i` rows are
    [region, partition] pairs, `mix_logits.i` rows regions (what a checkpoint records, so that
    parameters saved under another layout can be placed by name)."""
    out: dict[str, list] = {f"sum_logits.{i}": [None] * rows
                            for i, (_, rows) in enumerate(layout.sum_pools)}
    out.update({f"mix_logits.{i}": [None] * rows for i, (_, rows) in enumerate(layout.mix_pools)})
    for op, slot in zip(plan.ops, layout.slots):
        if slot is not None:
            rows = out[f"{slot.kind}_logits.{slot.pool}"]
            for m, member in enumerate(op.members):
                rows[slot.start + m] = list(member) if slot.kind == "sum" else member
    return out


def relayout(state: dict, stored: dict[str, list], wanted: dict[str, list]) -> dict:
    """`state` with its weight pools rearranged from the layout `stored` into `wanted` (both as
    `pool_members` gives them), row by row by member; other entries as they are. A member the
    stored layout lacks raises KeyError."""
    where = {_key(m): (name, row) for name, members in stored.items()
             for row, m in enumerate(members)}
    out = {k: v for k, v in state.items() if k not in stored}
    for name, members in wanted.items():
        out[name] = torch.stack([state[n][r] for n, r in (where[_key(m)] for m in members)])
    return out


def _key(member) -> tuple:
    return tuple(member) if isinstance(member, (list, tuple)) else (member,)
