"""Structure generators: region graphs emitted as `Circuit` IR, valid by construction.

    poon_domingos(H, W, deltas, ...)     PD rectangles of an image; 28x28, delta 7: 100 regions
                                          (16 inputs, 84 sums, 200 partitions)
    random_binary_trees(N, depth, R)     RAT-SPN: R * 2^D inputs, 1 + R * (2^D - 2) sums
    chow_liu_tree(data, ...)             HCLT-style tree from data: N inputs, N - 1 sums (binarized)

Each module's doc states its split rule and region counts; default sizes are in `defaults`.
"""
from .arguments import StructureError, check_family, parse_family
from .cltree import chow_liu_tree
from .pd import poon_domingos
from .rat import random_binary_trees

__all__ = ["poon_domingos", "random_binary_trees", "chow_liu_tree", "parse_family", "check_family",
           "StructureError"]
