"""Compact scopes: sets and sequences of variable indices stored as runs of consecutive indices.

A run [start, stop) stands for start, start+1, ..., stop-1; runs are kept flat, (start0, stop0,
start1, stop1, ...): in an int64 array for an input's scope (8 bytes a bound), in a tuple or a
numpy array for a region's. A scope costs memory and time in its number of runs, not of
variables: an input over a 32 x 32 pixel cell of a 256-wide image is 32 runs, a region over
whole image rows is one. That keeps scope work linear in the size of the circuit as written
(ranges `x0..x31` are runs) rather than in variables x regions.

    VarList  the scope of an input as written: indices in order (its order is the order of the
             leaf parameters' slot axis), equal to the tuple of the same indices.
    Scope    a set of indices (region and partition scopes): sorted, disjoint, non-adjacent runs;
             a `collections.abc.Set`, equal to (and hashing like) the frozenset of its indices.
"""
from __future__ import annotations

from array import array
from bisect import bisect_right
from collections.abc import Iterable, Iterator, Sequence, Set
from itertools import accumulate, chain

import numpy as np

Runs = tuple[int, ...]  # flat (start0, stop0, start1, stop1, ...)

# Unions of more runs than this are merged with numpy (a Python loop is faster below it).
_NUMPY_MERGE = 64
_CHUNK = 1 << 14  # fingerprint weights drawn at a time


def runs_of(indices: Iterable[int]) -> Runs:
    """The runs of `indices` in their order: a maximal stretch of consecutive ascending indices
    is one run."""
    out: list[int] = []
    stop = None
    for v in indices:
        if v == stop:
            stop += 1
            out[-1] = stop
        else:
            stop = v + 1
            out += (v, stop)
    return tuple(out)


def _pairs(runs: Runs) -> Iterator[tuple[int, int]]:
    it = iter(runs)
    return zip(it, it)


def _size(runs: Runs) -> int:
    return sum(runs[1::2]) - sum(runs[0::2])


def _indices(runs: Runs) -> Iterator[int]:
    return chain.from_iterable(range(a, b) for a, b in _pairs(runs))


def _bounds_of(runs: Runs) -> np.ndarray:
    return np.asarray(runs, dtype=np.int64).reshape(-1, 2)


def _array(bounds: np.ndarray) -> np.ndarray:
    """The indices of runs [R, 2] as an int64 array, without a Python object per index."""
    lengths = bounds[:, 1] - bounds[:, 0]
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    offsets = np.repeat(bounds[:, 0] - np.concatenate(([0], np.cumsum(lengths)[:-1])), lengths)
    return np.arange(total, dtype=np.int64) + offsets


def concat_indices(lists: Iterable["VarList"]) -> np.ndarray:
    """The indices of several `VarList`s one after another, as one int64 array."""
    return _array(_concat_runs(lists).reshape(-1, 2))


def _concat_runs(lists: Iterable["VarList"], *more: Runs) -> np.ndarray:
    """The flat runs of several `VarList`s one after another, then `more` runs, as one int64
    array."""
    arrays = [np.asarray(v.runs, dtype=np.int64) for v in lists] + [np.asarray(r, dtype=np.int64) for r in more]
    return np.concatenate(arrays) if arrays else np.zeros(0, dtype=np.int64)


def _merge(runs: Runs) -> Runs:
    """The sorted, disjoint, non-adjacent runs covering the same indices as `runs` (few runs)."""
    pairs = sorted(_pairs(runs))
    if not pairs:
        return ()
    out: list[int] = []
    start, stop = pairs[0]
    for a, b in pairs:
        if a > stop:
            out += (start, stop)
            start, stop = a, b
        elif b > stop:
            stop = b
    out += (start, stop)
    return tuple(out)


