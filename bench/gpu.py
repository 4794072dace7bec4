"""GPU benchmark of the Triton backend (values linear with a log-scale per row, fused layer
kernels): the targets of issues 12 and 17, side by side in one run.

On a CUDA machine, in one run (sections in this order, each skipped once --budget is spent):
  ceilings   this card's device-to-device copy GB/s and matmul TFLOP/s per contraction precision,
             measured now: fp32 (ieee), tf32, tf32x3 (three tf32 products of split operands, as
             the kernels do) and bf16;
  check      backend='triton' vs backend='torch' on PD 28x28 delta 7, K=10, batch 100 (log-
             likelihoods, gradients); CUDA-graph replay vs eager for the forward and EM steps;
  targets    PD delta 7 and RAT 784, K=40, batch 1000: Triton (default precision) against the
             EinsumNetworks-style baseline (bench/einet_style.py): forward, forward+backward, EM
             step, peak memory;
  step100    an EM step at batch 100 (PD delta 7, K=10 and K=40): eager, replayed from a CUDA graph,
             and the sum of its GPU kernel times (torch.profiler) in the same run;
  layers     the largest outer-product layer of PD delta 7 and RAT 784 at K=40, batch 1000, alone
             (a bound EinsumLayer: its forward launch, its backward launches), per precision:
             TFLOP/s against the ceiling of that precision;
  precision  float32 log-likelihood errors per precision against a float64 torch evaluation;
  grid       the broader table (PD delta 7 / RAT 784 / PD delta 4, K in 10..40, batch 100 and
             1000, backends triton and torch) while the budget lasts.
Forward GFLOP/s and GB/s in the grid count the plan's einsum and mix ops
(`pcc.passes.explain.op_cost`) over the whole forward time. --markdown writes the tables for
docs/benchmarks.md (card, versions, ceilings, every target with its ratio).

    python bench/gpu.py [--json PATH] [--markdown PATH] [--budget SECONDS] [--sections a,b]
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
SECTIONS = ("ceilings", "check", "targets", "step100", "layers", "precision", "grid")


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
    parser.add_argument("--markdown", help="also write the tables as markdown to this file")
    parser.add_argument("--sections", default=",".join(SECTIONS),
                        help=f"comma-separated subset of {','.join(SECTIONS)}")
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
    """Copy bandwidth (read + write bytes) and matmul TFLOP/s per contraction precision, now.
    tf32x3 is a_hi@b_hi + a_hi@b_lo + a_lo@b_hi in tf32 (the kernels' split), counted as one
    product's 2 n^3 FLOPs: the useful rate of that precision."""
    import torch
    n = (1 << 28) if device.type == "cuda" else (1 << 20)
    src = torch.empty(n // 4, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    out = {"copy_gbps": 2 * n / clock.measure(lambda: dst.copy_(src)) / 1e6}
    size = 8192 if device.type == "cuda" else 256
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    a_hi, b_hi = a.bfloat16().float(), b.bfloat16().float()  # exact in tf32 too (8-bit mantissa)
    a_lo, b_lo = a - a_hi, b - b_hi
    a16, b16 = a.bfloat16(), b.bfloat16()
    flops = 2 * size ** 3
    old = torch.backends.cuda.matmul.allow_tf32
    try:
        for name, tf32, fn in (("ieee", False, lambda: a @ b), ("tf32", True, lambda: a @ b),
                               ("tf32x3", True, lambda: a_hi @ b_hi + (a_hi @ b_lo + a_lo @ b_hi)),
                               ("bf16", False, lambda: a16 @ b16)):
            torch.backends.cuda.matmul.allow_tf32 = tf32
            out[f"{name}_matmul_tflops"] = flops / clock.measure(fn) / 1e9
    finally:
        torch.backends.cuda.matmul.allow_tf32 = old
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


def graph_check(pcc, circuit, batch: int, device, steps: int = 4) -> dict[str, float]:
    """CUDA-graph replay against eager: the same EM steps on two copies of a model (one with
    `cuda_graph=True`), and a captured forward against the model's own; max abs differences."""
    import torch
    models = [pcc.compile(circuit, backend="triton", seed=3).to(device) for _ in range(2)]
    ems = [pcc.EM(models[0], step_size=0.1), pcc.EM(models[1], step_size=0.1, cuda_graph=True)]
    gen = torch.Generator().manual_seed(1)
    ll_diff = 0.0
    for _ in range(steps):
        x = (torch.rand(batch, circuit.num_vars, generator=gen) < 0.3).float().to(device)
        lls = [em.step(x) for em in ems]
        ll_diff = max(ll_diff, abs(lls[0] - lls[1]))
    param_diff = max(float((p - q).abs().max()) for p, q in zip(models[0].parameters(),
                                                               models[1].parameters()))
    x = data(batch, circuit.num_vars, device)
    forward = models[0].capture(batch)
    forward(x)
    fwd_diff = float((forward(x) - models[0](x).detach()).abs().max())
    return {"graph_active": float(ems[1].graph is not None and ems[1].graph.active),
            "em_ll_diff": ll_diff, "em_param_diff": param_diff, "forward_diff": fwd_diff}


def largest_einsum(model):
    """The plan's outer-product op with the most weights."""
    from pcc.passes import EinsumOp
    ops = [op for op in model.plan.ops if isinstance(op, EinsumOp) and op.has_weights]
    return max(ops, key=lambda op: op.weight_shape[0] * op.weight_shape[1] * op.weight_shape[2])


def layer_bench(pcc, circuit, label: str, batch: int, device, clock: Clock, modes,
                ceil: dict[str, float]) -> list[dict]:
    """The largest outer-product layer alone, bound as the engine binds it (`triton_ops.
    EinsumLayer` on random arenas of its shape, gathered rows): forward (one fused launch) and
    backward (weight flows, then one launch per child) times per precision, with TFLOP/s
    counting 2 N B Ko K1..Ka useful FLOPs per contraction (the backward runs 1 + arity of
    them), against the same precision's ceiling."""
    import torch
    from pcc_kernels import triton_ops
    from pcc_kernels.reference import Arena, Scratch, from_log
    op = largest_einsum(pcc.compile(circuit, backend="torch"))
    n, k_out, width = op.weight_shape
    gen = torch.Generator().manual_seed(0)
    rows_in = 2 * n + 1

    def arena(k: int) -> Arena:
        out = Arena.empty(rows_in, batch, k, torch.empty(0, device=device))
        from_log(torch.randn(rows_in, batch, k, generator=gen).to(device), out)
        return out
    sources = [arena(k) for k in op.child_k]
    rows = [torch.randint(0, rows_in, (n,), generator=gen).to(device) for _ in op.child_k]
    w = torch.softmax(torch.randn(n, k_out, width, generator=gen), -1).to(device)
    out = Arena.empty(n, batch, k_out, w)
    grads = [torch.zeros_like(s.values) for s in sources]
    scratch = Scratch(w)
    layer = triton_ops.EinsumLayer(sources, rows, w, out, scratch, grads,
                                   torch.rand(n, batch, k_out, generator=gen).to(device),
                                   torch.empty_like(w))
    scratch.allocate()
    layer.attach()
    flops = 2 * n * batch * k_out * width
    shape = f"N={n} K={'x'.join(map(str, op.child_k))} Ko={k_out} B={batch}"
    rows_out = []
    default = triton_ops.get_precision()
    for mode in modes:
        row = {"layer": f"{label} {shape}", "precision": mode}
        triton_ops.set_precision(mode)
        try:
            fwd = clock.measure(layer.forward)
            bwd = clock.measure(layer.backward)
            tflops = flops / fwd / 1e9
            row.update(forward_ms=fwd, backward_ms=bwd, forward_tflops=tflops,
                       backward_tflops=(1 + len(op.child_k)) * flops / bwd / 1e9,
                       ceiling_tflops=ceil.get(f"{mode}_matmul_tflops"))
            if row["ceiling_tflops"]:
                row["forward_fraction"] = tflops / row["ceiling_tflops"]
                row["backward_fraction"] = row["backward_tflops"] / row["ceiling_tflops"]
        except Exception as exc:
            row["error"] = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:200]}"
        finally:
            triton_ops.set_precision(default)
        rows_out.append(row)
    return rows_out


