"""`pcc import FILE -o OUT.pc [--format F] [-k K]`: read another tool's circuit file as a .pc file.

Formats: psdd, jpc (Juice), spn (Juice's SPN text), spflow (SPFlow's text form), cirkit (region
graph JSON, structure only: -k units per region, --leaf family). Node-level circuits become
K = 1 region graphs with their parameters inline. The format comes from the extension
(.psdd .jpc .spn .spflow .json) or the file's first line. Errors print as FILE:LINE:COL.
"""
from __future__ import annotations

import argparse
import sys
import warnings

from .options import output_or_stdout, positive_int

HELP = "read a PSDD, Juice, SPFlow or cirkit file as a .pc file"
EXAMPLES = """examples (the files are in ir_examples/interchange/):
  pcc import ir_examples/interchange/little.psdd -o little.pc
  pcc import ir_examples/interchange/little.jpc -o little_jpc.pc
  pcc import ir_examples/interchange/little_rg.json -k 10 --leaf 'categorical(n=4)' -o rg.pc
  pcc import ir_examples/interchange/little.spflow --format spflow -o little_spflow.pc
"""


def register(sub) -> None:
    from ..interchange import FORMATS
    p = sub.add_parser("import", help=HELP,
                       description=__doc__, epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("file", help="the circuit file")
    p.add_argument("-o", "--output", type=output_or_stdout, default="-",
                   help=".pc file to write (default: - for stdout)")
    p.add_argument("--format", choices=FORMATS, help="the file's format (default: from its "
                   "extension, else its first line)")
    p.add_argument("-k", type=positive_int, metavar="K", help="units per region for structure-only formats "
                   "(cirkit; default 10)")
    p.add_argument("--leaf", metavar="FAMILY", help="leaf family for structure-only formats "
                   "(default bernoulli)")
    p.set_defaults(run=run)


def run(args) -> int:
    from ..frontend import to_text
    from ..interchange import load_circuit
    from ..region_graph import counts
    from ..structures import parse_family
    from ..structures.provenance import header
    from ..files import write_text
    leaf = parse_family(args.leaf) if args.leaf else None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        circuit = load_circuit(args.file, args.format, k=args.k, leaf=leaf)
    for w in caught:
        print(w.message, file=sys.stderr)
    text = header(args.argv, circuit, source=args.file) + to_text(circuit)
    if args.output == "-":
        sys.stdout.write(text)
        return 0
    write_text(args.output, text)
    n = counts(circuit)
    print(f"wrote {args.output}: {circuit.num_vars} variables, {n['regions']} regions "
          f"({n['inputs']} inputs, {n['sums']} sums, {n['partitions']} partitions)", file=sys.stderr)
    return 0
