"""Pieces shared by the Triton kernels: operand tuples, the Kronecker product tile, the
contraction in the chosen precision, the normalization of a row, and how launches are described.

Values are linear with a log-scale per (row, sample), as in `pcc_kernels.reference`. Operands
travel to kernels as small tuples (Triton >= 3.2 takes tuples as kernel arguments; the kernels
unpack them by position, the host builds them as named tuples):

    Operand  rows of an arena (values [M, B, K], scales [M, B]): member n reads, in slot a, row
             rows[n*rows_n + a*rows_a] (GATHER) or start + n (a contiguous block; one slot); the
             member's value is the element-wise product over its slots, its scale the sum
             (values, scales, rows, start, rows_n, rows_a, slots, stride_row, stride_b, stride_k,
              scale_row, scale_b, k)
    Output   rows of an arena written by a layer: (values, scales, norms, stride_n, stride_b,
             stride_k, scale_n, scale_b)
    Weights  [N, R, C] linear weights or flows: (ptr, stride_n, stride_r, stride_c)

Every masked load of values pads with 0, so padding adds nothing to sums or maxima of the
(non-negative) values and never makes a NaN.

Precisions of `contract` (fp32 inputs; fp64 always runs "ieee"):
    ieee     exact fp32 products on FMAs
    tf32     one tensor-core product of operands truncated to tf32 (10-bit mantissa)
    tf32x3   a = a_hi + a_lo with a_hi = a rounded to tf32; a_lo*b_hi + a_hi*b_lo + a_hi*b_hi on
             tensor cores with fp32 accumulation (relative error ~2^-21 per product, fp32-like)
    bf16     operands rounded to bfloat16, fp32 accumulation
and "<p>-emulated" for the interpreter, which ignores `input_precision` and has no bf16 dots:
operands are rounded (or truncated, as the tensor cores read fp32 registers) to tf32/bf16 values
in fp32 and multiplied exactly, which reproduces the tensor-core result up to summation order.
Both operands are split in registers where they are loaded (a few integer operations per
element): the weights are linear already, so no pre-pass touches them.
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


class Operand(NamedTuple):
    """Kernel tuple for the rows a layer reads from an arena (see the module doc)."""

    values: Tensor
    scales: Tensor
    rows: Tensor
    start: int
    rows_n: int
    rows_a: int
    slots: int
    stride_row: int
    stride_b: int
    stride_k: int
    scale_row: int
    scale_b: int
    k: int


class Output(NamedTuple):
    """Kernel tuple for a layer's output rows."""

    values: Tensor
    scales: Tensor
    norms: Tensor
    stride_n: int
    stride_b: int
    stride_k: int
    scale_n: int
    scale_b: int


class Weights(NamedTuple):
    """Kernel tuple for an [N, R, C] tensor."""

    ptr: Tensor
    stride_n: int
    stride_r: int
    stride_c: int


def operand(values: Tensor, scales: Tensor, rows: Rows) -> tuple[Operand, bool]:
    """(operand, GATHER) for rows of an arena: an index tensor [N] (one slot) or [N, A] (A slots)
    is gathered; an int is the first row of a block (`values` stands in for the index
    pointer). `scales` may be None (the operand's scales are not read)."""
    if scales is None:
        scales, scale_strides = values, (0, 0)
    else:
        scale_strides = tuple(scales.stride())
    common = (*values.stride(), *scale_strides, values.shape[2])
    if isinstance(rows, Tensor):
        if rows.dim() == 1:
            rows = rows.unsqueeze(1)
        return Operand(values, scales, rows, 0, rows.stride(0), rows.stride(1), rows.shape[1],
                       *common), True
    return Operand(values, scales, values, int(rows), 0, 0, 1, *common), False


def output(out) -> Output:
    """The kernel tuple of an output `reference.Arena` (rows of values, scales and norms)."""
    if out.scales.stride() != out.norms.stride():
        raise ValueError("an output's scales and norms must have the same strides")
    return Output(out.values, out.scales, out.norms, *out.values.stride(), *out.scales.stride())


def weights(t: Tensor) -> Weights:
    return Weights(t, *t.stride())


# ------------------------------------------------------------------------------ jit helpers
@triton.jit
def member_index(op, n, a, GATHER: tl.constexpr):
    """The row (int64) that member n reads in slot a of operand `op`."""
    if GATHER:
        row = tl.load(op[2] + n * op[4] + a * op[5]).to(tl.int64)
    else:
        row = (op[3] + n).to(tl.int64)
    return row


@triton.jit
def load_units(op, row, b, cols, mask):
    """op's values at `row`, samples b and units cols: [len(b), len(cols)], 0 where masked."""
    return tl.load(op[0] + row * op[7] + b[:, None] * op[8] + cols[None, :] * op[9], mask=mask,
                   other=0.0)


