"""`pcc mpe MODEL --data D [-o FILE]`: complete every missing cell (NaN or ?) of a data file with
the max-product (MPE) state; print the completed rows (or write them with -o), and the mean
log-probability of the completed rows on stderr.

The completion is the exact most probable state for selective (deterministic) circuits and the
usual max-product approximation otherwise (for a hidden Markov model: Viterbi's most probable
hidden path and missing tokens together); the log-probabilities printed are exact. --marginals
also writes the posterior marginals p(x_v = s | the row's observed values) of every variable,
exact for any circuit, as an array [rows, variables, values] (.npy).
"""
from __future__ import annotations

import argparse
import sys

from .options import npy_file, output_file, positive_int
from .query_common import add_model_options

HELP = "complete missing values with the most probable state"
EXAMPLES = """examples (nltcs.pt: see `pcc train --help`):
  pcc mpe nltcs.pt --data data/nltcs/nltcs.missing.data                  # print the completed rows
  pcc mpe nltcs.pt --data data/nltcs/nltcs.missing.data -o completed.npy
  pcc mpe nltcs.pt --data data/nltcs/nltcs.missing.data --marginals posteriors.npy
"""


def register(sub) -> None:
    p = sub.add_parser("mpe", help=HELP, description=__doc__, epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_options(p)
    p.add_argument("--data", required=True, metavar="FILE",
                   help="rows to complete (debd text, CSV or .npy; NaN or ? = missing)")
    p.add_argument("-o", "--output", type=output_file,
                   help="write the completed rows: .npy, or CSV text (default: print them)")
    p.add_argument("--batch-size", type=positive_int, default=1000,
                   help="rows per upward and downward pass (default 1000)")
    p.add_argument("--marginals", type=npy_file, metavar="FILE.npy",
                   help="also write p(x_v = s | observed values) of every variable v and value s "
                        "as a float32 array [rows, variables, values] (NaN for continuous "
                        "variables)")
    p.set_defaults(run=run)


def run(args) -> int:
    import numpy as np
    import torch

    from ..queries import mpe, posterior_marginals
    from .common import load_rows
    from .query_common import load_query_model, write_rows
    model = load_query_model(args)
    rows = load_rows(args.data, model).x
    states, log_probs, marginals = [], [], []
    for start in range(0, len(rows), args.batch_size):
        batch = torch.from_numpy(rows[start: start + args.batch_size])
        s, lp = mpe(model, batch, args.root_unit)
        states.append(s.double().cpu())
        log_probs.append(lp.double().cpu())
        if args.marginals:
            marginals.append(posterior_marginals(model, batch, args.root_unit).float().cpu())
    completed = torch.cat(states).numpy()
    log_prob = torch.cat(log_probs)
    write_rows(args.output or "-", completed)
    if args.output:
        print(f"wrote {args.output}", file=sys.stderr)
    if args.marginals:
        write_rows(args.marginals, torch.cat(marginals).numpy())
        print(f"wrote {args.marginals}", file=sys.stderr)
    missing = int(np.isnan(rows).sum())
    print(f"completed {missing} missing values in {len(rows)} rows; mean log-probability of the "
          f"completed rows: {float(log_prob.mean()):.4f}", file=sys.stderr)
    return 0