def kernel_time_ms(device, fn: Callable[[], object]) -> float | None:
    """Sum of the GPU kernel (and memcpy/memset) times of one call of fn (torch.profiler)."""
    import torch
    if device.type != "cuda":
        return None
    from torch.profiler import ProfilerActivity, profile
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    total = 0.0
    for event in prof.key_averages():
        total += getattr(event, "self_device_time_total", None) or \
            getattr(event, "self_cuda_time_total", 0.0)
    return total / 1e3


def step100(pcc, circuit, label: str, batch: int, device, clock: Clock) -> dict:
    """An EM step eager and replayed from a CUDA graph, against the sum of its kernel times."""
    row = {"structure": label, "batch": batch}
    try:
        x = data(batch, circuit.num_vars, device)
        eager_model = pcc.compile(circuit, backend="triton").to(device)
        eager = pcc.EM(eager_model, step_size=0.05)
        row["eager_ms"] = clock.measure(lambda: eager.step(x))
        row["kernels_ms"] = kernel_time_ms(device, lambda: eager.step(x))
        graph_model = pcc.compile(circuit, backend="triton").to(device)
        graphed = pcc.EM(graph_model, step_size=0.05, cuda_graph=True)
        row["graph_ms"] = clock.measure(lambda: graphed.step(x))
        row["graph_active"] = bool(graphed.graph.active)
        if row["kernels_ms"]:
            row["graph_over_kernels"] = row["graph_ms"] / row["kernels_ms"]
            row["eager_over_kernels"] = row["eager_ms"] / row["kernels_ms"]
    except Exception as exc:
        row["error"] = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:200]}"
    return row


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
    default = triton_ops.get_precision()
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
            triton_ops.set_precision(default)
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
            f"{fmt(r.gflops, '8.1f')} {100 * r.gflops / 1e3 / ceil['ieee_matmul_tflops']:5.1f} "
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


