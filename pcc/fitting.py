"""`pcc.fit`: train a circuit on arrays in one call, with the recipe `pcc train` uses.

    circuit = pcc.structures.hclt(train)              # K and trees left open
    model = pcc.fit(circuit, train, valid, budget=300)
    model(x)                                          # log p(x), [B]

`pcc.fit` compiles the circuit (a Circuit, a .pc path or text; or continues a compiled one),
holds out a seeded share of the training rows for validation when `valid` is None (and says
so), chooses what the user left open on validation within `budget` seconds (`pcc.search`),
trains by the circuit's recipe (`pcc.train.recipe_for`) with a progress bar, and returns the
trained module. Its attribute `capacity` holds the search's choice and candidates (None when
nothing was chosen).
"""
from __future__ import annotations

import sys

import torch


def fit(circuit, train, valid=None, *, budget: float | None = None, seed: int = 0,
        progress: bool = True, snapshots=None, **settings):
    """Train `circuit` on `train` (an array or tensor [N, V], NaN = missing; `pcc.rows.Labeled`
    rows for a class-conditional root; or `pcc.rows.Rows`) with early stopping and choices on
    `valid` (None: HELD_OUT of the training rows, drawn with `seed`), within `budget` seconds
    (default `pcc.train.DEFAULT_BUDGET`). `settings`: any `pcc.train.TrainConfig` field (epochs,
    pseudocount, soften, members, ...), fixed as given. A compiled circuit is trained further
    from its parameters (one member, init "keep", unless `settings` say otherwise). Returns
    the trained module (for members > 1, the ensemble)."""
    from .compiler import compile as compile_circuit
    from .rows import HELD_OUT, as_rows, hold_out
    from .members import fit_members
    from .runtime.module import CompiledCircuit
    from .train import TrainConfig
    if isinstance(circuit, CompiledCircuit):
        model = circuit
        settings = {"members": 1, "init": "keep", **settings}
    else:
        model = compile_circuit(circuit, seed=seed)
    rows = as_rows(_tensor(train))
    if valid is None:
        rows, valid = hold_out(rows, HELD_OUT, seed)
        if progress:
            print(f"no validation rows given: validating on {len(valid)} of the "
                  f"{len(rows) + len(valid)} training rows ({HELD_OUT:.0%}, drawn with seed "
                  f"{seed}), training on the rest", file=sys.stderr)
    else:
        valid = as_rows(_tensor(valid))
    config = TrainConfig(budget=budget, seed=seed, **settings)
    trained, histories = fit_members(model, rows, valid, config, progress=progress,
                                     snapshots=snapshots)
    trained.capacity = histories[0].capacity if histories else None
    return trained


def _tensor(data):
    """Arrays and lists as tensors (Labeled and Rows as they are)."""
    from .rows import Labeled, Rows
    if isinstance(data, (Labeled, Rows, torch.Tensor)):
        return data
    import numpy as np
    return torch.as_tensor(np.asarray(data))
