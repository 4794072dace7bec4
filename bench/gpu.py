"""GPU benchmark of the Triton backend against the torch and naive backends.

On a CUDA machine, in one run (budgeted to finish in under 8 minutes on an H100):
  1. ceilings of this card, measured now: device-to-device copy GB/s, fp32 (no tf32) and tf32
     matmul TFLOP/s;
  2. check: backend='triton' vs backend='torch' on PD 28x28 (delta 7) K=10, batch 100: max abs
     (and relative) difference of log-likelihoods and max abs difference of the gradients;
  3. timings (CUDA events, median after warmup) of forward, forward+backward, and a full EM step
     (`pcc.em.EM(model).step(x)`), with peak memory (torch.cuda.max_memory_allocated, reset per
     phase), for PD 28x28 delta 7 and RAT-SPN on 784 variables at K in {10, 20, 40}, batch 100
     and 1000, backends triton and torch; naive on PD delta 7 K=10 batch 100 only; then PD 28x28
     delta 4 (finer) at K in {10, 20} while the time budget lasts;
  4. precision: float32 log-likelihoods and weight gradients with contraction precision ieee /
     tf32x3 / tf32 / bf16 against a float64 torch-backend evaluation (max abs and max relative
     error), and their forward and forward+backward times (with --precision-only: on four
     structures, each with its EinsumNetworks-style baseline, and nothing of 3.).
Forward GFLOP/s and GB/s count the plan's einsum and mix ops (`pcc.passes.explain.op_cost`, per
sample, times the batch) over the whole forward time (leaves included), against the ceilings.

    python bench/gpu.py [--json PATH] [--budget SECONDS] [--precision-only]
    python bench/gpu.py --smoke          # tiny configuration on CPU under TRITON_INTERPRET=1

Configurations that fail (an error, or out of memory) are reported and the run goes on; the exit
status is 1 if any failed or the check's relative log-likelihood difference exceeds 1e-5.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # for einet_style
EINET = "einet-style"  # bench/einet_style.py on the torch model: the EinsumNetworks pattern


@dataclass
class Result:
    structure: str
    k: int
    batch: int
    backend: str
    forward_ms: float | None = None
    train_ms: float | None = None  # forward + backward
    em_ms: float | None = None
    peak_mb: dict[str, float] = field(default_factory=dict)
    gflops: float | None = None  # forward, per op_cost
    gbps: float | None = None
    error: str | None = None


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", help="also write the results to this JSON file")
    parser.add_argument("--budget", type=float, default=400.0,
                        help="seconds after which remaining configurations are skipped")
    parser.add_argument("--precision-only", action="store_true",
                        help="only the check and the precision study (on several structures)")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny configuration on the CPU under TRITON_INTERPRET=1")
    return parser.parse_args()


def import_pcc():
    """Import pcc, with pcc_kernels taken from the repo's kernels/ folder if not installed."""
    sys.path.insert(0, REPO)
    try:
        import pcc_kernels  # noqa: F401
    except ImportError:
        import importlib.util
        folder = os.path.join(REPO, "kernels")
        spec = importlib.util.spec_from_file_location(
            "pcc_kernels", os.path.join(folder, "__init__.py"),
            submodule_search_locations=[folder])
        module = importlib.util.module_from_spec(spec)
        sys.modules["pcc_kernels"] = module
        spec.loader.exec_module(module)
    import pcc
    return pcc


class Clock:
    """Median wall time of a step in ms: CUDA events on a GPU, perf_counter on the CPU."""

    def __init__(self, device, target_s: float, max_reps: int, warmup: int):
        self.device, self.target_s, self.max_reps, self.warmup = device, target_s, max_reps, warmup

    def once(self, fn: Callable[[], object]) -> float:
        import torch
        if self.device.type != "cuda":
            start = time.perf_counter()
            fn()
            return (time.perf_counter() - start) * 1e3
        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        begin.record()
        fn()
        end.record()
        end.synchronize()
        return begin.elapsed_time(end)

    def measure(self, fn: Callable[[], object]) -> float:
        for _ in range(self.warmup):
            fn()
        first = self.once(fn)
        reps = max(1, min(self.max_reps, int(self.target_s * 1e3 / max(first, 1e-3))))
        return statistics.median([first] + [self.once(fn) for _ in range(reps - 1)])