@triton.jit
def member_units(op, n, b, cols, mask, GATHER: tl.constexpr):
    """prod_a op[rows[n, a], b, cols] (the member's element-wise product over its slots) as
    [len(b), len(cols)]; 0 where masked."""
    x = load_units(op, member_index(op, n, 0, GATHER), b, cols, mask)
    for a in range(1, op[6]):
        x *= load_units(op, member_index(op, n, a, GATHER), b, cols, mask)
    return x


@triton.jit
def add_scale(total, s, FLOOR: tl.constexpr):
    """total + s saturated at FLOOR (half the most negative float): zero rows carry the most
    negative scale (`reference.from_log`), and a sum of two would overflow (their values are 0,
    so any scale that low gives the same log-values)."""
    return tl.maximum(total + tl.maximum(s, FLOOR), FLOOR)


@triton.jit
def member_scale(op, n, b, bm, total, GATHER: tl.constexpr, FLOOR: tl.constexpr):
    """total + sum_a op.scales[rows[n, a], b] as [len(b)] (see `add_scale`; 0 where masked)."""
    for a in range(op[6]):
        s = tl.load(op[1] + member_index(op, n, a, GATHER) * op[10] + b * op[11], mask=bm,
                    other=0.0)
        total = add_scale(total, s, FLOOR)
    return total


@triton.jit
def unravel(q, K2, K3):
    """Digits (d1, d2, d3) of the row-major flat index q over [K1, K2, K3]."""
    d3 = q % K3
    rest = q // K3
    return rest // K2, rest % K2, d3


