"""`CompiledCircuit`: a plan lowered to a `torch.nn.Module`.

    model(x)  ->  log p(x), [B] (or [B, K] when the root region has K > 1 units)

`x` is a float tensor [B, num_vars]; NaN marks a missing value, which is integrated out exactly
(its leaf log-density is 0). `marginalize` (bool [B, V] or [V]) does the same for integer data.

Parameters (all unconstrained, so any torch optimizer can train them):
    sum_logits[i]  [N, K_out, K1*...*Ka]  per einsum op with weights; W = softmax over the last dim
                   [N, K_out, K]          per Hadamard op (element-wise products of K units)
    mix_logits[i]  [N, P, K]              per mix op; M = softmax over P (padded entries masked)
    leaf_params[g] per leaf group, see `pcc.runtime.leaves`
Tied regions (`tie a b c`) share parameters: one pool row per tie group's partition (or mixing),
one leaf parameter row per tie group's slot (`pcc.runtime.layout`, `LeafGroup.param_rows`).
EM keeps the logits normalized (log W itself), so that in `em_mode()` the forward uses them as
log-weights directly and their gradients are exactly the expected counts W * dlogP/dW.
"""
from __future__ import annotations

import contextlib
import math
import weakref
from collections.abc import Callable, Sequence
from importlib import import_module

import numpy as np
import torch
from torch import Tensor, nn

from ..data import check_support, support_bounds
from ..errors import BackendError, ShapeError
from ..ir import Circuit, Param
from ..passes import EinsumOp, HadamardOp, Plan
from ..passes.flow_writes import FlowWrites, flow_writes
from ..passes.plan import unpadded_children
from ..region_graph import product_units
from pcc_kernels.reference import Children

from .engine import (Bound, CircuitFunction, Evaluation, FlowSink, LeafInput, LeafSlot,
                     LoweredEinsum, LoweredHadamard, LoweredMix, Points, Program, TiedRows)
from .graphs import CapturedForward
from .leaf_tables import PointTables, table_counts, table_layout, table_values
from .layout import weight_layout
from .leaf_kinds import leaf_family
from .leaves import LeafFamily
from pcc_kernels.opaque import opaque
from .stamps import Stamp
from .naive import naive_evaluate
from .weight_init import mix_log_weights, sum_log_weights

BACKENDS = ("auto", "torch", "triton", "naive")
WEIGHT_FLOOR = 2.0 ** -70  # smaller weights make every float32 pass run in float64 (`careful`)


class LeafParams(nn.Module):
    """The parameters of one leaf group, one nn.Parameter per stored field."""

    def __init__(self, values: dict[str, Tensor], dtype: torch.dtype):
        super().__init__()
        for name, v in values.items():
            self.register_parameter(name, nn.Parameter(v.to(dtype)))

    def as_dict(self) -> dict[str, Tensor]:
        return dict(self.named_parameters())


