"""`pcc train` and `pcc eval` as 2 gloo ranks: under torchrun they print, log and save what one
process does (rank 0 alone); a rank with bad data stops every rank with one line naming it; a
rank that dies is noticed, not waited for; an interrupted run saves its best model on rank 0."""
from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from distributed_helpers import REPO, finish, launch
from pcc import checkpoint
from pcc.cli.main import main
from pcc.train import evaluate
from test_cli_train import CIRCUIT, rows

LONG = ["--epochs", "100000", "--patience", "100000", "--batch-size", "10", "--members", "1"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ranks")
    (folder / "c.pc").write_text(CIRCUIT.replace("k=K", "k=1"))
    for name, n, seed in (("train", 1001, 0), ("valid", 301, 1), ("test", 299, 2)):
        np.savetxt(folder / f"{name}.data", rows(n, seed)[0], fmt="%d", delimiter=",")
    bad = rows(100, 3)[0]
    bad[70, 1] = 5  # in the second half of the rows: rank 1's to check
    np.save(folder / "bad.npy", bad.astype(np.int8))
    return folder


def scores(text: str) -> dict[str, float]:
    line = next(line for line in text.splitlines() if line.startswith("mean log-likelihood: "))
    return {k: float(v) for k, v in (p.split() for p in line.split(": ", 1)[1].split(", "))}


def torchrun(*argv: str, timeout: float = 180) -> subprocess.CompletedProcess:
    """`torchrun --standalone --nproc-per-node=2 -m pcc ARGV`; `--` after -m when ARGV has an
    option that torchrun's own parser would take (--log: ambiguous with its --log-dir)."""
    separator = ["--"] if "--log" in argv else []
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc-per-node=2", "-m", *separator, "pcc", *map(str, argv)]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))


def test_torchrun_trains_and_evaluates_like_one_process(files, tmp_path, capsys):
    argv = ["train", files / "c.pc", "--train", files / "train.data", "--valid",
            files / "valid.data", "--test", files / "test.data", "--epochs", "2", "--polish", "1",
            "--members", "2", "--quiet"]  # an ensemble: the members one after the other
    ranks = torchrun(*argv, "--log", tmp_path / "log.csv", "-o", tmp_path / "m2.pt")
    assert ranks.returncode == 0, ranks.stderr
    assert main([*map(str, argv), "-o", str(tmp_path / "m1.pt")]) == 0
    one = capsys.readouterr().out
    assert ranks.stdout.count("best epoch") == 1  # rank 0 alone prints
    assert ranks.stdout.splitlines()[0] == one.splitlines()[0].replace("m1.pt", "m2.pt")
    assert scores(ranks.stdout) == pytest.approx(scores(one), abs=2e-4)
    (model, meta), (alone, _) = checkpoint.load(tmp_path / "m2.pt"), checkpoint.load(
        tmp_path / "m1.pt")
    assert meta["ranks"] == 2
    for key, value in model.state_dict().items():
        assert torch.allclose(value.exp(), alone.state_dict()[key].exp(), rtol=1e-4), key
    with open(tmp_path / "log.csv") as f:
        assert [(r["member"], r["epoch"]) for r in csv.DictReader(f)] == [
            (m, e) for m in "12" for e in ("1", "2", "polish 1")]
    evaluated = torchrun("eval", tmp_path / "m2.pt", "--data", files / "test.data")
    assert evaluated.returncode == 0, evaluated.stderr
    assert main(["eval", str(tmp_path / "m2.pt"), "--data", str(files / "test.data")]) == 0
    assert evaluated.stdout == capsys.readouterr().out  # mean ± standard error (rows), as one


def test_a_rank_with_bad_data_stops_every_rank_with_one_line(files, tmp_path):
    out = tmp_path / "m.pt"
    started = time.monotonic()
    (code0, _, err0), (code1, _, err1) = finish(launch(
        ["train", files / "c.pc", "--train", files / "bad.npy", "--members", "1", "-o", out]),
        timeout=60)
    assert code0 == code1 == 1 and err1 == "" and time.monotonic() - started < 60
    assert err0.splitlines() == [f"rank 1: {files / 'bad.npy'}, row 71, column 2: value 5 of "
                                 "variable 'x1' is outside its leaf family's support (expected an "
                                 "integer in 0..1)"]
    assert not out.exists()


def wait_for(process: subprocess.Popen, start: str, timeout: float = 120) -> list[str]:
    """Lines of `process`'s stderr up to the first that starts with `start`."""
    lines, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines.append(process.stderr.readline())
        if lines[-1].startswith(start) or not lines[-1]:
            return lines
    raise AssertionError(f"no line starting with {start!r} within {timeout} s")


def test_a_rank_that_dies_is_noticed_by_the_others(files, tmp_path):
    out = tmp_path / "m.pt"
    ranks = launch(["train", files / "c.pc", "--train", files / "train.data", "--valid",
                    files / "valid.data", *LONG, "-o", out])
    wait_for(ranks[0], "epoch   1")
    ranks[1].kill()
    started = time.monotonic()
    (code0, _, err0), (code1, _, _) = finish(ranks, timeout=60)
    assert code0 == 1 and code1 == -signal.SIGKILL and time.monotonic() - started < 30
    assert err0.strip().splitlines()[-1].startswith(
        "rank 0: lost contact with the other ranks (one stopped, or did not reach this step "
        "within 600 s): ")
    assert not out.exists()


@pytest.mark.parametrize("who", ["both", "rank 1"])
def test_an_interrupted_run_saves_its_best_model_on_rank_0(files, tmp_path, who):
    """Ctrl-C reaches every rank (and torchrun sends it on); SIGTERM to one rank stops all."""
    out = tmp_path / "m.pt"
    ranks = launch(["train", files / "c.pc", "--train", files / "train.data", "--valid",
                    files / "valid.data", *LONG, "-o", out])
    lines = wait_for(ranks[0], "epoch   2")
    for p in ranks if who == "both" else ranks[1:]:
        p.send_signal(signal.SIGINT if who == "both" else signal.SIGTERM)
    (code0, _, err0), (code1, _, err1) = finish(ranks, timeout=60)
    assert code0 == code1 == 130 and err1 == ""
    last = ("".join(lines) + err0).strip().splitlines()[-1]
    assert last.startswith("interrupted: saved the best model so far (1 member, best epoch ")
    assert last.endswith(f"to {out}")
    model, meta = checkpoint.load(out)
    assert meta["interrupted"] and meta["ranks"] == 2 and len(meta["history"]) >= 2
    best = max(r["valid_ll"] for r in meta["history"])
    assert meta["history"][meta["best_epoch"] - 1]["valid_ll"] == best
    valid = np.loadtxt(files / "valid.data", delimiter=",")
    assert abs(evaluate(model, valid).mean - best) < 1e-5  # the best epoch's model
