"""Compile the kernel configurations the layers produce for real GPU targets, without a GPU.

Run as a script in a process where TRITON_INTERPRET is not set (see test_compile_gpu_targets.py):
    python tests/gpu_compile.py [--resources] [--wide | --full] 80 90
prints one line per distinct configuration and target and exits 1 if any failed to compile, needs
more shared memory than the target has, or (contraction kernels) uses tensor-core instructions
against its precision: tf32x3, tf32 and bf16 must emit mma (sm80: mma.sync; sm90: wgmma or
mma.sync), ieee must not (float32). The layers (`pcc_kernels.triton_ops`) are bound on meta
tensors with GPU-sized shapes (B = 1000, N = 64) exactly as the engine binds them, so the
launches and tiles are those a GPU run would use. By default (the CI test) every kernel and code
path compiles once, with the first tuned configuration; --wide adds cases and compiles every
configuration of an autotuned kernel's list that its pruning keeps for the K = 40 layers; --full
adds shapes and every configuration. `triton.compile` runs the whole pipeline down to a cubin
with the bundled ptxas. --resources adds registers and spill stack per thread (from the bundled
cuobjdump) and fails on heavy spills (> SPILL_LIMIT bytes).
"""
from __future__ import annotations

import math
import os
import subprocess
import sys
import tempfile
import time

import torch
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from pcc_kernels import triton_ops
from pcc_kernels.reference import Arena, Children, Scratch
from pcc_kernels.triton_common import Launch

BATCH, N, ROWS = 1000, 64, 300
TYPES = {torch.float32: "*fp32", torch.float64: "*fp64", torch.int64: "*i64",
         torch.int8: "*i8", torch.bfloat16: "*bf16"}
SHARED_LIMIT = {80: 163 * 1024, 90: 227 * 1024}  # opt-in shared memory per block
SPILL_LIMIT = 256
CUOBJDUMP = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
CONTRACTIONS = ("einsum_fwd_kernel", "flows_kernel", "grads_kernel")


def arg_type(value, path: tuple, constexprs: dict):
    """Signature type of one (possibly tuple) argument; ints equal to 1 become constexprs, as
    Triton's launcher specializes them."""
    if isinstance(value, tuple):
        return tuple(arg_type(v, path + (i,), constexprs) for i, v in enumerate(value))
    if isinstance(value, torch.Tensor):
        return TYPES[value.dtype]
    if value == 1:
        constexprs[path] = 1
        return "constexpr"
    return "i32" if -2**31 <= value < 2**31 else "i64"


def signature(launch: Launch, config: triton.Config) -> tuple[dict, dict]:
    """ASTSource's signature and constexprs for a launch with one tile configuration."""
    names = launch.kernel.arg_names
    sig, constexprs = {}, {}
    for i, (name, arg) in enumerate(zip(names, launch.args)):
        sig[name] = arg_type(arg, (i,), constexprs)
    for name, value in {**launch.constexprs, **config.kwargs}.items():
        sig[name] = "constexpr"
        constexprs[(names.index(name),)] = value
    assert set(sig) == set(names), (list(sig), names)
    return {k: sig[k] for k in names}, constexprs


def meta(*shape, dtype=torch.float32) -> torch.Tensor:
    return torch.empty(shape, dtype=dtype, device="meta")


def meta_arena(k: int, dtype=torch.float32) -> Arena:
    return Arena(meta(ROWS, BATCH, k, dtype=dtype), meta(ROWS, BATCH, dtype=dtype),
                 meta(ROWS, BATCH, dtype=dtype))


def rows_for(gather: bool, slots: int = 1):
    if not gather:
        return 1
    return meta(N, dtype=torch.long) if slots == 1 else meta(N, slots, dtype=torch.long)


def bound(make, out_k: int, w_shape, dtype, backward: bool):
    """A layer bound on meta tensors: make(out, w, scratch, grad_out, flows)."""
    w = meta(*w_shape, dtype=dtype)
    out = meta_arena(out_k, dtype).rows(1, N)
    grad_out = meta(N, BATCH, out_k, dtype=dtype) if backward else None
    flows = meta(*w_shape, dtype=dtype) if backward else None
    scratch = Scratch(w)
    layer = make(out, w, scratch, grad_out, flows)
    scratch.allocate()
    layer.attach()
    return layer