def _merge_bounds(bounds: np.ndarray) -> np.ndarray:
    """`_merge` for many runs, [R, 2] -> [R', 2], in numpy."""
    if (bounds[1:, 0] >= bounds[:-1, 1]).all():  # already in order (e.g. upper then lower half)
        join = bounds[1:, 0] == bounds[:-1, 1]
        if not join.any():
            return bounds
        new = np.concatenate(([True], ~join))
        stops = bounds[:, 1]
    else:
        bounds = bounds[np.argsort(bounds[:, 0], kind="stable")]
        stops = np.maximum.accumulate(bounds[:, 1])
        new = np.concatenate(([True], bounds[1:, 0] > stops[:-1]))
    first = np.flatnonzero(new)
    last = np.append(first[1:] - 1, len(bounds) - 1)
    return np.stack([bounds[first, 0], stops[last]], axis=1)


def is_canonical(runs: Runs) -> bool:
    """Whether flat runs are sorted, disjoint and not adjacent (a set's canonical runs)."""
    return all(a < b for a, b in zip(runs, runs[1:]))


def _intersect(x: Runs, y: Runs) -> Runs:
    """Runs of the indices in both canonical `x` and `y` (a merge walk)."""
    out: list[int] = []
    i = j = 0
    while i < len(x) and j < len(y):
        a, b = max(x[i], y[j]), min(x[i + 1], y[j + 1])
        if a < b:
            out += (a, b)
        if x[i + 1] < y[j + 1]:
            i += 2
        else:
            j += 2
    return tuple(out)


def _subtract(x: Runs, y: Runs) -> Runs:
    """Runs of the indices of canonical `x` not in canonical `y`."""
    out: list[int] = []
    j = 0
    for a, b in _pairs(x):
        while j < len(y) and y[j + 1] <= a:
            j += 2
        k = j
        while k < len(y) and y[k] < b:
            if y[k] > a:
                out += (a, y[k])
            a = max(a, y[k + 1])
            k += 2
        if a < b:
            out += (a, b)
    return tuple(out)


class TupleView(Sequence):
    """A sequence whose items are made on demand, equal to (and hashing like) the tuple of its
    items. Subclasses give `_key()`: equal keys, equal sequences of the same type."""

    __slots__ = ("_hash",)

    def _key(self):
        raise NotImplementedError

    def __eq__(self, other) -> bool:
        if type(other) is type(self):
            return self._key() == other._key()
        if isinstance(other, (tuple, list, range, TupleView)):
            return len(other) == len(self) and all(a == b for a, b in zip(self, other))
        return NotImplemented

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash(tuple(self))
        return self._hash


class VarList(TupleView):
    """Variable indices in a given order (an input's scope as written), stored as runs.

    Equal to any sequence of the same indices (`VarList.of([0, 1]) == (0, 1)`) and hashing like
    their tuple; indexing is a binary search over the runs."""

    __slots__ = ("runs", "_len", "_offsets")

    def __init__(self, runs: Runs):
        try:
            self.runs = array("q", runs)  # 8 bytes a bound, not a Python int
        except OverflowError:  # not indices anyway: kept for the checker to report
            self.runs = tuple(runs)
        self._len = _size(runs)
        self._offsets: list[int] | None = None
        self._hash: int | None = None

    @classmethod
    def of(cls, indices: Iterable[int]) -> "VarList":
        return indices if isinstance(indices, VarList) else cls(runs_of(indices))

    def __len__(self) -> int:
        return self._len

    def __iter__(self) -> Iterator[int]:
        return _indices(self.runs)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return VarList(runs_of(self[j] for j in range(*i.indices(self._len))))
        if i < 0:
            i += self._len
        if not 0 <= i < self._len:
            raise IndexError("VarList index out of range")
        if self._offsets is None:
            self._offsets = list(accumulate((b - a for a, b in _pairs(self.runs)), initial=0))
        r = bisect_right(self._offsets, i) - 1
        return self.runs[2 * r] + i - self._offsets[r]

    def _key(self) -> Runs:
        return self.runs

    def __repr__(self) -> str:
        return f"VarList({', '.join(f'{a}..{b - 1}' if b - a > 1 else str(a) for a, b in _pairs(self.runs))})"

    def __reduce__(self):
        return (VarList, (self.runs,))

    def as_scope(self) -> "Scope":
        """The set of these indices (repeats merged)."""
        small = len(self.runs) <= 2 * _NUMPY_MERGE
        if is_canonical(self.runs):
            return Scope(tuple(self.runs)) if small else Scope.from_bounds(_bounds_of(self.runs))
        if small:
            return Scope(_merge(self.runs))
        return Scope.from_bounds(_merge_bounds(_bounds_of(self.runs)))

    def to_array(self) -> np.ndarray:
        """The indices, in order, as an int64 array."""
        return _array(_bounds_of(self.runs))


