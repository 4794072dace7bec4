"""Ensembles (`pcc.ensemble`, `pcc train --members`): one circuit whose density is the mean of
its members' densities, exactly; valid, normalized, printable; trained end to end."""
import dataclasses
import itertools
import math

import numpy as np
import pytest
import torch

import pcc
from pcc.cli.main import main
from pcc.ensemble import ensemble_circuit
from pcc.errors import StructureError
from pcc.frontend import parse, to_text
from pcc.members import fit_members
from pcc.train import TrainConfig
from random_circuits import random_circuit


def with_params(circuit, seed):
    """The circuit with every parameter inline, drawn at random with `seed`."""
    model = pcc.compile(circuit, backend="torch", seed=seed, dtype=torch.float64)
    return dataclasses.replace(circuit, params=model.ir_params())


def binary_states(n):
    return torch.tensor(list(itertools.product((0, 1), repeat=n)), dtype=torch.float64)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("root_k", [1, 3])
def test_ensemble_density_is_the_mean_of_the_members(seed, root_k):
    members = [with_params(random_circuit(seed * 10 + i, num_vars=4, root_k=root_k), seed + i)
               for i in range(3)]
    x = binary_states(4)
    each = torch.stack([pcc.compile(c, backend="torch", dtype=torch.float64)(x)
                        for c in members])
    merged = pcc.compile(ensemble_circuit(members), backend="torch", dtype=torch.float64)(x)
    assert merged.shape == each.shape[1:]
    assert torch.allclose(merged, torch.logsumexp(each, 0) - math.log(3), atol=1e-12)
    assert abs(torch.logsumexp(merged.reshape(len(x), -1), 0)).max() < 1e-10  # normalized


def test_ensemble_prints_and_parses_back():
    members = [with_params(random_circuit(1, num_vars=3), s) for s in range(2)]
    circuit = ensemble_circuit(members)
    assert parse(to_text(circuit)) == circuit
    assert len(circuit.region(circuit.root).partitions) == 2


def test_root_name_never_collides():
    base = random_circuit(0, num_vars=3)
    member = dataclasses.replace(base, regions=tuple(
        dataclasses.replace(r, name="ensemble") if r.name == base.root else r
        for r in base.regions), root="ensemble")
    circuit = ensemble_circuit([member, member])
    assert circuit.root == "ensemble" and "m0_ensemble" in {r.name for r in circuit.regions}
    pcc.compile(circuit)  # valid


def test_members_must_agree():
    with pytest.raises(StructureError, match="member 1"):
        ensemble_circuit([random_circuit(0, num_vars=3), random_circuit(0, num_vars=4)])
    with pytest.raises(StructureError):
        ensemble_circuit([])


def toy_data(n, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.random((n, 1)) < 0.5
    return (rng.random((n, 4)) < np.where(z, 0.85, 0.15)).astype(np.float32)


def test_fit_members_returns_the_mixture_of_trained_copies():
    circuit = random_circuit(3, num_vars=4)
    config = TrainConfig(epochs=2, batch_size=50, members=3)
    model, histories = fit_members(pcc.compile(circuit, backend="torch"), toy_data(300),
                                   toy_data(100, 1), config, progress=False)
    assert len(histories) == 3 and all(h.best_epoch >= 1 for h in histories)
    root = model.circuit.region(model.circuit.root)
    assert len(root.partitions) == 3
    with torch.no_grad():
        total = torch.logsumexp(model(binary_states(4).float()), 0)
    assert abs(float(total)) < 1e-5
    single, [history] = fit_members(pcc.compile(circuit, backend="torch"), toy_data(300),
                                    config=dataclasses.replace(config, members=1),
                                    progress=False)
    assert single.circuit == circuit


def test_cli_train_members(tmp_path, capsys):
    pc = tmp_path / "c.pc"
    pc.write_text(to_text(random_circuit(5, num_vars=4)))
    data = {}
    for name, (n, seed) in {"train": (200, 0), "valid": (60, 1)}.items():
        data[name] = tmp_path / f"{name}.data"
        data[name].write_text("\n".join(",".join(str(int(v)) for v in row)
                                        for row in toy_data(n, seed)) + "\n")
    out = tmp_path / "m.pt"
    assert main(["train", str(pc), "--train", str(data["train"]), "--valid", str(data["valid"]),
                 "--epochs", "2", "--members", "2", "-o", str(out), "--quiet"]) == 0
    assert "best epoch" in capsys.readouterr().out
    model, _ = pcc.checkpoint.load(str(out))
    assert len(model.circuit.region(model.circuit.root).partitions) == 2
    assert main(["eval", str(out), "--data", str(data["valid"])]) == 0


def test_continuing_a_checkpoint_trains_one_member(tmp_path):
    pc = tmp_path / "c.pc"
    pc.write_text(to_text(random_circuit(5, num_vars=4)))
    train = tmp_path / "train.data"
    train.write_text("\n".join(",".join(str(int(v)) for v in row) for row in toy_data(100)))
    first, second = tmp_path / "a.pt", tmp_path / "b.pt"
    args = ["--train", str(train), "--epochs", "1", "--quiet"]
    assert main(["train", str(pc), *args, "--members", "2", "-o", str(first)]) == 0
    assert main(["train", str(first), *args, "-o", str(second)]) == 0
    a, b = (pcc.checkpoint.load(str(p))[0].circuit for p in (first, second))
    assert len(b.regions) == len(a.regions)  # the ensemble is continued, not nested
