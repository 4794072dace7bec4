"""Latent trees initialized from data.

A latent-tree circuit (`pcc.latent_forest`: a tree over hidden variables z_v, K states each, one
per observed variable x_v or group of them, its shape found by `find_latent_forest`) can start
from the data instead of at random. `initialize` sets every parameter from the data instead of at random: each z_v is
assigned by k-means over the columns of v and the variables near it in the tree (at most
`RADIUS` edges away: what z_v sits between; continuous columns standardized, a missing value
at the column's mean), and with (x, z) complete the parameters are counts, one hard EM step
through the usual M-step (`pcc.em.EM`, so pseudocounts and floors apply):

    p(x_v | z_v = i) ~ n(x_v, z_v = i)            discrete leaves
    mean, variance of the x_v with z_v = i        normal leaves
    W_e[j, i] ~ n(z_parent = j, z_c = i),  root ~ n(z_r = i)

Trees of a mixture that share the leaves share the assignments z_v (so every tree reads the
same meaning into state i); their roots are mixed uniformly. Empty states (k-means found fewer
than K clusters) keep a little random mass (normal leaves: the column's mean and variance), so
EM can still tell them apart.

`embed_chow_liu` sets the parameters to the plain Chow-Liu tree of the first tree instead (z_v =
x_v: a latent tree with K >= the number of values holds it exactly): the floor `pcc.train.fit`
compares the trained model with on validation.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .kmeans import kmeans, nearest
from .latent_forest import LatentForest

RADIUS = 2  # z_v is clustered on the variables at most this many tree edges from v
MAX_KMEANS_ROWS = 20_000  # rows clustered per variable (a fixed subsample beyond that)
ROWS_PER_CHUNK = 4096  # rows assigned and counted at a time


@torch.no_grad()
def initialize(model, data, forest: LatentForest, pseudocount: float, seed: int = 0) -> None:
    """Set `model`'s parameters from `data` (NaN = missing; see the module doc): an array
    [N, V], or `pcc.rows.Rows` read in pieces. A missing value counts as its column's mean (0
    for a discrete column) for the clustering and not at all for the leaves. For a `pcc.rows.Shard` (data-parallel training)
    every rank clusters the same seeded sample of rows, so the centers do not depend on the
    number of ranks; each counts its share of the rows and the counts are summed (as EM
    statistics)."""
    from .distributed import reducer_for
    from .em import EM
    from .rows import as_rows
    rows = as_rows(data)
    gen = torch.Generator().manual_seed(seed)
    em = EM(model, step_size=1.0, pseudocount=pseudocount, reduce=reducer_for(rows.group))
    prior = rows.group is None or rows.group.is_main  # the jitter and flat mixing, added once

    def count() -> None:
        if model.circuit.ties and not _continuous(model).any() and not forest.grouped:
            # tied positions share what a state means (pcc.latent_context)
            from .latent_context import assign_context_states, fit_context_centers
            shared = fit_context_centers(rows, forest, max(_support_sizes(model)), gen)
            counts = _count(model, forest, rows, lambda x: assign_context_states(x, shared))
        else:
            centers = fit_centers(rows, forest, gen, _continuous(model))
            counts = _count(model, forest, rows, lambda x: assign_states(x, centers))
        scale = 1.0 if prior else 0.0
        for t in counts.sums:  # drawn on every rank: the generators stay alike
            t.add_(scale * 1e-3 * torch.rand(t.shape, generator=gen, dtype=torch.float64))
        for g, leaves, fam in zip(model.plan.leaf_groups, counts.leaves, model.families):
            if isinstance(leaves, dict):  # normal: a little mass at the column's mean, variance
                mean, var = (centers.moments[i][torch.from_numpy(g.var_index).long()]
                             for i in range(2))
                if fam.joint:
                    jitter = scale * 1e-3 * torch.rand(len(g.regions), g.k, generator=gen,
                                                       dtype=torch.float64)
                    _joint_jitter(fam, g, jitter, mean, var, leaves)
                    continue
                jitter = scale * 1e-3 * torch.rand(leaves["n"].shape, generator=gen,
                                                   dtype=torch.float64)
                leaves["n"] += jitter
                leaves["t"] += jitter * mean[:, None]
                leaves["t2"] += jitter * (var + mean * mean)[:, None]
            else:
                leaves.add_(scale * 1e-3 * torch.rand(leaves.shape, generator=gen,
                                                      dtype=torch.float64))
        _load(em, model, counts, [torch.full_like(w.detach(), scale) for w in model.mix_logits])
    rows.guard(count)
    em.update()


@torch.no_grad()
def embed_chow_liu(model, data, forest: LatentForest) -> bool:
    """Set `model`'s parameters to the plain Chow-Liu tree of its first tree (no latent
    variables; what `bench/clt_baseline.py` scores): z_v = x_v, so with c values per variable

        p(x_v | z_v = i) = [x_v = i],  W_e[j, i] = (n(x_p = j, x_c = i) + 1) / (n(x_p = j) + c),
        root: (n(x_r = i) + 1) / (N + c),   the other trees of a mixture weighted ~0

    for i, j < c; states i >= c get (almost) no mass. A latent tree with K >= c states holds
    that tree exactly (up to the 1e-12 floor of the unused states), which is why it is a floor
    for what training should reach (`pcc.train.fit` keeps the better on validation). False,
    with `model` unchanged, when a variable has more than K values. `data` as for
    `initialize`; missing values count as 0 for the edges and not at all for the leaves. False
    too for a circuit with continuous leaves (its plain tree is no table of counts) or leaves
    over several variables."""
    from .distributed import reducer_for
    from .em import EM
    from .rows import as_rows
    if not all(fam.discrete for fam in model.families) or forest.grouped:
        return False
    sizes = _support_sizes(model)
    if max(sizes) > forest.k:
        return False
    rows = as_rows(data)
    em = EM(model, step_size=1.0, pseudocount=0.0, min_prob=1e-12,
            reduce=reducer_for(rows.group))
    prior = 1.0 if rows.group is None or rows.group.is_main else 0.0  # Laplace counts, once
    part, mix, _ = model._locate()
    size_of = {var: size for g, size in zip(model.plan.leaf_groups, sizes)
               for var in g.var_index.tolist()}

    def count() -> None:
        counts = _count(model, forest, rows, lambda x: torch.nan_to_num(x, nan=0.0).long())
        for node in forest.nodes:
            for edge, c in zip(node.edges, node.children):
                i, m = part[(edge, 0)]
                parent, child = size_of[node.var], size_of[forest.nodes[c].var]
                counts.sums[i][m][:parent, :child] += prior
        for r in forest.roots:
            node = forest.nodes[r]
            i, m = part[(node.region, node.partition)]
            counts.sums[i][m][..., :size_of[node.var]] += prior
        for table, size in zip(counts.leaves, sizes):
            values = torch.arange(size)
            table[:, values, values] += prior  # state i < c is value i, seen or not
        mixing = [torch.zeros_like(w.detach(), dtype=torch.float64) for w in model.mix_logits]
        if forest.root_region in mix:  # a mixture of trees: the first tree alone
            i, m = mix[forest.root_region]
            mixing[i][m][0] = prior
        _load(em, model, counts, mixing)
    rows.guard(count)
    em.update()
    return True


@dataclass
class _Counts:
    """Hard-assignment counts (float64): per sum op [M, Ko, Ki]; per leaf group of a discrete
    family [V, K, S], of a normal one the statistics {n, t, t2} [V, K] (rows, sum, squares)."""

    sums: list[Tensor]
    leaves: list["Tensor | dict[str, Tensor]"]
    rows: int


def _support_sizes(model) -> list[int | None]:
    """The number of values of every leaf group's family (None: continuous)."""
    return [fam.support_size() if fam.discrete else None for fam in model.families]


