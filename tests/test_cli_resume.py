"""`pcc train --resume` after a SIGKILL (during online epochs, during full-batch EM, between the
members of an ensemble, and one rank of a torchrun group restarted by torchrun) ends with the
parameters of the run that was not killed; a damaged newest snapshot falls back to the older one;
a snapshot of another circuit, other data or other settings is refused with one line; a full
disk keeps the previous snapshot and says so; `pcc info` shows where a snapshot stands."""
from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch

from distributed_helpers import finish, launch
from pcc import checkpoint
from pcc.cli.main import main
from test_cli_train import CIRCUIT, REPO, rows

KILLED = str(REPO / "tests" / "killed_run.py")
EVERY = ["--snapshot-every", "1e-6"]  # a snapshot at every safe point


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("resume")
    (folder / "c.pc").write_text(CIRCUIT.replace("k=K", "k=1"))
    (folder / "other.pc").write_text(CIRCUIT.replace("k=K", "k=1").replace("k=3", "k=2"))
    for name, n, seed in (("train", 500, 0), ("valid", 200, 1), ("other", 500, 2)):
        np.save(folder / f"{name}.npy", rows(n, seed)[0].astype(np.int8))
    return folder


def args(files, out, *more) -> list[str]:
    """2 members of 3 online epochs (10 steps each) and at most 3 full-batch EM iterations."""
    return [str(a) for a in ("train", files / "c.pc", "--train", files / "train.npy", "--valid",
                             files / "valid.npy", "--epochs", "3", "--batch-size", "50",
                             "--polish", "3", "--members", "2", "--quiet", "-o", out, *more)]


@pytest.fixture(scope="module")
def reference(files, tmp_path_factory):
    """The parameters and epoch records of the run without a kill."""
    out = tmp_path_factory.mktemp("reference") / "m.pt"
    assert main(args(files, out)) == 0
    return trained(out)


def trained(path) -> tuple[dict, list]:
    model, meta = checkpoint.load(path)
    return model.state_dict(), [{k: v for k, v in r.items() if k != "seconds"}
                                for r in meta["history"]]


def killed_run(when: str, what: str, argv: list[str], **popen) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, KILLED, when, what, *argv], cwd=REPO, text=True,
                          capture_output=True, timeout=120, **popen)


@pytest.fixture(scope="module")
def killed(files, tmp_path_factory):
    """The snapshots of a run killed before its 15th online step (member 1, epoch 2)."""
    out = tmp_path_factory.mktemp("killed") / "m.pt"
    done = killed_run("step", "15", args(files, out, *EVERY))
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert not out.exists()
    return out


def copy_snapshots(killed, folder) -> str:
    for name in ("m.pt.state", "m.pt.state.1"):
        shutil.copy(f"{killed}.state{name[len('m.pt.state'):]}", folder / name)
    return str(folder / "m.pt")


def assert_same_run(out, reference, rel: float = 0.0) -> None:
    """The same parameters, bit for bit, and the same epoch records (to `rel`)."""
    parameters, history = trained(out)
    expected, expected_history = reference
    assert parameters.keys() == expected.keys()
    for name, value in parameters.items():
        assert torch.equal(value, expected[name]), name
    assert [r.keys() for r in history] == [r.keys() for r in expected_history]
    for got, want in zip(history, expected_history):
        assert got == {k: pytest.approx(v, rel=rel) if isinstance(v, float) and rel else v
                       for k, v in want.items()}
    assert not os.path.exists(f"{out}.state") and not os.path.exists(f"{out}.state.1")


@pytest.mark.parametrize("when, what, where", [
    ("step", "25", "member 1 of 2, online EM epoch 3 of at most 3 (batch 4 of 10 done)"),
    ("update", "2", "full-batch EM, 1 of at most 3 iterations done"),
    ("snapshot", "next member", "member 2 of 2 next"),
])
def test_a_killed_run_resumes_to_the_parameters_of_the_run_not_killed(
        files, reference, tmp_path, capsys, when, what, where):
    out = tmp_path / "m.pt"
    done = killed_run(when, what, args(files, out, *EVERY))
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert not out.exists() and os.path.exists(f"{out}.state")
    assert main(args(files, out, *EVERY, "--resume")) == 0
    err = capsys.readouterr().err
    assert f"resuming from {out}.state (snapshot " in err and where in err, err
    assert_same_run(out, reference)


