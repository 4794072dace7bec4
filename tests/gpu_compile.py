"""Compile the kernel configurations the launchers produce for real GPU targets, without a GPU.

Run as a script in a process where TRITON_INTERPRET is not set (see test_compile_gpu_targets.py):
    python tests/gpu_compile.py [--resources] [--wide | --full] 80 90
prints one line per distinct configuration and target and exits 1 if any failed to compile, needs
more shared memory than the target has, or (contraction kernels) uses tensor-core instructions
against its precision: tf32x3, tf32 and bf16 must emit mma (sm80: mma.sync; sm90: wgmma or
mma.sync), ieee must not. Launches are planned on meta tensors with GPU-sized shapes (B = 1000,
N = 64), through the same functions the entry points use, so the tiles are those a GPU run would
use. By default (the CI test) every kernel and code path compiles once, with the first tuned
configuration; --wide adds cases and compiles every configuration of an autotuned kernel's list
that its pruning keeps for the K = 40 layers; --full adds shapes and every configuration. `triton.compile` runs the
whole pipeline down to a cubin with the bundled ptxas. --resources adds registers and spill stack
per thread (from the bundled cuobjdump) and fails on heavy spills (> SPILL_LIMIT bytes).
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

import torch
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from pcc_kernels.triton_common import Launch
from pcc_kernels.triton_einsum import einsum_backward_steps, einsum_forward_steps
from pcc_kernels.triton_hadamard import hadamard_backward_steps, hadamard_forward_steps
from pcc_kernels.triton_mix import mix_backward_steps, mix_forward_steps
from pcc_kernels.triton_product import product_backward_steps, product_forward_steps

BATCH, N, ROWS = 1000, 64, 300
TYPES = {torch.float32: "*fp32", torch.float64: "*fp64", torch.int64: "*i64",
         torch.bfloat16: "*bf16"}
SHARED_LIMIT = {80: 163 * 1024, 90: 227 * 1024}  # opt-in shared memory per block
SPILL_LIMIT = 256
CUOBJDUMP = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
CONTRACTIONS = ("contract_kernel", "flows_kernel", "hadamard_fwd_kernel")


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


def meta_arena(k: int, dtype=torch.float32) -> torch.Tensor:
    return torch.empty(ROWS, BATCH, k, dtype=dtype, device="meta")


def rows_for(gather: bool, slots: int = 1):
    if not gather:
        return 1
    shape = (N,) if slots == 1 else (N, slots)
    return torch.empty(shape, dtype=torch.long, device="meta")


def launches(steps) -> list[Launch]:
    return [s for s in steps if isinstance(s, Launch)]


def einsum_cases(ks, k_out, semiring, gather, dtype=torch.float32, precision="tf32x3",
                 split=None):
    srcs = [meta_arena(k, dtype) for k in ks]
    rows = [rows_for(gather) for _ in ks]
    width = 1
    for k in ks:
        width *= k
    log_w = torch.empty(N, k_out, width, dtype=dtype, device="meta")
    out = meta_arena(k_out, dtype)[:N]
    if width == 1:
        yield from launches(product_forward_steps(srcs, rows, log_w, out))
        yield from launches(product_backward_steps(srcs, rows, out, srcs, log_w)[0])
        return
    yield from launches(einsum_forward_steps(srcs, rows, log_w, out, semiring, precision, split))
    if semiring == "sum":
        yield from launches(einsum_backward_steps(srcs, rows, log_w, out, out, srcs, precision,
                                                  split)[0])


def hadamard_cases(k, k_out, slots, semiring, precision="tf32x3"):
    src = meta_arena(k)
    rows = rows_for(True, slots)
    log_w = torch.empty(N, k_out, k, device="meta")
    out = meta_arena(k_out)[:N]
    yield from launches(hadamard_forward_steps(src, rows, log_w, out, semiring, precision))
    if semiring == "sum":
        yield from launches(hadamard_backward_steps(src, rows, log_w, out, out, src,
                                                    precision)[0])


def mix_cases(k, p, dtype=torch.float32):
    src = meta_arena(k, dtype)
    rows = torch.empty(N, p, dtype=torch.long, device="meta")
    log_m = torch.empty(N, p, k, dtype=dtype, device="meta")
    yield from launches(mix_forward_steps(src, rows, log_m, src[:N], "sum"))
    yield from launches(mix_forward_steps(src, rows, log_m, src[:N], "max"))
    yield from launches(mix_backward_steps(src, rows, log_m, src[:N], src[:N], src)[0])


def quick_cases():
    """The CI set: every kernel and code path once (first tuned configuration): the contraction
    kernels in each precision (PTX checked for tensor cores), semirings, arity 1-3, the dot /
    FMA-reduction / max-plus modes, the three epilogues, exclusive and shared gradient rows,
    float64."""
    yield "(40, 40)->40 sum", einsum_cases((40, 40), 40, "sum", True), False
    for precision in ("ieee", "tf32", "bf16"):
        yield (f"(40, 40)->40 {precision}",
               forward_only(einsum_cases((40, 40), 40, "sum", True, precision=precision)), False)
        yield (f"hadamard K=40->40 {precision}",
               forward_only(hadamard_cases(40, 40, 2, "sum", precision)), False)
    yield "(40, 40)->40 split", forward_only(einsum_cases((40, 40), 40, "sum", True, split=2)), \
        False
    yield "(40, 40)->40 max", einsum_cases((40, 40), 40, "max", True), False
    yield "(10, 10)->1", forward_only(einsum_cases((10, 10), 1, "sum", True)), False
    yield "(4, 4, 4)->20", einsum_cases((4, 4, 4), 20, "sum", True), False
    yield "(3, 4, 5)->2 blocks", einsum_cases((3, 4, 5), 2, "sum", False), False
    yield "(10, 10)->10 fp64", forward_only(einsum_cases((10, 10), 10, "sum", True,
                                                         torch.float64, "ieee")), False
    yield "width-1 (1, 1)->3", einsum_cases((1, 1), 3, "sum", True), False
    yield "hadamard K=40->40 A=2", hadamard_cases(40, 40, 2, "sum"), False
    yield "hadamard K=12->12 A=4 max", hadamard_cases(12, 12, 4, "max"), False
    yield "mix K=10 P=4", mix_cases(10, 4), False


def forward_only(launches_):
    """The launches of a case up to its first contraction (pre-passes and the forward)."""
    for launch in launches_:
        yield launch
        if launch.kernel.fn.__name__ in CONTRACTIONS:
            return


def cases(level: str):
    """(label, launches, compile every tuned configuration) per case: the CI set (`quick`), or
    (`wide`) every path with the K = 40 layers' every tuned configuration, or (`full`) more
    shapes, every configuration."""
    if level == "quick":
        yield from quick_cases()
        return
    yield "(40, 40)->40 sum", einsum_cases((40, 40), 40, "sum", True), True
    for precision in ("ieee", "tf32", "bf16"):
        yield (f"(40, 40)->40 {precision}",
               einsum_cases((40, 40), 40, "sum", True, precision=precision), False)
    yield "(40, 40)->40 split", einsum_cases((40, 40), 40, "sum", True, split=2), False
    yield "(40, 40)->40 max", einsum_cases((40, 40), 40, "max", True), False
    for ks, k_out in [((10, 10), 1), ((4, 4, 4), 4), ((16, 16, 16), 16), ((1, 10), 10),
                      ((10,), 10)]:
        yield f"{ks}->{k_out}", einsum_cases(ks, k_out, "sum", True), False
    yield "(3, 4, 5)->2 blocks", einsum_cases((3, 4, 5), 2, "sum", False), False
    yield "(10, 10)->10 fp64", einsum_cases((10, 10), 10, "sum", True, torch.float64, "ieee"), False
    yield "width-1 (1, 1)->3", einsum_cases((1, 1), 3, "sum", True), False
    yield "width-1 (1, 1, 1)->1 blocks", einsum_cases((1, 1, 1), 1, "sum", False), False
    yield "hadamard K=40->40 A=2", hadamard_cases(40, 40, 2, "sum"), True
    for precision in ("ieee", "tf32", "bf16"):
        yield (f"hadamard K=40->40 A=2 {precision}", hadamard_cases(40, 40, 2, "sum", precision),
               False)
    yield "hadamard K=40->1 A=3", hadamard_cases(40, 1, 3, "sum"), False
    yield "hadamard K=12->12 A=4 max", hadamard_cases(12, 12, 4, "max"), False
    for k, p in [(10, 4), (1, 16)]:
        yield f"mix K={k} P={p}", mix_cases(k, p), False
    yield "mix K=10 P=3 fp64", mix_cases(10, 3, torch.float64), False
    if level != "full":
        return
    for ks, k_out in [((3, 4), 5), ((10, 10), 10), ((16, 16), 16), ((32, 32), 32),
                      ((64, 64), 64), ((10, 1), 3)]:
        for semiring in ("sum", "max"):
            yield f"{ks}->{k_out} {semiring}", einsum_cases(ks, k_out, semiring, True), False
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
    if precision == "ieee" and uses and "float64" not in str(launch.args):
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
                     for k, v in config.kwargs.items())
    parts = [launch.constexprs.get(k) for k in ("SEMIRING", "PRECISION", "EPILOGUE")]
    if "DOT" in launch.constexprs:
        parts.append("dot" if launch.constexprs["DOT"] else "fma")
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
