"""Checkpoints load back bit-exact, carry the circuit, never need pickle, and are written
atomically (a failed write leaves the old file intact)."""
import dataclasses

import pytest
import torch

import pcc
from pcc import checkpoint
from pcc.errors import CheckpointError
from random_circuits import random_circuit


def test_round_trip_is_bit_exact(tmp_path):
    model = pcc.compile(random_circuit(1, num_vars=4, families=("bernoulli", "normal")),
                        backend="torch", seed=4)
    path = tmp_path / "m.pt"
    checkpoint.save(model, path, {"note": "hi"})
    loaded, meta = checkpoint.load(path)
    assert meta == {"note": "hi"}
    assert loaded.circuit == dataclasses.replace(model.circuit, params=())
    for (k1, v1), (k2, v2) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert k1 == k2 and v1.dtype == v2.dtype and torch.equal(v1, v2)
    payload = torch.load(path, weights_only=True)  # no pickle code execution needed
    assert payload["format"] == "pcc-checkpoint" and "pc 1" in payload["circuit"]


def test_float64_round_trip(tmp_path):
    model = pcc.compile(random_circuit(2, num_vars=3), backend="torch").double()
    checkpoint.save(model, tmp_path / "m.pt")
    loaded, _ = checkpoint.load(tmp_path / "m.pt")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(),
                                                 loaded.state_dict().values()))


def test_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "m.pt"
    path.write_bytes(b"old")

    def boom(f):
        f.write(b"partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        checkpoint.write_atomically(path, boom)
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]  # no temp file left behind


@pytest.mark.parametrize("content", [b"", b"garbage", b"\x80\x04K\x01."])
def test_not_a_checkpoint(tmp_path, content):
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="not a pcc checkpoint"):
        checkpoint.load(path)


def test_missing_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        checkpoint.load(tmp_path / "nope.pt")
