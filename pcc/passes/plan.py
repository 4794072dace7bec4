"""Plan: lay every group's outputs out in arenas and compute the index arrays its op reads.

Arenas: one per distinct K, a tensor [rows, B, K] at run time. Row 0 of each arena holds log 1 = 0
(padding for products). Then come the leaf groups, then the mixed inputs (whose variables have
several families), then every op's outputs in execution order, each op writing one contiguous
block of rows.

An input of one family is a member of the leaf group of its (family, K). A mixed input is split
into parts, one per family, each a member of a leaf group of parts (`LeafGroup.out_start` None);
its row holds the sum of its parts' log-values (a product of densities), added before the
engine runs (`MixedLeaves`).

Member order inside each group is chosen top-down so that an op's children, where possible, sit in
one contiguous ascending block of rows; such inputs are read as views (`int` start row) instead
of being gathered by an index array.

Tied regions (`tie a b c`, `Plan.tie_owner`) share parameters: tied inputs (of one family and K,
so in one leaf group) share parameter rows slot by slot (`LeafGroup.param_rows`); tied sums
share weight rows (`pcc.runtime.layout`).
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from math import prod
from typing import Sequence, Union

import networkx as nx
import numpy as np

from ..ir import Family
from ..region_graph import input_parts, partition_children
from ..scopes import VarList, concat_indices
from .group import EinsumGroup, Group, HadamardGroup, MixGroup
from .tables import uses_table

@dataclass(frozen=True)
class LeafGroup:
    """Input regions of one family and K, evaluated by one vectorized leaf op.

    Slot m is a (region, variable) pair, region-major; unit k of region r is the product over its
    slots of f(x[var_index[m]]; theta[m, k]).
    """

    family: Family
    k: int
    regions: tuple[str, ...]
    var_index: np.ndarray  # [M] variable of each slot
    slot_region: np.ndarray  # [M] member index of each slot
    out_start: int | None  # its first arena row; None for a group of parts of mixed inputs
    # [M] the parameter row of each slot when some members are tied (slot j of a tied region
    # reads the row of slot j of its tie's owner); None: slot m has row m
    param_rows: np.ndarray | None = None

    @property
    def num_param_rows(self) -> int:
        """Rows of the group's parameters: one per slot, less the slots of tied regions."""
        return len(self.var_index) if self.param_rows is None else int(self.param_rows.max()) + 1

    @property
    def table(self) -> bool:
        """Evaluated as one product of its log-probability table with one-hot codes (see
        `pcc.runtime.leaf_tables`) rather than slot by slot."""
        return uses_table(self.family, self.k)

    @property
    def scope_size(self) -> int | None:
        """The common scope size of all members, or None when sizes differ."""
        counts = np.bincount(self.slot_region, minlength=len(self.regions))
        return int(counts[0]) if len(counts) and (counts == counts[0]).all() else None


@dataclass(frozen=True)
class MixedLeaves:
    """The input regions of K units whose variables have several families: rows [out_start,
    out_start + len(regions)) of arena k. Region i's value is the sum of its parts' values,

        L[i] = sum over parts (g, rows) with rows[m] = i of  values of leaf group g, member m

    one part per family of its variables (`parts`: the leaf groups of parts, each with the
    position in `regions` of each of its members)."""

    k: int
    regions: tuple[str, ...]
    out_start: int
    parts: tuple[tuple[int, np.ndarray], ...]


@dataclass(frozen=True)
class EinsumOp:
    """One einsum group: out rows [out_start, out_start+N) of arena `k_out`."""

    level: int
    members: tuple[tuple[str, int], ...]
    child_k: tuple[int, ...]
    k_out: int
    child_rows: tuple  # per child slot: an index array [N] of rows, or the first of N contiguous rows
    out_start: int
    # a point sum (see `pcc.passes.group`): the leaf group of its children and each child's
    # member index in it [N]
    points: tuple[int, np.ndarray] | None = None

    @property
    def width(self) -> int:
        """Number of products per partition, K1 * ... * Ka."""
        return prod(self.child_k)

    @property
    def has_weights(self) -> bool:
        return self.width > 1

    @property
    def weight_shape(self) -> tuple[int, int, int]:
        return (len(self.members), self.k_out, self.width)


