"""Rows of variables as images: the layout `pcc.structures.poon_domingos` uses, and the masks
that hide part of each image for inpainting.

Pixel (row, col), channel c is variable (row * W + col) * C + c (row-major, channels last), so a
row [V] of a circuit over an H x W x C image reshapes to [H, W, C].
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ..errors import PcError

MASK_KINDS = ("left-half", "right-half", "top-half", "bottom-half", "random:P")


@dataclass(frozen=True)
class ImageShape:
    height: int
    width: int
    channels: int = 1

    @property
    def num_vars(self) -> int:
        return self.height * self.width * self.channels

    @classmethod
    def parse(cls, text: "str | None", num_vars: int) -> "ImageShape":
        """'HxW' or 'HxWxC' (C = 1 or 3) holding `num_vars` values; None: a square grayscale
        image if num_vars is a square."""
        if text is None:
            side = math.isqrt(num_vars)
            if side * side != num_vars:
                raise PcError(f"{num_vars} variables are not a square image: give --image-shape "
                              "HxW (or HxWxC)")
            return cls(side, side)
        shape = cls.from_text(text)
        if shape.num_vars != num_vars:
            raise PcError(f"--image-shape {text} has {shape.num_vars} values per image but the "
                          f"model has {num_vars} variables")
        return shape

    @classmethod
    def from_text(cls, text: str) -> "ImageShape":
        """'HxW' or 'HxWxC' (C = 1 or 3), any size."""
        match = re.fullmatch(r"\s*(\d+)\s*x\s*(\d+)\s*(?:x\s*(\d+)\s*)?", text)
        if not match or 0 in (int(match[1]), int(match[2])):
            raise PcError(f"expected HxW or HxWxC (e.g. 28x28, 32x32x3), got '{text}'")
        shape = cls(int(match[1]), int(match[2]), int(match[3] or 1))
        if shape.channels not in (1, 3):
            raise PcError(f"images have 1 or 3 channels, got {shape.channels}")
        return shape

    def images(self, rows: "np.ndarray | Tensor") -> np.ndarray:
        """rows [N, V] -> images [N, H, W] (grayscale) or [N, H, W, 3]."""
        rows = rows.detach().cpu().numpy() if isinstance(rows, Tensor) else np.asarray(rows)
        shape = (len(rows), self.height, self.width) + ((self.channels,) if self.channels > 1
                                                        else ())
        return rows.reshape(shape)

    def mask(self, kind: str, rows: int, generator: torch.Generator | None = None) -> Tensor:
        """Which values to hide: bool [rows, V], True = hidden. kind: left-half, right-half,
        top-half, bottom-half (the half of every image, odd sizes hide the smaller half), or
        random:P (each pixel hidden with probability P, independently)."""
        h, w = self.height, self.width
        pixels = torch.zeros(rows, h, w, dtype=torch.bool)
        halves = {"left-half": (slice(None), slice(0, w // 2)),
                  "right-half": (slice(None), slice(w - w // 2, None)),
                  "top-half": (slice(0, h // 2), slice(None)),
                  "bottom-half": (slice(h - h // 2, None), slice(None))}
        if kind in halves:
            pixels[(slice(None), *halves[kind])] = True
        else:
            p = hidden_probability(kind)
            pixels = torch.rand(rows, h, w, generator=generator) < p
        return pixels.unsqueeze(-1).expand(rows, h, w, self.channels).reshape(rows, -1)


def hidden_probability(kind: str) -> float | None:
    """For a mask kind `random:P`, P; None for the other kinds; a PcError for anything else."""
    if kind in MASK_KINDS[:4]:
        return None
    if not kind.startswith("random:"):
        raise PcError(f"unknown mask '{kind}' (choose {', '.join(MASK_KINDS)})")
    text = kind[len("random:"):]
    try:
        p = float(text)
    except ValueError:
        p = math.nan
    if not 0 <= p <= 1:
        raise PcError(f"random:P wants a probability P in [0, 1], got '{text}'")
    return p
