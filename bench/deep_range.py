"""Deep circuits in float32 against float64 log space: no underflow, no overflow, no drift.

    python bench/deep_range.py --data ../shared/data/debd [--rows 16]

The engine keeps values in linear space with one log-scale per row (kernels/reference.py);
this checks that scheme where it is most at risk, on the three circuits issue 17 names:
  bbc HCLT     pcc's hidden Chow-Liu tree of bbc's training data (K = 32, one tree, 1,058
               variables), its own random initialization (log-likelihoods near -736 nats);
  chain        a hidden Markov model over 10,000 binary tokens (`hidden_markov_model`, 4 states,
               every position its own tables: 9,999 sums deep), random peaked parameters;
  PD 64 x 64   Poon-Domingos over 64 x 64 pixels (delta 8, K = 4), random parameters.
Rows: real test rows of bbc, random binary rows elsewhere, with one value in 10 missing.

The reference is the naive evaluator (`backend="naive"`: node by node, in float64 log space)
with the same parameters. Printed per circuit: the lowest log-likelihood, the largest relative
error of float32 log p(x) against the reference's (at most 1e-5 passes), and the largest
relative error of EM's expected counts of at least 0.01 (`pcc.EM.accumulate`: sums, mixtures,
leaves), beside the same error of the naive evaluator run in float32 log space: the yardstick
(no worse passes; a count sums products of float32 posteriors along the whole circuit).
Every value must be finite.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time

import numpy as np
import torch

import pcc
from pcc.em import EM
from pcc.structures import hidden_chow_liu_tree, hidden_markov_model, poon_domingos

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sidebyside import machine  # noqa: E402


def randomize(model: torch.nn.Module, seed: int, scale: float) -> None:
    """Logits drawn normal with std `scale`: peaked distributions, far from uniform."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64) * scale)


def with_missing(x: torch.Tensor, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    x = x.clone()
    x[torch.rand(x.shape, generator=gen) < 0.1] = math.nan
    return x


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b).abs() / b.abs().clamp_min(1)).max().item()


def counts(em: EM) -> list[torch.Tensor]:
    leaves = [s[key] for s in em._leaf_stats for key in sorted(s)]
    return [c.double() for c in em._sum_counts + em._mix_counts + leaves]


def count_error(em: EM, reference: EM) -> float:
    """The largest relative error of the expected counts of at least 0.01."""
    return max(((g - w).abs() / w.abs())[w.abs() >= 0.01].max().item()
               for g, w in zip(counts(em), counts(reference)))


def check(name: str, model: torch.nn.Module, x: torch.Tensor) -> bool:
    start = time.perf_counter()
    naive = pcc.compile(model.circuit, backend="naive")
    naive.load_state_dict(model.state_dict())
    ref = pcc.compile(model.circuit, backend="naive").double()
    ref.load_state_dict(model.state_dict())
    with torch.no_grad():
        ll, expected = model(x), ref(x.double())
    em, em_naive, em_ref = EM(model), EM(naive), EM(ref)
    em.accumulate(x)
    em_naive.accumulate(x)
    em_ref.accumulate(x.double())
    finite = bool(torch.isfinite(ll).all()) and all(bool(torch.isfinite(c).all())
                                                    for c in counts(em))
    ll_error, ours, log_space = (relative(ll, expected), count_error(em, em_ref),
                                 count_error(em_naive, em_ref))
    print(f"{name:>11} {x.shape[1]:>7,} {expected.min().item():>11.2f} {ll_error:>11.1e} "
          f"{ours:>12.1e} {log_space:>12.1e} {str(finite):>7} "
          f"{time.perf_counter() - start:>6.1f}", flush=True)
    return finite and ll_error < 1e-5 and ours <= log_space


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="the debd folder (for bbc)")
    ap.add_argument("--rows", type=int, default=16)
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(f"# {machine()}; float32 engine vs float64 naive log space, {args.rows} rows")
    print(f"{'circuit':>11} {'vars':>7} {'min log p':>11} {'log p error':>11} "
          f"{'counts error':>12} {'log-space 32':>12} {'finite':>7} {'s':>6}")
    base = os.path.join(args.data, "bbc", "bbc")
    train = np.loadtxt(f"{base}.train.data", delimiter=",", dtype=np.int64)
    test = np.loadtxt(f"{base}.test.data", delimiter=",", dtype=np.int64)
    gen = torch.Generator().manual_seed(0)
    ok = []
    model = pcc.compile(hidden_chow_liu_tree(train, k=32, trees=1))
    ok.append(check("bbc HCLT", model,
                    with_missing(torch.from_numpy(test[:args.rows]).float(), 1)))
    model = pcc.compile(hidden_markov_model(10_000, 4, 2, tied=False))
    randomize(model, 2, 2.0)
    ok.append(check("chain", model,
                    with_missing(torch.randint(0, 2, (args.rows, 10_000), generator=gen).float(),
                                 3)))
    model = pcc.compile(poon_domingos(64, 64, [8], k=4))
    randomize(model, 4, 1.0)
    ok.append(check("PD 64 x 64", model,
                    with_missing(torch.randint(0, 2, (args.rows, 4096), generator=gen).float(),
                                 5)))
    print("all finite, log p within 1e-5, counts no worse than float32 log space" if all(ok) else "FAILED")
    sys.exit(0 if all(ok) else 1)


if __name__ == "__main__":
    main()
