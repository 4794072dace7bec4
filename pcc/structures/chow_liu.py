"""Chow-Liu trees of discrete data: the maximum spanning tree of pairwise mutual information.

Mutual information of every variable pair under Laplace-smoothed joint counts (`smoothing` added
to every cell of each pair's c x c table, c = largest value + 1; marginals taken from that joint,
so every MI is a true KL >= 0), then a maximum spanning tree (Prim's algorithm), rooted at a center of
the tree so that circuits built on it are as shallow as the tree allows. `pcc.structures.hclt`
builds circuits on these trees; `bench/clt_baseline.py` scores the plain tree.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Union

import numpy as np

from ..data import load_data
from ..errors import DataError
from ..families import FAMILIES
from ..ir import Family
from .arguments import StructureError, check_family

DataSource = Union[np.ndarray, str, os.PathLike]
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


def chow_liu(values: np.ndarray, smoothing: float) -> Tree:
    """The Chow-Liu tree of checked `values` (see `check_values`), rooted at a center."""
    if not smoothing > 0:
        raise StructureError(f"smoothing must be > 0, got {smoothing!r}")
    neighbours = maximum_spanning_tree(mutual_information(values, smoothing))
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
