"""What the query commands (sample, inpaint, mpe) share: options, the model, output rows, and the
value range pictures map to black..white."""
from __future__ import annotations

import io
import math
import sys

import numpy as np

from ..errors import PcError
from ..files import write_atomically
from .options import add_device, non_negative_int


def add_model_options(p) -> None:
    p.add_argument("model", help="a checkpoint (.pt), or a .pc circuit (its parameters, if the "
                                 "file gives none, are random)")
    p.add_argument("--root-unit", type=non_negative_int, metavar="U",
                   help="for a root with K > 1 units (e.g. one density per class): which unit")
    p.add_argument("--seed", type=non_negative_int, default=0, help="random seed (default 0)")
    add_device(p)


def load_query_model(args):
    """The model of `args.model` on `args.device`, with `--root-unit` checked against its root."""
    from .common import check_root_unit, load_model
    model = load_model(args.model, seed=args.seed, device=args.device)
    k = model.root_k
    if args.root_unit is None and k > 1:
        raise PcError(f"the model's root has {k} units (one density per class?): choose one "
                      f"with --root-unit 0..{k - 1}")
    check_root_unit(model, args.root_unit)
    return model


def generator(args, model):
    import torch
    return torch.Generator(model.var_max.device).manual_seed(args.seed)


def value_range(model, rows: np.ndarray) -> tuple[float, float]:
    """0..the largest value of the leaf supports when all are discrete, else the rows' range."""
    top = float(model.var_max.max())
    if math.isfinite(top):
        return 0.0, top
    finite = rows[np.isfinite(rows)]
    return (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)


def write_rows(path: str, rows: np.ndarray) -> None:
    """Rows to `.npy`, or to comma-separated text (integers when every value is one); `-`:
    comma-separated text on stdout."""
    if path.endswith(".npy"):
        write = lambda f: np.save(f, rows)  # noqa: E731
    else:
        text = rows_as_text(rows)
        if path == "-":
            sys.stdout.write(text)
            return
        write = lambda f: f.write(text.encode())  # noqa: E731
    write_atomically(path, write)


def rows_as_text(rows: np.ndarray) -> str:
    """Comma-separated rows, integers written as such."""
    integral = bool(np.all(rows == np.round(rows)))
    text = io.StringIO()
    np.savetxt(text, rows, fmt="%d" if integral else "%.9g", delimiter=",")
    return text.getvalue()