def ceilings(device, clock: Clock) -> dict[str, float]:
    """Copy bandwidth (read + write bytes) and matmul throughput of this device, measured now."""
    import torch
    n = (1 << 28) if device.type == "cuda" else (1 << 20)
    src = torch.empty(n // 4, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    copy_ms = clock.measure(lambda: dst.copy_(src))
    size = 8192 if device.type == "cuda" else 256
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    out = {"copy_gbps": 2 * n / copy_ms / 1e6}
    old = torch.backends.cuda.matmul.allow_tf32
    for name, tf32 in (("fp32_matmul_tflops", False), ("tf32_matmul_tflops", True)):
        torch.backends.cuda.matmul.allow_tf32 = tf32
        out[name] = 2 * size ** 3 / clock.measure(lambda: a @ b) / 1e9
    torch.backends.cuda.matmul.allow_tf32 = old
    del src, dst, a, b
    return out


def data(batch: int, num_vars: int, device):
    import torch
    gen = torch.Generator().manual_seed(0)
    return (torch.rand(batch, num_vars, generator=gen) < 0.3).float().to(device)


def kernel_cost(model) -> tuple[int, int]:
    """(FLOPs, bytes) per sample of the plan's einsum and mix ops."""
    from pcc.passes.explain import op_cost
    costs = [op_cost(op) for op in model.plan.ops]
    return sum(c.flops for c in costs), sum(c.bytes for c in costs)


def peak_mb(device, fn: Callable[[], object]) -> float | None:
    """Run fn once; on a GPU, return the peak memory allocated meanwhile (MiB)."""
    import torch
    if device.type != "cuda":
        fn()
        return None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() / 2 ** 20


def run_config(pcc, circuit, label: str, k: int, batch: int, backend: str, device,
               clock: Clock) -> Result:
    """Time forward, forward+backward and an EM step of one model; errors become the result."""
    import torch
    result = Result(label, k, batch, backend)
    try:
        einet = backend == EINET
        if einet:
            from einet_style import einet_style_forward
        model = pcc.compile(circuit, backend="torch" if einet else backend).to(device)
        x = data(batch, circuit.num_vars, device)
        evaluate = (lambda: einet_style_forward(model, x)) if einet else (lambda: model(x))

        def forward():
            with torch.no_grad():
                return evaluate()

        def train():
            model.zero_grad(set_to_none=True)
            evaluate().sum().backward()

        phases = [("forward", forward), ("train", train)]
        if not einet:
            em = pcc.EM(model, step_size=0.05)
            phases.append(("em", lambda: em.step(x)))
        for phase, fn in phases:
            peak = peak_mb(device, fn)
            if peak is not None:
                result.peak_mb[phase] = peak
            setattr(result, f"{phase}_ms", clock.measure(fn))
        flops, bytes_ = kernel_cost(model)
        result.gflops = flops * batch / result.forward_ms / 1e6
        result.gbps = bytes_ * batch / result.forward_ms / 1e6
    except Exception as exc:  # report and go on: one failing configuration must not end the run
        result.error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:200]}"
    finally:
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return result


def check(pcc, circuit, batch: int, device) -> dict[str, float]:
    """Triton vs torch on one structure: max abs difference of log p(x) and of weight grads."""
    import torch
    x = data(batch, circuit.num_vars, device)
    outs, grads = [], []
    for backend in ("triton", "torch"):
        model = pcc.compile(circuit, backend=backend).to(device)
        ll = model(x)
        ll.sum().backward()
        outs.append(ll.detach())
        grads.append(torch.cat([p.grad.reshape(-1) for p in model.parameters()]))
    diff = (outs[0] - outs[1]).abs()
    return {"max_abs_ll_diff": float(diff.max()),
            "max_rel_ll_diff": float((diff / outs[1].abs().clamp_min(1.0)).max()),
            "max_abs_grad_diff": float((grads[0] - grads[1]).abs().max()),
            "mean_ll": float(outs[1].mean())}


