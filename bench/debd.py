"""Train RAT circuits by EM on the debd data sets; tune on the validation split only.

    python bench/debd.py --data ../shared/data/debd --sets nltcs plants \
        --depth 3 4 --replicas 10 20 --k 10 20 --step 0.1 0.2 --members 1 4 --out runs.jsonl
    python bench/debd.py --report runs.jsonl ...      # best config per set (by valid), as markdown

Every run appends one JSON line: the configuration, the epoch with the best validation mean
log-likelihood, and train/valid/test mean log-likelihoods of the model at that epoch. The test
split is never used to choose anything.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

import pcc  # noqa: E402
from pcc.data import load_debd  # noqa: E402
from pcc.structures import random_binary_trees  # noqa: E402
from pcc.train import TrainConfig, evaluate, fit_members  # noqa: E402

torch.set_num_threads(1)

# Einsum Networks test log-likelihoods as commonly cited (the targets of docs/results.md).
TARGETS = {"nltcs": -6.02, "plants": -13.68, "baudio": -39.88, "jester": -52.56,
           "accidents": -35.59, "pumsb_star": -31.95, "bbc": -248.33}


def run(name: str, splits, depth: int, replicas: int, k: int, config: TrainConfig,
        seed: int) -> dict:
    circuit = random_binary_trees(splits.train.shape[1], depth=depth, replicas=replicas, k=k,
                                  seed=seed)
    model = pcc.compile(circuit, backend="torch", seed=seed)
    start = time.perf_counter()
    model, histories = fit_members(model, splits.train, splits.valid, config, progress=False)
    seconds = time.perf_counter() - start
    return {"set": name, "depth": depth, "replicas": replicas, "k": k, "seed": seed,
            **config.__dict__, "best_epoch": histories[0].best_epoch,
            "member_best_epochs": [h.best_epoch for h in histories],
            "epochs_run": len(histories[0].epochs), "seconds": round(seconds, 1),
            "train": evaluate(model, splits.train).mean, "valid": evaluate(model, splits.valid).mean,
            "test": evaluate(model, splits.test).mean,
            "parameters": sum(p.numel() for p in model.parameters())}


def report(paths: list[str]) -> str:
    rows = [json.loads(line) for path in paths for line in open(path) if line.strip()]
    best = {}
    for r in rows:
        if r["set"] not in best or r["valid"] > best[r["set"]]["valid"]:
            best[r["set"]] = r
    out = ["| set | depth | replicas | K | members | EM step | batch | epochs | valid | test | EiNet "
           "| gap |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name in TARGETS:
        if name in best:
            r = best[name]
            out.append(f"| {name} | {r['depth']} | {r['replicas']} | {r['k']} "
                       f"| {r.get('members', 1)} | {r['step_size']} "
                       f"| {r['batch_size']} | {_epochs(r)} | {r['valid']:.2f} | "
                       f"{r['test']:.2f} | {TARGETS[name]:.2f} | {r['test'] - TARGETS[name]:+.2f} |")
    out += ["", "All runs (chosen by valid; test shown for information only):", "",
            "| set | depth | replicas | K | members | EM step | pseudocount | best epoch / run "
            "| seconds | train | valid | test |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in sorted(rows, key=lambda r: (list(TARGETS).index(r["set"]), -r["valid"])):
        out.append(f"| {r['set']} | {r['depth']} | {r['replicas']} | {r['k']} "
                   f"| {r.get('members', 1)} | {r['step_size']} "
                   f"| {r['pseudocount']} | {_epochs(r)} / {r['epochs_run']} | "
                   f"{r['seconds']:.0f} | {r['train']:.2f} | {r['valid']:.2f} | {r['test']:.2f} |")
    return "\n".join(out)


def _epochs(run: dict) -> str:
    """The best epoch of each member, e.g. '3' or '3,5,2,4'."""
    return ",".join(str(e) for e in run.get("member_best_epochs", [run["best_epoch"]]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="../shared/data/debd")
    ap.add_argument("--sets", nargs="+", default=list(TARGETS))
    ap.add_argument("--depth", type=int, nargs="+", default=[3])
    ap.add_argument("--replicas", type=int, nargs="+", default=[10])
    ap.add_argument("--k", type=int, nargs="+", default=[10])
    ap.add_argument("--step", type=float, nargs="+", default=[TrainConfig.step_size])
    ap.add_argument("--batch-size", type=int, nargs="+", default=[TrainConfig.batch_size])
    ap.add_argument("--pseudocount", type=float, nargs="+", default=[TrainConfig.pseudocount])
    ap.add_argument("--epochs", type=int, default=TrainConfig.epochs)
    ap.add_argument("--patience", type=int, default=TrainConfig.patience)
    ap.add_argument("--polish", type=int, default=TrainConfig.polish)
    ap.add_argument("--members", type=int, nargs="+", default=[TrainConfig.members])
    ap.add_argument("--seed", type=int, nargs="+", default=[0])
    ap.add_argument("--out", default="debd_runs.jsonl")
    ap.add_argument("--report", nargs="+", help="print the best configuration per set (and all "
                    "runs) from these JSON-lines files")
    args = ap.parse_args()
    if args.report:
        print(report(args.report))
        return
    for name in args.sets:
        splits = load_debd(name, args.data)
        for depth, reps, k, step, bs, pc, members, seed in itertools.product(
                args.depth, args.replicas, args.k, args.step, args.batch_size, args.pseudocount,
                args.members, args.seed):
            config = TrainConfig(epochs=args.epochs, batch_size=bs, step_size=step, pseudocount=pc,
                                 patience=args.patience, polish=args.polish, seed=seed,
                                 members=members)
            result = run(name, splits, depth, reps, k, config, seed)
            print(json.dumps(result), flush=True)
            with open(args.out, "a") as f:
                f.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
