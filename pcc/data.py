"""Loading data sets: debd text (values separated by commas, no header), CSV with a header, `.npy`.

Reading and checking are separate steps, so that a reader of another kind (`pcc.rows`, which
streams a file in pieces) keeps the checks:

    read_table(path) -> Table          values float64 [N, C], NaN = missing (an empty cell, `?`,
                                       `nan` or `NA`); header names; the file line of every row
    TextFile(path).chunks()            the same rows of a text file in pieces (float64 [n, C] and
                                       their lines), one block of the file at a time
    match_columns(names, width, ...)   where the circuit's variables are (header names matched,
                                       or by position) and which column holds the labels
    select_columns(table, names, label) -> Table, labels
                                       match_columns applied to a Table
    check_support(x, ...)              values against the leaf families of the variables
    check_labels(labels, units, ...)   labels against the root's units

Text files: a UTF-8 byte-order mark is skipped; values are separated by commas, semicolons, tabs
or spaces (whichever the first line uses); a first line without numbers is a header. Errors name
the file, the line (of a text file) or row, and the column, counted from 1.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace
from typing import Iterator

import numpy as np

from .errors import DataError

MISSING = {"", "?", "nan", "NaN", "NA", "na"}
SEPARATORS = {",": "commas", ";": "semicolons", "\t": "tabs", None: "spaces"}
BLOCK_BYTES = 1 << 22  # a text file is read and parsed 4 MiB at a time


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
        _check_width(table.values.shape[1], num_vars, table.path)
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


@dataclass(frozen=True)
class Columns:
    """Where a model's inputs are in a file's rows: `order` [V], the column of each of the
    circuit's variables, in its order; `label`, the column of the labels (or None)."""

    order: tuple[int, ...]
    label: int | None = None


def match_columns(names: "tuple[str, ...] | None", width: int, var_names: tuple[str, ...],
                  label: "str | int | None" = None, path: str | None = None) -> Columns:
    """The columns of the circuit's variables and of the label column if `label` names one (by
    header name, or by position counted from 1), for rows of `width` values with header `names`
    (None: no header). A header must name exactly the variables (in any order); a file without
    one is read by position."""
    index = None if label is None else _label_index(names, width, label, path)
    keep = [c for c in range(width) if c != index]
    kept = None if names is None else tuple(names[c] for c in keep)
    if kept is None or kept == tuple(var_names):
        _check_width(len(keep), len(var_names), path,
                     besides=" besides the label column" if index is not None else "")
        return Columns(tuple(keep), index)
    wanted = set(var_names)
    unknown = [n for n in kept if n not in wanted]
    missing = [n for n in var_names if n not in set(kept)]
    repeated = sorted({n for n in kept if kept.count(n) > 1})
    if unknown or missing or repeated:
        problems = [f"{what} {_quoted(items)}" for what, items in
                    (("not variables of the circuit:", unknown),
                     ("missing variables:", missing), ("repeated:", repeated)) if items]
        raise DataError(f"the header does not name the circuit's variables ({'; '.join(problems)})",
                        path)
    return Columns(tuple(keep[kept.index(n)] for n in var_names), index)


def select_columns(table: Table, var_names: tuple[str, ...],
                   label: "str | int | None" = None) -> tuple[Table, np.ndarray | None]:
    """The columns of the circuit's variables, in its order, and the label column if `label` names
    one (`match_columns`)."""
    columns = match_columns(table.names, table.values.shape[1], var_names, label, table.path)
    labels = None if columns.label is None else table.values[:, columns.label]
    order = list(columns.order)
    if order == list(range(table.values.shape[1])):
        return table, labels
    names = None if table.names is None else tuple(table.names[c] for c in order)
    return replace(table, values=table.values[:, order], names=names), labels


def check_support(x, var_max, var_discrete, var_names, path: str | None = None,
                  lines: "np.ndarray | None" = None, first_row: int = 0,
                  bounds: "SupportBounds | None" = None) -> None:
    """Raise DataError at the first observed value outside its variable's support.

    x [N, V] (a torch tensor); var_max [V]: largest value (inf for continuous); var_discrete [V]:
    integer-valued (or their `bounds`, made once by `support_bounds`). `lines` [N]: the file line
    of each row, for the message; else row i is reported as row first_row + i."""
    import torch
    if bounds is None:
        bounds = support_bounds(var_max, var_discrete, x.dtype, x.device)
    low, high, disc = bounds
    # a value is in its support iff clamping it to its range, and rounding it if discrete,
    # leaves it as it is (infinities clamp to the largest finite number)
    y = torch.nan_to_num(x, nan=0.0, posinf=math.inf, neginf=-math.inf)  # missing: in support
    z = torch.clamp(y, low, high)
    z = z.round_() if disc is None else torch.where(disc, z.round(), z)
    bad = y != z
    if not bool(bad.any()):
        return
    row, col = (int(i) for i in bad.nonzero()[0])
    discrete = bool(var_discrete[col])
    what = f"an integer in 0..{int(var_max[col])}" if discrete else "a finite number"
    raise _error_at(f"value {float(x[row, col]):g} of variable '{var_names[col]}' is outside "
                    f"its leaf family's support (expected {what})", path, lines, row, col,
                    first_row)


