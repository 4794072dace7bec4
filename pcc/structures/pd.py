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

Pixel (row, col) channel c is variable (row * W + col) * C + c (row-major, channels last, as an
H x W x C image flattens). Channels are folded into their pixel as Einsum Networks do with
`num_dims`: every region holds all C channels of its pixels and cuts are only spatial, so an
input unit is a product of per-channel densities over its rectangle.
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
                  channels: int = 1, k: int = defaults.K, leaf: Family = defaults.LEAF) -> Circuit:
    """PD region graph over an H x W x C image (see the module doc for the split rule and counts).

    `deltas` are the split steps along the height, coarsest first; `deltas_w` those along the
    width (default: the same). A delta >= the axis size never cuts that axis. All regions hold
    `k` units, the root (the whole image) holds 1."""
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
            builder.input(_name(rect), _scope(rect, width, channels))
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


def _scope(rect: Rect, width: int, channels: int) -> VarList:
    """The variables of a rectangle, ascending: one run per pixel row (one in all when the
    rectangle spans the whole width)."""
    top, left, bottom, right = rect
    if left == 0 and right == width:
        return VarList((top * width * channels, bottom * width * channels))
    return VarList(tuple(v for row in range(top, bottom)
                         for v in ((row * width + left) * channels, (row * width + right) * channels)))


def _name(rect: Rect) -> str:
    """`r{top}_{left}_{bottom}_{right}`, bottom and right exclusive."""
    return "r" + "_".join(map(str, rect))
