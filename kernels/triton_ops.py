"""The layer kernels on Triton: `EinsumLayer`, `HadamardLayer` and `MixLayer` with the
constructors, methods and semantics of `pcc_kernels.reference` (values linear with a log-scale
per row; forward writes values, scales and norms; backward adds the children's flows into flow
arenas and overwrites the weight flows).

    layer            forward launches                       backward launches
    einsum (a <= 3)  einsum_fwd_kernel (triton_einsum)      flows_kernel (triton_flows), then
                                                            grads_kernel (triton_grads) per child
    einsum, width 1  product_fwd_kernel (triton_product)    product_bwd_kernel
    element-wise     einsum_fwd_kernel, one factor of       flows_kernel, grads_kernel
                     A slots
    mix              mix_fwd_kernel (triton_mix)            mix_bwd_kernel

A layer builds its launches (argument tuples, grids, tiles) when attached to its scratch
buffers, once per semiring and precision, so a forward or backward call only launches. Einsums
of more than three children are the reference's layer (`reference.EinsumLayer`), and so are
point sums (`reference.PointSumLayer`: lookups and small products, the same on any device).
These layers add every child's flows (no `overwrite` flags, `OVERWRITES` unset): the engine
then zeroes the flow arenas before each backward pass.

Runs on CUDA tensors, or on CPU tensors when TRITON_INTERPRET=1 was set before this module was
imported (`INTERPRETED`). float32 and float64 tensors. Contractions of float32 run in precision
"tf32x3" by default (three tf32 tensor-core products per product of split operands: fp32-like
error); `set_precision("ieee" | "tf32" | "bf16" | "tf32x3")` selects another for later calls.
float64 always runs "ieee". Under the interpreter, which ignores `input_precision`, the
tensor-core precisions are emulated (operands rounded to tf32 / bf16 values, exact products), so
their error is tested on the CPU. Children's flows are added with atomic adds where rows may
repeat, so their last bits may vary from run to run on a GPU; the weight flows are written
without atomics. Every entry point is excluded from torch.compile tracing.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from . import reference
from .opaque import opaque
from .reference import Arena, Children, PointSumLayer, Rows, Scratch  # noqa: F401 (re-exported)
from .triton_common import (PRECISIONS, Launch, check_dtype, interpreted, operand, output,
                            run_all, weights)
from .triton_einsum import einsum_fwd_kernel, forward_launch
from .triton_flows import flows_launch
from .triton_grads import grads_launch
from .triton_mix import mix_backward_launch, mix_forward_launch
from .triton_product import product_backward_launch, product_forward_launch

MAX_ARITY = 3
INTERPRETED = interpreted(einsum_fwd_kernel)
SEMIRINGS = ("sum", "max")
DEFAULT_PRECISION = "tf32x3"

_precision = DEFAULT_PRECISION


def set_precision(precision: str) -> None:
    """Contraction precision of later calls: 'tf32x3' (default), 'ieee', 'tf32' or 'bf16'."""
    global _precision
    _precision = _check_precision(precision)


def get_precision() -> str:
    return _precision


def _check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return precision


def kernel_precision(dtype: torch.dtype, precision: str | None = None) -> str:
    """The PRECISION the kernels run (the module's setting unless given): 'ieee' for float64,
    the emulated variant of a tensor-core precision under the interpreter."""
    chosen = _precision if precision is None else _check_precision(precision)
    if dtype == torch.float64 or chosen == "ieee":
        return "ieee"
    return f"{chosen}-emulated" if INTERPRETED else chosen


def _check_semiring(semiring: str) -> None:
    if semiring not in SEMIRINGS:
        raise ValueError(f"semiring must be 'sum' or 'max', got {semiring!r}")


def width_strides(ks: Sequence[int]) -> list[int]:
    """Strides of each child's unit in the row-major width index w = (i_1, ..., i_a)."""
    strides, step = [], 1
    for k in reversed(ks):
        strides.append(step)
        step *= k
    return strides[::-1]


class _Layer:
    """Launch lists per (pass, semiring, precision), built on first use (`attach` builds those
    of the current precision); subclasses `_build` them."""

    backward_ready = False

    def __init__(self, out: Arena, scratch: Scratch, backward: bool):
        self.n, self.batch, self.k_out = out.values.shape
        self.dtype = out.values.dtype
        self.empty = out.values.numel() == 0
        self.backward_ready = backward
        self.scratch = scratch
        self.h_handle = None
        self.h: Tensor | None = None
        self.plans: dict[tuple[str, str, str], list[Launch]] = {}

    def reserve_h(self) -> None:
        """Stage h = dL/d(raw output) [N, B, Ko] in scratch during the backward."""
        self.h_handle = self.scratch.reserve("h", (self.n, self.batch, self.k_out))

    def attach(self) -> None:
        """Take this layer's views of the allocated scratch buffers and build its launches."""
        if self.h_handle is not None:
            self.h = self.scratch.view(self.h_handle)
        precision = kernel_precision(self.dtype)
        for semiring in SEMIRINGS:
            self.launches("forward", semiring, precision)
        if self.backward_ready:
            self.launches("backward", "sum", precision)

    def launches(self, kind: str, semiring: str, precision: str) -> list[Launch]:
        key = (kind, semiring, precision)
        if key not in self.plans:
            self.plans[key] = [] if self.empty else self._build(kind, semiring, precision)
        return self.plans[key]

    def _build(self, kind: str, semiring: str, precision: str) -> list[Launch]:
        raise NotImplementedError

    @opaque
    def forward(self, semiring: str = "sum") -> None:
        _check_semiring(semiring)
        run_all(self.launches("forward", semiring, kernel_precision(self.dtype)))

    @opaque
    def backward(self) -> None:
        run_all(self.launches("backward", "sum", kernel_precision(self.dtype)))


class EinsumLayer(_Layer):
    """The einsum of N partitions over child arenas `sources` (see `reference.EinsumLayer`):
    one fused launch forward; backward the weight flows, then one launch per child."""

    def __new__(cls, sources: Sequence[Arena], *args, **kwargs):
        if len(sources) > MAX_ARITY:
            return reference.EinsumLayer(sources, *args, **kwargs)
        return super().__new__(cls)

    def __init__(self, sources: Sequence[Arena], rows: Sequence[Rows], w: Tensor, out: Arena,
                 scratch: Scratch, grads: Sequence[Tensor] | None = None,
                 grad_out: Tensor | None = None, flows: Tensor | None = None):
        check_dtype(out.values, w, *(s.values for s in sources))
        super().__init__(out, scratch, grads is not None)
        self.ks = [s.values.shape[-1] for s in sources]
        self.width = w.shape[-1]
        self.factors = [operand(s.values, s.scales, r) for s, r in zip(sources, rows)]
        self.w, self.out, self.grads, self.grad_out, self.flows = w, out, grads, grad_out, flows
        if grads is not None and self.width > 1:
            self.reserve_h()

    def _build(self, kind: str, semiring: str, precision: str) -> list[Launch]:
        out = output(self.out)
        if self.width == 1:
            if kind == "forward":
                return [product_forward_launch(self.factors, out, self.n, self.batch,
                                               self.k_out)]
            return [product_backward_launch(self.factors, self.grads, self.grad_out)]
        if kind == "forward":
            return [forward_launch(self.factors, weights(self.w), out, self.n, self.batch,
                                   self.k_out, self.ks, semiring, precision)]
        launches = [flows_launch(self.factors, self.ks, out, self.grad_out, self.h,
                                 weights(self.w), self.flows, precision)]
        h = operand(self.h, None, 0)
        w, unit = self.w, self.w.stride(2)
        strides = [s * unit for s in width_strides(self.ks)]
        for j, (target, grad) in enumerate(zip(self.factors, self.grads)):
            others = [i for i in range(len(self.ks)) if i != j]
            digits = [w.stride(1)] + [strides[i] for i in others] + [0] * (2 - len(others))
            launches.append(grads_launch(
                [h] + [self.factors[i] for i in others],
                [self.k_out] + [self.ks[i] for i in others],
                (w, w.stride(0), *digits, strides[j]), target, grad, self.n, self.batch,
                precision, exclusive=not target[1]))
        return launches


class HadamardLayer(_Layer):
    """y = W (x_1 * ... * x_A) of N members whose children are rows of `source` (see
    `reference.HadamardLayer`; padded slots read row 0 and get no flow)."""

    def __init__(self, source: Arena, children: Children, w: Tensor, out: Arena,
                 scratch: Scratch, grad_source: Tensor | None = None,
                 grad_out: Tensor | None = None, flows: Tensor | None = None):
        check_dtype(out.values, w, source.values)
        super().__init__(out, scratch, grad_source is not None)
        self.k = source.values.shape[-1]
        self.factor = operand(source.values, source.scales, children.rows)
        self.w, self.out, self.grad_source = w, out, grad_source
        self.grad_out, self.flows = grad_out, flows
        if grad_source is not None:
            self.reserve_h()

    def _build(self, kind: str, semiring: str, precision: str) -> list[Launch]:
        out, w = output(self.out), self.w
        if kind == "forward":
            return [forward_launch([self.factor], weights(w), out, self.n, self.batch,
                                   self.k_out, [self.k], semiring, precision)]
        return [flows_launch([self.factor], [self.k], out, self.grad_out, self.h, weights(w),
                             self.flows, precision),
                grads_launch([operand(self.h, None, 0)], [self.k_out],
                             (w, w.stride(0), w.stride(1), 0, 0, w.stride(2)), self.factor,
                             self.grad_source, self.n, self.batch, precision, skip_row0=True)]


class MixLayer(_Layer):
    """y[k] = sum_p M[p,k] x_p[k] (scales aligned) of N regions whose partitions are rows
    `rows` [N, P] of `source` (`mask` [N, P] marks the real ones); see `reference.MixLayer`."""

    def __init__(self, source: Arena, rows: Tensor, mask: Tensor, m: Tensor, out: Arena,
                 scratch: Scratch, grad_source: Tensor | None = None,
                 grad_out: Tensor | None = None, flows: Tensor | None = None):
        check_dtype(out.values, m, source.values)
        super().__init__(out, scratch, grad_source is not None)
        rows = rows.contiguous()
        self.live = mask.to(torch.int8).contiguous()  # the strides of rows
        self.source = operand(source.values, source.scales, rows)[0]
        self.m, self.out, self.grad_source = m, out, grad_source
        self.grad_out, self.flows = grad_out, flows

    def _build(self, kind: str, semiring: str, precision: str) -> list[Launch]:
        out = output(self.out)
        if kind == "forward":
            return [mix_forward_launch(self.source, self.live, self.m, out, self.n, self.batch,
                                       self.k_out, semiring)]
        return [mix_backward_launch(self.source, self.live, self.m, out, self.grad_out,
                                    self.grad_source, self.flows)]
