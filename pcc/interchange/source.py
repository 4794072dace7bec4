"""A circuit file being imported: its text split into lines and tokens, and errors that point into it;
numbers read from it (`parse_float`, `parse_int`) and written back (`fmt`).

Lines are counted as editors count them (split on '\\n'; a trailing '\\r' is whitespace), tokens
are whitespace-separated. Token columns are only worked out when an error needs them.
"""
from __future__ import annotations

import os
import re
from typing import Iterator, NoReturn

from ..errors import Diagnostic, PcSyntaxError
from ..frontend.files import read_source
from ..ir import Span

_TOKEN = re.compile(r"\S+")


class Source:
    """The text of one imported file (`path` is for messages only)."""

    def __init__(self, text: str, path: str | None = None):
        self.text = text[1:] if text.startswith("\ufeff") else text
        self.path = path
        self._lines: list[str] | None = None

    @classmethod
    def read(cls, path: "str | os.PathLike") -> "Source":
        """The file at `path` (UTF-8); an unreadable file raises PcSyntaxError."""
        name = os.fspath(path)
        return cls(read_source(name), name)

    @property
    def lines(self) -> list[str]:
        if self._lines is None:
            self._lines = self.text.split("\n")
        return self._lines

    def token_lines(self, comment: str | None = None) -> Iterator[tuple[int, list[str]]]:
        """(1-based line number, tokens) of every line with tokens; lines whose first token starts
        with `comment` are skipped."""
        for number, line in enumerate(self.lines, 1):
            tokens = line.split()
            if tokens and not (comment and tokens[0].startswith(comment)):
                yield number, tokens

    # ------------------------------------------------------------------ places
    def line_span(self, line: int) -> Span:
        """The whole of line `line`, trailing whitespace left out."""
        text = self.lines[line - 1].rstrip()
        start = len(text) - len(text.lstrip()) + 1
        return Span(line, start, line, max(start + 1, len(text) + 1))

    def token_span(self, line: int, index: int) -> Span:
        """Token `index` (0-based) of line `line`; past the last token, the end of the line."""
        matches = list(_TOKEN.finditer(self.lines[line - 1]))
        if index < len(matches):
            m = matches[index]
            return Span(line, m.start() + 1, line, m.end() + 1)
        end = matches[-1].end() + 1 if matches else 1
        return Span(line, end, line, end + 1)

    def offset_span(self, start: int, end: int) -> Span:
        """Characters [start, end) of the text (on one line)."""
        line = self.text.count("\n", 0, start) + 1
        col = start - (self.text.rfind("\n", 0, start) + 1) + 1
        return Span(line, col, line, col + max(1, end - start))

    # ------------------------------------------------------------------ errors
    def diagnostic(self, kind: str, message: str, span: Span | None,
                   severity: str = "error") -> Diagnostic:
        line = self.lines[span.line - 1] if span is not None and span.line <= len(self.lines) else None
        return Diagnostic(severity, kind, message, span, self.path, line)

    def syntax_error(self, message: str, span: Span | None) -> NoReturn:
        """Raise PcSyntaxError: the file does not follow its format's syntax."""
        raise PcSyntaxError([self.diagnostic("syntax-error", message, span)])

def parse_float(source: Source, token: str, line: int, index: int, what: str) -> float:
    """`token` as a float (decimal, `E` exponents, inf); NaN and non-numbers are syntax errors."""
    try:
        value = float(token)
    except ValueError:
        source.syntax_error(f"expected {what}, a number, found {token!r}", source.token_span(line, index))
    if value != value:
        source.syntax_error(f"{what} is NaN", source.token_span(line, index))
    return value


def fmt(x: float) -> str:
    """A float as text that reads back exactly (`repr`; `parse_float` reads it), -inf for log 0."""
    return repr(float(x))


def parse_int(source: Source, token: str, line: int, index: int, what: str) -> int:
    """`token` as a whole number (optionally signed)."""
    try:
        return int(token)
    except ValueError:
        source.syntax_error(f"expected {what}, a whole number, found {token!r}",
                            source.token_span(line, index))


def parse_variable(source: Source, token: str, line: int, index: int, base: int) -> int:
    """A variable number counted from `base` (0 or 1), returned 0-based."""
    var = parse_int(source, token, line, index, "a variable")
    if var < base:
        source.syntax_error(f"variable {var}: variables are numbered from {base} in this format",
                            source.token_span(line, index))
    return var - base


def expect_fields(source: Source, tokens: list[str], line: int, count: int, syntax: str) -> None:
    """A syntax error unless the line has exactly `count` tokens (`syntax` shows the forms)."""
    if len(tokens) < count:
        source.syntax_error(f"this '{tokens[0]}' line has {len(tokens)} fields, expected {count}: "
                            f"{syntax}", source.token_span(line, len(tokens)))
    if len(tokens) > count:
        source.syntax_error(f"unexpected field {tokens[count]!r}: this '{tokens[0]}' line has "
                            f"{count} fields ({syntax})", source.token_span(line, count))
