"""Loading data sets: debd text (values separated by commas, no header), CSV with a header, `.npy`.

Reading and checking are separate steps, so that a reader of another kind (e.g. one streaming
chunks of rows) can replace `read_table` and keep the checks:

    read_table(path) -> Table          values float64 [N, C], NaN = missing (an empty cell, `?`,
                                       `nan` or `NA`); header names; the file line of every row
    select_columns(table, names, label) -> Table, labels
                                       the circuit's variables in its order (header names matched,
                                       columns reordered), and the label column split off
    check_support(x, ...)              values against the leaf families of the variables

Text files: a UTF-8 byte-order mark is skipped; values are separated by commas, semicolons, tabs
or spaces (whichever the first line uses); a first line without numbers is a header. Errors name
the file, the line (of a text file) or row, and the column, counted from 1.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace

import numpy as np

from .errors import DataError

MISSING = {"", "?", "nan", "NaN", "NA", "na"}
SEPARATORS = {",": "commas", ";": "semicolons", "\t": "tabs", None: "spaces"}


@dataclass(frozen=True)
class Table:
    """Rows of a data file: `values` float64 [N, C] (NaN = missing); `names` of the columns when
    the file has a header; `lines` [N]: the line (from 1) of each row of a text file."""

    values: np.ndarray
    names: tuple[str, ...] | None = None
    lines: np.ndarray | None = None
    path: str | None = None

    def error(self, message: str, row: int | None = None, column: int | None = None) -> DataError:
        """A DataError at row `row` (0-based; reported as its file line when known)."""
        return data_error(message, self.path, self.lines, row, column)


def data_error(message: str, path: str | None, lines: "np.ndarray | None", row: int | None,
               column: int | None = None) -> DataError:
    """A DataError at row `row` and `column` (0-based), naming the row's file line when `lines`
    [N] gives it."""
    line = None if row is None or lines is None else int(lines[row])
    return DataError(message, path, row=row, column=column, line=line)


def load_data(path: "str | os.PathLike", num_vars: int | None = None) -> np.ndarray:
    """Rows of a data file as float64 [N, V]; `num_vars` checks the width."""
    table = read_table(path)
    if num_vars is not None:
        _check_width(table, num_vars)
    return table.values


def read_table(path: "str | os.PathLike") -> Table:
    """The rows of a .npy file or a text file (see the module doc)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataError("no such data file" if not os.path.exists(path) else "not a file",
                        path=path)
    if path.endswith(".npy"):
        return Table(_load_npy(path), path=path)
    return _load_text(path)


def select_columns(table: Table, var_names: tuple[str, ...],
                   label: "str | int | None" = None) -> tuple[Table, np.ndarray | None]:
    """The columns of the circuit's variables, in its order, and the label column if `label` names
    one (by header name, or by position counted from 1). A header must name exactly the
    variables (in any order); a file without one is read by position."""
    labels = None
    if label is not None:
        index = _label_index(table, label)
        labels = table.values[:, index]
        keep = [c for c in range(table.values.shape[1]) if c != index]
        table = replace(table, values=table.values[:, keep],
                        names=None if table.names is None else tuple(table.names[c] for c in keep))
    if table.names is None or table.names == tuple(var_names):
        _check_width(table, len(var_names), besides=" besides the label column" if labels is not
                     None else "")
        return table, labels
    names, wanted = table.names, set(var_names)
    unknown = [n for n in names if n not in wanted]
    missing = [n for n in var_names if n not in set(names)]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if unknown or missing or repeated:
        problems = [f"{what} {_quoted(items)}" for what, items in
                    (("not variables of the circuit:", unknown),
                     ("missing variables:", missing), ("repeated:", repeated)) if items]
        raise DataError(f"the header does not name the circuit's variables ({'; '.join(problems)})",
                        table.path)
    order = [names.index(n) for n in var_names]
    return replace(table, values=table.values[:, order], names=tuple(var_names)), labels