def test_a_damaged_snapshot_falls_back_to_the_older_one(files, reference, killed, tmp_path,
                                                         capsys):
    out = copy_snapshots(killed, tmp_path)
    with open(f"{out}.state", "r+b") as f:
        f.seek(os.path.getsize(f"{out}.state") // 2)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0xFF]))
    assert main(args(files, out, "--resume")) == 0
    err = capsys.readouterr().err.splitlines()
    assert err[0] == (f"{out}.state: damaged (its checksum does not match its contents): "
                      f"resuming from the older snapshot {out}.state.1")
    assert err[1].startswith(f"resuming from {out}.state.1 (snapshot ")
    assert_same_run(out, reference)


@pytest.mark.parametrize("change, difference", [
    (["--epochs", "4"], "--epochs 4 (the snapshot's run had --epochs 3)"),
    (["--seed", "1"], "--seed 1 (the snapshot's run had --seed 0)"),
    (["--train", "other.npy"], "other training data (sha256 "),
    (["c.pc", "other.pc"], "other circuit (sha256 "),
])
def test_a_snapshot_of_another_run_is_refused_with_one_line(files, killed, tmp_path, capsys,
                                                            change, difference):
    out = copy_snapshots(killed, tmp_path)
    before = open(f"{out}.state", "rb").read()
    argv = args(files, out, "--resume")
    if change[0].startswith("--"):
        argv += change if change[0] != "--train" else ["--train", str(files / change[1])]
    else:
        argv[1] = str(files / change[1])
    assert main(argv) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"{out}.state: cannot resume with {difference}")
    assert err[0].endswith("give the same circuit, data and settings, or leave out --resume to "
                           "start a new run")
    assert open(f"{out}.state", "rb").read() == before


def test_a_full_disk_keeps_the_previous_snapshot_and_says_so(files, reference, killed,
                                                             tmp_path, capsys):
    out = copy_snapshots(killed, tmp_path)
    before = {name: (tmp_path / name).read_bytes() for name in ("m.pt.state", "m.pt.state.1")}
    limit = len(before["m.pt.state"]) // 2  # every snapshot write runs out of room

    def small_disk():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    done = killed_run("step", "10", args(files, out, *EVERY, "--resume"), preexec_fn=small_disk)
    assert done.returncode == -signal.SIGKILL, done.stderr
    said = [line for line in done.stderr.splitlines() if "snapshot" in line]
    assert said[1:] == [f"could not write a snapshot: cannot write {out}.state: File too large; "
                        "the previous one (member 1 of 2, online EM epoch 2 of at most 3 (batch 4 "
                        "of 10 done)) is intact; training goes on"]  # said once
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.name != "m.pt"} == before
    assert main(args(files, out, *EVERY, "--resume")) == 0  # room again
    assert_same_run(out, reference)


def test_info_shows_where_a_snapshot_stands(killed, capsys):
    assert main(["info", f"{killed}.state"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"{killed}.state: pcc training snapshot ")
    assert lines[1:4] == ["  stage          member 1 of 2, online EM epoch 2 of at most 3 (batch 4 "
                          "of 10 done)", lines[2], lines[3]]
    assert lines[2].startswith("  best score     -") and lines[2].endswith("(epoch 1)")
    assert lines[3].startswith("  training time  ") and lines[3].endswith(" s")
    assert "  made by        ranks 1, device cpu" in lines
    assert any(line.startswith("  settings       --epochs 3 --batch-size 50 ") for line in lines)
    assert lines[-1] == f"  older          {killed}.state.1"


def test_a_new_run_says_it_replaces_an_unfinished_runs_snapshot(files, reference, killed,
                                                                tmp_path, capsys):
    out = copy_snapshots(killed, tmp_path)
    assert main(args(files, out)) == 0
    err = capsys.readouterr().err.splitlines()
    assert err[0] == (f"{out}.state holds a snapshot of a run that did not finish (member 1 of 2, "
                      "online EM epoch 2 of at most 3 (batch 4 of 10 done)): starting a new run, "
                      "whose snapshots replace it (--resume would go on from it)")
    assert_same_run(out, reference)


def test_torchrun_restarts_a_killed_rank_and_the_group_resumes(files, tmp_path):
    """`torchrun --max-restarts 3` restarts the group after rank 1 dies (SIGKILL before its 25th
    step); the restarted ranks resume from the snapshot and end at the parameters of 2 ranks
    that were not killed."""
    argv = args(files, tmp_path / "two.pt", "--members", "1")
    results = finish(launch(argv))
    assert [code for code, _, _ in results] == [0, 0], results[0][2]
    out = tmp_path / "m.pt"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc-per-node=2", "--max-restarts=3", KILLED, "step", "25",
               *args(files, out, "--members", "1", *EVERY, "--resume")]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=240,
                          env=dict(os.environ, OMP_NUM_THREADS="1",  # docs/distributed.md:
                                   TORCH_DISABLE_SHARE_RDZV_TCP_STORE="1"))  # fresh store
    assert done.returncode == 0, done.stderr[-3000:]
    assert "rank 0: lost contact with the other ranks" in done.stderr
    assert f"resuming from {out}.state (snapshot " in done.stderr
    # the training log-likelihood of the epoch resumed in: the ranks' sums added in another order
    assert_same_run(out, trained(tmp_path / "two.pt"), rel=1e-12)
