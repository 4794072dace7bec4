"""Pieces shared by the Triton kernels: operand tuples, row addressing, -inf-safe shifts and logs,
the contraction in the chosen precision, and how launches are described.

Operands travel to kernels as small tuples (Triton >= 3.2 takes tuples as kernel arguments; the
kernels unpack them by position, the host builds them as named tuples):

    Arena    rows of an [M, B, K] tensor: member n, slot a reads row rows[n*rows_n + a*rows_a]
             (GATHER) or start + n (a contiguous block; one slot)
             (ptr, rows, start, rows_n, rows_a, slots, stride_row, stride_b, stride_k, k)
    Matrix   a [N, R, C] tensor: (ptr, stride_n, stride_r, stride_c)

Every masked load of log-values pads with -inf (log 0), every load of linear values with 0, so
padding adds nothing to sums and -inf to maxima, never NaN.

Precisions of `contract` (fp32 inputs; fp64 always runs "ieee"):
    ieee     exact fp32 products on FMAs
    tf32     one tensor-core product of operands truncated to tf32 (10-bit mantissa)
    tf32x3   a = a_hi + a_lo with a_hi = a rounded to tf32; a_lo*b_hi + a_hi*b_lo + a_hi*b_hi on
             tensor cores with fp32 accumulation (relative error ~2^-21 per product, fp32-like)
    bf16     operands rounded to bfloat16, fp32 accumulation
and "<p>-emulated" for the interpreter, which ignores `input_precision` and has no bf16 dots:
operands are rounded (or truncated, as the tensor cores read fp32 registers) to tf32/bf16 values
in fp32 and multiplied exactly, which reproduces the tensor-core result up to summation order.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any, Callable, NamedTuple, Sequence, Union

import torch
import triton
import triton.language as tl
from torch import Tensor

Rows = Union[Tensor, int]

PRECISIONS = ("tf32x3", "ieee", "tf32", "bf16")
# PCC_TRITON_AUTOTUNE=0: run each tuned kernel with the first configuration its pruning keeps
# (no timing runs; for short sessions and debugging).
AUTOTUNE = os.environ.get("PCC_TRITON_AUTOTUNE", "1") != "0"
TENSOR_CORE = ("tf32x3", "tf32", "bf16")


class Arena(NamedTuple):
    """Kernel tuple for rows of an [M, B, K] tensor (see the module doc)."""

    ptr: Tensor
    rows: Tensor
    start: int
    rows_n: int
    rows_a: int
    slots: int
    stride_row: int
    stride_b: int
    stride_k: int
    k: int


class Matrix(NamedTuple):
    """Kernel tuple for an [N, R, C] tensor."""

    ptr: Tensor
    stride_n: int
    stride_r: int
    stride_c: int


def arena(x: Tensor, rows: Rows) -> tuple[Arena, bool]:
    """(operand, GATHER) for rows of x [M, B, K]: an index tensor [N] (one slot) or [N, A] (A
    slots) is gathered; an int is the first row of a block (x stands in for the index pointer)."""
    if isinstance(rows, Tensor):
        if rows.dim() == 1:
            rows = rows.unsqueeze(1)
        return Arena(x, rows, 0, rows.stride(0), rows.stride(1), rows.shape[1], *x.stride(),
                     x.shape[2]), True
    return Arena(x, x, int(rows), 0, 0, 1, *x.stride(), x.shape[2]), False


def staged(x: Tensor) -> tuple[Arena, bool]:
    """(operand, GATHER) reading a staging buffer [N, B, K] row n for member n."""
    return arena(x, 0)


def matrix(x: Tensor) -> Matrix:
    return Matrix(x, *x.stride())


# ------------------------------------------------------------------------------ jit helpers
@triton.jit
def member_index(op, n, a, GATHER: tl.constexpr):
    """The row (int64) that member n reads in slot a of operand `op` (an Arena tuple)."""
    ptr, rows, start, rows_n, rows_a, slots, s_r, s_b, s_k, k = op
    if GATHER:
        row = tl.load(rows + n * rows_n + a * rows_a).to(tl.int64)
    else:
        row = (start + n).to(tl.int64)
    return row


@triton.jit
def member_row(op, n, a, GATHER: tl.constexpr):
    """Pointer to the row that member n reads in slot a of operand `op` (an Arena tuple)."""
    return op[0] + member_index(op, n, a, GATHER) * op[6]


@triton.jit
def load_tile(op, base, b, cols, mask, other):
    """op's row `base` at samples b and units cols: [len(b), len(cols)], `other` where masked."""
    ptr, rows, start, rows_n, rows_a, slots, s_r, s_b, s_k, k = op
    return tl.load(base + b[:, None] * s_b + cols[None, :] * s_k, mask=mask, other=other)


