"""`pcc sample`, `pcc inpaint`, `pcc mpe` end to end on a tiny model; bad input is one line and
a non-zero exit (2 for a bad option, 1 for bad input files)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from pcc import checkpoint
from pcc.cli.main import main
from pcc.compiler import compile as compile_circuit
from pcc.ir import Family
from pcc.queries import mpe
from pcc.structures import poon_domingos

LEAF = Family("binomial", (("n", 3),))  # pixels 0..3


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A 4x4-image model (PD, delta 2, K=3) saved as a checkpoint, and some images."""
    folder = tmp_path_factory.mktemp("cli")
    model = compile_circuit(poon_domingos(4, 4, [2], k=3, leaf=LEAF), backend="torch", seed=1)
    checkpoint.save(model, folder / "tiny.pt")
    images = np.random.default_rng(0).integers(0, 4, (6, 16))
    np.savetxt(folder / "images.data", images, fmt="%d", delimiter=",")
    with_missing = images.astype(object)
    with_missing[:, :5] = "?"
    np.savetxt(folder / "missing.data", with_missing, fmt="%s", delimiter=",")
    return folder


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_sample_writes_rows_and_a_grid(files, capsys):
    code, out, _ = run(capsys, "sample", files / "tiny.pt", "-n", 12, "-o", files / "s.npy",
                       "--png", files / "grid.png", "--columns", 4, "--scale", 2)
    assert code == 0 and "wrote" in out
    rows = np.load(files / "s.npy")
    assert rows.shape == (12, 16) and set(np.unique(rows)) <= {0, 1, 2, 3}
    width, height = Image.open(files / "grid.png").size
    assert (width, height) == (2 + 4 * (4 * 2 + 2), 2 + 3 * (4 * 2 + 2))  # 4 x 3 images of 8 px


def test_sample_given_evidence_keeps_it_and_prints_csv(files, capsys):
    code, out, _ = run(capsys, "sample", files / "tiny.pt", "-n", 3, "--evidence",
                       files / "missing.data", "--seed", 4)
    assert code == 0
    rows = np.array([[float(v) for v in line.split(",")] for line in out.splitlines()])
    images = np.loadtxt(files / "images.data", delimiter=",")
    assert rows.shape == (18, 16)  # 3 samples for each of 6 evidence rows, row by row
    assert (rows[:, 5:] == np.repeat(images[:, 5:], 3, 0)).all()


@pytest.mark.parametrize("to_file", [True, False])
def test_mpe_completes_missing_cells(files, capsys, to_file):
    output = ["-o", files / "completed.csv"] if to_file else []
    code, out, err = run(capsys, "mpe", files / "tiny.pt", "--data", files / "missing.data",
                         *output)
    assert code == 0
    completed = np.loadtxt(files / "completed.csv" if to_file else out.splitlines(),
                           delimiter=",")
    images = np.loadtxt(files / "images.data", delimiter=",")
    assert not np.isnan(completed).any() and (completed[:, 5:] == images[:, 5:]).all()
    model, _ = checkpoint.load(files / "tiny.pt")
    evidence = torch.from_numpy(images).masked_fill(torch.arange(16) < 5, math.nan)
    states, log_prob = mpe(model, evidence)
    assert np.array_equal(states.numpy(), completed)
    assert f"30 missing values in 6 rows; mean log-probability of the completed rows: " \
           f"{log_prob.mean().item():.4f}" in err


@pytest.mark.parametrize("how", [["--mpe"], ["--samples", "2"]])
def test_inpaint_writes_panels(files, capsys, how):
    out_png = files / "inpaint.png"
    code, _, _ = run(capsys, "inpaint", files / "tiny.pt", "--data", files / "images.data",
                     "--mask", "random:0.5", "--image-shape", "4x4", "--rows", 3, "--scale", 2,
                     "-o", out_png, *how)
    assert code == 0
    columns = 3 if how == ["--mpe"] else 4
    width, height = Image.open(out_png).size
    assert width == 2 + columns * 10 and height == 14 + 2 + 3 * 10  # a title band on top


@pytest.mark.parametrize("argv, code, message", [
    (["inpaint", "{tiny}", "--data", "{images}", "--mask", "diagonal", "-o", "{x}.png"], 2,
     "argument --mask: unknown mask 'diagonal'"),
    (["inpaint", "{tiny}", "--data", "{images}", "--mask", "random:2", "-o", "{x}.png"], 2,
     "probability P in [0, 1]"),
    (["inpaint", "{tiny}", "--data", "{images}", "--mask", "left-half", "--image-shape", "3x5",
      "-o", "{x}.png"], 1, "has 15 values per image but the model has 16 variables"),
    (["sample", "{tiny}", "-n", "0"], 2, "argument -n: must be at least 1, got 0"),
    (["sample", "{tiny}", "--temperature", "-1"], 2, "argument --temperature: must be at least 0"),
    (["sample", "{folder}/nothing.pt"], 1, "no such checkpoint"),
    (["mpe", "{tiny}", "--data", "{folder}/nothing.data"], 1, "no such data file"),
    (["sample", "{tiny}", "--root-unit", "1"], 1, "--root-unit must be in 0..0"),
    (["sample", "{classes}", "-n", "2"], 1, "choose one with --root-unit 0..1"),
])
def test_bad_input_is_one_line(files, capsys, argv, code, message):
    classes = files / "classes.pc"
    classes.write_text("pc 1\nvars 2\nleaf bernoulli\ninput a {x0, x1} k=2\nroot a\n")
    names = {"tiny": files / "tiny.pt", "images": files / "images.data", "x": files / "x",
             "folder": files, "classes": classes}
    status, _, err = run(capsys, *(a.format(**names) for a in argv))
    assert status == code and message in err and len(err.strip().splitlines()) == 1
