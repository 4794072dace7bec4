"""Compile every kernel configuration the launchers produce for real GPU targets, without a GPU.

Run as a script in a process where TRITON_INTERPRET is not set (see test_compile_gpu_targets.py):
    python tests/gpu_compile.py [--resources] 80 90
prints one line per distinct configuration and target and exits 1 if any failed to compile or
needs more shared memory than the target has. Launches are planned on meta tensors with GPU-sized
shapes (B = 1000, N = 64), so the tiles are those a GPU run would use; `triton.compile` then runs
the whole pipeline down to a cubin. --resources adds registers and spill stack per thread (from
the cuobjdump bundled with triton) and fails on heavy spills (> SPILL_LIMIT bytes per thread; a
few bytes of stack are frames, not pressure).
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
from pcc_kernels.triton_einsum import einsum_backward_launch, einsum_forward_launch
from pcc_kernels.triton_mix import mix_backward_launch, mix_forward_launch
from pcc_kernels.triton_product import product_backward_launch, product_forward_launch

BATCH, N, ROWS = 1000, 64, 300
TYPES = {torch.float32: "*fp32", torch.float64: "*fp64", torch.int64: "*i64"}
SHARED_LIMIT = {80: 163 * 1024, 90: 227 * 1024}  # opt-in shared memory per block
SPILL_LIMIT = 256
CUOBJDUMP = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")


def signature(launch: Launch) -> tuple[dict, dict]:
    """ASTSource's signature and constexprs for a launch's arguments; an int argument equal to 1
    becomes a constexpr, as Triton's launcher specializes it."""
    names = launch.kernel.arg_names
    sig, constexprs = {}, {}
    for name, arg in zip(names, launch.args):
        if isinstance(arg, torch.Tensor):
            sig[name] = TYPES[arg.dtype]
        elif arg == 1:
            sig[name], constexprs[name] = "constexpr", 1
        else:
            sig[name] = "i32" if -2**31 <= arg < 2**31 else "i64"
    for name, value in launch.constexprs.items():
        sig[name], constexprs[name] = "constexpr", value
    assert list(sig) == names, (list(sig), names)
    return sig, constexprs


def arena(k: int, dtype=torch.float32) -> torch.Tensor:
    return torch.empty(ROWS, BATCH, k, dtype=dtype, device="meta")


def einsum_launches(ks, k_out, semiring, gather, dtype=torch.float32, precision="ieee"):
    srcs = [arena(k, dtype) for k in ks]
    rows = [torch.empty(N, dtype=torch.long, device="meta") if gather else 1 for _ in ks]
    width = 1
    for k in ks:
        width *= k
    log_w = torch.empty(N, k_out, width, dtype=dtype, device="meta")
    out = arena(k_out, dtype)[:N]
    if width == 1:
        yield product_forward_launch(srcs, rows, log_w, out)
        yield product_backward_launch(srcs, rows, out, srcs, log_w)
        return
    yield einsum_forward_launch(srcs, rows, log_w, out, semiring, precision)
    if semiring == "sum":
        yield einsum_backward_launch(srcs, rows, log_w, out, out, srcs, log_w, precision)


def mix_launches(k, p, dtype=torch.float32):
    src = arena(k, dtype)
    rows = torch.empty(N, p, dtype=torch.long, device="meta")
    log_m = torch.empty(N, p, k, dtype=dtype, device="meta")
    yield mix_forward_launch(src, rows, log_m, src[:N], "sum")
    yield mix_forward_launch(src, rows, log_m, src[:N], "max")
    yield mix_backward_launch(src, rows, log_m, src[:N], src[:N], src, log_m)


