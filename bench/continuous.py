"""HCLTs on real-valued and mixed tables that ship with scikit-learn, against two Gaussian
baselines computed here on the same split:

    python bench/continuous.py [--budget SECONDS] [--seed S] [--correlation R] [--json out.json]

Tables (scikit-learn's bundled copies, no download): breast-cancer (569 x 30), wine (178 x 13),
diabetes (442 x 10, its `sex` column has two values), iris (150 x 4, the species left out). Each is split 60/20/20 by a seeded
permutation; every column is standardized by the training split's mean and standard deviation.
`diabetes-mixed` keeps `sex` as a 0/1 column (a discrete column: pcc gives it a bernoulli leaf)
and standardizes the other nine.

Models, all fitted on the training split with choices on the validation split, scored by the
mean test log-likelihood (nats per row; densities for continuous columns, probabilities for
discrete ones):
- full-covariance Gaussian: the mean and covariance of the training rows plus a ridge r I,
  r chosen on validation from RIDGES; for diabetes-mixed one such Gaussian of the continuous
  columns per value of `sex`, times the frequency of the value;
- Gaussian Chow-Liu tree: the maximum spanning tree of the Gaussian mutual information
  -log(1 - rho^2) / 2 (`pcc.structures.chow_liu`), each variable a linear Gaussian of its parent
  (least squares); for diabetes-mixed the tree is rooted at `sex` and its children are one
  Gaussian per value of it;
- pcc: `pcc.fit(pcc.structures.hclt(train), train, valid, budget=...)`, the defaults (K, trees,
  pseudocount and leaf smoothing chosen on validation; continuous columns correlated at 0.9 or
  more share an mvnormal leaf, the column `groups` below).

Needs scikit-learn (`pip install -e ".[tabular]"`).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

import pcc  # noqa: E402
from pcc.structures.chow_liu import center, maximum_spanning_tree, mixed_mutual_information, root_at  # noqa: E402
from pcc.search import label  # noqa: E402
from pcc.structures import defaults  # noqa: E402
from pcc.train import evaluate  # noqa: E402

torch.set_num_threads(1)
RIDGES = (0.0, 1e-3, 1e-2, 1e-1)
LOG_2PI = np.log(2 * np.pi)


def tables() -> dict[str, tuple[np.ndarray, int | None]]:
    """name -> (rows [N, V] float64, the index of the discrete 0/1 column or None)."""
    from sklearn import datasets
    diabetes = datasets.load_diabetes(scaled=False).data
    mixed = diabetes.copy()
    mixed[:, 1] = mixed[:, 1] - 1.0  # sex: 1/2 -> 0/1
    return {"breast-cancer": (datasets.load_breast_cancer().data, None),
            "wine": (datasets.load_wine().data, None),
            "diabetes": (diabetes, None),
            "diabetes-mixed": (mixed, 1),
            "iris": (datasets.load_iris().data, None)}


def split(x: np.ndarray, discrete: int | None, seed: int) -> list[np.ndarray]:
    """Seeded 60/20/20 split, standardized by the training split (not the discrete column)."""
    order = np.random.default_rng(seed).permutation(len(x))
    a, b = int(0.6 * len(x)), int(0.8 * len(x))
    parts = [x[order[:a]], x[order[a:b]], x[order[b:]]]
    mean, std = parts[0].mean(0), parts[0].std(0)
    if discrete is not None:
        mean[discrete], std[discrete] = 0.0, 1.0
    return [(p - mean) / std for p in parts]


def gaussian_ll(train: np.ndarray, ridge: float, rows: np.ndarray) -> np.ndarray:
    """log N(rows; mean, cov + ridge I) of the training rows' mean and covariance, [n]."""
    mean = train.mean(0)
    cov = np.cov(train, rowvar=False, bias=True) + ridge * np.eye(train.shape[1])
    sign, logdet = np.linalg.slogdet(cov)
    if sign <= 0:
        return np.full(len(rows), -np.inf)
    d = rows - mean
    return -0.5 * (np.einsum("ni,ij,nj->n", d, np.linalg.inv(cov), d) + logdet
                   + train.shape[1] * LOG_2PI)


