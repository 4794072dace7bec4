"""CPU benchmark of sampling (issue: queries and use), one torch thread.

Prints, from one run:
  1. batched sampling of n samples in one call (median of 5 calls) vs a per-sample Python loop
     (n calls of `sample(model, 1)`, the same code, timed once), on PD 28x28 (delta 7, K=10,
     Bernoulli leaves); the ratio;
  2. conditional sampling throughput: evidence = the top half of random images, one sample each
     (upward pass on the evidence + downward pass), and MPE on the same evidence (medians of 3).

    python bench/sampling.py [--n 1000] [--k 10]
"""
from __future__ import annotations

import argparse
import math
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

import pcc  # noqa: E402
from pcc.queries import mpe, sample  # noqa: E402
from pcc.structures import poon_domingos  # noqa: E402

torch.set_num_threads(1)


def timed(fn, repeats: int = 1) -> float:
    """Median wall time of `repeats` calls of fn, in seconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1000, help="samples (default 1000)")
    parser.add_argument("--k", type=int, default=10, help="units per region (default 10)")
    args = parser.parse_args()
    model = pcc.compile(poon_domingos(28, 28, [7], k=args.k), backend="torch")
    g = torch.Generator().manual_seed(0)
    sample(model, 8, generator=g)  # warm up
    print(f"PD 28x28 delta 7, K={args.k}, Bernoulli leaves; torch backend, "
          f"{torch.get_num_threads()} thread(s), n={args.n}")

    batched = timed(lambda: sample(model, args.n, generator=g), repeats=5)
    looped = timed(lambda: [sample(model, 1, generator=g) for _ in range(args.n)])
    print(f"  batched: {batched:.3f} s ({args.n / batched:,.0f} samples/s)")
    print(f"  loop of n=1 calls: {looped:.3f} s ({args.n / looped:,.0f} samples/s)")
    print(f"  ratio loop / batched: {looped / batched:.0f}x")

    images = (torch.rand(args.n, 784, generator=g) < 0.3).float()
    evidence = images.clone()
    evidence[:, 392:] = math.nan  # the bottom half is free
    conditional = timed(lambda: sample(model, args.n, evidence, generator=g), repeats=3)
    completion = timed(lambda: mpe(model, evidence), repeats=3)
    print(f"  conditional sampling (top half observed, {args.n} evidence rows): "
          f"{conditional:.3f} s ({args.n / conditional:,.0f} samples/s)")
    print(f"  MPE on the same evidence: {completion:.3f} s ({args.n / completion:,.0f} rows/s)")


if __name__ == "__main__":
    main()
