"""PNG pictures of images held as arrays: sample grids and inpainting panels (needs Pillow).

Values are mapped linearly from `value_range` (lo, hi) to black..white; NaN (a hidden value) is
drawn in blue. Every pixel becomes a `scale` x `scale` block; images are separated by a gap.
"""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from ..errors import PcError
from ..files import write_atomically

HIDDEN_RGB = (40, 90, 200)
GAP_RGB = (255, 255, 255)
TITLE_HEIGHT = 14


def save_grid(images: np.ndarray, path: "str | os.PathLike", value_range: tuple[float, float],
              columns: int | None = None, scale: int = 4) -> None:
    """images [N, H, W] or [N, H, W, 3] -> a grid PNG with `columns` images per row
    (default: about square)."""
    n = len(images)
    columns = columns or max(1, int(np.ceil(np.sqrt(n))))
    rows = -(-n // columns)
    rgb = _rgb(images, value_range)
    blank = np.full((rows * columns - n, *rgb.shape[1:]), 255, dtype=np.uint8)
    table = np.concatenate([rgb, blank]).reshape(rows, columns, *rgb.shape[1:])
    _save(_tile(table, scale), path)


def save_panels(columns: Sequence[tuple[str, np.ndarray]], path: "str | os.PathLike",
                value_range: tuple[float, float], scale: int = 4) -> None:
    """Titled columns of images, e.g. [("original", a), ("masked", b), ("completed", c)], each
    [N, H, W(, 3)] with the same N: row i shows image i of every column."""
    table = np.stack([_rgb(images, value_range) for _, images in columns], 1)
    body = _tile(table, scale)
    image = _pil().new("RGB", (body.shape[1], body.shape[0] + TITLE_HEIGHT), GAP_RGB)
    image.paste(_pil().fromarray(body), (0, TITLE_HEIGHT))
    draw = _draw().Draw(image)
    cell = (body.shape[1] - 2) // len(columns)
    for i, (title, _) in enumerate(columns):
        draw.text((2 + i * cell + 2, 1), title, fill=(0, 0, 0))
    _save(np.asarray(image), path)


def _rgb(images: np.ndarray, value_range: tuple[float, float]) -> np.ndarray:
    """[N, H, W(, 3)] values -> uint8 [N, H, W, 3]; NaN -> HIDDEN_RGB."""
    images = np.asarray(images, dtype=np.float64)
    if images.ndim == 3:
        images = images[..., None].repeat(3, -1)
    lo, hi = value_range
    scaled = (images - lo) / (hi - lo if hi > lo else 1.0)
    out = (np.clip(np.nan_to_num(scaled), 0, 1) * 255).round().astype(np.uint8)
    hidden = np.isnan(images).any(-1)
    out[hidden] = HIDDEN_RGB
    return out


def _tile(table: np.ndarray, scale: int, gap: int = 2) -> np.ndarray:
    """[R, C, H, W, 3] -> one picture with every pixel scaled and a gap around every image."""
    r, c, h, w, _ = table.shape
    table = table.repeat(scale, 2).repeat(scale, 3)
    h, w = h * scale, w * scale
    out = np.empty((r * (h + gap) + gap, c * (w + gap) + gap, 3), dtype=np.uint8)
    out[:] = GAP_RGB
    for i in range(r):
        for j in range(c):
            top, left = gap + i * (h + gap), gap + j * (w + gap)
            out[top: top + h, left: left + w] = table[i, j]
    return out


def _save(pixels: np.ndarray, path: "str | os.PathLike") -> None:
    image = _pil().fromarray(pixels)
    write_atomically(path, lambda f: image.save(f, format="PNG"))


def _pil():
    try:
        from PIL import Image
    except ImportError:
        raise PcError("writing pictures needs Pillow: pip install 'pcc[images]'") from None
    return Image


def _draw():
    _pil()
    from PIL import ImageDraw
    return ImageDraw
