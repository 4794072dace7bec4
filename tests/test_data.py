"""Data loaders: debd text, CSV with a header, .npy; errors name file, row and column."""
import numpy as np
import pytest

from pcc.data import load_data
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
