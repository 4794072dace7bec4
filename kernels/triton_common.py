"""Pieces shared by the Triton kernels: row addressing, -inf-safe shifts and logs, the contraction
in the chosen precision, and how launch arguments are packed.

An arena is [M, B, K] log-values; a kernel reads rows `rows[n]` (gathered, GATHER=True) or
`start + n` (a contiguous block, GATHER=False) of it. Every masked load pads with -inf (log 0),
so padding contributes exp(-inf) = 0 to sums and -inf to maxima, never NaN.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence, Union

import torch
import triton
import triton.language as tl
from torch import Tensor

Rows = Union[Tensor, int]

PRECISIONS = ("ieee", "tf32x3", "tf32", "bf16")


@triton.jit
def row_base(x, rows, start, n, stride_row, GATHER: tl.constexpr):
    """Pointer to row rows[n] (GATHER) or start + n of arena x."""
    if GATHER:
        row = tl.load(rows + n).to(tl.int64)
    else:
        row = (start + n).to(tl.int64)
    return x + row * stride_row


@triton.jit
def load_cols(base, b, stride_b, cols, stride_k, mask):
    """x[b, cols] as [len(b), len(cols)] from a row base pointer; -inf where masked."""
    return tl.load(base + b[:, None] * stride_b + cols[None, :] * stride_k, mask=mask,
                   other=float("-inf"))


@triton.jit
def row_shift(x):
    """max over axis 1 of x [R, C], with 0 for rows that are all -inf (so x - shift is never NaN)."""
    m = tl.max(x, axis=1)
    return tl.where(m == float("-inf"), 0.0, m)


@triton.jit
def safe_log(x):
    """log x for x > 0, -inf for x <= 0, without evaluating log(0)."""
    pos = x > 0
    return tl.where(pos, tl.log(tl.where(pos, x, 1.0)), float("-inf"))


@triton.jit
def matmul(a, b, PRECISION: tl.constexpr):
    """a @ b accumulated in a's float type; PRECISION 'ieee' (exact fp32/fp64, on FMAs), 'tf32x3'
    (three tf32 tensor-core products of split operands: close to fp32), 'tf32', or 'bf16'
    (operands rounded to bfloat16, fp32 accumulation)."""
    if PRECISION == "bf16":
        res = tl.dot(a.to(tl.bfloat16), b.to(tl.bfloat16)).to(a.dtype)
    else:
        res = tl.dot(a, b, input_precision=PRECISION)
    return res


@triton.jit
def add_child_grad(g, g_r, g_b, g_k, rows, start, n, b, bm, cols, k, grad, GATHER: tl.constexpr):
    """grad_arena[row of n, b, cols] += grad [len(b), len(cols)] where cols < k (atomic: rows
    repeat across partitions)."""
    base = row_base(g, rows, start, n, g_r, GATHER)
    tl.atomic_add(base + b[:, None] * g_b + cols[None, :] * g_k, grad,
                  mask=bm[:, None] & (cols < k)[None, :], sem="relaxed")


@dataclass(frozen=True)
class Launch:
    """One kernel launch: kernel[grid](*args, **constexprs, num_warps=num_warps)."""

    kernel: Any
    grid: tuple[int, ...]
    args: tuple
    constexprs: dict[str, Any] = field(default_factory=dict)
    num_warps: int = 4

    def run(self) -> None:
        self.kernel[self.grid](*self.args, **self.constexprs, num_warps=self.num_warps)


def interpreted(kernel) -> bool:
    """Whether a @triton.jit kernel runs under the interpreter (TRITON_INTERPRET=1 at import)."""
    from triton.runtime.interpreter import InterpretedFunction
    return isinstance(kernel, InterpretedFunction)


def next_pow2(x: int, minimum: int = 1) -> int:
    return max(minimum, triton.next_power_of_2(max(1, x)))


def rows_per_program(batch: int, k: int, interpret: bool) -> int:
    """Samples per program of an elementwise [BLOCK_B, next_pow2(k)] tile: about 1024 values
    (16384 under the interpreter, where each program costs ~10 ms)."""
    return min(next_pow2(batch), max(1, (16384 if interpret else 1024) // next_pow2(k)))


def rows_args(arena: Tensor, rows: Rows) -> tuple[Tensor, int, bool]:
    """(index tensor, start, GATHER) for a kernel's row_base: an index tensor [N] is gathered; an
    int is the first row of a block (the arena stands in for the unused index pointer)."""
    if isinstance(rows, Tensor):
        return rows.contiguous(), 0, True
    return arena, int(rows), False


def arena_args(x: Tensor) -> tuple:
    """A [M, B, K] tensor as (pointer, stride_row, stride_b, stride_k)."""
    return (x, *x.stride())


def check_dtype(*tensors: Tensor) -> None:
    dtype = tensors[0].dtype
    if dtype not in (torch.float32, torch.float64):
        raise TypeError(f"Triton kernels support float32 and float64 tensors, got {dtype}")
    for t in tensors[1:]:
        if t.dtype != dtype:
            raise TypeError(f"all tensors must have dtype {dtype}, got {t.dtype}")


def child_slots(sources: Sequence[Tensor], rows: Sequence[Rows],
                grads: Sequence[Tensor] | None = None) -> tuple[list[tuple], list[bool], list[int]]:
    """Kernel arguments of children (A, B, L), with `grads`' arena arguments appended if given:
    the last child is L, the ones before it A then B. An absent lead repeats L's arguments with
    K = 1 (never read). Returns (args, GATHER flags, K)."""
    a = len(sources)
    slots: list = [*range(a - 1), *[None] * (3 - a), a - 1]
    args, gathers, ks = [], [], []
    for s in slots:
        i = len(sources) - 1 if s is None else s
        idx, start, gather = rows_args(sources[i], rows[i])
        k = 1 if s is None else sources[i].shape[2]
        extra = () if grads is None else arena_args(grads[i])
        args.append((*arena_args(sources[i]), idx, start, k, *extra))
        gathers.append(gather)
        ks.append(k)
    return args, gathers, ks
