"""Syntax errors in human words: what the parser expected there, and what it found instead.

The parser reports terminal names (NAME, LBRACE, ...). What a NAME stands for depends on where
the parser is, which the previous token and the statement's keyword tell.
"""
from __future__ import annotations

from typing import Collection, Mapping

from .lexer import ERROR_CHAR
from .naming import RESERVED_WORDS

KEYWORDS = {word.upper(): word for word in RESERVED_WORDS}  # terminal -> keyword
_REGION_BEFORE = {"INPUT", "SUM", "ROOT", "PARAM", "TIE", "STAR", "DOTSTAR", "VBAR"}
_LONGEST = 24  # characters of a found token to quote


def expected_words(expected: Collection[str], statement: str | None, previous: str | None,
                   literals: Mapping[str, str]) -> str:
    """`a region name or '|'`: the terminals in `expected`, phrased for where the parser is.

    `statement` is the keyword terminal of the statement being read, `previous` the terminal just
    read (None after a completed phrase such as a scope), `literals` the text of fixed terminals."""
    words: list[str] = []
    numbers = {"INT", "FLOAT"} & set(expected)
    if "NAME" in expected:
        subject = _name_subject(statement, previous, expected)
        words.append(subject)
        if subject in ("a variable", "the number of variables or their names"):
            numbers = set()  # the subject covers the integer
    if numbers == {"INT"}:
        words.append("the format version (an integer)" if previous == "PC" else
                     "a partition index" if previous == "LSQB" else "an integer")
    elif numbers:
        words.append("a number")
    punctuation = sorted(t for t in expected if t in literals and t not in KEYWORDS)
    words.extend(f"'{literals[t]}'" for t in punctuation)
    if set(KEYWORDS) <= set(expected):
        words.append("a new statement" if words else
                     "a statement (" + ", ".join(KEYWORDS.values()) + ")")
    else:
        words.extend(f"'{KEYWORDS[t]}'" for t in KEYWORDS if t in expected)
    if not words:
        return "end of file"
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def found_words(type: str, value: str) -> str:
    """How the offending token reads: `name 'foo'`, `'{'`, `end of file`, ..."""
    if type == "$END":
        return "end of file"
    if type == ERROR_CHAR:
        if value.isdigit():
            return "a number with more than 18 digits"
        return f"character '{value}'" if value.isprintable() else f"character U+{ord(value):04X}"
    shown = value if len(value) <= _LONGEST else value[:_LONGEST] + "..."
    if type in KEYWORDS:
        return f"keyword '{value}'"
    if type == "NAME":
        return f"name '{shown}'"
    if type in ("INT", "FLOAT"):
        return f"number {shown}"
    return f"'{value}'"


def _name_subject(statement: str | None, previous: str | None, expected: Collection[str]) -> str:
    if previous == "VARS":
        return "the number of variables or their names"
    if statement == "VARS":
        return "a variable name"
    if statement == "TIE":
        return "a region name"
    if previous in _REGION_BEFORE or (previous == "EQUAL" and statement == "SUM"):
        return "a region name"
    if previous == "LEAF":
        return "a leaf family"
    if previous in ("LBRACE", "_DOTDOT") or (previous == "COMMA" and "INT" in expected):
        return "a variable"
    if previous in ("LPAR", "COMMA"):
        return "an argument name"
    if previous == "DOT":
        return "a field name"
    if statement == "SUM":
        return "an option such as k=4"
    return "an option such as k=4, a leaf family"
