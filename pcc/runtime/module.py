"""`CompiledCircuit`: a plan lowered to a `torch.nn.Module`.

    model(x)  ->  log p(x), [B] (or [B, K] when the root region has K > 1 units)

`x` is a float tensor [B, num_vars]; NaN marks a missing value, which is integrated out exactly
(its leaf log-density is 0). `marginalize` (bool [B, V] or [V]) does the same for integer data.

Parameters (all unconstrained, so any torch optimizer can train them):
    sum_logits[i]  [N, K_out, K1*...*Ka]  per einsum op with weights; W = softmax over the last dim
                   [N, K_out, K]          per Hadamard op (element-wise products of K units)
    mix_logits[i]  [N, P, K]              per mix op; M = softmax over P (padded entries masked)
    leaf_params[g] per leaf group, see `pcc.runtime.leaves`
EM keeps the logits normalized (log W itself), so that in `em_mode()` the forward uses them as
log-weights directly and their gradients are exactly the expected counts W * dlogP/dW.
"""
from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from importlib import import_module
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor, nn

from ..data import check_support
from ..errors import BackendError, ShapeError
from ..ir import Circuit, Param
from ..passes import EinsumOp, HadamardOp, Plan
from ..region_graph import product_units
from .engine import (CircuitFunction, FlowSink, LeafSlot, LoweredEinsum, LoweredHadamard,
                     LoweredMix, Program)
from .leaf_tables import table_counts, table_layout, table_values
from .leaves import LeafFamily, leaf_family
from .naive import naive_evaluate
from .weight_init import mix_log_weights, sum_log_weights

if TYPE_CHECKING:
    from .graphs import CapturedForward

