"""Version stamps: whether tensors are still the very ones, unchanged, that something derived
from them saw (for caches of values derived from parameters)."""
from __future__ import annotations

from typing import Sequence

from torch import Tensor


class Stamp:
    """The identity and in-place version counter of each tensor; it holds the tensors, so that
    none can be freed and its memory reused by another while the stamp lives."""

    def __init__(self, tensors: Sequence[Tensor], extra: object = None):
        self.tensors = tuple(tensors)
        self.versions = tuple(t._version for t in self.tensors)
        self.extra = extra

    def matches(self, tensors: Sequence[Tensor], extra: object = None) -> bool:
        return (self.extra == extra and len(tensors) == len(self.tensors)
                and all(a is b for a, b in zip(tensors, self.tensors))
                and all(t._version == v for t, v in zip(self.tensors, self.versions)))
