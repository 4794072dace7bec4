"""Default sizes of the generated structures, in one place so they can be tuned together.

K = 10 units per region follows the Einsum Networks experiments (MNIST demo, debd runs).
RAT-SPN: 20 replicas of binary trees of depth 3 (capped at floor(log2 N)); tuned by EM on the
validation splits of the debd sets (docs/results.md): depth 3 beat depth 4 on every set with
more than 16 variables, and 20 replicas of K = 10 balanced fit against over-fitting.
HCLT: Laplace smoothing 1.0 per joint cell of the mutual information; written with K = 32 hidden
states per variable and a mixture of 8 trees (the data's Chow-Liu tree and 7 of bootstrap
resamples); unless -k / --trees fix them, `pcc train` chooses K from HCLT_K_CHOICES and the
first 1, 4 or 8 trees (HCLT_TREE_CHOICES) on validation (`pcc.search`: the cheapest within one
standard error of the best). 8 trees were added to the choice when the search with 1 or 4 fell
below the published HCLT on a larger held-out debd set (docs/results.md).
"""
from __future__ import annotations

from ..ir import Family

K = 10
LEAF = Family("bernoulli")

RAT_MAX_DEPTH = 3
RAT_REPLICAS = 20
RAT_SEED = 0

HCLT_K = 32
HCLT_K_CHOICES = (4, 8, 16, 32)
HCLT_TREES = 8
HCLT_TREE_CHOICES = (1, 4, 8)  # trees pcc train may keep of the file's (its first ones)
HCLT_SMOOTHING = 1.0
HCLT_CORRELATION = 0.9  # continuous columns correlated at least this much share an mvnormal leaf
HCLT_GROUP = 8  # columns per such leaf, at most