@dataclass(frozen=True)
class HadamardOp:
    """One Hadamard group: out rows [out_start, out_start+N) of arena `k_out`; its children are
    rows `child_rows[n, :]` of arena `k_in` (row 0, log 1 in every unit, where padded)."""

    level: int
    members: tuple[tuple[str, int], ...]
    k_in: int
    k_out: int
    child_rows: np.ndarray  # [N, A]
    out_start: int

    @property
    def weight_shape(self) -> tuple[int, int, int]:
        return (len(self.members), self.k_out, self.k_in)


@dataclass(frozen=True)
class MixOp:
    """One mix group: out rows [out_start, out_start+N) of arena `k`."""

    level: int
    members: tuple[str, ...]
    k: int
    part_rows: np.ndarray  # [N, P] rows of the partitions' outputs (0 where padded)
    mask: np.ndarray  # [N, P] True for real partitions
    out_start: int

    @property
    def weight_shape(self) -> tuple[int, int, int]:
        return (len(self.members), self.part_rows.shape[1], self.k)


Op = Union[EinsumOp, HadamardOp, MixOp]


@dataclass(frozen=True)
class Plan:
    """Everything the lowering needs: arenas, leaf groups, ops in order, where each region lives."""

    var_names: Sequence[str]  # the circuit's `vars` (a tuple, or `DefaultVarNames`)
    arena_rows: dict[int, int]
    leaf_groups: tuple[LeafGroup, ...]
    ops: tuple[Op, ...]
    region_row: dict[str, tuple[int, int]]  # region -> (K, row)
    partition_row: dict[tuple[str, int], tuple[int, int]]
    root: str
    num_partitions: dict[str, int] = field(default_factory=dict)  # sum region -> P
    mixed_leaves: tuple[MixedLeaves, ...] = ()
    tie_owner: dict[str, str] = field(default_factory=dict)  # tied region -> its tie's owner

    @property
    def num_vars(self) -> int:
        return len(self.var_names)

    @property
    def leaf_blocks(self) -> tuple[tuple[int, int, int], ...]:
        """Where leaf values go, (K, first row, rows) per block: the leaf groups of whole inputs
        in order, then the mixed inputs of each K."""
        return tuple((g.k, g.out_start, len(g.regions)) for g in self.leaf_groups
                     if g.out_start is not None) \
            + tuple((b.k, b.out_start, len(b.regions)) for b in self.mixed_leaves)

    def leaf_rows(self, i: int) -> np.ndarray:
        """[R] the arena row of each member of leaf group i (its region's row)."""
        g = self.leaf_groups[i]
        if g.out_start is not None:
            return g.out_start + np.arange(len(g.regions))
        block, rows = next((b, rows) for b in self.mixed_leaves for gi, rows in b.parts if gi == i)
        return block.out_start + rows

    @property
    def depth(self) -> int:
        return max((op.level for op in self.ops), default=0)

    def weight_key(self, member) -> "tuple[str, int] | str":
        """Whose weights an op's member uses: (region, p) for a partition's, region for a
        mixing's, a tied region replaced by its tie's owner (tied members share them)."""
        if isinstance(member, tuple):
            return (self.tie_owner.get(member[0], member[0]), member[1])
        return self.tie_owner.get(member, member)


