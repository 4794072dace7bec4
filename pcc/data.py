"""Loading data sets: debd text (comma-separated values, no header), CSV with a header, `.npy`.

Every loader returns a float64 array [rows, columns] with NaN for missing cells (an empty cell,
`?`, `nan` or `NA`). Errors name the file, the line and the column. `check_support` checks values
against the leaf families a model gives its variables.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np
import torch

from .errors import DataError

MISSING = {"", "?", "nan", "NaN", "NA", "na"}


def load_data(path: "str | os.PathLike", num_vars: int | None = None) -> np.ndarray:
    """Rows of a data file as float64 [N, V]; `num_vars` checks the width."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataError("no such data file" if not os.path.exists(path) else "not a file",
                        path=path)
    if path.endswith(".npy"):
        data = _load_npy(path)
    else:
        data = _load_text(path)
    if num_vars is not None and data.shape[1] != num_vars:
        raise DataError(f"has {data.shape[1]} columns but the circuit has {num_vars} variables",
                        path=path)
    return data


def _load_npy(path: str) -> np.ndarray:
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as e:
        raise DataError(f"not a readable .npy array ({e})", path=path) from None
    if arr.ndim != 2:
        raise DataError(f"expected a 2-D array [rows, variables], got shape {list(arr.shape)}",
                        path=path)
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise DataError(f"expected a numeric array, got dtype {arr.dtype}", path=path)
    return arr.astype(np.float64)


def _load_text(path: str) -> np.ndarray:
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except UnicodeDecodeError:
        raise DataError("not a text file (not UTF-8)", path=path) from None
    first = 0
    while first < len(lines) and not lines[first].strip():
        first += 1
    if first == len(lines):
        raise DataError("is empty", path=path)
    cells0 = [c.strip() for c in lines[first].split(",")]
    if not any(_is_number(c) for c in cells0):
        first += 1  # a header line: no cell is a number
    rows = []
    width = None
    for i in range(first, len(lines)):
        line = lines[i].strip()
        if not line:
            continue
        cells = line.split(",")
        if width is None:
            width = len(cells)
        elif len(cells) != width:
            raise DataError(f"line {i + 1} has {len(cells)} values, expected {width} "
                            f"(as on line {first + 1})", path=path, row=len(rows))
        rows.append(cells)
    if not rows:
        raise DataError("has a header but no rows", path=path)
    try:
        return np.array(rows, dtype=np.float64)
    except ValueError:
        pass
    out = np.empty((len(rows), width), dtype=np.float64)
    line_of_row = [i for i in range(first, len(lines)) if lines[i].strip()]
    for r, cells in enumerate(rows):
        for c, cell in enumerate(cells):
            cell = cell.strip()
            if cell in MISSING:
                out[r, c] = math.nan
                continue
            try:
                out[r, c] = float(cell)
            except ValueError:
                raise DataError(f"line {line_of_row[r] + 1}: '{cell[:20]}' is not a number",
                                path=path, row=r, column=c) from None
    return out


def _is_number(cell: str) -> bool:
    if cell in MISSING:
        return True
    try:
        float(cell)
        return True
    except ValueError:
        return False


def check_support(x: torch.Tensor, var_max: torch.Tensor, var_discrete: torch.Tensor,
                  var_names, path: str | None = None) -> None:
    """Raise DataError at the first observed value outside its variable's support.

    var_max [V]: largest value (inf for continuous); var_discrete [V]: integer-valued."""
    obs = ~torch.isnan(x)
    vmax = var_max.to(x.device, x.dtype)
    disc = var_discrete.to(x.device)
    bad = obs & (torch.isinf(x) | (disc & ((x < 0) | (x > vmax) | (x != torch.floor(x)))))
    if not bool(bad.any()):
        return
    row, col = (int(i) for i in bad.nonzero()[0])
    what = (f"an integer in 0..{int(vmax[col])}" if disc[col] else "a finite number")
    raise DataError(f"value {float(x[row, col]):g} of variable '{var_names[col]}' is outside its "
                    f"leaf family's support (expected {what})", path=path, row=row, column=col)


@dataclass(frozen=True)
class Splits:
    train: np.ndarray
    valid: np.ndarray | None
    test: np.ndarray | None


def load_debd(name: str, root: "str | os.PathLike") -> Splits:
    """The debd data set `name` from `root/name/name.{train,valid,test}.data`."""
    base = os.path.join(os.fspath(root), name, name)
    parts = [load_data(f"{base}.{s}.data") if s == "train" or os.path.exists(f"{base}.{s}.data")
             else None for s in ("train", "valid", "test")]
    return Splits(*parts)