BACKENDS = ("auto", "torch", "triton", "naive")


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
            LeafParams(fam.init(len(g.var_index), g.k, gen), dtype)
            for fam, g in zip(self.families, plan.leaf_groups))
        for i, g in enumerate(plan.leaf_groups):
            self.register_buffer(f"leaf_vars_{i}", torch.from_numpy(g.var_index), persistent=False)
            self.register_buffer(f"leaf_slots_{i}", torch.from_numpy(g.slot_region),
                                 persistent=False)
            if g.table:
                layout = table_layout(g.var_index, g.slot_region, len(g.regions), plan.num_vars)
                for name in ("pad_vars", "pad_slots", "positions"):
                    self.register_buffer(f"leaf_{name}_{i}", torch.from_numpy(
                        getattr(layout, name)), persistent=False)

        self.sum_logits = nn.ParameterList()
        self.mix_logits = nn.ParameterList()
        self._weight_of_op: list[tuple[str, int] | None] = []
        for j, op in enumerate(plan.ops):
            if isinstance(op, (EinsumOp, HadamardOp)):
                rows_of_slots = (enumerate(op.child_rows) if isinstance(op, EinsumOp)
                                 else [(0, op.child_rows)])
                for s, rows in rows_of_slots:
                    if not isinstance(rows, int):
                        self.register_buffer(f"rows_{j}_{s}", torch.from_numpy(rows),
                                             persistent=False)
                if isinstance(op, HadamardOp) or op.has_weights:
                    self.sum_logits.append(nn.Parameter(sum_log_weights(op.weight_shape, gen, dtype)))
                    self._weight_of_op.append(("sum", len(self.sum_logits) - 1))
                else:
                    self._weight_of_op.append(None)
            else:
                self.register_buffer(f"rows_{j}_0", torch.from_numpy(op.part_rows),
                                     persistent=False)
                mask = torch.from_numpy(op.mask).unsqueeze(-1)
                self.register_buffer(f"mix_mask_{len(self.mix_logits)}", mask, persistent=False)
                self.mix_logits.append(nn.Parameter(mix_log_weights(op.weight_shape, mask, gen, dtype)))
                self._weight_of_op.append(("mix", len(self.mix_logits) - 1))

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
        out = self.evaluate(self.leaf_values(self.prepare_input(x, marginalize)))
        return out.squeeze(-1) if self.root_k == 1 else out

    log_prob = forward

    def capture(self, batch_size: int) -> "CapturedForward":
        """This model's forward for `batch_size` rows, replayed from a CUDA graph (eager for
        other sizes or off CUDA); see `pcc.runtime.graphs`."""
        from .graphs import CapturedForward
        return CapturedForward(self, batch_size)

    @torch.compiler.disable
    def evaluate(self, leaf_values: list[Tensor], flow_sink: FlowSink | None = None) -> Tensor:
        """The root values [B, K_root] from leaf group values (see `leaf_values`). Opaque to
        torch.compile (a graph break): the engine's kernels write arenas in place. With a
        `flow_sink`, the backward pass hands it each weighted op's flows (`weights` index,
        W * dL/dW) instead of making them the weights' gradients (the naive backend ignores it:
        its flows arrive as gradients)."""
        if leaf_values[0].shape[1] == 0:  # an empty batch: [0, K], still part of the graph
            return leaf_values[0].sum() + leaf_values[0].new_zeros(0, self.root_k)
        if self.backend == "naive":
            return naive_evaluate(self, leaf_values)
        program = self.program(leaf_values[0].device)
        weights = self.log_weights()
        if torch.is_grad_enabled():
            return CircuitFunction.apply(program, flow_sink, len(leaf_values), *leaf_values,
                                         *list(weights))
        # inference: nothing is kept for a backward pass, so the arenas can be reused
        return program.root(program.upward(leaf_values, weights,
                                           arenas=self._inference_arenas(program, leaf_values[0])
                                           )).clone()

    def _inference_arenas(self, program: Program, like: Tensor) -> dict[int, Tensor]:
        """Arenas kept from the last inference batch of the same size, dtype and device (a fresh
        large allocation costs page faults on the CPU); only the latest shape is kept."""
        key = (like.shape[1], like.dtype, like.device)
        if getattr(self, "_arena_key", None) != key:
            self._arena_key, self._arena_cache = key, program.new_arenas(like.shape[1], like)
        return self._arena_cache

    def upward(self, x: Tensor, semiring: str = "sum",
               marginalize: Tensor | None = None) -> dict[int, Tensor]:
        """All node values (arenas, see `pcc_kernels`) for a batch, without autograd."""
        with torch.no_grad():
            x = self.prepare_input(x, marginalize)
            leaf_values = self.leaf_values(x, semiring)
            return self.program(x.device).upward(leaf_values, self.log_weights(), semiring)

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
        check_support(x, self.var_max, self.var_discrete, self.plan.var_names)
        return x

    def leaf_values(self, x: Tensor, semiring: str = "sum") -> list[Tensor]:
        """Per leaf group, the log-densities of its regions' units: [R, B, K] each.

        A missing value contributes log 1 = 0 (it is summed out); under the max semiring it
        contributes the density at the mode instead (it is maximized out)."""
        xt = x.t()
        out = []
        for i, (fam, params, g) in enumerate(zip(self.families, self.leaf_params,
                                                 self.plan.leaf_groups)):
            if g.table:
                out.append(table_values(
                    fam, params.as_dict(), xt, getattr(self, f"leaf_pad_vars_{i}"),
                    getattr(self, f"leaf_pad_slots_{i}"), len(g.regions), semiring))
                continue
            ld = fam.evaluate(xt, getattr(self, f"leaf_vars_{i}"), params.as_dict(), semiring)
            out.append(self._sum_slots(ld, g, getattr(self, f"leaf_slots_{i}")))
        return out

    @torch.no_grad()
    def leaf_statistics(self, x: Tensor, gammas: Sequence[Tensor]) -> list[dict[str, Tensor]]:
        """EM's expected sufficient statistics per leaf group (see `LeafFamily.stats`), from x
        (as `prepare_input` returns it) and gamma = dL/d(region values) [R, B, K] per group.
        Missing values contribute nothing."""
        xt = x.t()
        out = []
        for i, (fam, g, gamma) in enumerate(zip(self.families, self.plan.leaf_groups, gammas)):
            if g.table:
                counts = table_counts(fam, xt, gamma, getattr(self, f"leaf_pad_vars_{i}"),
                                      getattr(self, f"leaf_positions_{i}"))
                out.append(fam.stats_from_counts(counts))
                continue
            xs = xt.index_select(0, getattr(self, f"leaf_vars_{i}"))
            obs = ~torch.isnan(xs)
            slot_gamma = gamma.index_select(0, getattr(self, f"leaf_slots_{i}"))
            out.append(fam.stats(torch.where(obs, xs, torch.zeros_like(xs)), obs.to(xs.dtype),
                                 slot_gamma))
        return out

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

    def log_weight(self, kind: str, i: int) -> Tensor:
        """log W of sum_logits[i] (kind 'sum') or log M of mix_logits[i] (kind 'mix')."""
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
        ops = []
        weight_index = 0
        for j, (op, w) in enumerate(zip(self.plan.ops, self._weight_of_op)):
            wi = None
            if w is not None:
                wi, weight_index = weight_index, weight_index + 1
            if isinstance(op, EinsumOp):
                rows = tuple(r if isinstance(r, int) else getattr(self, f"rows_{j}_{s}")
                             for s, r in enumerate(op.child_rows))
                ops.append(LoweredEinsum(op.child_k, op.k_out, rows, op.out_start,
                                         len(op.members), wi))
            elif isinstance(op, HadamardOp):
                ops.append(LoweredHadamard(op.k_in, op.k_out, getattr(self, f"rows_{j}_0"),
                                           op.out_start, len(op.members), wi))
            else:
                ops.append(LoweredMix(op.k, getattr(self, f"rows_{j}_0"), op.out_start,
                                      len(op.members), wi))
        root_k, root_row = self.plan.region_row[self.plan.root]
        leaves = tuple(LeafSlot(g.k, g.out_start) for g in self.plan.leaf_groups)
        return Program(dict(self.plan.arena_rows), leaves, tuple(ops), root_k, root_row,
                       self.kernels(device))

    def _param_dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    # ----------------------------------------------------------------- parameters <-> IR
    def _locate(self):
        """Maps from IR names to parameter positions: (region, p) -> (sum index, member),
        region -> (mix index, member), region -> (leaf group, member)."""
        part, mix, leaf = {}, {}, {}
        for op, w in zip(self.plan.ops, self._weight_of_op):
            if w is None:
                continue
            kind, i = w
            for m, member in enumerate(op.members):
                (part if kind == "sum" else mix)[member] = (i, m)
        for gi, g in enumerate(self.plan.leaf_groups):
            for m, r in enumerate(g.regions):
                leaf[r] = (gi, m)
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
                gi, m = leaf[prm.region]
                fam, g = self.families[gi], self.plan.leaf_groups[gi]
                slots = torch.from_numpy(np.nonzero(g.slot_region == m)[0])
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
            if name in leaf:
                gi, m = leaf[name]
                fam, g = self.families[gi], self.plan.leaf_groups[gi]
                slots = torch.from_numpy(np.nonzero(g.slot_region == m)[0])
                fields = fam.to_ir({k: v[slots].double() for k, v in
                                    self.leaf_params[gi].as_dict().items()})
                for fname in fam.ir_fields:
                    out.append(_param(name, fname, None, fields[fname].transpose(0, 1)))
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


class LogWeights(Sequence):
    """The log-weights of a model's weighted ops in op order, each normalized when indexed: one
    op's normalized copy exists at a time instead of a second copy of every weight."""

    def __init__(self, model: CompiledCircuit):
        self.model = model
        self.ops = [w for w in model._weight_of_op if w is not None]

    def __len__(self) -> int:
        return len(self.ops)

    def __getitem__(self, i: int) -> Tensor:
        return self.model.log_weight(*self.ops[i])


def _param(region: str, field: str, index: int | None, values: Tensor) -> Param:
    return Param(region, field, index, tuple(values.shape),
                 tuple(float(v) for v in values.reshape(-1).tolist()))
