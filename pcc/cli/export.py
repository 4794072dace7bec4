"""`pcc export MODEL -o FILE [--format psdd|jpc|spflow] [--root-unit N]`: write a model in
another tool's format.

MODEL is a checkpoint (.pt) or a circuit file (.pc, or any format `pcc import` reads); its
parameters come from the model (`CompiledCircuit.ir_params()`), those a circuit file gives
inline taken exactly as written. jpc and spflow hold circuits of any K: a region with K units
becomes K nodes, its outer (a * b) and element-wise (a .* b) products one product node per
term, and the mixing is folded into one sum node per unit (docs/interchange.md gives the node
count and the size limit). psdd needs K = 1 below the root. A root with K > 1 holds K
densities: --root-unit picks the one to write. pcc says why a circuit does not fit.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys

from ..errors import PcError
from ..files import write_text
from .options import non_negative_int, output_file

HELP = "write a model as a PSDD, Juice .jpc or SPFlow text file (any K: units become nodes)"
EXAMPLES = """examples (little.pc: see `pcc import --help`; rat16.pt: `pcc compile --help`):
  pcc export little.pc -o little_copy.jpc          # Juice circuit (every circuit fits)
  pcc export little.pc -o little_copy.psdd         # PSDD, and its vtree as little_copy.vtree
  pcc export ir_examples/interchange/little.spflow -o little_copy.spflow   # SPFlow's text (a tree)
  pcc export rat16.pt -o rat16.jpc                 # K > 1 regions unrolled into nodes
  pcc export by_x0.pt -o class1.jpc --root-unit 1  # density 1 of a root with K > 1 (`pcc train --help`)
"""
SUFFIXES = {".psdd": "psdd", ".jpc": "jpc", ".spflow": "spflow"}


def register(sub) -> None:
    p = sub.add_parser("export", help=HELP,
                       description=__doc__, epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="a checkpoint (.pt) or a circuit file")
    p.add_argument("-o", "--output", required=True, type=output_file, help="file to write")
    p.add_argument("--format", choices=sorted(set(SUFFIXES.values())),
                   help="output format (default: from the extension of -o)")
    p.add_argument("--root-unit", type=non_negative_int, metavar="N",
                   help="the root unit to write when the root has K > 1 (0..K-1)")
    p.add_argument("--seed", type=non_negative_int, default=0,
                   help="seed for parameters a circuit file does not give")
    p.set_defaults(run=run)


def run(args) -> int:
    from ..interchange.export import export_text
    from .common import is_checkpoint, load_model
    fmt = args.format or SUFFIXES.get(os.path.splitext(args.output)[1].lower())
    if fmt is None:
        raise PcError(f"cannot tell the format from {args.output!r}: give --format "
                      f"({', '.join(sorted(set(SUFFIXES.values())))})")
    model = load_model(args.model, seed=args.seed, backend="torch")
    given = {} if is_checkpoint(args.model) else \
        {(p.region, p.field, p.index): p for p in model.circuit.params}
    params = {(p.region, p.field, p.index): p for p in model.ir_params()} | given
    files = export_text(dataclasses.replace(model.circuit, params=tuple(params.values())), fmt,
                        args.root_unit)
    for suffix, text in files.items():
        path = os.path.splitext(args.output)[0] + suffix if suffix else args.output
        write_text(path, text)
        print(f"wrote {path}", file=sys.stderr)
    return 0
