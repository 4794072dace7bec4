"""The command line's own documentation: every option of every command has a help text, every
example in every `--help` runs as written, and `pcc --help`, `check` and `fmt` start without
importing torch."""
from __future__ import annotations

import argparse
import contextlib
import glob
import importlib.util
import io
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pcc import __version__
from pcc.cli.main import COMMANDS, build_parser, main

REPO = Path(__file__).resolve().parent.parent
# The order the examples run in: later ones use what earlier ones wrote (nltcs.pt, little.pc, ...).
ORDER = ("structure", "compile", "train", "eval", "info", "sample", "mpe", "inpaint", "import",
         "export", "check", "fmt", "pcc")


def parsers() -> dict[str, argparse.ArgumentParser]:
    """Every parser by its prog (`pcc`, `pcc train`, `pcc structure rat`, ...), all built."""
    found, todo = {}, [build_parser()]
    while todo:
        parser = todo.pop()
        found[parser.prog] = parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                todo.extend(action.choices.values())
    return found


def examples(parser: argparse.ArgumentParser) -> list[str]:
    """The command lines of a parser's epilog: lines starting with `pcc `, continued by `\\`."""
    lines, out = (parser.epilog or "").splitlines(), []
    for i, line in enumerate(lines):
        if line.strip().startswith("pcc ") and not (i and lines[i - 1].rstrip().endswith("\\")):
            text = line.strip()
            j = i
            while text.endswith("\\"):
                j += 1
                text = text[:-1] + " " + lines[j].strip()
            out.append(text)
    return out


def all_examples() -> list[tuple[str, str]]:
    """(command, example) for every example, in ORDER, each once."""
    seen, out = set(), []
    by_command = sorted(parsers().items(), key=lambda item: ORDER.index(item[0].split()[1])
                        if " " in item[0] else len(ORDER))
    for prog, parser in by_command:
        for example in examples(parser):
            if example not in seen:
                seen.add(example)
                out.append((prog, example))
    return out


def test_every_command_is_documented_and_has_examples():
    found = parsers()
    for name in COMMANDS:
        assert f"pcc {name}" in found and examples(found[f"pcc {name}"]), name
    for kind in ("pd", "rat", "hclt"):
        assert examples(found[f"pcc structure {kind}"]), kind


def test_every_option_of_every_command_has_a_help_text():
    missing = [f"{prog} {action.dest}" for prog, parser in parsers().items()
               for action in parser._actions
               if not isinstance(action, argparse._SubParsersAction)
               and not (action.help and action.help.strip())]
    assert missing == []


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"pcc {__version__}"


@pytest.mark.parametrize("argv", [["--help"], ["check", "ir_examples/gmm.pc"],
                                  ["fmt", "ir_examples/gmm.pc"], ["check", "--help"]])
def test_starts_without_torch(argv):
    code = ("import sys, io, contextlib\nfrom pcc.cli.main import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            f"    status = main({argv!r})\n"
            "assert status == 0, status\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """A folder like the repository's root for the examples: ir_examples/ and a data/nltcs/
    with the first rows of each split (so that training takes seconds, with the examples'
    own settings)."""
    root = tmp_path_factory.mktemp("examples")
    shutil.copytree(REPO / "ir_examples", root / "ir_examples")
    data = root / "data" / "nltcs"
    data.mkdir(parents=True)
    for split, rows in (("train", 200), ("valid", 50), ("test", 50)):
        lines = (REPO / "data" / "nltcs" / f"nltcs.{split}.data").read_text().splitlines()
        (data / f"nltcs.{split}.data").write_text("\n".join(lines[:rows]) + "\n")
    shutil.copy(REPO / "data" / "nltcs" / "nltcs.missing.data", data)
    return root


@pytest.fixture(scope="module")
def results(folder) -> dict[str, tuple[int, str]]:
    """Every example run in `folder`, in ORDER: example -> (exit status, stderr)."""
    out = {}
    old = Path.cwd()
    try:
        import os
        os.chdir(folder)
        for _, example in all_examples():
            out[example] = run_line(example)
    finally:
        os.chdir(old)
    return out


def run_line(line: str) -> tuple[int, str]:
    """Run a shell-like line of `pcc` commands joined by `&&`, globs expanded, in-process."""
    words = shlex.split(line, comments=True)
    commands = [[]]
    for word in words:
        if word == "&&":
            commands.append([])
        else:
            commands[-1].extend(sorted(glob.glob(word)) if "*" in word else [word])
    err = io.StringIO()
    for command in commands:
        assert command[0] == "pcc", line
        if "--plot" in command and importlib.util.find_spec("matplotlib") is None:
            return -1, "matplotlib is not installed"
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            status = main(command[1:])
        if status:
            return status, err.getvalue()
    return 0, err.getvalue()


@pytest.mark.parametrize("prog, example", all_examples())
def test_every_example_runs_as_written(results, prog, example):
    status, err = results[example]
    if status == -1:
        pytest.skip(err)
    assert status == 0, f"{example}\n{err}"
