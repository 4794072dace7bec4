"""The statements of a `.pc` file as written, before names are resolved.

`syntax` makes these from the text and `build` turns them into the IR. Every piece keeps the
`Span` of its text, so that errors found later can point at it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from ..ir import Span

Number = Union[int, float]
Array = Union[float, list]  # a number, or nested lists of numbers


@dataclass(slots=True)
class Word:
    """A name or an unsigned integer as written."""

    text: str
    span: Span

    @property
    def is_integer(self) -> bool:
        return self.text[0].isdigit()  # names never start with a digit


@dataclass(slots=True)
class Setting:
    """`key=value`: an option such as `k=4`, or a family argument such as `n=5`."""

    key: Word
    value: Number
    span: Span


@dataclass(slots=True)
class FamilyItem:
    """A leaf family: `bernoulli`, `categorical(n=5)`."""

    name: Word
    args: list[Setting]
    span: Span


Option = Union[Setting, FamilyItem]


@dataclass(slots=True)
class ScopeItem:
    """One variable (`x0`, `age`, `3`) or an inclusive range of them (`x0..x3`)."""

    first: Word
    last: Word | None
    span: Span


@dataclass(slots=True)
class Header:
    span: Span  # of the keyword, as for every statement
    version: Word


@dataclass(slots=True)
class VarsDecl:
    """`vars 4` (count) or `vars age sex income` (names)."""

    span: Span
    count: Word | None
    names: list[Word]
    end: Span  # of the last word


@dataclass(slots=True)
class LeafDecl:
    """`leaf FAMILY` (the default family) or `leaf FAMILY {SCOPE}` (the family of variables)."""

    span: Span
    family: FamilyItem
    scope: list[ScopeItem] | None = None
    scope_span: Span | None = None


@dataclass(slots=True)
class InputDecl:
    span: Span
    name: Word
    scope: list[ScopeItem]
    scope_span: Span  # from '{' to '}'
    options: list[Option]


@dataclass(slots=True)
class SumDecl:
    span: Span
    name: Word
    options: list[Option]
    partitions: list[list[Word]]
    elementwise: list[int]  # indices of the partitions written with `.*`


@dataclass(slots=True)
class RootDecl:
    span: Span
    name: Word


@dataclass(slots=True)
class ParamDecl:
    """`param region.field[index] = value`; `target` spans `region.field[index]`."""

    span: Span
    region: Word
    field: Word
    index: Word | None
    value: Array
    target: Span


@dataclass(slots=True)
class TieDecl:
    """`tie a b c`: regions sharing one set of parameters."""

    span: Span
    regions: list[Word]


Statement = Union[Header, VarsDecl, LeafDecl, InputDecl, SumDecl, RootDecl, ParamDecl, TieDecl]
