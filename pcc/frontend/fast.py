"""A fast path for well-formed `.pc` text: one regular expression per statement, straight to the IR.

`read_fast` takes text it can read without doubt and returns None at the first doubt (a statement
it does not recognize, a name it cannot resolve, anything the full path would report); the caller
then reads the text with the full parser (`syntax` + `builder`), which reports every problem, so
messages never depend on which path ran. What it returns equals what the full path builds, with
each statement's own span (for `pcc fmt` and later messages) but not the spans of its parts
(scope items, children, options): a circuit it returns is only used if the checker finds nothing
to say about it.

The terminals' patterns come from the grammar (`pc.lark`); every token is matched whole (a name
or number is never followed by a character that would extend it), so the statements match
exactly the token sequences the grammar reads. Costs: a few regular expression calls and string
splits per statement, one float per number of a param; no object per token.
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Callable

from ..ir import (Circuit, DefaultVarNames, Family, Input, LeafScope, Param, Span, Sum, Tie,
                  default_var_names)
from ..scopes import VarList
from .builder import MAX_VARS, weights_index_defaults
from .naming import RESERVED_WORDS
from .syntax import number, terminal_patterns

_WS_CHARS = " \t\f\r\n"
_DROP_WS = str.maketrans("", "", _WS_CHARS)
_DROP_BRACKETS = str.maketrans("", "", "[]")
_NOT_PUNCTUATION = re.compile(r"[^\[\],]+")


@dataclass(frozen=True)
class _Patterns:
    statement_start: re.Pattern
    keyword: re.Pattern
    outside: re.Pattern
    comment: re.Pattern
    header: re.Pattern
    vars_count: re.Pattern
    vars_names: re.Pattern
    name: re.Pattern
    leaf: re.Pattern
    leaf_scope: re.Pattern
    family: re.Pattern
    input: re.Pattern
    option: re.Pattern
    sum: re.Pattern
    binary_sum: re.Pattern
    root: re.Pattern
    param: re.Pattern
    scalar: re.Pattern
    tie: re.Pattern
    numbers: re.Pattern
    spaced_number: re.Pattern


@functools.cache
def _patterns() -> _Patterns:
    t = terminal_patterns()
    keywords = "|".join(RESERVED_WORDS)
    _ = f"(?:{t['WS']})?"  # optional whitespace between tokens
    name = f"(?:{t['NAME']})(?![A-Za-z0-9_])"
    # an integer or number ends where the lexer's would: not followed by what would extend it
    end = r"(?![0-9]|\.[0-9]|[eE][+-]?[0-9])"
    integer = f"(?:{t['INT']}){end}"
    num = f"(?:{_plain(t['FLOAT'])}|{t['INT']}){end}"
    setting = f"{name}{_}={_}{num}"
    family = rf"{name}(?:{_}\({_}(?:{setting}(?:{_},{_}{setting})*)?{_}\))?"
    item = f"(?:{name}|{integer})(?:{_}\\.\\.{_}(?:{name}|{integer}))?"
    outer = rf"{name}(?:{_}\*{_}{name})*"
    elementwise = rf"{name}(?:{_}\.\*{_}{name})+"
    partition = f"(?:{outer}|{elementwise})"
    binary = rf"{name}{_}\*{_}{name}"
    close = f"{_}\\Z"
    return _Patterns(
        statement_start=re.compile(rf"^[ \t\f\r]*({keywords})(?![A-Za-z0-9_])", re.M),
        # a keyword anywhere (after digits too: `2sum` is a number and a keyword)
        keyword=re.compile(rf"(?<![A-Za-z_])(?:{keywords})(?![A-Za-z0-9_])"),
        outside=re.compile(r"[^\x20-\x7e\t\n\r\f]"),
        comment=re.compile(t["COMMENT"]),
        header=re.compile(rf"pc{_}({integer}){close}"),
        vars_count=re.compile(rf"vars{_}({integer}){close}"),
        vars_names=re.compile(rf"vars((?:{_}{name})+){close}"),
        name=re.compile(name),
        leaf=re.compile(rf"leaf{_}({family}){close}"),
        leaf_scope=re.compile(rf"leaf{_}({family}){_}\{{{_}((?:{item}(?:{_},{_}{item})*)?){_}\}}"
                              rf"{close}"),
        family=re.compile(rf"({name})(?:{_}\({_}(.*?){_}\))?\Z", re.S),
        input=re.compile(rf"input{_}({name}){_}\{{{_}((?:{item}(?:{_},{_}{item})*)?){_}\}}"
                         rf"((?:{_}(?:{setting}|{family}))*){close}"),
        option=re.compile(rf"{_}(?:({name}){_}={_}({num})|({family}))"),
        sum=re.compile(rf"sum{_}({name})((?:{_}(?:{setting}|{name}))*){_}={_}"
                       rf"({partition}(?:{_}\|{_}{partition})*){close}"),
        binary_sum=re.compile(rf"sum{_}({name})((?:{_}(?:{setting}|{name}))*){_}={_}"
                              rf"({binary}(?:{_}\|{_}{binary})*){close}"),
        root=re.compile(rf"root{_}({name}){close}"),
        param=re.compile(rf"param{_}({name}){_}\.{_}({name})(?:{_}\[{_}({integer}){_}(\]))?{_}={_}"),
        scalar=re.compile(rf"({num}){close}"),
        tie=re.compile(rf"tie((?:{_}{name})+){close}"),
        numbers=re.compile(rf"{num}(?:,{num})*\Z"),
        spaced_number=re.compile(rf"[0-9.eE+-]{t['WS']}[0-9.eE+-]"),
    )


def _plain(pattern: str) -> str:
    """`pattern` with its groups made non-capturing."""
    return re.sub(r"\((?!\?)", "(?:", pattern)


class _Doubt(Exception):
    """Raised inside the fast path: leave this text to the full parser."""


def read_fast(text: str) -> Circuit | None:
    """The circuit of `text` if the fast path reads it without doubt, else None (see the module
    doc). The result has no comments, path or source yet."""
    try:
        return _Reader(_patterns()).read(text)
    except _Doubt:
        return None


class _Reader:
    def __init__(self, patterns: _Patterns):
        self.p = patterns
        self.text_names: dict[str, str] = {}  # one string object per distinct name
        self.families: dict[str, Family] = {}
        self.vars: tuple[str, ...] | DefaultVarNames | None = None
        self.lookup: Callable[[str], int | None] = lambda word: None

    def read(self, text: str) -> Circuit:
        p = self.p
        code = p.comment.sub("", text)
        if p.outside.search(code):
            raise _Doubt
        starts = [(m.start(1), m.group(1)) for m in p.statement_start.finditer(code)]
        if not starts or starts[0][1] != "pc" or code[:starts[0][0]].strip(_WS_CHARS):
            raise _Doubt  # the header is not first
        if sum(map(code.count, RESERVED_WORDS)) != len(starts) and \
                len(p.keyword.findall(code)) != len(starts):
            raise _Doubt  # a keyword that does not begin a line
        seen: dict[str, object] = {}
        regions: list[Input | Sum] = []
        params: list[Param] = []
        leaf_scopes: list[LeafScope] = []
        ties: list[Tie] = []
        line = 1
        ends = [s for s, _ in starts[1:]] + [len(code)]
        previous = 0
        for (start, keyword), stop in zip(starts, ends):
            line += code.count("\n", previous, start)
            previous = start
            at = (line, start - code.rfind("\n", 0, start))  # the keyword's line and column
            statement = code[start:stop]
            if keyword in ("input", "sum"):
                if self.vars is None:
                    raise _Doubt  # regions before `vars`: the full parser tells what is missing
                regions.append(self._input(statement, at) if keyword == "input" else self._sum(statement, at))
            elif keyword == "param":
                params.append(self._param(statement, at))
            elif keyword == "leaf" and "{" in statement:
                if self.vars is None:
                    raise _Doubt
                leaf_scopes.append(self._leaf_scope(statement, at))
            elif keyword == "tie":
                names = tuple(map(self._name, p.name.findall(_match(p.tie, statement).group(1))))
                ties.append(Tie(names, Span(at[0], at[1], at[0], at[1] + len("tie"))))
            elif keyword in seen:
                raise _Doubt
            else:
                seen[keyword] = self._singular(keyword, statement)
        if "vars" not in seen or "root" not in seen:
            raise _Doubt
        if ties and not {n for tie in ties for n in tie.regions} <= {r.name for r in regions}:
            raise _Doubt  # a tie of a name that is no region (or a misspelt keyword after one)
        return Circuit(vars=self.vars, regions=tuple(regions), root=seen["root"], leaf=seen.get("leaf"),
                       params=weights_index_defaults(params, regions), version=seen["pc"],
                       leaf_scopes=tuple(leaf_scopes), ties=tuple(ties))

    def _leaf_scope(self, statement: str, at: tuple[int, int]) -> LeafScope:
        """`leaf FAMILY {SCOPE}` (its span: the keyword's, as the full path gives it)."""
        m = _match(self.p.leaf_scope, statement)
        return LeafScope(self._family(m.group(1)), tuple(self._scope(m.group(2))),
                         Span(at[0], at[1], at[0], at[1] + len("leaf")))

    def _singular(self, keyword: str, statement: str):
        p = self.p
        if keyword == "pc":
            return int(_match(p.header, statement).group(1))
        if keyword == "root":
            return self._name(_match(p.root, statement).group(1))
        if keyword == "leaf":
            return self._family(_match(p.leaf, statement).group(1))
        count = p.vars_count.match(statement)
        if count is not None:
            n = int(count.group(1))
            if n > MAX_VARS:
                raise _Doubt
            self.vars = default_var_names(n)
            self.lookup = self.vars.index_of
            return True
        names = tuple(p.name.findall(_match(p.vars_names, statement).group(1)))
        index: dict[str, int] = {}
        for i, word in enumerate(names):
            index.setdefault(word, i)
        self.vars, self.lookup = names, index.get
        return True

    def _input(self, statement: str, at: tuple[int, int]) -> Input:
        m = _match(self.p.input, statement)
        k, family = self._options(m.group(3), takes_family=True)
        return Input(self._name(m.group(1)), self._scope(m.group(2)), k, family, _span(statement, m, at, 1))

    def _scope(self, items: str) -> VarList:
        """As `builder._scope`, for items that all resolve (else a doubt)."""
        runs: list[int] = []
        for item in items.split(",") if items else ():
            first, _, last = item.partition("..")
            first = self._var(first.strip(_WS_CHARS), is_range_end=bool(last))
            last = first if not last else self._var(last.strip(_WS_CHARS), is_range_end=True)
            if last < first:
                raise _Doubt
            if runs and runs[-1] == first:
                runs[-1] = last + 1
            else:
                runs += (first, last + 1)
        return VarList(tuple(runs))

    def _var(self, word: str, is_range_end: bool) -> int:
        if word[0].isdigit():
            index = int(word)
            if is_range_end and index >= len(self.vars):
                raise _Doubt
            return index
        index = self.lookup(word)
        if index is None:
            raise _Doubt
        return index

    def _sum(self, statement: str, at: tuple[int, int]) -> Sum:
        m = self.p.binary_sum.match(statement)  # every partition `a * b`, as in PD and RAT circuits
        names, intern = self.p.name.findall, self.text_names.setdefault
        if m is not None:
            words = names(m.group(3))
            pairs = iter(map(intern, words, words))
            partitions, elementwise = tuple(zip(pairs, pairs)), ()
        else:
            m = _match(self.p.sum, statement)
            parts = m.group(3).split("|")
            partitions = tuple(tuple(map(intern, words, words)) for words in map(names, parts))
            elementwise = tuple(p for p, part in enumerate(parts) if ".*" in part) if ".*" in m.group(3) else ()
        k, _ = self._options(m.group(2), takes_family=False)
        return Sum(self._name(m.group(1)), k, partitions, _span(statement, m, at, 1), elementwise=elementwise)

    def _options(self, text: str, takes_family: bool) -> tuple[int, Family | None]:
        """k and the family of a region's options, as `builder._options` reads them when it
        reports nothing."""
        k = family = None
        for m in self.p.option.finditer(text):
            key, value, item = m.groups()
            if item is not None:
                if not takes_family or family is not None or item == "k":
                    raise _Doubt
                family = self._family(item)
            elif key != "k" or k is not None:
                raise _Doubt
            else:
                k = number(value)
                if type(k) is not int:
                    raise _Doubt
        if k is None:
            raise _Doubt
        return k, family

    def _family(self, text: str) -> Family:
        family = self.families.get(text)
        if family is None:
            name, args = _match(self.p.family, text).groups()
            settings = []
            for arg in args.split(",") if args else ():
                key, _, value = arg.partition("=")
                settings.append((key.strip(_WS_CHARS), number(value.strip(_WS_CHARS))))
            family = self.families[text] = Family(name, tuple(settings))
        return family

    def _param(self, statement: str, at: tuple[int, int]) -> Param:
        p = self.p
        m = _match(p.param, statement)
        value = statement[m.end():]
        scalar = p.scalar.match(value)
        if scalar is not None:
            shape, values = (), (float(scalar.group(1)),)
        else:
            shape, values = self._array(value)
        target = _span(statement, m, at, 1, 4 if m.group(4) else 2)
        index = m.group(3)
        return Param(self._name(m.group(1)), self._name(m.group(2)), None if index is None else int(index),
                     shape, values, target)

    def _array(self, text: str) -> tuple[tuple[int, ...], tuple[float, ...]]:
        """Shape and row-major values of a rectangular, non-empty nested array of numbers: with
        whitespace dropped (never between two numbers), the numbers must be numbers and the
        skeleton (each number made `0`) must be the one the shape gives."""
        if self.p.spaced_number.search(text):
            raise _Doubt
        compact = text.translate(_DROP_WS)
        skeleton = _NOT_PUNCTUATION.sub("0", compact)
        if not skeleton.startswith("[") or "[]" in skeleton:
            raise _Doubt
        sizes, rest = [], skeleton  # innermost first
        while rest != "0":
            width = rest.find("]")
            if width < 0 or len(sizes) > skeleton.count("["):
                raise _Doubt
            size = rest.count("0", 0, width)
            sizes.append(size)
            rest = rest.replace("[" + ",".join("0" * size) + "]", "0")
        expected = "0"
        for size in sizes:
            expected = "[" + ",".join([expected] * size) + "]"
        numbers = compact.translate(_DROP_BRACKETS)
        if expected != skeleton or not self.p.numbers.match(numbers):
            raise _Doubt
        return tuple(reversed(sizes)), tuple(map(float, numbers.split(",")))

    def _name(self, word: str) -> str:
        return self.text_names.setdefault(word, word)


def _match(pattern: re.Pattern, statement: str) -> re.Match:
    m = pattern.match(statement)
    if m is None:
        raise _Doubt
    return m


def _span(statement: str, m: re.Match, at: tuple[int, int], first: int, last: int | None = None) -> Span:
    """The span of groups `first` .. `last` of a match in a statement whose keyword is at `at`
    (line, column)."""
    return Span(*_place(statement, m.start(first), at), *_place(statement, m.end(last or first), at))


def _place(statement: str, pos: int, at: tuple[int, int]) -> tuple[int, int]:
    """(line, column) of position `pos` of a statement whose keyword is at `at`."""
    newlines = statement.count("\n", 0, pos)
    if not newlines:
        return at[0], at[1] + pos
    return at[0] + newlines, pos - statement.rfind("\n", 0, pos)