def _continuous(model) -> Tensor:
    """[V] bool: the variables with a continuous leaf family."""
    out = torch.zeros(model.plan.num_vars, dtype=torch.bool)
    for fam, g in zip(model.families, model.plan.leaf_groups):
        out[torch.from_numpy(g.var_index).long()] = not fam.discrete
    return out


@dataclass(frozen=True)
class Centers:
    """The k-means centers [k', D] of the hidden states of a node's variables `vars` (one hidden
    variable), over `columns` (D)."""

    vars: tuple[int, ...]
    columns: tuple[int, ...]
    centers: Tensor


@dataclass(frozen=True)
class Clustering:
    """Per variable in a tree, its `Centers`; the features they live in: x standardized by
    `moments` (mean [V], variance [V]: of the continuous columns over the rows clustered;
    0 and 1 for discrete ones), a missing value at 0."""

    centers: list[Centers]
    moments: tuple[Tensor, Tensor]

    def features(self, x: Tensor) -> Tensor:
        mean, var = self.moments
        x = (torch.as_tensor(x).to(torch.float64) - mean) / var.sqrt()
        return torch.nan_to_num(x, nan=0.0) if torch.isnan(x).any() else x


def fit_centers(rows, forest: LatentForest, gen: torch.Generator,
                continuous: Tensor | None = None) -> Clustering:
    """Per variable in a tree, k-means centers over the columns of the variable and its tree
    neighbours, from all rows (at most MAX_KMEANS_ROWS: a seeded sample beyond that);
    `continuous` [V] marks the columns standardized first (default none)."""
    n = len(rows)
    sample = torch.as_tensor(rows.span(0, n)[0] if n <= MAX_KMEANS_ROWS else rows.read(
        torch.randperm(n, generator=gen)[:MAX_KMEANS_ROWS])[0]).to(torch.float64)
    num_vars = sample.shape[1]
    continuous = torch.zeros(num_vars, dtype=torch.bool) if continuous is None else continuous
    seen = ~torch.isnan(sample)
    count = seen.sum(0).clamp_min(1)
    values = torch.where(seen, sample, torch.zeros_like(sample))
    mean = values.sum(0) / count
    var = ((values - mean) ** 2 * seen).sum(0) / count
    moments = (torch.where(continuous, mean, 0.0),
               torch.where(continuous & (var > 0), var, 1.0))
    clustering = Clustering([], moments)
    x = clustering.features(sample)
    neighbours = forest.neighbours(num_vars, RADIUS)
    group = forest.group_of(num_vars)
    for v in sorted({n.var for n in forest.nodes}):
        columns = (*group[v], *sorted(u for w in sorted(neighbours[v]) for u in group[w]))
        clustering.centers.append(Centers(group[v], columns,
                                          kmeans(x[:, list(columns)], forest.k, gen)))
    return clustering


