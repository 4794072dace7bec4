"""Rows of a data set read on demand, so that a data file larger than memory trains and
evaluates: in-memory arrays, data files read in pieces, and one rank's share of either in
data-parallel training (`pcc.distributed`).

    rows = as_rows(x)                             an array [N, V] or `Labeled` rows, in memory
    rows = open_data(path, model, label=None)     a data file read in pieces (`FileRows`)
    x, units = rows.read(positions)               float64 [n, V] (NaN = missing), int64 [n] or None
    for x, units in rows.chunks(size): ...        every row in order, `size` rows at a time

A `.npy` file is read in place: its header gives the layout and rows are read with `os.pread`,
so nothing but the rows asked for is ever in memory (not even address space: a memory map of a
file larger than `ulimit -v` would fail). A text file (debd, CSV) is parsed once, block by block
(`pcc.data.TextFile`), its values checked as they are read, into a temporary `.npy` cache of the
circuit's columns (float16 when every variable is discrete with at most 2049 values, which
float16 holds exactly; float64 otherwise), removed when the rows are closed; it is then read like
an `.npy` file. Reading rows at random positions is what shuffled online EM does; full passes
(validation, full-batch EM) read contiguous pieces.

Data-parallel training reads through a `Shard`, rank r's view of rows that every rank can read:
a global batch of positions is shared out (the rank takes every N-th, from its own), and a full
pass takes every N-th chunk of rows (chunks r, r + N, ...), so that N ranks together see every
row once and process exactly the chunks one process would. `total` sums values over the ranks.
"""
from __future__ import annotations

import os
import struct
import tempfile
import weakref
from dataclasses import dataclass
from typing import Callable, Iterator, TypeVar

import numpy as np
import torch
from torch import Tensor

from .data import (BLOCK_BYTES, Columns, TextFile, check_labels, check_npy, check_support,
                   match_columns)
from .errors import DataError

NPY_HEADER_BYTES = 128  # the cache's header: room for any 2-D shape, rewritten when done
CHECK_BYTES = 1 << 24  # values (as float64) checked at a time
FLOAT16_EXACT = 2048  # float16 holds every integer 0..2048 exactly

Batch = tuple[Tensor, "Tensor | None"]
T = TypeVar("T")


@dataclass(frozen=True)
class Labeled:
    """Rows x [N, V] with the root unit (class) of each, units [N] (class-conditional circuits)."""

    x: "np.ndarray | Tensor"
    units: "np.ndarray | Tensor"

    def __len__(self) -> int:
        return len(self.x)


class Rows:
    """Rows x [N, V] (NaN = missing; float64 from a file, an array's own dtype in memory), with
    each row's root unit [N] for labeled data. One process sees them all; a `Shard` is one
    rank's view."""

    group = None  # the process group of data-parallel training (a Shard's); None: one process

    def __len__(self) -> int:
        raise NotImplementedError

    @property
    def num_vars(self) -> int:
        raise NotImplementedError

    @property
    def labeled(self) -> bool:
        raise NotImplementedError

    def read(self, positions: Tensor) -> Batch:
        """The rows at `positions` [n] (any order, repeats allowed): x [n, V], units [n] | None."""
        raise NotImplementedError

    def span(self, start: int, stop: int) -> Batch:
        """Rows start..stop-1."""
        return self.read(torch.arange(start, stop))

    def chunks(self, size: int, start: int = 0, stop: int | None = None) -> Iterator[Batch]:
        """Rows start..stop-1 in order, `size` at a time."""
        stop = len(self) if stop is None else stop
        for a in range(start, stop, size):
            yield self.span(a, min(a + size, stop))

    # The data-parallel view (a Shard overrides these): one process has every row.
    def batch(self, positions: Tensor) -> Batch:
        """This process's share of the global batch at `positions`."""
        return self.read(positions)

    def local_chunks(self, size: int) -> Iterator[Batch]:
        """This process's share of a full pass, `size` rows at a time."""
        return self.chunks(size)

    def total(self, values: list[float]) -> list[float]:
        """`values` summed over the processes that share the rows."""
        return list(values)

    def guard(self, work: Callable[[], T], default: T | None = None) -> T | None:
        """work(); a Shard's runs under `Group.run` (a failure waits for the next collective,
        and `default` is returned)."""
        return work()

    def close(self) -> None:
        """Release what reading needs (files, a text file's cache)."""

    def __enter__(self) -> "Rows":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def empty(self) -> Batch:
        return (torch.zeros(0, self.num_vars, dtype=torch.float64),
                torch.zeros(0, dtype=torch.long) if self.labeled else None)


