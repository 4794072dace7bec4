"""Training by EM on data sets, with a progress bar and early stopping; evaluation.

`fit` runs online EM over shuffled mini-batches for some epochs (on CUDA each full batch's step
replays a CUDA graph, `TrainConfig.cuda_graph`), tracks the validation mean
log-likelihood after each epoch, stops after `patience` epochs without improvement, and goes
back to the best epoch. Then it polishes: full-batch EM iterations (which remove the noise
online EM's last mini-batches leave in the parameters) as long as the validation likelihood
improves, at most `polish` of them. `fit_members` trains `members` copies so and mixes them
into one ensemble circuit (`pcc.ensemble`). `evaluate` gives a mean log-likelihood with its
standard error.
"""
from __future__ import annotations

import copy
import math
import sys
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from tqdm.auto import tqdm

from .compiler import compile as compile_circuit
from .em import EM
from .ensemble import ensemble_circuit
from .runtime.module import CompiledCircuit


@dataclass(frozen=True)
class TrainConfig:
    """EM training settings; the defaults are the recipe tuned on the debd sets (docs/results.md)."""

    epochs: int = 60
    batch_size: int = 100
    step_size: float = 0.05
    pseudocount: float = 0.01
    patience: int = 5
    polish: int = 5
    seed: int = 0
    members: int = 4  # > 1: an ensemble of independently trained copies (see `fit_members`)
    cuda_graph: bool = True  # on CUDA, replay each full batch's EM step from a CUDA graph


@dataclass
class History:
    epochs: list[dict] = field(default_factory=list)
    best_epoch: int = -1
    best_valid: float = -math.inf


@dataclass(frozen=True)
class Score:
    """Mean log-likelihood over `n` rows with the standard error of the mean."""

    mean: float
    stderr: float
    n: int

    def __str__(self) -> str:
        return f"{self.mean:.4f} ± {self.stderr:.4f} ({self.n} rows)"


@torch.no_grad()
def log_likelihoods(model: CompiledCircuit, data: "np.ndarray | torch.Tensor",
                    batch_size: int = 1000) -> torch.Tensor:
    """log p(x) of every row, [N] float64."""
    x = torch.as_tensor(data)
    device = next(model.parameters()).device
    out = [model(x[i: i + batch_size].to(device)).double().cpu()
           for i in range(0, len(x), batch_size)]
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)


def evaluate(model: CompiledCircuit, data, batch_size: int = 1000) -> Score:
    ll = log_likelihoods(model, data, batch_size)
    n = len(ll)
    std = float(ll.std()) if n > 1 else 0.0
    return Score(float(ll.mean()), std / math.sqrt(max(n, 1)), n)


def fit(model: CompiledCircuit, train, valid=None, config: TrainConfig = TrainConfig(),
        progress: bool = True) -> History:
    """Online EM on `train` (array [N, V], NaN = missing); early stopping on `valid`."""
    x = torch.as_tensor(train)
    device = next(model.parameters()).device
    em = EM(model, step_size=config.step_size, pseudocount=config.pseudocount,
            cuda_graph=config.cuda_graph)  # eager off CUDA and for the last partial batch
    gen = torch.Generator().manual_seed(config.seed)
    history = History()
    best_state = None
    stale = 0
    for epoch in range(config.epochs):
        order = torch.randperm(len(x), generator=gen)
        bar = tqdm(range(0, len(x), config.batch_size), desc=f"epoch {epoch + 1}/{config.epochs}",
                   unit="batch", disable=None if progress else True,  # None: on TTYs only
                   file=sys.stderr, leave=False, dynamic_ncols=True)
        total = 0.0
        for start in bar:
            batch = x[order[start: start + config.batch_size]].to(device)
            ll = em.step(batch)
            total += ll * len(batch)
            bar.set_postfix(ll=f"{ll:.3f}")
        record = {"epoch": epoch + 1, "train_ll": total / len(x)}
        if valid is not None:
            record["valid_ll"] = evaluate(model, valid).mean
        history.epochs.append(record)
        if progress:
            tqdm.write(_epoch_line(record), file=sys.stderr)
        score = record.get("valid_ll", record["train_ll"])
        if score > history.best_valid:
            history.best_valid, history.best_epoch = score, epoch + 1
            best_state = copy.deepcopy(model.state_dict())
            stale = 0
        else:
            stale += 1
            if valid is not None and stale >= config.patience:
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    if valid is not None:
        _polish(model, x, valid, config, history, progress)
    return history


def fit_members(model: CompiledCircuit, train, valid=None, config: TrainConfig = TrainConfig(),
                progress: bool = True) -> tuple[CompiledCircuit, list[History]]:
    """`config.members` copies of `model`'s circuit, each trained by `fit`, mixed uniformly into
    one model (`pcc.ensemble`). Member 0 is `model` itself; member i is initialized and shuffled
    with seed `config.seed + i`. With one member: `model`, trained."""
    if config.members < 1:
        raise ValueError(f"members must be >= 1, got {config.members}")
    device = next(model.parameters()).device
    members, histories = [], []
    for i in range(config.members):
        member = model if i == 0 else CompiledCircuit(
            model.circuit, model.plan, backend=model.backend, seed=config.seed + i,
            dtype=model._param_dtype()).to(device)
        if progress and config.members > 1:
            tqdm.write(f"member {i + 1}/{config.members}", file=sys.stderr)
        histories.append(fit(member, train, valid, replace(config, seed=config.seed + i),
                             progress))
        members.append(member)
    if config.members == 1:
        return model, histories
    circuit = ensemble_circuit([replace(m.circuit, params=m.ir_params()) for m in members])
    merged = compile_circuit(circuit, backend=model.backend, dtype=model._param_dtype())
    merged.circuit = replace(circuit, params=())  # the values live in the parameters now
    return merged.to(device), histories


def _polish(model: CompiledCircuit, x: torch.Tensor, valid, config: TrainConfig,
            history: History, progress: bool) -> None:
    """Full-batch EM iterations while the validation likelihood improves (see module doc)."""
    device = next(model.parameters()).device
    em = EM(model, step_size=1.0, pseudocount=config.pseudocount)
    chunk = max(config.batch_size, 1000)
    for i in range(config.polish):
        best_state = copy.deepcopy(model.state_dict())
        for start in range(0, len(x), chunk):
            em.accumulate(x[start: start + chunk].to(device))
        em.update()
        record = {"epoch": f"polish {i + 1}", "valid_ll": evaluate(model, valid).mean}
        history.epochs.append(record)
        if progress:
            tqdm.write(f"full-batch EM {i + 1}  valid {record['valid_ll']:.4f}", file=sys.stderr)
        if record["valid_ll"] <= history.best_valid:
            model.load_state_dict(best_state)
            return
        history.best_valid = record["valid_ll"]


def _epoch_line(record: dict) -> str:
    parts = [f"epoch {record['epoch']:3d}", f"train (running) {record['train_ll']:.4f}"]
    if "valid_ll" in record:
        parts.append(f"valid {record['valid_ll']:.4f}")
    return "  ".join(parts)
