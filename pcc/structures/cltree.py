"""Chow-Liu tree region graphs (HCLT-style) learned from discrete data.

The tree: pairwise mutual information of the variables under Laplace-smoothed joint counts
(`smoothing` added to every cell of each pair's c x c table, c = largest value + 1; marginals
taken from that joint, so every MI is a true KL >= 0), then a maximum spanning tree (networkx),
rooted at a center of the tree so that the circuit is as shallow as the tree allows.

The regions, for N variables: every variable v has an input region `leaf{v}` over {v}; every tree
node v with children c1..cm has a sum region `tree{v}` over the variables of its subtree whose
one partition is `leaf{v} * sub(c1) * ... * sub(cm)` (sub(c) = `tree{c}`, or `leaf{c}` for a tree
leaf). Binarized (the default), that product of m+1 parts is built as a balanced binary tree of
sum regions `tree{v}_{j}`, so every partition has arity 2:
    binarized: N inputs, N - 1 sums, N - 1 partitions of arity 2; a node with m children adds
               ceil(log2(m + 1)) sum layers to the depth
    plain:     N inputs, one sum per inner tree node, partitions of arity m + 1.
The root region (the root's `tree{v}`) holds 1 unit; for N = 1 it is `leaf0` itself.
"""
from __future__ import annotations

import os
from typing import Sequence, Union

import networkx as nx
import numpy as np

from ..data import load_data
from ..errors import DataError
from ..families import FAMILIES
from ..ir import Circuit, Family
from . import defaults
from .arguments import StructureError, check_family, require_at_least
from .builder import CircuitBuilder

DataSource = Union[np.ndarray, str, os.PathLike]
_MAX_TABLE_BYTES = 256 << 20  # the (N*c)^2 pair-count table (a few copies of it live at once)
_ROWS_PER_CHUNK = 8192  # rows one-hot encoded at a time while counting pairs


def chow_liu_tree(data: DataSource, *, k: int = defaults.K, leaf: Family | None = None,
                  smoothing: float = defaults.CLTREE_SMOOTHING,
                  binarize: bool = defaults.CLTREE_BINARIZE) -> Circuit:
    """Chow-Liu tree circuit for `data`: rows x variables of non-negative integers, as an array or
    a file `pcc.data.load_data` reads (debd, CSV, .npy). See the module doc for regions and counts.

    `leaf` defaults to bernoulli for 0/1 data, else categorical(n = largest value + 1); a given
    family must be discrete and hold every value of the data."""
    require_at_least("k", k, 1)
    path = None if isinstance(data, np.ndarray) else os.fspath(data)
    values = _check_values(data if path is None else load_data(path), path)
    leaf = _leaf_for(values, leaf, path)
    tree = _spanning_tree(values, smoothing)
    root = _center(tree)

    builder = CircuitBuilder(values.shape[1], k, leaf)
    subtree: dict[int, str] = {}
    rooted = nx.bfs_tree(tree, root)
    for v in reversed(list(rooted)):  # breadth-first order reversed: children before parents
        children = sorted(rooted.successors(v))
        parts = [builder.input(f"leaf{v}", [v])] + [subtree[c] for c in children]
        subtree[v] = _product(builder, f"tree{v}", parts, binarize) if children else parts[0]
    return builder.build(subtree[root])


def learn_tree(data: np.ndarray, smoothing: float = defaults.CLTREE_SMOOTHING) -> nx.Graph:
    """The Chow-Liu tree of `data` (rows x variables, non-negative ints): a maximum spanning tree
    of the complete graph over the variables weighted by smoothed mutual information ('weight')."""
    return _spanning_tree(_check_values(data, None), smoothing)


def _spanning_tree(values: np.ndarray, smoothing: float) -> nx.Graph:
    if not smoothing > 0:
        raise StructureError(f"smoothing must be > 0, got {smoothing!r}")
    mi = _mutual_information(values, smoothing)
    graph = nx.Graph()
    graph.add_nodes_from(range(values.shape[1]))
    rows, cols = np.triu_indices(values.shape[1], 1)
    graph.add_weighted_edges_from(zip(rows.tolist(), cols.tolist(), mi[rows, cols].tolist()))
    return nx.maximum_spanning_tree(graph)


def _mutual_information(values: np.ndarray, smoothing: float) -> np.ndarray:
    """MI (nats) of every variable pair under Laplace-smoothed pair tables, [N, N]."""
    rows, num_vars = values.shape
    c = int(values.max()) + 1
    if (num_vars * c) ** 2 * 8 > _MAX_TABLE_BYTES:
        raise StructureError(f"{num_vars} variables with {c} values each need a pair table over "
                             f"{_MAX_TABLE_BYTES >> 20} MiB; bin the data to fewer values")
    counts = np.zeros((num_vars * c, num_vars * c))
    for start in range(0, rows, _ROWS_PER_CHUNK):
        chunk = values[start:start + _ROWS_PER_CHUNK]
        one_hot = np.zeros((len(chunk), num_vars, c), dtype=np.float32)  # exact: counts < 2^24 per chunk
        np.put_along_axis(one_hot, chunk[:, :, None], 1.0, axis=2)
        flat = one_hot.reshape(len(chunk), num_vars * c)
        counts += flat.T @ flat
    joint = counts.reshape(num_vars, c, num_vars, c).transpose(0, 2, 1, 3) + smoothing
    joint /= joint.sum(axis=(2, 3), keepdims=True)
    left = joint.sum(axis=3, keepdims=True)
    right = joint.sum(axis=2, keepdims=True)
    return np.sum(joint * (np.log(joint) - np.log(left) - np.log(right)), axis=(2, 3))


def _center(tree: nx.Graph) -> int:
    """A center of `tree`: the middle of a longest path (found by two farthest-node sweeps)."""
    path = _path_to_farthest(tree, _path_to_farthest(tree, 0)[-1])
    return path[len(path) // 2]


def _path_to_farthest(tree: nx.Graph, source: int) -> list[int]:
    return max(nx.single_source_shortest_path(tree, source).values(), key=len)


def _product(builder: CircuitBuilder, name: str, parts: Sequence[str], binarize: bool) -> str:
    """A sum region `name` over the product of `parts`; binarized, a balanced tree of 2-part sums."""
    parts, merged = list(parts), 0
    while binarize and len(parts) > 2:
        pairs = [builder.sum(f"{name}_{merged + i}", [parts[2 * i:2 * i + 2]]) for i in range(len(parts) // 2)]
        merged += len(pairs)
        parts = pairs + parts[2 * len(pairs):]
    return builder.sum(name, [parts])


def _leaf_for(values: np.ndarray, leaf: Family | None, path: str | None) -> Family:
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


def _check_values(data, path: str | None) -> np.ndarray:
    """`data` as an int64 [rows, vars] array of non-negative integers, or a DataError naming the cell."""
    array = np.asarray(data)
    if array.ndim != 2 or 0 in array.shape:
        raise DataError(f"data must be a non-empty 2-D array (rows x variables), got shape {array.shape}", path)
    if array.dtype.kind not in "biuf":
        raise DataError(f"data must be numbers, got dtype {array.dtype}", path)
    bad = array < 0
    if array.dtype.kind == "f":
        bad |= ~np.isfinite(array) | (array != np.floor(array))
    if bad.any():
        row, col = np.argwhere(bad)[0]
        value = array[row, col]
        problem = "missing value: a Chow-Liu tree needs complete data" if np.isnan(value) \
            else f"value {value:g} is not a non-negative integer"
        raise DataError(problem, path, int(row), int(col))
    return array.astype(np.int64)
