"""The state of a training run (`pcc.train`) at its safe points, which is what a snapshot
(`pcc.snapshot`) holds to resume it: the `History` and `Progress` of the model in training, and
the `Run` of an ensemble's members.

Safe points are where the state is whole: before each online epoch and after each online EM
step (the step's statistics are folded in: EM holds only its running statistics), after each
full-batch EM iteration, between the stages and between the members. A full-batch iteration is
never split (under torchrun each rank holds a partial sum of its statistics until the update).

Resuming from a snapshot taken at a safe point and going on gives the parameters the run would
have reached without stopping, because everything the rest of the run reads is in it: the
parameters and EM's statistics (bit for bit), the stage, the epoch and the batches of it done,
the state of the seeded generator that draws each epoch's order of the rows (the order is drawn
again from it), the sums of the epoch so far, the best epoch's parameters, the Histories, the
members trained, and torch's global random-number states. Nothing depends on the kernels.

Under torchrun every rank holds the same state but one thing: its share of the epoch's sum of
log-likelihoods. The saving rank asks for a snapshot in the status of the next all-reduce
(`pcc.distributed`), every rank takes it at the safe point after that one, and the sum saved is
the total over the ranks (one more all-reduce per snapshot); a resumed run gives it to rank 0.
So a snapshot is the same whichever rank writes it and resumes with any number of ranks (with
another number, the parameters differ from the uninterrupted run's by float rounding, and the
training log-likelihood of the epoch resumed in may differ in its last digits).
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field

import torch

from .signals import raise_pending


@dataclass
class History:
    epochs: list[dict] = field(default_factory=list)
    best_epoch: int = -1
    best_valid: float = -math.inf
    interrupted: bool = False  # stopped by an interrupt; the model holds its best state so far
    plain_tree: bool = False  # a latent tree's trained parameters lost on validation to its
    # plain Chow-Liu tree, which the model holds instead (`pcc.train._chow_liu_floor`)
    capacity: dict | None = None  # what the capacity search chose and tried (`pcc.search`)


STAGES = ("online", "polish", "floor", "done")  # one model's, in order


@dataclass
class Progress:
    """Where the training of one model stands at a safe point (see the module doc)."""

    order: torch.Tensor  # the data-order generator's state at the start of online epoch `epoch`
    stage: str = "online"  # STAGES: online EM, full-batch EM, the plain Chow-Liu tree floor
    epoch: int = 0  # online epochs done
    batch: int = 0  # batches of online epoch `epoch` done
    epoch_ll: float = 0.0  # sum over those batches of the mean log-likelihood times the rows
    epoch_seconds: float = 0.0
    stale: int = 0  # online epochs since the best one
    best_state: dict | None = None  # the parameters of the best online epoch
    polished: int = 0  # full-batch EM iterations done
    history: History = field(default_factory=History)
    label: str | None = None  # a capacity candidate's (`pcc.search`), put in its epoch records

    @classmethod
    def start(cls, seed: int, label: str | None = None) -> "Progress":
        """The progress of a model not trained yet, its rows drawn in an order seeded by `seed`."""
        return cls(order=torch.Generator().manual_seed(seed).get_state(), label=label)

    def state_dict(self) -> dict:
        state = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        state["history"] = dataclasses.asdict(self.history)
        return state

    @classmethod
    def from_state_dict(cls, state: dict) -> "Progress":
        return cls(**{**state, "history": History(**state["history"])})


class Run:
    """A training run at its safe points: the members done (their parameters and Histories)
    and the `Progress` of the one in training. `safe_point(model, em)` writes it to `snapshots`
    (`pcc.snapshot.Snapshots`) when a snapshot is due; a Run made from snapshots that were
    resumed takes their state, and `restore_parameters` / `restore_em` put the parameters and
    EM statistics back where the snapshot left them.

    `config` (a resolved `pcc.train.TrainConfig`) and `batches` (online steps per epoch) only
    describe the run (`where`); `group`: the process group of data-parallel training, or None."""

    def __init__(self, config, batches: int, snapshots=None, group=None):
        self.config, self.batches, self.snapshots, self.group = config, batches, snapshots, group
        self.done: list[dict] = []  # parameters of the members trained
        self.histories: list[History] = []  # their Histories
        self.progress: Progress | None = None  # of the member in training (None: not begun)
        self.search: dict | None = None  # the capacity search's state (`pcc.search`)
        self._parameters: dict | None = None  # the snapshot's, to restore
        self._em: dict | None = None
        self._seconds_before, self._clock = 0.0, time.monotonic()
        resumed = None if snapshots is None else snapshots.resumed
        if resumed is not None:
            self._load(resumed.state)

    def begin(self, seed: int, label: str | None = None) -> Progress:
        """The member in training starts (its rows drawn in an order seeded by `seed`)."""
        self.progress = Progress.start(seed, label)
        return self.progress

    def end_member(self, model) -> None:
        """The member in training is done (the safe point between members follows)."""
        self.done.append(model.state_dict())
        self.histories.append(self.progress.history)
        self.progress = None

    def records(self) -> list[tuple[int, dict]]:
        """(member number from 1, epoch record) of every epoch so far (the capacity search's
        candidates are member 1's)."""
        histories = self.histories + ([self.progress.history] if self.progress else [])
        searched = [(1, record) for record in (self.search or {}).get("records", [])]
        return searched + [(i + 1, record) for i, h in enumerate(histories) for record in h.epochs]

    def safe_point(self, model=None, em=None) -> None:
        """A safe point (see the module doc): the member in training holds `model`'s parameters,
        and `em` the statistics of its stage (None between stages, where the next stage makes a
        fresh EM). A snapshot is written if one is due."""
        raise_pending()
        if self.snapshots is not None and self._due():
            self.snapshots.save(self.where(), self.state_dict(model, em))

    def _due(self) -> bool:
        """Whether a snapshot is taken at this safe point: when due, at once in one process; on
        every rank at the safe point after the all-reduce that carried the saving rank's ask."""
        group = self.group
        if group is None:
            return self.snapshots.due()
        if group.snapshot_asked:
            group.snapshot_asked = group.snapshot_wanted = False
            return True
        if self.snapshots.due():
            group.snapshot_wanted = True
        return False

    def restore_parameters(self, model) -> None:
        """Before the member in training goes on: its parameters at the snapshot."""
        if self._parameters is not None:
            model.load_state_dict(self._parameters)
            if self._em is None:
                self._parameters = None

    def restore_em(self, model, em) -> None:
        """After the EM of the snapshot's stage is made (which normalizes the weights): the
        parameters and statistics at the snapshot, exactly."""
        if self._em is not None:
            model.load_state_dict(self._parameters)
            em.load_state_dict(self._em)
            self._parameters = self._em = None

    def seconds(self) -> float:
        """Training time used, over every session of the run."""
        return self._seconds_before + time.monotonic() - self._clock

    def where(self) -> dict:
        """A summary of where the run stands (`pcc.snapshot` module doc)."""
        config, p = self.config, self.progress
        where = {"member": len(self.done) + 1, "members": config.members or 1,
                 "seconds": self.seconds(), "stage": "next member", "best": None}
        if self.search is not None and self.search["phase"] is not None:  # still searching
            where.update(candidate=len(self.search["results"]) + 1,
                         candidates=len(self.search["candidates"]),
                         capacity=p.label if p is not None else None)
        if p is not None:
            best = p.history.best_valid
            where.update(stage=p.stage, epoch=p.epoch, epochs=config.epochs, batch=p.batch,
                         batches=self.batches, polished=p.polished, polish=config.polish,
                         best=best if math.isfinite(best) else None,
                         best_epoch=p.history.best_epoch)
        return where

    def state_dict(self, model=None, em=None) -> dict:
        rng = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        progress = None if self.progress is None else self.progress.state_dict()
        if progress is not None and self.group is not None:  # every rank's share, summed
            progress["epoch_ll"] = self.group.sum([progress["epoch_ll"]])[0]
        return {"members": self.done, "histories": [dataclasses.asdict(h) for h in self.histories],
                "progress": progress, "search": self.search,
                "parameters": None if model is None else model.state_dict(),
                "em": None if em is None else em.state_dict(), "rng": rng,
                "seconds": self.seconds()}

    def _load(self, state: dict) -> None:
        self.done = state["members"]
        self.search = state.get("search")
        self.histories = [History(**h) for h in state["histories"]]
        if state["progress"] is not None:
            self.progress = Progress.from_state_dict(state["progress"])
            if self.group is not None and not self.group.is_main:
                self.progress.epoch_ll = 0.0  # rank 0 holds the sum over the ranks
        self._parameters, self._em = state["parameters"], state["em"]
        self._seconds_before = state["seconds"]
        torch.set_rng_state(state["rng"]["torch"])
        if "cuda" in state["rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
