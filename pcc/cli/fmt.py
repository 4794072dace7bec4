"""`pcc fmt FILE...`: print .pc files in canonical form, check that they are, or rewrite them."""
from __future__ import annotations

import argparse
import sys

from ..errors import PcError
from ..files import write_text
from ..frontend import check_source, error_for, read_source, to_text

HELP = "print .pc files in canonical form (or check, or rewrite them)"
EXAMPLES = """\
examples:
  pcc fmt ir_examples/gmm.pc        # print the canonical text to stdout
  pcc fmt --check ir_examples/gmm.pc ir_examples/mixture2.pc   # exit 1 (naming it) if a file is not canonical
  pcc fmt -i nltcs.pc               # rewrite the file in place (atomically)

The canonical form: `pc`, `vars`, `leaf`; a blank line; the regions in file order; `root`;
then the params. Comments stay above the statement they preceded. Only valid files are
formatted: run `pcc check` to see what is wrong with one that is not."""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "fmt", help=HELP,
        description="Print a .pc file in canonical form.", epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+", metavar="FILE", help=".pc files")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="exit 1 if a file is not in canonical form")
    mode.add_argument("-i", "--in-place", action="store_true", help="rewrite the files in canonical form")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if len(args.files) > 1 and not (args.check or args.in_place):
        raise PcError("pcc fmt prints one FILE; give --check or --in-place for several")
    differ = False
    for path in args.files:
        original = read_source(path)
        circuit, diagnostics = check_source(original, path)
        if circuit is None:
            raise error_for(diagnostics)
        for warning in diagnostics:
            print(warning.render(), file=sys.stderr)
        canonical = to_text(circuit)
        if args.check:
            if canonical != original:
                print(f"{path}: not in canonical form (run `pcc fmt -i {path}`)", file=sys.stderr)
                differ = True
        elif args.in_place:
            if canonical != original:
                write_text(path, canonical)
                print(f"reformatted {path}", file=sys.stderr)
        else:
            sys.stdout.write(canonical)
    return 1 if differ else 0