def launches(layer, semiring: str, precision: str, backward: bool) -> list[Launch]:
    found = list(layer.launches("forward", semiring, precision))
    if backward:
        found += layer.launches("backward", "sum", precision)
    return found


def einsum_cases(ks, k_out, semiring, gather, dtype=torch.float32, precision="tf32x3",
                 backward=True):
    sources = [meta_arena(k, dtype) for k in ks]
    rows = [rows_for(gather) for _ in ks]
    grads = [meta(ROWS, BATCH, k, dtype=dtype) for k in ks] if backward else None

    def make(out, w, scratch, grad_out, flows):
        return triton_ops.EinsumLayer(sources, rows, w, out, scratch, grads, grad_out, flows)
    layer = bound(make, k_out, (N, k_out, math.prod(ks)), dtype, backward)
    yield from launches(layer, semiring, precision, backward)


def hadamard_cases(k, k_out, slots, semiring, precision="tf32x3", backward=True):
    source = meta_arena(k)
    rows = meta(N, slots, dtype=torch.long)
    children = Children(rows, rows[:, 0], meta(N, dtype=torch.long), meta(N, dtype=torch.long))
    grad = meta(ROWS, BATCH, k) if backward else None

    def make(out, w, scratch, grad_out, flows):
        return triton_ops.HadamardLayer(source, children, w, out, scratch, grad, grad_out, flows)
    layer = bound(make, k_out, (N, k_out, k), torch.float32, backward)
    yield from launches(layer, semiring, precision, backward)


def mix_cases(k, p, dtype=torch.float32):
    source = meta_arena(k, dtype)
    rows = meta(N, p, dtype=torch.long)
    mask = meta(N, p, dtype=torch.bool)
    grad = meta(ROWS, BATCH, k, dtype=dtype)

    def make(out, w, scratch, grad_out, flows):
        return triton_ops.MixLayer(source, rows, mask, w, out, scratch, grad, grad_out, flows)
    layer = bound(make, k, (N, p, k), dtype, True)
    yield from launches(layer, "max", "ieee", False)
    yield from launches(layer, "sum", "ieee", True)


def quick_cases():
    """The CI set: every kernel and code path once (first tuned configuration): the contraction
    kernels in each precision (PTX checked for tensor cores), semirings, arity 1-3, the dot /
    FMA-reduction / max-product modes, column groups, exclusive and shared gradient rows,
    element-wise products with slots, width-1 products, mixes, float64."""
    yield "(40, 40)->40", einsum_cases((40, 40), 40, "sum", True), False
    for precision in ("ieee", "tf32", "bf16"):
        yield (f"(40, 40)->40 {precision}",
               einsum_cases((40, 40), 40, "sum", True, precision=precision), False)
        yield (f"hadamard K=40->40 {precision}",
               hadamard_cases(40, 40, 2, "sum", precision, backward=False), False)
    yield "(40, 40)->40 max", einsum_cases((40, 40), 40, "max", True, backward=False), False
    yield "(16, 16)->256 groups", einsum_cases((16, 16), 256, "sum", True, backward=False), False
    yield "(10, 10)->1", einsum_cases((10, 10), 1, "sum", True), False
    yield "(4, 4, 4)->20", einsum_cases((4, 4, 4), 20, "sum", True), False
    yield "(3, 4, 5)->2 blocks", einsum_cases((3, 4, 5), 2, "sum", False), False
    yield "(10, 10)->10 fp64", einsum_cases((10, 10), 10, "sum", True, torch.float64,
                                             "ieee"), False
    yield "width-1 (1, 1)->3", einsum_cases((1, 1), 3, "sum", True), False
    yield "hadamard K=40->40 A=2", hadamard_cases(40, 40, 2, "sum"), False
    yield "hadamard K=12->12 A=4 max", hadamard_cases(12, 12, 4, "max", backward=False), False
    yield "mix K=10 P=4", mix_cases(10, 4), False