def make_plan(graph: nx.DiGraph, groups: list[Group], root: str,
              var_names: Sequence[str], split: bool = True) -> Plan:
    """Allocate rows and index arrays for `groups` (from `group_by_shape`); `split`: a group of
    more than MAX_OP_WEIGHTS weights becomes several ops (not so before checkpoint version
    3)."""
    leaves, mixed = _leaf_groups(graph)
    producer = _producers(graph, leaves, mixed, groups)
    order = _member_orders(graph, leaves, mixed, groups, producer, root)

    next_row: dict[int, int] = defaultdict(lambda: 1)
    node_row: dict = {}  # ("region", name) or ("partition", name, p) -> row in its K's arena

    def allocate(k: int, nodes: list) -> int:
        start = next_row[k]
        for i, node in enumerate(nodes):
            node_row[node] = start + i
        next_row[k] += len(nodes)
        return start

    owner = tie_owners(graph)
    leaf_groups = []
    for (family, k), _ in leaves.items():
        regions = order[("leaf", family, k)]
        start = allocate(k, [("region", r) for r in regions])
        scopes = [VarList.of(graph.nodes[("region", r)]["variables"]) for r in regions]
        slot_region = np.repeat(np.arange(len(regions), dtype=np.int64), [len(s) for s in scopes])
        leaf_groups.append(LeafGroup(
            family, k, tuple(regions), concat_indices(scopes), slot_region, start,
            _param_rows(regions, slot_region, owner)))
    mixed_leaves = []
    for k in mixed:
        regions = order[("mixed", k)]
        start = allocate(k, [("region", r) for r in regions])
        parts: dict[Family, list[tuple[int, str, tuple[int, ...]]]] = defaultdict(list)
        for i, r in enumerate(regions):
            for family, variables in input_parts(graph, ("region", r)):
                parts[family].append((i, r, variables))
        part_groups = []
        for family, members in sorted(parts.items(), key=lambda kv: str(kv[0])):
            scopes = [VarList.of(vs) for _, _, vs in members]
            names = tuple(r for _, r, _ in members)
            slot_region = np.repeat(np.arange(len(members), dtype=np.int64), [len(s) for s in scopes])
            leaf_groups.append(LeafGroup(
                family, k, names, concat_indices(scopes), slot_region, None,
                _param_rows(names, slot_region, owner)))
            part_groups.append((len(leaf_groups) - 1,
                                np.array([i for i, _, _ in members], dtype=np.int64)))
        mixed_leaves.append(MixedLeaves(k, tuple(regions), start, tuple(part_groups)))

    ops: list[Op] = []
    for g, members in ((g, piece) for g in groups
                       for piece in (_pieces(g, order[g]) if split else [order[g]])):
        if isinstance(g, (EinsumGroup, HadamardGroup)):
            start = allocate(g.k_out, [("partition", r, p) for r, p in members])
            for r, p in members:
                if graph.out_degree(("region", r)) == 1:
                    node_row[("region", r)] = node_row[("partition", r, p)]
        if isinstance(g, HadamardGroup):
            child_rows = np.zeros((len(members), g.arity), dtype=np.int64)
            for i, (r, p) in enumerate(members):
                children = partition_children(graph, ("partition", r, p))
                child_rows[i, :len(children)] = [node_row[("region", c)] for c in children]
            ops.append(HadamardOp(g.level, tuple(members), g.k_in, g.k_out, child_rows, start))
        elif isinstance(g, EinsumGroup):
            rows = []
            for j in range(len(g.child_k)):
                rows.append(_as_rows([
                    node_row[("region", children[j])] if j < len(children) else 0
                    for children in (partition_children(graph, ("partition", r, p))
                                     for r, p in members)]))
            ops.append(EinsumOp(g.level, tuple(members), g.child_k, g.k_out, tuple(rows), start,
                                _point_members(graph, g, members, leaf_groups)))
        else:
            start = allocate(g.k, [("region", r) for r in members])
            part_rows = np.zeros((len(members), g.num_parts), dtype=np.int64)
            mask = np.zeros((len(members), g.num_parts), dtype=bool)
            for i, r in enumerate(members):
                for p in range(graph.out_degree(("region", r))):
                    part_rows[i, p] = node_row[("partition", r, p)]
                    mask[i, p] = True
            ops.append(MixOp(g.level, tuple(members), g.k, part_rows, mask, start))

    def k_of(node) -> int:
        return graph.nodes[("region", node[1])]["k"]

    return Plan(
        var_names=var_names,
        arena_rows=dict(next_row),
        leaf_groups=tuple(leaf_groups),
        ops=tuple(ops),
        region_row={n[1]: (k_of(n), r) for n, r in node_row.items() if n[0] == "region"},
        partition_row={(n[1], n[2]): (k_of(n), r) for n, r in node_row.items()
                       if n[0] == "partition"},
        root=root,
        num_partitions={n[1]: graph.out_degree(n) for n, d in graph.nodes(data=True)
                        if d.get("kind") == "sum"},
        mixed_leaves=tuple(mixed_leaves),
        tie_owner=owner,
    )


