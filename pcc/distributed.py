"""Data-parallel training and evaluation on torch.distributed (docs/distributed.md).

Every rank holds the same model and reads its share of the data (`pcc.rows.Shard`); whatever the
ranks must agree on is summed by an all-reduce, always through `Group.all_reduce`:

    EM statistics  `StatisticsReducer`, EM's `reduce` hook: at each update, the fresh sum-weight
                   flows, mixing flows and leaf statistics of this rank and its row count are
                   flattened into one buffer, summed over the ranks by ONE all-reduce and put
                   back (views of the buffer), then every rank runs the same M-step. The sums are
                   what one process accumulates over the whole global batch, so N ranks give the
                   parameters of one process, up to the order of float additions.
    scores         sums of log-likelihoods, of their squares and row counts (float64)

Faults. Every reduced buffer starts with STATUS slots: the number of ranks that failed and that
were interrupted since the last collective, and of those asking for a snapshot (the saving rank,
when its clock says one is due: every rank then takes it at the same safe point, `pcc.progress`). A rank's local work runs under `Group.run`, which
keeps an exception instead of raising it (and skips further work); the next all-reduce tells
every rank, and all of them raise, at the same point of the program, the same `RankError` (its
message, gathered from the failing ranks, names them: "rank 1: data.npy, row 7, column 2: ...")
or KeyboardInterrupt. A rank that dies outright is noticed at the others' next collective
(gloo: its connections close; otherwise when the group's timeout runs out): `RankError`
"lost contact". Under `interrupt_on`, SIGINT and SIGTERM stop a rank's local work at once and
are announced at the next collective, so every rank stops after the same step with the same
parameters (never in the middle of a collective, which would leave the others waiting).

`session()` joins the process group torchrun describes in the environment (RANK, WORLD_SIZE,
LOCAL_RANK, MASTER_ADDR, MASTER_PORT): gloo for a CPU device, NCCL for CUDA (each rank on
cuda:LOCAL_RANK). Without torchrun (WORLD_SIZE unset or 1) there is no group: one process.
"""
from __future__ import annotations

import contextlib
import datetime
import os
import traceback
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor

from .errors import PcError
from .signals import handled

STATUS = 3  # leading slots of every reduced buffer: failed, interrupted, snapshot-asking ranks
DEFAULT_TIMEOUT = 600.0  # seconds a rank waits for the others at a collective
T = TypeVar("T")


class RankError(PcError):
    """A rank failed: every rank raises this, with the same message naming the failing ranks."""


class LostContact(RankError):
    """This rank could not complete a collective: another rank died or did not come in time."""


