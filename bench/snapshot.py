"""What training snapshots cost (`pcc train --snapshot-every`, `pcc.snapshot`): on bbc, the HCLT
`pcc structure hclt` builds (K=32, 4 trees), trained with its recipe (batch 512) for a few online
epochs twice in one process: once without snapshots (the epoch time), once with a snapshot every
`--every` seconds (each mid-epoch: the parameters, EM's running statistics and the best epoch's
copy). Prints the time per snapshot, its share of an epoch, the overhead at the default interval
(one snapshot per DEFAULT_EVERY seconds of training) and what the fingerprint of a run (content
hashes of the circuit, the parameters and the data files, once per `pcc train`) takes.

    python bench/snapshot.py --data ../shared/data/debd/bbc [--epochs 2] [--every 2] [--threads 1]

One JSON line per run is also appended to --out.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

import numpy as np
import torch

from pcc.compiler import compile as compile_circuit
from pcc.snapshot import DEFAULT_EVERY, Snapshots, circuit_hash, file_hash, parameters_hash
from pcc.structures import hidden_chow_liu_tree
from pcc.train import TrainConfig, fit


def load(path: str) -> np.ndarray:
    return np.loadtxt(path, delimiter=",", dtype=np.float32)


def online_epochs(circuit, train, valid, epochs: int, snapshots) -> list[float]:
    """Seconds of each online epoch (snapshot writes inside them included)."""
    model = compile_circuit(circuit, seed=0)
    history = fit(model, train, valid, TrainConfig(epochs=epochs, polish=0, members=1),
                  progress=False, snapshots=snapshots)
    return [r["seconds"] for r in history.epochs]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="../shared/data/debd/bbc")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--every", type=float, default=2.0,
                        help="seconds between snapshots in the timed run")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="bench_snapshot.jsonl")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    name = os.path.basename(os.path.normpath(args.data))
    paths = {s: os.path.join(args.data, f"{name}.{s}.data") for s in ("train", "valid")}
    train, valid = load(paths["train"]), load(paths["valid"])
    circuit = hidden_chow_liu_tree(train)

    started = time.perf_counter()
    model = compile_circuit(circuit, seed=0)
    hashes = [circuit_hash(circuit), parameters_hash(model), file_hash(paths["train"]),
              file_hash(paths["valid"])]
    fingerprint_s = time.perf_counter() - started
    parameters = sum(p.numel() for p in model.parameters())

    plain = online_epochs(circuit, train, valid, args.epochs, None)
    with tempfile.TemporaryDirectory() as folder:
        snapshots = Snapshots(os.path.join(folder, "m.pt.state"), every=args.every,
                              fingerprint=dict(enumerate(hashes)), say=print)
        timed = online_epochs(circuit, train, valid, args.epochs, snapshots)
    if not snapshots.seconds:
        sys.exit("no snapshot was written: give a smaller --every or more --epochs")
    per_snapshot = statistics.median(snapshots.seconds)
    epoch = statistics.median(plain)
    result = {"set": name, "parameters": parameters, "threads": args.threads,
              "torch": torch.__version__, "snapshots": len(snapshots.seconds),
              "snapshot_bytes": snapshots.bytes, "seconds_per_snapshot": round(per_snapshot, 4),
              "slowest_snapshot": round(max(snapshots.seconds), 4),
              "seconds_per_epoch": round(epoch, 3),
              "epochs_with_snapshots": [round(s, 3) for s in timed],
              "share_of_epoch": round(per_snapshot / epoch, 4),
              "overhead_at_default_interval": round(per_snapshot / DEFAULT_EVERY, 6),
              "fingerprint_seconds": round(fingerprint_s, 3)}
    print(f"{name}: {parameters:,} parameters; a snapshot ({snapshots.bytes / 2**20:.1f} MiB) "
          f"takes {per_snapshot:.3f} s (median of {len(snapshots.seconds)}, slowest "
          f"{max(snapshots.seconds):.3f} s) = {100 * per_snapshot / epoch:.2f}% of an online "
          f"epoch ({epoch:.2f} s, median of {len(plain)} without snapshots; "
          f"{statistics.median(timed):.2f} s with one every {args.every:g} s); at the default "
          f"interval ({DEFAULT_EVERY:g} s) {100 * per_snapshot / DEFAULT_EVERY:.3f}% of training "
          f"time; the run's fingerprint {fingerprint_s:.3f} s once")
    with open(args.out, "a") as f:
        f.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
