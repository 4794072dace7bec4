"""Chow-Liu trees of discrete, continuous and mixed data: the maximum spanning tree of pairwise
mutual information.

Columns: a column whose observed values are all whole numbers in 0..DISCRETE_VALUES-1 is
discrete (its leaf bernoulli or categorical), any other column of numbers continuous (normal);
`column_families`. Mutual information of every pair of columns, over the rows where both are
observed, in nats:

    discrete, discrete      the plug-in MI of the pair's c x c table of counts with `smoothing`
                            added to every cell (c = largest value + 1; marginals from that
                            joint, so every MI is a true KL >= 0)
    continuous, continuous  the MI of a bivariate Gaussian: -log(1 - rho^2) / 2
    discrete, continuous    the MI of a conditional Gaussian (one normal per value d of the
                            discrete column): log(var) / 2 - sum_d p(d) log(var_d) / 2, each
                            var_d shrunk toward var with `smoothing` rows (so a value seen once
                            is not an infinite MI); >= 0 by the law of total variance

so the Gaussian pairs measure linear (and location) dependence only, the price of an estimate
that needs no binning and is exact for Gaussian data. Then a maximum spanning tree (Prim's
algorithm), rooted at a center of the tree so that circuits built on it are as shallow as the
tree allows. `pcc.structures.hclt` builds circuits on these trees; `bench/clt_baseline.py`
scores the plain discrete tree, `bench/continuous.py` the Gaussian one.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Union

import numpy as np

from ..data import load_data, read_table
from ..errors import DataError
from ..families import FAMILIES
from ..ir import Family
from .arguments import StructureError, check_family

if TYPE_CHECKING:
    import torch

DataSource = Union[np.ndarray, str, os.PathLike, "torch.Tensor"]
DISCRETE_VALUES = 32  # whole numbers 0..31 make a discrete column; anything else is continuous
_MAX_TABLE_BYTES = 256 << 20  # the (N*c)^2 pair-count table (a few copies of it live at once)
_ROWS_PER_CHUNK = 8192  # rows one-hot encoded at a time while counting pairs


@dataclass(frozen=True)
class Tree:
    """A rooted tree over variables 0..N-1: `parent[v]` (-1 at the root), the `root`, and the
    children of each variable in ascending order."""

    parent: tuple[int, ...]
    root: int

    @property
    def children(self) -> list[list[int]]:
        out: list[list[int]] = [[] for _ in self.parent]
        for v, p in enumerate(self.parent):
            if p >= 0:
                out[p].append(v)
        return out

    def top_down(self) -> list[int]:
        """Variables in breadth-first order from the root (parents before children)."""
        order, children = [self.root], self.children
        for v in order:
            order.extend(children[v])
        return order

    def edges(self) -> list[tuple[int, int]]:
        """(parent, child) pairs."""
        return [(p, v) for v, p in enumerate(self.parent) if p >= 0]


def chow_liu(values: np.ndarray, smoothing: float, discrete: np.ndarray | None = None,
             groups: list[tuple[int, ...]] | None = None) -> Tree:
    """The Chow-Liu tree, rooted at a center, of checked discrete `values` (see `check_values`),
    or with `discrete` [V] (bool per column) of float `values` [N, V] (NaN = missing) whose
    columns are discrete where it says so and continuous elsewhere. With `groups` (a partition
    of the columns), a tree over the groups: node i is groups[i], two groups as dependent as
    their most dependent pair of columns."""
    if not smoothing > 0:
        raise StructureError(f"smoothing must be > 0, got {smoothing!r}")
    mi = (mutual_information(values, smoothing) if discrete is None
          else mixed_mutual_information(values, discrete, smoothing))
    if groups is not None:  # the largest MI of each block of columns
        order = np.concatenate([np.asarray(g) for g in groups])
        starts = np.cumsum([0] + [len(g) for g in groups[:-1]])
        mi = np.maximum.reduceat(np.maximum.reduceat(mi[np.ix_(order, order)], starts, 0),
                                 starts, 1)
        np.fill_diagonal(mi, 0.0)
    neighbours = maximum_spanning_tree(mi)
    return root_at(neighbours, center(neighbours))


def maximum_spanning_tree(weight: np.ndarray) -> list[list[int]]:
    """Prim's algorithm on a dense symmetric [N, N] weight matrix: the tree's adjacency lists.
    O(N^2) in numpy (N = 1,000 takes milliseconds); ties go to the lower index."""
    n = weight.shape[0]
    neighbours: list[list[int]] = [[] for _ in range(n)]
    if n == 0:
        return neighbours
    in_tree = np.zeros(n, dtype=bool)
    in_tree[0] = True
    best = weight[0].astype(np.float64).copy()  # heaviest edge from the tree to each variable
    via = np.zeros(n, dtype=np.int64)
    for _ in range(n - 1):
        v = int(np.argmax(np.where(in_tree, -np.inf, best)))
        neighbours[v].append(int(via[v]))
        neighbours[int(via[v])].append(v)
        in_tree[v] = True
        closer = ~in_tree & (weight[v] > best)
        best[closer], via[closer] = weight[v][closer], v
    return neighbours


def root_at(neighbours: list[list[int]], root: int) -> Tree:
    parent = [-1] * len(neighbours)
    order, seen = [root], {root}
    for v in order:
        for u in sorted(neighbours[v]):
            if u not in seen:
                seen.add(u)
                parent[u] = v
                order.append(u)
    return Tree(tuple(parent), root)


def center(neighbours: list[list[int]]) -> int:
    """A center of the tree: the middle of a longest path (found by two farthest-node sweeps)."""
    path = _path_to_farthest(neighbours, _path_to_farthest(neighbours, 0)[-1])
    return path[len(path) // 2]


def _path_to_farthest(neighbours: list[list[int]], source: int) -> list[int]:
    parent = root_at(neighbours, source).parent
    order = root_at(neighbours, source).top_down()
    path = [order[-1]]  # breadth-first: the last one reached is a farthest one
    while parent[path[-1]] >= 0:
        path.append(parent[path[-1]])
    return path[::-1]


def load_values(data: DataSource) -> tuple[np.ndarray, str | None]:
    """`data` (an array, or a file `pcc.data.load_data` reads) as checked values (missing: -1),
    with its path."""
    path = None if isinstance(data, np.ndarray) else os.fspath(data)
    return check_values(data if path is None else load_data(path), path, missing=True), path


def mutual_information(values: np.ndarray, smoothing: float) -> np.ndarray:
    """MI (nats) of every variable pair under Laplace-smoothed pair tables, [N, N]; a pair's
    table counts the rows where both are observed (a missing value is -1)."""
    rows, num_vars = values.shape
    c = int(values.max()) + 1
    if (num_vars * c) ** 2 * 8 > _MAX_TABLE_BYTES:
        raise StructureError(f"{num_vars} variables with {c} values each need a pair table over "
                             f"{_MAX_TABLE_BYTES >> 20} MiB; bin the data to fewer values")
    counts = np.zeros((num_vars * c, num_vars * c))
    for start in range(0, rows, _ROWS_PER_CHUNK):
        chunk = values[start:start + _ROWS_PER_CHUNK]
        # exact: counts < 2^24 per chunk; a missing value (-1) is a row of zeros
        one_hot = (chunk[:, :, None] == np.arange(c)).astype(np.float32)
        flat = one_hot.reshape(len(chunk), num_vars * c)
        counts += flat.T @ flat
    joint = counts.reshape(num_vars, c, num_vars, c).transpose(0, 2, 1, 3) + smoothing
    joint /= joint.sum(axis=(2, 3), keepdims=True)
    left = joint.sum(axis=3, keepdims=True)
    right = joint.sum(axis=2, keepdims=True)
    return np.sum(joint * (np.log(joint) - np.log(left) - np.log(right)), axis=(2, 3))


def mixed_mutual_information(values: np.ndarray, discrete: np.ndarray,
                             smoothing: float) -> np.ndarray:
    """MI (nats) of every pair of columns of float `values` [N, V] (NaN = missing), discrete
    where `discrete` [V] says so (whole numbers >= 0), by the estimates of the module doc,
    [V, V] (0 on the diagonal)."""
    num_vars = values.shape[1]
    seen = ~np.isnan(values)
    x = np.where(seen, values, 0.0)
    out = np.zeros((num_vars, num_vars))
    d, c = np.nonzero(discrete)[0], np.nonzero(~discrete)[0]
    if len(d):
        codes = np.where(seen[:, d], x[:, d], -1).astype(np.int64)
        out[np.ix_(d, d)] = mutual_information(codes, smoothing)
    if len(c):
        out[np.ix_(c, c)] = _gaussian_mi(x[:, c], seen[:, c].astype(np.float64))
    if len(d) and len(c):
        mi = _conditional_gaussian_mi(x[:, d].astype(np.int64), seen[:, d], x[:, c],
                                      seen[:, c].astype(np.float64), smoothing)
        out[np.ix_(d, c)], out[np.ix_(c, d)] = mi, mi.T
    np.fill_diagonal(out, 0.0)
    return out


def _gaussian_mi(x: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """-log(1 - rho^2) / 2 for every pair of columns of x [N, C] (0 where missing), the
    correlation over the rows where both are seen (`seen` [N, C], 0/1)."""
    n = seen.T @ seen  # rows where both are seen
    s_i = (x * seen).T @ seen  # sum of column i over the rows where j is seen too
    q_i = (x * x).T @ seen
    s_ij = x.T @ x
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_i, mean_j = s_i / n, (s_i / n).T
        cov = s_ij / n - mean_i * mean_j
        var_i, var_j = q_i / n - mean_i ** 2, (q_i / n - mean_i ** 2).T
        rho2 = np.clip(cov * cov / (var_i * var_j), 0.0, 1.0 - 1e-12)
    return np.where((n > 1) & (var_i > 0) & (var_j > 0), -0.5 * np.log1p(-rho2), 0.0)


def _conditional_gaussian_mi(codes: np.ndarray, code_seen: np.ndarray, x: np.ndarray,
                             seen: np.ndarray, smoothing: float) -> np.ndarray:
    """MI [D, C] of every discrete column (codes [N, D]) with every continuous one (x [N, C]):
    log(var) / 2 - sum_v p(v) log(var_v) / 2 over the rows where both are seen, var_v shrunk
    toward var with `smoothing` rows."""
    width = int(codes[code_seen].max()) + 1 if code_seen.any() else 1
    out = np.zeros((codes.shape[1], x.shape[1]))
    for j in range(codes.shape[1]):
        one_hot = ((codes[:, j:j + 1] == np.arange(width)) & code_seen[:, j:j + 1]).astype(
            np.float64)  # [N, W]
        n = one_hot.T @ seen  # [W, C] rows of value v where the column is seen
        s, q = one_hot.T @ (x * seen), one_hot.T @ (x * x * seen)
        total_n = n.sum(0)
        with np.errstate(divide="ignore", invalid="ignore"):
            var = q.sum(0) / total_n - (s.sum(0) / total_n) ** 2
            within = q - s * s / np.where(n > 0, n, 1.0)  # sum of squared deviations per value
            var_v = (within + smoothing * var) / (n + smoothing)
            mi = 0.5 * np.log(var) - 0.5 * (n * np.log(var_v)).sum(0) / total_n
        out[j] = np.where((total_n > 1) & (var > 0), np.maximum(mi, 0.0), 0.0)
    return out


def correlated_groups(values: np.ndarray, continuous: np.ndarray, correlation: float,
                      largest: int) -> list[tuple[int, ...]]:
    """A partition of the columns of float `values` [N, V] (NaN = missing): continuous columns
    whose every pair has |correlation| >= `correlation` (over the rows where both are seen)
    share a group of at most `largest`. Pairs are taken from the most correlated down; the
    groups of a pair join when every pair across them reaches `correlation` (complete linkage)
    and they have at most `largest` columns together. Every other column is a group of its own.
    Sorted by first column."""
    c = np.nonzero(continuous)[0]
    group_of = {int(v): (int(v),) for v in range(values.shape[1])}
    if len(c) < 2 or not correlation < 1:
        return sorted(set(group_of.values()))
    seen = ~np.isnan(values[:, c])
    rho = np.sqrt(-np.expm1(-2 * _gaussian_mi(np.where(seen, values[:, c], 0.0),
                                               seen.astype(np.float64))))  # |rho| from the MI
    strong = np.triu(rho >= correlation, 1)
    pairs = np.argwhere(strong)
    order = np.argsort(-rho[strong], kind="stable")
    member = {i: [i] for i in range(len(c))}  # local column -> its group (a shared list)
    for i, j in pairs[order]:
        a, b = member[int(i)], member[int(j)]
        if a is b or len(a) + len(b) > largest or not (rho[np.ix_(a, b)] >= correlation).all():
            continue
        a.extend(b)
        for m in b:
            member[m] = a
    for group in {id(g): g for g in member.values()}.values():
        columns = tuple(sorted(int(c[m]) for m in group))
        for v in columns:
            group_of[v] = columns
    return sorted(set(group_of.values()))


def column_families(values: np.ndarray) -> list[Family]:
    """The leaf family of each column of float `values` [N, V] (NaN = missing): bernoulli for
    0/1, categorical(n = largest + 1) for whole numbers below DISCRETE_VALUES, else normal."""
    out = []
    for column in values.T:
        seen = column[~np.isnan(column)]
        whole = len(seen) and (seen >= 0).all() and (seen == np.floor(seen)).all() \
            and seen.max() < DISCRETE_VALUES
        largest = int(seen.max()) if whole else None
        out.append(Family("normal") if largest is None else Family("bernoulli") if largest <= 1
                   else Family("categorical", (("n", largest + 1),)))
    return out


def families_for(values: np.ndarray, leaf: Family | None, path: str | None) -> list[Family]:
    """Each column's leaf family for float `values` (NaN = missing): `leaf` for every column
    (a discrete one checked to hold the data), else `column_families`."""
    if leaf is None:
        return column_families(values)
    check_family(leaf)
    if FAMILIES[leaf.name].support_size(dict(leaf.args)) is not None:
        leaf = leaf_for(check_values(values, path, missing=True), leaf, path)
    return [leaf] * values.shape[1]


def load_columns(data: DataSource) -> tuple[np.ndarray, str | None, tuple[str, ...] | None]:
    """`data` (an array or tensor, or a file `pcc.data.read_table` reads) as float64 [N, V]
    (NaN = missing), checked to be finite numbers, with its path and the names of its header
    when it has one whose names can name variables (so that the circuit's variables match it)."""
    path = os.fspath(data) if isinstance(data, (str, os.PathLike)) else None
    names = None
    if path is not None:
        table = read_table(path)
        array, names = table.values, _variable_names(table.names)
    else:
        array = np.asarray(data)
    if array.ndim != 2 or 0 in array.shape:
        raise DataError(f"data must be a non-empty 2-D array (rows x variables), got shape {array.shape}", path)
    if array.dtype.kind not in "biuf":
        raise DataError(f"data must be numbers, got dtype {array.dtype}", path)
    array = array.astype(np.float64)
    if np.isinf(array).any():
        row, col = np.argwhere(np.isinf(array))[0]
        raise DataError(f"value {array[row, col]} is not finite", path, int(row), int(col))
    if np.isnan(array).all():
        raise DataError("every value is missing", path)
    return array, path, names


def _variable_names(names: tuple[str, ...] | None) -> tuple[str, ...] | None:
    """A header's names if every one can name a variable in a .pc file (an identifier, not a
    reserved word, no repeats), else None (the variables are then x0, x1, ...)."""
    from ..frontend.naming import RESERVED_WORDS
    if not names or len(set(names)) < len(names):
        return None
    ok = all(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", n) and n not in RESERVED_WORDS for n in names)
    return tuple(names) if ok else None


def leaf_for(values: np.ndarray, leaf: Family | None, path: str | None) -> Family:
    """The leaf family for `values`: the given one checked to hold the data, or the smallest fitting one."""
    largest = int(values.max())
    if leaf is None:
        return Family("bernoulli") if largest <= 1 else Family("categorical", (("n", largest + 1),))
    spec = FAMILIES[check_family(leaf).name]
    size = spec.support_size(dict(leaf.args))
    if size is None:
        raise StructureError(f"a Chow-Liu tree needs a discrete leaf family, got '{leaf}'")
    if largest >= size:
        row, col = np.argwhere(values >= size)[0]
        raise DataError(f"value {values[row, col]} is outside the support {{0..{size - 1}}} of {leaf}",
                        path, int(row), int(col))
    return leaf


def check_values(data, path: str | None, missing: bool = False) -> np.ndarray:
    """`data` as an int64 [rows, vars] array of non-negative integers, or a DataError naming the
    cell; with `missing`, a NaN is allowed and becomes -1."""
    array = np.asarray(data)
    if array.ndim != 2 or 0 in array.shape:
        raise DataError(f"data must be a non-empty 2-D array (rows x variables), got shape {array.shape}", path)
    if array.dtype.kind not in "biuf":
        raise DataError(f"data must be numbers, got dtype {array.dtype}", path)
    bad = array < 0
    absent = np.zeros(array.shape, dtype=bool)
    if array.dtype.kind == "f":
        absent = np.isnan(array) if missing else absent
        bad |= (~np.isfinite(array) | (array != np.floor(array))) & ~absent
    if bad.any():
        row, col = np.argwhere(bad)[0]
        value = array[row, col]
        problem = "missing value: a Chow-Liu tree needs complete data" if np.isnan(value) \
            else f"value {value:g} is not a non-negative integer"
        raise DataError(problem, path, int(row), int(col))
    if absent.all():
        raise DataError("every value is missing", path)
    return np.where(absent, -1, array).astype(np.int64)