def full_gaussian(train, valid, test, discrete) -> float:
    """The full-covariance Gaussian (per value of the discrete column), ridge chosen on
    validation: its mean test log-likelihood."""
    def ll(ridge, rows):
        if discrete is None:
            return gaussian_ll(train, ridge, rows)
        rest = [c for c in range(train.shape[1]) if c != discrete]
        out = np.empty(len(rows))
        for value in (0.0, 1.0):
            fit, at = train[train[:, discrete] == value], rows[:, discrete] == value
            out[at] = np.log(len(fit) / len(train)) + gaussian_ll(fit[:, rest], ridge,
                                                                  rows[at][:, rest])
        return out
    best = max(RIDGES, key=lambda r: ll(r, valid).mean())
    return float(ll(best, test).mean())


def gaussian_tree(train, test, discrete) -> float:
    """The Gaussian Chow-Liu tree (rooted at the discrete column, if any): its mean test
    log-likelihood."""
    kinds = np.zeros(train.shape[1], dtype=bool)
    if discrete is not None:
        kinds[discrete] = True
    neighbours = maximum_spanning_tree(mixed_mutual_information(train, kinds, 1.0))
    tree = root_at(neighbours, discrete if discrete is not None else center(neighbours))
    total = np.zeros(len(test))
    for v, p in enumerate(tree.parent):
        if v == discrete:
            share = train[:, v].mean()
            total += np.where(test[:, v] == 1, np.log(share), np.log1p(-share))
        elif p < 0:
            total += _normal(test[:, v], train[:, v].mean(), train[:, v].var())
        elif p == discrete:
            for value in (0.0, 1.0):
                fit, at = train[train[:, p] == value, v], test[:, p] == value
                total[at] += _normal(test[at, v], fit.mean(), fit.var())
        else:
            design = np.stack([np.ones(len(train)), train[:, p]], 1)
            coef, *_ = np.linalg.lstsq(design, train[:, v], rcond=None)
            residual = (train[:, v] - design @ coef).var()
            total += _normal(test[:, v], coef[0] + coef[1] * test[:, p], residual)
    return float(total.mean())


def _normal(x, mean, var):
    return -0.5 * ((x - mean) ** 2 / var + np.log(var) + LOG_2PI)


def run_pcc(train, valid, test, budget: float, seed: int, correlation: float) -> dict:
    start = time.perf_counter()
    circuit = pcc.structures.hclt(train, correlation=correlation)
    groups = sorted(len(r.scope) for r in circuit.inputs if len(r.scope) > 1)
    model = pcc.fit(circuit, train, valid, budget=budget, seed=seed, progress=False)
    capacity = model.capacity or {}
    return {"pcc": evaluate(model, test).mean, "pcc_valid": evaluate(model, valid).mean,
            "seconds": round(time.perf_counter() - start, 1),
            "parameters": sum(p.numel() for p in model.parameters()), "groups": groups,
            "choice": {k: capacity.get(k) for k in ("k", "trees", "pseudocount", "entropy",
                                                     "soften")}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=float, default=120.0, help="pcc.fit's, per table")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tables", nargs="+")
    parser.add_argument("--correlation", type=float, default=defaults.HCLT_CORRELATION,
                        help="pcc.structures.hclt's: columns correlated this much share a leaf "
                             "(1: none)")
    parser.add_argument("--json", help="also write the rows as JSON")
    args = parser.parse_args()
    rows = []
    for name, (x, discrete) in tables().items():
        if args.tables and name not in args.tables:
            continue
        train, valid, test = split(x, discrete, args.seed)
        row = {"table": name, "rows": [len(train), len(valid), len(test)],
               "columns": x.shape[1], "gaussian": full_gaussian(train, valid, test, discrete),
               "gaussian_tree": gaussian_tree(train, test, discrete),
               **run_pcc(train, valid, test, args.budget, args.seed, args.correlation)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    print("\n| table | rows (train/valid/test) | columns | full-covariance Gaussian | "
          "Gaussian Chow-Liu tree | pcc HCLT (defaults) | pcc valid | choice | column groups | "
          "parameters | seconds |")
    print("|---|---|---:|---:|---:|---:|---:|---|---|---:|---:|")
    for r in rows:
        best = max(("gaussian", "gaussian_tree", "pcc"), key=lambda m: r[m])
        scores = " | ".join(f"**{r[m]:.3f}**" if m == best else f"{r[m]:.3f}"
                            for m in ("gaussian", "gaussian_tree", "pcc"))
        print(f"| {r['table']} | {'/'.join(map(str, r['rows']))} | {r['columns']} | {scores} | "
              f"{r['pcc_valid']:.3f} | {label(r['choice'])} | "
              f"{' + '.join(map(str, r['groups'])) or 'none'} | {r['parameters']:,} | "
              f"{r['seconds']} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