def precision(pcc, circuit, batch: int, device, clock: Clock, modes) -> list[dict]:
    """Per contraction precision: error of float32 Triton log-likelihoods and weight gradients
    against a float64 torch evaluation, and forward / forward+backward times."""
    import torch
    from pcc_kernels import triton_ops
    x = data(batch, circuit.num_vars, device)
    exact_model = pcc.compile(circuit, backend="torch").to(device).double()
    exact = exact_model(x.double())
    exact.sum().backward()
    exact_grads = torch.cat([p.grad.reshape(-1) for p in exact_model.parameters()])
    exact = exact.detach()
    model = pcc.compile(circuit, backend="triton").to(device)

    def forward():
        with torch.no_grad():
            return model(x)

    def train():
        model.zero_grad(set_to_none=True)
        model(x).sum().backward()

    rows = []
    for mode in modes:
        triton_ops.set_precision(mode)
        try:
            err = (forward().double() - exact).abs()
            train()
            grads = torch.cat([p.grad.reshape(-1) for p in model.parameters()]).double()
            rows.append({"precision": mode, "max_abs_err": float(err.max()),
                         "max_rel_err": float((err / exact.abs().clamp_min(1e-30)).max()),
                         "max_grad_err": float((grads - exact_grads).abs().max()),
                         "forward_ms": clock.measure(forward), "train_ms": clock.measure(train)})
        except Exception as exc:
            rows.append({"precision": mode, "error": f"{type(exc).__name__}: {exc}"})
        finally:
            triton_ops.set_precision("ieee")
    return rows


def fmt(value, spec: str) -> str:
    return "-".rjust(int(spec.split(".")[0] or 1)) if value is None else format(value, spec)


def table(results: list[Result], ceil: dict[str, float]) -> str:
    head = (f"{'structure':<16} {'K':>3} {'B':>5} {'backend':<11} {'fwd ms':>9} {'fwd+bwd':>9} "
            f"{'EM step':>9} {'peak MB':>8} {'GFLOP/s':>8} {'%mm':>5} {'GB/s':>7} {'%copy':>5}")
    lines = [head, "-" * len(head)]
    for r in results:
        if r.error:
            lines.append(f"{r.structure:<16} {r.k:>3} {r.batch:>5} {r.backend:<11} {r.error}")
            continue
        peak = max(r.peak_mb.values()) if r.peak_mb else None
        lines.append(
            f"{r.structure:<16} {r.k:>3} {r.batch:>5} {r.backend:<11} {fmt(r.forward_ms, '9.3f')} "
            f"{fmt(r.train_ms, '9.3f')} {fmt(r.em_ms, '9.3f')} {fmt(peak, '8.1f')} "
            f"{fmt(r.gflops, '8.1f')} {100 * r.gflops / 1e3 / ceil['fp32_matmul_tflops']:5.1f} "
            f"{fmt(r.gbps, '7.1f')} {100 * r.gbps / ceil['copy_gbps']:5.1f}")
    return "\n".join(lines)


def ratios(results: list[Result]) -> str:
    """Triton against the other backends of the same configuration: time and peak-memory ratios."""
    by_key = {(r.structure, r.k, r.batch, r.backend): r for r in results if not r.error}
    lines = []
    for (structure, k, batch, backend), other in by_key.items():
        ours = by_key.get((structure, k, batch, "triton"))
        if backend == "triton" or ours is None:
            continue
        parts = [f"{phase} {getattr(other, phase + '_ms') / getattr(ours, phase + '_ms'):.1f}x"
                 for phase in ("forward", "train", "em") if getattr(other, phase + "_ms")]
        if ours.peak_mb and other.peak_mb:
            ratio = max(ours.peak_mb.values()) / max(other.peak_mb.values())
            parts.append(f"peak memory {ratio:.2f}x")
        lines.append(f"  triton vs {backend:<11} {structure} K={k} B={batch}: " + ", ".join(parts))
    return "\n".join(["speedup of triton (their time / ours; memory = ours / theirs):"] + lines)


def precision_cases(smoke: bool, several: bool):
    """(label, circuit, batch) for the precision study."""
    from pcc.structures import poon_domingos, random_binary_trees
    if smoke:
        return [("PD 8x8 d=4 K=3 B=7", poon_domingos(8, 8, 4, k=3), 7)]
    cases = [("PD 28x28 d=7 K=40 B=1000", poon_domingos(28, 28, 7, k=40), 1000)]
    if several:
        cases += [("PD 28x28 d=7 K=40 B=100", poon_domingos(28, 28, 7, k=40), 100),
                  ("RAT 784 K=40 B=1000", random_binary_trees(784, k=40), 1000),
                  ("PD 28x28 d=4 K=20 B=1000", poon_domingos(28, 28, 4, k=20), 1000)]
    return cases


