"""Resuming training from snapshots (`pcc.snapshot`, `pcc.progress`): from any snapshot a run
writes, the resumed run ends at the parameters of the run without a stop (online epochs, the
best-epoch copy, full-batch EM, the plain Chow-Liu tree floor, between ensemble members,
class-conditional rows); EM's statistics round-trip; the snapshot files: two generations, a
damaged or missing newest one, a mismatched fingerprint, a file that cannot be written."""
from __future__ import annotations

import os
import resource

import numpy as np
import pytest
import torch

from pcc import compile as compile_circuit
from pcc.em import EM
from pcc.errors import CheckpointError
from pcc.rows import Labeled
from pcc.snapshot import (OLDER, SnapshotMismatch, Snapshots, describe, mismatch, newest, read,
                          write)
from pcc.structures import hidden_chow_liu_tree
from pcc.members import fit_members
from pcc.train import TrainConfig, fit
from test_cli_train import CIRCUIT, rows


class Keeping(Snapshots):
    """Snapshots written at every safe point, each also kept in memory (as read back)."""

    def __init__(self, path):
        super().__init__(path, every=1e-9, say=lambda line: None)
        self.kept = []

    def save(self, where, state):
        super().save(where, state)
        self.kept.append(read(self.path))


def resumed_from(snapshot, path) -> Snapshots:
    snapshots = Snapshots(path, every=0, say=lambda line: None)
    snapshots.resumed = snapshot
    return snapshots


