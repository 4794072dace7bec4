"""`pcc eval model.pt --data D`: mean test log-likelihood of a trained model."""
from __future__ import annotations

import argparse

EXAMPLES = """examples:
  pcc eval nltcs.pt --data data/nltcs/nltcs.test.data
"""


def register(sub) -> None:
    p = sub.add_parser("eval", help="mean log-likelihood of a model on a data set",
                       description=__doc__, epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="a checkpoint (.pt) or a .pc circuit")
    p.add_argument("--data", required=True, help="data (debd text, CSV, or .npy); NaN/? = missing")
    p.add_argument("--batch-size", type=int, default=1000)
    p.add_argument("--device", default="cpu")
    p.set_defaults(run=run)


def run(args) -> int:
    from ..train import evaluate
    from .common import load_model, load_rows
    model = load_model(args.model).to(args.device)
    score = evaluate(model, load_rows(args.data, model), args.batch_size)
    print(f"mean log-likelihood: {score}")
    return 0
