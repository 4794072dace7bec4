"""k-means: Lloyd's iterations from k-means++ seeds, for the hidden states of latent trees
(`pcc.latent_tree`, `pcc.latent_context`)."""
from __future__ import annotations

import torch
from torch import Tensor

KMEANS_ITERATIONS = 10


def kmeans(points: Tensor, k: int, gen: torch.Generator) -> Tensor:
    """Lloyd's k-means with k-means++ seeding: centers [k', D] (k' <= k: no duplicates)."""
    n = points.shape[0]
    centers = points[torch.randint(n, (1,), generator=gen)]
    d2 = ((points - centers) ** 2).sum(1)
    for _ in range(1, k):
        if not bool(d2.sum() > 0):
            break  # every point is a center already
        centers = torch.cat([centers, points[torch.multinomial(d2, 1, generator=gen)]])
        d2 = torch.minimum(d2, ((points - centers[-1]) ** 2).sum(1))
    for _ in range(KMEANS_ITERATIONS):
        label = nearest(points, centers)
        sums = torch.zeros_like(centers).index_add_(0, label, points)
        count = torch.bincount(label, minlength=len(centers)).unsqueeze(1)
        centers = torch.where(count > 0, sums / count.clamp_min(1), centers)
    return centers


def nearest(points: Tensor, centers: Tensor) -> Tensor:
    """Index of the nearest center of every point, [N]."""
    dist = (centers * centers).sum(1) - 2 * points @ centers.t()
    return dist.argmin(1)