@dataclass(eq=False)
class Group:
    """This process's place in a process group of `size` ranks, on `device`; the group is
    torch.distributed's default one. `failure`, `interrupted` and `snapshot_wanted` are this
    rank's news for the next collective; `snapshot_asked`: a rank asked for a snapshot in the
    last one."""

    rank: int
    size: int
    device: torch.device
    timeout: float = DEFAULT_TIMEOUT
    failure: str | None = None
    interrupted: bool = False
    snapshot_wanted: bool = False
    snapshot_asked: bool = False
    _interruptible: bool = field(default=False, repr=False)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def run(self, work: Callable[[], T], default: T | None = None,
            interruptible: bool = True) -> T | None:
        """work(), or `default` if it raises (the error is kept for the next collective to
        announce) or if this rank has failed (or, if `interruptible`, been interrupted) since
        the last collective. `interruptible`: a signal stops the work at once."""
        if self.failure is not None or (interruptible and self.interrupted):
            return default
        outer = self._interruptible  # runs nest (a pass's reads inside its work)
        try:
            try:
                self._interruptible = interruptible
                return work()
            finally:
                self._interruptible = outer
        except KeyboardInterrupt:
            self.interrupted = True
        except Exception as e:  # noqa: BLE001 -- any failure is announced to every rank
            if os.environ.get("PCC_TRACEBACK"):
                traceback.print_exc()
            self.failure = describe(e)
        return default

    def all_reduce(self, parts: Sequence[Tensor], dtype: torch.dtype,
                   interrupt: bool = True) -> Tensor:
        """The sum over the ranks of `parts` flattened and concatenated, [total size] of `dtype`
        on the group's device, by one all-reduce that also carries this rank's status. Raises
        RankError (a rank failed or was lost) or, unless `interrupt` is False, KeyboardInterrupt
        (a rank was interrupted) on every rank alike."""
        status = torch.tensor([self.failure is not None, self.interrupted,
                               self.snapshot_wanted], dtype=dtype)
        flat = torch.cat([status.to(self.device)] +
                         [p.reshape(-1).to(self.device, dtype) for p in parts])
        self._collective(lambda: dist.all_reduce(flat))
        failed, interrupted, snapshot = flat[:STATUS].tolist()
        if snapshot:
            self.snapshot_asked, self.snapshot_wanted = True, False
        if failed:
            error = self._failures()
            self.failure, self.interrupted = None, False  # announced: the group is usable again
            raise error
        if interrupted and interrupt:
            self.interrupted = False
            raise KeyboardInterrupt("interrupted on another rank")
        return flat[STATUS:]

    def sum(self, values: Sequence[float]) -> list[float]:
        """`values` summed over the ranks, in float64."""
        return self.all_reduce([torch.tensor(values, dtype=torch.float64)],
                               torch.float64).tolist()

    def check(self, interrupt: bool = True) -> None:
        """A collective of the status alone: raises on every rank if any has failed (or, unless
        `interrupt` is False, been interrupted)."""
        self.all_reduce([], torch.float32, interrupt)

    @contextlib.contextmanager
    def interrupt_on(self, *signals: int) -> Iterator[None]:
        """Within the block, the given signals (SIGINT, SIGTERM) interrupt this rank's local work
        at once (`run`) and the training at the next collective, on every rank (see the module
        doc). Main thread only."""
        def interrupt(signum, frame):
            self.interrupted = True
            if self._interruptible:
                self._interruptible = False
                raise KeyboardInterrupt(f"signal {signum}")
        with handled(interrupt, *signals):
            yield

    def gather(self, value: object) -> list:
        """`value` (any picklable object) of every rank, in rank order, on every rank."""
        values: list = [None] * self.size
        self._collective(lambda: dist.all_gather_object(values, value))
        return values

    def _failures(self) -> RankError:
        messages = self.gather(self.failure)
        failed = [(r, m) for r, m in enumerate(messages) if m is not None]
        first = failed[0][1]
        same = [r for r, m in failed if m == first]
        others = [r for r, m in failed if m != first]
        text = f"{_ranks(same, self.size)}: {first}"
        if others:
            text += f" (and {_ranks(others, self.size)} failed too)"
        return RankError(text)

    def _collective(self, call: Callable[[], object]) -> None:
        try:
            call()
        except RuntimeError as e:  # a rank died, or did not come within the timeout
            raise LostContact(f"rank {self.rank}: lost contact with the other ranks (one stopped, "
                            f"or did not reach this step within {self.timeout:g} s): "
                            f"{_first_line(str(e))}") from None


def _ranks(ranks: list[int], size: int, most: int = 4) -> str:
    """`rank 1`, `ranks 0, 2`, `ranks 0, 1, 2, 3 and 12 more`, or `every rank`."""
    if len(ranks) == size > 1:
        return "every rank"
    shown = ", ".join(map(str, ranks[:most]))
    more = f" and {len(ranks) - most} more" if len(ranks) > most else ""
    return f"rank{'s' if len(ranks) > 1 else ''} {shown}{more}"


def describe(error: BaseException) -> str:
    """One line saying what went wrong (a PcError's message; otherwise its type and message)."""
    text = " ".join(line.strip() for line in str(error).splitlines() if line.strip())
    if isinstance(error, PcError):
        return text
    if isinstance(error, OSError) and error.strerror:
        return f"{error.filename or 'pcc'}: {error.strerror}"
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _restart_hint() -> str:
    """After a torchrun restart with the rendezvous store shared with the workers (torch's
    default), the ranks can read the addresses of the attempt before (pytorch/pytorch#135712)."""
    if (os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") in ("", "0")
            or os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True"):
        return ""
    return (" (a torchrun restart: the ranks may have read the addresses of the attempt before; "
            "set TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 in torchrun's environment, see "
            "docs/distributed.md)")


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""


_joined: Group | None = None


def joined() -> Group | None:
    """The group this process joined (by `session`; it stays its rank after the session)."""
    return _joined


@contextlib.contextmanager
def session(device: str = "cpu", timeout: float = DEFAULT_TIMEOUT) -> Iterator[Group | None]:
    """Join the process group torchrun describes in the environment (see the module doc) for
    the block, or yield None for one process. `device`: cpu, cuda or cuda:N (under torchrun,
    cuda is cuda:LOCAL_RANK)."""
    global _joined
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        yield None
        return
    if "RANK" not in os.environ:
        raise PcError(f"WORLD_SIZE is {size} but RANK is not set: launch the ranks with torchrun")
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.startswith("cuda:") and int(os.environ.get("LOCAL_WORLD_SIZE", "1")) > 1:
        raise PcError(f"rank {rank}: --device {device} would put every rank of this node on one "
                      "GPU: give --device cuda (each rank takes cuda:LOCAL_RANK)")
    place = torch.device(f"cuda:{local}" if device == "cuda" else device)
    if place.type == "cuda":
        torch.cuda.set_device(place)
    backend = "nccl" if place.type == "cuda" else "gloo"
    try:
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout),
                                rank=rank, world_size=size)
    except (RuntimeError, ValueError) as e:
        raise PcError(f"rank {rank}: could not join the process group of {size} ranks "
                      f"({backend}): {_first_line(str(e))}{_restart_hint()}") from None
    _joined = Group(rank, size, place, timeout)
    try:
        yield _joined
    except BaseException:
        dist.destroy_process_group()
        raise
    # every rank done before any closes its connections: a rank that tears down while another
    # still talks to it can abort the other inside gloo ("terminate called ...")
    dist.barrier()
    dist.destroy_process_group()


