"""Expectation-maximization for compiled circuits, stepped like an optimizer.

    em = pcc.EM(model, step_size=0.1, pseudocount=0.01)
    for batch in loader:
        em.step(batch)               # online EM: accumulate one batch, then update
    # or full-batch EM: em.accumulate(b) for every batch, then em.update(), with step_size=1

E-step by autodiff. With L = sum_b log p(x_b):
    sum weights   n[o,c] = W[o,c] * dL/dW[o,c]       (the engine's backward returns exactly this)
    leaves        gamma[r,b,k] = dL/d(log-density of unit k of region r at sample b)
                  n = sum_b gamma * observed,  t = sum_b gamma * observed * T(x)
Online EM is stepwise EM on these statistics: each update mixes the statistics accumulated since
the last one into running statistics, S = (1 - s) S + s S_new (the first update takes S_new), and
the M-step reads the parameters off S: W = (n + a/c) / sum(n + a/c) per sum unit with c entries
(a Dirichlet prior of total mass a = pseudocount, spread evenly), leaves by their family
(`pcc.runtime.leaves`) with a virtual observations per distribution. Because statistics, not
parameters, are averaged, a unit that saw little mass in a batch moves little. The prior weighs
against one update's worth of data (a batch online; the whole data set in full-batch EM).
Missing (NaN or marginalized) values contribute no statistics: a leaf that never saw an observed
value and a sum unit that never received flow keep their parameters; "never" is an expected
count below NO_FLOW, so that float32, which flushes counts below 2^-126 to zero, and float64 make
the same M-step. Probabilities are floored
at `min_prob`, variances at `min_var`; nothing becomes NaN.

Data-parallel EM: with `reduce` (`pcc.distributed.StatisticsReducer`), each process accumulates
its share of the rows and `update` first sums the fresh statistics over the processes (one
all-reduce), so every process runs the same M-step on the statistics of the whole batch.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from .errors import ShapeError
from .runtime.graphs import EMGraph
from .runtime.module import WEIGHT_FLOOR, CompiledCircuit

if TYPE_CHECKING:
    from .distributed import StatisticsReducer


# A layer's flows of at least this many weights get their M-step as soon as they are folded
# (`EM._fold_flows`), while in cache; smaller ones wait for `update` (fewer calls).
STEP_IN_PASSING = 1 << 16
NO_FLOW = 2.0 ** -100  # an expected count below this is none (see the module doc)


class EM:
    """EM for a `CompiledCircuit` (any backend). See the module doc for the math."""

    def __init__(self, model: CompiledCircuit, step_size: float = 0.1, pseudocount: float = 0.01,
                 min_prob: float = 1e-6, min_var: float = 1e-4, cuda_graph: bool = False,
                 reduce: "StatisticsReducer | None" = None):
        if not 0 < step_size <= 1:
            raise ValueError(f"step_size must be in (0, 1], got {step_size}")
        if pseudocount < 0:
            raise ValueError(f"pseudocount must be >= 0, got {pseudocount}")
        self.model, self.step_size, self.pseudocount = model, step_size, pseudocount
        self.min_prob, self.min_var = min_prob, min_var
        self._normalize_weights()
        # statistics the M-step reads (see module doc), per weight pool (`pcc.runtime.layout`:
        # sum pools, mix pools) and per leaf group
        self._running_sum: list[Tensor | None] = [None] * len(model.sum_logits)
        self._running_mix: list[Tensor | None] = [None] * len(model.mix_logits)
        self._running_leaf: list[dict[str, Tensor] | None] = [None] * len(model.leaf_params)
        self._reset()
        self.reduce = reduce  # data-parallel: sums the statistics over the processes
        # cuda_graph: `step` replays a captured E-step + M-step on CUDA (pcc.runtime.graphs)
        self.graph = EMGraph(self) if cuda_graph and reduce is None else None

    def _reset(self) -> None:
        """Clear the statistics accumulated since the last update."""
        self.rows = 0
        self._folded: set[int] = set()  # pools whose flows `_fold_flows` took since then
        self._taken: set[int] = set()  # of these, those it took as the first statistics
        self._stepped: set[tuple[int, int]] = set()  # (pool, first row) of slices M-stepped
        self._sum_counts: list[Tensor | None] = [None] * len(self.model.sum_logits)
        self._mix_counts: list[Tensor | None] = [None] * len(self.model.mix_logits)
        self._leaf_stats: list[dict[str, Tensor] | None] = [None] * len(self.model.leaf_params)
        self._below_floor: bool | None = None  # `careful` of the weights the E-steps used

    def discard(self) -> None:
        """Drop the statistics accumulated since the last update."""
        self._reset()

    @property
    def started(self) -> bool:
        """Whether an update has made running statistics (the first update takes them fresh)."""
        return any(r is not None for r in (*self._running_sum, *self._running_mix,
                                           *self._running_leaf))

    def state_dict(self) -> dict:
        """What EM carries from one update to the next: the running statistics the M-step reads,
        the statistics accumulated since the last update and their row count, per weight pool
        (sum pools, mix pools) and leaf group (None where there are none yet). The tensors are EM's own, not copies:
        save them (torch.save) or copy them before stepping on."""
        return {"running_sum": list(self._running_sum), "running_mix": list(self._running_mix),
                "running_leaf": list(self._running_leaf), "sum_counts": list(self._sum_counts),
                "mix_counts": list(self._mix_counts), "leaf_stats": list(self._leaf_stats),
                "rows": self.rows}

    @torch.no_grad()
    def load_state_dict(self, state: dict) -> None:
        """Statistics from `state_dict` (of an EM of the same circuit), copied onto the model's
        device; into the running statistics in place where they exist (a captured CUDA
        graph reads those). With the model's parameters loaded too, this EM then steps exactly as
        the one that made `state` did."""
        like = next(self.model.parameters())
        for key, lists in (("running_sum", self._running_sum), ("running_mix", self._running_mix),
                           ("running_leaf", self._running_leaf), ("sum_counts", self._sum_counts),
                           ("mix_counts", self._mix_counts), ("leaf_stats", self._leaf_stats)):
            given = state[key]
            if len(given) != len(lists):
                raise ShapeError(f"EM statistics '{key}' are for {len(given)} pools or groups, "
                                 f"this model has {len(lists)}")
            for i, value in enumerate(given):
                lists[i] = _copied(lists[i] if key.startswith("running") else None, value, like)
        self.rows = int(state["rows"])

    @torch.no_grad()
    def _normalize_weights(self) -> None:
        """Project the logits onto normalized log-weights (EM's invariant)."""
        m = self.model
        for p in m.sum_logits:
            for rows in _row_blocks(p):  # in blocks: no weight-sized temporaries
                p[rows].copy_(torch.log_softmax(p[rows], -1))
        for i, p in enumerate(m.mix_logits):
            mask = getattr(m, f"mix_mask_{i}")
            for rows in _row_blocks(p):
                p[rows].copy_(torch.log_softmax(p[rows].masked_fill(~mask[rows], -math.inf), 1)
                              .masked_fill(~mask[rows], 0))

    def accumulate(self, x: Tensor, marginalize: Tensor | None = None,
                   target: Tensor | None = None) -> Tensor:
        """E-step on one batch: add its expected statistics; return log p(x) per row, [B].

        For a circuit whose root has K > 1 units (e.g. one density per class), `target` [B]
        picks the unit each row belongs to. With `reduce`, x is this process's share (possibly no
        rows), and a failure is announced to every process at the next update, not raised."""
        if self.reduce is not None:
            return self.reduce.local(self, x, marginalize, target)
        return self.estep(self.model.prepare_input(x, marginalize), target)

    def estep(self, x: Tensor, target: Tensor | None = None, fold: bool = False) -> Tensor:
        """`accumulate` for x as `model.prepare_input` returns it (checked already). With
        `fold` (nothing accumulated before, an update to follow: `step`), each layer's weight
        flows go into the running statistics as the backward pass makes them (`_fold_flows`),
        so that no weight-sized buffer of flows exists."""
        m = self.model
        point_counts = None
        if m.backend == "naive":
            pool_flows, leaf_flows, ll = self._naive_flows(x, target)
        else:
            if self._below_floor is None:
                with m.em_mode():  # (the E-step's own check then reads it back)
                    self._below_floor = m.careful()
            ll, leaf_flows, pool_flows, point_counts = m.flows(
                x, lambda root: self._root_grad(root, target),
                self._fold_flows if fold else None)
        with torch.no_grad():
            counts = self._sum_counts + self._mix_counts
            for i, flows in enumerate(pool_flows):
                counts[i] = flows.clone() if counts[i] is None else counts[i].add_(flows)
            self._sum_counts = counts[:len(self._sum_counts)]
            self._mix_counts = counts[len(self._sum_counts):]
            for i, stats in enumerate(m.leaf_statistics(x, leaf_flows, point_counts)):
                old = self._leaf_stats[i]
                self._leaf_stats[i] = stats if old is None else {
                    k: old[k] + v for k, v in stats.items()}
        self.rows += x.shape[0]
        return ll.detach()

    def _root_grad(self, root: Tensor, target: Tensor | None) -> tuple[Tensor, Tensor]:
        """(L_b, dL/droot) for L = sum_b L_b: the root's value at each row's unit."""
        ll = self._select(root, target)
        if root.shape[1] == 1:
            return ll, torch.ones_like(root)
        target = torch.as_tensor(target, device=root.device).long()
        return ll, torch.zeros_like(root).scatter_(1, target.unsqueeze(1), 1.0)

    def _naive_flows(self, x: Tensor, target: Tensor | None):
        """The naive backend's E-step: node by node, flows by autograd."""
        m = self.model
        weights = list(m.sum_logits) + list(m.mix_logits)
        for w in weights:
            w.grad = None
        with torch.no_grad():
            leaf_values = m.leaf_values(x)
        leaf_values = [v.requires_grad_() for v in leaf_values]
        with m.em_mode():
            ll = self._select(m.evaluate(leaf_values), target)
        ll.sum().backward()
        flows = [w.grad if w.grad is not None else torch.zeros_like(w) for w in weights]
        for w in weights:
            w.grad = None
        return flows, [v.grad for v in leaf_values], ll

    def _select(self, root: Tensor, target: Tensor | None) -> Tensor:
        if root.shape[1] == 1:
            return root[:, 0]
        if target is None:
            raise ShapeError(f"the root has {root.shape[1]} units: pass target [B] to say which "
                             "unit each row belongs to")
        target = torch.as_tensor(target, device=root.device).long()
        if target.shape != root.shape[:1]:
            raise ShapeError(f"target must have shape [{root.shape[0]}], got {list(target.shape)}")
        return root.gather(1, target.unsqueeze(1)).squeeze(1)

    @torch.no_grad()
    def update(self) -> None:
        """Mix the accumulated statistics into the running ones, then the M-step (with
        `reduce`: the statistics of every process, summed)."""
        if self.reduce is not None:
            self.reduce(self)
        if self.rows == 0:
            return
        sums = len(self._sum_counts)
        for i, n in enumerate(self._sum_counts):
            if n is not None:
                self._running_sum[i] = self._fold(self._running_sum[i], n)
                self._m_step("sum", i)
            elif i in self._folded:
                self._m_step_rest("sum", i, i)
        for i, n in enumerate(self._mix_counts):
            if n is not None:
                self._running_mix[i] = self._fold(self._running_mix[i], n)
                self._m_step("mix", i)
            elif sums + i in self._folded:
                self._m_step_rest("mix", i, sums + i)
        m = self.model
        for i, (fam, params, stats) in enumerate(zip(m.families, m.leaf_params, self._leaf_stats)):
            if stats is not None:
                self._running_leaf[i] = self._fold(self._running_leaf[i], stats)
                self._update_leaf(fam, params, self._running_leaf[i])
        if self._below_floor is False and self.min_prob >= 2 * WEIGHT_FLOOR:
            # every weight the M-step wrote is at least min_prob / (1 + c min_prob) (floored,
            # then renormalized over c entries), the others are as the check found them
            m.certify_weights()
        self._reset()

    @torch.no_grad()
    def _fold_flows(self, pool: int, start: int, flows: Tensor) -> None:
        """A flow sink (see `CompiledCircuit.flows`): one layer's flows [n, ...] of rows
        [start, start + n) of a pool (sum pools, then mix pools) folded into the running
        statistics, as `update` folds accumulated ones; `update` then runs the M-step."""
        sums = len(self._running_sum)
        running = self._running_sum if pool < sums else self._running_mix
        i = pool if pool < sums else pool - sums
        if running[i] is None:  # the first update takes the statistics as they are
            weights = (self.model.sum_logits if pool < sums else self.model.mix_logits)[i]
            running[i] = torch.zeros_like(weights)
            self._taken.add(pool)
        rows = running[i].narrow(0, start, flows.shape[0])
        rows.copy_(flows) if pool in self._taken else rows.lerp_(flows, self.step_size)
        self._folded.add(pool)
        if flows.numel() >= STEP_IN_PASSING:  # the M-step now, while the rows are in cache
            self._m_step("sum" if pool < sums else "mix", i, start, flows.shape[0])
            self._stepped.add((pool, start))

    def _fold(self, running, fresh):
        """Stepwise EM: running = (1 - s) running + s fresh, in place; the first is a copy of
        fresh (which may be the engine's buffer)."""
        if running is None:
            return ({k: v.clone() for k, v in fresh.items()} if isinstance(fresh, dict)
                    else fresh.clone())
        return _blend(running, fresh, self.step_size)

    def _m_step(self, kind: str, i: int, start: int = 0, n: int | None = None) -> None:
        """The weights of pool i of `kind` from its running statistics (rows [start, start +
        n) of it, all by default)."""
        m = self.model
        logits, running = ((m.sum_logits[i], self._running_sum[i]) if kind == "sum"
                           else (m.mix_logits[i], self._running_mix[i]))
        n = logits.shape[0] - start if n is None else n
        mask = None if kind == "sum" else getattr(m, f"mix_mask_{i}").narrow(0, start, n)
        _normalize_into(logits.narrow(0, start, n), running.narrow(0, start, n),
                        -1 if kind == "sum" else 1, mask, self.pseudocount, self.min_prob)

    def _m_step_rest(self, kind: str, i: int, pool: int) -> None:
        """The M-step of the rows of pool i that `_fold_flows` did not step already, in runs of
        consecutive rows (all of them in one when it stepped none)."""
        runs: list[list[int]] = []
        for slot in self.model.layout.weighted:
            if slot.kind != kind or slot.pool != i or (pool, slot.start) in self._stepped:
                continue
            if runs and runs[-1][0] + runs[-1][1] == slot.start:
                runs[-1][1] += slot.n
            else:
                runs.append([slot.start, slot.n])
        for start, n in runs:
            self._m_step(kind, i, start, n)

    def _update_leaf(self, fam, params, stats: dict[str, Tensor]) -> None:
        old = {k: v.detach() for k, v in params.as_dict().items()}
        new = fam.estimate(stats, old, self.pseudocount, self.min_prob, self.min_var)
        unseen = stats["n"] < NO_FLOW  # [M, K]: no observed value reached this leaf
        for k, v in new.items():
            p = getattr(params, k)
            keep = unseen.reshape(unseen.shape + (1,) * (v.dim() - 2))
            p.copy_(torch.where(keep, p, v.to(p.dtype)))

    def step(self, x: Tensor, marginalize: Tensor | None = None,
             target: Tensor | None = None) -> float:
        """Online EM on one batch (accumulate, then update); returns the batch's mean log p
        (with `reduce`: of this process's share, 0 for an empty share, after the statistics
        are summed)."""
        if self.graph is not None:
            replayed = self.graph.step(x, marginalize, target)
            if replayed is not None:
                return replayed
        if self.reduce is not None:
            ll = self.accumulate(x, marginalize, target)
            self.update()
            return float(ll.mean()) if len(ll) else 0.0
        ll = self.estep(self.model.prepare_input(x, marginalize), target,
                        fold=self.rows == 0 and self.model.backend != "naive")
        self.update()
        return float(ll.mean())


@torch.no_grad()
def _normalize_into(logits: Tensor, counts: Tensor, dim: int, mask: Tensor | None,
                    pseudocount: float, min_prob: float) -> None:
    """logits = log W, W = (n + a/c) / sum(n + a/c) over the c entries along `dim` (a =
    pseudocount; `mask` marks real entries), floored at min_prob and renormalized, written in
    place; units that received no flow keep their logits. A block of rows at a time, so that
    no temporary is the size of the weights."""
    for rows in _row_blocks(logits):
        _normalize_block(logits[rows], counts[rows], dim, None if mask is None else mask[rows],
                         pseudocount, min_prob)


def _normalize_block(logits: Tensor, counts: Tensor, dim: int, mask: Tensor | None,
                     pseudocount: float, min_prob: float) -> None:
    flow = (counts if mask is None else counts * mask).sum(dim, keepdim=True)
    received = flow >= NO_FLOW
    # a copy to restore units without flow from; the check is free on the CPU (on a GPU it
    # would wait for the device, so there the copy is always made)
    kept = None if logits.device.type == "cpu" and bool(received.all()) else logits.clone()
    entries = counts.shape[dim] if mask is None else mask.sum(dim, keepdim=True)
    w = torch.add(counts, pseudocount / entries, out=logits)
    if mask is not None:
        w.mul_(mask)
    total = flow.add_(pseudocount).clamp_min_(torch.finfo(w.dtype).tiny)  # sum(n + a/c)
    if min_prob > 0:  # W >= min_prob  <=>  w >= min_prob * total
        floor = total * min_prob
        smallest = w if mask is None else w.masked_fill(~mask, math.inf)
        if logits.device.type != "cpu" or bool((smallest.amin(dim, keepdim=True) < floor).any()):
            w = torch.maximum(w, floor, out=w)
            if mask is not None:
                w.mul_(mask)
            total = w.sum(dim, keepdim=True)
    w.log_().sub_(total.log_())
    if mask is not None:
        w.masked_fill_(~mask, 0.0)
    if kept is not None:
        torch.where(received, w, kept, out=w)


def _row_blocks(t: Tensor, values: int = 1 << 20) -> list[slice]:
    """Slices of t's first dimension holding about `values` entries each."""
    step = max(1, values // max(1, t[0].numel())) if len(t) else 1
    return [slice(a, min(a + step, len(t))) for a in range(0, len(t), step)]


def _blend(old, new, step: float):
    """old = (1 - step) old + step new, in place, for tensors or dicts of tensors."""
    for k in (old if isinstance(old, dict) else [None]):
        o, n = (old[k], new[k]) if k is not None else (old, new)
        o.lerp_(n, step)
    return old


def _copied(into, value, like: Tensor):
    """`value` (a tensor, a dict of them, or None) on `like`'s device: copied into `into` (same
    structure and shapes) in place, else a fresh copy."""
    if value is None:
        return None
    if isinstance(value, dict):
        inner = into if isinstance(into, dict) and into.keys() == value.keys() else {}
        return {k: _copied(inner.get(k), v, like) for k, v in value.items()}
    if into is not None and into.shape == value.shape and into.dtype == value.dtype:
        return into.copy_(value)
    return value.to(like.device, copy=True)


def _add(acc: Tensor | None, value: Tensor | None) -> Tensor | None:
    """acc + value, in place; the first value is taken as it is (the caller drops its grad)."""
    if value is None:
        return acc
    return value.detach() if acc is None else acc.add_(value)