class ArrayRows(Rows):
    """Rows held in memory: x [N, V] and units [N] or None, as tensors."""

    def __init__(self, x: Tensor, units: Tensor | None = None):
        self.x, self.units = x, units

    def __len__(self) -> int:
        return len(self.x)

    @property
    def num_vars(self) -> int:
        return self.x.shape[1]

    @property
    def labeled(self) -> bool:
        return self.units is not None

    def read(self, positions: Tensor) -> Batch:
        return self.x[positions], None if self.units is None else self.units[positions]

    def span(self, start: int, stop: int) -> Batch:
        return self.x[start: stop], None if self.units is None else self.units[start: stop]


def as_rows(data) -> Rows:
    """`data` as Rows: Rows as they are; `Labeled` rows or an array [N, V] in memory."""
    if isinstance(data, Rows):
        return data
    if isinstance(data, Labeled):
        return ArrayRows(torch.as_tensor(data.x), torch.as_tensor(data.units).long())
    return ArrayRows(torch.as_tensor(data))


class FileRows(Rows):
    """The rows of an `.npy` file, read with `os.pread` when asked for: `columns.order` are the
    circuit's variables, `columns.label` the labels. `source` names the data file in messages
    (the file the rows came from, when `path` is its cache); `remove`: delete `path` on close."""

    def __init__(self, path: str, columns: Columns, source: str | None = None,
                 remove: bool = False):
        self.path, self.columns, self.source = path, columns, source or path
        self.shape, self.dtype, self.offset = npy_layout(path, self.source)
        self.row_bytes = self.shape[1] * self.dtype.itemsize
        self._order = list(columns.order)
        self._fd = os.open(path, os.O_RDONLY)
        self._closer = weakref.finalize(self, _close, self._fd, path if remove else None)

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def num_vars(self) -> int:
        return len(self._order)

    @property
    def labeled(self) -> bool:
        return self.columns.label is not None

    def close(self) -> None:
        """Close the file (and delete it if it is a cache)."""
        self._closer()

    def read(self, positions: Tensor) -> Batch:
        rows = np.asarray(positions, dtype=np.int64).reshape(-1)
        if len(rows) and (rows.min() < 0 or rows.max() >= len(self)):
            raise IndexError(f"row positions must be in 0..{len(self) - 1}")
        size, offset = self.row_bytes, self.offset
        data = b"".join(self._pread(size, offset + i * size) for i in rows.tolist())
        return self._decode(data, len(rows))

    def span(self, start: int, stop: int) -> Batch:
        start, stop = max(start, 0), min(stop, len(self))
        count = max(stop - start, 0)
        return self._decode(self._pread(count * self.row_bytes, self.offset + start *
                                        self.row_bytes), count)

    def raw_span(self, start: int, stop: int) -> np.ndarray:
        """Rows start..stop-1 as stored, [n, C] of the file's dtype."""
        count = stop - start
        data = self._pread(count * self.row_bytes, self.offset + start * self.row_bytes)
        return np.frombuffer(data, self.dtype).reshape(count, self.shape[1])

    def _decode(self, data: bytes, count: int) -> Batch:
        raw = np.frombuffer(data, self.dtype).reshape(count, self.shape[1])
        x = torch.from_numpy(raw[:, self._order].astype(np.float64))
        if self.columns.label is None:
            return x, None
        return x, torch.from_numpy(raw[:, self.columns.label].astype(np.int64))

    def _pread(self, size: int, offset: int) -> bytes:
        parts = []
        while size > 0:
            part = os.pread(self._fd, size, offset)
            if not part:
                raise DataError(f"ended at byte {offset}: the file changed while it was read",
                                self.source)
            parts.append(part)
            size, offset = size - len(part), offset + len(part)
        return parts[0] if len(parts) == 1 else b"".join(parts)


