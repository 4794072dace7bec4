"""Data loaders: debd text, CSV with a header, .npy; separators, byte-order marks, header names
matched to the circuit's variables, label columns; errors name the file, the line (or row) and
the column, counted from 1."""
import numpy as np
import pytest
import torch

from pcc.data import check_support, load_data, read_table, select_columns
from pcc.errors import DataError


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_debd_text(tmp_path):
    p = write(tmp_path, "a.data", "0,1,1\n1,0,0\n")
    assert np.array_equal(load_data(p), [[0, 1, 1], [1, 0, 0]])


def test_csv_with_header_and_missing(tmp_path):
    p = write(tmp_path, "a.csv", "age,sex\n3,1\n?,0\n,1\n")
    data = load_data(p)
    assert data.shape == (3, 2) and np.isnan(data[1, 0]) and np.isnan(data[2, 0])


def test_npy(tmp_path):
    p = tmp_path / "a.npy"
    np.save(p, np.array([[1, 0], [0, 1]], dtype=np.int8))
    assert load_data(p).dtype == np.float64


def test_wrong_width_names_the_line(tmp_path):
    p = write(tmp_path, "a.data", "0,1,1\n1,0\n")
    with pytest.raises(DataError, match="a.data, line 2: has 2 values, expected 3 "
                                        r"\(values separated by commas, as on line 1\)"):
        load_data(p)


def test_non_numeric_cell_names_row_and_column(tmp_path):
    p = write(tmp_path, "a.data", "0,1,1\n1,x,0\n")
    with pytest.raises(DataError, match=r"a.data, line 2, column 2: 'x' is not a number"):
        load_data(p)


def test_width_against_circuit(tmp_path):
    p = write(tmp_path, "a.data", "0,1,1\n")
    with pytest.raises(DataError, match="3 columns but the circuit has 4 variables"):
        load_data(p, num_vars=4)


@pytest.mark.parametrize("content", [b"", b"\xff\xfe\x00garbage"])
def test_empty_or_binary(tmp_path, content):
    p = tmp_path / "a.data"
    p.write_bytes(content)
    with pytest.raises(DataError):
        load_data(p)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="no such data file"):
        load_data(tmp_path / "nope.data")


def test_a_byte_order_mark_is_skipped(tmp_path):
    p = tmp_path / "a.csv"
    p.write_bytes("\ufeffa,b\n1,0\n".encode("utf-8"))
    table = read_table(p)
    assert table.names == ("a", "b") and np.array_equal(table.values, [[1, 0]])
    p.write_bytes("\ufeff1,0\n0,1\n".encode("utf-8"))
    assert np.array_equal(load_data(p), [[1, 0], [0, 1]])


@pytest.mark.parametrize("separator", [";", " ", "\t", "  "])
def test_semicolons_spaces_and_tabs_separate_values_too(tmp_path, separator):
    p = write(tmp_path, "a.data", f"a{separator}b{separator}c\n0{separator}1{separator}?\n"
                                  f"1{separator}0{separator}1\n")
    table = read_table(p)
    assert table.names == ("a", "b", "c") and table.lines.tolist() == [2, 3]
    assert np.array_equal(table.values, [[0, 1, np.nan], [1, 0, 1]], equal_nan=True)


def test_a_row_with_another_separator_names_its_line(tmp_path):
    p = write(tmp_path, "a.data", "0;1;1\n1,0,0\n")
    with pytest.raises(DataError, match=r"a.data, line 2: has 1 value, expected 3 \(values "
                                        r"separated by semicolons, as on line 1\)"):
        load_data(p)


def test_header_names_are_matched_to_the_variables(tmp_path):
    p = write(tmp_path, "a.csv", "c,a,b\n3,1,2\n6,4,5\n")
    table, labels = select_columns(read_table(p), ("a", "b", "c"))
    assert labels is None and table.names == ("a", "b", "c")
    assert np.array_equal(table.values, [[1, 2, 3], [4, 5, 6]])


@pytest.mark.parametrize("header, message", [
    ("a,b,d", r"not variables of the circuit: 'd'; missing variables: 'c'"),
    ("a,b,b", r"missing variables: 'c'; repeated: 'b'"),
    ("x0,x1,x2", r"not variables of the circuit: 'x0', 'x1', 'x2'; missing variables: 'a', 'b'"),
])
def test_a_header_that_does_not_name_the_variables_is_refused(tmp_path, header, message):
    p = write(tmp_path, "a.csv", f"{header}\n1,2,3\n")
    with pytest.raises(DataError, match=r"a.csv: the header does not name the circuit's "
                                        r"variables \(" + message):
        select_columns(read_table(p), ("a", "b", "c"))


@pytest.mark.parametrize("label", ["y", 2])
def test_the_label_column_is_split_off_by_name_or_position(tmp_path, label):
    p = write(tmp_path, "a.csv", "b,y,a\n1,0,2\n3,1,4\n")
    table, labels = select_columns(read_table(p), ("a", "b"), label)
    assert labels.tolist() == [0, 1] and np.array_equal(table.values, [[2, 1], [4, 3]])


def test_support_errors_count_lines_and_columns_from_1(tmp_path):
    p = write(tmp_path, "a.csv", "a,b\n0,1\n\n1,7\n")
    table = read_table(p)
    with pytest.raises(DataError, match=r"a.csv, line 4, column 2: value 7 of variable 'b'"):
        check_support(torch.from_numpy(table.values), torch.tensor([1.0, 1.0]),
                      torch.tensor([True, True]), ("a", "b"), path=str(p), lines=table.lines)
    with pytest.raises(DataError, match=r"^row 2, column 2: value 7 of variable 'b'"):
        check_support(torch.from_numpy(table.values), torch.tensor([1.0, 1.0]),
                      torch.tensor([True, True]), ("a", "b"))
