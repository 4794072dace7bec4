"""Where every weighted op's parameters live: a few pooled tensors instead of one per op.

The weights of all einsum and Hadamard ops whose members have the same shape [Ko, width] are
rows of one tensor [N, Ko, width] (a *pool*); the mixing weights of all mix ops with the same
[P, K] likewise. Op j reads the rows [start, start + n) of its pool. So normalizing the weights,
exponentiating them once per pass and EM's M-step are one call per pool, whatever the number of
layers, and a row of a pool is one member's (partition's or region's) weights.

Tied regions (`tie a b c`, `Plan.tie_owner`) share rows: the partitions p of every region of a
tie group have one row, keyed by the group's owner (owner, p), and so have their mixing weights.
An op whose rows are shared with another op (or repeated within it) reads them by an index
array (`WeightSlot.rows`), and the engine adds its flows into them (`pcc.runtime.engine`), so
the M-step sees the sum of every tied copy's flows.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
import torch

from ..passes import EinsumOp, HadamardOp, MixOp, Plan


@dataclass(frozen=True)
class WeightSlot:
    """An op's weights: rows [start, start + n) of pool `pool` of kind 'sum' or 'mix', its
    own; or, when some are shared (tied), the rows `rows` [n] (`start` = rows[0])."""

    kind: str
    pool: int
    start: int
    n: int
    rows: np.ndarray | None = None

    @property
    def block(self) -> bool:
        """Whether its rows are [start, start + n) (a view reads them)."""
        return self.rows is None or bool((self.rows == np.arange(self.start, self.start + self.n)).all())

    def indices(self) -> np.ndarray:
        """[n] its rows of the pool."""
        return np.arange(self.start, self.start + self.n) if self.rows is None else self.rows


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
    """Pool every weighted op of `plan` by kind and per-member weight shape, in op order; one
    row per member, or per tie group (see the module doc)."""
    shapes: dict[str, dict[tuple[int, int], int]] = {"sum": {}, "mix": {}}
    rows: dict[str, list[int]] = {"sum": [], "mix": []}
    row_of: dict[tuple, int] = {}  # (kind, pool, member key) -> row
    placed: list[tuple[str, int, list[int]] | None] = []
    for op in plan.ops:
        if isinstance(op, EinsumOp) and not op.has_weights:
            placed.append(None)
            continue
        kind = "mix" if isinstance(op, MixOp) else "sum"
        assert isinstance(op, (EinsumOp, HadamardOp, MixOp))
        shape = tuple(op.weight_shape[1:])
        pools = shapes[kind]
        if shape not in pools:
            pools[shape] = len(pools)
            rows[kind].append(0)
        pool = pools[shape]
        op_rows = []
        for member in op.members:
            key = (kind, pool, plan.weight_key(member))
            if key not in row_of:
                row_of[key] = rows[kind][pool]
                rows[kind][pool] += 1
            op_rows.append(row_of[key])
        placed.append((kind, pool, op_rows))
    uses = Counter((p[0], p[1], r) for p in placed if p is not None for r in p[2])
    slots = [None if p is None else _slot(*p, uses) for p in placed]

    def listed(kind):
        return tuple((shape, rows[kind][i]) for shape, i in shapes[kind].items())
    return Layout(listed("sum"), listed("mix"), tuple(slots))


def _slot(kind: str, pool: int, rows: list[int], uses: Counter) -> WeightSlot:
    """The slot of an op with these rows: its own block, or an index array where a row is
    shared."""
    shared = any(uses[(kind, pool, r)] > 1 for r in rows)
    block = rows == list(range(rows[0], rows[0] + len(rows)))
    return WeightSlot(kind, pool, rows[0], len(rows),
                      np.asarray(rows, dtype=np.int64) if shared or not block else None)


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
            for row, member in zip(slot.indices().tolist(), op.members):
                key = plan.weight_key(member)
                rows[row] = list(key) if slot.kind == "sum" else key
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
