"""CPU benchmark of the compiled torch backend (issue: compiler and runtime).

Prints, from one run on this machine (one torch thread; the two systems of each row timed in
alternating rounds, medians):
  1. speed ratio compiled-torch / naive (node by node) on PD 28x28 binary, K=10, batch 100:
     forward, and forward + backward + EM step;
  2. forward and forward+backward+EM time and peak memory for PD 28x28 (delta 7, as in the
     Einsum Networks MNIST demo) at K=10 and K=40, batch 100, for the compiled module and for an
     EinsumNetworks-style evaluation of the same plan (torch.einsum per layer under autograd,
     which keeps the [B, P, K, K] outer products for the backward).
Peak memory is the largest growth of the bytes held in malloc'd blocks (bench/memory.py: glibc
mallinfo2, sampled every 0.2 ms) while one step runs, in a fresh subprocess per measurement,
after a warm-up on a tiny model; the model's parameters exist before the baseline is taken.

    python bench/runtime.py [--repeats 5] [--json out.json]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

import pcc  # noqa: E402
from pcc.em import EM  # noqa: E402
from pcc.structures import poon_domingos  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from einet_style import einet_style_forward  # noqa: E402
from memory import peak_growth  # noqa: E402
from sidebyside import dump_json, interleaved_medians, machine  # noqa: E402

torch.set_num_threads(1)


def build(k: int, backend: str):
    return pcc.compile(poon_domingos(28, 28, [7], k=k), backend=backend)


def batch(n: int = 100) -> torch.Tensor:
    return (torch.rand(n, 784, generator=torch.Generator().manual_seed(0)) < 0.3).float()


def step_fn(model, x, what: str):
    """A closure running one step of `what`: forward | train (forward+backward+EM) | einet-*."""
    if what == "forward":
        return lambda: _no_grad(model, x)
    if what == "train":
        em = EM(model, step_size=0.1)
        return lambda: em.step(x)
    if what == "einet-forward":
        return lambda: _no_grad_fn(lambda: einet_style_forward(model, x))
    if what == "einet-train":
        def run():
            model.zero_grad()
            with model.em_mode():
                einet_style_forward(model, x).sum().backward()
        return run
    raise ValueError(what)


def _no_grad(model, x):
    with torch.no_grad():
        model(x)


def _no_grad_fn(fn):
    with torch.no_grad():
        fn()


def child(k: int, backend: str, what: str) -> None:
    """Run one step in this fresh process; print the peak growth of malloc'd bytes."""
    tiny = build(2, backend)
    for warm in ("train", "einet-train"):  # load the code of every op on a tiny model
        step_fn(tiny, batch(4), warm)()
    model = build(k, backend)
    fn = step_fn(model, batch(), what)
    print(peak_growth(fn)["malloc"])


def peak_memory(k: int, backend: str, what: str) -> int:
    out = subprocess.run([sys.executable, __file__, "--child", str(k), backend, what],
                         capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(int(args.child[0]), args.child[1], args.child[2])
        return

    results = {"machine": machine()}
    print(f"# {results['machine']}")
    print("\n## compiled (torch backend) vs naive, PD 28x28 delta 7, K=10, batch 100")
    print(f"(medians of {args.repeats} interleaved rounds; speedup by wall clock and by CPU time)")
    x = batch()
    ratios = {}
    for what in ("forward", "train"):
        t = interleaved_medians({"compiled": step_fn(build(10, "torch"), x, what),
                                 "naive": step_fn(build(10, "naive"), x, what)}, args.repeats)
        fast, slow = t["compiled"], t["naive"]
        ratios[what] = {"compiled_s": fast.wall, "naive_s": slow.wall,
                        "speedup": slow.wall / fast.wall, "speedup_cpu": slow.cpu / fast.cpu}
        print(f"{what:>8}: compiled {fast.wall * 1e3:8.2f} ms   naive {slow.wall * 1e3:9.1f} ms   "
              f"speedup {slow.wall / fast.wall:7.1f}x   (CPU time: {slow.cpu / fast.cpu:5.1f}x)")
    results["vs_naive"] = ratios

    print("\n## time and peak memory, PD 28x28 delta 7, batch 100")
    print(f"{'K':>3} {'step':>8} {'pcc ms':>9} {'pcc MiB':>8} {'einet-style ms':>15} "
          f"{'einet MiB':>10} {'speedup':>8} {'memory':>7}")
    table = []
    for k in (10, 40):
        for what in ("forward", "train"):
            t = interleaved_medians({"pcc": step_fn(build(k, "torch"), x, what),
                                     "einet": step_fn(build(k, "torch"), x, f"einet-{what}")},
                                    args.repeats)
            ours, theirs = t["pcc"].wall, t["einet"].wall
            mem_ours = peak_memory(k, "torch", what)
            mem_theirs = peak_memory(k, "torch", f"einet-{what}")
            row = {"k": k, "step": what, "pcc_s": ours, "einet_style_s": theirs,
                   "pcc_peak_bytes": mem_ours, "einet_style_peak_bytes": mem_theirs}
            table.append(row)
            print(f"{k:>3} {what:>8} {ours * 1e3:9.2f} {mem_ours / 2**20:8.1f} {theirs * 1e3:15.2f} "
                  f"{mem_theirs / 2**20:10.1f} {theirs / ours:7.2f}x "
                  f"{mem_ours / max(mem_theirs, 1):6.2f}x")
    results["pd28"] = table
    print("('train' = forward + backward + EM update for pcc; forward + backward for einet-style; "
          "memory = pcc peak / einet-style peak)")
    if args.json:
        dump_json(args.json, results)


if __name__ == "__main__":
    main()
