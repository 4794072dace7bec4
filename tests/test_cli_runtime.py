"""pcc compile / train / eval end to end on a tiny circuit and data set; bad input exits 1
with one clear line, never a traceback."""
import re

import numpy as np
import pytest

from pcc.cli.main import main

CIRCUIT = """pc 1
vars 4
leaf bernoulli
input a {x0, x1} k=3
input b {x2, x3} k=3
input c {x0, x2} k=3
input d {x1, x3} k=3
sum top k=1 = a * b | c * d
root top
"""


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(0)
    z = rng.random((300, 1)) < 0.5
    data = (rng.random((300, 4)) < np.where(z, 0.8, 0.2)).astype(int)
    paths = {"pc": tmp_path / "c.pc"}
    paths["pc"].write_text(CIRCUIT)
    for name, rows in (("train", data[:200]), ("valid", data[200:250]), ("test", data[250:])):
        paths[name] = tmp_path / f"{name}.data"
        paths[name].write_text("\n".join(",".join(map(str, r)) for r in rows) + "\n")
    return paths


def test_compile_explain(files, capsys):
    assert main(["compile", str(files["pc"]), "--explain"]) == 0
    out = capsys.readouterr().out
    assert "einsum" in out and "mix" in out and "FLOPs" in out


def test_train_then_eval(files, tmp_path, capsys):
    model = tmp_path / "m.pt"
    code = main(["train", str(files["pc"]), "--train", str(files["train"]), "--valid",
                 str(files["valid"]), "--test", str(files["test"]), "--epochs", "3",
                 "--batch-size", "50", "-o", str(model), "--quiet"])
    assert code == 0 and model.exists()
    out = capsys.readouterr().out
    assert re.search(r"train -\d+\.\d+, valid -\d+\.\d+, test -\d+\.\d+", out)
    assert main(["eval", str(model), "--data", str(files["test"])]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert re.fullmatch(r"mean log-likelihood: -\d+\.\d+ ± \d+\.\d+ \(50 rows\)", line)


def test_continue_training_from_checkpoint(files, tmp_path):
    first, second = tmp_path / "a.pt", tmp_path / "b.pt"
    args = ["--train", str(files["train"]), "--epochs", "1", "--quiet"]
    assert main(["train", str(files["pc"]), *args, "-o", str(first)]) == 0
    assert main(["train", str(first), *args, "-o", str(second)]) == 0


@pytest.mark.parametrize("bad, message", [
    ("0,1,1,0\n1,2,0,0\n", r"row 1, column 1: value 2 of variable 'x1'"),
    ("0,1,1\n", r"3 columns but the circuit has 4 variables"),
    ("0,1,a,0\n", r"'a' is not a number"),
])
def test_bad_data_is_one_clear_error(files, tmp_path, capsys, bad, message):
    data = tmp_path / "bad.data"
    data.write_text(bad)
    assert main(["eval", str(files["pc"]), "--data", str(data)]) == 1
    err = capsys.readouterr().err
    assert re.search(message, err) and "Traceback" not in err


def test_bad_checkpoint_is_one_clear_error(tmp_path, capsys):
    bad = tmp_path / "m.pt"
    bad.write_bytes(b"nope")
    assert main(["eval", str(bad), "--data", str(bad)]) == 1
    assert "not a pcc checkpoint" in capsys.readouterr().err