@triton.jit
def kron_tile(factors, n, b, q, mask, K2, K3, NF: tl.constexpr, GATHERS: tl.constexpr):
    """The Kronecker tile [len(b), len(q)] of up to three factors of member n: column q =
    (d1, d2, d3) row-major over [K1, K2, K3] holds F1[b, d1] * F2[b, d2] * F3[b, d3] (each the
    product over its slots); 0 where masked."""
    if NF == 1:
        tile = member_units(factors[0], n, b, q, mask, GATHERS[0])
    else:
        d1, d2, d3 = unravel(q, K2, K3)
        tile = member_units(factors[0], n, b, d1, mask, GATHERS[0])
        tile *= member_units(factors[1], n, b, d2, mask, GATHERS[1])
        if NF == 3:
            tile *= member_units(factors[2], n, b, d3, mask, GATHERS[2])
    return tile


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
    precisions; (x in the dot's input type, the same) otherwise."""
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
def contract(acc, a, b, PRECISION: tl.constexpr):
    """acc + a @ b in PRECISION (see the module doc); the accumulator's type (fp32, or fp64 for
    fp64 operands) is the dot's output type."""
    a_hi, a_lo = split(a, PRECISION)
    b_hi, b_lo = split(b, PRECISION)
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
def accumulate(acc, tile, v, SEMIRING: tl.constexpr, PRECISION: tl.constexpr, DOT: tl.constexpr):
    """acc (+)= tile [R, Q] (x) v [Q, C]: a product in PRECISION (DOT), an FMA reduction over a
    [R, Q, C] product (small C), or (max semiring) acc = max(acc, max_q tile[:, q] v[q, :])."""
    if SEMIRING == "max":
        acc = tl.maximum(acc, tl.max(tile[:, :, None] * v[None, :, :], axis=1))
    elif DOT:
        acc = contract(acc, tile, v, PRECISION)
    else:
        acc += tl.sum(tile[:, :, None] * v[None, :, :], axis=1)
    return acc


@triton.jit
def output_grad(out, grad_out, n, b, o, bmask, mask, TINY: tl.constexpr):
    """h = g / (v * norm + TINY) = dL/d(the layer's raw output) at samples b and units o
    (broadcastable index arrays; `bmask` masks b, `mask` both): 0 where masked, and where the
    output is 0 (as g is there)."""
    v = tl.load(out[0] + n * out[3] + b * out[4] + o * out[5], mask=mask, other=0.0)
    norm = tl.load(out[2] + n * out[6] + b * out[7], mask=bmask, other=1.0)
    g = tl.load(grad_out[0] + n * grad_out[1] + b * grad_out[2] + o * grad_out[3], mask=mask,
                other=0.0)
    return g / (v * norm + TINY)


@triton.jit
def add_rows(target, grad, n, b, c, mask, values, GATHER: tl.constexpr, EXCLUSIVE: tl.constexpr,
             SKIP_ROW0: tl.constexpr):
    """grad[rows[n, a], b, c] += values for every slot a of `target` (an Operand whose strides
    `grad` shares); atomically unless EXCLUSIVE (rows no other program adds to); SKIP_ROW0: not
    into row 0 (an element-wise product's padding slots)."""
    for a in range(target[6]):
        row = member_index(target, n, a, GATHER)
        ptrs = grad + row * target[7] + b[:, None] * target[8] + c[None, :] * target[9]
        live = mask
        if SKIP_ROW0:
            live = mask & ((tl.zeros([1, 1], tl.int64) + row) != 0)
        if EXCLUSIVE:
            tl.store(ptrs, tl.load(ptrs, mask=live, other=0.0) + values, mask=live)
        else:
            tl.atomic_add(ptrs, values, mask=live, sem="relaxed")


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


def tile(names: Sequence[str], *row) -> triton.Config:
    """A tile configuration from block sizes in `names` order, then warps and stages; a block
    given as None is fixed by the launch (a constexpr) and left out."""
    *blocks, warps, stages = row
    return triton.Config({name: v for name, v in zip(names, blocks) if v is not None},
                         num_warps=warps, num_stages=stages)


def without(config: triton.Config | None, name: str) -> triton.Config | None:
    """`config` without the block `name` (when the launch fixes it as a constexpr)."""
    if config is None or name not in config.kwargs:
        return config
    return triton.Config({k: v for k, v in config.kwargs.items() if k != name},
                         num_warps=config.num_warps, num_stages=config.num_stages)


def run_all(launches: Sequence[Launch]) -> None:
    for launch in launches:
        launch.run()


def interpreted(kernel) -> bool:
    """Whether a @triton.jit kernel runs under the interpreter (TRITON_INTERPRET=1 at import)."""
    from triton.runtime.interpreter import InterpretedFunction
    return isinstance(kernel, InterpretedFunction)


def next_pow2(x: int, minimum: int = 1) -> int:
    return max(minimum, triton.next_power_of_2(max(1, x)))


def padding(size: int, block: int) -> float:
    """How much a dimension of `size` grows when covered by blocks of `block`."""
    return triton.cdiv(size, block) * block / max(size, 1)


def limits(dtype: torch.dtype) -> dict[str, float]:
    """The kernels' constants for dtype: TINY, the smallest normal float (the least norm a layer
    records), and FLOOR, half the most negative float (the least scale it sums to)."""
    return dict(TINY=torch.finfo(dtype).tiny, FLOOR=torch.finfo(dtype).min / 2)


def elementwise(batch: int, k: int, kernel) -> triton.Config:
    """The tile of an elementwise kernel: BLOCK_B samples of a [BLOCK_B, next_pow2(k)] tile of
    about 4096 values over 8 warps (16384 under the interpreter, where each program costs
    ~10 ms)."""
    values = 16384 if interpreted(kernel) else 4096
    return triton.Config({"BLOCK_B": min(next_pow2(batch), max(1, values // next_pow2(k)))},
                         num_warps=8)


def padding_pruner(sizes: Callable[[dict], dict[tuple[str, ...], int]], keep: int = 3):
    """An autotuner `early_config_prune`: the configurations whose blocks pad each tiled size by
    at most 1.5x (else those with the least padding there is), at most `keep` of them, the least
    padded and then largest first (each candidate costs a compile and timing runs per shape).
    `sizes(named_args)` maps tuples of block names (whose sum tiles the size) to sizes; a block
    given as a constexpr of the launch counts too."""
    def prune(configs, named_args: dict, **kwargs) -> list:
        dims = sizes(named_args)

        def block(cfg, name) -> int:
            return cfg.kwargs.get(name, kwargs.get(name, 0))

        def waste(cfg) -> float:
            return max([padding(size, sum(block(cfg, name) for name in names))
                        for names, size in dims.items() if block(cfg, names[0])] or [1.0])

        def volume(cfg) -> int:  # larger tiles reuse each loaded tile more
            return math.prod(v for k, v in cfg.kwargs.items() if k.startswith("BLOCK") and v)
        least = min(waste(cfg) for cfg in configs)
        kept = [cfg for cfg in configs if waste(cfg) <= max(1.5, least)]
        return sorted(kept, key=lambda cfg: (waste(cfg), -volume(cfg)))[:keep]
    return prune


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


def pad3(items: Sequence, gathers: Sequence[bool]) -> tuple[tuple, tuple]:
    """Factor operands and GATHER flags as 3-tuples (unused slots repeat the first)."""
    items, gathers = [tuple(i) for i in items], list(gathers)
    while len(items) < 3:
        items.append(items[0])
        gathers.append(gathers[0])
    return tuple(items), tuple(gathers)
