"""The `pcc` command: one subcommand per module in `pcc.cli`, each with a `register(subparsers)`."""
from __future__ import annotations

import argparse
import importlib
import sys

from ..errors import PcError

# Subcommand modules, in the order `pcc --help` lists them.
COMMANDS = ("check", "fmt", "structure", "compile", "train", "eval", "sample", "inpaint", "mpe",
            "import_", "export")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pcc",
        description="Compile probabilistic circuits (.pc files) to fused kernels; train, evaluate, query.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Run `pcc COMMAND --help` for a command's options and examples.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        importlib.import_module(f"pcc.cli.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except PcError as e:
        print(str(e), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
