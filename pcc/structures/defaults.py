"""Default sizes of the generated structures, in one place so they can be tuned together.

K = 10 units per region follows the Einsum Networks experiments (MNIST demo, debd runs).
RAT-SPN: 10 replicas of binary trees split down to single variables, but no deeper than
depth 5 (leaves then hold about N/32 variables), as in the RAT-SPN / EiNet debd settings.
Chow-Liu trees: Laplace smoothing 1.0 per joint cell; binarized partitions (arity <= 2)
keep each sum's weight tensor at K^3 instead of K^(m+2) for a node with m tree children.
"""
from __future__ import annotations

from ..ir import Family

K = 10
LEAF = Family("bernoulli")

RAT_MAX_DEPTH = 5
RAT_REPLICAS = 10
RAT_SEED = 0

CLTREE_SMOOTHING = 1.0
CLTREE_BINARIZE = True
