"""Text -> statements, with the LALR parser of `pc.lark`; syntax errors, all of them, in words.

The parser runs the transformer as it reduces (no parse tree is built), so what comes out is
the list of `statements` nodes; no lark object leaves this module.
"""
from __future__ import annotations

import functools
import re
from pathlib import Path

from lark import Lark, Transformer
from lark.exceptions import UnexpectedToken

from ..ir import Comment, Span
from .diagnostics import Reporter, join_spans
from .expected import KEYWORDS, expected_words, found_words
from .lexer import LineLexer, Tok
from .typos import misspelt_keyword, unknown_statement, value_hint
from .statements import (FamilyItem, Header, InputDecl, LeafDecl, ParamDecl, RootDecl, ScopeItem,
                         Setting, Statement, SumDecl, TieDecl, VarsDecl, Word)

GRAMMAR = Path(__file__).with_name("pc.lark")
_STATEMENT_START = re.compile(r"[ \t\f\r]*(" + "|".join(KEYWORDS.values()) + r")(?![A-Za-z0-9_])")
_COMMENT = re.compile(r"#[^\n]*")
_PATTERN_TERMINAL = re.compile(r"^([A-Z_]+)(?:\.[0-9]+)?: /(.*)/$", re.M)


def parse_statements(text: str, report: Reporter) -> list[Statement] | None:
    """The statements of `text`, or None after reporting every syntax error.

    On an error the text is parsed again in chunks, each from a line that starts with a statement
    keyword to the next, from the failing chunk on: one error per chunk is reported. A line that
    starts with a misspelt keyword is reported as an unknown statement (see `typos`)."""
    parser = _parser()
    try:
        return parser.parse(text)
    except UnexpectedToken as error:  # the lexer never fails: odd characters become ERROR_CHAR tokens
        first = error
    lines = text.split("\n")
    starts = [i for i, line in enumerate(lines) if _STATEMENT_START.match(line)]
    bounds = sorted({0, *starts, len(lines)})
    failing_line = first.token.line - 1
    found = False
    for begin, end in zip(bounds, bounds[1:]):
        if end < failing_line:  # (a chunk may fail at the keyword that starts the next one)
            continue
        found |= _report_chunk(parser, lines, begin, end, report)
    if not found:
        report.error("syntax-error", *_describe(first, lines, 0, len(lines), None))
    return None


def _report_chunk(parser: Lark, lines: list[str], begin: int, end: int, report: Reporter) -> bool:
    """Report the syntax error of lines [begin, end), if any; whether there was one."""
    try:
        parser.parse("\n".join(lines[begin:end]))
        return False
    except UnexpectedToken as error:
        unknown = _unknown_statement(parser, error, lines, begin)
        if unknown is None:
            follower = _STATEMENT_START.match(lines[end]) if end < len(lines) else None
            report.error("syntax-error", *_describe(error, lines, begin, end, follower))
            return True
    line, (word, col, keyword) = unknown
    report.error("unknown-statement", unknown_statement(word, keyword),
                 Span(line + 1, col, line + 1, col + len(word)))
    # The unknown statement runs up to the next line that starts like a statement.
    rest = next((i for i in range(line + 1, end) if misspelt_keyword(lines[i], False)), end)
    if rest < end:
        _report_chunk(parser, lines, rest, end, report)
    return True


def _unknown_statement(parser: Lark, error: UnexpectedToken, lines: list[str], begin: int):
    """(line index, (word, column, keyword)) when the parser failed on a line that starts with a
    misspelt keyword, the lines before it in the chunk being fine; else None."""
    token = error.token
    if token.type == "$END":
        return None
    line = begin + token.line - 1
    header_possible = not any(_tokens(text) for text in lines[:line])
    slip = misspelt_keyword(lines[line], header_possible)
    if slip is None or token.column < slip[1]:
        return None
    if line > begin:
        try:
            parser.parse("\n".join(lines[begin:line]))
        except UnexpectedToken:
            return None
    return line, slip


