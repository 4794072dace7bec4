"""`pcc train FILE --train T [--valid V] [--test S] -o model.pt`: learn parameters by EM.

FILE is a .pc circuit (parameters initialized randomly unless the file gives them) or a
checkpoint to continue training. Online EM over shuffled mini-batches; after each epoch the
validation log-likelihood decides early stopping; then a few full-batch EM iterations polish the
best epoch's model while validation improves, and the result is saved. With --members N, N
copies are trained so (the first from FILE, the others initialized with seeds seed+1..) and saved
as one circuit that mixes them uniformly: an ensemble, which over-fits less than one big model.
"""
from __future__ import annotations

import argparse

from ..train import TrainConfig
from .common import is_checkpoint, positive_int

D = TrainConfig()
EXAMPLES = f"""examples:
  pcc structure rat --vars 16 -o nltcs.pc
  pcc train nltcs.pc --train data/nltcs/nltcs.train.data --valid data/nltcs/nltcs.valid.data \\
            --test data/nltcs/nltcs.test.data -o nltcs.pt

defaults: --epochs {D.epochs} --batch-size {D.batch_size} --em-step {D.step_size} \
--pseudocount {D.pseudocount} --patience {D.patience} --polish {D.polish} \
--members {D.members} (1 when FILE is a checkpoint)
"""


def register(sub) -> None:
    p = sub.add_parser("train", help="train a circuit by EM on a data set",
                       description=__doc__, epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("file", help="a .pc circuit or a checkpoint (.pt) to continue")
    p.add_argument("--train", required=True, help="training data (debd text, CSV, or .npy)")
    p.add_argument("--valid", help="validation data (early stopping)")
    p.add_argument("--test", help="test data (reported at the end)")
    p.add_argument("-o", "--output", required=True, help="checkpoint to write")
    p.add_argument("--epochs", type=positive_int, default=D.epochs)
    p.add_argument("--batch-size", type=positive_int, default=D.batch_size)
    p.add_argument("--em-step", type=float, default=D.step_size, help="online EM step size")
    p.add_argument("--pseudocount", type=float, default=D.pseudocount)
    p.add_argument("--patience", type=int, default=D.patience,
                   help="epochs without validation improvement before stopping")
    p.add_argument("--polish", type=int, default=D.polish,
                   help="full-batch EM iterations at the end, while validation improves")
    p.add_argument("--members", type=positive_int,
                   help="train this many copies and save their uniform mixture (an ensemble; "
                   f"default {D.members} for a .pc file, 1 to continue a checkpoint)")
    p.add_argument("--seed", type=int, default=D.seed)
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def run(args) -> int:
    from .. import checkpoint
    from ..train import evaluate, fit_members
    from .common import load_model, load_rows
    model = load_model(args.file, seed=args.seed).to(args.device)
    members = args.members or (1 if is_checkpoint(args.file) else D.members)
    splits = {name: load_rows(path, model) for name, path in
              (("train", args.train), ("valid", args.valid), ("test", args.test)) if path}
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, step_size=args.em_step,
                         pseudocount=args.pseudocount, patience=args.patience,
                         polish=args.polish, seed=args.seed, members=members)
    model, histories = fit_members(model, splits["train"], splits.get("valid"), config,
                                   progress=not args.quiet)
    scores = {name: evaluate(model, rows) for name, rows in splits.items()}
    best = [h.best_epoch for h in histories]
    checkpoint.save(model, args.output, {"train": vars_of(config), "best_epoch": best[0],
                                         "member_best_epochs": best,
                                         **{f"{k}_ll": s.mean for k, s in scores.items()}})
    print(f"best epoch {', '.join(map(str, best))}; wrote {args.output}")
    print("mean log-likelihood: " + ", ".join(f"{k} {s.mean:.4f}" for k, s in scores.items()))
    return 0


def vars_of(config: TrainConfig) -> dict:
    return dict(config.__dict__)
