"""Poon-Domingos (PD) region graphs for H x W images, with the Einsum Networks split rule.

Regions are axis-aligned pixel rectangles. `deltas` lists split step sizes, coarsest first; on
each axis, delta d gives the cut points ceil(i*d) for i = 1, 2, ... that lie strictly inside
the image. A rectangle is split at the first delta level that has a cut point strictly inside it
(on either axis): one binary partition (upper|lower, then left|right) per such cut point.
Rectangles with no cut point at any level are input regions: with one delta dividing the image,
the d x d cells of the delta grid. Equal rectangles reached by different cuts are one region.

With a single delta and n_h x n_w grid cells (n = floor((size - 1) / d) + 1 per axis) this gives
    regions    = n_h(n_h+1)/2 * n_w(n_w+1)/2     (every grid-aligned rectangle)
    inputs     = n_h * n_w                        (the grid cells)
    partitions = sum over a x b cell rectangles of (a - 1) + (b - 1).
E.g. 28 x 28 with delta 7: 100 regions, 16 inputs of 49 pixels, 84 sums, 200 partitions.

Images with C channels (RGB: C = 3). Pixel (row, col) channel c is variable (row * W + col) * C + c
(row-major, channels last, as an H x W x C image flattens; a C x H x W tensor is permuted to
H x W x C first). Cuts are spatial: every rectangle region holds all C channels of its pixels.
At the grid cells the channels are either
  - factorized at the leaves (the default, as Einsum Networks do with `num_dims`): a cell is an
    input region, its units products of per-channel densities over the cell; or
  - a split (`channel_split`): a cell is a sum region whose partition splits its channels in two
    halves (cell, channels lo..hi-1 = lo..mid-1 x mid..hi-1, mid = (lo + hi) // 2), down to one
    input region per channel: C inputs and C - 1 more sums per cell, so that the cell's units
    mix products of its channels' units (K^2 weights per unit and split) instead of multiplying
    fixed per-channel densities. Names: `r{top}_{left}_{bottom}_{right}_c{lo}_{hi}`.
Scopes are written as runs of consecutive variables: one per pixel row of a rectangle with all
its channels (one in all when it spans the image's width), one per pixel with fewer channels.
"""
from __future__ import annotations

import math
from collections import deque
from typing import Sequence, Union

from ..ir import Circuit, Family
from ..scopes import VarList
from . import defaults
from .arguments import StructureError, check_family, require_at_least
from .builder import CircuitBuilder

Deltas = Union[float, Sequence[float]]
Rect = tuple[int, int, int, int]  # top, left, bottom, right; bottom and right exclusive
Levels = list[tuple[tuple[int, ...], tuple[int, ...]]]  # per delta level: cut points on height, width


def poon_domingos(height: int, width: int, deltas: Deltas, *, deltas_w: Deltas | None = None,
                  channels: int = 1, channel_split: bool = False, k: int = defaults.K,
                  leaf: Family = defaults.LEAF) -> Circuit:
    """PD region graph over an H x W x C image (see the module doc for the split rule, counts and
    channels).

    `deltas` are the split steps along the height, coarsest first; `deltas_w` those along the
    width (default: the same). A delta >= the axis size never cuts that axis. `channel_split`
    splits the channels of each grid cell instead of factorizing them in its input. All regions
    hold `k` units, the root (the whole image) holds 1."""
    require_at_least("height", height, 1)
    require_at_least("width", width, 1)
    require_at_least("channels", channels, 1)
    require_at_least("k", k, 1)
    check_family(leaf)
    levels = _cut_levels(height, width, _as_list(deltas), _as_list(deltas if deltas_w is None else deltas_w))

    builder = CircuitBuilder(height * width * channels, k, leaf)
    whole: Rect = (0, 0, height, width)
    queue, seen = deque([whole]), {whole}
    while queue:
        rect = queue.popleft()
        splits = _splits(rect, levels)
        if not splits:
            _cell(builder, rect, 0, channels, width, channels, channel_split)
            continue
        builder.sum(_name(rect), [(_name(a), _name(b)) for a, b in splits])
        for child in (c for pair in splits for c in pair if c not in seen):
            seen.add(child)
            queue.append(child)
    return builder.build(_name(whole))


def _as_list(deltas: Deltas) -> list[float]:
    values = list(deltas) if isinstance(deltas, Sequence) else [deltas]
    if not values:
        raise StructureError("deltas must list at least one split step")
    for d in values:
        if isinstance(d, bool) or not isinstance(d, (int, float)) or not d >= 1:
            raise StructureError(f"every delta must be a number >= 1, got {d!r}")
    return values


def _cut_points(size: int, delta: float) -> tuple[int, ...]:
    """ceil(i * delta) for i = 1, 2, ... while inside (0, size)."""
    return tuple(math.ceil(i * delta) for i in range(1, int((size - 1) // delta) + 1))


def _cut_levels(height: int, width: int, deltas_h: list[float], deltas_w: list[float]) -> Levels:
    if len(deltas_h) != len(deltas_w):
        raise StructureError(
            f"height and width need as many deltas each, got {len(deltas_h)} and {len(deltas_w)}")
    return [(_cut_points(height, dh), _cut_points(width, dw)) for dh, dw in zip(deltas_h, deltas_w)]


def _splits(rect: Rect, levels: Levels) -> list[tuple[Rect, Rect]]:
    """The binary splits of `rect` at the first level with a cut point inside it."""
    top, left, bottom, right = rect
    for cuts_h, cuts_w in levels:
        splits = [((top, left, c, right), (c, left, bottom, right)) for c in cuts_h if top < c < bottom]
        splits += [((top, left, bottom, c), (top, c, bottom, right)) for c in cuts_w if left < c < right]
        if splits:
            return splits
    return []


def _cell(builder: CircuitBuilder, rect: Rect, low: int, high: int, width: int, channels: int,
          split: bool) -> str:
    """The region of a grid cell over channels low .. high-1: an input, or with `split` (and two
    channels or more) a sum over the product of its two halves."""
    name = _name(rect) if (low, high) == (0, channels) else f"{_name(rect)}_c{low}_{high}"
    if not split or high - low == 1:
        return builder.input(name, _scope(rect, low, high, width, channels))
    middle = (low + high) // 2
    halves = (_cell(builder, rect, low, middle, width, channels, split),
              _cell(builder, rect, middle, high, width, channels, split))
    return builder.sum(name, [halves])


def _scope(rect: Rect, low: int, high: int, width: int, channels: int) -> VarList:
    """The variables of channels low .. high-1 of a rectangle, ascending, as runs."""
    top, left, bottom, right = rect
    if (low, high) == (0, channels):
        pixels = [(row * width + left, row * width + right) for row in range(top, bottom)]
    else:
        pixels = [(p, p + 1) for row in range(top, bottom) for p in range(row * width + left, row * width + right)]
    runs: list[int] = []
    for first, last in pixels:
        start, stop = first * channels + low, (last - 1) * channels + high
        if runs and runs[-1] == start:
            runs[-1] = stop
        else:
            runs += (start, stop)
    return VarList(tuple(runs))


def _name(rect: Rect) -> str:
    """`r{top}_{left}_{bottom}_{right}`, bottom and right exclusive."""
    return "r" + "_".join(map(str, rect))