class SupportBounds(tuple):
    """(low [V], high [V], discrete [V] or None when every variable is): a discrete variable's
    values are integers in low..high, a continuous one's finite (within +-the largest finite
    number)."""


def support_bounds(var_max, var_discrete, dtype, device) -> SupportBounds:
    import torch
    vmax = var_max.to(device, dtype)
    disc = var_discrete.to(device)
    big = torch.finfo(dtype).max
    low = torch.full_like(vmax, -big).masked_fill_(disc, 0.0)
    return SupportBounds((low, vmax.clamp_max(big), None if bool(disc.all()) else disc))


def check_labels(labels: np.ndarray, units: int, path: str | None = None,
                 lines: "np.ndarray | None" = None, first_row: int = 0) -> np.ndarray:
    """Labels [N] as root units 0..units-1 (int64), or a DataError naming the first bad one (its
    line, or row first_row + i)."""
    bad = ~(np.isfinite(labels) & (labels >= 0) & (labels < units) & (labels == np.round(labels)))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise _error_at(f"label {labels[row]:g} is not a class of the model (its root has "
                        f"{units} units: 0..{units - 1})", path, lines, row, None, first_row)
    return labels.astype(np.int64)


def _error_at(message: str, path: str | None, lines: "np.ndarray | None", row: int,
              column: int | None, first_row: int) -> DataError:
    if lines is not None:
        return data_error(message, path, lines, row, column)
    return DataError(message, path, row=first_row + row, column=column)


def _check_width(width: int, num_vars: int, path: str | None, besides: str = "") -> None:
    if width != num_vars:
        raise DataError(f"has {width} column{'s' if width != 1 else ''}{besides} but the circuit "
                        f"has {num_vars} variables", path=path)


def _label_index(names: "tuple[str, ...] | None", width: int, label: "str | int",
                 path: str | None) -> int:
    if isinstance(label, int):
        if not 1 <= label <= width:
            raise DataError(f"has no column {label} for the labels (it has {width})", path)
        return label - 1
    if names is None:
        raise DataError(f"has no header, so no column is called '{label}': give the label "
                        "column's position (from 1)", path)
    if label not in names:
        raise DataError(f"the header has no column '{label}' for the labels", path)
    return names.index(label)