def _close(fd: int, remove: str | None) -> None:
    os.close(fd)
    if remove is not None and os.path.exists(remove):
        os.unlink(remove)


def npy_layout(path: str, source: str | None = None) -> tuple[tuple[int, int], np.dtype, int]:
    """(shape, dtype, offset of the data) of an `.npy` file holding rows of numbers in C order;
    a DataError naming `source` (default `path`) otherwise."""
    source = source or path
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                           (2, 0): np.lib.format.read_array_header_2_0}.get(version)
            if read_header is None:
                raise ValueError(f"format version {version[0]}.{version[1]} is not supported")
            shape, fortran, dtype = read_header(f)
            offset = f.tell()
    except (ValueError, OSError) as e:
        raise DataError(f"not a readable .npy array ({e})", path=source) from None
    check_npy(shape, dtype, source)
    if fortran and shape[0] > 1 and shape[1] > 1:
        raise DataError("is stored column by column (Fortran order): save it row by row "
                        "(np.save(path, np.ascontiguousarray(x)))", path=source)
    if dtype.hasobject:
        raise DataError(f"expected a numeric array, got dtype {dtype}", path=source)
    expected = offset + shape[0] * shape[1] * dtype.itemsize
    if os.path.getsize(path) < expected:
        raise DataError(f"is truncated: {os.path.getsize(path):,} bytes, expected {expected:,} "
                        f"for shape {list(shape)}", path=source)
    return (int(shape[0]), int(shape[1])), dtype, offset


@dataclass(frozen=True)
class Share:
    """The rows a rank checks when a file is opened: rank `rank` of `size`."""

    rank: int = 0
    size: int = 1


def open_data(path: "str | os.PathLike", model, label: "str | int | None" = None,
              share: Share = Share(), block_bytes: int = BLOCK_BYTES,
              cache_dir: str | None = None) -> FileRows:
    """The rows of a data file for `model`, read in pieces: its columns matched to the circuit's
    variables (by the header's names, or by position) and the label column split off; values
    checked against the leaf families' supports and labels against the root's units, with the
    file's line (text) or row (.npy) and column in any message. This rank checks its share of
    the rows (`share`): a contiguous 1/size of an .npy file's, every size-th row of a text file
    (every rank converts all of a text file, see the module doc)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataError("no such data file" if not os.path.exists(path) else "not a file",
                        path=path)
    var_names = model.plan.var_names
    if path.endswith(".npy"):
        (count, width), _, _ = npy_layout(path)
        rows = FileRows(path, match_columns(None, width, var_names, label, path))
        try:
            if count == 0:
                raise DataError("has no rows", path=path)
            start, stop = count * share.rank // share.size, count * (share.rank + 1) // share.size
            step = max(1, CHECK_BYTES // (8 * width))
            for a in range(start, stop, step):
                raw = rows.raw_span(a, min(a + step, stop))
                _check(model, raw.astype(np.float64), rows.columns, path, None, a)
        except BaseException:
            rows.close()
            raise
        return rows
    return _convert_text(TextFile(path, block_bytes), model, label, share, cache_dir)


def _convert_text(text: TextFile, model, label, share: Share, cache_dir: str | None) -> FileRows:
    """Parse a text file into a temporary .npy of the circuit's columns (then the labels)."""
    fmt = text.format
    columns = match_columns(fmt.names, fmt.width, model.plan.var_names, label, text.path)
    dtype = cache_dtype(model, columns.label is not None)
    keep = list(columns.order) + ([] if columns.label is None else [columns.label])
    fd, cache = tempfile.mkstemp(prefix="pcc-rows-", suffix=".npy", dir=cache_dir)
    try:
        count = 0
        with os.fdopen(fd, "wb") as f:
            f.write(_npy_header(dtype, (0, len(keep))))
            for values, lines in text.chunks():
                mine = (count + np.arange(len(values))) % share.size == share.rank
                _check(model, values[mine], columns, text.path, lines[mine], 0)
                f.write(np.ascontiguousarray(values[:, keep]).astype(dtype).tobytes())
                count += len(values)
            f.seek(0)
            f.write(_npy_header(dtype, (count, len(keep))))
        cached = Columns(tuple(range(len(columns.order))),
                         None if columns.label is None else len(columns.order))
        return FileRows(cache, cached, source=text.path, remove=True)
    except BaseException:
        os.unlink(cache)
        raise