def structures(smoke: bool) -> dict:
    """The benchmark circuits by label (tiny ones for --smoke)."""
    from pcc.structures import poon_domingos, random_binary_trees
    if smoke:
        return {"PD": lambda k: poon_domingos(8, 8, 4, k=k), "RAT": lambda k: random_binary_trees(8, k=k)}
    return {"PD 28x28 d=7": lambda k: poon_domingos(28, 28, 7, k=k),
            "RAT 784": lambda k: random_binary_trees(784, k=k),
            "PD 28x28 d=4": lambda k: poon_domingos(28, 28, 4, k=k)}


def plan_runs(smoke: bool):
    """(structure label, circuit factory, K values, batches, backends) in priority order."""
    shapes = structures(smoke)
    if smoke:
        return [("PD", shapes["PD"], (3,), (7,), ("triton", "torch", EINET, "naive"))]
    pd7, rat, pd4 = (("PD 28x28 d=7", shapes["PD 28x28 d=7"]), ("RAT 784", shapes["RAT 784"]),
                     ("PD 28x28 d=4", shapes["PD 28x28 d=4"]))
    return [(*pd7, (10, 20), (100, 1000), ("triton", "torch", EINET)),
            (*pd7, (10,), (100,), ("naive",)),
            (*rat, (10, 20), (100, 1000), ("triton", "torch")),
            (*pd4, (10, 20), (100, 1000), ("triton", "torch"))]