def tie_owners(graph: nx.DiGraph) -> dict[str, str]:
    """Tied region -> the owner (first region) of its tie, from the graph's `ties`."""
    return {name: tie.regions[0] for tie in graph.graph.get("ties", ()) for name in tie.regions}


def _param_rows(regions, slot_region: np.ndarray, owner: dict[str, str]) -> np.ndarray | None:
    """[M] the parameter row of each slot of a leaf group of `regions`: rows in slot order for
    the slots of regions that own their parameters, the owner's slot j for slot j of a tied
    region (tied inputs have one family, K and scope size, so they are in one group); None
    when no member is tied to another."""
    position = {r: i for i, r in enumerate(regions)}
    shared = [owner.get(r, r) != r for r in regions]
    if not any(shared):
        return None
    first = np.searchsorted(slot_region, np.arange(len(regions)))  # each member's first slot
    own = ~np.asarray(shared)[slot_region]
    rows = np.full(len(slot_region), -1, dtype=np.int64)
    rows[own] = np.arange(int(own.sum()))
    sizes = np.bincount(slot_region, minlength=len(regions))
    for i, r in enumerate(regions):
        if shared[i]:
            o = position[owner[r]]
            rows[first[i]: first[i] + sizes[i]] = rows[first[o]: first[o] + sizes[i]]
    return rows


