"""The downward pass: walk a compiled circuit's plan from the root to the leaves, choosing units.

Given the arenas of an upward pass (every node's log-values, [rows, B, K] per K) and a root unit
per batch row b, the ops are visited in reverse execution order:

    mix op     the chosen unit o of region r picks a partition p by   log M[r,p,o] + S_p[b,o]
    einsum op  the chosen unit o of partition (r,p) picks child units (i, j, ..) by
               log W[o,i,j,..] + L[b,i] + R[b,j] + ...
    hadamard   the chosen unit o of an element-wise partition picks one unit i for all of its
               children by   log W[o,i] + L[b,i] + R[b,i] + ...
    leaves     the chosen unit k of input region r gives each variable v of its scope a value
               drawn from (or the mode of) f(.; theta[v, k]); a joint density (`mvnormal`) gives
               its free variables theirs given the region's observed ones (the evidence)

`pick` turns these logits into choices: a sample from their softmax (sampling, where the sum
semiring's arenas make the logits the exact posterior of the choice given the evidence below it),
or their argmax (MPE, over max-semiring arenas).

State: per arena a LongTensor `chosen` [rows, B], the unit chosen at each node for row b, -1 when
the node is outside row b's induced tree. A region is reached at most once per row (its parents'
products have disjoint scopes), so writes never collide; only the (node, row) pairs that are
active are computed. Padded children of product ops point at row 0 of their arena (log 1), so
their writes land in row 0, which no op reads back.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

from ..runtime.engine import LoweredEinsum, LoweredHadamard, LoweredMix

Pick = Callable[[Tensor], Tensor]  # logits [A, C] -> chosen index [A] (long)


@torch.no_grad()
def descend(model, arenas: dict[int, Tensor], root_units: Tensor, pick: Pick,
            evidence: Tensor, generator: torch.Generator | None = None,
            draw: bool = True) -> Tensor:
    """Complete states [B, V] by walking `model`'s plan down from `root_units` [B] (long).

    `arenas` come from `model.upward` on a batch of B rows (or are broadcast to B columns), on
    `evidence` [B, V] (NaN = free). The leaves' values are drawn (`draw`, with `generator`) or
    their modes."""
    device = root_units.device
    program = model.program(device)
    log_w = model.log_weights()
    batch = root_units.shape[0]
    chosen = {k: torch.full((rows, batch), -1, dtype=torch.long, device=device)
              for k, rows in program.arena_rows.items()}
    chosen[program.root_k][program.root_row] = root_units
    for op in reversed(program.ops):
        if isinstance(op, LoweredMix):
            _choose_partitions(op, arenas, chosen, log_w[op.weight], pick)
        elif isinstance(op, LoweredHadamard):
            _choose_unit(op, arenas, chosen, log_w[op.weight], pick)
        else:
            _choose_children(op, arenas, chosen,
                             None if op.weight is None else log_w[op.weight], pick)
    return _leaf_values(model, program, chosen, evidence, draw, generator)


def _active(chosen: Tensor, start: int, n: int) -> tuple[Tensor, Tensor, Tensor]:
    """(member, row, unit) of every active node among rows [start, start + n): each [A]."""
    block = chosen.narrow(0, start, n)
    position = (block >= 0).view(-1).nonzero().squeeze(1)
    batch = block.shape[1]
    return position // batch, position % batch, block.reshape(-1).index_select(0, position)


def _choose_partitions(op: LoweredMix, arenas, chosen, log_m: Tensor, pick: Pick) -> None:
    member, row, unit = _active(chosen[op.k], op.out_start, op.n)
    part_rows = op.part_rows[member]  # [A, P]; padded partitions have log M = -inf
    logits = log_m[member, :, unit] + arenas[op.k][part_rows, row.unsqueeze(1), unit.unsqueeze(1)]
    p = pick(logits)
    chosen[op.k][part_rows.gather(1, p.unsqueeze(1)).squeeze(1), row] = unit


def _choose_children(op: LoweredEinsum, arenas, chosen, log_w: Tensor | None,
                     pick: Pick) -> None:
    member, row, unit = _active(chosen[op.k_out], op.out_start, op.n)
    child_rows = [member + r if isinstance(r, int) else r[member] for r in op.child_rows]
    logits = _outer_sum([arenas[k][rows, row] for k, rows in zip(op.child_k, child_rows)])
    if log_w is not None:
        logits = logits + log_w[member, unit]
    for k, rows, index in zip(op.child_k, child_rows, _unravel(pick(logits), op.child_k)):
        chosen[k][rows, row] = index


def _choose_unit(op: LoweredHadamard, arenas, chosen, log_w: Tensor, pick: Pick) -> None:
    member, row, unit = _active(chosen[op.k_out], op.out_start, op.n)
    child_rows = op.child_rows[member]  # [A_, arity]; padded children are row 0
    logits = arenas[op.k_in][child_rows, row.unsqueeze(1)].sum(1) + log_w[member, unit]
    index = pick(logits)
    for j in range(child_rows.shape[1]):
        chosen[op.k_in][child_rows[:, j], row] = index


def _outer_sum(values: list[Tensor]) -> Tensor:
    """[A, K1], ..., [A, Ka] -> [A, K1*...*Ka], row-major (as the kernels lay out W)."""
    acc = values[0]
    for v in values[1:]:
        acc = (acc.unsqueeze(-1) + v.unsqueeze(-2)).flatten(-2)
    return acc


def _unravel(flat: Tensor, sizes: tuple[int, ...]) -> list[Tensor]:
    """Row-major flat indices into K1 x ... x Ka -> one index tensor per dimension."""
    out = []
    for size in reversed(sizes):
        out.append(flat % size)
        flat = flat // size
    return out[::-1]


def _leaf_values(model, program, chosen, evidence: Tensor, draw: bool,
                 generator: torch.Generator | None) -> Tensor:
    """Each variable's value from the leaf unit chosen for it: [B, V] (NaN where none was)."""
    batch = evidence.shape[0]
    x = torch.full((batch, model.num_vars), math.nan, dtype=model._param_dtype(),
                   device=chosen[program.root_k].device)
    for i, (family, params, group) in enumerate(zip(model.families, model.leaf_params,
                                                   model.plan.leaf_groups)):
        variables = getattr(model, f"leaf_vars_{i}")
        units = chosen[group.k][model.leaf_slot_rows(i)]  # [M, B]
        rows = model.leaf_param_rows(i)  # each slot's parameter row (tied inputs share rows)
        if rows is None:
            rows = torch.arange(units.shape[0], device=units.device)
        if family.joint:
            _joint_values(family, params.as_dict(), rows, units, variables, evidence, x, draw,
                          generator)
            continue

        def value(selected):
            return (family.sample(selected, generator) if draw else family.mode(selected))
        if bool((units >= 0).all()):  # every slot in every tree (e.g. one input per variable)
            selected = {name: _at_units(p, rows, units) for name, p in params.as_dict().items()}
            x[:, variables] = value(selected).t().to(x.dtype)
            continue
        m, row, unit = _active(units, 0, units.shape[0])
        flat = rows[m] * group.k + unit  # (row, unit) into parameters viewed as [U * K, ...]
        selected = {name: p.flatten(0, 1).index_select(0, flat)
                    for name, p in params.as_dict().items()}
        x.view(-1).scatter_(0, row * model.num_vars + variables[m], value(selected).to(x.dtype))
    return x