def markdown(info: dict, ceil: dict, checked: dict, layers: list, targets: list, steps: list,
             prec: dict, results: list) -> str:
    """The run's tables for docs/benchmarks.md."""
    def num(v, spec=".2f"):
        return "-" if v is None else format(v, spec)
    out = [f"**{info['device']}**, torch {info['torch']}, triton {info['triton']} "
           f"(`python bench/gpu.py`, {info['date']}).", "",
           "Ceilings measured in the same run: copy {:.0f} GB/s; matmul TFLOP/s ieee {:.1f}, "
           "tf32 {:.1f}, tf32x3 {:.1f}, bf16 {:.1f}.".format(
               ceil["copy_gbps"], ceil["ieee_matmul_tflops"], ceil["tf32_matmul_tflops"],
               ceil["tf32x3_matmul_tflops"], ceil["bf16_matmul_tflops"]), ""]
    if checked:
        out += ["Check: " + ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}"
                                      for k, v in checked.items()), ""]
    if layers:
        out += ["| largest outer-product layer | precision | fwd ms | fwd TFLOP/s | % of ceiling "
                "| bwd ms | bwd TFLOP/s | % of ceiling |", "|---|---|---:|---:|---:|---:|---:|---:|"]
        for r in layers:
            if "error" in r:
                out.append(f"| {r['layer']} | {r['precision']} | {r['error']} |||||")
                continue
            out.append(f"| {r['layer']} | {r['precision']} | {num(r['forward_ms'], '.3f')} | "
                       f"{num(r['forward_tflops'], '.1f')} | "
                       f"{num(100 * r.get('forward_fraction', 0), '.0f')}% | "
                       f"{num(r['backward_ms'], '.3f')} | {num(r['backward_tflops'], '.1f')} | "
                       f"{num(100 * r.get('backward_fraction', 0), '.0f')}% |")
        out.append("")
    if targets:
        out += ["| structure | K | batch | backend | fwd ms | fwd+bwd ms | EM step ms | peak MiB |",
                "|---|---:|---:|---|---:|---:|---:|---:|"]
        for r in targets:
            peak = max(r.peak_mb.values()) if r.peak_mb else None
            out.append(f"| {r.structure} | {r.k} | {r.batch} | {r.backend} | "
                       f"{num(r.forward_ms)} | {num(r.train_ms)} | {num(r.em_ms)} | "
                       f"{num(peak, '.0f')} |" if not r.error else
                       f"| {r.structure} | {r.k} | {r.batch} | {r.backend} | {r.error} ||||")
        out += ["", "```", ratios(targets), "```", ""]
    if steps:
        out += ["| EM step | batch | eager ms | CUDA graph ms | kernels ms | graph / kernels |",
                "|---|---:|---:|---:|---:|---:|"]
        for r in steps:
            out.append(f"| {r['structure']} | {r['batch']} | {num(r.get('eager_ms'), '.3f')} | "
                       f"{num(r.get('graph_ms'), '.3f')} | {num(r.get('kernels_ms'), '.3f')} | "
                       f"{num(r.get('graph_over_kernels'))} |" if "error" not in r else
                       f"| {r['structure']} | {r['batch']} | {r['error']} ||||")
        out.append("")
    for label, rows in prec.items():
        out += [f"Precision, {label} (float32 Triton vs float64 torch):", "",
                "| precision | max abs error | max rel error | fwd ms | fwd+bwd ms |",
                "|---|---:|---:|---:|---:|"]
        for r in rows:
            out.append(f"| {r['precision']} | {num(r.get('max_abs_err'), '.2g')} | "
                       f"{num(r.get('max_rel_err'), '.2g')} | {num(r.get('forward_ms'))} | "
                       f"{num(r.get('train_ms'))} |" if "error" not in r else
                       f"| {r['precision']} | {r['error']} ||||")
        out.append("")
    if results:
        out += ["```", table(results, ceil), "", ratios(results), "```"]
    return "\n".join(out) + "\n"


