"""Rows read on demand (pcc.rows) against the in-memory reader (pcc.data.read_table and
select_columns): .npy files read in place and text files through their binary cache give the
same values, in any order and piece size, with the same errors (file, line or row, column);
each rank checks its share; a text file's cache goes when the rows are closed."""
from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch

import pcc
from pcc.data import TextFile, check_support, read_table, select_columns
from pcc.errors import DataError
from pcc.rows import FileRows, Share, Shard, as_rows, open_data

CIRCUIT = """pc 1
vars a b c d
leaf bernoulli
input i0 {a, b} k=2
input i1 {c, d} k=2 categorical(n=3)
sum top k=K = i0 * i1
root top
"""


def model(classes: int = 1, leaf: str = "bernoulli"):
    return pcc.compile(CIRCUIT.replace("k=K", f"k={classes}").replace("leaf bernoulli",
                                                                      f"leaf {leaf}"))


def values(rows: int = 57, seed: int = 0) -> np.ndarray:
    """[rows, 5]: a, b in {0, 1}, c, d in {0, 1, 2}, a class in {0, 1}; a few missing."""
    rng = np.random.default_rng(seed)
    x = np.stack([rng.integers(0, 2, rows), rng.integers(0, 2, rows), rng.integers(0, 3, rows),
                  rng.integers(0, 3, rows), rng.integers(0, 2, rows)], 1).astype(np.float64)
    x[:, :4][rng.random((rows, 4)) < 0.05] = np.nan
    return x


def expected(path, label=None, classes=1):
    """(x, labels) as the in-memory reader gives them for the circuit's variables."""
    table, labels = select_columns(read_table(path), model(classes).plan.var_names, label)
    return table.values, None if labels is None else labels.astype(np.int64)


def assert_reads_like(rows, x, labels):
    gen = torch.Generator().manual_seed(0)
    positions = torch.randint(len(x), (40,), generator=gen)  # any order, repeats
    got, units = rows.read(positions)
    np.testing.assert_array_equal(got.numpy(), x[positions.numpy()])
    assert (units is None) == (labels is None)
    if labels is not None:
        assert units.tolist() == labels[positions.numpy()].tolist()
    for size in (1, 7, len(x) + 3):
        parts = list(rows.chunks(size))
        np.testing.assert_array_equal(torch.cat([p for p, _ in parts]).numpy(), x)
        assert all(len(p) <= size for p, _ in parts)
    assert len(rows) == len(x) and rows.num_vars == x.shape[1]


@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.int64, np.float32, np.float64, bool])
def test_npy_rows_read_like_in_memory(tmp_path, dtype):
    data = np.nan_to_num(values(), nan=0).astype(dtype) if dtype != np.float64 else values()
    if dtype == bool:
        data = data.astype(np.int8).clip(0, 1).astype(bool)
    path = tmp_path / "d.npy"
    np.save(path, data)
    with open_data(path, model(2), label=5) as rows:
        x, labels = expected(path, 5, classes=2)
        assert_reads_like(rows, x, labels)


TEXTS = {
    "debd": lambda x: "\n".join(",".join(_cell(v) for v in row) for row in x) + "\n",
    "header, other order, label by name, CRLF": lambda x: "y,d,a,c,b\r\n" + "".join(
        f"{_cell(r[4])},{_cell(r[3])},{_cell(r[0])},{_cell(r[2])},{_cell(r[1])}\r\n" for r in x),
    "byte-order mark, semicolons, blank lines, ?": lambda x: "\ufeff" + "\n\n".join(
        ";".join("?" if math.isnan(v) else _cell(v) for v in row) for row in x) + "\n",
    "spaces, nan, no final newline": lambda x: "\n".join(
        "  ".join("nan" if math.isnan(v) else _cell(v) for v in row) for row in x),
    "tabs, NA": lambda x: "\n".join("\t".join("NA" if math.isnan(v) else _cell(v) for v in row)
                                    for row in x) + "\n",
}
LABEL = {"header, other order, label by name, CRLF": "y"}


def _cell(v: float) -> str:
    return "" if math.isnan(v) else str(int(v))


@pytest.mark.parametrize("block", [5, 17, 64, 1 << 22])
@pytest.mark.parametrize("kind", sorted(TEXTS))
def test_text_rows_read_like_in_memory(tmp_path, kind, block):
    data = values()
    if kind == "debd":
        data[:40] = np.nan_to_num(data[:40], nan=1)  # whole blocks of one-digit values
    path = tmp_path / "d.data"
    path.write_bytes(TEXTS[kind](data).encode("utf-8"))
    label = LABEL.get(kind, 5)
    x, labels = expected(path, label, classes=2)
    with open_data(path, model(2), label, block_bytes=block) as rows:
        assert rows.path != str(path) and rows.dtype == np.float16  # a cache of exact values
        assert_reads_like(rows, x, labels)
        cache = rows.path
    assert not os.path.exists(cache)  # removed on close
    table = read_table(path)  # the in-memory reader itself parses in blocks: same rows, lines
    parts = list(TextFile(path, block).chunks())
    np.testing.assert_array_equal(np.concatenate([v for v, _ in parts]), table.values)
    assert np.concatenate([line for _, line in parts]).tolist() == table.lines.tolist()