def plan_runs(smoke: bool):
    """(structure label, circuit factory, K values, batches, backends) in priority order."""
    from pcc.structures import poon_domingos, random_binary_trees
    if smoke:
        return [("PD 8x8 d=4", lambda k: poon_domingos(8, 8, 4, k=k), (3,), (7,),
                 ("triton", "torch", EINET, "naive")),
                ("RAT 8", lambda k: random_binary_trees(8, k=k), (3,), (7,), ("triton", "torch"))]
    pd7 = ("PD 28x28 d=7", lambda k: poon_domingos(28, 28, 7, k=k))
    rat = ("RAT 784", lambda k: random_binary_trees(784, k=k))
    pd4 = ("PD 28x28 d=4", lambda k: poon_domingos(28, 28, 4, k=k))
    return [(*pd7, (10, 20, 40), (100, 1000), ("triton", "torch", EINET)),
            (*pd7, (10,), (100,), ("naive",)),
            (*rat, (10, 20, 40), (100, 1000), ("triton", "torch")),
            (*pd4, (10, 20), (100, 1000), ("triton", "torch"))]


def main() -> int:
    args = parse_args()
    if args.smoke:
        os.environ["TRITON_INTERPRET"] = "1"  # before pcc_kernels is imported
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    start = time.perf_counter()
    pcc = import_pcc()
    import torch
    import triton
    from pcc.structures import poon_domingos

    if args.smoke:
        device = torch.device("cpu")
        torch.set_num_threads(1)
        clock = Clock(device, target_s=0.0, max_reps=1, warmup=0)
    elif torch.cuda.is_available():
        device = torch.device("cuda")
        clock = Clock(device, target_s=0.25, max_reps=20, warmup=2)
    else:
        print("bench/gpu.py needs a CUDA device (or --smoke for the CPU interpreter)")
        return 2

    info = {"device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu (interpreter)",
            "torch": torch.__version__, "triton": triton.__version__,
            "torch_threads": torch.get_num_threads()}
    print(" | ".join(f"{k}: {v}" for k, v in info.items()), flush=True)
    ceil = ceilings(device, clock)
    print("ceilings: " + ", ".join(f"{k} {v:.1f}" for k, v in ceil.items()), flush=True)

    small = poon_domingos(8, 8, 4, k=3) if args.smoke else poon_domingos(28, 28, 7, k=10)
    checked = check(pcc, small, 7 if args.smoke else 100, device)
    print("check triton vs torch: " + ", ".join(f"{k} {v:.3g}" for k, v in checked.items()),
          flush=True)

    results, skipped = [], []
    for label, make, ks, batches, backends in ([] if args.precision_only else
                                               plan_runs(args.smoke)):
        for k in ks:
            circuit = make(k)
            for batch in batches:
                for backend in backends:
                    if time.perf_counter() - start > args.budget:
                        skipped.append(f"{label} K={k} B={batch} {backend}")
                        continue
                    results.append(run_config(pcc, circuit, label, k, batch, backend, device,
                                              clock))
                    r = results[-1]
                    times = " / ".join(fmt(t, ".3f") for t in (r.forward_ms, r.train_ms, r.em_ms))
                    print(f"  {label} K={k} B={batch} {backend}: {r.error or times + ' ms'}",
                          flush=True)

    modes = ("ieee", "tf32") if args.smoke else ("ieee", "tf32x3", "tf32", "bf16")
    prec = {}
    for label, circuit, batch in precision_cases(args.smoke, args.precision_only):
        prec[label] = precision(pcc, circuit, batch, device, clock, modes)
        if args.precision_only:  # the EinsumNetworks-style baseline of the same case
            einet = run_config(pcc, circuit, label, 0, batch, EINET, device, clock)
            prec[label].append({"precision": EINET, "forward_ms": einet.forward_ms,
                                "train_ms": einet.train_ms})

    print()
    print(table(results, ceil))
    print()
    print(ratios(results))
    print()
    for label, rows in prec.items():
        print(f"precision (float32 Triton vs float64 torch, {label}):")
        for row in rows:
            print("  " + ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}"
                                   for k, v in row.items()))
    if skipped:
        print(f"skipped (time budget {args.budget:.0f} s): " + "; ".join(skipped))
    total = time.perf_counter() - start
    print(f"total {total:.0f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"info": info, "ceilings": ceil, "check": checked, "precision": prec,
                       "results": [asdict(r) for r in results], "skipped": skipped,
                       "total_s": total}, f, indent=1)
    failed = any(r.error for r in results) or checked["max_rel_ll_diff"] > 1e-5
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
