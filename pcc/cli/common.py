"""Helpers the CLI commands share: loading a model from a .pc file or a checkpoint, data, and
argument types."""
from __future__ import annotations

import argparse

import numpy as np
import torch


def load_model(path: str, seed: int = 0, backend: str = "auto"):
    """A checkpoint (.pt) or a .pc circuit compiled with fresh parameters."""
    from .. import checkpoint
    from ..compiler import compile as compile_circuit
    if is_checkpoint(path):
        return checkpoint.load(path, backend=backend)[0]
    return compile_circuit(path, backend=backend, seed=seed)


def is_checkpoint(path: str) -> bool:
    """Whether `path` names a checkpoint (by its extension) rather than a circuit file."""
    return path.endswith((".pt", ".pth", ".ckpt"))


def load_rows(path: str, model) -> np.ndarray:
    """Rows of a data file, checked against the model's variables and leaf supports."""
    from ..data import check_support, load_data
    data = load_data(path, num_vars=model.num_vars)
    check_support(torch.from_numpy(data), model.var_max.cpu(), model.var_discrete.cpu(),
                  model.plan.var_names, path=path)
    return data


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got '{text}'") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value
