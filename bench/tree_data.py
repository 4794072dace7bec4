"""Debd-like binary data drawn from a random tree-shaped Bayesian network: data on which the
plain Chow-Liu tree is the true model family (a hard case for latent-variable learners).

    python bench/tree_data.py OUT_ROOT NAME VARS ROWS [--seed 0]

Writes OUT_ROOT/NAME/NAME.{train,valid,test}.data (ROWS, ROWS/7 and ROWS/5 rows, 0/1 separated
by commas, as the debd sets), so `bench/clt_baseline.py OUT_ROOT NAME` and
`bench/debd_cli.py --data OUT_ROOT --sets NAME` run on it. Variable v > 0 has a uniformly drawn
parent among 0..v-1; where the parent is 1, v is 1 with probability 1 - flip_v (flip_v uniform
in [0.05, 0.6]), elsewhere with probability base_v ~ Beta(0.5, 2) (sparse, like text data).
"""
from __future__ import annotations

import argparse
import os

import numpy as np


def tree_rows(rng: np.random.Generator, parent: list[int], base: np.ndarray, flip: np.ndarray,
              n: int) -> np.ndarray:
    """n rows [n, V] int8: x_v ~ Bernoulli(1 - flip[v]) where x_parent(v) = 1, else (and at the
    root) Bernoulli(base[v])."""
    x = np.zeros((n, len(parent)), np.int8)
    for v, p in enumerate(parent):
        prob = base[v] if p < 0 else np.where(x[:, p] == 1, 1 - flip[v], base[v])
        x[:, v] = rng.random(n) < prob
    return x


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root")
    parser.add_argument("name")
    parser.add_argument("vars", type=int)
    parser.add_argument("rows", type=int)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    parent = [-1] + [int(rng.integers(0, v)) for v in range(1, args.vars)]
    base, flip = rng.beta(0.5, 2.0, args.vars), rng.uniform(0.05, 0.6, args.vars)
    folder = os.path.join(args.root, args.name)
    os.makedirs(folder, exist_ok=True)
    for split, n in (("train", args.rows), ("valid", args.rows // 7), ("test", args.rows // 5)):
        path = os.path.join(folder, f"{args.name}.{split}.data")
        np.savetxt(path, tree_rows(rng, parent, base, flip, n), fmt="%d", delimiter=",")
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
