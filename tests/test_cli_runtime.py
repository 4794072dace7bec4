"""pcc compile / train / eval end to end on a tiny circuit and data set; bad input exits 1
with one clear line, never a traceback."""
import re

import numpy as np
import pytest
import torch

from pcc import checkpoint
from pcc.cli.main import main
from pcc.train import TrainConfig, fit

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


def test_compile_explain_sizes_every_op(files, capsys):
    """By hand, per sample: 4 inputs of K=3 over 2 bernoulli variables (24 parameters; 8 slots x
    3 units x 4 FLOPs; 4 x 3 float32 values written); one einsum group of the 2 partitions
    3x3 -> 1 (2 x 9 weights; 2 x (9 products + 2 x 9 multiply-adds + 2 x 1 for the max and
    the division + 1 logarithm) FLOPs;
    4 x 2 x (3 + 3 + 1) bytes); one mix of P=2 partitions into K=1 (2 weights, 4 x 2 FLOPs,
    4 x 3 bytes)."""
    assert main(["compile", str(files["pc"]), "--explain"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "plan: 4 variables, 1 leaf group, 2 fused ops in 1 layer; arena rows per K: K=1: 4, K=3: 5"
    rows = [line.split() for line in lines[3:6]]
    assert rows[0][:3] == ["0", "leaf", "4"] and "8 slots" in lines[3] and rows[0][-3:] == ["24", "96", "48"]
    assert rows[1][:6] == ["1", "einsum", "2", "3x3", "->", "1"] and rows[1][-3:] == ["18", "60", "56"]
    assert rows[2][:5] == ["1", "mix", "1", "P=2,", "K=1"] and rows[2][-3:] == ["2", "8", "12"]
    assert lines[-1] == "total: 44 parameters (24 in leaves), 164 FLOPs and 116 bytes per sample"
    assert sum(int(r[-3].replace(",", "")) for r in rows) == 44  # the rows add up to the total


def test_explain_columns_are_aligned_and_regions_are_listed(capsys):
    """A long family name does not push its row out of line; --explain=regions names the regions
    (sums by name, the partitions of a sum with several as name[p])."""
    assert main(["compile", "ir_examples/mixed_families.pc", "--explain=regions"]) == 0
    lines = capsys.readouterr().out.splitlines()
    table = [line for line in lines[2:] if line[:5].strip().isdigit() or line.startswith("layer")]
    ends = {len(line) for line in table}
    assert len(ends) == 1, table  # right-aligned numbers: every row ends in the same column
    starts = {line.index(" - ") for line in table if " - " in line}
    assert len(starts) == 1
    listed = [line.strip() for line in lines[2:] if line.startswith("       ")]
    assert {"ab", "bc", "c", "a2", "top[0]", "top[1]", "top"} <= set(listed)
    assert any(line.split()[1] == "parts" for line in table) and any(line.split()[1] == "mixed" for line in table)
    assert "1 slots" not in "\n".join(lines) and "1 layers" not in lines[0]


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


def test_threads_option_sets_torch_threads(files, tmp_path, capsys):
    before = torch.get_num_threads()
    wanted = 1 if before > 1 else 2
    try:
        assert main(["eval", str(files["pc"]), "--data", str(files["test"]), "--threads",
                     str(wanted)]) == 0
        assert torch.get_num_threads() == wanted
    finally:
        torch.set_num_threads(before)


def test_continue_training_from_checkpoint(files, tmp_path):
    """Continuing starts from the checkpoint's parameters (not fresh ones), keeps its circuit
    (one member: no ensemble of ensembles), and trains exactly as `fit` does from them (on the
    training rows less the share held out for validation, as no --valid is given)."""
    first, second = tmp_path / "a.pt", tmp_path / "b.pt"
    args = ["--train", str(files["train"]), "--epochs", "2", "--batch-size", "50", "--quiet",
            "--seed", "3"]
    assert main(["train", str(files["pc"]), *args, "--members", "2", "-o", str(first)]) == 0
    assert main(["train", str(first), *args, "-o", str(second)]) == 0
    start, _ = checkpoint.load(first)
    continued, meta = checkpoint.load(second)
    assert continued.circuit == start.circuit and meta["train"]["members"] == 1
    expected, _ = checkpoint.load(first)
    from pcc.rows import HELD_OUT, as_rows, hold_out
    rows, held = hold_out(as_rows(np.loadtxt(files["train"], delimiter=",")), HELD_OUT, seed=3)
    fit(expected, rows, held, config=TrainConfig(epochs=2, batch_size=50, seed=3, members=1,
                                                init="keep"), progress=False)
    changed = False
    for name, value in continued.state_dict().items():
        assert torch.equal(value, expected.state_dict()[name]), name
        changed |= not torch.equal(value, start.state_dict()[name])
    assert changed  # and training did move the parameters


@pytest.mark.parametrize("bad, message", [
    ("0,1,1,0\n1,2,0,0\n", r"line 2, column 2: value 2 of variable 'x1'"),
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