def test_continuous_values_are_cached_in_float64(tmp_path):
    rng = np.random.default_rng(1)
    data = rng.normal(size=(30, 4)) * 1e3
    path = tmp_path / "d.csv"
    path.write_text("a,b,c,d\n" + "\n".join(",".join(repr(float(v)) for v in row) for row in data))
    normal = pcc.compile(CIRCUIT.replace("k=K", "k=1").replace(" categorical(n=3)", "")
                         .replace("leaf bernoulli", "leaf normal"))
    with open_data(path, normal) as rows:
        assert rows.dtype == np.float64
        np.testing.assert_array_equal(rows.span(0, 30)[0].numpy(), data)


@pytest.mark.parametrize("block", [8, 1 << 22])
@pytest.mark.parametrize("text, message", [
    ("a,b,c,d\n0,1,2,2\n\n1,0,2,7\n", r"d.data, line 4, column 4: value 7 of variable 'd'"),
    ("0,1,2,2\n1,0,x,1\n", r"d.data, line 2, column 3: 'x' is not a number"),
    ("0,1,2,2\n1,0,1\n", r"d.data, line 2: has 3 values, expected 4 \(values separated by "
                         r"commas, as on line 1\)"),
    ("a,b,c,e\n0,1,2,2\n", r"d.data: the header does not name the circuit's variables \(not "
                           r"variables of the circuit: 'e'; missing variables: 'd'\)"),
    ("a,b,c,d\n", r"d.data: has a header but no rows"),
    ("\n\n", r"d.data: is empty"),
    ("0,1,2\n", r"d.data: has 3 columns but the circuit has 4 variables"),
])
def test_text_errors_name_the_line_and_column(tmp_path, text, message, block):
    path = tmp_path / "d.data"
    path.write_text(text)
    with pytest.raises(DataError, match=message):
        open_data(path, model(), block_bytes=block)
    assert not [f for f in os.listdir(tmp_path) if f.startswith("pcc-rows")]


@pytest.mark.parametrize("data, label, message", [
    (np.array([[0, 1, 2, 2], [1, 0, 2, 9]]), None, r"d.npy, row 2, column 4: value 9"),
    (np.array([[0, 1, 2, 2, 0], [1, 0, 2, 1, 2]]), 5,
     r"d.npy, row 2: label 2 is not a class of the model \(its root has 2 units: 0..1\)"),
    (np.zeros((0, 4)), None, r"d.npy: has no rows"),
    (np.zeros((3, 4, 1)), None, r"d.npy: expected a 2-D array \[rows, variables\]"),
    (np.asfortranarray(np.zeros((3, 4))), None, r"d.npy: is stored column by column"),
])
def test_npy_errors_name_the_row_and_column(tmp_path, data, label, message):
    np.save(tmp_path / "d.npy", data)
    with pytest.raises(DataError, match=message):
        open_data(tmp_path / "d.npy", model(2 if label else 1), label)


def test_a_truncated_npy_is_refused(tmp_path):
    np.save(tmp_path / "d.npy", np.zeros((100, 4)))
    whole = (tmp_path / "d.npy").read_bytes()
    (tmp_path / "d.npy").write_bytes(whole[:-8])
    with pytest.raises(DataError, match=r"d.npy: is truncated: 3,320 bytes, expected 3,328"):
        open_data(tmp_path / "d.npy", model())


@pytest.mark.parametrize("suffix", ["npy", "data"])
def test_each_rank_checks_its_share_of_the_rows(tmp_path, suffix):
    """A bad value in row 40 of 50: rank 1 of 2 finds it (the second half of an .npy, every
    second row of a text file: 40 is even, so rank 0 there)."""
    data = np.nan_to_num(values(50), nan=0)[:, :4]
    data[39, 1] = 5
    path = tmp_path / f"d.{suffix}"
    if suffix == "npy":
        np.save(path, data)
    else:
        path.write_text(TEXTS["debd"](data))
    owner = 1 if suffix == "npy" else 39 % 2
    for rank in (0, 1):
        if rank == owner:
            with pytest.raises(DataError, match="row 40|line 40"):
                open_data(path, model(), share=Share(rank, 2))
        else:
            open_data(path, model(), share=Share(rank, 2)).close()


class OneRank:
    """A stand-in process group of `size` ranks seen from rank `rank`."""

    def __init__(self, rank, size):
        self.rank, self.size = rank, size

    def run(self, work, default=None, interruptible=True):
        return work()


def test_shards_split_batches_and_passes_between_the_ranks():
    x = torch.arange(23 * 2, dtype=torch.float64).reshape(23, 2)
    positions = torch.randperm(23)
    shards = [Shard(as_rows(x), OneRank(r, 3)) for r in range(3)]
    batches = [s.batch(positions)[0] for s in shards]
    assert sorted(torch.cat(batches)[:, 0].tolist()) == x[:, 0].tolist()  # each row once
    assert [len(b) for b in batches] == [8, 8, 7]
    passes = [torch.cat([c for c, _ in s.local_chunks(4)]) for s in shards]
    assert sorted(torch.cat(passes)[:, 0].tolist()) == x[:, 0].tolist()
    assert passes[1][:, 0].tolist() == x[4:8, 0].tolist() + x[16:20, 0].tolist()  # chunks 1, 4
