"""Collecting diagnostics for one source, and the small helpers their messages share."""
from __future__ import annotations

import difflib
import string
from typing import Collection

from ..errors import Diagnostic
from ..ir import Span

_MANY = 500  # candidates beyond which hints look only one edit away
_NAME_CHARS = string.ascii_letters + string.digits + "_"


class PcWarning(UserWarning):
    """A circuit is valid but likely not what was meant (e.g. a region the root never reaches)."""


class Reporter:
    """Collects the diagnostics of one source, giving each the path and the source line it is on."""

    def __init__(self, path: str | None = None, source: str | None = None):
        self.path = path
        self._source = source
        self._lines: list[str] | None = None
        self.diagnostics: list[Diagnostic] = []

    def error(self, kind: str, message: str, span: Span | None = None) -> None:
        self._add("error", kind, message, span)

    def warning(self, kind: str, message: str, span: Span | None = None) -> None:
        self._add("warning", kind, message, span)

    @property
    def has_errors(self) -> bool:
        return any(d.severity == "error" for d in self.diagnostics)

    def sorted(self) -> list[Diagnostic]:
        """The diagnostics in source order; those without a place last, in the order found."""
        return sorted(self.diagnostics, key=lambda d: (d.span is None, d.span.line if d.span else 0,
                                                       d.span.col if d.span else 0))

    def source_line(self, line: int) -> str | None:
        """Line `line` (1-based) of the source, if known."""
        return self._line(Span(line, 1, line, 1))

    def _add(self, severity: str, kind: str, message: str, span: Span | None) -> None:
        self.diagnostics.append(Diagnostic(severity, kind, message, span, self.path, self._line(span)))

    def _line(self, span: Span | None) -> str | None:
        if span is None or self._source is None:
            return None
        if self._lines is None:
            self._lines = self._source.split("\n")  # as the lexer counts lines
        return self._lines[span.line - 1] if 0 < span.line <= len(self._lines) else None


def did_you_mean(word: str, candidates: Collection[str]) -> str:
    """`; did you mean 'x'?` for the closest candidate, or '' when none is close.

    Few candidates are ranked by similarity (difflib); among many, only names one edit away
    (a letter changed, added, dropped, or two swapped) are looked up, so a hint costs the same
    in a circuit of any size. Pass many candidates as a set or dict."""
    if len(candidates) > _MANY:
        close = sorted(c for c in _one_edit_away(word) if c in candidates)
        return f"; did you mean '{close[0]}'?" if close else ""
    lowered = {c.lower(): c for c in candidates if abs(len(c) - len(word)) <= 3}
    close = difflib.get_close_matches(word.lower(), list(lowered), n=1, cutoff=0.6)
    return f"; did you mean '{lowered[close[0]]}'?" if close else ""


def _one_edit_away(word: str) -> set[str]:
    splits = [(word[:i], word[i:]) for i in range(len(word) + 1)]
    return ({a + b[1:] for a, b in splits if b}
            | {a + b[1] + b[0] + b[2:] for a, b in splits if len(b) > 1}
            | {a + c + b[1:] for a, b in splits if b for c in _NAME_CHARS}
            | {a + c + b for a, b in splits for c in _NAME_CHARS})


def join_spans(first: Span, last: Span) -> Span:
    """The span from the start of `first` to the end of `last`."""
    return Span(first.line, first.col, last.end_line, last.end_col)


def format_shape(shape: tuple[int, ...], limit: int = 8) -> str:
    if len(shape) > limit:
        return "[" + ", ".join(map(str, shape[:limit])) + f", ...] ({len(shape)} dimensions)"
    return "[" + ", ".join(map(str, shape)) + "]"


def line_of(span: Span | None) -> str:
    """` (first on line N)` for a back-reference to an earlier place, '' without one."""
    return f" (first on line {span.line})" if span is not None else ""
