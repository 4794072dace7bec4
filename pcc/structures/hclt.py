"""Hidden Chow-Liu trees (HCLT; Liu & Van den Broeck, NeurIPS 2021) learned from discrete data.

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
"""
from __future__ import annotations

import numpy as np

from ..ir import Circuit, Family
from . import defaults
from .arguments import require_at_least
from .builder import CircuitBuilder
from .chow_liu import DataSource, Tree, chow_liu, leaf_for, load_values


def hidden_chow_liu_tree(data: DataSource, *, k: int = defaults.HCLT_K, leaf: Family | None = None,
                         trees: int = defaults.HCLT_TREES,
                         smoothing: float = defaults.HCLT_SMOOTHING,
                         seed: int = 0) -> Circuit:
    """The HCLT of `data` (rows x variables of non-negative integers, as an array or a file
    `pcc.data.load_data` reads); see the module doc. `leaf` defaults to bernoulli for 0/1 data,
    else categorical(n = largest value + 1)."""
    require_at_least("k", k, 1)
    require_at_least("trees", trees, 1)
    values, path = load_values(data)
    leaf = leaf_for(values, leaf, path)
    builder = CircuitBuilder(values.shape[1], k, leaf)
    for v in range(values.shape[1]):
        builder.input(f"leaf{v}", [v])
    rng = np.random.default_rng(seed)
    roots = []
    for m in range(trees):
        sample = values if m == 0 else values[rng.integers(0, len(values), len(values))]
        prefix = "" if trees == 1 else f"t{m}_"
        roots.append(_tree_regions(builder, chow_liu(sample, smoothing), prefix))
    return builder.build(builder.sum("top", roots, elementwise=True))


def _tree_regions(builder: CircuitBuilder, tree: Tree, prefix: str) -> list[str]:
    """The edge sums of `tree` (children first); returns the root's product partition."""
    children = tree.children
    for v in reversed(tree.top_down()):
        if v != tree.root:
            builder.sum(f"{prefix}e{v}", [_node(v, children[v], prefix)], elementwise=True)
    return _node(tree.root, children[tree.root], prefix)


def _node(v: int, children: list[int], prefix: str) -> list[str]:
    """Tree node v as a partition: its leaf times its children's edge sums, unit by unit."""
    return [f"leaf{v}", *(f"{prefix}e{c}" for c in children)]