@triton.jit
def summed_rows(op, n, b, cols, mask, GATHER: tl.constexpr):
    """sum_a op[rows[n, a], b, cols] as [len(b), len(cols)] (-inf where masked)."""
    ptr, rows, start, rows_n, rows_a, slots, s_r, s_b, s_k, k = op
    x = load_tile(op, member_row(op, n, 0, GATHER), b, cols, mask, float("-inf"))
    for a in range(1, slots):
        x += load_tile(op, member_row(op, n, a, GATHER), b, cols, mask, float("-inf"))
    return x


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
def round_tf32(x):
    """x rounded to the nearest tf32 value (10-bit mantissa, ties away from zero), as fp32."""
    bits = x.to(tl.int32, bitcast=True)
    return ((bits + 0x1000) & -8192).to(tl.float32, bitcast=True)


@triton.jit
def truncate_tf32(x):
    """x with the 13 low mantissa bits cleared: what a tf32 tensor core reads of an fp32 value."""
    return (x.to(tl.int32, bitcast=True) & -8192).to(tl.float32, bitcast=True)


@triton.jit
def round_bf16(x):
    """x rounded to the nearest bfloat16 value (ties to even), as fp32."""
    bits = x.to(tl.int32, bitcast=True)
    bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & -65536
    return bits.to(tl.float32, bitcast=True)


@triton.jit
def split(x, PRECISION: tl.constexpr):
    """The operand parts `contract` multiplies: (hi, lo) with x ~ hi + lo for the tf32x3
    precisions; (x in the dot's input type, unused) otherwise."""
    if PRECISION == "tf32x3":
        hi = round_tf32(x)
        lo = x - hi
    elif PRECISION == "tf32x3-emulated":
        hi = round_tf32(x)
        lo = truncate_tf32(x - hi)
    elif PRECISION == "tf32-emulated":
        hi = truncate_tf32(x)
        lo = hi
    elif PRECISION == "bf16":
        hi = x.to(tl.bfloat16)
        lo = hi
    elif PRECISION == "bf16-emulated":
        hi = round_bf16(x)
        lo = hi
    else:
        hi = x
        lo = x
    return hi, lo


@triton.jit
def contract(acc, a_hi, a_lo, b_hi, b_lo, PRECISION: tl.constexpr):
    """acc + a @ b for operands given as `split` parts, in PRECISION (see the module doc); the
    accumulator's type (fp32, or fp64 for fp64 operands) is the dot's output type."""
    if PRECISION == "tf32x3":
        acc = tl.dot(a_lo, b_hi, acc, input_precision="tf32", out_dtype=acc.dtype)
        acc = tl.dot(a_hi, b_lo, acc, input_precision="tf32", out_dtype=acc.dtype)
        acc = tl.dot(a_hi, b_hi, acc, input_precision="tf32", out_dtype=acc.dtype)
    elif PRECISION == "tf32x3-emulated":
        acc = tl.dot(a_lo, b_hi, acc, input_precision="ieee", out_dtype=acc.dtype)
        acc = tl.dot(a_hi, b_lo, acc, input_precision="ieee", out_dtype=acc.dtype)
        acc = tl.dot(a_hi, b_hi, acc, input_precision="ieee", out_dtype=acc.dtype)
    elif PRECISION == "tf32":
        acc = tl.dot(a_hi, b_hi, acc, input_precision="tf32", out_dtype=acc.dtype)
    elif PRECISION == "bf16":
        acc = tl.dot(a_hi, b_hi, acc, out_dtype=acc.dtype)
    else:  # ieee, and the emulated tf32 / bf16 whose parts are already rounded
        acc = tl.dot(a_hi, b_hi, acc, input_precision="ieee", out_dtype=acc.dtype)
    return acc


@triton.jit
def joined(hi, lo, PRECISION: tl.constexpr):
    """The value a pair of `split` parts stands for, in fp32 (for the FMA reduction paths)."""
    if PRECISION == "tf32x3" or PRECISION == "tf32x3-emulated":
        x = hi + lo
    elif PRECISION == "bf16":
        x = hi.to(tl.float32)
    else:
        x = hi
    return x


