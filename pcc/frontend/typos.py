"""Hints for the usual slips: a misspelt statement keyword, and values written the way other
languages write them (`categorical(3)`, `.5`, `k: 4`, `x0-x3`).

A line that starts with a word close to a keyword (`summ`, `imput`, `Root`) and goes on as a
statement would (a name, an integer, or nothing) is most likely that statement misspelt. Since
newlines are not significant, the parser reads such a word as part of the statement before, and
the error it meets comes later, in words about that statement; the frontend reports the line as
an `unknown statement` instead (see `syntax.parse_statements` and the builder).
"""
from __future__ import annotations

import re

from .diagnostics import did_you_mean
from .naming import RESERVED_WORDS

_LINE_START = re.compile(r"[ \t\f\r]*([A-Za-z_][A-Za-z0-9_]*)[ \t\f\r]*(.?)")
_GOES_ON_AS_A_STATEMENT = re.compile(r"[A-Za-z0-9_#]?")  # what follows a keyword: a name, a count


def misspelt_keyword(line: str, header_possible: bool) -> tuple[str, int, str] | None:
    """(word, its 1-based column, the keyword meant) when `line` starts like a statement whose
    keyword is misspelt; None otherwise. `pc` is suggested only where the header may still come
    (`header_possible`: no statement before this line)."""
    m = _LINE_START.match(line)
    if m is None or m.group(1) in RESERVED_WORDS or not _GOES_ON_AS_A_STATEMENT.fullmatch(m.group(2)):
        return None
    word = m.group(1)
    keywords = RESERVED_WORDS if header_possible else RESERVED_WORDS[1:]
    hint = did_you_mean(word, keywords)
    if not hint:
        return None
    return word, m.start(1) + 1, hint[len("; did you mean '"):-len("'?")]


def unknown_statement(word: str, keyword: str) -> str:
    return f"unknown statement '{word}'; did you mean '{keyword}'?"


_DIGITS = re.compile(r"[0-9]+([eE][+-]?[0-9]+)?")
_VALUE = re.compile(r"[ \t]*([^\s,)\]}#]+)")
_RANGE_END = re.compile(r"[ \t]*([A-Za-z0-9_]+)")


def value_hint(found: str, rest: str, previous: str | None, previous_text: str | None,
               family: str | None, number_expected: bool, range_expected: bool
               ) -> tuple[str, int] | None:
    """(`; did you mean '...'?`, how many characters the slip spans) for a value written the
    way other languages write it, or None. `found` is the text of the token the parser refused
    and `rest` the line after it; `previous` is the terminal read before it (`previous_text`
    its text); `family` the family whose arguments are being read, if any; the flags tell
    whether a number, or a range's `..`, could have come here."""
    if previous == "LPAR" and family is not None and _DIGITS.fullmatch(found):
        from ..families import family_spec
        spec = family_spec(family)
        if spec is not None and spec.int_args:  # categorical(3)
            return f"; did you mean '{family}({spec.int_args[0]}={found})'?", len(found)
    if number_expected and (found == "." or (found == "-" and rest.startswith("."))):
        sign = "-" if found == "-" else ""
        digits = _DIGITS.match(rest, len(sign))
        if digits:  # .5, -.5
            return f"; did you mean '{sign}0.{digits.group()}'?", 1 + digits.end()
    if found == "." and previous == "INT" and not rest[:1].isdigit():  # 1.
        return f"; did you mean '{previous_text}.0'?", 1
    if found == ":" and previous == "NAME":  # k: 4
        value = _VALUE.match(rest)
        if value:
            return f"; did you mean '{previous_text}={value.group(1)}'?", 1
    if range_expected and found.startswith("-"):  # x0-x3, 0-3
        end = _RANGE_END.match(rest) if found == "-" else _RANGE_END.match(found[1:])
        if end:
            return f"; did you mean '{previous_text}..{end.group(1)}'?", len(found)
    if number_expected and found.lower() in ("inf", "infinity", "nan"):
        return "; numbers in .pc files are finite (no inf or nan)", len(found)
    return None
