"""The defaults on little data: every debd set's training split cut to seeded subsamples of
500, 1,600 and 5,000 rows (validation and test unchanged), trained three ways:

- the defaults: `pcc.fit(pcc.structures.hclt(train), train, valid)`: K, trees, pseudocount and
  leaf smoothing chosen on validation within the default budget (`pcc.search`);
- the grid: `pcc.fit(pcc.structures.hclt(train, k=K, trees=T), train, valid, pseudocount=0.1,
  entropy=0, soften=0)` for K in {4, 8, 16, 32} and T in {1, 4}: the base recipe (nothing
  chosen) at every fixed capacity, of which the one validation picks is the yardstick;
- the plain Chow-Liu tree (Laplace count 1; `bench/clt_baseline.py`), the floor.

    python bench/small_data.py --data ../shared/data/debd --out small.jsonl     # runs (resumable)
    python bench/small_data.py --report small.jsonl                             # the markdown table

Every run appends one JSON line (set, rows, what, K, trees, valid, test, seconds, parameters);
runs already in --out are skipped, so an interrupted bench goes on where it stopped. A
subsample as large as the training split is the whole split (bbc has 1,670 rows: its 5,000 row
is skipped). The test split is never used to choose.
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
from pcc.data import load_debd  # noqa: E402
from pcc.structures.chow_liu import check_values, chow_liu  # noqa: E402
from pcc.train import evaluate  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from clt_baseline import LAPLACE, fit_tables, mean_log_likelihood  # noqa: E402

torch.set_num_threads(1)
SIZES = (500, 1600, 5000)
GRID = [(k, trees) for k in (4, 8, 16, 32) for trees in (1, 4)]
BASE = {"pseudocount": 0.1, "entropy": 0.0, "soften": 0.0}  # the grid's: the first candidate's


def subsample(train: np.ndarray, rows: int, seed: int) -> np.ndarray:
    """`rows` training rows drawn without replacement (seeded), in file order."""
    pick = np.random.default_rng(seed).choice(len(train), rows, replace=False)
    return train[np.sort(pick)]


def plain_tree(train: np.ndarray, splits) -> dict:
    values = {s: check_values(x, None) for s, x in (("train", train), ("valid", splits.valid),
                                                    ("test", splits.test))}
    c = int(max(int(v.max()) for v in values.values())) + 1
    tree = chow_liu(values["train"], LAPLACE)
    tables = fit_tables(values["train"], tree, c)
    return {s: mean_log_likelihood(values[s], tree, tables) for s in ("valid", "test")}


def hclt_run(train: np.ndarray, splits, k: int | None, trees: int | None, seed: int,
             budget: float | None) -> dict:
    start = time.perf_counter()
    circuit = pcc.structures.hclt(train, k=k, trees=trees, seed=seed)
    fixed = BASE if k is not None else {}
    model = pcc.fit(circuit, train, splits.valid, budget=budget, seed=seed, progress=False,
                    **fixed)
    choice = model.capacity or {}
    return {"k": choice.get("k", k), "trees": choice.get("trees", trees),
            **{f: choice.get(f, fixed.get(f)) for f in ("pseudocount", "entropy", "soften")},
            "valid": evaluate(model, splits.valid).mean, "test": evaluate(model, splits.test).mean,
            "seconds": round(time.perf_counter() - start, 1),
            "parameters": sum(p.numel() for p in model.parameters())}


def runs(args) -> None:
    done = set()
    if os.path.exists(args.out):
        for line in open(args.out):
            r = json.loads(line)
            done.add((r["set"], r["rows"], r["what"]))
    names = args.sets or sorted(d for d in os.listdir(args.data)
                                if os.path.isfile(os.path.join(args.data, d, f"{d}.train.data")))
    for name in names:
        splits = load_debd(name, args.data)
        for size in args.sizes:
            if size > len(splits.train):
                continue
            train = subsample(splits.train, size, args.seed)
            todo = [("clt", None, None), ("defaults", None, None)] + [
                (f"K={k} trees={t}", k, t) for k, t in GRID]
            for what, k, t in todo:
                if (name, size, what) in done:
                    continue
                row = {"set": name, "rows": size, "what": what}
                if what == "clt":
                    row.update(plain_tree(train, splits))
                else:
                    row.update(hclt_run(train, splits, k, t, args.seed, args.budget))
                print(json.dumps(row), flush=True)
                with open(args.out, "a") as f:
                    f.write(json.dumps(row) + "\n")


def report(path: str) -> str:
    rows = [json.loads(line) for line in open(path) if line.strip()]
    cases = sorted({(r["set"], r["rows"]) for r in rows})
    out = ["| set | train rows | plain CLT test | grid pick on valid (K, trees) | its valid / test | "
           "defaults: choice | defaults valid / test | defaults - grid pick (test) | "
           "defaults parameters | defaults seconds | grid seconds (8 runs) |",
           "|---|---:|---:|---|---:|---|---:|---:|---:|---:|---:|"]
    worst = []
    for name, size in cases:
        got = {r["what"]: r for r in rows if (r["set"], r["rows"]) == (name, size)}
        grid = [r for w, r in got.items() if w.startswith("K=")]
        if "defaults" not in got or "clt" not in got or len(grid) < len(GRID):
            continue
        pick, d, clt = max(grid, key=lambda r: r["valid"]), got["defaults"], got["clt"]
        gap = d["test"] - pick["test"]
        worst.append((gap, d["test"] - clt["test"], name, size))
        out.append(f"| {name} | {size:,} | {clt['test']:.3f} | K={pick['k']}, {pick['trees']} | "
                   f"{pick['valid']:.3f} / {pick['test']:.3f} | K={d['k']}, {d['trees']}, pc "
                   f"{d['pseudocount']:g}, entropy {d.get('entropy', 0):g}, soften {d['soften']:g} | {d['valid']:.3f} / "
                   f"**{d['test']:.3f}** | {gap:+.3f} | {d['parameters']:,} | {d['seconds']:.0f} | "
                   f"{sum(r['seconds'] for r in grid):.0f} |")
    if worst:
        gap, floor, name, size = min(worst)
        out.append("")
        out.append(f"Defaults minus the grid pick, on test: worst {gap:+.3f} ({name}, {size} "
                   f"rows); defaults minus the plain Chow-Liu tree: smallest "
                   f"{min(w[1] for w in worst):+.3f}.")
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="../shared/data/debd")
    parser.add_argument("--sets", nargs="+")
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--budget", type=float, help="pcc.fit's (default: its own)")
    parser.add_argument("--out", default="small_data.jsonl")
    parser.add_argument("--report", help="print the table from this JSON-lines file")
    args = parser.parse_args()
    if args.report:
        print(report(args.report))
        return 0
    runs(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