def _joint_values(family, params: dict[str, Tensor], rows: Tensor, units: Tensor,
                  variables: Tensor, evidence: Tensor, x: Tensor, draw: bool,
                  generator: torch.Generator | None) -> None:
    """Write into x [B, V] the values of a joint family's regions (d consecutive slots each)
    at their chosen units [M, B], given the evidence on their variables."""
    d = family.joint
    mean, lower = family.factor(params)  # [U/d, K, d], [U/d, K, d, d]
    region_rows = rows.view(-1, d)[:, 0] // d  # each region's parameter block
    region, row, unit = _active(units.view(-1, d, units.shape[1])[:, 0], 0, len(region_rows))
    block = region_rows[region]
    scope = variables.view(-1, d)[region]  # [A, d]
    given = evidence[row.unsqueeze(1), scope]
    values = family.conditional(mean[block, unit], lower[block, unit], given, draw, generator)
    x[row.unsqueeze(1), scope] = values.to(x.dtype)


def _at_units(params: Tensor, rows: Tensor, units: Tensor) -> Tensor:
    """Parameters [U, K, ...] at slot m's row rows[m] and units [M, B] -> [M, B, ...]."""
    flat = rows.unsqueeze(1) * params.shape[1] + units  # [M, B]
    return params.flatten(0, 1).index_select(0, flat.view(-1)).view(*units.shape,
                                                                  *params.shape[2:])
