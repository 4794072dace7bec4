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
repeated within it) carries its rows (`TiedRows`). Its layer reads a view of the pool's weights
when the rows are one block, else a buffer gathered from them before each of its passes (the one
buffer layers share in turn). Its weight flows go to a buffer that is added into the pool's
flows at its rows right after the layer's backward, so a tied row's flows are the sum of every
copy's; in sink mode a pool with tied ops hands its flows over whole, after the pass (EM sees
only complete sums). Point sums over tied point inputs read the input's table at its parameter
row (`points` of `LoweredEinsum`). Layers see plain per-op weight and flow tensors either way.

The whole sum/product part of a circuit is one `torch.autograd.Function` (`CircuitFunction`):
autograd sees only the leaf log-values and the pooled log-weights; the engine's backward gives
the flows dL/dlog(leaf value) and W * dL/dW.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from math import prod
from types import ModuleType
from typing import Callable, NamedTuple, Sequence

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from pcc_kernels.reference import Arena, Children, PointSource, Rows, Scratch, from_log, to_log


class RangeWarning(UserWarning):
    """Some samples lie beyond what even the float64 pass represents (see `Program.evaluate`)."""


# A layer whose raw maximum falls below this (its children's maxima being 1) sends the sample
# to the float64 pass (see the module doc).
RANGE_LIMIT = 2.0 ** -32
# The float64 pass's: a unit below float64's range, lost in a product whose largest is at least
# this, changes the sum above it (weights >= 2^-70) by at most 2^-1022 / (2^-928 2^-70) = 2^-24.
WIDE_RANGE_LIMIT = 2.0 ** -928
WIDE = torch.float64
WHOLE_POOL = 1 << 20  # see `Bound.__init__`


class TiedRows(NamedTuple):
    """An op's rows of its weight pool where some are shared (tied): `rows` [n] (long, on the
    run device); `block` when they are [start, start + n) (a view reads them)."""

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
    # point sums: (leaf block, members, S, the members' rows of the block's table: None when
    # they are the members, else their parameter rows, for tied point inputs)
    points: tuple[int, Tensor, int, Tensor | None] | None = None
    overwrite: tuple | None = None  # per child slot, which flows are written (`flow_writes`)
    tied: TiedRows | None = None  # its weight rows where some are shared


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
    overwrite: Tensor | None = None  # [N, A]
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
    overwrite: Tensor | None = None  # [N, P]
    tied: TiedRows | None = None


@dataclass(frozen=True)
class LeafSlot:
    """Where a leaf group's values [n, B, k] go: rows [start, start+n) of arena k."""

    k: int
    start: int
    n: int


FlowSink = Callable[[int, int, Tensor], None]  # (pool, first row, flows [n, ...]) of one layer


class Linear(NamedTuple):
    """Leaf values already in linear space: values [R, B, K] in [0, 1], log-scale 0 (possibly
    the arena rows themselves, written in place)."""

    values: Tensor


class Points(NamedTuple):
    """A group of point inputs (one discrete variable each) by table lookup: `table`
    [U * (S+1), K] in probability space (one table per parameter row: U = R unless inputs are
    tied), `codes` [R, B] (long) the table row of each (region, sample), `onehot()` [R, S+1, B]
    the values as one-hot columns, made when first asked for (`pcc.runtime.leaf_tables.
    PointTables`); its point sums read them directly."""

    table: Tensor
    codes: Tensor
    onehot: Callable[[], Tensor]
    support: int


LeafInput = Tensor | Linear | Points  # log-values [R, B, K], linear values, or point tables


