"""Training by EM on data sets, with a progress bar and early stopping; evaluation.

`fit` runs online EM over shuffled mini-batches for some epochs (on CUDA each full batch's step
replays a CUDA graph, `TrainConfig.cuda_graph`), tracks the validation mean
log-likelihood after each epoch, stops after `patience` epochs without improvement, and goes
back to the best epoch. Then it polishes: full-batch EM iterations (which remove the noise
online EM's last mini-batches leave in the parameters) as long as the validation likelihood
improves, at most `polish` of them (`pcc.members.fit_members` chooses a latent tree's settings
first, `pcc.search`, and trains an ensemble's members). `evaluate` gives a mean log-likelihood
with its standard error.

Class-conditional circuits (a root with K > 1 units, one density per class) train on `Labeled`
rows: each row's EM statistics flow from its class's unit, and validation scores log p(x | y).
`on_epoch(record)` is called after every epoch (and polishing step) with its metrics. An
interrupt (Ctrl-C, or a signal made one by `interrupt_on`) stops `fit` cleanly: the model goes
back to its best state so far and the History says `interrupted`, so the caller can save it.

Runs survive a kill: with `snapshots` (`pcc.snapshot.Snapshots`) the state of the run at its
safe points (`pcc.progress`) is written every few minutes, and a run resumed from it ends with
the parameters the run would have reached without stopping.

Data may be arrays in memory or `pcc.rows.Rows` read on demand (a data file larger than memory).
Data-parallel training passes each rank's `pcc.rows.Shard`: every rank draws the same global
batches, takes its share of each, and EM sums the statistics over the ranks before each M-step
(`pcc.distributed`); scores are totalled over the ranks, so every rank makes the same decisions
and ends with the parameters one process would reach.
"""
from __future__ import annotations

import contextlib
import copy
import math
import sys
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Callable

import torch
from tqdm.auto import tqdm

from .compiler import compile as compile_circuit
from .distributed import reducer_for
from .em import EM
from .errors import ShapeError
from .progress import History, Progress, Run
from .rows import Labeled, Rows, as_rows
from .runtime.module import CompiledCircuit
from .signals import handled, interrupting, taken

if TYPE_CHECKING:
    from .snapshot import Snapshots


DEFAULT_BUDGET = 900.0  # seconds: pcc train's default --budget (`pcc.search` plans within it)


@dataclass(frozen=True)
class TrainConfig:
    """EM training settings. A setting left None comes from the recipe for the circuit
    (`recipe_for`, see `resolved`): the recipes are tuned on the debd sets (docs/results.md)."""

    epochs: int | None = None  # online EM epochs, at most
    batch_size: int | None = None
    step_size: float | None = None  # online EM step
    pseudocount: float | None = None
    patience: int | None = None  # epochs without validation improvement before stopping
    polish: int | None = None  # full-batch EM iterations at the end, at most
    seed: int = 0
    members: int | None = None  # > 1: an ensemble of independently trained copies
    init: str | None = None  # "data": from the training data (latent trees); "keep": as it is
    soften: float | None = None  # leaves mixed with their marginals after each update
    entropy: float | None = None  # sum weights entropy-regularized after each update
    budget: float | None = None  # seconds of training (the capacity search plans within it)
    cuda_graph: bool = True  # on CUDA, replay each full batch's EM step from a CUDA graph

    def resolved(self, circuit, plan=None, rows: int | None = None) -> "TrainConfig":
        """Every None setting filled in from `recipe_for(circuit, plan, rows)`."""
        recipe = recipe_for(circuit, plan, rows)
        return replace(self, **{f: getattr(recipe, f) for f in self.__dataclass_fields__
                                if getattr(self, f) is None})


# Latent trees (HCLT): initialized from the data, a few large-batch online EM epochs, then many
# full-batch EM iterations while validation improves. Other circuits (RAT, PD, ...): random
# initialization, small-batch online EM with early stopping, a short polish, and ensembles of 4.
LATENT_TREE_RECIPE = TrainConfig(epochs=10, batch_size=512, step_size=0.2, pseudocount=0.1,
                                 patience=3, polish=300, members=1, init="data", soften=0.0,
                                 entropy=0.0, budget=DEFAULT_BUDGET)
