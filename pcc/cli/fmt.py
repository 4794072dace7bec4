"""`pcc fmt FILE...`: print .pc files in canonical form, check that they are, or rewrite them."""
from __future__ import annotations

import argparse
import os
import stat
import sys
import tempfile

from ..errors import PcError
from ..frontend import check_source, error_for, read_source, to_text

EXAMPLES = """\
examples:
  pcc fmt model.pc                  # print the canonical text to stdout
  pcc fmt --check ir_examples/*.pc  # exit 1 (and name them) if any file is not canonical
  pcc fmt -i model.pc               # rewrite the file in place (atomically)

The canonical form: `pc`, `vars`, `leaf`; a blank line; the regions in file order; `root`;
then the params. Comments stay above the statement they preceded. Only valid files are
formatted: run `pcc check` to see what is wrong with one that is not."""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "fmt", help="print .pc files in canonical form (or check, or rewrite them)",
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
                _replace(path, canonical)
                print(f"reformatted {path}", file=sys.stderr)
        else:
            sys.stdout.write(canonical)
    return 1 if differ else 0


def _replace(path: str, text: str) -> None:
    """Replace the file at `path` by `text` in one step, keeping its permissions."""
    folder = os.path.dirname(os.path.abspath(path))
    temp = None
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
        fd, temp = tempfile.mkstemp(dir=folder, prefix=".pcc-fmt-", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(temp, mode)
        os.replace(temp, path)
    except OSError as e:
        if temp is not None and os.path.exists(temp):
            os.unlink(temp)
        raise PcError(f"cannot write {path}: {e.strerror or e}") from None