class Bound:
    """A program bound to one batch size, dtype and device (see the module doc); with
    `backward`, also its flow arenas and weight flows."""

    def __init__(self, program: "Program", batch: int, like: Tensor, backward: bool,
                 points: bool = True, weights: Sequence[Tensor] | None = None,
                 sink: bool = False):
        self.program, self.batch, self.backward_ready = program, batch, backward
        self.points_ready = points  # point sums folded (needs `Points` leaf inputs)
        self.in_use = False
        kernels = program.kernels
        # every arena's norms are rows of one tensor, checked at once (`out_of_range`)
        self.norms = like.new_empty(sum(program.arena_rows.values()), batch)
        self.arenas, first = {}, 0
        scales = getattr(kernels, "SCALES", like.dtype)  # the log-scales' dtype
        for k, rows in program.arena_rows.items():
            self.arenas[k] = Arena(like.new_empty(rows, batch, k),
                                   like.new_empty(rows, batch, dtype=scales),
                                   self.norms.narrow(0, first, rows))
            first += rows
        for arena in self.arenas.values():  # row 0: the neutral child of padded products
            arena.values[0].fill_(1.0)
            arena.scales[0].zero_()
            arena.norms[0].fill_(1.0)
        # the pools' weights W: the caller's own tensors, kept current by it (`weights`), or each
        # layer's made from the log-weights as the layer runs, in one buffer of the largest
        # layer's size (no weight-sized copy: what EM and autograd use)
        self.shared_weights = weights is not None and all(
            w.dtype == like.dtype and w.device == like.device for w in weights)
        self.weights = list(weights) if self.shared_weights else None
        # (pools of at most WHOLE_POOL weights are exponentiated whole, once a pass, and in sink
        # mode their flows handed over whole after the pass: fewer calls; the others a layer at
        # a time)
        self._whole = ({} if self.shared_weights else
                       {i: like.new_empty(shape) for i, shape in enumerate(program.pool_shapes)
                        if prod(shape) <= WHOLE_POOL})
        sizes = [op.n * prod(program.pool_shapes[op.pool[0]][1:]) for op in program.ops
                 if op.pool is not None and (_gathers(op) or not self.shared_weights
                                             and op.pool[0] not in self._whole)]
        self._layer_w = like.new_empty(max(sizes, default=0)) if sizes else None
        self.layer_log_w: list = []  # per layer: (pool, first row, n, its W view) or None
        self._log_pools: Sequence[Tensor] = ()
        self._linear_leaves = [False] * len(program.leaves)
        # weight flows: whole pools, or (`sink`) each layer's in scratch, handed to a sink
        self.sink_ready = backward and sink
        self.flows = ([like.new_empty(shape) for shape in program.pool_shapes]
                      if backward and not sink else [])
        self.grads = ({k: torch.zeros_like(a.values) for k, a in self.arenas.items()}
                      if backward else {})
        self.leaf_rows = [self.arenas[s.k].rows(s.start, s.n) for s in program.leaves]
        self.overwrites = getattr(kernels, "OVERWRITES", False)
        self.sources: dict[int, PointSource] = {}  # leaf block -> its point tables
        self.counts: dict[int, Tensor] = {}  # leaf block -> counts [R, S+1, K] of point sums
        if points:
            for op in program.ops:
                if isinstance(op, LoweredEinsum) and self._folds(op):
                    block, _, support, _ = op.points
                    self.sources.setdefault(block, PointSource())
                    if backward and block not in self.counts:
                        slot = program.leaves[block]
                        self.counts[block] = like.new_zeros(slot.n, support + 1, slot.k)
        self._folded_blocks = set(self.sources)
        # point blocks whose rows only products read, as their first children: those products
        # look their first children up in the block's table, and the rows are not written
        # (`materialize` writes them when asked for the arenas)
        self.point_firsts = (_point_firsts(program, self._folds)
                             if points and getattr(kernels, "GATHERS_POINTS", False) else {})
        for block, _ in self.point_firsts.values():
            self.sources.setdefault(block, PointSource())
        self._fused_blocks = {block for block, _ in self.point_firsts.values()}
        self._unwritten: dict[int, Points] = {}
        scratch = Scratch(like)
        # sink mode: every layer's flows in one buffer, in turn (the largest layer's size)
        # (and pools with tied ops: their rows are complete only after the pass)
        self.tied_pools = sorted({op.pool[0] for op in program.ops
                                  if op.pool is not None and op.tied is not None})
        self._whole_flows = ({i: like.new_empty(program.pool_shapes[i])
                              for i in {*self._whole, *self.tied_pools}}
                             if self.sink_ready else {})
        largest = max((op.n * prod(shape[1:]) for op in program.ops if op.pool is not None
                       and op.pool[0] not in self._whole_flows
                       for shape in [program.pool_shapes[op.pool[0]]]), default=0)
        self._sink_buffer = like.new_empty(largest) if self.sink_ready else None
        # tied ops' flows, each in turn, before they are added into their pool's
        tied = [op.n * prod(program.pool_shapes[op.pool[0]][1:]) for op in program.ops
                if op.pool is not None and op.tied is not None]
        self._tie_buffer = like.new_empty(max(tied)) if backward and tied else None
        self.tie_adds: list = []  # per layer: (pool flows, rows, its flows) or None
        self.layer_flows: list = []  # per layer: (pool, first row, its flows) in sink mode
        self.layers = [self._layer(kernels, j, op, scratch) for j, op in enumerate(program.ops)]
        scratch.allocate()
        for layer in self.layers:
            layer.attach()

    def _folds(self, op: "LoweredEinsum") -> bool:
        """Whether this binding folds a point sum (`PointSumLayer`) rather than contracting its
        input sample by sample: a table over the S + 1 value columns costs about
        (S+1) (B + 2K) Ko multiply-adds a pass (forward, flows and counts), the contraction
        3 B K Ko; so folding pays when (S+1) (B + 2K) <= 3 B K (any binary or small variable,
        not a wide categorical at a small batch)."""
        if op.points is None or not self.points_ready:
            return False
        support, k = op.points[2], op.child_k[0]
        return (support + 1) * (self.batch + 2 * k) <= 3 * self.batch * k

    def _layer(self, kernels: ModuleType, j: int, op, scratch: Scratch):
        arenas, grads = self.arenas, self.grads
        w = flows = None
        sink_flows = layer_w = tie_add = None
        if op.pool is not None:
            pool, start = op.pool
            shape = (op.n, *self.program.pool_shapes[pool][1:])
            if _gathers(op):  # its rows gathered before each of its passes
                w = self._layer_w[:prod(shape)].view(shape)
                layer_w = (pool, start, op.n, w, op.tied.rows)
            elif self.shared_weights:
                w = self.weights[pool].narrow(0, start, op.n)
            elif pool in self._whole:
                w = self._whole[pool].narrow(0, start, op.n)
            else:
                w = self._layer_w[:prod(shape)].view(shape)
                layer_w = (pool, start, op.n, w, None)
            pool_flows = (self.flows[pool] if self.flows else self._whole_flows.get(pool)
                          if self.sink_ready else None)
            if op.tied is not None and self.backward_ready:
                flows = self._tie_buffer[:prod(shape)].view(shape)
                tie_add = (pool_flows, op.tied.rows, flows)
            elif pool_flows is not None:
                flows = pool_flows.narrow(0, start, op.n)
            elif self.sink_ready:
                flows = self._sink_buffer[:w.numel()].view(w.shape)
                sink_flows = (pool, start, flows)
        self.layer_flows.append(sink_flows)
        self.layer_log_w.append(layer_w)
        self.tie_adds.append(tie_add)
        k_out = op.k if isinstance(op, LoweredMix) else op.k_out
        out = arenas[k_out].rows(op.out_start, op.n)
        grad_out = grads[k_out].narrow(0, op.out_start, op.n) if grads else None
        if isinstance(op, LoweredEinsum) and self._folds(op):
            block, members, support, table_rows = op.points
            return kernels.PointSumLayer(self.sources[block], members, support, w, out, scratch,
                                         grad_out, flows, self.counts.get(block), table_rows)
        # written flows (`pcc.passes.flow_writes`) where the kernels can: else everything adds
        writes = {"overwrite": op.overwrite} if self.overwrites and grads else {}
        if isinstance(op, LoweredEinsum):
            if w is None:  # a plain product: the constant weight 1
                w = self.arenas[k_out].values.new_ones(op.n, op.k_out, 1)
            return kernels.EinsumLayer([arenas[k] for k in op.child_k], op.child_rows, w, out,
                                       scratch, [grads[k] for k in op.child_k] if grads else None,
                                       grad_out, flows, **writes)
        if isinstance(op, LoweredHadamard):
            firsts = self.point_firsts.get(j)
            if firsts is not None:
                writes["first_points"] = (self.sources[firsts[0]], firsts[1])
            return kernels.HadamardLayer(arenas[op.k_in], op.children, w, out, scratch,
                                         grads.get(op.k_in), grad_out, flows, **writes)
        return kernels.MixLayer(arenas[op.k], op.part_rows, op.mask, w, out, scratch,
                                grads.get(op.k), grad_out, flows, **writes)

    def forward(self, leaf_inputs: Sequence[LeafInput], log_weights: Sequence[Tensor],
                semiring: str = "sum") -> None:
        """Every node's value for this batch (max-product if semiring='max'), given each pool's
        log-weights (read only by a binding that does not share its caller's W)."""
        self._log_pools = log_weights
        self._exponentiate_whole()
        for i, (rows, leaf) in enumerate(zip(self.leaf_rows, leaf_inputs)):
            if isinstance(leaf, Points):
                k = rows.values.shape[-1]
                if i in self._fused_blocks:
                    self._unwritten[i] = leaf
                else:
                    _look_up(leaf, rows.values)
                if i in self.sources:
                    self.sources[i].table = leaf.table.view(-1, leaf.support + 1, k)
                    self.sources[i].codes = leaf.codes
                    self.sources[i].onehot = (leaf.onehot() if self.backward_ready
                                              and i in self._folded_blocks else None)
                leaf = Linear(rows.values)
            elif i in self.sources:
                raise ValueError("a binding that folds point sums needs their inputs' tables")
            linear = isinstance(leaf, Linear)
            if linear:
                if leaf.values.data_ptr() != rows.values.data_ptr():
                    rows.values.copy_(leaf.values)
                if not self._linear_leaves[i]:  # scale 0 and norm 1 stay until a log input
                    rows.scales.zero_()
                    rows.norms.fill_(1.0)
            else:
                from_log(leaf, rows)
            self._linear_leaves[i] = linear
        for layer, layer_w in zip(self.layers, self.layer_log_w):
            self._exponentiate(layer_w)
            layer.forward(semiring)

    def materialize(self) -> None:
        """Write the rows of the point blocks the last pass only looked up (see `__init__`)."""
        for i, leaf in self._unwritten.items():
            _look_up(leaf, self.leaf_rows[i].values)
        self._unwritten.clear()

    def _exponentiate_whole(self) -> None:
        """W = exp(log W) of the small pools (see `__init__`)."""
        for pool, w in self._whole.items():
            torch.exp(self._log_pools[pool].detach(), out=w)

    def _exponentiate(self, layer_w) -> None:
        """The layer's W = exp(log W), into the one buffer layers share in turn (its rows
        gathered from the pool where they are not one block)."""
        if layer_w is None:
            return
        pool, start, n, w, rows = layer_w
        if rows is None:
            torch.exp(self._log_pools[pool].detach().narrow(0, start, n), out=w)
        elif self.shared_weights or pool in self._whole:
            source = self.weights[pool] if self.shared_weights else self._whole[pool]
            torch.index_select(source, 0, rows, out=w)
        else:
            torch.exp(self._log_pools[pool].detach().index_select(0, rows), out=w)

    def root(self) -> Tensor:
        """The root region's log-values, [B, K_root] (a new tensor)."""
        p = self.program
        return to_log(self.arenas[p.root_k].rows(p.root_row, 1))[0]

    def unresolved(self, leaf_inputs: Sequence[LeafInput] | None) -> Tensor | None:
        """The samples of this (float64) pass that may still have lost a unit ([U] long), or
        None: some layer's norm below WIDE_RANGE_LIMIT, or, where `leaf_inputs` (this pass's)
        are given (weights below the floor, see `Program.evaluate`), a leaf unit below the
        range."""
        bad = (self.norms < WIDE_RANGE_LIMIT).any(0) if self.norms.numel() else None
        for leaf in leaf_inputs or ():
            if isinstance(leaf, Tensor):  # log-values: (point and linear inputs lose none)
                below = _below_range(leaf)
                bad = below if bad is None else bad | below
        return None if bad is None or not bool(bad.any()) else bad.nonzero().squeeze(1)

    def out_of_range(self) -> Tensor | None:
        """The samples some layer's norm put below RANGE_LIMIT ([F] long), or None."""
        if not self.norms.numel() or self.norms.min().item() >= RANGE_LIMIT:
            return None
        return (self.norms < RANGE_LIMIT).any(0).nonzero().squeeze(1)

    def backward(self, grad_root: Tensor, sink: FlowSink | None = None
                 ) -> tuple[list[Tensor], list[Tensor], dict[int, Tensor]]:
        """Flows of the leaf values (dL/dlog value, [R, B, K] per leaf block: views of this
        binding's flow arenas), of every pool (W * dL/dW: this binding's buffers; in sink mode
        none: `sink(pool, first row, flows)` takes each layer's, valid during the call), and the
        value counts point sums give their leaf blocks ({block: [R, S+1, K]}), given dL/droot
        [B, K_root]."""
        p = self.program
        for k, g in self.grads.items():
            if self.overwrites:
                g.index_fill_(0, p.zero_rows[k], 0.0)
            else:
                g.zero_()
        for counts in self.counts.values():
            counts.zero_()
        for pool in self.tied_pools:  # tied rows only receive additions
            (self.flows[pool] if self.flows else self._whole_flows[pool]).zero_()
        self.grads[p.root_k][p.root_row].copy_(grad_root)
        for layer, flows, layer_w, tie_add in zip(
                reversed(self.layers), reversed(self.layer_flows), reversed(self.layer_log_w),
                reversed(self.tie_adds)):
            self._exponentiate(layer_w)
            layer.backward()
            if tie_add is not None:
                pool_flows, rows, tied = tie_add
                pool_flows.index_add_(0, rows, tied)
            if flows is not None:
                sink(*flows)
        for pool, flows in self._whole_flows.items():
            sink(pool, 0, flows)
        leaves = [self.grads[s.k].narrow(0, s.start, s.n) for s in p.leaves]
        return leaves, self.flows, self.counts