DEFAULT_RECIPE = TrainConfig(epochs=60, batch_size=100, step_size=0.05, pseudocount=0.01,
                             patience=5, polish=5, members=4, init="keep", soften=0.0,
                             entropy=0.0, budget=DEFAULT_BUDGET)
# Latent trees with ties (a homogeneous HMM) take the latent-tree recipe: `pcc.latent_tree.initialize`
# then clusters the states of all positions together (`pcc.latent_context`).
# The latent-tree recipe's passes over the data (epochs, then polishing) evaluate at most this
# many circuit FLOPs (forward, as `pcc compile --explain` counts them; ~10 minutes on one core
# of the CPU machine of docs/results.md): on a large data set the polish gets fewer iterations.
LATENT_TREE_WORK = 1e12
MIN_POLISH = 10


def recipe_for(circuit, plan=None, rows: int | None = None) -> TrainConfig:
    """The training recipe for `circuit` (a Circuit): LATENT_TREE_RECIPE for latent-tree
    circuits (`pcc.latent_tree`; hidden Markov models too; with init="keep" when the circuit
    holds its own parameters, e.g. `pcc structure hclt --init data`), its polish bounded by
    LATENT_TREE_WORK when the `plan` and the number of training `rows` are given; else
    DEFAULT_RECIPE."""
    from .latent_forest import find_latent_forest
    if find_latent_forest(circuit) is None:
        return DEFAULT_RECIPE
    recipe = replace(LATENT_TREE_RECIPE, init="keep") if circuit.params else LATENT_TREE_RECIPE
    if plan is not None and rows:
        from .passes.explain import op_cost
        per_pass = rows * max(1, sum(op_cost(op).flops for op in plan.ops))
        passes = int(LATENT_TREE_WORK // per_pass) - recipe.epochs
        recipe = replace(recipe, polish=min(recipe.polish, max(MIN_POLISH, passes)))
    return recipe


def _split(data) -> tuple[torch.Tensor, "torch.Tensor | None"]:
    """(x, units or None) of plain or `Labeled` rows."""
    if isinstance(data, Labeled):
        return torch.as_tensor(data.x), torch.as_tensor(data.units).long()
    return torch.as_tensor(data), None


@contextlib.contextmanager
def interrupt_on(*signals: int):
    """Within the block, the given signals (e.g. signal.SIGTERM) interrupt like Ctrl-C does, so
    `fit` stops and keeps its best model. Main thread only (Python's rule for handlers)."""
    with handled(interrupting, *signals):
        yield


@dataclass(frozen=True)
class Score:
    """Mean log-likelihood over `n` rows with the standard error of the mean."""

    mean: float
    stderr: float
    n: int

    def __str__(self) -> str:
        return f"{self.mean:.4f} ± {self.stderr:.4f} ({self.n} rows)"

    @classmethod
    def of(cls, ll: torch.Tensor) -> "Score":
        """The Score of log-likelihoods ll [N] (N >= 1)."""
        n = len(ll)
        std = float(ll.std()) if n > 1 else 0.0
        return cls(float(ll.mean()), std / math.sqrt(n), n)

    @classmethod
    def of_sums(cls, n: float, total: float, squares: float) -> "Score":
        """The Score of N = n log-likelihoods from their sum and the sum of their squares."""
        n = round(n)
        mean = total / n
        variance = max(squares - total * mean, 0.0) / (n - 1) if n > 1 else 0.0
        return cls(mean, math.sqrt(variance / n), n)


@torch.no_grad()
def log_likelihoods(model: CompiledCircuit, data, batch_size: int = 1000) -> torch.Tensor:
    """log p(x) of every row, [N] float64; for a root with K > 1 units [N, K], or with `Labeled`
    rows log p(x | its unit) [N]."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    x, units = _split(data)
    device = next(model.parameters()).device
    out = [model(x[i: i + batch_size].to(device)).double().cpu()
           for i in range(0, len(x), batch_size)]
    ll = torch.cat(out) if out else torch.zeros((0,) if model.root_k == 1 else (0, model.root_k),
                                                 dtype=torch.float64)
    return ll if units is None else ll.gather(1, units.unsqueeze(1)).squeeze(1)


def evaluate(model: CompiledCircuit, data, batch_size: int = 1000) -> Score:
    """Mean log-likelihood of the rows (`Labeled` rows for a root with K > 1 units); of every
    rank's share for a `pcc.rows.Shard`."""
    if isinstance(data, Rows):
        if model.root_k > 1 and not data.labeled:
            raise ShapeError(f"the root has {model.root_k} units: give each row's unit (Labeled "
                             "rows) or score every unit (evaluate_units)")
        return _scores(model, data, batch_size)[0]
    ll = log_likelihoods(model, data, batch_size)
    if ll.dim() == 2:
        raise ShapeError(f"the root has {ll.shape[1]} units: give each row's unit (Labeled rows) "
                         "or score every unit (evaluate_units)")
    if len(ll) == 0:
        raise ShapeError("no rows to evaluate")
    return Score.of(ll)


def evaluate_units(model: CompiledCircuit, data, batch_size: int = 1000) -> list[Score]:
    """The Score of every root unit's density on all rows, [K]."""
    if isinstance(data, Rows):
        return _scores(model, data, batch_size, every_unit=True)
    ll = log_likelihoods(model, data, batch_size)
    if len(ll) == 0:
        raise ShapeError("no rows to evaluate")
    return [Score.of(column) for column in (ll.unsqueeze(1) if ll.dim() == 1 else ll).unbind(1)]


@torch.no_grad()
def _scores(model: CompiledCircuit, rows: Rows, batch_size: int,
            every_unit: bool = False) -> list[Score]:
    """Scores of `rows` (this process's share, totalled over the processes) from sums of
    log-likelihoods: one Score (of each row's unit for labeled rows), or every root unit's."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    device = next(model.parameters()).device
    units = model.root_k if every_unit else 1

    def local() -> torch.Tensor:
        sums = torch.zeros(3, units, dtype=torch.float64)  # rows, sum, sum of squares
        for x, target in rows.local_chunks(batch_size):
            ll = model(x.to(device)).double().cpu().reshape(len(x), -1)
            if not every_unit and target is not None:
                ll = ll.gather(1, target.unsqueeze(1))
            sums += torch.stack([torch.full((units,), float(len(x)), dtype=torch.float64),
                                 ll.sum(0), (ll * ll).sum(0)])
        return sums
    sums = rows.guard(local, torch.zeros(3, units, dtype=torch.float64))
    n, total, squares = torch.tensor(rows.total(sums.reshape(-1).tolist())).reshape(3, units)
    if n[0] == 0:
        raise ShapeError("no rows to evaluate")
    return [Score.of_sums(*values) for values in zip(n.tolist(), total.tolist(),
                                                    squares.tolist())]


OnEpoch = Callable[[dict], None]


def fit(model: CompiledCircuit, train, valid=None, config: TrainConfig = TrainConfig(),
        progress: bool = True, on_epoch: OnEpoch | None = None,
        snapshots: "Snapshots | None" = None) -> History:
    """Online EM on `train` (array [N, V], NaN = missing, or `Labeled` rows); early stopping on
    `valid`. `on_epoch(record)` after every epoch; an interrupt stops it (see the module doc).
    Settings left None in `config` come from the recipe for the model's circuit. `snapshots`:
    see `pcc.members.fit_members`."""
    data = as_rows(train)
    config = replace(config.resolved(model.circuit, model.plan, len(data)), members=1)
    run = Run(config, _batches(data, config), snapshots, data.group)
    for _, record in run.records() if on_epoch is not None else ():
        on_epoch(record)
    return _fit(model, data, valid, config, progress, on_epoch, run)


def _fit(model: CompiledCircuit, data: Rows, valid, config: TrainConfig, progress: bool,
         on_epoch: OnEpoch | None, run: Run, label: str | None = None,
         screening: bool = False) -> History:
    """Train the member in training of `run`, from the start or from where its snapshot left
    it: online EM, back to the best epoch, full-batch EM, the plain Chow-Liu tree floor. With
    `screening` (a candidate of the capacity search, named `label` in its records): without
    the floor, and when full-batch EM stopped at `config.polish` iterations rather than at an
    iteration that did not improve, its progress stays at that stage (the search may go on)."""
    from .regularize import Regularizers
    regularize = Regularizers(model, data, config.soften, config.entropy)
    run.restore_parameters(model)
    if run.progress is None:
        if config.init == "data":
            _initialize_from_data(model, data, config)
            regularize(model)
        run.begin(config.seed, label)
    p = run.progress
    if p.stage == "online":
        _online(model, data, valid, config, progress, on_epoch, run, regularize)
    if p.history.interrupted:
        return p.history
    if p.stage == "polish":
        converged = valid is None or _polish(model, data, valid, config, progress, on_epoch,
                                             run, regularize)
        if p.history.interrupted or (screening and not converged):
            return p.history
        p.stage = "floor"
        run.safe_point(model)
    if screening:
        return p.history
    if p.stage == "floor":
        if valid is not None and config.init == "data":
            _chow_liu_floor(model, data, valid, p.history, progress)
        p.stage = "done"
    return p.history


def _online(model: CompiledCircuit, data: Rows, valid, config: TrainConfig, progress: bool,
            on_epoch: OnEpoch | None, run: Run, regularize) -> None:
    """Online EM epochs over the rows in seeded orders, with early stopping, from where
    `run.progress` stands; then the model goes back to its best epoch (also when interrupted)."""
    p, history = run.progress, run.progress.history
    device = next(model.parameters()).device
    em = EM(model, step_size=config.step_size, pseudocount=config.pseudocount,
            cuda_graph=config.cuda_graph,  # eager off CUDA and for the last partial batch
            reduce=reducer_for(data.group))
    run.restore_em(model, em)
    gen = torch.Generator()
    gen.set_state(p.order)
    try:
        while p.epoch < config.epochs and not (valid is not None and p.stale >= config.patience):
            run.safe_point(model, em)
            order = torch.randperm(len(data), generator=gen)
            bar = tqdm(range(p.batch * config.batch_size, len(data), config.batch_size),
                       initial=p.batch, total=run.batches,
                       desc=f"epoch {p.epoch + 1}/{config.epochs}", unit="batch",
                       disable=None if progress else True,  # None: on TTYs only
                       file=sys.stderr, leave=False, dynamic_ncols=True)
            clock = time.perf_counter() - p.epoch_seconds
            for start in bar:
                x, units = data.batch(order[start: start + config.batch_size])
                batch = x.to(device)
                ll = em.step(batch, target=None if units is None else units.to(device))
                if regularize:
                    regularize(model)
                p.epoch_ll += ll * len(batch)
                p.batch += 1
                p.epoch_seconds = time.perf_counter() - clock
                bar.set_postfix(ll=f"{ll:.3f}")
                run.safe_point(model, em)
            _end_epoch(model, data, valid, progress, on_epoch, p)
            p.order = gen.get_state()
    except KeyboardInterrupt:
        taken()
        history.interrupted = True
    if p.best_state is not None:
        model.load_state_dict(p.best_state)
    if not history.interrupted:
        p.stage, p.best_state = "polish", None
        run.safe_point(model)


def _end_epoch(model: CompiledCircuit, data: Rows, valid, progress: bool,
               on_epoch: OnEpoch | None, p: Progress) -> None:
    """An online epoch's record: its scores, the best epoch so far, the next epoch."""
    history = p.history
    record = {"epoch": p.epoch + 1, "train_ll": data.total([p.epoch_ll])[0] / len(data),
              "seconds": p.epoch_seconds, **({"candidate": p.label} if p.label else {})}
    if valid is not None:
        record["valid_ll"] = evaluate(model, valid).mean
    history.epochs.append(record)
    score = record.get("valid_ll", record["train_ll"])
    if score > history.best_valid:
        history.best_valid, history.best_epoch = score, p.epoch + 1
        p.best_state = copy.deepcopy(model.state_dict())
        p.stale = 0
    else:
        p.stale += 1
    if on_epoch is not None:
        on_epoch(record)
    if progress:  # last: an epoch shown is an epoch kept
        tqdm.write(_epoch_line(record), file=sys.stderr)
    p.epoch, p.batch, p.epoch_ll, p.epoch_seconds = p.epoch + 1, 0, 0.0, 0.0


def _batches(data: Rows, config: TrainConfig) -> int:
    """Online EM steps per epoch."""
    return math.ceil(len(data) / config.batch_size)


def _chow_liu_floor(model: CompiledCircuit, train: Rows, valid, history: History,
                    progress: bool) -> None:
    """For a latent tree: its plain Chow-Liu tree (`pcc.latent_tree.embed_chow_liu`, which the
    structure holds exactly) replaces the trained parameters if it scores better on validation,
    so training never ends below that floor (it can on data that are themselves a tree)."""
    from .latent_forest import find_latent_forest
    from .latent_tree import embed_chow_liu
    forest = find_latent_forest(model.circuit)
    if forest is None:
        return
    trained = copy.deepcopy(model.state_dict())
    if not embed_chow_liu(model, train, forest):
        return
    score = evaluate(model, valid).mean
    if score > history.best_valid:
        if progress:
            tqdm.write(f"the plain Chow-Liu tree scores {score:.4f} on validation, above the "
                       f"trained {history.best_valid:.4f}: kept it", file=sys.stderr)
        history.best_valid, history.plain_tree = score, True
    else:
        model.load_state_dict(trained)


def _initialize_from_data(model: CompiledCircuit, rows: Rows, config: TrainConfig) -> None:
    """Parameters from the training data (`pcc.latent_tree`); circuits of another shape keep
    theirs."""
    from .latent_forest import find_latent_forest
    from .latent_tree import initialize
    forest = find_latent_forest(model.circuit)
    if forest is not None:
        initialize(model, rows, forest, config.pseudocount, seed=config.seed)


def _polish(model: CompiledCircuit, train: Rows, valid, config: TrainConfig, progress: bool,
            on_epoch: OnEpoch | None, run: Run, regularize) -> bool:
    """Full-batch EM iterations while the validation likelihood improves (see module doc), from
    where `run.progress` stands: True when one did not improve (the model is back at the one
    before it), False when `config.polish` of them were done (or an interrupt came)."""
    p, history = run.progress, run.progress.history
    device = next(model.parameters()).device
    em = EM(model, step_size=1.0, pseudocount=config.pseudocount, reduce=reducer_for(train.group))
    run.restore_em(model, em)
    chunk = max(config.batch_size, 1000)
    best_state = None
    try:
        while p.polished < config.polish:
            best_state = copy.deepcopy(model.state_dict())
            started = time.perf_counter()
            for x, units in train.local_chunks(chunk):
                em.accumulate(x.to(device), target=None if units is None else units.to(device))
            em.update()
            if regularize:
                regularize(model)
            p.polished += 1
            record = {"epoch": f"polish {p.polished}", "seconds": time.perf_counter() - started,
                      "valid_ll": evaluate(model, valid).mean,
                      **({"candidate": p.label} if p.label else {})}
            history.epochs.append(record)
            if progress:
                tqdm.write(f"full-batch EM {p.polished:3d}  valid {record['valid_ll']:.4f}  "
                           f"({record['seconds']:.1f} s)", file=sys.stderr)
            if on_epoch is not None:
                on_epoch(record)
            if record["valid_ll"] <= history.best_valid:
                model.load_state_dict(best_state)
                return True
            history.best_valid = record["valid_ll"]
            run.safe_point(model, em)
    except KeyboardInterrupt:
        taken()
        history.interrupted = True
        if best_state is not None:
            model.load_state_dict(best_state)
    return False


def _epoch_line(record: dict) -> str:
    parts = [f"epoch {record['epoch']:3d}", f"train (running) {record['train_ll']:.4f}"]
    if "valid_ll" in record:
        parts.append(f"valid {record['valid_ll']:.4f}")
    parts.append(f"({record['seconds']:.1f} s)")
    return "  ".join(parts)
