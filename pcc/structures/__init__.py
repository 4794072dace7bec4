"""Structure generators: region graphs emitted as `Circuit` IR, valid by construction.

    poon_domingos(H, W, deltas, ...)     PD rectangles of an image; 28x28, delta 7: 100 regions
                                          (16 inputs, 84 sums, 200 partitions)
    random_binary_trees(N, depth, R)     RAT-SPN: R * 2^D inputs, 1 + R * (2^D - 2) sums
    hidden_chow_liu_tree(data, k, trees) HCLT from data: N inputs, N sums per tree, element-wise
                                          products of K hidden states
    hclt(data, k=None, trees=None)       the same, K and trees left to `pcc.fit` when None
    hidden_markov_model(T, H, V)         HMM over T tokens: T inputs, T sums, transitions and
                                          emissions tied across positions (tied=False: not)

Each module's doc states its split rule and region counts; default sizes are in `defaults`.
"""
from .arguments import StructureError, check_family, parse_family
from .hclt import hclt, hidden_chow_liu_tree
from .hmm import hidden_markov_model
from .pd import poon_domingos
from .rat import random_binary_trees

__all__ = ["poon_domingos", "random_binary_trees", "hidden_chow_liu_tree", "hclt",
           "hidden_markov_model", "parse_family", "check_family", "StructureError"]