@dataclass
class Evaluation:
    """An upward pass of a batch, and of its out-of-range samples `wide_rows` again in float64."""

    main: Bound
    root: Tensor  # [B, K_root] log-values
    wide: Bound | None = None
    wide_rows: Tensor | None = None  # [F] long
    unresolved: Tensor | None = None  # [U] long: samples beyond even float64 (`warn`)

    def warn(self, what: str) -> None:
        """Say (RangeWarning) that `what` of the unresolved samples may be inexact."""
        if self.unresolved is not None:
            warnings.warn(f"{len(self.unresolved)} of {len(self.root)} samples are beyond "
                          "float64's range in linear space (a product whose children disagree "
                          "by more than e^640, or a leaf's units more than e^708 apart under "
                          f"weights below 2^-70): their {what} may be inexact", RangeWarning,
                          stacklevel=3)


Binder = Callable[[int, Tensor, bool, bool], Bound]  # (batch, like, backward, points) -> free


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
    zero_rows: dict[int, Tensor]  # per arena, the flow rows no layer writes first
    point_blocks: frozenset[int] = frozenset()  # leaf blocks given as `Points` (folding bindings)

    def bind(self, batch: int, like: Tensor, backward: bool = False, points: bool = True,
             weights: Sequence[Tensor] | None = None, sink: bool = False) -> Bound:
        """A binding (see `Bound`); `weights`: tensors of the pools' weights W its layers read in
        place (the caller keeps them current) instead of exponentiating each layer's log-weights
        as it runs; `sink`: the backward pass hands each layer's weight flows to a sink instead
        of filling weight-sized buffers."""
        return Bound(self, batch, like, backward, points, weights, sink)

    def evaluate(self, leaf_inputs: Sequence[LeafInput], log_weights: Sequence[Tensor],
                 semiring: str = "sum", bound: Bound | None = None,
                 backward: bool = False, careful: bool = False) -> Evaluation:
        """Every node's value for this batch (on `bound`, or a new binding), given each pool's
        log-weights, and the out-of-range samples' again in float64 (see the module doc);
        `careful`: every sample's (some weight is below the floor that makes the norms a
        sufficient test, `pcc.runtime.module.WEIGHT_FLOOR`)."""
        ref = _values(leaf_inputs[0])
        main = bound if bound is not None else self.bind(_batch(leaf_inputs[0]), ref, backward)
        main.forward(leaf_inputs, log_weights, semiring)
        root = main.root()
        if ref.is_cuda and torch.cuda.is_current_stream_capturing():
            return Evaluation(main, root)  # a CUDA graph cannot branch on its data
        rows = (torch.arange(len(root), device=root.device) if careful and ref.dtype != WIDE
                and len(root) else main.out_of_range())
        if rows is None:
            return Evaluation(main, root)
        wide = self.bind(len(rows), ref.new_empty(0, dtype=WIDE), main.backward_ready,
                         main.points_ready)  # its flows in buffers: added to the main pass's
        wide_inputs = [_wide(v, rows) for v in leaf_inputs]
        wide.forward(wide_inputs, [lw.detach().to(WIDE) for lw in log_weights], semiring)
        root.index_copy_(0, rows, wide.root().to(root.dtype))
        lost = wide.unresolved(wide_inputs if careful else None)
        return Evaluation(main, root, wide, rows, None if lost is None else rows[lost])

    def backward(self, evaluation: Evaluation, grad_root: Tensor, sink: FlowSink | None = None
                 ) -> tuple[list[Tensor], list[Tensor], dict[int, Tensor]]:
        """Flows of the leaf values (dL/dlog value, [R, B, K] per leaf block), of every pool
        (W * dL/dW; to `sink` instead in a sink-mode binding) and the point sums' value counts
        per leaf block (see `Bound.backward`), given dL/droot [B, K_root]; views of the main
        binding's buffers."""
        main, wide, rows = evaluation.main, evaluation.wide, evaluation.wide_rows
        if wide is None:
            return main.backward(grad_root, sink)
        wide_leaves, wide_flows, wide_counts = wide.backward(
            grad_root.index_select(0, rows).to(WIDE))

        def with_wide(pool: int, start: int, flows: Tensor) -> None:
            flows.add_(wide_flows[pool].narrow(0, start, flows.shape[0]).to(flows.dtype))
            sink(pool, start, flows)
        leaves, flows, counts = main.backward(grad_root.index_fill(0, rows, 0.0),
                                              with_wide if sink is not None else None)
        for grad, extra in zip(leaves, wide_leaves):
            grad.index_copy_(1, rows, extra.to(grad.dtype))
        for total, extra in zip(counts.values(), wide_counts.values()):
            total.add_(extra.to(total.dtype))
        for total, extra in zip(flows, wide_flows):
            total.add_(extra.to(total.dtype))
        return leaves, flows, counts

    def log_arenas(self, evaluation: Evaluation) -> dict[int, Tensor]:
        """Every node's log-values {K: [rows, B, K]} (the float64 pass's for its samples)."""
        evaluation.main.materialize()
        evaluation.warn("node values (sampling, MPE)")
        out = {k: to_log(a) for k, a in evaluation.main.arenas.items()}
        if evaluation.wide is not None:
            evaluation.wide.materialize()
            for k, a in evaluation.wide.arenas.items():
                out[k].index_copy_(1, evaluation.wide_rows, to_log(a).to(out[k].dtype))
        return out


