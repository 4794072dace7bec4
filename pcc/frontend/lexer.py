"""A fast lexer for the grammar in `pc.lark`, plugged into lark's LALR parser.

It matches the grammar's own terminals, all with one compiled regex per source line, and makes
small slotted tokens instead of lark's: that is most of the parse time saved. It needs no parser
context: keywords are reserved and no two terminals match the same text (`FLOAT` needs a sign, a
point or an exponent). No terminal spans a line, so lines and columns come from splitting on `\\n`.
A character no terminal matches becomes an `ERROR_CHAR` token, which the parser rejects, so such
errors are reported like any unexpected token.
"""
from __future__ import annotations

import re
from typing import Iterator

from lark.lexer import Lexer

ERROR_CHAR = "ERROR_CHAR"
NAME = "NAME"  # the grammar's terminal for names; a name spelled like a keyword is that keyword
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class Tok:
    """A token: its terminal `type`, text `value` and place (1-based; `end_column` exclusive)."""

    __slots__ = ("type", "value", "line", "column", "end_column")
    start_pos = end_pos = None  # read by lark when it makes the end-of-input token

    def __init__(self, type: str, value: str, line: int, column: int, end_column: int):
        self.type = type
        self.value = value
        self.line = line
        self.column = column
        self.end_column = end_column

    @property
    def end_line(self) -> int:
        return self.line

    def __repr__(self) -> str:
        return f"Tok({self.type}, {self.value!r}, {self.line}:{self.column})"


class LineLexer(Lexer):
    """lark custom-lexer interface 1: `lex(lexer_state, parser_state)` yields tokens."""

    __future_interface__ = 1

    def __init__(self, lexer_conf) -> None:
        keywords: dict[str, str] = {}
        literals, patterns = [], []
        for term in lexer_conf.terminals:
            if term.pattern.type == "str" and _WORD.fullmatch(term.pattern.value):
                keywords[term.pattern.value] = term.name
            elif term.pattern.type == "str":
                literals.append(term)
            else:
                patterns.append(term)
        literals.sort(key=lambda t: -len(t.pattern.value))  # '..' before '.'
        patterns.sort(key=lambda t: -t.priority)  # stable: grammar order among equals
        groups = "|".join(f"(?P<{t.name}>{t.pattern.to_regexp()})" for t in patterns + literals)
        self._match_line = re.compile(rf"(?:{groups}|(?P<{ERROR_CHAR}>.))").finditer
        self._keywords = keywords
        self._skip = frozenset(lexer_conf.ignore)

    def lex(self, lexer_state, parser_state) -> Iterator[Tok]:
        text = getattr(lexer_state.text, "text", lexer_state.text)
        keywords, skip, match_line = self._keywords, self._skip, self._match_line
        for line_no, line in enumerate(text.split("\n"), 1):
            for m in match_line(line):
                kind = m.lastgroup
                if kind in skip:
                    continue
                value = m.group()
                if kind == NAME:
                    kind = keywords.get(value, NAME)
                start, end = m.span()
                yield Tok(kind, value, line_no, start + 1, end + 1)
