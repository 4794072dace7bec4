"""Data-parallel EM on this machine: throughput with 1 and 2 processes (gloo), the all-reduce
bytes per step, and what streaming the data costs one process.

    python bench/distributed.py [--steps 12] [--repeats 3] [--debd /work/shared/data/debd]
                                [--baseline DIR]

1. EM throughput (rows/s of online EM steps on a fixed global batch) with 1 process and with 2
   processes (each its half of the batch, then one all-reduce of the statistics), and of one
   process on batches 8 times smaller (what each of 8 ranks would do), one torch thread per
   process, the runs interleaved (the machine is shared) and the median taken; for a RAT (nltcs
   size), a larger RAT, and with --debd the HCLT of bbc at K=32 (docs/distributed.md's worked
   example). Also the time per step spent in the all-reduce, and the bytes it sums per step
   against parameters x 4 (float32 statistics).
2. One process: CPU seconds per online EM epoch with the rows in memory, read from an .npy file, and
   read from a text file's cache (pcc.rows), interleaved; ratios to in memory.
3. With --baseline DIR (a checkout of another pcc, e.g. `git worktree add /tmp/main main`):
   CPU seconds per online EM epoch in memory with this pcc and with DIR's, interleaved in fresh
   processes (the order alternating): the single-process path of both.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def problem(name: str, debd: str | None):
    """(circuit, rows [N, V] float64, global batch)."""
    from pcc.structures import hidden_chow_liu_tree, random_binary_trees
    rng = np.random.default_rng(0)
    if name == "rat-nltcs":
        return random_binary_trees(16, k=10), (rng.random((4000, 16)) < 0.3) * 1.0, 100
    if name == "rat-256":
        return (random_binary_trees(256, depth=4, replicas=10, k=16),
                (rng.random((4000, 256)) < 0.3) * 1.0, 100)
    x = np.loadtxt(os.path.join(debd, "bbc", "bbc.train.data"), delimiter=",")
    return hidden_chow_liu_tree(x, k=32), x, 512


def em_steps(group, name: str, debd: str | None, steps: int, out: str, divisor: int = 1) -> None:
    """Time `steps` online EM steps on the global batch / divisor (this rank's share of it)."""
    import pcc
    from pcc.distributed import reducer_for
    from pcc.em import EM
    torch.set_num_threads(1)
    circuit, x, batch = problem(name, debd)
    batch //= divisor
    model = pcc.compile(circuit, seed=0)
    em = EM(model, step_size=0.1, reduce=reducer_for(group))
    x = torch.from_numpy(x)
    rank, size = (0, 1) if group is None else (group.rank, group.size)
    waited = [0.0]
    if group is not None:
        import pcc.distributed as pd
        real = pd.dist.all_reduce

        def timed(t, *a, **k):
            started = time.perf_counter()
            real(t, *a, **k)
            waited[0] += time.perf_counter() - started
        pd.dist.all_reduce = timed

    def batch_rows(i):
        rows = torch.arange(i * batch, (i + 1) * batch) % len(x)
        return x[rows[rank::size]]
    em.step(batch_rows(0))  # warm up
    if group is not None:
        dist.barrier()
    waited[0] = 0.0
    started = time.perf_counter()
    for i in range(1, steps + 1):
        em.step(batch_rows(i))
    seconds = time.perf_counter() - started
    alone = None
    if group is not None:  # the all-reduce by itself: the same bytes, after a barrier each time
        buffer, times = torch.zeros(em.reduce.statistics_bytes(em) // 4 + 2), []
        for _ in range(10):
            dist.barrier()
            t = time.perf_counter()
            real(buffer)
            times.append(time.perf_counter() - t)
        alone = statistics.median(times)
    if rank == 0:
        result = {"seconds": seconds, "allreduce": waited[0], "alone": alone,
                  "rows": steps * batch,
                  "bytes": em.reduce.statistics_bytes(em) if group is not None else None,
                  "parameters": sum(p.numel() for p in model.parameters())}
        with open(out, "w") as f:
            json.dump(result, f)


def _rank_entry(rank: int, size: int, folder: str, name, debd, steps) -> None:
    from pcc.distributed import Group
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{folder}/store", rank=rank,
                            world_size=size)
    try:
        em_steps(Group(rank, size, torch.device("cpu")), name, debd, steps,
                 os.path.join(folder, "out.json"))
    finally:
        dist.destroy_process_group()


def measure(size: int, name: str, debd: str | None, steps: int, divisor: int = 1) -> dict:
    """One fresh run with `size` processes (one process: on the global batch / divisor)."""
    with tempfile.TemporaryDirectory() as folder:
        if size == 1:
            context = mp.get_context("spawn")
            p = context.Process(target=em_steps, args=(None, name, debd, steps,
                                                       os.path.join(folder, "out.json"),
                                                       divisor))
            p.start()
            p.join()
        else:
            mp.start_processes(_rank_entry, args=(size, folder, name, debd, steps),
                               nprocs=size, start_method="spawn")
        with open(os.path.join(folder, "out.json")) as f:
            return json.load(f)


def throughput(names: list[str], debd: str | None, steps: int, repeats: int) -> None:
    print("1. EM throughput, 1 vs 2 processes (gloo, 1 torch thread each; 2 cores shared with "
          "other users; medians of interleaved runs)")
    print(f"load average {os.getloadavg()[0]:.2f} (other users' processes)")
    print(f"{'circuit':<12} {'parameters':>11} {'batch':>5} {'1 proc rows/s':>14} "
          f"{'at batch/8':>11} {'2 procs rows/s':>15} {'2/1':>5} {'in all-reduce':>14} "
          f"{'alone':>7} {'bytes/step':>11} {'params x 4':>11} {'ratio':>6}")
    for name in names:
        runs = {1: [], 8: [], 2: []}
        for _ in range(repeats):
            runs[1].append(measure(1, name, debd, steps))
            runs[8].append(measure(1, name, debd, steps, divisor=8))
            runs[2].append(measure(2, name, debd, steps))
        rate = {s: statistics.median(r["rows"] / r["seconds"] for r in runs[s]) for s in runs}
        reduce_ms = statistics.median(1e3 * r["allreduce"] / steps for r in runs[2])
        alone_ms = statistics.median(1e3 * r["alone"] for r in runs[2])
        two = runs[2][0]
        batch = two["rows"] // steps
        print(f"{name:<12} {two['parameters']:>11,} {batch:>5} {rate[1]:>14,.0f} "
              f"{rate[8]:>11,.0f} {rate[2]:>15,.0f} {rate[2] / rate[1]:>5.2f} "
              f"{reduce_ms:>11.2f} ms {alone_ms:>4.2f} ms {two['bytes']:>11,} "
              f"{4 * two['parameters']:>11,} {two['bytes'] / (4 * two['parameters']):>6.3f}")
    print("  at batch/8: one process on batches of batch/8 rows (a rank's share on 8 ranks); "
          "in all-reduce: ms per step rank 0 spent in the all-reduce, waiting for the other "
          "rank included; alone: the same bytes all-reduced right after a barrier (transfer "
          "only); bytes/step: the statistics summed (status slots excluded)")
    print(f"  load average after: {os.getloadavg()[0]:.2f}")


EPOCH = """
import importlib.util, sys, time, numpy as np, torch
sys.path.insert(0, {repo!r})
spec = importlib.util.spec_from_file_location(  # this checkout's kernels, not the installed ones
    "pcc_kernels", {repo!r} + "/kernels/__init__.py",
    submodule_search_locations=[{repo!r} + "/kernels"])
sys.modules["pcc_kernels"] = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sys.modules["pcc_kernels"])
torch.set_num_threads(1)
import pcc
assert pcc.__file__.startswith({repo!r})
from pcc.structures import random_binary_trees
from pcc.train import TrainConfig, fit
rows = {rows}
model = pcc.compile(random_binary_trees(16, k=10), seed=0)
config = TrainConfig(epochs=1, batch_size=100, step_size=0.05, pseudocount=0.01, patience=1,
                     polish=0, members=1, init="keep", cuda_graph=False)
started = time.process_time()  # CPU seconds: less disturbed by other users than wall time
fit(model, rows, None, config, progress=False)
print(time.process_time() - started)
"""


def epoch_seconds(repo: str, rows: str) -> float:
    """CPU seconds of one online EM epoch (nltcs-size RAT, batch 100) in a fresh process."""
    code = EPOCH.format(repo=repo, rows=rows)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=repo)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          cwd=repo, check=True)
    return float(done.stdout.strip().splitlines()[-1])


