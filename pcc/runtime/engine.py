"""The engine: run a plan's layers over arenas with a kernel set, upward and (explicitly) backward.

Values are linear with a log-scale per (row, sample) (`pcc_kernels.reference`): every layer
multiplies, contracts with probability-space weights, and divides each row by its maximum, which
it records as the row's *norm*. A norm is the range the layer lost: float32 resolves a row's
units exactly while every layer keeps them within ~2^126 of each other, so a norm below
`RANGE_LIMIT` (2^-32) marks a sample whose values came near that edge (or are exactly zero).
`Program.evaluate` runs the batch in the model's dtype, then runs the marked samples again in
float64 (whose range is 2^1022) through the same layers and takes their results from there;
`Program.backward` does the same for the flows. So the common sample pays for linear arithmetic
only, and none loses precision to it.

A program is *bound* to a batch size (`Bound`): arenas, the flows of the backward pass, the
linear weights of each pool and the layers' scratch buffers are allocated once and reused by
every batch of that size (on the CPU a fresh large allocation costs a page fault per 4 KiB), and
each layer is built once onto its rows.

Tied weights (`pcc.runtime.layout`): an op whose pool rows are shared with other ops (or
repeated within it) gets `TiedRows`. Its layer reads a view of the pool's linear weights when the
rows are one block, else a buffer that `Bound.forward` gathers them into; its flows go to a
scratch buffer (one per pool, shared by the tied layers) that `Bound.backward` adds into the
pool's flows at its rows right after the layer's backward, so a tied row's flows are the sum of
every copy's. Layers see plain per-op weight and flow tensors either way.

The whole sum/product part of a circuit is one `torch.autograd.Function` (`CircuitFunction`):
autograd sees only the leaf log-values and the pooled log-weights; the engine's backward gives
the flows dL/dlog(leaf value) and W * dL/dW.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Callable, NamedTuple, Sequence

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from pcc_kernels.reference import Arena, Children, Scratch, from_log, to_log

# A layer whose raw maximum falls below this (its children's maxima being 1) sends the sample
# to the float64 pass (see the module doc).
RANGE_LIMIT = 2.0 ** -32
WIDE = torch.float64


class TiedRows(NamedTuple):
    """An op's rows of its weight pool where some are shared (tied): `rows` [n] on the run
    device; `block` when they are one ascending block (a view reads them)."""

    rows: Tensor
    block: bool


@dataclass(frozen=True)
class LoweredEinsum:
    """An EinsumOp with its index arrays as tensors on the run device (or ints for blocks)."""

    child_k: tuple[int, ...]
    k_out: int
    child_rows: tuple  # Tensor [N] or int per slot
    out_start: int
    n: int
    weight: int | None  # the op's position among weighted ops; None for plain products
    pool: tuple[int, int] | None  # (pool, first row) of its weights
    tied: TiedRows | None = None  # its rows where some are shared


@dataclass(frozen=True)
class LoweredHadamard:
    """A HadamardOp: children rows of arena k_in (`Children`), output rows of arena k_out."""

    k_in: int
    k_out: int
    children: Children
    out_start: int
    n: int
    weight: int
    pool: tuple[int, int]
    tied: TiedRows | None = None

    @property
    def child_rows(self) -> Tensor:
        """[N, A], padded with row 0."""
        return self.children.rows


@dataclass(frozen=True)
class LoweredMix:
    k: int
    part_rows: Tensor  # [N, P]
    mask: Tensor  # [N, P] True for real partitions
    out_start: int
    n: int
    weight: int
    pool: tuple[int, int]
    tied: TiedRows | None = None


@dataclass(frozen=True)
class LeafSlot:
    """Where a leaf group's values [n, B, k] go: rows [start, start+n) of arena k."""

    k: int
    start: int
    n: int


class Linear(NamedTuple):
    """Leaf values already in linear space: values [R, B, K] in [0, 1], log-scale 0 (possibly
    the arena rows themselves, written in place)."""

    values: Tensor


LeafInput = Tensor | Linear  # log-values [R, B, K], or linear values


