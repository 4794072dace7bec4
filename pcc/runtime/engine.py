"""The engine: run a plan's ops over arenas with a kernel set, upward and (explicitly) backward.

The whole sum/product part of a circuit is one `torch.autograd.Function` (`CircuitFunction`): its
forward writes every node's log-values into the arenas; its backward walks the ops in reverse,
calling each kernel's backward, which adds child gradients into gradient arenas and returns the
weight flows. So torch autograd sees only the leaves and the weights, and nothing but the arenas
is kept for the backward pass. A flow sink (used by EM's step) takes each op's flows as the
backward pass makes them, so that no op's flows need outlive it.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Callable, Sequence

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

FlowSink = Callable[[int, Tensor], None]  # (index of a weighted op, its flows W * dL/dW)


@dataclass(frozen=True)
class LoweredEinsum:
    """An EinsumOp with its index arrays as tensors on the run device (or ints for blocks)."""

    child_k: tuple[int, ...]
    k_out: int
    child_rows: tuple  # Tensor [N] or int per slot
    out_start: int
    n: int
    weight: int | None  # index into the weights list, None for plain products


@dataclass(frozen=True)
class LoweredHadamard:
    """A HadamardOp: children rows [N, A] of arena k_in, output rows of arena k_out."""

    k_in: int
    k_out: int
    child_rows: Tensor  # [N, A]
    out_start: int
    n: int
    weight: int  # index into the weights list


@dataclass(frozen=True)
class LoweredMix:
    k: int
    part_rows: Tensor  # [N, P]
    out_start: int
    n: int
    weight: int  # index into the weights list


@dataclass(frozen=True)
class LeafSlot:
    """Where a leaf group's values [n, B, k] go: rows [start, start+n) of arena k."""

    k: int
    start: int


@dataclass(frozen=True)
class Program:
    """A lowered plan: arenas, where the leaves go, the ops in order, where the root is."""

    arena_rows: dict[int, int]
    leaves: tuple[LeafSlot, ...]
    ops: tuple
    root_k: int
    root_row: int
    kernels: ModuleType

    def upward(self, leaf_values: Sequence[Tensor], weights: Sequence[Tensor],
               semiring: str = "sum", arenas: dict[int, Tensor] | None = None
               ) -> dict[int, Tensor]:
        """Arenas with every node's log-values for this batch (max-product if semiring='max'),
        written into `arenas` when given (see `new_arenas`)."""
        ref = leaf_values[0]
        if arenas is None:
            arenas = self.new_arenas(ref.shape[1], ref)
        for arena in arenas.values():
            arena[0].zero_()
        for slot, values in zip(self.leaves, leaf_values):
            arenas[slot.k][slot.start: slot.start + values.shape[0]].copy_(values)
        for op in self.ops:
            if isinstance(op, LoweredEinsum):
                self.kernels.einsum_forward(
                    [arenas[k] for k in op.child_k], op.child_rows, self._log_w(op, weights, ref),
                    arenas[op.k_out][op.out_start: op.out_start + op.n], semiring)
            elif isinstance(op, LoweredHadamard):
                self.kernels.hadamard_forward(
                    arenas[op.k_in], op.child_rows, weights[op.weight],
                    arenas[op.k_out][op.out_start: op.out_start + op.n], semiring)
            else:
                self.kernels.mix_forward(
                    arenas[op.k], op.part_rows, weights[op.weight],
                    arenas[op.k][op.out_start: op.out_start + op.n], semiring)
        return arenas

    def new_arenas(self, batch: int, like: Tensor) -> dict[int, Tensor]:
        """Uninitialized arenas for a batch: {K: [rows, batch, K]} in like's dtype and device."""
        return {k: torch.empty(rows, batch, k, dtype=like.dtype, device=like.device)
                for k, rows in self.arena_rows.items()}

    def root(self, arenas: dict[int, Tensor]) -> Tensor:
        """The root region's values, [B, K_root]."""
        return arenas[self.root_k][self.root_row]

    def backward(self, arenas: dict[int, Tensor], weights: Sequence[Tensor], grad_root: Tensor,
                 leaf_sizes: Sequence[int], flow_sink: FlowSink | None = None
                 ) -> tuple[list[Tensor], list[Tensor | None]]:
        """Gradients of the leaf values and flows of the weights, given dL/droot [B, K_root].
        With a `flow_sink`, each op's flows go to it as soon as they are computed (the op's
        weights are read no more after that), and None is returned in their place."""
        grads = {k: torch.zeros_like(a) for k, a in arenas.items()}
        grads[self.root_k][self.root_row] += grad_root
        flows: list[Tensor | None] = [None] * len(weights)
        ref = grad_root
        for op in reversed(self.ops):
            out = slice(op.out_start, op.out_start + op.n)
            if isinstance(op, LoweredEinsum):
                f = self.kernels.einsum_backward(
                    [arenas[k] for k in op.child_k], op.child_rows, self._log_w(op, weights, ref),
                    arenas[op.k_out][out], grads[op.k_out][out], [grads[k] for k in op.child_k])
            elif isinstance(op, LoweredHadamard):
                f = self.kernels.hadamard_backward(
                    arenas[op.k_in], op.child_rows, weights[op.weight], arenas[op.k_out][out],
                    grads[op.k_out][out], grads[op.k_in])
            else:
                f = self.kernels.mix_backward(
                    arenas[op.k], op.part_rows, weights[op.weight], arenas[op.k][out],
                    grads[op.k][out], grads[op.k])
            if op.weight is not None:
                if flow_sink is None:
                    flows[op.weight] = f
                else:
                    flow_sink(op.weight, f)
        leaf_grads = [grads[s.k][s.start: s.start + n] for s, n in zip(self.leaves, leaf_sizes)]
        return leaf_grads, flows

    @staticmethod
    def _log_w(op: LoweredEinsum, weights: Sequence[Tensor], ref: Tensor) -> Tensor:
        if op.weight is not None:
            return weights[op.weight]
        return torch.zeros(op.n, op.k_out, 1, dtype=ref.dtype, device=ref.device)


class CircuitFunction(torch.autograd.Function):
    """root = circuit(leaf values, log-weights); backward gives leaf gradients and weight flows."""

    @staticmethod
    def forward(ctx, program: Program, flow_sink: FlowSink | None, num_leaf: int,
                *tensors: Tensor) -> Tensor:
        leaf_values, weights = tensors[:num_leaf], tensors[num_leaf:]
        arenas = program.upward(leaf_values, weights)
        ctx.program, ctx.arenas, ctx.weights = program, arenas, weights
        ctx.flow_sink = flow_sink
        ctx.leaf_sizes = [v.shape[0] for v in leaf_values]
        return program.root(arenas).clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_root: Tensor):
        leaf_grads, flows = ctx.program.backward(ctx.arenas, ctx.weights, grad_root,
                                                 ctx.leaf_sizes, ctx.flow_sink)
        ctx.arenas = None
        return (None, None, None, *leaf_grads, *flows)
