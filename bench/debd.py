"""Train circuits by EM on the debd data sets; choose on the validation split only.

    python bench/debd.py --data ../shared/data/debd --out runs.jsonl            # the CLI defaults
    python bench/debd.py --data ../shared/data/debd --sets accidents --k 16 32 --trees 1 4
    python bench/debd.py --data ../shared/data/debd --structure rat --depth 3 --replicas 20 --k 10
    python bench/debd.py --report runs.jsonl ... [--floor clt.json]   # best run per set, markdown

The structure is `pcc structure hclt` (default; --k, --trees) or `pcc structure rat` (--depth,
--replicas, --k); training is `pcc train`'s: every option left out comes from the recipe for the
circuit (`pcc.train.recipe_for`), as on the command line. Every run appends one JSON line: the
structure, the resolved training settings, parameters, wall time and seconds per epoch, the best
epoch, and train/valid/test mean log-likelihoods. The test split is never used to choose.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import time
from dataclasses import asdict

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

import pcc  # noqa: E402
from pcc.data import load_debd  # noqa: E402
from pcc.structures import hidden_chow_liu_tree, random_binary_trees  # noqa: E402
from pcc.members import fit_members  # noqa: E402
from pcc.train import TrainConfig, evaluate  # noqa: E402

torch.set_num_threads(1)

# Published test log-likelihoods the results are compared with (docs/results.md says where they
# come from): HCLT, Liu & Van den Broeck (NeurIPS 2021), the mean of its 5 seeds' logs.
HCLT = {"nltcs": -6.00, "plants": -14.26, "baudio": -39.77, "jester": -52.46,
        "accidents": -26.74, "pumsb_star": -23.65, "bbc": -251.05}
SETS = list(HCLT)


def structure(kind: str, train, k: int, trees: int, depth: int, replicas: int, seed: int):
    if kind == "hclt":
        return hidden_chow_liu_tree(train.astype("int64"), k=k, trees=trees, seed=seed)
    return random_binary_trees(train.shape[1], depth=depth, replicas=replicas, k=k, seed=seed)


def run(name: str, splits, kind: str, k: int, trees: int, depth: int, replicas: int,
        config: TrainConfig) -> dict:
    start = time.perf_counter()
    circuit = structure(kind, splits.train, k, trees, depth, replicas, config.seed)
    model = pcc.compile(circuit, backend="torch", seed=config.seed)
    config = config.resolved(circuit, model.plan, len(splits.train))
    epochs: list[dict] = []
    model, histories = fit_members(model, splits.train, splits.valid, config, progress=False,
                                   on_epoch=epochs.append)
    seconds = time.perf_counter() - start
    shape = {"k": k, **({"trees": trees} if kind == "hclt" else
                        {"depth": depth, "replicas": replicas})}
    return {"set": name, "structure": kind, **shape, **asdict(config),
            "best_epoch": [h.best_epoch for h in histories],
            "epochs_run": sum(isinstance(r["epoch"], int) for r in epochs),
            "polish_run": sum(not isinstance(r["epoch"], int) for r in epochs),
            "seconds_per_epoch": round(statistics.median(r["seconds"] for r in epochs), 2),
            "seconds": round(seconds, 1),
            "parameters": sum(p.numel() for p in model.parameters()),
            **{s: evaluate(model, getattr(splits, s)).mean for s in ("train", "valid", "test")}}


def report(paths: list[str], floor: str | None = None) -> str:
    """Markdown: the best run per set by validation, with the plain Chow-Liu tree's test score
    (`floor`: the --json of bench/clt_baseline.py) and the published numbers; then every run."""
    rows = [json.loads(line) for path in paths for line in open(path) if line.strip()]
    clt = {r["set"]: r["test_ll"] for r in json.load(open(floor))} if floor else {}
    best = {}
    for r in rows:
        if r["set"] not in best or r["valid"] > best[r["set"]]["valid"]:
            best[r["set"]] = r
    out = ["| set | structure | members | parameters | s/epoch | seconds | valid | test | "
           "plain CLT | HCLT |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name in SETS:
        if name in best:
            r = best[name]
            floor_text = f"{clt[name]:.2f}" if name in clt else "-"
            out.append(f"| {name} | {_shape(r)} | {r['members']} | {r['parameters']:,} | "
                       f"{r['seconds_per_epoch']} | {r['seconds']:.0f} | {r['valid']:.2f} | "
                       f"{r['test']:.2f} | {floor_text} | {HCLT[name]:.2f} |")
    out += ["", "All runs (chosen by valid; test for information only):", "",
            "| set | structure | members | step | batch | pseudocount | epochs + polish | "
            "seconds | train | valid | test |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in sorted(rows, key=lambda r: (SETS.index(r["set"]), -r["valid"])):
        out.append(f"| {r['set']} | {_shape(r)} | {r['members']} | {r['step_size']} | "
                   f"{r['batch_size']} | {r['pseudocount']} | {r['epochs_run']} + "
                   f"{r['polish_run']} | {r['seconds']:.0f} | {r['train']:.2f} | "
                   f"{r['valid']:.2f} | {r['test']:.2f} |")
    return "\n".join(out)


def _shape(r: dict) -> str:
    if r["structure"] == "hclt":
        return f"HCLT K={r['k']}" + (f" x{r['trees']} trees" if r["trees"] > 1 else "")
    return f"RAT D{r['depth']} R{r['replicas']} K{r['k']}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="../shared/data/debd")
    ap.add_argument("--sets", nargs="+", default=SETS)
    ap.add_argument("--structure", choices=("hclt", "rat"), default="hclt")
    ap.add_argument("--k", type=int, nargs="+")
    ap.add_argument("--trees", type=int, nargs="+", help="HCLT: trees in the mixture "
                    "(default: pcc structure hclt's)")
    ap.add_argument("--depth", type=int, nargs="+", default=[3])
    ap.add_argument("--replicas", type=int, nargs="+", default=[20])
    for option, kind in (("step", float), ("batch-size", int), ("pseudocount", float),
                         ("epochs", int), ("patience", int), ("polish", int), ("members", int)):
        ap.add_argument(f"--{option}", type=kind, nargs="+", default=[None],
                        help="default: the recipe for the circuit")
    ap.add_argument("--seed", type=int, nargs="+", default=[0])
    ap.add_argument("--out", default="debd_runs.jsonl")
    ap.add_argument("--report", nargs="+", help="print the best run per set (and all runs) "
                    "from these JSON-lines files")
    ap.add_argument("--floor", help="with --report: the JSON bench/clt_baseline.py --json wrote")
    args = ap.parse_args()
    if args.report:
        print(report(args.report, args.floor))
        return
    from pcc.structures import defaults
    ks = args.k or [defaults.HCLT_K if args.structure == "hclt" else defaults.K]
    args.trees = args.trees or [defaults.HCLT_TREES]
    for name in args.sets:
        splits = load_debd(name, args.data)
        for (k, trees, depth, replicas, step, batch, pc, epochs, patience, polish, members,
             seed) in itertools.product(ks, args.trees, args.depth, args.replicas, args.step,
                                        args.batch_size, args.pseudocount, args.epochs,
                                        args.patience, args.polish, args.members, args.seed):
            config = TrainConfig(epochs=epochs, batch_size=batch, step_size=step,
                                 pseudocount=pc, patience=patience, polish=polish, seed=seed,
                                 members=members)
            result = run(name, splits, args.structure, k, trees, depth, replicas, config)
            print(json.dumps(result), flush=True)
            with open(args.out, "a") as f:
                f.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
