"""Which flows the backward pass writes over a row, and which it adds to.

The backward pass visits the ops in reverse and hands each child row the flows of its parents.
A row's first contribution (in that order) can be written over whatever the row held, if it is
its op's only contribution to the row; every later one is added. Rows that get no written first
contribution (several from one op, or none at all: the padding row 0, inputs read by point sums
only) are zeroed before the pass. So the flow arenas need no zeroing of all their rows per step.
Point sums give their inputs no flows (they count values instead): they take no part.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass

import numpy as np

from .plan import EinsumOp, HadamardOp, MixOp, Plan


@dataclass(frozen=True)
class FlowWrites:
    """Per op (by index in `plan.ops`), the entries whose flows are written: einsum ops a bool
    array [N] per child slot, Hadamard ops [N, A] (as their child rows), mix ops [N, P]; None for
    point sums and plain products without children to write. Per arena K, the rows to zero."""

    overwrite: dict[int, object]
    zero_rows: dict[int, np.ndarray]


def flow_writes(plan: Plan) -> FlowWrites:
    entries = {j: _entries(op) for j, op in enumerate(plan.ops)}  # [(k, rows array)] per slot
    first: dict[tuple[int, int], int] = {}  # (k, row) -> the op that writes it first
    counted: dict[tuple[int, int], bool] = {}  # (k, row) -> written by that op once
    for j in reversed(range(len(plan.ops))):
        counts = Counter((k, int(r)) for k, rows in entries[j] for r in rows.reshape(-1))
        for key, times in counts.items():
            if key not in first:
                first[key], counted[key] = j, times == 1 and key[1] != 0
    overwrite: dict[int, object] = {}
    for j, op in enumerate(plan.ops):
        if not entries[j]:
            continue
        flags = [np.array([first[(k, int(r))] == j and counted[(k, int(r))]
                           for r in rows.reshape(-1)], dtype=bool).reshape(rows.shape)
                 for k, rows in entries[j]]
        overwrite[j] = flags if isinstance(op, EinsumOp) else flags[0]
    zero: dict[int, list[int]] = defaultdict(list)
    for k, rows in plan.arena_rows.items():
        for r in range(rows):
            if not counted.get((k, r), False):
                zero[k].append(r)
    return FlowWrites(overwrite, {k: np.array(v, dtype=np.int64) for k, v in zero.items()})


def _entries(op) -> list[tuple[int, np.ndarray]]:
    """(arena K, child rows) of every child slot of `op` that receives flows."""
    n = len(op.members)
    if isinstance(op, EinsumOp):
        if op.points is not None:
            return []
        return [(k, np.arange(r, r + n) if isinstance(r, int) else np.asarray(r))
                for k, r in zip(op.child_k, op.child_rows)]
    if isinstance(op, HadamardOp):
        return [(op.k_in, op.child_rows)]
    assert isinstance(op, MixOp)
    return [(op.k, np.where(op.mask, op.part_rows, 0))]
