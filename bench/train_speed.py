"""`pcc train` seconds per epoch, this code beside an earlier checkout, in one run.

    git worktree add /tmp/pcc-before 4ca9c35          # the code before the linear-space engine
    python bench/train_speed.py /tmp/pcc-before --data ../shared/data/debd [--sets bbc ...]

For each set: one HCLT mixture (`pcc structure hclt -k 32 --trees 4`, this code's generator, so
both train the same circuit), then `pcc train` of each checkout with the same settings, spelled
out so that a later change of defaults changes nothing here (data initialization, --epochs E
online epochs of 512 rows at step 0.2, pseudocount 0.1, --polish P full-batch iterations, one
member, one thread), the two runs in alternating order from set to set. Prints per set and
checkout the median seconds per online epoch and per full-batch iteration (from the --log
files) and the test log-likelihood, then the ratios before / now; --json writes them.

The earlier checkout runs from its source folder: its `kernels/` folder is linked as
`pcc_kernels` into a temporary folder put first on PYTHONPATH (what its editable install did).
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sidebyside import dump_json, machine  # noqa: E402

SETS = ("nltcs", "plants", "baudio", "jester", "accidents", "pumsb_star", "bbc")


def settings(epochs: int, polish: int) -> list[str]:
    return ["--init", "data", "--epochs", str(epochs), "--batch-size", "512", "--em-step", "0.2",
            "--pseudocount", "0.1", "--polish", str(polish), "--patience", str(epochs + 1),
            "--members", "1", "--threads", "1", "--quiet"]


# This code chooses the regularizers on validation unless they are given; the earlier code had
# none, so they are fixed at zero here and both run the same recipe.
FIXED_NOW = ["--entropy", "0", "--soften", "0"]


def environment(checkout: str | None, site: str) -> dict:
    """The environment a checkout's `python -m pcc.cli.main` runs in (None: this code)."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    if checkout is not None:
        link = os.path.join(site, "pcc_kernels")
        if not os.path.exists(link):
            os.symlink(os.path.join(os.path.abspath(checkout), "kernels"), link)
        env["PYTHONPATH"] = os.pathsep.join([site, os.path.abspath(checkout)])
    return env


def train(env: dict, circuit: str, base: str, out: str, options: list[str]) -> dict:
    command = [sys.executable, "-m", "pcc.cli.main", "train", circuit,
               "--train", f"{base}.train.data", "--valid", f"{base}.valid.data",
               "--test", f"{base}.test.data", "-o", f"{out}.pt", "--log", f"{out}.csv", *options]
    start = time.perf_counter()
    # run from the work folder: `python -m` puts the current folder first on sys.path
    done = subprocess.run(command, capture_output=True, text=True, env=env,
                          cwd=os.path.dirname(os.path.abspath(out)))
    if done.returncode != 0:
        sys.exit(f"train_speed.py: {' '.join(command)} failed:\n{done.stderr[-2000:]}")
    seconds = time.perf_counter() - start
    scores = dict(re.findall(r"(train|valid|test) (-?[\d.]+)",
                             (done.stdout + done.stderr).strip().splitlines()[-1]))
    with open(f"{out}.csv") as f:
        log = list(csv.DictReader(f))
    epochs = [float(r["seconds"]) for r in log if r["epoch"].isdigit() and r["seconds"]]
    polish = [float(r["seconds"]) for r in log if not r["epoch"].isdigit() and r["seconds"]]
    return {"seconds": round(seconds, 1),
            "epoch_seconds": round(statistics.median(epochs), 3) if epochs else None,
            "polish_seconds": round(statistics.median(polish), 3) if polish else None,
            "test": float(scores["test"]) if "test" in scores else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("before", help="a checkout of the earlier code (its source folder)")
    ap.add_argument("--data", default="../shared/data/debd")
    ap.add_argument("--sets", nargs="+", default=list(SETS))
    ap.add_argument("--epochs", type=int, default=2, help="online epochs timed per run")
    ap.add_argument("--polish", type=int, default=2, help="full-batch iterations per run")
    ap.add_argument("--work", help="folder for circuits, models and logs (default: a temp one)")
    ap.add_argument("--json")
    args = ap.parse_args()
    work = args.work or tempfile.mkdtemp(prefix="train_speed_")
    os.makedirs(work, exist_ok=True)
    site = tempfile.mkdtemp(prefix="train_speed_site_")
    envs = {"before": environment(args.before, site), "now": environment(None, site)}
    commit = subprocess.run(["git", "-C", args.before, "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip() or "unknown"
    options = settings(args.epochs, args.polish)
    results = {"machine": machine(), "before": commit, "settings": options, "sets": []}
    print(f"# {results['machine']}; before = {args.before} at {commit}")
    print(f"# pcc train {' '.join(options)}")
    print(f"{'set':>11} {'s/epoch before':>15} {'now':>7} {'ratio':>6} | "
          f"{'s/iter before':>13} {'now':>7} {'ratio':>6} | {'test before':>11} {'now':>9}")
    for i, name in enumerate(args.sets):
        base = os.path.join(args.data, name, name)
        circuit = os.path.join(work, f"{name}.pc")
        subprocess.run([sys.executable, "-m", "pcc.cli.main", "structure", "hclt", "--data",
                        f"{base}.train.data", "-k", "32", "--trees", "4", "-o", circuit],
                       check=True, capture_output=True, env=envs["now"], cwd=work)
        runs = {}
        for who in (("before", "now") if i % 2 == 0 else ("now", "before")):
            runs[who] = train(envs[who], circuit, base, os.path.join(work, f"{name}.{who}"),
                              options + (FIXED_NOW if who == "now" else []))
        b, n = runs["before"], runs["now"]
        print(f"{name:>11} {b['epoch_seconds']:>15.2f} {n['epoch_seconds']:>7.2f} "
              f"{b['epoch_seconds'] / n['epoch_seconds']:>5.2f}x | "
              f"{b['polish_seconds']:>13.2f} {n['polish_seconds']:>7.2f} "
              f"{b['polish_seconds'] / n['polish_seconds']:>5.2f}x | "
              f"{b['test']:>11.4f} {n['test']:>9.4f}", flush=True)
        results["sets"].append({"set": name, **runs})
    if args.json:
        dump_json(args.json, results)


if __name__ == "__main__":
    main()
