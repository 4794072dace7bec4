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
value and a sum unit that never received flow keep their parameters. Probabilities are floored
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
from .runtime.module import CompiledCircuit

if TYPE_CHECKING:
    from .distributed import StatisticsReducer


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
        self.running: list | None = None  # statistics the M-step reads (see module doc)
        self._reset()
        self.reduce = reduce  # data-parallel: sums the statistics over the processes
        # cuda_graph: `step` replays a captured E-step + M-step on CUDA (pcc.runtime.graphs)
        self.graph = EMGraph(self) if cuda_graph and reduce is None else None

    def _reset(self) -> None:
        """Clear the statistics accumulated since the last update."""
        self.rows = 0
        self._sum_counts: list[Tensor | None] = [None] * len(self.model.sum_logits)
        self._mix_counts: list[Tensor | None] = [None] * len(self.model.mix_logits)
        self._leaf_stats: list[dict[str, Tensor] | None] = [None] * len(self.model.leaf_params)

    @torch.no_grad()
    def _normalize_weights(self) -> None:
        """Project the logits onto normalized log-weights (EM's invariant)."""
        m = self.model
        for p in m.sum_logits:
            p.copy_(torch.log_softmax(p, -1))
        for i, p in enumerate(m.mix_logits):
            mask = getattr(m, f"mix_mask_{i}")
            p.copy_(torch.log_softmax(p.masked_fill(~mask, -math.inf), 1).masked_fill(~mask, 0))

    def discard(self) -> None:
        """Drop the statistics accumulated since the last update."""
        self._reset()

    def accumulate(self, x: Tensor, marginalize: Tensor | None = None,
                   target: Tensor | None = None) -> Tensor:
        """E-step on one batch: add its expected statistics; return log p(x) per row, [B].

        For a circuit whose root has K > 1 units (e.g. one density per class), `target` [B]
        picks the unit each row belongs to. With `reduce`, x is this process's share (possibly no
        rows), and a failure is announced to every process at the next update, not raised."""
        if self.reduce is not None:
            return self.reduce.local(self, x, marginalize, target)
        return self.estep(self.model.prepare_input(x, marginalize), target)

    def estep(self, x: Tensor, target: Tensor | None = None) -> Tensor:
        """`accumulate` for x as `model.prepare_input` returns it (checked already)."""
        m = self.model
        weights = list(m.sum_logits) + list(m.mix_logits)
        for w in weights:
            w.grad = None
        with torch.no_grad():
            leaf_values = m.leaf_values(x)
        leaf_values = [v.requires_grad_() for v in leaf_values]
        with m.em_mode():
            root = m.evaluate(leaf_values)
        ll = self._select(root, target)
        ll.sum().backward()
        with torch.no_grad():
            for i, w in enumerate(m.sum_logits):
                self._sum_counts[i] = _add(self._sum_counts[i], w.grad)
            for i, w in enumerate(m.mix_logits):
                self._mix_counts[i] = _add(self._mix_counts[i], w.grad)
            leaf_stats = m.leaf_statistics(x, [v.grad for v in leaf_values])
            for i, stats in enumerate(leaf_stats):
                old = self._leaf_stats[i]
                self._leaf_stats[i] = stats if old is None else {
                    k: old[k] + v for k, v in stats.items()}
        for w in weights:
            w.grad = None
        self.rows += x.shape[0]
        return ll.detach()

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
        fresh = [self._sum_counts, self._mix_counts, self._leaf_stats]
        s = self.step_size
        if self.running is None:
            self.running = fresh
        else:
            self.running = [[_blend(old, new, s) for old, new in zip(olds, news)]
                            for olds, news in zip(self.running, fresh)]
        self._m_step(*self.running)
        self._reset()

    def _m_step(self, sum_counts, mix_counts, leaf_stats) -> None:
        m = self.model
        floor = math.log(self.min_prob) if self.min_prob > 0 else -math.inf
        for w, n in zip(m.sum_logits, sum_counts):
            w.copy_(self._normalized(w, n, -1, None, floor))
        for i, (w, n) in enumerate(zip(m.mix_logits, mix_counts)):
            w.copy_(self._normalized(w, n, 1, getattr(m, f"mix_mask_{i}"), floor))
        for fam, params, stats in zip(m.families, m.leaf_params, leaf_stats):
            old = {k: v.detach() for k, v in params.as_dict().items()}
            new = fam.estimate(stats, old, self.pseudocount, self.min_prob, self.min_var)
            unseen = stats["n"] <= 0  # [M, K]: no observed value reached this leaf
            for k, v in new.items():
                p = getattr(params, k)
                keep = unseen.reshape(unseen.shape + (1,) * (v.dim() - 2))
                p.copy_(torch.where(keep, p, v.to(p.dtype)))

    def _normalized(self, logits: Tensor, counts: Tensor, dim: int, mask: Tensor | None,
                    floor: float) -> Tensor:
        """log((n + a/c) / sum(n + a/c)) over the c entries along `dim` (a = pseudocount),
        floored at `floor`; units that never received flow keep `logits`. One temporary."""
        received = counts.sum(dim, keepdim=True) > 0
        entries = counts.shape[dim] if mask is None else mask.sum(dim, keepdim=True)
        w = counts + self.pseudocount / entries
        if mask is not None:
            w.mul_(mask)
        w.div_(w.sum(dim, keepdim=True).clamp_min(torch.finfo(w.dtype).tiny))
        if floor > -math.inf:
            w.clamp_min_(math.exp(floor))
        if mask is not None:
            w.mul_(mask)
        w = w.div_(w.sum(dim, keepdim=True)).log_()
        if mask is not None:
            w.masked_fill_(~mask, 0.0)
        return w.where(received, logits)

    def step(self, x: Tensor, marginalize: Tensor | None = None,
             target: Tensor | None = None) -> float:
        """Online EM on one batch (accumulate, then update); returns the batch's mean log p
        (0 for a process's empty share of a batch)."""
        if self.graph is not None:
            replayed = self.graph.step(x, marginalize, target)
            if replayed is not None:
                return replayed
        ll = self.accumulate(x, marginalize, target)
        self.update()
        return float(ll.mean()) if len(ll) else 0.0


def _blend(old, new, step: float):
    """old = (1 - step) old + step new, in place, for tensors or dicts of tensors."""
    for k in (old if isinstance(old, dict) else [None]):
        o, n = (old[k], new[k]) if k is not None else (old, new)
        o.mul_(1 - step).add_(n, alpha=step)
    return old


def _add(acc: Tensor | None, value: Tensor | None) -> Tensor | None:
    """acc + value, in place; the first value is taken as it is (the caller drops its grad)."""
    if value is None:
        return acc
    return value.detach() if acc is None else acc.add_(value)
