"""The same circuit with 1 and with N torch threads, in one run (what `--threads` buys).

    python bench/threads.py --data ../shared/data/debd/bbc [--threads 2] [--batch 512]

An HCLT (one tree, K = 32, `pcc.structures.hidden_chow_liu_tree`) of the set's training data;
the forward (no autograd) and an EM step of `--batch` training rows, timed in alternating rounds
with 1 thread and with N (`torch.set_num_threads`), medians of wall-clock seconds. Prints the
times and the speedup N threads / 1 thread. Other jobs on the machine take cores away: run it on
a quiet one.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sidebyside import dump_json, machine  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="a debd set's folder (NAME/NAME.train.data)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--json")
    args = ap.parse_args()
    import pcc
    from pcc.em import EM
    from pcc.structures import hidden_chow_liu_tree
    name = os.path.basename(os.path.normpath(args.data))
    train = np.loadtxt(os.path.join(args.data, f"{name}.train.data"), delimiter=",")
    model = pcc.compile(hidden_chow_liu_tree(train, k=args.k, trees=1))
    x = torch.from_numpy(train[:args.batch]).float()
    em = EM(model, step_size=0.1)

    def forward():
        with torch.no_grad():
            model(x)
    steps = {"forward": forward, "EM step": lambda: em.step(x)}
    counts = (1, args.threads)
    times = {(what, n): [] for what in steps for n in counts}
    for what, fn in steps.items():
        for n in counts:  # warm-up: bindings and the thread pool
            torch.set_num_threads(n)
            fn()
        for r in range(args.repeats):
            for n in counts if r % 2 == 0 else reversed(counts):
                torch.set_num_threads(n)
                start = time.perf_counter()
                fn()
                times[(what, n)].append(time.perf_counter() - start)
    print(f"# {machine()}; {name} HCLT K={args.k}, one tree, batch {args.batch}, float32")
    result = {"machine": machine(), "set": name, "batch": args.batch, "rows": []}
    for what in steps:
        one, many = (statistics.median(times[(what, n)]) for n in counts)
        print(f"{what:>8}: 1 thread {one * 1e3:8.1f} ms, {args.threads} threads "
              f"{many * 1e3:8.1f} ms, speedup {one / many:.2f}x")
        result["rows"].append({"step": what, "one": one, "many": many, "threads": args.threads})
    if args.json:
        dump_json(args.json, result)


if __name__ == "__main__":
    main()