def assign_states(x: Tensor, clustering: Clustering) -> Tensor:
    """z [N, V]: the hidden state of every variable in a tree (the nearest center), -1 for
    variables in no tree; x [N, V] the rows (NaN = missing)."""
    x = clustering.features(x)
    z = torch.full((len(x), x.shape[1]), -1, dtype=torch.long)
    for c in clustering.centers:
        z[:, list(c.vars)] = nearest(x[:, list(c.columns)], c.centers).unsqueeze(1)
    return z


def _count(model, forest: LatentForest, rows, assign) -> _Counts:
    """Counts of this process's rows (`rows.local_chunks`) with hidden states z = assign(x)
    (x [N, V] float64 with NaN for missing values; z [N, V] long, -1 outside the trees):
    n(z_parent, z_child) per edge, n(z_root) per tree, n(z_v, x_v) per leaf (observed values
    only)."""
    part, _, _ = model._locate()
    k = forest.k
    sums = [torch.zeros(w.shape, dtype=torch.float64) for w in model.sum_logits]
    sizes = _support_sizes(model)
    leaves = [torch.zeros((len(g.var_index), g.k, size), dtype=torch.float64) if size else
              {key: torch.zeros((len(g.var_index), g.k, *extra), dtype=torch.float64)
               for key, extra in (("n", ()), ("t", ()), ("t2", (fam.joint,) if fam.joint else ()))}
              for g, size, fam in zip(model.plan.leaf_groups, sizes, model.families)]
    count = 0
    for x, _ in rows.local_chunks(ROWS_PER_CHUNK):
        x = torch.as_tensor(x).to(torch.float64)
        observed = ~torch.isnan(x)
        z = assign(x)
        x = torch.nan_to_num(x, nan=0.0)
        values = x.long()
        for node in forest.nodes:
            for edge, c in zip(node.edges, node.children):
                i, m = part[(edge, 0)]
                sums[i][m] += _pair_counts(z[:, node.var], z[:, forest.nodes[c].var], k)
        for r in forest.roots:
            node = forest.nodes[r]
            i, m = part[(node.region, node.partition)]
            sums[i][m] += torch.bincount(z[:, node.var], minlength=k).to(torch.float64)
        for g, size, table, fam in zip(model.plan.leaf_groups, sizes, leaves, model.families):
            if fam.joint:
                _count_joint(fam, g, x, observed, z, table)
                continue
            for m, var in enumerate(g.var_index.tolist()):
                if not (z[:, var] >= 0).all():
                    continue
                seen = observed[:, var]
                states = z[seen, var]
                if size is None:
                    v = x[seen, var]
                    for key, stat in (("n", torch.ones_like(v)), ("t", v), ("t2", v * v)):
                        table[key][m].index_add_(0, states, stat)
                else:
                    table[m].index_put_((states, values[seen, var].clamp(0, size - 1)),
                                        torch.ones(int(seen.sum()), dtype=torch.float64),
                                        accumulate=True)
        count += len(x)
    return _Counts(sums, leaves, count)


