"""Checkpoints load back bit-exact, carry the circuit, never need pickle, and are written
atomically (a failed write leaves the old file intact)."""
import dataclasses
import os
import re

import numpy as np
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


def saved(tmp_path, **change):
    """A checkpoint of a small model, its payload changed by `change(payload)` if given."""
    model = pcc.compile(random_circuit(3, num_vars=3), backend="torch", seed=1)
    path = tmp_path / "m.pt"
    checkpoint.save(model, path)
    if change:
        payload = torch.load(path, weights_only=True)
        change["edit"](payload)
        torch.save(payload, path)
    return model, path


def test_pcc_load_gives_the_model_and_compile_points_to_it(tmp_path):
    model, path = saved(tmp_path)
    loaded = pcc.load(path)
    x = torch.tensor([[0.0, 1.0, float("nan")]])
    assert torch.equal(loaded(x), model(x))
    with pytest.raises(pcc.PcError, match=r"is a checkpoint, not a circuit: load it with "
                                          r"pcc.load\("):
        pcc.compile(str(path))
    renamed = tmp_path / "model.bin"  # recognized by its bytes too, not only its name
    renamed.write_bytes(path.read_bytes())
    with pytest.raises(pcc.PcError, match="is a checkpoint"):
        pcc.compile(str(renamed))


def test_every_tensor_has_a_checksum_that_is_checked(tmp_path):
    _, path = saved(tmp_path)
    payload = torch.load(path, weights_only=True)
    assert set(payload["checksums"]) == set(payload["state_dict"]) and payload["version"] == 3
    name = next(iter(payload["state_dict"]))
    payload["state_dict"][name] = payload["state_dict"][name].clone()
    payload["state_dict"][name].view(-1)[0] += 1e-6  # one value, slightly
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=f"damaged: parameter '{name}' does not match"):
        checkpoint.load(path)


def test_saving_refuses_nan_parameters(tmp_path):
    model = pcc.compile(random_circuit(3, num_vars=3), backend="torch")
    with torch.no_grad():
        model.sum_logits[0].fill_(float("nan"))
    with pytest.raises(CheckpointError, match=r"cannot save: parameter 'sum_logits.0' has NaN"):
        checkpoint.save(model, tmp_path / "m.pt")
    assert not (tmp_path / "m.pt").exists()


def test_infinite_logits_are_probabilities_0_and_1_but_infinite_means_are_refused(tmp_path):
    circuit = "pc 1\nvars 2\nleaf bernoulli\ninput a {x0, x1} k=1\nroot a\nparam a.p = [[1.0, 0.0]]\n"
    model = pcc.compile(circuit, backend="torch")
    checkpoint.save(model, tmp_path / "m.pt")  # logits +inf and -inf: fine
    assert checkpoint.load(tmp_path / "m.pt")[0](torch.tensor([[1.0, 0.0]])).item() == 0.0
    gmm = pcc.compile("ir_examples/gmm.pc")
    with torch.no_grad():
        gmm.leaf_params[0].mean.fill_(float("inf"))
    with pytest.raises(CheckpointError, match="parameter 'leaf_params.0.mean' has infinite"):
        checkpoint.save(gmm, tmp_path / "g.pt")


@pytest.mark.parametrize("edit, message", [
    (lambda p: p.update(version=1), "checkpoint version 1 is not supported"),
    (lambda p: p.pop("meta"), "'meta' is missing"),
    (lambda p: p.update(circuit=b"pc 1"), "'circuit' is a bytes, expected a str"),
    (lambda p: p.update(circuit="pc 1\nvars 2\nroot nowhere\n"), "the stored circuit is invalid"),
    (lambda p: p["state_dict"].update(extra=torch.zeros(1)) or
     p["checksums"].update(extra=checkpoint.checksum(torch.zeros(1))),
     r"the parameters do not fit the circuit \(missing: none; unexpected: extra\)"),
    (lambda p: [p["state_dict"].update({k: torch.full_like(v, -float("inf"))})
                or p["checksums"].update({k: checkpoint.checksum(p["state_dict"][k])})
                for k, v in list(p["state_dict"].items()) if k.startswith("sum_logits")],
     r"do not define a distribution"),
])
def test_crafted_checkpoints_are_one_clear_error(tmp_path, edit, message):
    _, path = saved(tmp_path, edit=edit)
    with pytest.raises(CheckpointError) as info:
        checkpoint.load(path)
    assert str(info.value).startswith(f"{path}: ") and "\n" not in str(info.value)
    assert re.search(message, str(info.value))


def test_a_version_2_checkpoint_loads_into_the_pooled_layout():
    """tests/data/hclt_v2.pt was saved by pcc 4ca9c35 (one weight tensor per op, element-wise
    products grouped by arity): a 2-tree HCLT over 12 variables, K = 3, after 3 EM steps. Its
    log-likelihoods then, on the rows below, were printed by that version."""
    path = os.path.join(os.path.dirname(__file__), "data", "hclt_v2.pt")
    rng = np.random.default_rng(7)
    data = (rng.random((200, 12)) < rng.random(12)).astype(int)
    data[:, 5] = data[:, 4] ^ (rng.random(200) < 0.1)
    x = torch.from_numpy(data[:5]).float()
    x[0, 3] = float("nan")
    model = pcc.load(path)
    with torch.no_grad():
        ll = model(x)
    then = [-4.624248504638672, -8.671375274658203, -6.421778678894043, -6.158636569976807,
            -4.012171745300293]
    assert torch.allclose(ll, torch.tensor(then), rtol=1e-6)
    assert len(model.sum_logits) < 6, "the six per-op tensors of version 2 are pooled"