def _batch(leaf: LeafInput) -> int:
    if isinstance(leaf, Points):
        return leaf.codes.shape[1]
    return _values(leaf).shape[1]


def _below_range(log_values: Tensor) -> Tensor:
    """[B]: whether some row of log-values [R, B, K] has a finite unit further below its best
    than the dtype's normal range (log tiny: -708.4 in float64), which `from_log` flushes."""
    d = log_values - log_values.amax(-1, keepdim=True).clamp_min(torch.finfo(log_values.dtype).min)
    lowest = torch.nan_to_num(d, neginf=0.0).amin(-1)  # over finite units (-inf: an exact 0)
    return (lowest < math.log(torch.finfo(log_values.dtype).tiny)).any(0)


def _look_up(leaf: Points, values: Tensor) -> None:
    """values [R, B, K] = the table rows of the codes."""
    torch.index_select(leaf.table, 0, leaf.codes.view(-1), out=values.view(-1, values.shape[-1]))


def _point_firsts(program: "Program", folds: Callable[["LoweredEinsum"], bool]
                  ) -> dict[int, tuple[int, Rows]]:
    """{op index: (point block, the block rows of its members' first children: an int start
    for consecutive rows, else [N] long)} for the element-wise products whose first children all
    lie in one point block that nothing else reads (no other child slot, no unfolded einsum, no
    mix, not the root)."""
    spans = {i: program.leaves[i] for i in program.point_blocks}

    def blocks_of(k: int, rows: Rows, n: int = 1) -> set[int]:
        """The point blocks that rows (an int: rows [rows, rows + n)) of arena k reach."""
        if isinstance(rows, int):
            return {i for i, s in spans.items()
                    if s.k == k and rows < s.start + s.n and rows + n > s.start}
        lo, hi = (int(rows.min()), int(rows.max())) if rows.numel() else (0, -1)
        return {i for i, s in spans.items()
                if s.k == k and lo < s.start + s.n and hi >= s.start
                and bool(((rows >= s.start) & (rows < s.start + s.n)).any())}
    barred = blocks_of(program.root_k, program.root_row)
    firsts: dict[int, tuple[int, Rows]] = {}
    for j, op in enumerate(program.ops):
        if isinstance(op, LoweredHadamard):
            barred |= blocks_of(op.k_in, op.children.extra)
            first = op.children.first
            hit = blocks_of(op.k_in, first)
            if len(hit) == 1:
                (i,) = hit
                s = spans[i]
                if bool(((first >= s.start) & (first < s.start + s.n)).all()):
                    rel = first - s.start
                    start = int(rel[0])
                    whole = bool((rel == torch.arange(start, start + len(rel),
                                                      device=rel.device)).all())
                    firsts[j] = (i, start if whole else rel.contiguous())
                    continue
            barred |= hit
        elif isinstance(op, LoweredEinsum):
            if not folds(op):
                for k, rows in zip(op.child_k, op.child_rows):
                    barred |= blocks_of(k, rows, op.n)
        else:
            barred |= blocks_of(op.k, op.part_rows)
    return {j: f for j, f in firsts.items() if f[0] not in barred}