def configurations():
    """(label, launch) for every configuration the tests and benchmarks reach."""
    cases = []
    for ks, k_out in [((10,), 10), ((3, 4), 5), ((10, 10), 10), ((16, 16), 16), ((32, 32), 32),
                      ((40, 40), 40), ((64, 64), 64), ((10, 10), 1), ((4, 4, 4), 4),
                      ((16, 16, 16), 16), ((1, 10), 10), ((10, 1), 3)]:
        for semiring in ("sum", "max"):
            cases.append((f"{ks}->{k_out}", einsum_launches(ks, k_out, semiring, True)))
    cases.append(("(10, 10)->10 blocks", einsum_launches((10, 10), 10, "sum", False)))
    cases.append(("(3, 4, 5)->2 blocks", einsum_launches((3, 4, 5), 2, "sum", False)))
    for precision in ("tf32x3", "tf32", "bf16"):
        cases.append((f"(40, 40)->40 {precision}",
                      einsum_launches((40, 40), 40, "sum", True, precision=precision)))
    cases.append(("(10, 10)->10 fp64", einsum_launches((10, 10), 10, "sum", True, torch.float64)))
    for ks in [(1,), (1, 1), (1, 1, 1)]:
        cases.append((f"width-1 {ks}->3", einsum_launches(ks, 3, "sum", True)))
    cases.append(("width-1 (1, 1)->1 blocks", einsum_launches((1, 1), 1, "sum", False)))
    for k, p in [(10, 4), (1, 16), (40, 2)]:
        cases.append((f"mix K={k} P={p}", mix_launches(k, p)))
    cases.append(("mix K=10 P=3 fp64", mix_launches(10, 3, torch.float64)))
    for label, launches in cases:
        for launch in launches:
            mode = launch.constexprs.get("SEMIRING", "")
            yield f"{launch.kernel.fn.__name__} {label} {mode}".rstrip(), launch


def resources(cubin: bytes) -> tuple[int, int]:
    """(registers, spill stack bytes) per thread of a cubin."""
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        text = subprocess.run([CUOBJDUMP, "-res-usage", f.name], capture_output=True, text=True,
                              check=True).stdout
    fields = dict(item.split(":") for item in text.split("REG:", 1)[1].split()[1:] if ":" in item)
    return int(text.split("REG:", 1)[1].split()[0]), int(fields["STACK"])


def check(launch: Launch, cap: int, with_resources: bool) -> str:
    """Compile one launch for sm{cap}; '' if fine, else what is wrong."""
    sig, constexprs = signature(launch)
    kernel = triton.compile(ASTSource(launch.kernel, sig, constexprs),
                            target=GPUTarget("cuda", cap, 32),
                            options={"num_warps": launch.num_warps})
    shared = kernel.metadata.shared
    notes = f"shared {shared} B"
    problems = [] if shared <= SHARED_LIMIT[cap] else [f"shared memory {shared} B > limit"]
    if with_resources:
        regs, stack = resources(kernel.asm["cubin"])
        notes += f", {regs} registers, {stack} B spilled"
        if stack > SPILL_LIMIT:
            problems.append(f"{stack} B of register spills")
    return "; ".join(problems), notes


def main(capabilities: list[int], with_resources: bool) -> int:
    assert os.environ.get("TRITON_INTERPRET", "0") != "1", "run without TRITON_INTERPRET"
    failed, seen = 0, set()
    for label, launch in configurations():
        key = (launch.kernel.fn.__name__, tuple(signature(launch)[0].values()),
               tuple(sorted(launch.constexprs.items())), launch.num_warps)
        if key in seen:
            continue
        seen.add(key)
        for cap in capabilities:
            start = time.perf_counter()
            try:
                problem, notes = check(launch, cap, with_resources)
            except Exception as exc:  # report every failure, then fail once
                problem, notes = f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1][:300]}", ""
            failed += bool(problem)
            status = f"FAILED {problem}" if problem else "ok"
            print(f"sm{cap} {label}: {status} ({notes}; {time.perf_counter() - start:.1f} s)",
                  flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    args = sys.argv[1:]
    sys.exit(main([int(a) for a in args if a.isdigit()] or [80, 90], "--resources" in args))
