"""`pcc train` beyond the happy path: Ctrl-C and SIGTERM save the best model so far, per-epoch
metrics (--log) and the learning curve (--plot), class-conditional training (--label-column),
and what `pcc eval` and `pcc info` report for such models."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from pcc import checkpoint
from pcc.cli.main import main
from pcc.train import evaluate
from test_cli_runtime import CIRCUIT as RUNTIME_CIRCUIT

REPO = Path(__file__).resolve().parent.parent
CIRCUIT = RUNTIME_CIRCUIT.replace("sum top k=1", "sum top k=K")


def rows(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(x [n, 4] in {0, 1}, y [n]): x0 copies the class y nine times in ten, x1 = x0 mostly."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.integers(0, 2, (n, 4))
    x[:, 0] = np.where(rng.random(n) < 0.9, y, 1 - y)
    x[:, 1] = np.where(rng.random(n) < 0.8, x[:, 0], x[:, 1])
    return x, y


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("train")
    (folder / "c.pc").write_text(CIRCUIT.replace("k=K", "k=1"))
    (folder / "classes.pc").write_text(CIRCUIT.replace("k=K", "k=2"))
    for name, n, seed in (("train", 3000, 0), ("valid", 500, 1)):
        x, y = rows(n, seed)
        np.savetxt(folder / f"{name}.data", x, fmt="%d", delimiter=",")
        # labeled: a header, the class in the middle, the variables in another order
        with open(folder / f"{name}.csv", "w") as f:
            f.write("x3,x1,class,x0,x2\n")
            for xi, yi in zip(x, y):
                f.write(f"{xi[3]},{xi[1]},{yi},{xi[0]},{xi[2]}\n")
    return folder


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupt_saves_the_best_model_so_far(files, tmp_path, stop):
    out = tmp_path / "m.pt"
    command = [sys.executable, "-m", "pcc.cli.main", "train", str(files / "c.pc"),
               "--train", str(files / "train.data"), "--valid", str(files / "valid.data"),
               "--epochs", "100000", "--patience", "100000", "--batch-size", "10",
               "--members", "1", "-o", str(out)]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    child = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, cwd=REPO, env=env)
    lines = []
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:  # wait for two finished epochs
        lines.append(child.stderr.readline())
        if lines[-1].startswith("epoch   2") or not lines[-1]:
            break
    child.send_signal(stop)
    try:
        _, rest = child.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        child.kill()
        pytest.fail(f"pcc train did not stop within 120 s of signal {stop}:\n{''.join(lines)}")
    err = lines + rest.splitlines(keepends=True)
    assert child.returncode == 130, "".join(err)
    assert err[-1].startswith("interrupted: saved the best model so far (1 member, best epoch ")
    assert err[-1].rstrip().endswith(f"to {out}")
    model, meta = checkpoint.load(out)
    assert meta["interrupted"] and len(meta["history"]) >= 2 and meta["best_epoch"] >= 1
    best = max(r["valid_ll"] for r in meta["history"])
    assert meta["history"][meta["best_epoch"] - 1]["valid_ll"] == best
    valid = np.loadtxt(files / "valid.data", delimiter=",")
    assert abs(evaluate(model, valid).mean - best) < 1e-5  # the best epoch's model, not the last


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_an_interrupt_lost_in_a_finalizer_stops_training_at_the_next_batch(files):
    """A signal's KeyboardInterrupt raised while the garbage collector runs a finalizer is
    printed and dropped by Python; training still stops, at its next safe point."""
    import pcc
    from pcc.signals import interrupting
    from pcc.train import TrainConfig, fit, interrupt_on

    class Finalized:
        def __del__(self):  # Python ignores (prints) what a finalizer raises
            interrupting(signal.SIGTERM, None)
    epochs = []

    def lose_an_interrupt(record):
        epochs.append(record["epoch"])
        if len(epochs) == 1:
            Finalized()  # collected at once: the interrupt is raised in __del__ and lost
    model = pcc.compile(CIRCUIT.replace("k=K", "k=1"))
    x = np.loadtxt(files / "train.data", delimiter=",")
    with interrupt_on(signal.SIGTERM):
        history = fit(model, x[:200], x[200:300], TrainConfig(epochs=50, batch_size=50),
                      progress=False, on_epoch=lose_an_interrupt)
    assert history.interrupted and epochs == [1]


@pytest.mark.parametrize("suffix", ["csv", "json"])
def test_log_writes_every_epoch_of_every_member(files, tmp_path, capsys, suffix):
    log, out = tmp_path / f"log.{suffix}", tmp_path / "m.pt"
    assert main(["train", str(files / "c.pc"), "--train", str(files / "train.data"), "--valid",
                 str(files / "valid.data"), "--epochs", "3", "--members", "2", "--polish", "2",
                 "--log", str(log), "-o", str(out), "--quiet"]) == 0
    if suffix == "json":
        records = json.loads(log.read_text())
    else:
        with open(log) as f:
            records = [{k: v for k, v in r.items() if v != ""} for r in csv.DictReader(f)]
    _, meta = checkpoint.load(out)
    assert len(records) == len(meta["history"]) >= 6
    for got, want in zip(records, meta["history"]):
        assert int(got["member"]) == want["member"] and str(got["epoch"]) == str(want["epoch"])
        for key in ("train_ll", "valid_ll"):
            assert (key in got) == (key in want)
            if key in want:
                assert float(got[key]) == pytest.approx(want[key], rel=1e-12)
    assert [int(r["member"]) for r in records if str(r["epoch"]) == "1"] == [1, 2]


def test_the_log_is_whole_after_every_epoch(tmp_path):
    """The file is rewritten atomically after each record: a reader mid-run sees all so far."""
    from pcc.cli.train_log import EpochLog
    log = EpochLog(str(tmp_path / "log.json"))
    for epoch in range(1, 4):
        log({"member": 1, "epoch": epoch, "train_ll": -float(epoch)})
        assert [r["epoch"] for r in json.loads((tmp_path / "log.json").read_text())] == \
            list(range(1, epoch + 1))


def test_plot_draws_the_learning_curve(files, tmp_path):
    pytest.importorskip("matplotlib")
    from PIL import Image
    plot = tmp_path / "curve.png"
    assert main(["train", str(files / "c.pc"), "--train", str(files / "train.data"), "--valid",
                 str(files / "valid.data"), "--epochs", "3", "--members", "1", "--plot",
                 str(plot), "-o", str(tmp_path / "m.pt"), "--quiet"]) == 0
    image = Image.open(plot)
    assert image.format == "PNG" and image.size == (700, 450)
    pixels = np.asarray(image.convert("L"))
    assert pixels.min() < 100 < pixels.max()  # lines on a light background, not a blank image


def test_plot_without_matplotlib_is_refused_before_training(files, tmp_path, capsys,
                                                            monkeypatch):
    import importlib.util
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "matplotlib" else real(name, *a))
    out = tmp_path / "m.pt"
    assert main(["train", str(files / "c.pc"), "--train", str(files / "train.data"), "--plot",
                 str(tmp_path / "c.png"), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("argument --plot: drawing a learning curve needs matplotlib: pip install "
                        "'pcc[images]' (see `pcc train --help`)") and not out.exists()


@pytest.fixture(scope="module")
def classes_model(files, tmp_path_factory):
    out = tmp_path_factory.mktemp("classes") / "classes.pt"
    assert main(["train", str(files / "classes.pc"), "--train", str(files / "train.csv"),
                 "--valid", str(files / "valid.csv"), "--label-column", "class", "--members",
                 "1", "--epochs", "20", "-o", str(out), "--quiet"]) == 0
    return out


def test_label_column_trains_one_density_per_class(classes_model):
    """x0 copies the class 9 times in 10: unit y of the root gives x0 = y that often."""
    model, meta = checkpoint.load(classes_model)
    assert meta["label_column"] == "class"
    p_x0 = model(torch.tensor([[1.0, np.nan, np.nan, np.nan]])).exp()[0]  # [2]: P(x0=1 | y)
    assert p_x0[0] < 0.15 and p_x0[1] > 0.85


def test_eval_reports_every_unit_or_the_labelled_one(files, classes_model, capsys):
    x, y = rows(500, 1)
    model, _ = checkpoint.load(classes_model)
    ll = model(torch.from_numpy(x).float()).double()  # [500, 2]
    assert main(["eval", str(classes_model), "--data", str(files / "valid.data")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "mean log-likelihood of root unit 0", "mean log-likelihood of root unit 1"]
    for unit, line in enumerate(lines):
        assert float(line.split(": ")[1].split()[0]) == pytest.approx(ll[:, unit].mean().item(),
                                                                     abs=1e-4)
    assert main(["eval", str(classes_model), "--data", str(files / "valid.data"),
                 "--root-unit", "1"]) == 0
    assert capsys.readouterr().out.strip().splitlines() == lines[1:]
    assert main(["eval", str(classes_model), "--data", str(files / "valid.csv"),
                 "--label-column", "class"]) == 0
    given = ll.gather(1, torch.from_numpy(y).unsqueeze(1)).mean().item()
    out = capsys.readouterr().out.strip()
    assert out.startswith("mean log-likelihood given the label: ")
    assert float(out.split(": ")[1].split()[0]) == pytest.approx(given, abs=1e-4)


def test_info_shows_the_circuit_the_configuration_and_the_scores(classes_model, capsys):
    _, meta = checkpoint.load(classes_model)
    assert main(["info", str(classes_model)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{classes_model}: pcc checkpoint version 3, parameters in float32\n")
    assert "  regions     5 (4 inputs, 1 sum, 2 partitions)" in out
    assert "  K           2, 3" in out
    assert "  label column          class" in out
    assert "epochs 20, batch_size 100, step_size 0.05" in out
    assert f"  valid log-likelihood  {meta['valid_ll']:.4f}" in out
