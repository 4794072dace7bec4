"""The floor for density estimation on discrete data: a plain Chow-Liu tree (no latent
variables), fitted and scored exactly.

Tree: the maximum spanning tree of pairwise mutual information under Laplace-smoothed pair
counts (`pcc.structures.chow_liu`, count 1 per cell), rooted at its center. Parameters: the
conditional tables p(x_v | x_parent) = (n(x_v, x_parent) + 1) / (n(x_parent) + c) and the root's
p(x_r) = (n(x_r) + 1) / (N + c), c the number of values. Test log-likelihood: the exact mean of
sum_v log p(x_v | x_parent(v)) over the test rows. No EM, nothing random.

    python bench/clt_baseline.py DEBD_ROOT [NAME ...]      # e.g. ../shared/data/debd
    python bench/clt_baseline.py DEBD_ROOT --json out.json

Prints one row per set: variables, rows, parameters and the train / valid / test mean
log-likelihoods (nats per row).
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

from pcc.data import load_data
from pcc.structures.chow_liu import Tree, check_values, chow_liu

LAPLACE = 1.0


def fit_tables(values: np.ndarray, tree: Tree, c: int) -> list[np.ndarray]:
    """log p(x_v | x_parent) as [c_parent, c] per variable (the root's as [1, c])."""
    tables = []
    for v, p in enumerate(tree.parent):
        parent_values = values[:, p] if p >= 0 else np.zeros(len(values), dtype=np.int64)
        counts = np.full((c if p >= 0 else 1, c), LAPLACE)
        np.add.at(counts, (parent_values, values[:, v]), 1.0)
        tables.append(np.log(counts / counts.sum(1, keepdims=True)))
    return tables


def mean_log_likelihood(values: np.ndarray, tree: Tree, tables: list[np.ndarray]) -> float:
    total = np.zeros(len(values))
    for v, p in enumerate(tree.parent):
        parent_values = values[:, p] if p >= 0 else np.zeros(len(values), dtype=np.int64)
        total += tables[v][parent_values, values[:, v]]
    return float(total.mean())


def score(root: str, name: str) -> dict:
    splits = {s: check_values(load_data(os.path.join(root, name, f"{name}.{s}.data")), None)
              for s in ("train", "valid", "test")}
    c = int(max(int(v.max()) for v in splits.values())) + 1
    tree = chow_liu(splits["train"], LAPLACE)
    tables = fit_tables(splits["train"], tree, c)
    free = sum(t.shape[0] * (c - 1) for t in tables)
    return {"set": name, "vars": splits["train"].shape[1], "train_rows": len(splits["train"]),
            "parameters": free,
            **{f"{s}_ll": mean_log_likelihood(v, tree, tables) for s, v in splits.items()}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", help="folder with one folder per debd set (NAME/NAME.train.data ...)")
    parser.add_argument("names", nargs="*", help="sets to score (default: every set in ROOT)")
    parser.add_argument("--json", help="also write the rows as JSON")
    args = parser.parse_args()
    names = args.names or sorted(d for d in os.listdir(args.root)
                                 if os.path.isfile(os.path.join(args.root, d, f"{d}.train.data")))
    rows = [score(args.root, name) for name in names]
    print(f"{'set':<12} {'vars':>5} {'rows':>6} {'params':>7} {'train':>9} {'valid':>9} {'test':>9}")
    for r in rows:
        print(f"{r['set']:<12} {r['vars']:>5} {r['train_rows']:>6} {r['parameters']:>7} "
              f"{r['train_ll']:>9.3f} {r['valid_ll']:>9.3f} {r['test_ll']:>9.3f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
