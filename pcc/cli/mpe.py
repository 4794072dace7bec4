"""`pcc mpe MODEL --data D [-o FILE]`: complete every missing cell (NaN or ?) of a data file with
the max-product (MPE) state, and print the mean log-probability of the completed rows.

The completion is the exact most probable state for selective (deterministic) circuits and the
usual max-product approximation otherwise; the log-probabilities printed are exact.
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

from ..errors import PcError
from .query_common import add_model_options

EXAMPLES = """examples:
  pcc mpe nltcs.pt --data with_missing.data -o completed.data
  pcc mpe digits.pt --data digits_masked.npy -o digits_completed.npy
"""


def register(sub) -> None:
    p = sub.add_parser("mpe", help="complete missing values with the most probable state",
                       description=__doc__, epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_options(p)
    p.add_argument("--data", required=True, help="rows to complete (debd text, CSV or .npy)")
    p.add_argument("-o", "--output", help="write the completed rows: .npy, or CSV text")
    p.add_argument("--batch-size", type=int, default=1000)
    p.set_defaults(run=run)


def run(args) -> int:
    from ..queries import mpe
    from .common import load_rows
    from .query_common import load_query_model, write_rows
    if args.batch_size < 1:
        raise PcError(f"--batch-size must be at least 1, got {args.batch_size}")
    model = load_query_model(args)
    rows = load_rows(args.data, model)
    states, log_probs = [], []
    for start in range(0, len(rows), args.batch_size):
        batch = torch.from_numpy(rows[start: start + args.batch_size])
        s, lp = mpe(model, batch, args.root_unit)
        states.append(s.double().cpu())
        log_probs.append(lp.double().cpu())
    completed = torch.cat(states).numpy()
    log_prob = torch.cat(log_probs)
    if args.output:
        write_rows(args.output, completed)
        print(f"wrote {args.output}")
    missing = int(np.isnan(rows).sum())
    print(f"completed {missing} missing values in {len(rows)} rows; mean log-probability of the "
          f"completed rows: {float(log_prob.mean()):.4f}")
    return 0
