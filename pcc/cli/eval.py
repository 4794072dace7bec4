"""`pcc eval MODEL --data D`: mean log-likelihood of a model on a data set, with its standard error.

For a circuit whose root has K > 1 units (e.g. one density per class), every unit's density is
scored (or the one --root-unit names); with --label-column, each row by its own class's unit,
log p(x | y).

The data are read in pieces (a file larger than memory is fine). Launched by torchrun, every rank
scores its share of the rows and rank 0 prints the totals (docs/distributed.md).
"""
from __future__ import annotations

import argparse

from ..errors import PcError
from .options import add_device, add_timeout, column, non_negative_int, positive_int

HELP = "mean log-likelihood of a model on a data set"
EXAMPLES = """examples (nltcs.pt and by_x0.pt: see `pcc train --help`):
  pcc eval nltcs.pt --data data/nltcs/nltcs.test.data
  pcc eval by_x0.pt --data data/nltcs/nltcs.test.data --label-column 1   # log p(x | class x0)

Output: `mean log-likelihood: <mean> ± <standard error> (<N> rows)`, one line per root unit
(`... of root unit U: ...`) when the root has several.
"""


def register(sub) -> None:
    p = sub.add_parser("eval", help=HELP, description=__doc__, epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="a checkpoint (.pt) or a .pc circuit")
    p.add_argument("--data", required=True, metavar="FILE",
                   help="data (debd text, CSV, or .npy); NaN or ? = missing")
    p.add_argument("--batch-size", type=positive_int, default=1000,
                   help="rows evaluated at once (default 1000)")
    p.add_argument("--root-unit", type=non_negative_int, metavar="U",
                   help="score only this unit of a root with K > 1 units")
    p.add_argument("--label-column", type=column, metavar="NAME|N",
                   help="the data column holding each row's class (its root unit), by header "
                        "name or position from 1: score log p(x | class)")
    add_device(p)
    add_timeout(p)
    p.set_defaults(run=run)


def run(args) -> int:
    from .. import distributed
    if args.root_unit is not None and args.label_column is not None:
        raise PcError("give --root-unit or --label-column, not both")
    with distributed.session(args.device, args.timeout) as group:
        lines = _scores(args, group)
    if group is None or group.is_main:
        print("\n".join(lines))
    return 0


def _scores(args, group) -> list[str]:
    """The output lines; every rank scores its share of the rows and the sums are totalled."""
    from ..distributed import together
    from ..train import evaluate, evaluate_units
    from .common import check_root_unit, load_model, open_rows

    def load():
        model = load_model(args.model, device=args.device if group is None else group.device)
        check_root_unit(model, args.root_unit)
        return model, open_rows(args.data, model, args.label_column, group)
    model, rows = together(group, load)
    with rows:
        if rows.labeled:
            score = evaluate(model, rows, args.batch_size)
            return [f"mean log-likelihood given the label: {score}"]
        scores = evaluate_units(model, rows, args.batch_size)
    if len(scores) == 1:
        return [f"mean log-likelihood: {scores[0]}"]
    return [f"mean log-likelihood of root unit {unit}: {score}"
            for unit, score in enumerate(scores) if args.root_unit in (None, unit)]