def _quoted(names: list[str], most: int = 5) -> str:
    shown = ", ".join(f"'{n}'" for n in names[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")


def _load_npy(path: str) -> np.ndarray:
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as e:
        raise DataError(f"not a readable .npy array ({e})", path=path) from None
    check_npy(arr.shape, arr.dtype, path)
    return arr.astype(np.float64)


def check_npy(shape: tuple, dtype: np.dtype, path: str) -> None:
    """A DataError unless an .npy array of this shape and dtype holds rows of numbers."""
    if len(shape) != 2:
        raise DataError(f"expected a 2-D array [rows, variables], got shape {list(shape)}",
                        path=path)
    if not (np.issubdtype(dtype, np.number) or dtype == bool):
        raise DataError(f"expected a numeric array, got dtype {dtype}", path=path)


def _load_text(path: str) -> Table:
    text = TextFile(path)
    chunks = list(text.chunks())
    values = np.concatenate([v for v, _ in chunks])
    lines = np.concatenate([line for _, line in chunks])
    return Table(values, text.format.names, lines, path)


@dataclass(frozen=True)
class TextFormat:
    """What the first non-blank line of a text file says: the separator between values (None:
    spaces), the header's names (None: no header), the number of values per row, and the
    number of that line."""

    separator: str | None
    names: tuple[str, ...] | None
    width: int
    first_line: int


class TextFile:
    """A text data file read one block of lines (about `block_bytes`) at a time, never whole:
    `format` comes from its first non-blank line, `chunks()` parses its rows block by block.
    Blank lines are skipped; lines count from 1 as in the file."""

    def __init__(self, path: "str | os.PathLike", block_bytes: int = BLOCK_BYTES):
        self.path, self.block_bytes = os.fspath(path), block_bytes
        self.format = self._read_format()

    def chunks(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """The rows as (values float64 [n, C], NaN = missing; lines [n]), one block at a time.
        Every row is checked: its number of values, and that each is a number or missing."""
        fmt, rows, line = self.format, 0, 1
        for block in self._blocks():
            values = None if line <= fmt.first_line else _digit_rows(block, fmt)
            if values is not None:  # the common case of one-digit values, parsed as bytes
                numbers, line = np.arange(line, line + len(values)), line + len(values)
            else:
                texts = self._decode(block).splitlines()
                numbered = [(line + i, text.strip()) for i, text in enumerate(texts)
                            if text.strip() and (fmt.names is None or line + i != fmt.first_line)]
                line += len(texts)
                if not numbered:
                    continue
                values = self._parse(numbered, rows)
                numbers = np.array([number for number, _ in numbered])
            rows += len(values)
            yield values, numbers
        if rows == 0:
            raise DataError("has a header but no rows", path=self.path)

    def _blocks(self) -> Iterator[bytes]:
        """Pieces of the file holding whole lines, a byte-order mark dropped."""
        rest, first = b"", True
        with open(self.path, "rb") as f:
            while True:
                data = f.read(self.block_bytes)
                if not data:
                    break
                data = rest + data
                end = data.rfind(b"\n") + 1
                block, rest = data[:end], data[end:]
                if block:
                    yield block.removeprefix(b"\xef\xbb\xbf") if first else block
                    first = False
        if rest:
            yield rest.removeprefix(b"\xef\xbb\xbf") if first else rest

    def _decode(self, block: bytes) -> str:
        try:
            return block.decode("utf-8")
        except UnicodeDecodeError:
            raise DataError("not a text file (not UTF-8)", path=self.path) from None

    def _read_format(self) -> TextFormat:
        line = 1
        for block in self._blocks():
            texts = self._decode(block).splitlines()
            first = next((i for i, text in enumerate(texts) if text.strip()), None)
            if first is not None:
                break
            line += len(texts)
        else:
            raise DataError("is empty", path=self.path)
        text = texts[first].strip()
        separator = next((s for s in SEPARATORS if s is not None and s in text), None)
        cells = [c.strip() for c in text.split(separator)]
        names = None if any(_is_number(c) for c in cells) else tuple(cells)  # a header: no number
        return TextFormat(separator, names, len(cells), line + first)

    def _parse(self, numbered: list[tuple[int, str]], first_row: int) -> np.ndarray:
        """Values float64 [n, C] of the rows `numbered` (line, text); row i is row first_row + i
        of the file (for messages)."""
        fmt = self.format
        try:  # numpy's parser: fast, and stricter than float() (anything it refuses is retried)
            values = np.loadtxt([text for _, text in numbered], delimiter=fmt.separator,
                                comments=None, dtype=np.float64, ndmin=2)
            if values.shape == (len(numbered), fmt.width):
                return values
        except ValueError:
            pass
        cells = [[c.strip() for c in text.split(fmt.separator)] for _, text in numbered]
        for r, ((line, _), row) in enumerate(zip(numbered, cells)):
            if len(row) != fmt.width:
                raise DataError(f"has {len(row)} value{'s' if len(row) != 1 else ''}, expected "
                                f"{fmt.width} (values separated by {SEPARATORS[fmt.separator]}, "
                                f"as on line {fmt.first_line})", path=self.path,
                                row=first_row + r, line=line)
        try:
            return np.array(cells, dtype=np.float64)
        except ValueError:
            pass
        out = np.empty((len(cells), fmt.width), dtype=np.float64)
        for r, row in enumerate(cells):
            for c, cell in enumerate(row):
                if cell in MISSING:
                    out[r, c] = math.nan
                    continue
                try:
                    out[r, c] = float(cell)
                except ValueError:
                    raise DataError(f"'{cell[:20]}' is not a number", self.path,
                                    row=first_row + r, column=c, line=numbered[r][0]) from None
        return out


def _digit_rows(block: bytes, fmt: TextFormat) -> np.ndarray | None:
    """The rows of a block whose every line is exactly `d<sep>d<sep>...d` (one digit per value,
    ending in \\n or \\r\\n), read as bytes: float64 [n, C]; None for any other block."""
    if fmt.separator is None:
        return None
    data = np.frombuffer(block, np.uint8)
    width, sep = fmt.width, ord(fmt.separator)
    for length in (2 * width, 2 * width + 1):  # \n, \r\n
        if len(data) % length or (length % 2 and data[-2] != 13):
            continue
        rows = data.reshape(-1, length)
        if (rows[:, -1] != 10).any() or (length % 2 and (rows[:, -2] != 13).any()):
            continue
        digits = rows[:, 0:2 * width:2] - 48  # uint8: anything below "0" wraps past 9
        if (digits > 9).any() or (rows[:, 1:2 * width - 1:2] != sep).any():
            return None
        return digits.astype(np.float64)
    return None


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
