"""Hidden Chow-Liu trees (HCLT; Liu & Van den Broeck, NeurIPS 2021) learned from discrete,
continuous or mixed data.

A Chow-Liu tree over the variables (`pcc.structures.chow_liu`), with one hidden variable z_v of
K states per variable v. Regions, for N variables and one tree:

    input leaf{v} {v} k=K                       p(x_v | z_v = i), one distribution per state i
    sum   e{v}    k=K = leaf{v} .* e{c1} .* ..  (v not the root; c1.. its tree children)
          unit j: sum_i p(z_v = i | z_parent = j) p(x_v | i) e{c1}[i] ...   weights [K, K]
    sum   top     k=1 = leaf{r} .* e{c1} .* ..  sum_i p(z_r = i) p(x_r | i) ...  weights [1, K]

so every tree node's unit i is the element-wise product of unit i of its leaf and of its
children's edge sums: N inputs, N sums, N partitions, N K^2 - (K^2 - K) sum weights.

A mixture of M trees (`trees=M`) shares the inputs: tree 0 is the Chow-Liu tree of the data,
tree m > 0 that of a bootstrap resample of its rows (seeded), its edge sums named `t{m}_e{v}`;
`top` has one partition per tree, mixed uniformly at first.

Leaves: each column's family (`pcc.structures.chow_liu.column_families`: bernoulli or
categorical for whole numbers, normal for any other numbers), the circuit's `leaf` the commonest
and `leaf F {vars}` statements for the others; one `leaf` for every column when given.

Strongly correlated continuous columns share one node (`correlation`, default
defaults.HCLT_CORRELATION): columns whose every pair has |correlation| >= it, at most
defaults.HCLT_GROUP of them (`pcc.structures.chow_liu.correlated_groups`), get one hidden
variable and one `mvnormal(d)` leaf, a full covariance per hidden state, and the tree spans the
groups. A tree of hidden states with one normal per state per column can only approximate a
near-linear relation between columns piece by piece (K pieces); one covariance holds it exactly.
Node names follow the group's first column (`leaf{v}`, `e{v}`).
"""
from __future__ import annotations

import numpy as np

import collections
import dataclasses

from ..ir import Circuit, Family, LeafScope
from . import defaults
from .arguments import StructureError, require_at_least
from .builder import CircuitBuilder
from .chow_liu import (DataSource, Tree, check_values, chow_liu, correlated_groups, families_for,
                       load_columns)


def hidden_chow_liu_tree(data: DataSource, *, k: int = defaults.HCLT_K, leaf: Family | None = None,
                         trees: int = defaults.HCLT_TREES,
                         smoothing: float = defaults.HCLT_SMOOTHING,
                         correlation: float = defaults.HCLT_CORRELATION,
                         seed: int = 0) -> Circuit:
    """The HCLT of `data` (rows x variables of numbers, NaN = missing, as an array or a file
    `pcc.data.load_data` reads; a file's header names the variables); see the module doc.
    `leaf` defaults to each column's family: bernoulli for 0/1, categorical(n = largest + 1)
    for other whole numbers, normal else. `correlation` >= 1: no grouped columns."""
    return hclt_of_columns(*load_columns(data), k=k, leaf=leaf, trees=trees,
                           smoothing=smoothing, correlation=correlation, seed=seed)


def hclt_of_columns(values: np.ndarray, path: str | None, names: tuple[str, ...] | None, *,
                    k: int, leaf: Family | None, trees: int, smoothing: float,
                    seed: int, correlation: float = defaults.HCLT_CORRELATION) -> Circuit:
    """`hidden_chow_liu_tree` of columns `pcc.structures.chow_liu.load_columns` read."""
    require_at_least("k", k, 1)
    require_at_least("trees", trees, 1)
    if not 0 < correlation:
        raise StructureError(f"correlation must be > 0 (1 or more: no grouped columns), "
                             f"got {correlation!r}")
    families = families_for(values, leaf, path)
    discrete = np.array([f.name != "normal" for f in families])
    groupable = ~discrete if leaf is None else np.zeros_like(discrete)  # `leaf`: one family each
    groups = correlated_groups(values, groupable, correlation, defaults.HCLT_GROUP)
    for group in groups:
        if len(group) > 1:
            for v in group:
                families[v] = Family("mvnormal", (("d", len(group)),))
    if discrete.all():  # counts over the values (missing: -1)
        values, discrete = check_values(values, path, missing=True), None
    common = collections.Counter(families).most_common(1)[0][0]
    builder = CircuitBuilder(values.shape[1], k, common)
    for group in groups:
        builder.input(f"leaf{group[0]}", group)
    rng = np.random.default_rng(seed)
    roots = []
    grouped = groups if len(groups) < values.shape[1] else None
    for m in range(trees):
        sample = values if m == 0 else values[rng.integers(0, len(values), len(values))]
        prefix = "" if trees == 1 else f"t{m}_"
        tree = chow_liu(sample, smoothing, discrete, grouped)
        roots.append(_tree_regions(builder, tree, [g[0] for g in groups], prefix))
    circuit = builder.build(builder.sum("top", roots, elementwise=True))
    others = {f: tuple(v for v, g in enumerate(families) if g == f) for f in families if f != common}
    return dataclasses.replace(circuit, vars=names or circuit.vars,
                               leaf_scopes=tuple(LeafScope(f, vs) for f, vs in others.items()))


def _tree_regions(builder: CircuitBuilder, tree: Tree, first: list[int], prefix: str) -> list[str]:
    """The edge sums of `tree` over nodes named by their first column `first[i]` (children
    first); returns the root's product partition."""
    children = [[first[c] for c in cs] for cs in tree.children]
    for i in reversed(tree.top_down()):
        if i != tree.root:
            builder.sum(f"{prefix}e{first[i]}", [_node(first[i], children[i], prefix)],
                        elementwise=True)
    return _node(first[tree.root], children[tree.root], prefix)


def _node(v: int, children: list[int], prefix: str) -> list[str]:
    """Tree node v as a partition: its leaf times its children's edge sums, unit by unit."""
    return [f"leaf{v}", *(f"{prefix}e{c}" for c in children)]


def hclt(data: DataSource, k: int | None = None, trees: int | None = None, *,
         leaf: Family | None = None, smoothing: float = defaults.HCLT_SMOOTHING,
         correlation: float = defaults.HCLT_CORRELATION, seed: int = 0) -> Circuit:
    """The HCLT of `data` (an array or tensor [N, V] of numbers, NaN = missing, or a data
    file), as `pcc structure hclt` writes it: `k` and `trees` left None are chosen later, on
    validation, by `pcc.fit` (the circuit is built with K = defaults.HCLT_K and
    defaults.HCLT_TREES trees, the most they may be; its comments say which are open, see
    `pcc.capacity`). Given, they are fixed."""
    from ..capacity import with_open_line
    circuit = hidden_chow_liu_tree(data, k=k or defaults.HCLT_K, leaf=leaf,
                                   trees=trees or defaults.HCLT_TREES, smoothing=smoothing,
                                   correlation=correlation, seed=seed)
    return with_open_line(circuit, tuple(d for d, given in (("k", k), ("trees", trees))
                                         if given is None))