def streaming(repeats: int) -> None:
    print("\n2. One process, one online EM epoch (RAT nltcs size, 16,181 x 16 rows, batch 100): "
          "rows in memory vs read on demand (CPU seconds, medians of interleaved runs)")
    with tempfile.TemporaryDirectory() as folder:
        x = (np.random.default_rng(0).random((16181, 16)) < 0.3).astype(np.int8)
        np.save(os.path.join(folder, "x.npy"), x)
        np.savetxt(os.path.join(folder, "x.data"), x, fmt="%d", delimiter=",")
        model = "pcc.compile(random_binary_trees(16, k=10))"
        kinds = {
            "in memory": f"np.load({folder + '/x.npy'!r}).astype(np.float64)",
            ".npy read in place": f"__import__('pcc.rows').rows.open_data({folder + '/x.npy'!r}, "
                                  f"{model})",
            "text, binary cache": f"__import__('pcc.rows').rows.open_data("
                                  f"{folder + '/x.data'!r}, {model})",
        }
        times = {k: [] for k in kinds}
        for _ in range(repeats):
            for kind, rows in kinds.items():
                times[kind].append(epoch_seconds(REPO, rows))
        base = statistics.median(times["in memory"])
        for kind, values in times.items():
            median = statistics.median(values)
            print(f"  {kind:<20} {median:6.2f} s/epoch   {median / base:5.3f} x in memory")


