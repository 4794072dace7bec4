"""Functions torch.compile runs eagerly instead of tracing (layers write arenas in place).

`torch.compiler.disable` imports torch._dynamo, which costs seconds and ~150 MB when a process
only evaluates circuits; `opaque` applies it only while torch.compile traces.
"""
from __future__ import annotations

import functools
import sys
from typing import Callable, TypeVar

import torch

F = TypeVar("F", bound=Callable)


def opaque(fn: F) -> F:
    """`fn`, run as `torch.compiler.disable(fn)` when called while torch.compile traces."""
    disabled: list[Callable] = []

    @functools.wraps(fn)
    def call(*args, **kwargs):
        if "torch._dynamo" in sys.modules and torch.compiler.is_compiling():
            if not disabled:
                disabled.append(torch.compiler.disable(fn))
            return disabled[0](*args, **kwargs)
        return fn(*args, **kwargs)
    return call  # type: ignore[return-value]