def cases(level: str):
    """(label, launches, compile every tuned configuration) per case: the CI set (`quick`), or
    (`wide`) every path with the K = 40 layers' every tuned configuration, or (`full`) more
    shapes, every configuration."""
    if level == "quick":
        yield from quick_cases()
        return
    yield "(40, 40)->40", einsum_cases((40, 40), 40, "sum", True), True
    for precision in ("ieee", "tf32", "bf16"):
        yield (f"(40, 40)->40 {precision}",
               einsum_cases((40, 40), 40, "sum", True, precision=precision), False)
    yield "(40, 40)->40 max", einsum_cases((40, 40), 40, "max", True, backward=False), True
    yield "(16, 16)->256 groups", einsum_cases((16, 16), 256, "sum", True, backward=False), False
    for ks, k_out in [((10, 10), 1), ((4, 4, 4), 4), ((16, 16, 16), 16), ((1, 10), 10),
                      ((10,), 10), ((32, 32), 128)]:
        yield f"{ks}->{k_out}", einsum_cases(ks, k_out, "sum", True), False
    yield "(3, 4, 5)->2 blocks", einsum_cases((3, 4, 5), 2, "sum", False), False
    yield "(10, 10)->10 fp64", einsum_cases((10, 10), 10, "sum", True, torch.float64,
                                             "ieee"), False
    yield "width-1 (1, 1)->3", einsum_cases((1, 1), 3, "sum", True), False
    yield "width-1 (1, 1, 1)->1 blocks", einsum_cases((1, 1, 1), 1, "sum", False), False
    yield "hadamard K=40->40 A=2", hadamard_cases(40, 40, 2, "sum"), True
    for precision in ("ieee", "tf32", "bf16"):
        yield (f"hadamard K=40->40 A=2 {precision}", hadamard_cases(40, 40, 2, "sum", precision),
               False)
    yield "hadamard K=40->1 A=3", hadamard_cases(40, 1, 3, "sum"), False
    yield "hadamard K=128->128 A=3", hadamard_cases(128, 128, 3, "sum"), False
    yield "hadamard K=12->12 A=4 max", hadamard_cases(12, 12, 4, "max", backward=False), False
    for k, p in [(10, 4), (1, 16)]:
        yield f"mix K={k} P={p}", mix_cases(k, p), False
    yield "mix K=10 P=3 fp64", mix_cases(10, 3, torch.float64), False
    if level != "full":
        return
    for ks, k_out in [((3, 4), 5), ((10, 10), 10), ((16, 16), 16), ((32, 32), 32),
                      ((64, 64), 64), ((10, 1), 3)]:
        for semiring in ("sum", "max"):
            yield (f"{ks}->{k_out} {semiring}",
                   einsum_cases(ks, k_out, semiring, True, backward=semiring == "sum"), False)
    for k, k_out, slots in [(12, 12, 4), (64, 64, 16)]:
        yield f"hadamard K={k}->{k_out} A={slots}", hadamard_cases(k, k_out, slots, "sum"), False
    yield "mix K=40 P=2", mix_cases(40, 2), False


def configurations(level: str):
    """(label, launch, configurations to compile)."""
    for label, steps, every in cases(level):
        for launch in steps:
            configs = launch.candidates()
            yield label, launch, configs if (every or level == "full") else configs[:1]


def resources(cubin: bytes) -> tuple[int, int]:
    """(registers, spill stack bytes) per thread of a cubin."""
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        text = subprocess.run([CUOBJDUMP, "-res-usage", f.name], capture_output=True, text=True,
                              check=True).stdout
    fields = dict(item.split(":") for item in text.split("REG:", 1)[1].split()[1:] if ":" in item)
    return int(text.split("REG:", 1)[1].split()[0]), int(fields["STACK"])


def is_fp64(launch: Launch) -> bool:
    def tensors(value):
        if isinstance(value, tuple):
            for v in value:
                yield from tensors(v)
        elif isinstance(value, torch.Tensor):
            yield value
    return any(t.dtype == torch.float64 for t in tensors(launch.args))