def baseline(other: str, repeats: int) -> None:
    print(f"\n3. One process, one online EM epoch in memory (RAT nltcs size): this pcc vs {other}"
          " (CPU seconds; interleaved fresh processes, the order alternating; median and "
          "fastest)")
    rows = "(np.random.default_rng(0).random((16181, 16)) < 0.3) * 1.0"
    times = {REPO: [], other: []}
    for i in range(max(repeats, 8)):
        for repo in (REPO, other) if i % 2 == 0 else (other, REPO):
            times[repo].append(epoch_seconds(repo, rows))
    (mine, theirs) = (times[REPO], times[other])
    for name, f in (("median", statistics.median), ("fastest", min)):
        print(f"  {name:<8} this pcc {f(mine):6.3f} s/epoch; {other} {f(theirs):6.3f} s/epoch; "
              f"ratio {f(mine) / f(theirs):5.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--debd", help="folder of the debd data sets: adds the bbc HCLT (K=32)")
    parser.add_argument("--baseline", help="a checkout of another pcc to compare one process with")
    parser.add_argument("--circuits", nargs="+", choices=("rat-nltcs", "rat-256", "hclt-bbc"),
                        help="the circuits of section 1 (default: all; hclt-bbc needs --debd)")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs")
    names = args.circuits or ["rat-nltcs", "rat-256"] + (["hclt-bbc"] if args.debd else [])
    throughput(names, args.debd, args.steps, args.repeats)
    streaming(args.repeats)
    if args.baseline:
        baseline(os.path.abspath(args.baseline), args.repeats)


if __name__ == "__main__":
    main()
