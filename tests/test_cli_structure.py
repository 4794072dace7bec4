"""`pcc structure`: files it writes parse back to the generators' circuits; bad input is one line
and a non-zero exit (2 for a bad option, 1 for what the generators refuse)."""
from __future__ import annotations

import numpy as np
import pytest

from pcc.cli.main import main
from pcc.frontend import load, parse, to_text
from pcc.ir import Family
from pcc.structures import hidden_chow_liu_tree, poon_domingos, random_binary_trees


def test_pd_writes_a_file_that_loads_back(tmp_path, capsys):
    out = tmp_path / "pd.pc"
    assert main(["structure", "pd", "--height", "8", "--width", "6", "--delta", "4,2", "--delta-w", "3,1",
                 "-k", "3", "--leaf", "binomial(n=255)", "-o", str(out)]) == 0
    expected = poon_domingos(8, 6, [4, 2], deltas_w=[3, 1], k=3, leaf=Family("binomial", (("n", 255),)))
    assert load(str(out)) == expected
    assert "wrote" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pd.pc"]  # no temporary file left


def test_pd_with_channels_split_to_stdout(capsys):
    assert main(["structure", "pd", "--height", "4", "--width", "4", "--delta", "2", "--channels", "3",
                 "--channel-split", "-k", "2"]) == 0
    assert parse(capsys.readouterr().out) == poon_domingos(4, 4, 2, channels=3, channel_split=True, k=2)


def test_rat_to_stdout(capsys):
    assert main(["structure", "rat", "--vars", "9", "--depth", "2", "--replicas", "3", "--seed", "4"]) == 0
    text = capsys.readouterr().out
    assert parse(text) == random_binary_trees(9, 2, 3, seed=4)
    assert text == to_text(random_binary_trees(9, 2, 3, seed=4))


def test_hclt_from_a_data_file(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.integers(0, 3, (50, 5))
    path = tmp_path / "toy.train.data"
    path.write_text("".join(",".join(map(str, row)) + "\n" for row in data))
    out = tmp_path / "hclt.pc"
    assert main(["structure", "hclt", "--data", str(path), "-k", "2", "--trees", "2", "-o", str(out)]) == 0
    assert load(str(out)) == hidden_chow_liu_tree(data, k=2, trees=2)


def test_output_replaces_an_existing_file(tmp_path):
    out = tmp_path / "rat.pc"
    out.write_text("old")
    assert main(["structure", "rat", "--vars", "4", "-o", str(out)]) == 0
    assert load(str(out)) == random_binary_trees(4)


@pytest.mark.parametrize("argv,code,message", [
    (["pd", "--height", "0", "--width", "3", "--delta", "1"], 2, "argument --height: must be at least 1"),
    (["pd", "--height", "3", "--width", "3", "--delta", "1", "-k", "0"], 2, "argument -k: must be at least 1"),
    (["pd", "--height", "3", "--width", "3", "--delta", "a,b"], 1, "--delta wants numbers"),
    (["pd", "--height", "3", "--width", "3", "--delta", "0.5"], 1, "delta must be a number >= 1"),
    (["rat", "--vars", "4", "--leaf", "gamma"], 1, "unknown leaf family 'gamma'"),
    (["rat", "--vars", "4", "--replicas", "0"], 2, "argument --replicas: must be at least 1"),
    (["hclt", "--data", "/nonexistent/x.data"], 1, "/nonexistent/x.data: no such data file"),
    (["rat", "--vars", "4", "-o", "/nonexistent/dir/x.pc"], 2, "cannot write /nonexistent/dir/x.pc"),
    (["rat", "--vars", "16", "-k", "1000000000"], 1, "too large to build: its input regions alone"),
    (["pd", "--height", "100000", "--width", "100000", "--delta", "1"], 1, "too large to build"),
    (["rat", "--vars", "2", "--replicas", "1", "-k", "50000"], 1,
     "too large to build: 2,500,100,000 parameters"),
    (["hclt", "--data", "{data}", "-k", "100000"], 1, "too large to build"),
    (["hclt", "--data", "{data}", "--trees", "0"], 2, "argument --trees: must be at least 1"),
])
def test_bad_arguments_give_one_line(argv, code, message, capsys, tmp_path):
    data = tmp_path / "d.data"
    data.write_text("0,1,0\n1,1,0\n")
    assert main(["structure", *(a.format(data=data) for a in argv)]) == code
    err = capsys.readouterr().err
    assert message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_bad_data_names_file_row_and_column(tmp_path, capsys):
    path = tmp_path / "bad.data"
    path.write_text("0,1,0\n1,1,0\n0,7,1\n")
    assert main(["structure", "hclt", "--data", str(path), "--leaf", "bernoulli"]) == 1
    assert capsys.readouterr().err.strip() == (
        f"{path}, row 3, column 2: value 7 is outside the support {{0..1}} of bernoulli")