def check_support(x, var_max, var_discrete, var_names, path: str | None = None,
                  lines: "np.ndarray | None" = None) -> None:
    """Raise DataError at the first observed value outside its variable's support.

    x [N, V] (a torch tensor); var_max [V]: largest value (inf for continuous); var_discrete [V]:
    integer-valued. `lines` [N]: the file line of each row, for the message."""
    import torch
    obs = ~torch.isnan(x)
    vmax = var_max.to(x.device, x.dtype)
    disc = var_discrete.to(x.device)
    bad = obs & (torch.isinf(x) | (disc & ((x < 0) | (x > vmax) | (x != torch.floor(x)))))
    if not bool(bad.any()):
        return
    row, col = (int(i) for i in bad.nonzero()[0])
    what = (f"an integer in 0..{int(vmax[col])}" if disc[col] else "a finite number")
    raise data_error(f"value {float(x[row, col]):g} of variable '{var_names[col]}' is outside "
                     f"its leaf family's support (expected {what})", path, lines, row, col)


def _check_width(table: Table, num_vars: int, besides: str = "") -> None:
    width = table.values.shape[1]
    if width != num_vars:
        raise DataError(f"has {width} column{'s' if width != 1 else ''}{besides} but the circuit "
                        f"has {num_vars} variables", path=table.path)


def _label_index(table: Table, label: "str | int") -> int:
    width = table.values.shape[1]
    if isinstance(label, int):
        if not 1 <= label <= width:
            raise DataError(f"has no column {label} for the labels (it has {width})", table.path)
        return label - 1
    if table.names is None:
        raise DataError(f"has no header, so no column is called '{label}': give the label "
                        "column's position (from 1)", table.path)
    if label not in table.names:
        raise DataError(f"the header has no column '{label}' for the labels", table.path)
    return table.names.index(label)


def _quoted(names: list[str], most: int = 5) -> str:
    shown = ", ".join(f"'{n}'" for n in names[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")


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


def _load_text(path: str) -> Table:
    try:
        with open(path, encoding="utf-8-sig") as f:  # -sig: skips a byte-order mark
            lines = f.read().splitlines()
    except UnicodeDecodeError:
        raise DataError("not a text file (not UTF-8)", path=path) from None
    numbered = [(i + 1, line.strip()) for i, line in enumerate(lines) if line.strip()]
    if not numbered:
        raise DataError("is empty", path=path)
    separator = next((s for s in SEPARATORS if s is not None and s in numbered[0][1]), None)
    cells = [[c.strip() for c in line.split(separator)] for _, line in numbered]
    names, first_line = None, numbered[0][0]
    if not any(_is_number(c) for c in cells[0]):  # a header line: no cell is a number
        names = tuple(cells[0])
        numbered, cells = numbered[1:], cells[1:]
    if not cells:
        raise DataError("has a header but no rows", path=path)
    width = len(names) if names is not None else len(cells[0])
    for r, ((line, _), row) in enumerate(zip(numbered, cells)):
        if len(row) != width:
            raise DataError(f"has {len(row)} value{'s' if len(row) != 1 else ''}, expected "
                            f"{width} (values separated by {SEPARATORS[separator]}, as on line "
                            f"{first_line})", path=path, row=r, line=line)
    table = Table(np.empty(0), names, np.array([line for line, _ in numbered]), path)
    try:
        return replace(table, values=np.array(cells, dtype=np.float64))
    except ValueError:
        pass
    out = np.empty((len(cells), width), dtype=np.float64)
    for r, row in enumerate(cells):
        for c, cell in enumerate(row):
            if cell in MISSING:
                out[r, c] = math.nan
                continue
            try:
                out[r, c] = float(cell)
            except ValueError:
                raise table.error(f"'{cell[:20]}' is not a number", row=r, column=c) from None
    return replace(table, values=out)


def _is_number(cell: str) -> bool:
    if cell in MISSING:
        return True
    try:
        float(cell)
        return True
    except ValueError:
        return False


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