def _tokens(line: str) -> bool:
    """Whether a line holds anything but blanks and a comment."""
    return bool(_COMMENT.sub("", line).strip())


def comments(text: str) -> tuple[Comment, ...]:
    """Every `#` comment with its line. The language has no strings, so each `#` starts one."""
    out, line, pos = [], 1, 0
    for m in _COMMENT.finditer(text):
        line += text.count("\n", pos, m.start())
        pos = m.start()
        out.append(Comment(m.group().rstrip(), line))
    return tuple(out)


def _describe(error: UnexpectedToken, lines: list[str], begin: int, end: int,
              follower) -> tuple[str, Span]:
    """Message and span of a syntax error in the chunk of lines [begin, end); `follower` is the
    keyword match that starts the next chunk, if any (what the parser really meets at the chunk's
    end)."""
    token = error.token
    # The parser's value stack (lark internals, hence getattr) tells what was read just before.
    stack = getattr(getattr(error, "state", None), "value_stack", None) or []
    previous = stack[-1].type if stack and isinstance(stack[-1], Tok) else None
    statement = next((v.type for v in reversed(stack) if isinstance(v, Tok) and v.type in KEYWORDS),
                     None)
    expected = expected_words(error.expected, statement, previous, _literals())
    hint = ""
    if token.type != "$END":
        line = begin + token.line
        span = Span(line, token.column, line, token.end_column)
        found = found_words(token.type, token.value)
        slip = _value_slip(token, stack, error.expected, lines[line - 1])
        if slip is not None:
            hint, width = slip
            span = Span(line, token.column, line, token.column + width)
            if width != len(token.value):
                found = f"'{lines[line - 1][token.column - 1:token.column - 1 + width]}'"
    elif follower is not None and token.end_line:
        # The statement ends early: point just after its last token, where the value is missing,
        # not at the next line's keyword.
        line = begin + token.end_line
        span = Span(line, token.end_column, line, token.end_column + 1)
        found = f"the end of the line (line {end + 1} starts a new '{follower.group(1)}' statement)"
    elif follower is not None:
        keyword = follower.group(1)
        line, col = end + 1, follower.start(1) + 1
        span = Span(line, col, line, col + len(keyword))
        found = f"keyword '{keyword}'"
    else:
        line = begin + (token.end_line or 1)
        col = token.end_column or 1
        span = Span(line, col, line, col + 1)
        found = "end of file"
    return f"expected {expected}, found {found}{hint}", span


def _value_slip(token: Tok, stack: list, expected, line: str) -> tuple[str, int] | None:
    """The hint for a value written the way other languages write it (see `typos.value_hint`)."""
    previous = stack[-1] if stack and isinstance(stack[-1], Tok) else None
    family = stack[-2].value if previous is not None and previous.type == "LPAR" and \
        len(stack) > 1 and isinstance(stack[-2], Tok) else None
    return value_hint(token.value, line[token.end_column - 1:],
                      previous.type if previous is not None else None,
                      previous.value if previous is not None else None, family,
                      bool({"INT", "FLOAT"} & set(expected)), "_DOTDOT" in expected)


@functools.cache
def _parser() -> Lark:
    return Lark(GRAMMAR.read_text(encoding="utf-8"), parser="lalr", lexer=LineLexer,
                transformer=_ToStatements(), maybe_placeholders=True)


@functools.cache
def terminal_patterns() -> dict[str, str]:
    """Terminal name -> its regular expression, for the terminals the grammar defines by one
    (`NAME: /.../`); read from the grammar file, without building the parser."""
    return {m.group(1): m.group(2) for m in _PATTERN_TERMINAL.finditer(GRAMMAR.read_text(encoding="utf-8"))}


@functools.cache
def _literals() -> dict[str, str]:
    """Terminal name -> its fixed text, for the terminals that are plain strings."""
    return {t.name: t.pattern.value for t in _parser().terminals if t.pattern.type == "str"}