class StatisticsReducer:
    """EM's `reduce` hook for data-parallel EM (see the module doc): `local` runs this rank's
    E-step under `Group.run`; `__call__(em)`, at each update, sums the fresh statistics and the
    row count over the ranks, in place. Statistics no batch touched on this rank count as 0."""

    def __init__(self, group: Group):
        self.group = group

    def local(self, em, x: Tensor, marginalize: Tensor | None, target: Tensor | None) -> Tensor:
        """This rank's E-step on its rows x (possibly none): log p per row, [n]."""
        empty = x.new_zeros(0)
        if len(x) == 0:
            return empty
        ll = self.group.run(lambda: em.estep(em.model.prepare_input(x, marginalize), target))
        return empty if ll is None else ll

    def __call__(self, em) -> None:
        sums, mixes, leaves = self.fresh(em)
        parts = sums + mixes + [s[k] for s in leaves for k in sorted(s)]
        dtype = em.model._param_dtype()
        total = self.group.all_reduce([torch.tensor([float(em.rows)])] + parts, dtype)
        views = iter(torch.split(total[1:], [p.numel() for p in parts]))
        em._sum_counts = [next(views).view_as(p) for p in sums]
        em._mix_counts = [next(views).view_as(p) for p in mixes]
        em._leaf_stats = [{k: next(views).view_as(s[k]) for k in sorted(s)} for s in leaves]
        em.rows = round(float(total[0]))

    @staticmethod
    def fresh(em) -> tuple[list[Tensor], list[Tensor], list[dict[str, Tensor]]]:
        """EM's fresh statistics with zeros where nothing was accumulated (the layout of the
        reduced buffer; every rank's is the same)."""
        m = em.model
        sums = [c if c is not None else torch.zeros_like(w.detach())
                for c, w in zip(em._sum_counts, m.sum_logits)]
        mixes = [c if c is not None else torch.zeros_like(w.detach())
                 for c, w in zip(em._mix_counts, m.mix_logits)]
        leaves = list(em._leaf_stats)
        if any(s is None for s in leaves):
            zeros = _zero_leaf_statistics(m)
            leaves = [z if s is None else s for s, z in zip(leaves, zeros)]
        return sums, mixes, leaves

    def statistics_bytes(self, em) -> int:
        """Bytes of statistics one update sums (the all-reduce's payload, status excluded)."""
        sums, mixes, leaves = self.fresh(em)
        parts = sums + mixes + [v for s in leaves for v in s.values()]
        return (1 + sum(p.numel() for p in parts)) * em.model._param_dtype().itemsize


def _zero_leaf_statistics(model) -> list[dict[str, Tensor]]:
    """Leaf statistics of no rows: zeros of the shapes `leaf_statistics` gives."""
    like = next(model.parameters())
    x = like.new_zeros(0, model.num_vars)
    gammas = [like.new_zeros(len(g.regions), 0, g.k) for g in model.plan.leaf_groups]
    with torch.no_grad():
        return model.leaf_statistics(x, gammas)


def together(group: Group | None, work: Callable[[], T], interrupt: bool = True) -> T:
    """work() on this rank; under a process group, every rank then learns whether any failed
    (and all raise the same RankError) or, unless `interrupt` is False, was interrupted."""
    if group is None:
        return work()
    result = group.run(work, interruptible=interrupt)
    group.check(interrupt)
    return result


def reducer_for(group: Group | None) -> StatisticsReducer | None:
    """The EM `reduce` hook of a process group (None: one process, no hook)."""
    return None if group is None else StatisticsReducer(group)
