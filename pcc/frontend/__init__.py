"""The `.pc` frontend: text -> checked `Circuit`, and `Circuit` -> canonical text.

    text --syntax--> statements --builder--> Circuit --checks--> diagnostics

Well-formed text takes a fast path first (`fast`: text -> Circuit in one step); text it doubts,
and any circuit the checker has something to say about, is read the full way, so diagnostics
always come from the full parser.

`parse` raises `PcSyntaxError` or `PcCheckError` holding every diagnostic; `check_source` returns
them instead. Warnings (e.g. unreachable regions) go through `warnings.warn` as `PcWarning`.
"""
from __future__ import annotations

import dataclasses
import gc
import os
import warnings

from ..errors import Diagnostic, PcCheckError, PcSyntaxError, SourceError
from ..ir import Circuit
from .builder import build
from .checks import check, validate
from .diagnostics import PcWarning, Reporter
from .fast import read_fast
from .files import read_source
from .printer import to_text
from .syntax import comments, parse_statements
from .typos import unknown_statement

SYNTAX_KINDS = ("syntax-error", "unknown-statement", "unreadable-file")  # PcSyntaxError's kinds

__all__ = ["parse", "load", "check_source", "validate", "to_text", "read_source", "error_for", "PcWarning"]


def check_source(text: str, path: str | None = None) -> tuple[Circuit | None, list[Diagnostic]]:
    """The circuit of `text` (None if it has errors) and all diagnostics, in source order.
    Never raises for bad input."""
    if text.startswith("\ufeff"):
        text = text[1:]
    collecting = gc.isenabled()
    gc.disable()  # parsing makes many objects and no cycles: collecting would triple the time
    try:
        circuit = read_fast(text)
        if circuit is not None:  # a circuit the checker has nothing to say about, else read again
            circuit = dataclasses.replace(circuit, comments=comments(text), path=path, source=text)
            report = Reporter(path, text)
            check(circuit, report)
            if not report.diagnostics:
                return circuit, []
        report = Reporter(path, text)
        statements = parse_statements(text, report)
        if statements is None:
            return None, report.sorted()
        circuit, info = build(statements, report)
        circuit = dataclasses.replace(circuit, comments=comments(text), path=path, source=text)
        check(circuit, report, info)
        if report.has_errors:
            _misread_statements(info, report)
    finally:
        if collecting:
            gc.enable()
    return (None if report.has_errors else circuit), report.sorted()


def _misread_statements(info, report: Reporter) -> None:
    """Variable names that start a line looking like a misspelt keyword: in a file with errors,
    likely a statement the `vars` statement read as more names (e.g. `rooot top`)."""
    for span, word, keyword in info.misread:
        report.warning("unknown-statement", f"{unknown_statement(word, keyword)} (read as a "
                       f"variable of the `vars` statement on line {info.vars.line})", span)


def parse(text: str, path: str | None = None) -> Circuit:
    """The checked circuit of `text`. Raises PcSyntaxError (it does not parse) or PcCheckError
    (it is not a valid circuit), each holding every diagnostic; warns PcWarning for warnings."""
    circuit, diagnostics = check_source(text, path)
    if circuit is None:
        raise error_for(diagnostics)
    for d in diagnostics:
        warnings.warn(d.render(), PcWarning, stacklevel=2)
    return circuit


def error_for(diagnostics: list[Diagnostic]) -> SourceError:
    """The exception for a source with errors: PcSyntaxError if it did not parse (or could not be
    read, or has an unknown statement), else PcCheckError."""
    syntax = any(d.kind in SYNTAX_KINDS and d.severity == "error" for d in diagnostics)
    return (PcSyntaxError if syntax else PcCheckError)(diagnostics)


def load(path: "str | os.PathLike") -> Circuit:
    """The checked circuit in the `.pc` file at `path` (see `parse`; an unreadable file raises
    PcSyntaxError)."""
    name = os.fspath(path)
    return parse(read_source(name), name)