def _span(tok: Tok) -> Span:
    return Span(tok.line, tok.column, tok.line, tok.end_column)


def _word(tok: Tok) -> Word:
    return Word(tok.value, Span(tok.line, tok.column, tok.line, tok.end_column))


def number(text: str) -> int | float:
    """An option or argument value: an int when written as one (and short enough), else a float."""
    if len(text) <= 19 and text.lstrip("+-").isdigit():
        return int(text)
    return float(text)


def _setting(key: Tok, value: Tok) -> Setting:
    return Setting(_word(key), number(value.value), Span(key.line, key.column, value.line, value.end_column))


class _ToStatements(Transformer):
    """Rule callbacks, run by the parser at each reduction (children: kept tokens and results)."""

    def start(self, c):
        return c

    def header(self, c):
        return Header(_span(c[0]), _word(c[1]))

    def vars_count(self, c):
        count = _word(c[1])
        return VarsDecl(_span(c[0]), count, [], count.span)

    def vars_names(self, c):
        names = [_word(t) for t in c[1:]]
        return VarsDecl(_span(c[0]), None, names, names[-1].span)

    def leaf_decl(self, c):
        if c[2] is None:
            return LeafDecl(_span(c[0]), c[1])
        items, scope_span = c[2]
        return LeafDecl(_span(c[0]), c[1], items, scope_span)

    def input_decl(self, c):
        items, scope_span = c[2]
        return InputDecl(_span(c[0]), _word(c[1]), items, scope_span, c[3:])

    def scope(self, c):  # '{' item ',' item ... '}', or '{' None '}'
        return [x for x in c[1:-1:2] if x is not None], Span(c[0].line, c[0].column, c[-1].line,
                                                              c[-1].end_column)

    def scope_item(self, c):
        first = _word(c[0])
        if c[1] is None:
            return ScopeItem(first, None, first.span)
        last = _word(c[1])
        return ScopeItem(first, last, join_spans(first.span, last.span))

    def setting(self, c):
        return _setting(c[0], c[1])

    arg = setting

    def family(self, c):  # NAME, or NAME '(' setting ',' setting ... ')'
        name = _word(c[0])
        args = [s for s in c[2:-1:2] if s is not None]
        return FamilyItem(name, args, join_spans(name.span, _span(c[-1])))

    def sum_decl(self, c):
        options, partitions = c[2]
        options.reverse()  # sum_rest collects them innermost (last written) first
        return SumDecl(_span(c[0]), _word(c[1]), options, [words for words, _ in partitions],
                       [p for p, (_, elementwise) in enumerate(partitions) if elementwise])

    def sum_body(self, c):
        return [], c

    def sum_setting(self, c):
        c[2][0].append(_setting(c[0], c[1]))
        return c[2]

    def sum_flag(self, c):
        name = _word(c[0])
        c[1][0].append(FamilyItem(name, [], name.span))
        return c[1]

    def outer_partition(self, c):
        return [_word(t) for t in c], False

    def elementwise_partition(self, c):
        return [_word(t) for t in c[::2]], True

    def root_decl(self, c):
        return RootDecl(_span(c[0]), _word(c[1]))

    def tie_decl(self, c):
        return TieDecl(_span(c[0]), [_word(t) for t in c[1:]])

    def param_index(self, c):  # '[' INT ']'
        return _word(c[1]), _span(c[2])

    def param_decl(self, c):
        keyword, region, field, index, value = c
        region_word, field_word = _word(region), _word(field)
        target = join_spans(region_word.span, index[1] if index else field_word.span)
        if not isinstance(value, list):
            value = float(value.value)
        return ParamDecl(_span(keyword), region_word, field_word, index[0] if index else None, value,
                         target)

    def array(self, c):
        if c == [None]:
            return []
        return [x if x.__class__ is list else float(x.value) for x in c]
