"""RAT-SPN region graphs: R random binary trees over N variables sharing one root region.

Replica r shuffles the variables (seeded) and splits the shuffled list recursively into halves
(the first half takes the odd one out) for `depth` levels; the lists left at the bottom are
input regions. The root sum covers all variables and has R partitions, partition r being the
first split of replica r. Replicas share no region below the root.

The depth used is min(depth, floor(log2 N)), so every split has two non-empty halves and every
leaf sits at that depth. For N variables, depth D (after clamping) and R replicas:
    inputs     = R * 2^D                 each over floor or ceil of N / 2^D variables
    sums       = 1 + R * (2^D - 2)       (the root, plus the inner nodes of each tree)
    partitions = R * (2^D - 1)
Depth 0 (N = 1, or depth=0) makes the root a mixture: R partitions of one input region each.
Region names are `rep{r}_{i}`, with i the heap index of the tree node (children of i are 2i, 2i+1;
node 1 is the shared root, named `top`; `root` is a reserved word).
"""
from __future__ import annotations

import random
from typing import Sequence

from ..ir import Circuit, Family
from . import defaults
from .arguments import check_family, require_at_least
from .builder import CircuitBuilder


def random_binary_trees(num_vars: int, depth: int | None = None, replicas: int = defaults.RAT_REPLICAS,
                        *, k: int = defaults.K, leaf: Family = defaults.LEAF,
                        seed: int = defaults.RAT_SEED) -> Circuit:
    """RAT-SPN structure (see the module doc for the layout and counts).

    `depth` defaults to `defaults.RAT_MAX_DEPTH` and is clamped to floor(log2 N). The same
    arguments and seed always give the same circuit."""
    require_at_least("vars", num_vars, 1)
    require_at_least("replicas", replicas, 1)
    require_at_least("k", k, 1)
    require_at_least("seed", seed, 0)
    check_family(leaf)
    depth = effective_depth(num_vars, defaults.RAT_MAX_DEPTH if depth is None else depth)

    builder = CircuitBuilder(num_vars, k, leaf)
    rng = random.Random(seed)
    partitions = []
    for replica in range(replicas):
        order = list(range(num_vars))
        rng.shuffle(order)
        partitions.append(_halves(builder, replica, 1, order, depth) if depth
                          else (_tree(builder, replica, 1, order, 0),))
    return builder.build(builder.sum("top", partitions))


def effective_depth(num_vars: int, depth: int) -> int:
    """`depth` clamped to floor(log2 num_vars), the deepest split that leaves no half empty."""
    require_at_least("depth", depth, 0)
    return min(depth, num_vars.bit_length() - 1)


def _tree(builder: CircuitBuilder, replica: int, node: int, variables: Sequence[int],
          levels: int) -> str:
    """The region of tree node `node` (heap index) over `variables`, split `levels` more times."""
    name = f"rep{replica}_{node}"
    if levels == 0:
        return builder.input(name, variables)
    return builder.sum(name, [_halves(builder, replica, node, variables, levels)])


def _halves(builder: CircuitBuilder, replica: int, node: int, variables: Sequence[int],
            levels: int) -> tuple[str, str]:
    """The partition of tree node `node`: its two children over the halves of `variables`."""
    half = (len(variables) + 1) // 2
    return (_tree(builder, replica, 2 * node, variables[:half], levels - 1),
            _tree(builder, replica, 2 * node + 1, variables[half:], levels - 1))
