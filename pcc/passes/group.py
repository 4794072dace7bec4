"""Group by shape: inside a layer, bucket the nodes that one fused op can compute together.

Einsum groups: outer-product partitions with the same (K of each child, K out). Partitions whose
children all have K = 1 are plain products (log-values add), element-wise or not; they are
bucketed by arity rounded up (see `bucket`), the missing children read a row of log 1 = 0.
Hadamard groups: element-wise partitions with the same (K of the children, K out), whatever
their arity (children are listed per member, padded to the group's largest arity with row 0 of
the arena, which holds the value 1 in every unit, the element-wise neutral).
Mix groups: sum regions with several partitions, by (number of partitions rounded up, K); the
missing partitions get weight 0 (log weight -inf).
Point sums: a partition whose one child is an input over one discrete variable (a *point
input*, evaluated by table lookup) is grouped apart, by that input's family: its sum is a table
over the variable's values, folded by the lowering (`pcc_kernels.reference.PointSumLayer`).
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Union

import networkx as nx

from ..ir import Family
from ..region_graph import input_parts, partition_children
from .layerize import Layering
from .tables import uses_table


def bucket(n: int) -> int:
    """Size class of a fan-in n: exact up to 4, then the next power of two (padding < 2x)."""
    return n if n <= 4 else 1 << (n - 1).bit_length()


@dataclass(frozen=True)
class EinsumGroup:
    """Partitions `members` ((region, p) pairs) with children of K `child_k` and `k_out` outputs;
    `points`: the family of their one child, a point input (see the module doc), else None."""

    level: int
    child_k: tuple[int, ...]
    k_out: int
    members: tuple[tuple[str, int], ...]
    points: Family | None = None

    @property
    def is_product(self) -> bool:
        """All children have K = 1: the weights are the constant 1, outputs are sums of logs."""
        return all(k == 1 for k in self.child_k)


@dataclass(frozen=True)
class HadamardGroup:
    """Element-wise partitions `members` ((region, p) pairs) of at most `arity` children with
    `k_in` units each, and `k_out` outputs."""

    level: int
    k_in: int
    arity: int
    k_out: int
    members: tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class MixGroup:
    """Sum regions `members` with at most `num_parts` partitions each and `k` units."""

    level: int
    k: int
    num_parts: int
    members: tuple[str, ...]


Group = Union[EinsumGroup, HadamardGroup, MixGroup]


def point_family(graph: nx.DiGraph, children: list[str]) -> Family | None:
    """The family of the one child of a partition if it is a point input: an input region over
    one variable of a discrete family its K evaluates by table lookup (`uses_table`)."""
    if len(children) != 1:
        return None
    node = ("region", children[0])
    if graph.nodes[node]["kind"] != "input":
        return None
    parts = input_parts(graph, node)
    if len(parts) != 1 or len(parts[0][1]) != 1:
        return None
    family = parts[0][0]
    return family if uses_table(family, graph.nodes[node]["k"]) else None


def _einsum_order(item) -> tuple:
    (level, child_k, k_out, points), _ = item
    return level, child_k, k_out, "" if points is None else str(points)


def group_by_shape(graph: nx.DiGraph, layering: Layering, by_arity: bool = False
                   ) -> list[Group]:
    """All groups in execution order: per level, its einsum groups, its Hadamard groups, then its
    mix groups. `by_arity`: Hadamard groups also by arity (bucketed), as before checkpoint
    version 3 (whose parameter layout followed the groups)."""
    einsums: dict[tuple, list] = defaultdict(list)
    hadamards: dict[tuple, list] = defaultdict(list)
    mixes: dict[tuple, list] = defaultdict(list)
    arity: dict[tuple, int] = defaultdict(int)
    for node, lvl in layering.level.items():
        if node[0] == "partition":
            _, region, p = node
            child_k = tuple(graph.nodes[("region", c)]["k"] for c in partition_children(graph, node))
            k_out = graph.nodes[("region", region)]["k"]
            if all(k == 1 for k in child_k):
                child_k = (1,) * bucket(len(child_k))
            elif graph.nodes[node].get("elementwise"):
                key = (lvl, child_k[0], bucket(len(child_k)) if by_arity else 0, k_out)
                hadamards[key].append((region, p))
                arity[key] = max(arity[key], bucket(len(child_k)) if by_arity else len(child_k))
                continue
            points = None if by_arity or child_k == (1,) * len(child_k) else \
                point_family(graph, partition_children(graph, node))
            einsums[(lvl, child_k, k_out, points)].append((region, p))
        elif graph.nodes[node]["kind"] == "sum":
            parts = graph.out_degree(node)
            if parts > 1:
                mixes[(lvl, graph.nodes[node]["k"], bucket(parts))].append(node[1])
    groups: list[Group] = []
    for lvl in range(1, layering.depth + 1):
        groups += [EinsumGroup(l, ck, ko, tuple(sorted(m)), points)
                   for (l, ck, ko, points), m in sorted(einsums.items(), key=_einsum_order)
                   if l == lvl]
        groups += [HadamardGroup(l, k, arity[(l, k, a, ko)], ko, tuple(sorted(m)))
                   for (l, k, a, ko), m in sorted(hadamards.items()) if l == lvl]
        groups += [MixGroup(l, k, p, tuple(sorted(m)))
                   for (l, k, p), m in sorted(mixes.items()) if l == lvl]
    return groups
