"""`pcc check FILE...`: validate .pc files; print every diagnostic, and a summary of each valid file."""
from __future__ import annotations

import argparse
import sys

from ..errors import SizeError, SourceError
from ..frontend import check_source, read_source
from ..region_graph import summary
from ..sizes import check_circuit_size

HELP = "validate .pc files and summarize them"

EXAMPLES = """\
examples:
  pcc check ir_examples/pd2x2.pc          # diagnostics, or a summary of the circuit
  pcc check ir_examples/*.pc              # several files; exit 1 if any has an error
  pcc check -q ir_examples/gmm.pc         # diagnostics only

Diagnostics go to stderr as `FILE:LINE:COL: error: message` with the line and a caret;
summaries go to stdout. Warnings (e.g. unreachable regions) do not fail the check. A circuit
with more than 2^31 parameters is an error too: it cannot be built."""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "check", help=HELP,
        description="Validate .pc files: syntax, names, structure (decomposable, smooth, acyclic),\n"
                    "families and inline parameters. Every problem is reported, not just the first.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+", metavar="FILE", help=".pc files to check")
    parser.add_argument("-q", "--quiet", action="store_true", help="print diagnostics only, no summaries")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    failed = False
    for i, path in enumerate(args.files):
        try:
            circuit, diagnostics = check_source(read_source(path), path)
        except SourceError as e:
            circuit, diagnostics = None, e.diagnostics
        for d in diagnostics:
            print(d.render(), file=sys.stderr)
        if circuit is not None:
            try:
                check_circuit_size(circuit, path)
            except SizeError as e:
                print(e, file=sys.stderr)
                failed = True
                continue
        if circuit is None:
            failed = True
            errors = sum(d.severity == "error" for d in diagnostics)
            print(f"{path}: {errors} error{'s' if errors != 1 else ''}", file=sys.stderr)
        elif not args.quiet:
            if i:
                print()
            print(f"{path}: ok")
            print(summary(circuit))
    return 1 if failed else 0
