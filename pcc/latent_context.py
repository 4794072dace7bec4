"""Hidden states that mean the same at every position: k-means over one-hot token contexts.

`pcc.latent_tree.initialize` clusters each variable's hidden state on its own, which suits a
latent tree whose positions own their parameters. In a tree with ties (a homogeneous hidden
Markov model: every position shares one emission table and one transition matrix) state i must
mean the same thing at every position, so the states of all tree nodes are assigned together:
every (row, node) is one point, its features the one-hot codes of its own value, its parent's
and the mean of its children's (three blocks of S values, S the largest support; a missing value
or a missing neighbour is all zeros),

    f(row, v) = [onehot(x_v), onehot(x_parent(v)), mean_c onehot(x_c)]       [3 S]

and one k-means over a sample of these points gives the centers every node is assigned with.
For an HMM a state is then a cluster of (previous, current, next) tokens, so the counts of the
hard assignment make emissions that differ between states and transitions that follow the data:
EM starts away from the symmetric fixed point (all states alike), where it would stay.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn import functional as F

from .kmeans import kmeans
from .latent_forest import LatentForest

MAX_POINTS = 8192  # (row, node) points clustered: a seeded sample beyond that


@dataclass(frozen=True)
class ContextCenters:
    """The k-means centers [k', 3 S] shared by every node, with the tree's neighbours."""

    support: int
    parent: dict[int, int]  # variable -> its parent's variable (roots: none)
    children: dict[int, tuple[int, ...]]  # variable -> its children's variables
    centers: Tensor


def fit_context_centers(rows, forest: LatentForest, support: int,
                        gen: torch.Generator) -> ContextCenters:
    """k-means centers of the context features of a seeded sample of (row, node) points."""
    parent, children = {}, {}
    for node in forest.nodes:
        kids = tuple(forest.nodes[c].var for c in node.children)
        children[node.var] = kids
        for kid in kids:
            parent[kid] = node.var
    variables = sorted(children)
    points = max(forest.k, MAX_POINTS)
    n = len(rows)
    rows_wanted = min(n, max(1, points // len(variables)))
    x = rows.read(torch.randperm(n, generator=gen)[:rows_wanted])[0] if rows_wanted < n \
        else rows.span(0, n)[0]
    centers = ContextCenters(support, parent, children, torch.empty(0))
    features = torch.cat([context_features(torch.as_tensor(x, dtype=torch.float64), v, centers)
                          for v in variables])
    if len(features) > points:
        features = features[torch.randperm(len(features), generator=gen)[:points]]
    return ContextCenters(support, parent, children, kmeans(features, forest.k, gen))


def context_features(x: Tensor, v: int, centers: ContextCenters) -> Tensor:
    """f(row, v) [N, 3 S] of every row of x [N, V] (NaN = missing; see the module doc)."""
    blocks = [_one_hot(x[:, v], centers.support)]
    above = centers.parent.get(v)
    blocks.append(_one_hot(x[:, above], centers.support) if above is not None
                  else x.new_zeros(len(x), centers.support))
    kids = centers.children.get(v, ())
    below = sum((_one_hot(x[:, c], centers.support) for c in kids),
                x.new_zeros(len(x), centers.support))
    blocks.append(below / max(1, len(kids)))
    return torch.cat(blocks, 1)


def assign_context_states(x: Tensor, centers: ContextCenters) -> Tensor:
    """z [N, V]: every tree node's state (its nearest center), -1 for variables in no tree;
    x [N, V] float64 with NaN for missing values. The nearest center minimizes
    |c|^2 - 2 f.c, and f.c is a sum of three looked-up center entries (f is one-hot blocks), so
    no feature vector is made."""
    s, c = centers.support, centers.centers
    # per block, the centers' entries [S + 1, k'], a last row of zeros for a missing value
    blocks = [torch.cat([c[:, b * s:(b + 1) * s].t(), c.new_zeros(1, len(c))]) for b in range(3)]
    codes = torch.nan_to_num(x, nan=float(s)).long().clamp(0, s)  # [N, V], s = missing
    norm = (c * c).sum(1)
    z = torch.full(x.shape, -1, dtype=torch.long)
    for v, kids in centers.children.items():
        dot = blocks[0][codes[:, v]]
        above = centers.parent.get(v)
        if above is not None:
            dot = dot + blocks[1][codes[:, above]]
        if kids:
            dot = dot + sum(blocks[2][codes[:, k]] for k in kids) / len(kids)
        z[:, v] = (norm - 2 * dot).argmin(1)
    return z


def _one_hot(values: Tensor, support: int) -> Tensor:
    """[N, S] one-hot codes of values [N] (NaN: all zeros)."""
    seen = ~torch.isnan(values)
    codes = F.one_hot(torch.nan_to_num(values, nan=0.0).long().clamp(0, support - 1), support)
    return codes.to(values.dtype) * seen.unsqueeze(1)