def unpadded_children(child_rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The children [N, A] of element-wise products (padded with row 0) without the padding:
    each member's first child [N], the others [E] (member-major) and their members [E]."""
    rest = child_rows[:, 1:]
    real = rest != 0
    parent = np.nonzero(real)[0].astype(np.int64)
    return (np.ascontiguousarray(child_rows[:, 0]), rest[real].astype(np.int64), parent)


# The most weights one op holds: a larger group is split into ops of consecutive members, so
# that what the engine makes per op (its weights exponentiated, its flows) stays small.
MAX_OP_WEIGHTS = 1 << 20


def _pieces(g: Group, members: list) -> list[list]:
    """`members` of group `g` in runs of at most MAX_OP_WEIGHTS weights (whole members)."""
    if isinstance(g, EinsumGroup):
        per_member = g.k_out * prod(g.child_k)
    elif isinstance(g, HadamardGroup):
        per_member = g.k_out * g.k_in
    else:
        per_member = g.num_parts * g.k
    step = max(1, MAX_OP_WEIGHTS // max(1, per_member))
    return [members[a:a + step] for a in range(0, len(members), step)] or [members]


def _point_members(graph: nx.DiGraph, g: EinsumGroup, members: list,
                   leaf_groups: list[LeafGroup]) -> tuple[int, np.ndarray] | None:
    """For a group of point sums, the leaf group holding their children and each child's member
    index in it."""
    if g.points is None:
        return None
    index = next(i for i, lg in enumerate(leaf_groups) if lg.family == g.points
                 and lg.k == g.child_k[0] and lg.out_start is not None)
    position = {r: m for m, r in enumerate(leaf_groups[index].regions)}
    return index, np.array([position[partition_children(graph, ("partition", r, p))[0]]
                            for r, p in members], dtype=np.int64)


def _as_rows(rows: list[int]) -> "np.ndarray | int":
    """An int start row when `rows` is one ascending contiguous block, else an index array."""
    arr = np.asarray(rows, dtype=np.int64)
    if len(arr) and (np.diff(arr) == 1).all():
        return int(arr[0])
    return arr


def _leaf_groups(graph: nx.DiGraph) -> tuple[dict[tuple[Family, int], list[str]], dict[int, list[str]]]:
    """Input regions of one family by (family, K), and mixed ones by K, in a deterministic order."""
    out: dict[tuple[Family, int], list[str]] = defaultdict(list)
    mixed: dict[int, list[str]] = defaultdict(list)
    for node, d in sorted(graph.nodes(data=True), key=lambda nd: str(nd[0])):
        if d.get("kind") == "input":
            parts = input_parts(graph, node)
            if len(parts) == 1:
                out[(parts[0][0], d["k"])].append(node[1])
            else:
                mixed[d["k"]].append(node[1])
    return dict(sorted(out.items(), key=lambda kv: (str(kv[0][0]), kv[0][1]))), dict(sorted(mixed.items()))


def _producers(graph, leaves, mixed, groups) -> dict:
    """The key of the group that computes each region's value: ("leaf", family, k) for a leaf
    group, ("mixed", k) for the mixed inputs of K units, ("group", i) for groups[i] (a group
    itself is slow to hash: its hash covers all its members)."""
    producer = {}
    for (family, k), regions in leaves.items():
        for r in regions:
            producer[r] = ("leaf", family, k)
    for k, regions in mixed.items():
        for r in regions:
            producer[r] = ("mixed", k)
    for i, g in enumerate(groups):
        if isinstance(g, (EinsumGroup, HadamardGroup)):
            for r, p in g.members:
                producer[(r, p)] = ("group", i)
                if graph.out_degree(("region", r)) == 1:
                    producer[r] = ("group", i)
        else:
            for r in g.members:
                producer[r] = ("group", i)
    return producer


def _member_orders(graph, leaves, mixed, groups, producer, root) -> dict:
    """Member order of every group, chosen top-down by first consumption (see module doc)."""
    wanted: dict = defaultdict(list)
    seen: set = set()

    def want(key, member, as_member):
        if member not in seen:
            seen.add(member)
            wanted[producer[key]].append(as_member)

    def region_member(r: str):
        """How region r appears in its producer's member list."""
        if graph.nodes[("region", r)]["kind"] == "sum" and graph.out_degree(("region", r)) == 1:
            return (r, 0)
        return r

    want(root, root, region_member(root))
    order: dict = {}
    for i in reversed(range(len(groups))):
        g = groups[i]
        members = _finish(wanted[("group", i)], g.members)
        order[g] = members
        if isinstance(g, (EinsumGroup, HadamardGroup)):
            children = [partition_children(graph, ("partition", r, p)) for r, p in members]
            for j in range(max(map(len, children), default=0)):
                for ch in children:
                    if j < len(ch):
                        want(ch[j], ch[j], region_member(ch[j]))
        else:
            for p in range(g.num_parts):
                for r in members:
                    if p < graph.out_degree(("region", r)):
                        want((r, p), (r, p), (r, p))
    for (family, k), regions in leaves.items():
        key = ("leaf", family, k)
        order[key] = _finish(wanted[key], regions)
    for k, regions in mixed.items():
        order[("mixed", k)] = _finish(wanted[("mixed", k)], regions)
    return order


def _finish(wanted: list, members) -> list:
    """`wanted` first, then the members nobody asked for, in their given order."""
    rest = set(members) - set(wanted)
    return list(wanted) + [m for m in members if m in rest]