class CompiledCircuit(nn.Module):
    """A compiled circuit. Build with `pcc.compile`; see the module doc for inputs and parameters."""

    def __init__(self, circuit: Circuit, plan: Plan, backend: str = "auto", seed: int = 0,
                 dtype: torch.dtype = torch.float32):
        super().__init__()
        if backend not in BACKENDS:
            raise BackendError(f"unknown backend '{backend}' (choose from {', '.join(BACKENDS)})")
        self.circuit, self.plan, self.backend = circuit, plan, backend
        self._raw_weights = False
        gen = torch.Generator().manual_seed(seed)

        self.families: list[LeafFamily] = [leaf_family(g.family) for g in plan.leaf_groups]
        self.leaf_params = nn.ModuleList(
            LeafParams(fam.init(g.num_param_rows, g.k, gen), dtype)
            for fam, g in zip(self.families, plan.leaf_groups))
        for i, g in enumerate(plan.leaf_groups):
            self.register_buffer(f"leaf_vars_{i}", torch.from_numpy(g.var_index), persistent=False)
            self.register_buffer(f"leaf_slots_{i}", torch.from_numpy(g.slot_region),
                                 persistent=False)
            if g.param_rows is not None:  # tied inputs: slot m reads parameter row rows[m]
                self.register_buffer(f"leaf_param_rows_{i}", torch.from_numpy(g.param_rows),
                                     persistent=False)
            if g.table:
                layout = table_layout(g.var_index, g.slot_region, len(g.regions), plan.num_vars)
                for name in ("pad_vars", "pad_slots", "positions"):
                    self.register_buffer(f"leaf_{name}_{i}", torch.from_numpy(
                        getattr(layout, name)), persistent=False)
                if g.param_rows is not None:  # padded positions read parameter rows
                    self.register_buffer(f"leaf_pad_slots_{i}", torch.from_numpy(
                        _through(layout.pad_slots, g.param_rows)), persistent=False)
        for block in plan.mixed_leaves:
            for i, rows in block.parts:
                self.register_buffer(f"mixed_rows_{i}", torch.from_numpy(rows), persistent=False)

        self.layout = weight_layout(plan)
        sum_pools = [torch.empty(rows, *shape, dtype=dtype) for shape, rows in self.layout.sum_pools]
        mix_pools = [torch.empty(rows, *shape, dtype=dtype) for shape, rows in self.layout.mix_pools]
        mix_masks = [torch.zeros(rows, *shape[:1], 1, dtype=torch.bool)
                     for shape, rows in self.layout.mix_pools]
        for j, (op, slot) in enumerate(zip(plan.ops, self.layout.slots)):
            if isinstance(op, (EinsumOp, HadamardOp)):
                rows_of_slots = (enumerate(op.child_rows) if isinstance(op, EinsumOp)
                                 else [(0, op.child_rows)])
                for s, rows in rows_of_slots:
                    if not isinstance(rows, int):
                        self.register_buffer(f"rows_{j}_{s}", torch.from_numpy(rows),
                                             persistent=False)
                if isinstance(op, EinsumOp) and op.points is not None:
                    self.register_buffer(f"point_members_{j}", torch.from_numpy(op.points[1]),
                                         persistent=False)
                if isinstance(op, HadamardOp):
                    for name, index in zip(("first", "extra", "parent"),
                                           unpadded_children(op.child_rows)):
                        self.register_buffer(f"children_{name}_{j}", torch.from_numpy(index),
                                             persistent=False)
                if slot is not None and slot.rows is None:  # random, normalized per output
                    sum_log_weights(op.weight_shape, gen,
                                    out=sum_pools[slot.pool].narrow(0, slot.start, slot.n))
                elif slot is not None:  # tied: the op's rows (shared ones drawn again)
                    sum_pools[slot.pool][slot.rows] = sum_log_weights(op.weight_shape, gen,
                                                                      dtype)
            else:
                self.register_buffer(f"rows_{j}_0", torch.from_numpy(op.part_rows),
                                     persistent=False)
                mask = torch.from_numpy(op.mask).unsqueeze(-1)
                if slot.rows is None:
                    mix_log_weights(op.weight_shape, mask, gen,
                                    out=mix_pools[slot.pool].narrow(0, slot.start, slot.n))
                    mix_masks[slot.pool][slot.start: slot.start + slot.n] = mask
                else:  # tied: the op's rows (shared ones drawn again)
                    mix_pools[slot.pool][slot.rows] = mix_log_weights(op.weight_shape, mask, gen,
                                                                      dtype)
                    mix_masks[slot.pool][slot.rows] = mask
            if slot is not None and slot.rows is not None:  # tied: the op's rows of its pool
                self.register_buffer(f"weight_rows_{j}", torch.from_numpy(slot.rows),
                                     persistent=False)
        self.sum_logits = nn.ParameterList(nn.Parameter(w) for w in sum_pools)
        self.mix_logits = nn.ParameterList(nn.Parameter(w) for w in mix_pools)
        for i, mask in enumerate(mix_masks):
            self.register_buffer(f"mix_mask_{i}", mask, persistent=False)

        var_max = torch.full((plan.num_vars,), math.inf, dtype=torch.float64)
        var_discrete = torch.zeros(plan.num_vars, dtype=torch.bool)
        for fam, g in zip(self.families, plan.leaf_groups):
            idx = torch.from_numpy(g.var_index)
            var_max[idx] = fam.support_max()
            var_discrete[idx] = fam.discrete
        self.register_buffer("var_max", var_max, persistent=False)
        self.register_buffer("var_discrete", var_discrete, persistent=False)
        self.load_ir_params(circuit.params)

    # ----------------------------------------------------------------- evaluation
    @property
    def num_vars(self) -> int:
        return self.plan.num_vars

    @property
    def root_k(self) -> int:
        return self.plan.region_row[self.plan.root][0]

    def forward(self, x: Tensor, marginalize: Tensor | None = None) -> Tensor:
        """log p(x) for each row of x: [B] (or [B, K_root])."""
        x = self.prepare_input(x, marginalize)
        if torch.is_grad_enabled() or self.backend == "naive":
            out = self.evaluate(self.leaf_values(x))
        elif x.shape[0] == 0:
            out = x.new_zeros(0, self.root_k)
        else:
            out = self.infer(x).root
        return out.squeeze(-1) if self.root_k == 1 else out

    log_prob = forward

    @property
    def graph_safe(self) -> bool:
        """Whether a pass does the same work for every batch of one shape, as a CUDA graph
        replays it: not so with joint leaves (`mvnormal`), whose work depends on the pattern of
        missing values (and which synchronize to find it)."""
        return not any(f.joint for f in self.families)

    def capture(self, batch_size: int) -> CapturedForward:
        """This model's forward for `batch_size` rows, replayed from a CUDA graph (eager for
        other sizes or off CUDA); see `pcc.runtime.graphs`."""
        return CapturedForward(self, batch_size)

    @opaque
    def evaluate(self, leaf_values: list[Tensor]) -> Tensor:
        """The root values [B, K_root] from leaf group log-values (see `leaf_values`), through
        autograd: gradients reach the leaf values and the weights. Opaque to torch.compile (a
        graph break): the engine's kernels write arenas in place."""
        if leaf_values[0].shape[1] == 0:  # an empty batch: [0, K], still part of the graph
            return leaf_values[0].sum() + leaf_values[0].new_zeros(0, self.root_k)
        if self.backend == "naive":
            return naive_evaluate(self, leaf_values)
        program = self.program(leaf_values[0].device)
        blocks = self.leaf_blocks(leaf_values)
        pools = self.log_weight_pools()
        return CircuitFunction.apply(program, self._binding, self.careful(pools), len(blocks),
                                     *blocks, *pools)

    @torch.no_grad()
    def infer(self, x: Tensor, semiring: str = "sum") -> Evaluation:
        """One upward pass of prepared input x (see `prepare_input`) without autograd, on a
        binding reused from the last batch of the same size. The root of a sample beyond even
        the float64 pass's range (`Evaluation.unresolved`) is evaluated again node by node in
        log space; under the max semiring, and for its arenas, a RangeWarning says so."""
        bound = self._binding(x.shape[0], x, False)
        weights = self.weight_pools()  # the binding reads them: bring them up to date
        evaluation = self.program(x.device).evaluate(self.leaf_inputs(x, semiring),
                                                     LogWeightPools(self), semiring, bound,
                                                     careful=self.careful(weights, linear=True))
        rows = evaluation.unresolved
        if rows is not None and semiring == "sum":  # the root in log space, node by node
            exact = naive_evaluate(self, self.leaf_values(x.index_select(0, rows)))
            evaluation.root.index_copy_(0, rows, exact.to(evaluation.root.dtype))
        elif rows is not None:
            evaluation.warn("MPE values")
        return evaluation

    def _binding(self, batch: int, like: Tensor, backward: bool, points: bool = True,
                 sink: bool = False) -> Bound:
        """The program bound to this batch size (see `pcc.runtime.engine.Bound`; `points`: with
        point sums folded, for inputs from `leaf_inputs`, not autograd's log-values; `sink`:
        weight flows handed to a sink layer by layer): the one kept from an earlier call with the
        same size, dtype, device and kind unless it is still in use (a forward awaiting its
        backward), else a new one, kept for next time (the last two sizes of each kind)."""
        key = (batch, like.dtype, like.device, backward, points, sink)
        kept = self.__dict__.setdefault("_bindings", {})
        bound = kept.get(key)
        if bound is None or bound.in_use:
            # inference reads the pools' W kept between passes; EM and autograd exponentiate
            # each layer's log-weights as it runs (no weight-sized copy while training: reading
            # a kept W instead made a PD's EM step 10% faster, for one more weight-sized copy)
            shared = (self.weight_pools() if not backward and like.dtype == self._param_dtype()
                      else None)
            bound = self.program(like.device).bind(batch, like, backward, points, shared, sink)
            if key not in kept or not kept[key].in_use:
                # two batch sizes per kind: an epoch's batches and its shorter last one
                for other in [k for k in kept if k[3:] == key[3:] and k != key][:-1]:
                    del kept[other]
                kept[key] = bound
        return bound

    def leaf_blocks(self, leaf_values: list[Tensor]) -> list[Tensor]:
        """What the engine writes into the arenas (`Plan.leaf_blocks`), from the leaf group
        values: each group of whole inputs as it is, then per K the mixed inputs [R, B, K], each
        the sum of its parts' values (see `pcc.passes.plan.MixedLeaves`)."""
        groups = self.plan.leaf_groups
        blocks = [v for g, v in zip(groups, leaf_values) if g.out_start is not None]
        return blocks + self._mixed_blocks(dict(enumerate(leaf_values)))

    def _mixed_blocks(self, values: dict[int, Tensor]) -> list[Tensor]:
        """Per K the mixed inputs' values [R, B, K]: the sums of their parts' (`values` by leaf
        group)."""
        blocks = []
        for block in self.plan.mixed_leaves:
            first = values[block.parts[0][0]]
            total = first.new_zeros(len(block.regions), first.shape[1], block.k)
            for i, _ in block.parts:
                total = total.index_add(0, getattr(self, f"mixed_rows_{i}"), values[i])
            blocks.append(total)
        return blocks

    def _group_counts(self, block_counts: dict[int, Tensor]) -> list[Tensor | None]:
        """Per leaf group, the value counts [R, S+1, K] its point sums gave it (column S:
        missing values, no count), or None."""
        blocks = [i for i, g in enumerate(self.plan.leaf_groups) if g.out_start is not None]
        out: list[Tensor | None] = [None] * len(self.plan.leaf_groups)
        for block, counts in block_counts.items():
            out[blocks[block]] = counts
        return out

    def _group_flows(self, block_flows: list[Tensor]) -> list[Tensor]:
        """The flows of every leaf group [R, B, K] from those of the leaf blocks: a part of a
        mixed input gets its input's."""
        groups = self.plan.leaf_groups
        whole = iter(block_flows)
        out = [next(whole) if g.out_start is not None else None for g in groups]
        for block, flows in zip(self.plan.mixed_leaves, whole):
            for i, _ in block.parts:
                out[i] = flows.index_select(0, getattr(self, f"mixed_rows_{i}"))
        return out

    def leaf_slot_rows(self, i: int) -> Tensor:
        """[M] the arena row (in arena K of leaf group i) of the region of each of its slots."""
        g, slots = self.plan.leaf_groups[i], getattr(self, f"leaf_slots_{i}")
        if g.out_start is not None:
            return slots + g.out_start
        block = next(b for b in self.plan.mixed_leaves if any(j == i for j, _ in b.parts))
        return getattr(self, f"mixed_rows_{i}")[slots] + block.out_start

    def upward(self, x: Tensor, semiring: str = "sum",
               marginalize: Tensor | None = None) -> dict[int, Tensor]:
        """All node log-values {K: [rows, B, K]} for a batch (the plan's arenas), without
        autograd."""
        with torch.no_grad():
            x = self.prepare_input(x, marginalize)
            evaluation = self.infer(x, semiring)
            return self.program(x.device).log_arenas(evaluation)

    @torch.no_grad()
    def flows(self, x: Tensor, grad_root: Callable[[Tensor], tuple[Tensor, Tensor]],
              sink: FlowSink | None = None
              ) -> tuple[Tensor, list[Tensor], list[Tensor], list[Tensor | None]]:
        """EM's E-step of prepared input x, without autograd: `grad_root(root)` [B, K_root] ->
        (the log-likelihoods L_b, dL/droot); returns L [B], the flows dL/dlog value of every
        leaf group [R, B, K], the flows W * dL/dW of every pool (sum pools, then mix pools;
        with a `sink`, none: `sink(pool, first row, flows)` gets each layer's instead, so that
        no weight-sized buffer is needed), and per leaf group the value counts [R, K, S] its
        point sums gave it ([R, S+1, K] or None; they are not in its flows), all valid until the next
        call. The weights are the stored logits (EM keeps them normalized)."""
        program = self.program(x.device)
        bound = self._binding(x.shape[0], x, True, sink=sink is not None)
        with self.em_mode():
            evaluation = program.evaluate(self.leaf_inputs(x, "sum"),
                                          self.log_weight_pools(), "sum", bound,
                                          careful=self.careful())
        evaluation.warn("log-likelihoods and EM statistics")
        ll, grad = grad_root(evaluation.root)
        leaf_flows, pool_flows, counts = program.backward(evaluation, grad, sink)
        return ll, self._group_flows(leaf_flows), pool_flows, self._group_counts(counts)

    def prepare_input(self, x: Tensor, marginalize: Tensor | None = None) -> Tensor:
        """Check x's shape and support; turn it into floats with NaN for missing values."""
        if not isinstance(x, Tensor):
            x = torch.as_tensor(np.asarray(x))
        if x.dim() != 2 or x.shape[1] != self.num_vars:
            raise ShapeError(f"expected input of shape [B, {self.num_vars}] (batch, variables), "
                             f"got {list(x.shape)}")
        x = x.to(self._param_dtype())
        if marginalize is not None:
            mask = torch.as_tensor(marginalize, device=x.device, dtype=torch.bool)
            if mask.shape not in (x.shape, x.shape[1:]):
                raise ShapeError(f"marginalize mask must have shape {list(x.shape)} or "
                                 f"[{x.shape[1]}], got {list(mask.shape)}")
            x = x.masked_fill(mask, math.nan)
        key = (x.dtype, x.device)
        bounds = self.__dict__.setdefault("_support_bounds", {})
        if key not in bounds:
            bounds[key] = support_bounds(self.var_max, self.var_discrete, *key)
        check_support(x, self.var_max, self.var_discrete, self.plan.var_names,
                      bounds=bounds[key])
        return x

    def leaf_values(self, x: Tensor, semiring: str = "sum", only: int | None = None
                    ) -> list[Tensor]:
        """Per leaf group, the log-densities of its regions' units: [R, B, K] each (for a group
        of parts of mixed inputs, of each part's variables; `leaf_blocks` adds them up).

        A missing value contributes log 1 = 0 (it is summed out); under the max semiring it
        contributes the density at the mode instead (it is maximized out). `only`: that group's
        alone."""
        xt = x.t()
        out = []
        for i, (fam, params, g) in enumerate(zip(self.families, self.leaf_params,
                                                 self.plan.leaf_groups)):
            if only is not None and i != only:
                continue
            if g.table:
                out.append(table_values(
                    fam, params.as_dict(), xt, getattr(self, f"leaf_pad_vars_{i}"),
                    getattr(self, f"leaf_pad_slots_{i}"), len(g.regions), semiring))
                continue
            ld = fam.evaluate(xt, getattr(self, f"leaf_vars_{i}"), self.leaf_slot_params(i),
                              semiring)
            out.append(self._sum_slots(ld, g, getattr(self, f"leaf_slots_{i}")))
        return out

    def leaf_inputs(self, x: Tensor, semiring: str = "sum") -> list[LeafInput]:
        """`leaf_blocks(leaf_values(x))` as the engine takes them, without autograd: groups of
        one-variable discrete inputs as their probability tables and the codes of x's values
        (`Points`: looked up, no logarithm or exponential per unit), the others as
        log-densities."""
        out: list[LeafInput] = []
        parts: dict[int, Tensor] = {}
        for i, (params, g) in enumerate(zip(self.leaf_params, self.plan.leaf_groups)):
            if g.out_start is None:
                parts[i] = self.leaf_values(x, semiring, only=i)[0]
            elif self._points[i] is not None:
                points = self._points[i]
                out.append(Points(points.table(params.as_dict(), semiring), points.codes(x),
                                  lambda points=points: points.onehot(x), points.support))
            else:
                out.append(self.leaf_values(x, semiring, only=i)[0])
        return out + self._mixed_blocks(parts)

    @torch.no_grad()
    def leaf_statistics(self, x: Tensor, gammas: Sequence[Tensor],
                        counts: Sequence[Tensor | None] | None = None) -> list[dict[str, Tensor]]:
        """EM's expected sufficient statistics per leaf group (see `LeafFamily.stats`), from x
        (as `prepare_input` returns it), gamma = dL/d(region values) [R, B, K] per group and
        value counts [R, S+1, K] point sums gave a group (see `flows`); per parameter row (the
        slots of tied inputs add up). Missing values contribute nothing."""
        xt = x.t()
        out = []
        for i, (fam, g, gamma) in enumerate(zip(self.families, self.plan.leaf_groups, gammas)):
            if self._points[i] is not None:
                out.append(fam.stats_from_counts(self._points[i].counts(
                    x, gamma, None if counts is None else counts[i])))
                continue
            if g.table:
                out.append(self.per_param_row(i, fam.stats_from_counts(table_counts(
                    fam, xt, gamma, getattr(self, f"leaf_pad_vars_{i}"),
                    getattr(self, f"leaf_positions_{i}")))))
                continue
            xs = xt.index_select(0, getattr(self, f"leaf_vars_{i}"))
            obs = ~torch.isnan(xs)
            slot_gamma = gamma.index_select(0, getattr(self, f"leaf_slots_{i}"))
            out.append(self.per_param_row(i, fam.stats(
                torch.where(obs, xs, torch.zeros_like(xs)), obs.to(xs.dtype), slot_gamma,
                self.leaf_slot_params(i) if fam.joint else None)))
        return out

    def leaf_param_rows(self, i: int) -> Tensor | None:
        """[M] the parameter row of each slot of leaf group i, None when slot m has row m (no
        tied members; see `pcc.passes.plan.LeafGroup.param_rows`)."""
        return getattr(self, f"leaf_param_rows_{i}", None)

    def leaf_slot_params(self, i: int) -> dict[str, Tensor]:
        """Leaf group i's parameters per slot, [M, K, ...] (tied slots read their row: a
        gather, through which gradients add up)."""
        params, rows = self.leaf_params[i].as_dict(), self.leaf_param_rows(i)
        return params if rows is None else {k: v.index_select(0, rows) for k, v in params.items()}

    def per_param_row(self, i: int, stats: dict[str, Tensor]) -> dict[str, Tensor]:
        """Statistics per slot [M, K, ...] of leaf group i summed per parameter row [U, K, ...]
        (the slots of tied inputs add up)."""
        rows = self.leaf_param_rows(i)
        if rows is None:
            return stats
        n = self.plan.leaf_groups[i].num_param_rows
        return {k: v.new_zeros(n, *v.shape[1:]).index_add_(0, rows, v) for k, v in stats.items()}

    @staticmethod
    def _sum_slots(ld: Tensor, g, slots: Tensor) -> Tensor:
        """Slot log-densities [M, B, K] -> region values [R, B, K] (product over each scope)."""
        r = len(g.regions)
        size = g.scope_size
        if size == 1:
            return ld
        if size is not None:
            return ld.unflatten(0, (r, size)).sum(1)
        return torch.zeros(r, *ld.shape[1:], dtype=ld.dtype, device=ld.device).index_add(
            0, slots, ld)

    def log_weights(self) -> "LogWeights":
        """Per weighted op, log W (einsum: [N, Ko, width]) or log M (mix: [N, P, K]), each
        computed when indexed."""
        return LogWeights(self)

    @torch.no_grad()
    def weight_pools(self) -> list[Tensor]:
        """W of every pool in probability space (sum pools, then mix pools; 0 where a region has
        fewer partitions than its pool): tensors of this module's, updated in place only when
        the logits change (their in-place version counters) or `em_mode` is switched (the
        engine's bindings read them in place)."""
        logits = [*self.sum_logits, *self.mix_logits]
        kept = self.__dict__.get("_weight_pools")
        if kept is None or [tuple(w.shape) for w in kept[1]] != [tuple(p.shape) for p in logits]:
            kept = (None, [torch.empty_like(p) for p in logits])
        if kept[0] is None or not kept[0].matches(logits, self._raw_weights):
            for w, lw in zip(kept[1], self.log_weight_pools()):
                torch.exp(lw, out=w)
            kept = (Stamp(logits, self._raw_weights), kept[1])
        self.__dict__["_weight_pools"] = kept
        return kept[1]

    @torch.no_grad()
    def careful(self, pools: Sequence[Tensor] | None = None, linear: bool = False) -> bool:
        """Whether some weight of a sum or mixing op is below WEIGHT_FLOOR (zero included): then
        the engine's test of float32's range is not sufficient and every sample takes its
        float64 pass (`pcc.runtime.engine.Program.evaluate`). `pools`: every pool's log W (or
        W, `linear`) as a pass uses them (default: `log_weight_pools()`); the answer is kept
        until the logits change.

        Why: a sum whose weights are all at least w gives each of its units at least w times
        its row's largest, so a unit that a product below it lost to underflow (at most 2^-126
        of that product's largest, which is at least RANGE_LIMIT or the sample is sent to
        float64 anyway) changes the sum's units by at most 2^-126 / (RANGE_LIMIT w) = 2^-24 of
        themselves for w = 2^-70. Smaller weights can let such a unit carry the likelihood
        later, through a chain of products that each lose less than RANGE_LIMIT."""
        logits = [*self.sum_logits, *self.mix_logits]
        kept = self.__dict__.get("_careful")
        if kept is not None and kept[0].matches(logits, self._raw_weights):
            return kept[1]
        low = False
        if self._param_dtype() != torch.float64:
            pools = self.log_weight_pools() if pools is None else pools
            floor = WEIGHT_FLOOR if linear else math.log(WEIGHT_FLOOR)
            sums = len(self.sum_logits)
            for i, w in enumerate(pools):
                if i >= sums:  # padding is no weight
                    mask = getattr(self, f"mix_mask_{i - sums}")
                    w = w.masked_fill(~mask, 1.0 if linear else 0.0)
                if w.numel() and float(w.detach().amin()) < floor:
                    low = True
                    break
        self.__dict__["_careful"] = (Stamp(logits, self._raw_weights), low)
        return low

    def certify_weights(self) -> None:
        """Note that every weight is at least WEIGHT_FLOOR as the logits are now, read as EM
        reads them (`em_mode`), so that `careful` need not check them: for EM, whose M-step
        floors what it writes and which checked the weights it started from."""
        self.__dict__["_careful"] = (Stamp([*self.sum_logits, *self.mix_logits], True), False)

    def weights_changed(self) -> None:
        """Note that the logits changed where their version counters do not show it (a replayed
        CUDA graph wrote them): `weight_pools` makes W again on its next call."""
        kept = self.__dict__.get("_weight_pools")
        if kept is not None:
            self.__dict__["_weight_pools"] = (None, kept[1])
        self.__dict__.pop("_careful", None)

    def log_weight_pools(self) -> list[Tensor]:
        """log W of every pool (`pcc.runtime.layout`), sum pools then mix pools."""
        return ([self.log_weight("sum", i) for i in range(len(self.sum_logits))]
                + [self.log_weight("mix", i) for i in range(len(self.mix_logits))])

    def log_weight(self, kind: str, i: int) -> Tensor:
        """log W of the pool sum_logits[i] (kind 'sum') or log M of mix_logits[i] (kind 'mix';
        -inf where a region has fewer partitions than its pool)."""
        if kind == "sum":
            logits = self.sum_logits[i]
            return logits if self._raw_weights else torch.log_softmax(logits, -1)
        mask = getattr(self, f"mix_mask_{i}")
        logits = self.mix_logits[i].masked_fill(~mask, -math.inf)
        return logits if self._raw_weights else torch.log_softmax(logits, 1)

    @contextlib.contextmanager
    def em_mode(self):
        """Use the logits as log-weights directly (EM keeps them normalized), so that their
        gradients are the expected counts."""
        old, self._raw_weights = self._raw_weights, True
        try:
            yield self
        finally:
            self._raw_weights = old

    def kernels(self, device: torch.device):
        """The kernel set for a device: Triton on CUDA (backend auto/triton), torch otherwise
        (the naive backend's `upward` runs the torch kernels: the parameters are the same)."""
        if self.backend in ("torch", "naive") or (self.backend == "auto" and device.type != "cuda"):
            return import_module("pcc_kernels.reference")
        from .backend import triton_kernels
        return triton_kernels(device)

    def program(self, device: torch.device) -> Program:
        """The plan lowered onto this module's buffers for `device`'s kernels (cached until the
        module moves)."""
        cache = self.__dict__.setdefault("_programs", {})
        if device not in cache:
            cache[device] = self._lower(device)
        return cache[device]

    @property
    def _points(self) -> list[PointTables | None]:
        """Per leaf group of whole one-variable discrete inputs, its lookup tables (see
        `PointTables`; made once, until the module moves), else None."""
        if "_point_tables" not in self.__dict__:
            self.__dict__["_point_tables"] = [
                PointTables(fam, getattr(self, f"leaf_vars_{i}"), self.leaf_param_rows(i))
                if g.table and g.scope_size == 1 and g.out_start is not None else None
                for i, (fam, g) in enumerate(zip(self.families, self.plan.leaf_groups))]
        return self.__dict__["_point_tables"]

    def _apply(self, fn, *args, **kwargs):
        # what holds buffers or bindings of the old tensors is made again on next use
        for cached in ("_programs", "_bindings", "_point_tables", "_weight_pools",
                       "_support_bounds", "_careful"):
            self.__dict__.pop(cached, None)
        return super()._apply(fn, *args, **kwargs)

    def _lower(self, device: torch.device) -> Program:
        ops = []
        layout = self.layout
        writes = self.plan_flow_writes

        def flags(j):
            given = writes.overwrite.get(j)
            if given is None:
                return None
            if isinstance(given, list):
                return tuple(torch.from_numpy(f).to(device) for f in given)
            return torch.from_numpy(given).to(device)
        blocks = [i for i, g in enumerate(self.plan.leaf_groups) if g.out_start is not None]
        weighted = 0
        for j, (op, slot) in enumerate(zip(self.plan.ops, layout.slots)):
            wi = pool = tied = None
            if slot is not None:
                wi, weighted = weighted, weighted + 1
                pool = (layout.pool_index(slot), slot.start)
                if slot.rows is not None:
                    tied = TiedRows(getattr(self, f"weight_rows_{j}"), slot.block)
            if isinstance(op, EinsumOp):
                rows = tuple(r if isinstance(r, int) else getattr(self, f"rows_{j}_{s}")
                             for s, r in enumerate(op.child_rows))
                points = None
                if op.points is not None and self._points[op.points[0]] is not None:
                    group = op.points[0]
                    members = getattr(self, f"point_members_{j}")
                    param_rows = self.leaf_param_rows(group)
                    points = (blocks.index(group), members, self._points[group].support,
                              None if param_rows is None else param_rows[members])
                ops.append(LoweredEinsum(op.child_k, op.k_out, rows, op.out_start,
                                         len(op.members), wi, pool, points, flags(j), tied))
            elif isinstance(op, HadamardOp):
                children = Children(getattr(self, f"rows_{j}_0"),
                                    *(getattr(self, f"children_{name}_{j}")
                                      for name in ("first", "extra", "parent")))
                ops.append(LoweredHadamard(op.k_in, op.k_out, children, op.out_start,
                                           len(op.members), wi, pool, flags(j), tied))
            else:
                mask = _rows(getattr(self, f"mix_mask_{slot.pool}"), slot)
                ops.append(LoweredMix(op.k, getattr(self, f"rows_{j}_0"), mask.squeeze(-1),
                                      op.out_start, len(op.members), wi, pool, flags(j), tied))
        root_k, root_row = self.plan.region_row[self.plan.root]
        leaves = tuple(LeafSlot(k, start, n) for k, start, n in self.plan.leaf_blocks)
        pools = tuple(tuple(p.shape) for p in (*self.sum_logits, *self.mix_logits))
        zero_rows = {k: torch.from_numpy(writes.zero_rows.get(k, np.zeros(0, dtype=np.int64)))
                     .to(device) for k in self.plan.arena_rows}
        point_blocks = frozenset(blocks.index(g) for g in blocks if self._points[g] is not None)
        return Program(dict(self.plan.arena_rows), leaves, tuple(ops), root_k, root_row, pools,
                       self.kernels(device), zero_rows, point_blocks)

    @property
    def plan_flow_writes(self) -> FlowWrites:
        """Which flows the backward pass writes over rows (`pcc.passes.flow_writes`; made once)."""
        if "_flow_writes" not in self.__dict__:
            self.__dict__["_flow_writes"] = flow_writes(self.plan)
        return self.__dict__["_flow_writes"]

    def _param_dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    # ----------------------------------------------------------------- parameters <-> IR
    def _locate(self):
        """Maps from IR names to parameter positions: (region, p) -> (sum pool, row),
        region -> (mix pool, row), region -> ((leaf group, member), ...) one per part of the
        input (`Circuit.input_parts`: one unless it mixes families)."""
        part, mix = {}, {}
        for op, slot in zip(self.plan.ops, self.layout.slots):
            if slot is None:
                continue
            for row, member in zip(slot.indices().tolist(), op.members):
                (part if slot.kind == "sum" else mix)[member] = (slot.pool, row)
        by_family: dict[str, dict] = {}
        for gi, g in enumerate(self.plan.leaf_groups):
            for m, r in enumerate(g.regions):
                by_family.setdefault(r, {})[g.family] = (gi, m)
        leaf = {name: tuple(found[family] for family, _ in self.circuit.input_parts(
            self.circuit.region(name))) for name, found in by_family.items()}
        return part, mix, leaf

    @torch.no_grad()
    def load_ir_params(self, params: tuple[Param, ...]) -> None:
        """Set parameters from a circuit's inline `param` statements (probability space)."""
        part, mix, leaf = self._locate()
        for prm in params:
            values = torch.tensor(prm.values, dtype=torch.float64).reshape(prm.shape)
            if prm.field == "weights":
                if (prm.region, prm.index or 0) in part:
                    i, m = part[(prm.region, prm.index or 0)]
                    self.sum_logits[i][m] = torch.log(values.reshape(values.shape[0], -1))
            elif prm.field == "mixing":
                i, m = mix[prm.region]
                n_parts = values.shape[1]
                self.mix_logits[i][m, :n_parts] = torch.log(values).t()
            else:
                gi, m = leaf[prm.region][prm.index or 0]
                fam, slots = self.families[gi], self._param_rows_of(gi, m)
                current = fam.to_ir({k: v[slots].double() for k, v in
                                     self.leaf_params[gi].as_dict().items()})
                current[prm.field] = values.transpose(0, 1)  # [K, S, ..] -> [S, K, ..]
                for name, v in fam.from_ir(current).items():
                    getattr(self.leaf_params[gi], name)[slots] = v.to(
                        getattr(self.leaf_params[gi], name).dtype)

    @torch.no_grad()
    def ir_params(self) -> tuple[Param, ...]:
        """All parameters as inline `param` statements (probability space), in region order."""
        part, mix, leaf = self._locate()
        out = []
        for region in self.circuit.regions:
            name = region.name
            if not self.circuit.owns_parameters(name):
                continue  # a tied region: its tie's owner gives the values
            if name in leaf:
                parts = leaf[name]
                for j, (gi, m) in enumerate(parts):
                    fam, slots = self.families[gi], self._param_rows_of(gi, m)
                    fields = fam.to_ir({k: v[slots].double() for k, v in
                                        self.leaf_params[gi].as_dict().items()})
                    for fname in fam.ir_fields:
                        out.append(_param(name, fname, j if len(parts) > 1 else None,
                                          fields[fname].transpose(0, 1)))
                continue
            partitions = region.partitions
            for p, children in enumerate(partitions):
                if (name, p) in part:
                    i, m = part[(name, p)]
                    ks = ([product_units(self.circuit, region, p)] if region.is_elementwise(p)
                          else [self.circuit.region(c).k for c in children])
                    w = torch.softmax(self.sum_logits[i][m].double(), -1)
                    out.append(_param(name, "weights", p, w.reshape(region.k, *ks)))
            if name in mix:
                i, m = mix[name]
                logits = self.mix_logits[i][m, : len(partitions)].double()
                out.append(_param(name, "mixing", None, torch.softmax(logits, 0).t()))
        return tuple(out)

    def _param_rows_of(self, gi: int, m: int) -> Tensor:
        """The parameter rows of member m of leaf group gi, one per variable of its scope."""
        g = self.plan.leaf_groups[gi]
        slots = np.nonzero(g.slot_region == m)[0]
        return torch.from_numpy(slots if g.param_rows is None else g.param_rows[slots])

    # ----------------------------------------------------------------- queries (pcc.queries)
    def sample(self, n: int, evidence: Tensor | None = None, temperature: float = 1.0,
               generator: torch.Generator | None = None, root_unit=None) -> Tensor:
        """`n` exact samples [n, V], given `evidence` [B, V] (NaN = free) if any."""
        from ..queries import sample
        return sample(self, n, evidence, temperature, generator, root_unit)

    def mpe(self, evidence: Tensor, root_unit=None) -> tuple[Tensor, Tensor]:
        """Max-product completion of `evidence` [B, V]: (states [B, V], log p(states) [B])."""
        from ..queries import mpe
        return mpe(self, evidence, root_unit)

    def marginal(self, x: Tensor) -> Tensor:
        """log p(x_obs), NaN = missing (the same as `forward`)."""
        from ..queries import marginal
        return marginal(self, x)

    def conditional(self, query_mask: Tensor, x: Tensor) -> Tensor:
        """log p(x_q | x_e): query_mask True marks x's query variables, the rest observed is e."""
        from ..queries import conditional
        return conditional(self, query_mask, x)

    def posterior_marginals(self, evidence: Tensor, root_unit=None) -> Tensor:
        """p(x_v = s | evidence) [B, V, S] of every discrete variable (NaN = missing)."""
        from ..queries import posterior_marginals
        return posterior_marginals(self, evidence, root_unit)