def _count_joint(fam, g, x: Tensor, observed: Tensor, z: Tensor, table: dict) -> None:
    """Add to `table` the statistics of a joint family's group (`LeafFamily.stats`) with each
    region's state z as its flow; rows where some variable of the region is missing, or the
    region is in no tree, count nowhere (their conditional moments need parameters)."""
    d, k = fam.joint, g.k
    variables = torch.from_numpy(g.var_index).long()
    states = z[:, variables].t()  # [M, B]
    complete = (observed[:, variables].t().unflatten(0, (-1, d)).all(1, keepdim=True)
                & (states.unflatten(0, (-1, d)) >= 0)).expand(-1, d, -1).flatten(0, 1)
    gamma = torch.nn.functional.one_hot(states.clamp_min(0), k).to(torch.float64)
    gamma *= complete.unsqueeze(-1)
    stats = fam.stats(x[:, variables].t() * complete, torch.ones_like(gamma[..., 0]), gamma)
    for key, value in stats.items():
        table[key] += value


def _joint_jitter(fam, g, jitter: Tensor, mean: Tensor, var: Tensor, table: dict) -> None:
    """`jitter` [R, K] rows at the variables' means and variances (independent), into a joint
    family's per-slot statistics."""
    d = fam.joint
    m, v = mean.view(-1, d), var.view(-1, d)  # [R, d]
    second = m.unsqueeze(-1) * m.unsqueeze(-2) + torch.diag_embed(v)  # [R, d, d]
    table["n"] += jitter.repeat_interleave(d, 0)
    table["t"] += (jitter.unsqueeze(1) * m.unsqueeze(-1)).flatten(0, 1)
    table["t2"] += (jitter[:, None, :, None] * second.unsqueeze(2)).flatten(0, 1)


def _load(em, model, counts: _Counts, mixing: list[Tensor]) -> None:
    """`counts` and the mixing counts as `em`'s fresh statistics (its next update the M-step)."""
    dtype = model._param_dtype()
    em._sum_counts = [s.to(dtype) for s in counts.sums]
    em._mix_counts = [m.to(dtype) for m in mixing]
    em._leaf_stats = [model.per_param_row(i, {key: v.to(dtype) for key, v in (
        table if isinstance(table, dict) else fam.stats_from_counts(table)).items()})
        for i, (fam, table) in enumerate(zip(model.families, counts.leaves))]
    em.rows = counts.rows


def _pair_counts(parent: Tensor, child: Tensor, k: int) -> Tensor:
    """n[j, i] = rows with parent state j and child state i, [k, k] float64."""
    return torch.bincount(parent * k + child, minlength=k * k).reshape(k, k).to(torch.float64)
