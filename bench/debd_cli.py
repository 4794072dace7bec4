"""The debd sets through the command line with its defaults, exactly as a user runs them:

    pcc structure hclt --data NAME.train.data -o NAME.pc
    pcc train NAME.pc --train NAME.train.data --valid NAME.valid.data --test NAME.test.data \\
        -o NAME.pt --log NAME.csv

    python bench/debd_cli.py --data ../shared/data/debd --work /tmp/debd [--sets nltcs ...]
    python bench/debd_cli.py --report debd_cli.jsonl     # the markdown table (last run per set)

Prints and appends one JSON line per set (to --out): wall seconds of each command, the number of
parameters of the trained model and the capacity `pcc train` chose (from the checkpoint), the
median seconds per pass (from the --log file), and the train / valid / test mean
log-likelihoods `pcc train` printed. Extra options after `--` go to `pcc train`.
"""
from __future__ import annotations

import argparse
import csv
import json
import re
import os
import statistics
import subprocess
import sys
import time

SETS = ("nltcs", "plants", "baudio", "jester", "accidents", "pumsb_star", "bbc")
# held out: debd sets not in ../shared/data, for checking the defaults on data they were not
# made on (the public UCLA-StarAI/Density-Estimation-Datasets repository has them; --sets dna)
HELD_OUT = ("dna", "bnetflix")
# the published HCLT (Liu & Van den Broeck 2021, the mean of its 5 seeds' logs; docs/results.md)
HCLT = {"nltcs": -6.00, "plants": -14.26, "baudio": -39.77, "jester": -52.46,
        "accidents": -26.74, "pumsb_star": -23.65, "bbc": -251.05, "dna": -79.06,
        "bnetflix": -56.28}


def timed(command: list[str]) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    return time.perf_counter() - start, done.stdout + done.stderr


def run(name: str, data: str, work: str, extra: list[str]) -> dict:
    base, out = os.path.join(data, name, name), os.path.join(work, name)
    structure_s, _ = timed(["pcc", "structure", "hclt", "--data", f"{base}.train.data",
                            "-o", f"{out}.pc"])
    train_s, text = timed(["pcc", "train", f"{out}.pc", "--train", f"{base}.train.data",
                           "--valid", f"{base}.valid.data", "--test", f"{base}.test.data",
                           "-o", f"{out}.pt", "--log", f"{out}.csv", "--quiet", *extra])
    scores = dict(re.findall(r"(train|valid|test) (-?[\d.]+)", text.splitlines()[-1]))
    from pcc import checkpoint
    model, meta = checkpoint.load(f"{out}.pt")
    parameters = sum(p.numel() for p in model.parameters())
    capacity = {k: v for k, v in (meta.get("capacity") or {}).items() if k != "candidates"}
    with open(f"{out}.csv") as f:
        log = list(csv.DictReader(f))
    epochs = [float(r["seconds"]) for r in log if r["epoch"].isdigit()]
    polish = [float(r["seconds"]) for r in log if not r["epoch"].isdigit()]
    return {"set": name, "structure_seconds": round(structure_s, 1),
            "train_seconds": round(train_s, 1), "parameters": parameters, "capacity": capacity,
            "epochs": len(epochs), "polish": len(polish),
            "seconds_per_epoch": round(statistics.median(epochs + polish), 2),
            **{k: float(v) for k, v in scores.items()}, "extra": extra}


def report(path: str) -> str:
    """Markdown: the last run of each set, with the capacity chosen and the published HCLT."""
    from pcc.search import label  # the capacity as pcc train prints it
    last = {}
    for line in open(path):
        if line.strip():
            row = json.loads(line)
            last[row["set"]] = row
    out = ["| set | chosen on validation | parameters | `pcc structure` s | `pcc train` s | "
           "s/pass | epochs + full-batch (all candidates) | valid | test | published HCLT | "
           "test - HCLT |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name in SETS + HELD_OUT:
        if name not in last:
            continue
        r, c = last[name], last[name].get("capacity") or {}
        chosen = label(c) if c else "-"
        out.append(f"| {name} | {chosen} | {r['parameters']:,} | {r['structure_seconds']} | "
                   f"{r['train_seconds']:.0f} | {r['seconds_per_epoch']} | {r['epochs']} + "
                   f"{r['polish']} | {r['valid']:.3f} | **{r['test']:.3f}** | {HCLT[name]:.2f} | "
                   f"{r['test'] - HCLT[name]:+.3f} |")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="../shared/data/debd")
    parser.add_argument("--work", default="debd_cli", help="folder for the .pc, .pt and logs")
    parser.add_argument("--sets", nargs="+", default=list(SETS))
    parser.add_argument("--out", default="debd_cli.jsonl")
    parser.add_argument("--report", help="print the table of the runs in this JSON-lines file")
    parser.add_argument("extra", nargs="*", help="options for pcc train (after --)")
    args = parser.parse_args()
    if args.report:
        print(report(args.report))
        return
    os.makedirs(args.work, exist_ok=True)
    for name in args.sets:
        row = run(name, args.data, args.work, args.extra)
        print(json.dumps(row), flush=True)
        with open(args.out, "a") as f:
            f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