class Scope(Set):
    """A set of variable indices as sorted, disjoint, non-adjacent runs (see the module doc).

    The runs are held as a flat tuple (`runs`), as an int64 array [R, 2] (`bounds()`), or both,
    each made from the other when first asked for: unions of many runs are merged in numpy and
    stay arrays. `Scope.union_of` defers a union until the scope is first read (the region graph
    holds such scopes: planning never reads them). `&`, `-`, `|` between scopes walk runs;
    membership is a binary search. Equal to, and hashing like, the frozenset of its indices."""

    __slots__ = ("_runs", "_bounds", "_len", "_hash", "_parts")

    def __init__(self, runs: Runs = ()):
        self._runs: Runs | None = runs  # canonical: callers make it so
        self._bounds: np.ndarray | None = None
        self._len = _size(runs)
        self._hash: int | None = None
        self._parts: tuple[Scope, ...] | None = None  # a deferred union of these

    @classmethod
    def from_bounds(cls, bounds: np.ndarray) -> "Scope":
        """The scope of canonical runs [R, 2]."""
        scope = cls.__new__(cls)
        scope._runs, scope._bounds, scope._hash, scope._parts = None, bounds, None, None
        scope._len = int((bounds[:, 1] - bounds[:, 0]).sum())
        return scope

    @classmethod
    def of(cls, indices: Iterable[int]) -> "Scope":
        if isinstance(indices, Scope):
            return indices
        if isinstance(indices, VarList):
            return indices.as_scope()
        if isinstance(indices, range) and indices.step == 1:
            return cls.range(indices.start, indices.stop)
        return cls(runs_of(sorted(set(indices))))

    @classmethod
    def range(cls, start: int, stop: int) -> "Scope":
        """The indices start .. stop-1."""
        return cls((start, stop) if start < stop else ())

    @classmethod
    def union(cls, scopes: Sequence["Scope"]) -> "Scope":
        """The union of `scopes` (overlapping or not)."""
        if len(scopes) == 1:
            return scopes[0]
        for s in scopes:
            s._force()
        if sum(s.num_runs for s in scopes) <= _NUMPY_MERGE:
            return cls(_merge(tuple(chain.from_iterable(s.runs for s in scopes))))
        return cls.from_bounds(_merge_bounds(np.concatenate([s.bounds() for s in scopes])))

    @classmethod
    def union_of(cls, scopes: Sequence["Scope"]) -> "Scope":
        """`union(scopes)`, computed when the result is first read."""
        if len(scopes) == 1:
            return scopes[0]
        scope = cls.__new__(cls)
        scope._runs = scope._bounds = scope._len = scope._hash = None
        scope._parts = tuple(scopes)
        return scope

    def _force(self) -> None:
        """Compute a deferred union, and the deferred unions below it first (no recursion: a
        deep chain of them would exceed Python's stack)."""
        if self._parts is None:
            return
        stack = [self]
        while stack:
            top = stack[-1]
            if top._parts is None:
                stack.pop()
                continue
            pending = [s for s in top._parts if s._parts is not None]
            if pending:
                stack += pending
                continue
            stack.pop()
            done = Scope.union(top._parts)
            top._runs, top._bounds, top._len, top._parts = done._runs, done._bounds, done._len, None

    _from_iterable = of  # what the Set mixin methods build their results with

    @property
    def runs(self) -> Runs:
        """The runs, flat: (start0, stop0, start1, stop1, ...)."""
        self._force()
        if self._runs is None:
            self._runs = tuple(self._bounds.ravel().tolist())
        return self._runs

    def bounds(self) -> np.ndarray:
        """The runs as an int64 array [R, 2] of (start, stop)."""
        self._force()
        if self._bounds is None:
            self._bounds = _bounds_of(self._runs)
        return self._bounds

    @property
    def num_runs(self) -> int:
        self._force()
        return len(self._runs) // 2 if self._runs is not None else len(self._bounds)

    def __len__(self) -> int:
        self._force()
        return self._len

    def __iter__(self) -> Iterator[int]:
        return _indices(self.runs)

    def __contains__(self, v) -> bool:
        return isinstance(v, int) and bisect_right(self.runs, v) % 2 == 1

    def __eq__(self, other) -> bool:
        if isinstance(other, Scope):
            if len(self) != len(other):
                return False
            if self._runs is not None and other._runs is not None:
                return self._runs == other._runs
            a, b = self.bounds(), other.bounds()
            return a.shape == b.shape and bool((a == b).all())
        return super().__eq__(other)

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = self._hash_as_frozenset()
        return self._hash

    _hash_as_frozenset = Set._hash

    def __and__(self, other):
        if isinstance(other, Scope):
            return Scope(_intersect(self.runs, other.runs))
        return super().__and__(other)

    def __sub__(self, other):
        if isinstance(other, Scope):
            return Scope(_subtract(self.runs, other.runs))
        return super().__sub__(other)

    def __or__(self, other):
        if isinstance(other, Scope):
            return Scope.union((self, other))
        return super().__or__(other)

    def isdisjoint(self, other) -> bool:
        if isinstance(other, Scope):
            return not _intersect(self.runs, other.runs)
        return super().isdisjoint(other)

    def __repr__(self) -> str:
        return f"Scope({', '.join(f'{a}..{b - 1}' if b - a > 1 else str(a) for a, b in _pairs(self.runs))})"

    def __reduce__(self):
        return (Scope, (self.runs,))

    def to_array(self) -> np.ndarray:
        """The indices, ascending, as an int64 array."""
        return _array(self.bounds())