def same_parameters(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def random_rat_case():
    x, y = rows(240, 0)
    v, w = rows(80, 1)
    return CIRCUIT.replace("k=K", "k=1"), x.astype(np.float32), v.astype(np.float32), \
        TrainConfig(epochs=3, batch_size=50, step_size=0.1, patience=2, polish=3, members=2)


def labeled_case():
    x, y = rows(240, 0)
    v, w = rows(80, 1)
    return CIRCUIT.replace("k=K", "k=2"), Labeled(x.astype(np.float32), y), Labeled(v.astype(np.float32), w), \
        TrainConfig(epochs=2, batch_size=60, polish=2, members=1, init="keep")


def latent_tree_case():
    x, _ = rows(240, 0)
    v, _ = rows(80, 1)
    circuit = hidden_chow_liu_tree(x, k=2)
    return circuit, x.astype(np.float32), v.astype(np.float32), \
        TrainConfig(epochs=2, batch_size=80, polish=4, members=1, pseudocount=0.1, entropy=0.0,
                    soften=0.0)  # init=data, then the floor; nothing left to choose


@pytest.mark.parametrize("case", [random_rat_case, labeled_case, latent_tree_case])
def test_resuming_from_any_snapshot_ends_at_the_uninterrupted_parameters(case, tmp_path):
    circuit, train, valid, config = case()

    def run(snapshots):
        model = compile_circuit(circuit, seed=3)
        records = []
        merged, _ = fit_members(model, train, valid, config, progress=False,
                                on_epoch=records.append, snapshots=snapshots)
        return merged.state_dict(), records

    alone, records = run(None)
    keeping = Keeping(tmp_path / "m.pt.state")
    written, _ = run(keeping)
    assert same_parameters(written, alone)  # writing snapshots changes nothing
    stages = {s.where["stage"] for s in keeping.kept}
    assert {"online", "polish", "floor"} <= stages
    if config.members > 1:
        assert "next member" in stages
    for snapshot in keeping.kept:
        resumed, replayed = run(resumed_from(snapshot, tmp_path / "other.state"))
        assert same_parameters(resumed, alone), describe(snapshot.where)
        assert [{k: v for k, v in r.items() if k != "seconds"} for r in replayed] == \
            [{k: v for k, v in r.items() if k != "seconds"} for r in records]


def test_a_capacity_search_resumes_to_the_uninterrupted_parameters(tmp_path, monkeypatch):
    """Snapshots inside the search (a candidate's online epochs and full-batch EM, between
    candidates) and after the choice resume to the parameters and records of the run without a
    stop."""
    import math

    import pcc.search
    from pcc.structures import hclt
    monkeypatch.setattr(pcc.search, "K_CHOICES", (2, 3))
    monkeypatch.setattr(pcc.search, "SCREEN_POLISH", 2)
    x, _ = rows(240, 0)
    v, _ = rows(80, 1)
    circuit = hclt(x.astype(np.float32))
    config = TrainConfig(epochs=2, batch_size=80, polish=4, budget=math.inf)

    def run(snapshots):
        records = []
        merged, histories = fit_members(compile_circuit(circuit, seed=3), x.astype(np.float32),
                                        v.astype(np.float32), config, progress=False,
                                        on_epoch=records.append, snapshots=snapshots)
        return merged.state_dict(), records, histories[0].capacity

    alone, records, search = run(None)
    keeping = Keeping(tmp_path / "m.pt.state")
    written, _, _ = run(keeping)
    assert same_parameters(written, alone)
    wheres = [describe(s.where) for s in keeping.kept]
    assert any("candidate 3" in w and "online EM" in w for w in wheres)
    assert any("candidate 3" in w and "full-batch" in w for w in wheres)
    assert any(w.endswith(" next") for w in wheres)
    assert any("candidate" not in w for w in wheres)  # after the choice
    chosen = [i for i, w in enumerate(wheres) if "candidate" not in w]
    picks = sorted(set(keeping.kept.index(s) for s in keeping.kept[::max(1, len(keeping.kept) // 6)])
                   | {chosen[0], len(keeping.kept) - 1})
    strip = lambda rs: [{k: r for k, r in rec.items() if k != "seconds"} for rec in rs]  # noqa: E731
    for i in picks:
        resumed, replayed, again = run(resumed_from(keeping.kept[i], tmp_path / "other.state"))
        assert same_parameters(resumed, alone), wheres[i]
        assert strip(replayed) == strip(records)
        assert {k: again[k] for k in ("k", "trees", "valid")} == \
            {k: search[k] for k in ("k", "trees", "valid")}


def test_fit_alone_resumes_too(tmp_path):
    circuit, train, valid, config = random_rat_case()
    alone = compile_circuit(circuit, seed=1)
    fit(alone, train, valid, config, progress=False)
    keeping = Keeping(tmp_path / "m.pt.state")
    fit(compile_circuit(circuit, seed=1), train, valid, config, progress=False,
        snapshots=keeping)
    middle = keeping.kept[len(keeping.kept) // 2]
    model = compile_circuit(circuit, seed=1)
    history = fit(model, train, valid, config, progress=False,
                  snapshots=resumed_from(middle, tmp_path / "other.state"))
    assert same_parameters(model.state_dict(), alone.state_dict())
    assert history.best_epoch >= 1


def test_em_state_dict_carries_the_running_statistics():
    """Two EMs on equal parameters step alike only when the statistics are loaded too."""
    x = torch.from_numpy(rows(200, 0)[0]).float()
    circuit = CIRCUIT.replace("k=K", "k=1")
    a = compile_circuit(circuit, seed=0)
    em_a = EM(a, step_size=0.3)
    for batch in x[:120].split(40):
        em_a.step(batch)
    em_a.accumulate(x[120:140])  # statistics pending too
    state = {k: (list(v) if isinstance(v, list) else v) for k, v in em_a.state_dict().items()}
    saved = torch.load(_saved(state), weights_only=True)
    for loaded in (True, False):
        b = compile_circuit(circuit, seed=5)
        em_b = EM(b, step_size=0.3)
        b.load_state_dict(a.state_dict())
        if loaded:
            em_b.load_state_dict(saved)
        c = compile_circuit(circuit, seed=0)
        c.load_state_dict(a.state_dict())
        em_c = EM(c, step_size=0.3)
        em_c.load_state_dict(saved)
        for em in (em_b, em_c):
            em.update()
            for batch in x[140:].split(30):
                em.step(batch)
        assert same_parameters(b.state_dict(), c.state_dict()) == loaded


def _saved(state):
    import io
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return buffer


def test_em_load_state_dict_refuses_another_circuit():
    small = EM(compile_circuit(CIRCUIT.replace("k=K", "k=1"), seed=0))
    state = small.state_dict()
    state["running_sum"] = state["running_sum"] + [None]
    with pytest.raises(ValueError, match="'running_sum' are for 2 pools or groups, this model has 1"):
        small.load_state_dict(state)


WHERE = {"stage": "online", "member": 1, "members": 1, "epoch": 1, "epochs": 5, "batch": 3,
         "batches": 9, "best": -2.5, "best_epoch": 1, "seconds": 1.5}


def test_two_generations_and_fallbacks(tmp_path):
    path = str(tmp_path / "m.pt.state")
    assert newest(path) == (None, [])
    write(path, 1, {"--epochs": 5}, WHERE, {"x": torch.arange(3)})
    write(path, 2, {"--epochs": 5}, {**WHERE, "batch": 4}, {"x": torch.arange(4)})
    assert read(path).serial == 2 and read(path + OLDER).serial == 1
    assert torch.equal(read(path).state["x"], torch.arange(4))
    data = bytearray(open(path, "rb").read())
    data[len(data) // 2] ^= 0xFF
    open(path, "wb").write(bytes(data))
    found, notes = newest(path)
    assert found.serial == 1 and notes == [
        f"{path}: damaged (its checksum does not match its contents): resuming from the older "
        f"snapshot {path}{OLDER}"]
    os.unlink(path)
    found, notes = newest(path)
    assert found.serial == 1 and notes[0].startswith(f"{path}: missing (a write was cut short)")
    open(path + OLDER, "wb").write(b"PCCSNAP\x01" + bytes(40))
    with pytest.raises(CheckpointError, match="damaged .* no snapshot to resume from"):
        newest(path)


def test_a_snapshot_that_is_not_one_is_refused(tmp_path):
    path = tmp_path / "m.pt.state"
    path.write_bytes(b"hello")
    with pytest.raises(CheckpointError, match="not a pcc snapshot"):
        read(str(path))


def test_mismatch_names_the_first_difference():
    ours = {"circuit": "a" * 64, "training data": "b" * 64, "validation data": None,
            "--epochs": 5, "--label-column": None}
    assert mismatch(ours, dict(ours)) is None
    assert mismatch(ours, {**ours, "--epochs": 6}) == "--epochs 6 (the snapshot's run had " \
                                                     "--epochs 5)"
    assert mismatch(ours, {**ours, "training data": "c" * 64}) == \
        "other training data (sha256 cccccccccccc..., the snapshot's bbbbbbbbbbbb...)"
    assert mismatch(ours, {**ours, "validation data": "d" * 64}) == \
        "validation data (the snapshot's run had none)"
    assert mismatch({**ours, "validation data": "d" * 64}, ours) == \
        "no validation data (the snapshot's run had some)"


def test_resume_refuses_a_mismatched_snapshot_and_says_where_it_resumes(tmp_path):
    path = str(tmp_path / "m.pt.state")
    write(path, 7, {"--epochs": 5}, WHERE, {})
    said = []
    with pytest.raises(SnapshotMismatch, match=r"m.pt.state: cannot resume with --epochs 6 "):
        Snapshots(path, fingerprint={"--epochs": 6}, say=said.append).resume()
    snapshots = Snapshots(path, fingerprint={"--epochs": 5}, made={"ranks": 2},
                          say=said.append)
    assert snapshots.resume().serial == 7 and snapshots.serial == 7
    assert said == [f"resuming from {path} (snapshot 7: online EM epoch 2 of at most 5 (batch 3 "
                    "of 9 done); 1.5 s of training before)"]


def test_a_new_run_replaces_an_earlier_runs_snapshots(tmp_path):
    path = str(tmp_path / "m.pt.state")
    write(path, 1, {}, WHERE, {})
    write(path, 2, {}, WHERE, {})
    snapshots = Snapshots(path, every=1e-9, say=lambda line: None)
    snapshots.save({**WHERE, "epoch": 0}, {})
    assert read(path).serial == 1 and not os.path.exists(path + OLDER)
    snapshots.save(WHERE, {})
    assert read(path).serial == 2 and read(path + OLDER).serial == 1


def test_a_snapshot_that_cannot_be_written_leaves_the_previous_one_and_says_so_once(tmp_path):
    path = str(tmp_path / "m.pt.state")
    said = []
    snapshots = Snapshots(path, every=1e-9, say=said.append)
    snapshots.save(WHERE, {"x": torch.zeros(10)})
    before = open(path, "rb").read()
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (len(before) // 2, hard))
    try:
        for _ in range(3):
            snapshots.save({**WHERE, "batch": 4}, {"x": torch.zeros(1000)})
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert open(path, "rb").read() == before and sorted(os.listdir(tmp_path)) == ["m.pt.state"]
    assert said == [f"could not write a snapshot: cannot write {path}: File too large; the "
                    "previous one (online EM epoch 2 of at most 5 (batch 3 of 9 done)) is intact; "
                    "training goes on"]
    snapshots.save({**WHERE, "batch": 5}, {"x": torch.zeros(1000)})
    assert said[-1] == f"wrote a snapshot to {path} again" and read(path).where["batch"] == 5