def _gathers(op) -> bool:
    """Whether an op's weights are gathered from its pool (tied rows that are not one block)."""
    return op.pool is not None and op.tied is not None and not op.tied.block


def _values(leaf: LeafInput) -> Tensor:
    """The leaf input's values, or its table (for dtype and device)."""
    if isinstance(leaf, Points):
        return leaf.table
    return leaf.values if isinstance(leaf, Linear) else leaf


def _wide(leaf: LeafInput, rows: Tensor) -> LeafInput:
    """A leaf input's samples `rows`, in float64."""
    if isinstance(leaf, Points):
        onehot = leaf.onehot
        return Points(leaf.table.to(WIDE), leaf.codes.index_select(1, rows),
                      lambda: onehot().index_select(2, rows).to(WIDE), leaf.support)
    if isinstance(leaf, Linear):
        return Linear(leaf.values.index_select(1, rows).to(WIDE))
    return leaf.index_select(1, rows).to(WIDE)


class CircuitFunction(torch.autograd.Function):
    """root = circuit(leaf log-values, pooled log-weights); backward gives the leaf flows and the
    pools' flows (the gradients of log-values and log-weights)."""

    @staticmethod
    def forward(ctx, program: Program, binder: Binder, careful: bool, num_leaf: int,
                *tensors: Tensor) -> Tensor:
        leaf_values, log_pools = tensors[:num_leaf], tensors[num_leaf:]
        bound = binder(leaf_values[0].shape[1], leaf_values[0], True, False)
        bound.in_use = True
        evaluation = program.evaluate(leaf_values, log_pools, bound=bound, careful=careful)
        evaluation.warn("log-likelihoods and gradients")
        ctx.program, ctx.evaluation = program, evaluation
        return evaluation.root

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_root: Tensor):
        leaves, flows, _ = ctx.program.backward(ctx.evaluation, grad_root.contiguous())
        out = [g.clone() for g in leaves] + [f.clone() for f in flows]
        ctx.evaluation.main.in_use = False
        ctx.evaluation = None
        return (None, None, None, None, *out)