def fingerprints(scopes: Sequence[VarList], num_vars: int) -> tuple[list[int], int]:
    """Random fingerprints of the `scopes` (over variables 0 .. num_vars-1, as runs in range),
    and that of all variables: h(S) = sum over v in S of W[v], an exact integer sum, with W[v]
    fresh random integers of at least 100 bits (drawn here, from the OS's entropy).

    Sums of fingerprints are fingerprints of multiset unions, so a circuit's regions and
    partitions get theirs by additions; two different multisets of variables have the same
    fingerprint with probability at most 2^-100 (fix every W but one that the multisets count
    differently: at most one value of it makes the sums equal). Each scope costs its number of
    runs; W is drawn in chunks, never held whole, one lane of bits at a time."""
    lane_bits = 62 - max(num_vars, 1).bit_length()  # a lane's sum over all variables fits int64
    ends = _concat_runs(scopes, (0, num_vars))  # the last run: all variables
    counts = np.array([len(s.runs) // 2 for s in scopes] + [1], dtype=np.int64)
    firsts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    out = [0] * len(counts)
    for lane, seed in enumerate(np.random.SeedSequence().spawn(-(-100 // lane_bits))):
        rng, below, carry = np.random.default_rng(seed), np.zeros(len(ends), dtype=np.int64), 0
        for low in range(0, num_vars, _CHUNK):  # below[i] = sum of this lane's W[v], v < ends[i]
            cumulative = np.cumsum(rng.integers(0, 1 << lane_bits, size=min(_CHUNK, num_vars - low)))
            inside = np.flatnonzero((ends >= low) & (ends <= low + len(cumulative)))
            offset = ends[inside] - low
            below[inside] = carry + np.where(offset > 0, cumulative[np.maximum(offset - 1, 0)], 0)
            carry += int(cumulative[-1])
        sums = np.add.reduceat(below[1::2] - below[0::2], firsts)
        sums[counts == 0] = 0
        out = [o + (x << (lane * lane_bits)) for o, x in zip(out, sums.tolist())]
    return out[:-1], out[-1]
