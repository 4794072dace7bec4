"""The whole of a training run: a latent tree's open settings chosen on validation first
(`pcc.search`), then `config.members` copies of the circuit trained by `pcc.train` and mixed
into one ensemble circuit (`pcc.ensemble`); the path of `pcc train` and `pcc.fit`."""
from __future__ import annotations

import sys
from dataclasses import replace
from typing import TYPE_CHECKING

from tqdm.auto import tqdm

from .compiler import compile as compile_circuit
from .ensemble import ensemble_circuit
from .progress import History, Run
from .rows import as_rows
from .runtime.module import CompiledCircuit
from .search import Search, search_space, summary
from .train import OnEpoch, TrainConfig, _batches, _fit

if TYPE_CHECKING:
    from .snapshot import Snapshots


def fit_members(model: CompiledCircuit, train, valid=None, config: TrainConfig = TrainConfig(),
                progress: bool = True, on_epoch: OnEpoch | None = None,
                snapshots: "Snapshots | None" = None
                ) -> tuple[CompiledCircuit, list[History]]:
    """`config.members` copies of `model`'s circuit, each trained by `fit`, mixed uniformly into
    one model (`pcc.ensemble`). Member 0 is `model` itself; member i is initialized and shuffled
    with seed `config.seed + i`. With one member: `model`, trained. `on_epoch` gets each record
    with its "member" (from 1). After an interrupt, the members trained so far (the interrupted
    one at its best epoch, if it finished one) are mixed, and its History says `interrupted`.

    `snapshots` (`pcc.snapshot.Snapshots`): the run is written at its safe points when a
    snapshot is due (`pcc.progress`); after `snapshots.resume()` found one, the run goes on from
    it and ends with the parameters of the run it was taken from, and `on_epoch` first gets the
    records of the epochs before it.

    A latent tree trained from the data with validation rows first has its open settings
    chosen on validation (`pcc.search`: its capacity, if the circuit leaves it open, and the
    pseudocount and leaf smoothing unless `config` gives them), within `config.budget`
    seconds; the model returned is then the chosen circuit's, and the first History's
    `capacity` records the choice."""
    data = as_rows(train)
    space = search_space(model.circuit, config) if valid is not None else None
    config = config.resolved(model.circuit, model.plan, len(data))
    if config.members < 1:
        raise ValueError(f"members must be >= 1, got {config.members}")
    device = next(model.parameters()).device
    run = Run(config, _batches(data, config), snapshots, data.group)
    for number, record in run.records() if on_epoch is not None else ():
        on_epoch({"member": number, **record})
    if space is not None:
        search = Search(space, model.circuit, model.backend, model._param_dtype(), device)
        report = None if on_epoch is None else (lambda record: on_epoch({"member": 1, **record}))
        model, config, interrupted = search.run(data, valid, config, run, progress, report)
        if interrupted is not None:
            return model, [interrupted]
    members, histories = [], []
    for i in range(config.members):
        member = model if i == 0 else CompiledCircuit(
            model.circuit, model.plan, backend=model.backend, seed=config.seed + i,
            dtype=model._param_dtype()).to(device)
        if i < len(run.done):  # trained before the snapshot
            member.load_state_dict(run.done[i])
            members.append(member)
            histories.append(run.histories[i])
            continue
        if progress and config.members > 1:
            tqdm.write(f"member {i + 1}/{config.members}", file=sys.stderr)
        report = None if on_epoch is None else (
            lambda record, number=i + 1: on_epoch({"member": number, **record}))
        history = _fit(member, data, valid, replace(config, seed=config.seed + i), progress,
                       report, run)
        if i == 0 and run.search is not None:
            history.capacity = summary(run.search)
        histories.append(history)
        if not history.interrupted or history.best_epoch > 0:
            members.append(member)
        if history.interrupted:
            break
        run.end_member(member)
        if i + 1 < config.members:
            run.safe_point()
    if len(members) <= 1:
        return (members[0] if members else model), histories
    circuit = ensemble_circuit([replace(m.circuit, params=m.ir_params()) for m in members])
    merged = compile_circuit(circuit, backend=model.backend, dtype=model._param_dtype())
    merged.circuit = replace(circuit, params=())  # the values live in the parameters now
    return merged.to(device), histories