class Bound:
    """A program bound to one batch size, dtype and device (see the module doc); with
    `backward`, also its flow arenas and weight flows."""

    def __init__(self, program: "Program", batch: int, like: Tensor, backward: bool):
        self.program, self.batch, self.backward_ready = program, batch, backward
        self.in_use = False
        kernels = program.kernels
        self.arenas = {k: Arena.empty(rows, batch, k, like) for k, rows in
                       program.arena_rows.items()}
        for arena in self.arenas.values():  # row 0: the neutral child of padded products
            arena.values[0].fill_(1.0)
            arena.scales[0].zero_()
            arena.norms[0].fill_(1.0)
        self.weights = [like.new_empty(shape) for shape in program.pool_shapes]
        self.flows = [like.new_empty(shape) for shape in program.pool_shapes] if backward else []
        # tied ops (see the module doc): (pool, rows, buffer) of the weights to gather, and per
        # layer (pool flows, rows, its flows) to add in after its backward
        self.gathers: list[tuple[int, Tensor, Tensor]] = []
        self.scatters: list[tuple[Tensor, Tensor, Tensor] | None] = []
        tied_rows: dict[int, int] = {}  # pool -> the most rows one tied op of it has
        for op in program.ops:
            if op.tied is not None:
                tied_rows[op.pool[0]] = max(op.n, tied_rows.get(op.pool[0], 0))
        self.tie_flows = {pool: like.new_empty(n, *program.pool_shapes[pool][1:])
                          for pool, n in tied_rows.items()} if backward else {}
        self.grads = ({k: torch.zeros_like(a.values) for k, a in self.arenas.items()}
                      if backward else {})
        self.leaf_rows = [self.arenas[s.k].rows(s.start, s.n) for s in program.leaves]
        scratch = Scratch(like)
        self.layers = [self._layer(kernels, op, scratch) for op in program.ops]
        scratch.allocate()
        for layer in self.layers:
            layer.attach()

    def _layer(self, kernels: ModuleType, op, scratch: Scratch):
        arenas, grads = self.arenas, self.grads
        w = flows = scatter = None
        if op.pool is not None:
            pool, start = op.pool
            if op.tied is None or op.tied.block:
                w = self.weights[pool].narrow(0, start, op.n)
            else:
                w = self.weights[pool].new_empty(op.n, *self.weights[pool].shape[1:])
                self.gathers.append((pool, op.tied.rows, w))
            if self.flows and op.tied is None:
                flows = self.flows[pool].narrow(0, start, op.n)
            elif self.flows:
                flows = self.tie_flows[pool].narrow(0, 0, op.n)
                scatter = (self.flows[pool], op.tied.rows, flows)
        self.scatters.append(scatter)
        k_out = op.k if isinstance(op, LoweredMix) else op.k_out
        out = arenas[k_out].rows(op.out_start, op.n)
        grad_out = grads[k_out].narrow(0, op.out_start, op.n) if grads else None
        if isinstance(op, LoweredEinsum):
            if w is None:  # a plain product: the constant weight 1
                w = self.arenas[k_out].values.new_ones(op.n, op.k_out, 1)
            return kernels.EinsumLayer([arenas[k] for k in op.child_k], op.child_rows, w, out,
                                       scratch, [grads[k] for k in op.child_k] if grads else None,
                                       grad_out, flows)
        if isinstance(op, LoweredHadamard):
            return kernels.HadamardLayer(arenas[op.k_in], op.children, w, out, scratch,
                                         grads.get(op.k_in), grad_out, flows)
        return kernels.MixLayer(arenas[op.k], op.part_rows, op.mask, w, out, scratch,
                                grads.get(op.k), grad_out, flows)

    def forward(self, leaf_inputs: Sequence[LeafInput], log_pools: Sequence[Tensor],
                semiring: str = "sum") -> None:
        """Every node's value for this batch (max-product if semiring='max')."""
        for w, lw in zip(self.weights, log_pools):
            torch.exp(lw.detach(), out=w)
        for pool, rows, w in self.gathers:
            torch.index_select(self.weights[pool], 0, rows, out=w)
        for rows, leaf in zip(self.leaf_rows, leaf_inputs):
            if isinstance(leaf, Linear):
                if leaf.values.data_ptr() != rows.values.data_ptr():
                    rows.values.copy_(leaf.values)
                rows.scales.zero_()
                rows.norms.fill_(1.0)
            else:
                from_log(leaf, rows)
        for layer in self.layers:
            layer.forward(semiring)

    def root(self) -> Tensor:
        """The root region's log-values, [B, K_root] (a new tensor)."""
        p = self.program
        return to_log(self.arenas[p.root_k].rows(p.root_row, 1))[0]

    def out_of_range(self) -> Tensor | None:
        """The samples some layer's norm put below RANGE_LIMIT ([F] long), or None."""
        flagged = None
        for arena in self.arenas.values():
            low = (arena.norms < RANGE_LIMIT).any(0)
            flagged = low if flagged is None else flagged.logical_or_(low)
        if flagged is None or not bool(flagged.any()):
            return None
        return flagged.nonzero().squeeze(1)

    def backward(self, grad_root: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        """Flows of the leaf values (dL/dlog value, [R, B, K] per leaf group: views of this
        binding's flow arenas) and of every pool (W * dL/dW: this binding's buffers), given
        dL/droot [B, K_root]."""
        p = self.program
        for g in self.grads.values():
            g.zero_()
        self.grads[p.root_k][p.root_row].copy_(grad_root)
        for pool in self.tie_flows:  # tied rows receive only the additions below
            self.flows[pool].zero_()
        for layer, scatter in zip(reversed(self.layers), reversed(self.scatters)):
            layer.backward()
            if scatter is not None:
                flows, rows, tied = scatter
                flows.index_add_(0, rows, tied)
        leaves = [self.grads[s.k].narrow(0, s.start, s.n) for s in p.leaves]
        return leaves, self.flows


@dataclass
class Evaluation:
    """An upward pass of a batch, and of its out-of-range samples `wide_rows` again in float64."""

    main: Bound
    root: Tensor  # [B, K_root] log-values
    wide: Bound | None = None
    wide_rows: Tensor | None = None  # [F] long


Binder = Callable[[int, Tensor, bool], Bound]  # (batch, like, backward) -> a free binding


@dataclass(frozen=True)
class Program:
    """A lowered plan: arenas, where the leaves go, the layers in order, where the root is, the
    shapes of the weight pools."""

    arena_rows: dict[int, int]
    leaves: tuple[LeafSlot, ...]
    ops: tuple
    root_k: int
    root_row: int
    pool_shapes: tuple[tuple[int, int, int], ...]  # every pool, sum pools first
    kernels: ModuleType

    def bind(self, batch: int, like: Tensor, backward: bool = False) -> Bound:
        return Bound(self, batch, like, backward)

    def evaluate(self, leaf_inputs: Sequence[LeafInput], log_pools: Sequence[Tensor],
                 semiring: str = "sum", bound: Bound | None = None,
                 backward: bool = False) -> Evaluation:
        """Every node's value for this batch (on `bound`, or a new binding), and the
        out-of-range samples' again in float64 (see the module doc)."""
        ref = _values(leaf_inputs[0])
        main = bound if bound is not None else self.bind(ref.shape[1], ref, backward)
        main.forward(leaf_inputs, log_pools, semiring)
        root = main.root()
        if ref.is_cuda and torch.cuda.is_current_stream_capturing():
            return Evaluation(main, root)  # a CUDA graph cannot branch on its data
        rows = main.out_of_range()
        if rows is None:
            return Evaluation(main, root)
        wide = self.bind(len(rows), ref.new_empty(0, dtype=WIDE), main.backward_ready)
        wide.forward([_wide(v, rows) for v in leaf_inputs],
                     [p.detach().to(WIDE) for p in log_pools], semiring)
        root.index_copy_(0, rows, wide.root().to(root.dtype))
        return Evaluation(main, root, wide, rows)

    def backward(self, evaluation: Evaluation, grad_root: Tensor
                 ) -> tuple[list[Tensor], list[Tensor]]:
        """Flows of the leaf values (dL/dlog value, [R, B, K] per leaf group) and of every pool
        (W * dL/dW), given dL/droot [B, K_root]; views of the main binding's buffers."""
        main, wide, rows = evaluation.main, evaluation.wide, evaluation.wide_rows
        if wide is None:
            return main.backward(grad_root)
        wide_leaves, wide_flows = wide.backward(grad_root.index_select(0, rows).to(WIDE))
        leaves, flows = main.backward(grad_root.index_fill(0, rows, 0.0))
        for grad, extra in zip(leaves, wide_leaves):
            grad.index_copy_(1, rows, extra.to(grad.dtype))
        for f, extra in zip(flows, wide_flows):
            f.add_(extra.to(f.dtype))
        return leaves, flows

    def log_arenas(self, evaluation: Evaluation) -> dict[int, Tensor]:
        """Every node's log-values {K: [rows, B, K]} (the float64 pass's for its samples)."""
        out = {k: to_log(a) for k, a in evaluation.main.arenas.items()}
        if evaluation.wide is not None:
            for k, a in evaluation.wide.arenas.items():
                out[k].index_copy_(1, evaluation.wide_rows, to_log(a).to(out[k].dtype))
        return out


def _values(leaf: LeafInput) -> Tensor:
    return leaf.values if isinstance(leaf, Linear) else leaf


def _wide(leaf: LeafInput, rows: Tensor) -> LeafInput:
    """A leaf input's samples `rows`, in float64."""
    if isinstance(leaf, Linear):
        return Linear(leaf.values.index_select(1, rows).to(WIDE))
    return leaf.index_select(1, rows).to(WIDE)


class CircuitFunction(torch.autograd.Function):
    """root = circuit(leaf log-values, pooled log-weights); backward gives the leaf flows and the
    pools' flows (the gradients of log-values and log-weights)."""

    @staticmethod
    def forward(ctx, program: Program, binder: Binder, num_leaf: int, *tensors: Tensor
                ) -> Tensor:
        leaf_values, log_pools = tensors[:num_leaf], tensors[num_leaf:]
        bound = binder(leaf_values[0].shape[1], leaf_values[0], True)
        bound.in_use = True
        evaluation = program.evaluate(leaf_values, log_pools, bound=bound)
        ctx.program, ctx.evaluation = program, evaluation
        return evaluation.root

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_root: Tensor):
        leaves, flows = ctx.program.backward(ctx.evaluation, grad_root.contiguous())
        out = [g.clone() for g in leaves] + [f.clone() for f in flows]
        ctx.evaluation.main.in_use = False
        ctx.evaluation = None
        return (None, None, None, *out)
