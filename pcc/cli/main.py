"""The `pcc` command: one subcommand per module in `pcc.cli` (each has `HELP`, its line in
`pcc --help`, and `register(subparsers)`), and the one error path of every command.

Only the command being run is built (and imports what it needs): `pcc --help`, `pcc check` and
`pcc fmt` start without torch. Whatever goes wrong ends as one line on stderr, never a
traceback:

    argument errors      `pcc CMD: error: argument --OPT: why`      exit 2 (`options.Parser`)
    bad input (PcError)  its message, naming the file, line or option  exit 1
    a file system error  `PATH: reason`                               exit 1
    out of memory        `out of memory: could not allocate N bytes (...)`  exit 1
    Ctrl-C               `interrupted`                                exit 130
    a bug in pcc         `internal error (please report it): ...`     exit 70; PCC_TRACEBACK=1
                                                                      shows the traceback

Under torchrun (`pcc.distributed`), an error every rank knows of (a `RankError`, naming the
failing rank, or an interrupt) is printed by rank 0 alone; any other error by the rank it
happened on, as `rank R: ...` (so is losing contact with the other ranks).
"""
from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
import traceback
import warnings
from importlib import import_module

from .. import __version__
from ..errors import PcError, SourceError
from .options import Parser

# Subcommands, in the order `pcc --help` lists them; the module of each is pcc.cli.<name>.
COMMANDS = ("check", "fmt", "structure", "compile", "train", "eval", "info", "sample", "inpaint",
            "mpe", "import", "export")
MODULES = {"import": "import_"}
EPILOG = """\
examples (the main job: a hidden Chow-Liu tree learned from the nltcs data in data/, trained by EM):
  pcc structure hclt --data data/nltcs/nltcs.train.data -o nltcs.pc
  pcc train nltcs.pc --train data/nltcs/nltcs.train.data --valid data/nltcs/nltcs.valid.data --test data/nltcs/nltcs.test.data -o nltcs.pt
  pcc info nltcs.pt

Run `pcc COMMAND --help` for a command's options and examples."""


def build_parser(command: str | None = None) -> Parser:
    """The `pcc` parser. With `command`, only that command is built in full; the others get their
    help line only (so a command imports only its own needs). None: all of them in full."""
    parser = Parser(prog="pcc", epilog=EPILOG,
                    description="Compile probabilistic circuits (.pc files) to fused kernels; "
                                "train, evaluate, query.",
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"pcc {__version__}",
                        help="print the version of pcc and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    for name in COMMANDS:
        module = import_module(f"pcc.cli.{MODULES.get(name, name)}")
        if command is None or command == name:
            module.register(sub)
        else:
            sub.add_parser(name, help=module.HELP)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run `pcc` with `argv` (default: the process's arguments); the exit status."""
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    command = next((a for a in argv if not a.startswith("-")), "")
    with _warnings_as_lines():
        try:
            args = build_parser(command).parse_args(argv)
            args.argv = argv  # as typed, for files that record the command that wrote them
            if getattr(args, "threads", None):
                import torch
                torch.set_num_threads(args.threads)
            return int(args.run(args) or 0)
        except SystemExit as e:  # --help, --version, and argument errors (printed already)
            return e.code if isinstance(e.code, int) else int(e.code is not None)
        except BaseException as e:  # noqa: BLE001 -- every error ends here, as one line
            return report(e)


def report(error: BaseException) -> int:
    """Print `error` as one line on stderr (see the module doc); its exit status."""
    if isinstance(error, BrokenPipeError):  # e.g. `pcc sample ... | head`: stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    group = _rank_group()
    if group is not None and not group.is_main and _known_to_all(error):
        return 130 if isinstance(error, KeyboardInterrupt) else 1  # rank 0 says it
    if isinstance(error, KeyboardInterrupt):
        message, code = "interrupted", 130
    elif isinstance(error, PcError):
        message, code = one_line(error), 1
    elif _out_of_memory(error):
        wanted = re.search(r"tried to allocate (\d+) bytes", str(error))
        message = ("out of memory: " + (f"could not allocate {int(wanted[1]):,} bytes" if wanted
                                        else _first_line(str(error)) or type(error).__name__)
                   + " (ask for less: fewer rows, samples or units)")
        code = 1
    elif isinstance(error, OSError) and error.strerror:
        message, code = f"{error.filename or 'pcc'}: {error.strerror}", 1
    else:
        if os.environ.get("PCC_TRACEBACK"):
            traceback.print_exception(error)
        message = (f"internal error (please report it; PCC_TRACEBACK=1 shows where): "
                   f"{type(error).__name__}: {_first_line(str(error))}")
        code = 70
    if group is not None and not isinstance(error, sys.modules["pcc.distributed"].RankError):
        message = f"rank {group.rank}: {message}"
    print(message, file=sys.stderr)
    return code


def _rank_group():
    """The process group of this torchrun launch (pcc.distributed), if any; never imports
    torch."""
    module = sys.modules.get("pcc.distributed")
    group = None if module is None else module.joined()
    return group if group is not None and group.size > 1 else None


def _known_to_all(error: BaseException) -> bool:
    """Whether every rank raised `error` alike (an interrupt, or a failure the ranks shared)."""
    distributed = sys.modules["pcc.distributed"]
    return isinstance(error, KeyboardInterrupt) or (
        isinstance(error, distributed.RankError) and not isinstance(error, distributed.LostContact))


def one_line(error: PcError) -> str:
    """The message of `error` on one line: for a source file, its first error with its place."""
    if isinstance(error, SourceError) and error.errors:
        head = error.errors[0].render().splitlines()[0]
        more = len(error.errors) - 1
        return head + (f" (and {more} more error{'s' if more > 1 else ''}: `pcc check` lists "
                       "them)" if more else "")
    return " ".join(line.strip() for line in str(error).splitlines() if line.strip())


def _out_of_memory(error: BaseException) -> bool:
    """MemoryError, torch's OutOfMemoryError (CUDA), or the CPU allocator's RuntimeError."""
    return (isinstance(error, MemoryError) or type(error).__name__ == "OutOfMemoryError"
            or (isinstance(error, RuntimeError) and "can't allocate memory" in str(error)))


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""


@contextlib.contextmanager
def _warnings_as_lines():
    """Show Python warnings as `warning: message`, one line each, not with their source line."""
    def show(message, category, filename, lineno, file=None, line=None):
        print(f"warning: {_first_line(str(message))}", file=sys.stderr)
    with warnings.catch_warnings():
        warnings.showwarning = show
        yield


if __name__ == "__main__":
    sys.exit(main())