def tensor_core_problem(launch: Launch, ptx: str) -> str:
    """'' if the contraction's PTX uses tensor cores exactly when its precision asks for them."""
    name = launch.kernel.fn.__name__
    precision = launch.constexprs.get("PRECISION")
    if name not in CONTRACTIONS or not launch.constexprs.get("DOT", False) \
            or launch.constexprs.get("SEMIRING", "sum") != "sum":
        return ""
    uses = "mma" in ptx
    if precision in ("tf32x3", "tf32", "bf16") and not uses:
        return f"no mma instruction for precision {precision}"
    if precision == "ieee" and uses and not is_fp64(launch):
        return "mma instruction for precision ieee (float32)"  # float64 dots may use DMMA
    return ""


def check(launch: Launch, config: triton.Config, cap: int, with_resources: bool):
    """Compile one launch and config for sm{cap}: (problems, notes)."""
    sig, constexprs = signature(launch, config)
    kernel = triton.compile(ASTSource(launch.kernel, sig, constexprs),
                            target=GPUTarget("cuda", cap, 32),
                            options={"num_warps": config.num_warps,
                                     "num_stages": config.num_stages})
    shared = kernel.metadata.shared
    ptx = kernel.asm["ptx"]
    mma = "wgmma" if "wgmma" in ptx else ("mma" if "mma" in ptx else "no mma")
    notes = f"{mma}, shared {shared} B"
    problems = [] if shared <= SHARED_LIMIT[cap] else [f"shared memory {shared} B > limit"]
    tc = tensor_core_problem(launch, ptx)
    if tc:
        problems.append(tc)
    if with_resources:
        regs, stack = resources(kernel.asm["cubin"])
        notes += f", {regs} registers, {stack} B spilled"
        if stack > SPILL_LIMIT:
            problems.append(f"{stack} B of register spills")
    return "; ".join(problems), notes


def describe(launch: Launch, config: triton.Config) -> str:
    tiles = ",".join(f"{k[6:] if k.startswith('BLOCK_') else k}={v}"
                     for k, v in {**config.kwargs, **{k: v for k, v in launch.constexprs.items()
                                                      if k.startswith("BLOCK_")}}.items())
    c = launch.constexprs
    parts = [c.get("SEMIRING", "sum"), c.get("PRECISION"), "fp64" if is_fp64(launch) else None]
    if "DOT" in c:
        parts.append("dot" if c["DOT"] else "fma")
    if c.get("SINGLE") is False:
        parts.append("groups")
    return " ".join(str(p) for p in parts if p) + f" [{tiles} w{config.num_warps}]"


def main(capabilities: list[int], with_resources: bool, level: str) -> int:
    assert os.environ.get("TRITON_INTERPRET", "0") != "1", "run without TRITON_INTERPRET"
    failed, seen = 0, set()
    for label, launch, configs in configurations(level):
        for config in configs:
            sig, consts = signature(launch, config)
            key = (launch.kernel.fn.__name__, str(sig), str(sorted(consts.items())),
                   config.num_warps, config.num_stages)
            if key in seen:
                continue
            seen.add(key)
            for cap in capabilities:
                start = time.perf_counter()
                try:
                    problem, notes = check(launch, config, cap, with_resources)
                except Exception as exc:  # report every failure, then fail once
                    lines = str(exc).strip().splitlines() or [""]
                    problem, notes = f"{type(exc).__name__}: {lines[-1][:300]}", ""
                failed += bool(problem)
                status = f"FAILED {problem}" if problem else "ok"
                print(f"sm{cap} {launch.kernel.fn.__name__} {label} {describe(launch, config)}: "
                      f"{status} ({notes}; {time.perf_counter() - start:.1f} s)", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    args = sys.argv[1:]
    level = "full" if "--full" in args else ("wide" if "--wide" in args else "quick")
    sys.exit(main([int(a) for a in args if a.isdigit()] or [80, 90], "--resources" in args,
                  level))