class LogWeightPools(Sequence):
    """`log_weight_pools()`, each pool computed when indexed (a binding that reads the pools'
    W kept by the module never indexes it; the float64 pass does). It refers to the model
    weakly: the bindings the model keeps hold it, and a strong reference would make a cycle
    that keeps a dropped model's buffers until the garbage collector's next full pass."""

    def __init__(self, model: CompiledCircuit):
        self._model = weakref.ref(model)
        self.sums = len(model.sum_logits)

    @property
    def model(self) -> CompiledCircuit:
        return self._model()

    def __len__(self) -> int:
        return self.sums + len(self.model.mix_logits)

    def __getitem__(self, i: int) -> Tensor:
        if not 0 <= i < len(self):
            raise IndexError(i)
        return (self.model.log_weight("sum", i) if i < self.sums
                else self.model.log_weight("mix", i - self.sums))


class LogWeights(Sequence):
    """The log-weights of a model's weighted ops in op order (each a view of its rows of the
    normalized pool), each computed when indexed."""

    def __init__(self, model: CompiledCircuit):
        self.model = model
        self.slots = model.layout.weighted

    def __len__(self) -> int:
        return len(self.slots)

    def __getitem__(self, i: int) -> Tensor:
        slot = self.slots[i]
        kind = slot.kind
        pool = self.model.sum_logits if kind == "sum" else self.model.mix_logits
        logits = _rows(pool[slot.pool], slot)
        if kind == "mix":
            mask = _rows(getattr(self.model, f"mix_mask_{slot.pool}"), slot)
            logits = logits.masked_fill(~mask, -math.inf)
        if self.model._raw_weights:
            return logits
        return torch.log_softmax(logits, -1 if kind == "sum" else 1)


def _rows(pool: Tensor, slot) -> Tensor:
    """A slot's rows of a pool: a view of its block, or gathered where tied."""
    if slot.rows is None:
        return pool.narrow(0, slot.start, slot.n)
    return pool.index_select(0, torch.as_tensor(slot.rows, device=pool.device))


def _through(pad_slots: np.ndarray, param_rows: np.ndarray) -> np.ndarray:
    """Padded positions' slots (M for padding) -> their parameter rows (U for padding)."""
    padding = pad_slots >= len(param_rows)
    out = param_rows[np.minimum(pad_slots, len(param_rows) - 1)]
    out[padding] = int(param_rows.max()) + 1
    return out


def _param(region: str, field: str, index: int | None, values: Tensor) -> Param:
    return Param(region, field, index, tuple(values.shape),
                 tuple(float(v) for v in values.reshape(-1).tolist()))