def cache_dtype(model, labeled: bool) -> np.dtype:
    """float16 when it holds every value the model accepts exactly (discrete variables with at
    most FLOAT16_EXACT + 1 values, as many classes), else float64."""
    small = bool(model.var_discrete.all()) and float(model.var_max.max()) <= FLOAT16_EXACT
    if small and (not labeled or model.root_k <= FLOAT16_EXACT):
        return np.dtype(np.float16)
    return np.dtype(np.float64)


def _check(model, values: np.ndarray, columns: Columns, path: str,
           lines: "np.ndarray | None", first_row: int) -> None:
    """Check rows (all of a file's columns, float64) for `model` (see `open_data`)."""
    if not len(values):
        return
    x = torch.from_numpy(np.ascontiguousarray(values[:, list(columns.order)]))
    check_support(x, model.var_max.cpu(), model.var_discrete.cpu(), model.plan.var_names,
                  path=path, lines=lines, first_row=first_row)
    if columns.label is not None:
        check_labels(values[:, columns.label], model.root_k, path, lines, first_row)


def _npy_header(dtype: np.dtype, shape: tuple[int, int]) -> bytes:
    """An .npy (version 1.0) header of NPY_HEADER_BYTES bytes for a C-order array."""
    text = repr({"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False,
                 "shape": tuple(shape)})
    body = text.ljust(NPY_HEADER_BYTES - 11) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(body)) + body.encode("latin1")


class View(Rows):
    """Rows seen through other `rows` (whose variables, labels and files they are)."""

    def __init__(self, rows: Rows):
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def num_vars(self) -> int:
        return self.rows.num_vars

    @property
    def labeled(self) -> bool:
        return self.rows.labeled

    def read(self, positions: Tensor) -> Batch:
        return self.rows.read(positions)

    def close(self) -> None:
        self.rows.close()


class Shard(View):
    """Rank `group.rank`'s view of `rows` in data-parallel training (see the module doc). Reads
    run under `group.run`: a rank that fails to read goes on with no rows, and the next
    collective stops every rank with its error."""

    def __init__(self, rows: Rows, group):
        super().__init__(rows)
        self.group = group

    def span(self, start: int, stop: int) -> Batch:
        return self.rows.span(start, stop)

    def batch(self, positions: Tensor) -> Batch:
        mine = positions[self.group.rank:: self.group.size]
        return self.group.run(lambda: self.rows.read(mine), default=self.empty())

    def local_chunks(self, size: int) -> Iterator[Batch]:
        step = size * self.group.size
        for start in range(self.group.rank * size, len(self), step):
            part = self.group.run(lambda: self.rows.span(start, min(start + size, len(self))))
            if part is None:
                return
            yield part

    def total(self, values: list[float]) -> list[float]:
        return self.group.sum(values)

    def guard(self, work: Callable[[], T], default: T | None = None) -> T | None:
        return self.group.run(work, default)


HELD_OUT = 0.1  # the share of the training rows held out for validation when none is given


class Subset(View):
    """The rows of `rows` at `positions` [n] (ascending), in that order."""

    def __init__(self, rows: Rows, positions: Tensor):
        super().__init__(rows)
        self.positions = positions

    def __len__(self) -> int:
        return len(self.positions)

    def read(self, positions: Tensor) -> Batch:
        return self.rows.read(self.positions[torch.as_tensor(positions, dtype=torch.long)])


def hold_out(rows: Rows, share: float = HELD_OUT, seed: int = 0) -> tuple[Rows, Rows]:
    """(training rows, validation rows): a seeded `share` of `rows` (at least one row, and one
    left to train on) held out, both in file order; a `Shard` stays one."""
    n = len(rows)
    if n < 2:
        raise DataError(f"{n} training row{'s' if n != 1 else ''}: too few to hold any out for "
                        "validation (give a validation set)")
    held = min(n - 1, max(1, round(share * n)))
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    parts = torch.sort(order[held:]).values, torch.sort(order[:held]).values
    if isinstance(rows, Shard):
        return tuple(Shard(Subset(rows.rows, p), rows.group) for p in parts)
    return tuple(Subset(rows, p) for p in parts)