def main() -> int:
    args = parse_args()
    if args.smoke:
        os.environ["TRITON_INTERPRET"] = "1"  # before pcc_kernels is imported
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    start = time.perf_counter()
    sections = set(args.sections.split(","))
    pcc = import_pcc()
    import torch
    import triton

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
            "torch_threads": torch.get_num_threads(), "date": time.strftime("%Y-%m-%d")}
    print(" | ".join(f"{k}: {v}" for k, v in info.items()), flush=True)
    shapes = structures(args.smoke)
    pd7, rat = list(shapes)[:2]
    big_k, big_b, small_k = (3, 7, 3) if args.smoke else (40, 1000, 10)
    modes = ("tf32x3", "ieee", "tf32", "bf16")
    skipped: list[str] = []

    checked: dict = {}
    targets: list = []
    steps: list = []
    layers: list = []
    prec: dict = {}
    results: list = []

    def save() -> None:
        """Write what is measured so far (a run stopped by a timeout keeps its sections)."""
        if args.markdown:
            with open(args.markdown, "w") as f:
                f.write(markdown(info, ceil, checked, layers, targets, steps, prec, results))
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"info": info, "ceilings": ceil, "check": checked, "layers": layers,
                           "targets": [asdict(r) for r in targets], "step100": steps,
                           "precision": prec, "results": [asdict(r) for r in results],
                           "skipped": skipped, "total_s": time.perf_counter() - start}, f,
                          indent=1)

    def within_budget(what: str) -> bool:
        save()
        if time.perf_counter() - start > args.budget:
            skipped.append(what)
            return False
        return True

    ceil = ceilings(device, clock)
    print("ceilings: " + ", ".join(f"{k} {v:.1f}" for k, v in ceil.items()), flush=True)

    if "check" in sections:
        for name, fn in (("backends", check), ("graphs", graph_check)):
            if name == "graphs" and device.type != "cuda":
                continue
            try:
                checked.update(fn(pcc, shapes[pd7](small_k), 7 if args.smoke else 100, device))
            except Exception as exc:  # report and go on
                checked[f"{name}_error"] = f"{type(exc).__name__}: {str(exc)[:200]}"
        print("check: " + ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}"
                                    for k, v in checked.items()), flush=True)

    for label in (pd7, rat):
        for backend in ("triton", EINET):
            if "targets" in sections and within_budget(f"targets {label} {backend}"):
                targets.append(run_config(pcc, shapes[label](big_k), label, big_k, big_b,
                                          backend, device, clock))
                r = targets[-1]
                print(f"  target {label} K={big_k} B={big_b} {backend}: "
                      f"{r.error or (r.forward_ms, r.train_ms, r.em_ms, r.peak_mb)}", flush=True)

    for k in (small_k, big_k):
        if "step100" in sections and within_budget(f"step100 K={k}"):
            steps.append(step100(pcc, shapes[pd7](k), f"{pd7} K={k}", 7 if args.smoke else 100,
                                 device, clock))
            print("  step " + ", ".join(f"{a} {v}" for a, v in steps[-1].items()), flush=True)

    for label in (pd7, rat):
        if "layers" in sections and within_budget(f"layers {label}"):
            layers += layer_bench(pcc, shapes[label](big_k), label, big_b, device, clock, modes,
                                  ceil)
            for r in layers[-len(modes):]:
                print("  layer " + ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else
                                             f"{k} {v}" for k, v in r.items()), flush=True)

    if "precision" in sections and within_budget("precision"):
        label = f"{pd7} K={big_k} B={big_b}"
        prec[label] = precision(pcc, shapes[pd7](big_k), big_b, device, clock,
                                ("tf32x3", "ieee") if args.smoke else modes)

    for label, make, ks, batches, backends in (plan_runs(args.smoke) if "grid" in sections
                                               else []):
        for k in ks:
            circuit = make(k)
            for batch in batches:
                for backend in backends:
                    if not within_budget(f"grid {label} K={k} B={batch} {backend}"):
                        continue
                    results.append(run_config(pcc, circuit, label, k, batch, backend, device,
                                              clock))
                    r = results[-1]
                    times = " / ".join(fmt(t, ".3f") for t in (r.forward_ms, r.train_ms, r.em_ms))
                    print(f"  {label} K={k} B={batch} {backend}: {r.error or times + ' ms'}",
                          flush=True)

    save()
    print()
    print(markdown(info, ceil, checked, layers, targets, steps, prec, results))
    if skipped:
        print(f"skipped (time budget {args.budget:.0f} s): " + "; ".join(skipped))
    print(f"total {time.perf_counter() - start:.0f} s")
    failed = any(r.error for r in results + targets) or any("error" in k for k in checked) \
        or checked.get("max_rel_ll_diff", 0) > 1e-5
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