@triton.jit
def program_tile(pid, blocks_inner, blocks_outer):
    """(member n as int64, outer block, inner block) of a flat program id, inner blocks fastest
    (programs sharing a member's weights run together)."""
    n = (pid // (blocks_inner * blocks_outer)).to(tl.int64)
    return n, (pid // blocks_inner) % blocks_outer, pid % blocks_inner


@triton.jit
def load_weights(hi, lo, offs, mask, PRECISION: tl.constexpr):
    """The weight parts at offs (0 where masked): (hi, lo) for tf32x3, else (hi, hi)."""
    w_hi = tl.load(hi + offs, mask=mask, other=0.0)
    if PRECISION == "tf32x3" or PRECISION == "tf32x3-emulated":
        w_lo = tl.load(lo + offs, mask=mask, other=0.0)
    else:
        w_lo = w_hi
    return w_hi, w_lo


@triton.jit
def unravel(q, K2, K3):
    """Digits (d1, d2, d3) of the row-major flat index q over [K1, K2, K3]."""
    d3 = q % K3
    rest = q // K3
    return rest // K2, rest % K2, d3


# ------------------------------------------------------------------------------ launches
@dataclass(frozen=True)
class Launch:
    """One kernel launch: kernel[grid(meta)](*args, **constexprs, **meta).

    `meta` is the tile configuration: `config` when fixed (the interpreter, tests, or a kernel
    without tuning); otherwise `tuned` (the @triton.autotune wrapper of `kernel`) picks one of
    `configs` per shape. `grid` maps the meta-parameters to the grid."""

    kernel: Any
    grid: Callable[[dict], tuple[int, ...]]
    args: tuple
    constexprs: dict[str, Any]
    config: triton.Config | None = None
    tuned: Any = None
    configs: Sequence[triton.Config] = field(default_factory=tuple)

    def run(self) -> None:
        config = self.config
        if config is None and not AUTOTUNE:
            config = self.candidates()[0]
        if config is not None:
            meta = config.all_kwargs()
            self.kernel[self.grid(meta)](*self.args, **self.constexprs, **meta)
        else:
            self.tuned[self.grid](*self.args, **self.constexprs)

    def candidates(self) -> list[triton.Config]:
        """Every configuration this launch may run with (for the compile-only check): the fixed
        one, or the tuned list as the autotuner prunes it for these arguments."""
        if self.config is not None:
            return [self.config]
        prune = getattr(self.tuned, "early_config_prune", None)
        if prune is None:
            return list(self.configs)
        return list(prune(list(self.configs), dict(zip(self.kernel.arg_names, self.args)),
                          **self.constexprs))


def interpreted(kernel) -> bool:
    """Whether a @triton.jit kernel runs under the interpreter (TRITON_INTERPRET=1 at import)."""
    from triton.runtime.interpreter import InterpretedFunction
    return isinstance(kernel, InterpretedFunction)


def next_pow2(x: int, minimum: int = 1) -> int:
    return max(minimum, triton.next_power_of_2(max(1, x)))


def padding(size: int, block: int) -> float:
    """How much a dimension of `size` grows when covered by blocks of `block`."""
    return triton.cdiv(size, block) * block / max(size, 1)


# Elementwise kernels: [BLOCK_B, next_pow2(K)] tiles of ~4096 values over 8 warps (16 values per
# thread and tile; float64 tiles spilled with 4 warps).
ELEMENTWISE = triton.Config({}, num_warps=8)


def rows_per_program(batch: int, k: int, interpret: bool, values: int = 4096) -> int:
    """Samples per program of an elementwise [BLOCK_B, next_pow2(k)] tile of about `values`
    values (16384 under the interpreter, where each program costs ~10 ms)."""
    return min(next_pow2(batch), max(1, (16384 if interpret else values) // next_pow2(k)))


def padding_pruner(sizes: Callable[[dict], dict[tuple[str, ...], int]], keep: int = 3):
    """An autotuner `early_config_prune`: the configurations whose blocks pad each tiled size by
    at most 1.5x (else those with the least padding there is), at most `keep` of them, the least
    padded and then largest first (each candidate costs a compile and timing runs per shape). `sizes(named_args)`
    maps tuples of block names (whose sum tiles the size, e.g. ("BLOCK_C", "BLOCK_C2")) to
    sizes."""
    def prune(configs, named_args: dict, **kwargs) -> list:
        dims = sizes(named_args)

        def waste(cfg) -> float:
            return max([padding(size, sum(cfg.kwargs[name] for name in names))
                        for names, size in dims.items() if names[0] in cfg.kwargs] or [1.0])
        def volume(cfg) -> int:  # larger tiles reuse each loaded tile more
            return math.prod(v for k, v in cfg.kwargs.items() if k.startswith("BLOCK") and v)
        least = min(waste(cfg) for cfg in configs)
        kept = [cfg for cfg in configs if waste(cfg) <= max(1.5, least)]
        return sorted(kept, key=lambda cfg: (waste(cfg), -volume(cfg)))[:keep]
    return prune


_SM_COUNT: dict[int, int] = {}


def sm_count(device: torch.device) -> int:
    """Streaming multiprocessors of a CUDA device (132 for an H100/H200 SXM); 1 elsewhere."""
    if device.type != "cuda":
        return 1
    index = device.index if device.index is not None else torch.cuda.current_device()
    if index not in _SM_COUNT:
        _SM_COUNT[index] = torch.cuda.get_device_properties(index).multi_processor_count
    return _SM_COUNT[index]


def split_for(programs: int, most: int, device: torch.device) -> int:
    """Programs per output tile for a launch of `programs` tiles: enough for ~2 per SM when the
    launch is smaller (at most `most`); 1 off the GPU."""
    if device.type != "cuda":
        return 1
    want = 2 * sm_count(device)
    if programs >= want:
        return 1
    return max(1, min(triton.cdiv(want, programs), most))


def bench_quickly(kernel_call, quantiles):
    """The autotuner's timer: short warmup and repetition (tuning runs once per shape)."""
    return triton.testing.do_bench(kernel_call, warmup=5, rep=20, quantiles=quantiles)


def check_dtype(*tensors: Tensor) -> None:
    dtype = tensors[0].dtype
    if dtype not in (torch.float32, torch.float64):
        raise TypeError(f"Triton kernels support float32 and float64 tensors, got {dtype}")
    for t in tensors[1:]:
        if t.dtype != dtype:
            raise TypeError(f"all tensors must have dtype {dtype}, got {t.dtype}")


# ------------------------------------------------------------------------------ product tiles
@triton.jit
def factor_rows(factors, n, GATHERS: tl.constexpr, NF: tl.constexpr):
    """Row pointers (slot 0) of member n in the NF factor operands (unused ones repeat factor 0)."""
    base1 = member_row(factors[0], n, 0, GATHERS[0])
    base2 = base1
    base3 = base1
    if NF >= 2:
        base2 = member_row(factors[1], n, 0, GATHERS[1])
    if NF == 3:
        base3 = member_row(factors[2], n, 0, GATHERS[2])
    return base1, base2, base3


@triton.jit
def kron_tile(factors, base1, base2, base3, b, q, mask, K2, K3, NF: tl.constexpr,
              SEMIRING: tl.constexpr):
    """The Kronecker tile [len(b), len(q)] of the factors' rows: column q = (d1, d2, d3) row-major
    over [K1, K2, K3] holds F1[b, d1] * F2[b, d2] * F3[b, d3] (sum semiring; 0 where masked) or
    F1[b, d1] + F2[b, d2] + F3[b, d3] (max semiring, on log-values; -inf where masked)."""
    d1, d2, d3 = unravel(q, K2, K3)
    if SEMIRING == "sum":
        tile = load_tile(factors[0], base1, b, d1, mask, 0.0)
        if NF >= 2:
            tile = tile * load_tile(factors[1], base2, b, d2, mask, 0.0)
        if NF == 3:
            tile = tile * load_tile(factors[2], base3, b, d3, mask, 0.0)
    else:
        tile = load_tile(factors[0], base1, b, d1, mask, float("-inf"))
        if NF >= 2:
            tile = tile + load_tile(factors[1], base2, b, d2, mask, float("-inf"))
        if NF == 3:
            tile = tile + load_tile(factors[2], base3, b, d3, mask, float("-inf"))
    return tile


def pad_factors(ops: Sequence[tuple], gathers: Sequence[bool]) -> tuple[tuple, tuple]:
    """Factor operands and GATHER flags as 3-tuples (unused slots repeat the first)."""
    ops, gathers = list(ops), list(gathers)
    while len(ops) < 3:
        ops.append(ops[0])
        gathers.append(gathers[0])
    return tuple(tuple(op) for op in ops), tuple(gathers)
