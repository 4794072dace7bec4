"""Statements -> the IR: variables, options, families and params resolved.

Only what the IR cannot hold is reported here (a name that is no variable, a missing `k`, a
second `vars` statement, ...); everything the IR can hold is left to `checks`, so each problem
is reported once, by one piece of code, whether the IR came from text or was built by hand.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

from ..families import FAMILIES
from ..ir import (Circuit, DefaultVarNames, Family, Input, LeafScope, Param, Span, Sum, Tie,
                  default_var_names)
from ..scopes import VarList
from .diagnostics import Reporter, did_you_mean, join_spans, line_of
from .naming import describe_vars
from .typos import misspelt_keyword, unknown_statement
from .statements import (FamilyItem, Header, InputDecl, LeafDecl, Option, ParamDecl, RootDecl,
                         ScopeItem, Setting, Statement, SumDecl, TieDecl, VarsDecl, Word)

MAX_VARS = 1_000_000
OPTIONS = ("k",)  # the settings a region takes (k, its number of units, is the only one)
_K_WITHOUT_EQUALS = re.compile(r"k[0-9]+")  # `k4` for `k=4`
_SINGULAR = {Header: "pc", VarsDecl: "vars", LeafDecl: "leaf", RootDecl: "root"}


@dataclass(frozen=True)
class SourceInfo:
    """What `checks` may know of a parsed source beyond the IR: places the IR keeps no span for,
    and what errors reported here left unknown (checks that need it are skipped, not repeated)."""

    version: Span | None = None
    vars: Span | None = None  # the `vars` statement, from its keyword to its last word
    var_names: tuple[Span, ...] = ()  # one per name of `vars a b c`
    root: Span | None = None
    vars_known: bool = True  # False: no usable `vars` statement
    doubtful: frozenset[str] = frozenset()  # regions whose scope or k is not known
    # variable names that start a line and look like a misspelt keyword: (span, name, keyword)
    misread: tuple[tuple[Span, str, str], ...] = ()


def build(statements: list[Statement], report: Reporter) -> tuple[Circuit, SourceInfo]:
    """The circuit the statements describe, as far as they do, and what `checks` needs to know."""
    return _Builder(report).build(statements)


def out_of_range(index: int, region: str, num_vars: int) -> str:
    """The message for a variable index past the last variable (shared with `checks`); `region`
    is an input's name, or a phrase for another owner of a scope (`` `leaf` on line 4 ``)."""
    last = f" (0..{num_vars - 1})" if num_vars else ""
    owner = f"input '{region}'" if " " not in region else region
    return (f"variable {index} in the scope of {owner} is out of range: the circuit has "
            f"{num_vars} variables{last}")


def leaf_scope_owner(scope: LeafScope) -> str:
    """How messages name a `leaf F {..}` statement."""
    where = f" on line {scope.span.line}" if scope.span is not None else ""
    return f"`leaf {scope.family} {{..}}`{where}"


class _Builder:
    def __init__(self, report: Reporter):
        self.report = report
        self.vars: tuple[str, ...] = ()
        self.var_index: dict[str, int] | DefaultVarNames = {}
        self.vars_known = False
        self.doubtful: set[str] = set()
        self._vars_text: str | None = None  # all variables, compressed, for unknown-var hints

    def build(self, statements: list[Statement]) -> tuple[Circuit, SourceInfo]:
        first = self._singular_statements(statements)
        vars_decl: VarsDecl | None = first.get(VarsDecl)
        self._declare_vars(vars_decl)
        header, leaf, root = first.get(Header), first.get(LeafDecl), first.get(RootDecl)
        regions: list[Input | Sum] = []
        params: list[Param] = []
        leaf_scopes: list[LeafScope] = []
        ties: list[Tie] = []
        region_names = {s.name.text for s in statements if isinstance(s, (InputDecl, SumDecl))}
        for s in statements:
            if isinstance(s, LeafDecl) and s.scope is not None:
                leaf_scopes.append(self._leaf_scope(s))
            elif isinstance(s, InputDecl):
                regions.append(self._input(s))
            elif isinstance(s, SumDecl):
                regions.append(self._sum(s))
            elif isinstance(s, ParamDecl):
                param = self._param(s)
                if param is not None:
                    params.append(param)
            elif isinstance(s, TieDecl):
                ties.append(self._tie(s, region_names))
        circuit = Circuit(
            vars=self.vars,
            regions=tuple(regions),
            root=root.name.text if root else "",
            leaf=_family(leaf.family) if leaf else None,
            params=weights_index_defaults(params, regions),
            version=int(header.version.text) if header else 1,
            leaf_scopes=tuple(leaf_scopes),
            ties=tuple(ties),
        )
        info = SourceInfo(
            version=header.version.span if header else None,
            vars=join_spans(vars_decl.span, vars_decl.end) if vars_decl else None,
            var_names=tuple(w.span for w in vars_decl.names) if vars_decl else (),
            root=root.name.span if root else None,
            vars_known=self.vars_known,
            doubtful=frozenset(self.doubtful),
            misread=self._misread(vars_decl.names) if vars_decl else (),
        )
        return circuit, info

    def _singular_statements(self, statements: list[Statement]) -> dict[type, Statement]:
        """The first `pc`, `vars`, `leaf` and `root` statement; reports repeats and a misplaced
        or missing header."""
        first: dict[type, Statement] = {}
        for s in statements:
            kind = type(s)
            if kind not in _SINGULAR or (kind is LeafDecl and s.scope is not None):
                continue
            if kind not in first:
                first[kind] = s
            elif kind is RootDecl:
                self.report.error("multiple-roots",
                                  f"more than one `root` statement{line_of(first[kind].span)}", s.span)
            else:
                self.report.error("duplicate-statement", f"duplicate `{_SINGULAR[kind]}` statement"
                                  f"{line_of(first[kind].span)}", s.span)
        if Header not in first:
            self.report.error("missing-header", "missing header: a .pc file must begin with `pc 1`",
                              statements[0].span if statements else None)
        elif statements[0] is not first[Header]:
            self.report.error("header-not-first", "the `pc` header must be the first statement",
                              first[Header].span)
        return first

    def _slip(self, word: Word) -> tuple[str, int, str] | None:
        """The misspelt keyword `word` is, when it starts its line looking like one (`typos`)."""
        line = self.report.source_line(word.span.line)
        slip = misspelt_keyword(line, False) if line is not None else None
        return slip if slip is not None and slip[1] == word.span.col else None

    def _misread(self, names: list[Word]) -> tuple[tuple[Span, str, str], ...]:
        """The names of a `vars` list that start a line looking like a misspelt keyword."""
        out = []
        for before, word in zip(names, names[1:]):
            slip = self._slip(word) if word.span.line != before.span.line else None
            if slip is not None:
                out.append((word.span, word.text, slip[2]))
        return tuple(out)

    def _declare_vars(self, decl: VarsDecl | None) -> None:
        if decl is None:
            self.report.error("missing-vars", "no `vars` statement: declare the variables, "
                              "e.g. `vars 4` or `vars age sex income`")
            return
        if decl.count is not None:
            n = int(decl.count.text)
            if n > MAX_VARS:
                self.report.error("too-many-vars", f"{n} variables are more than pcc supports ({MAX_VARS})",
                                  decl.count.span)
                return
            self.vars = default_var_names(n)
            self.var_index = self.vars  # looks names up without a dict entry per variable
        else:
            self.vars = tuple(w.text for w in decl.names)
            for i, name in enumerate(self.vars):
                self.var_index.setdefault(name, i)  # a repeated name is reported by the checker
        self.vars_known = True

    def _input(self, decl: InputDecl) -> Input:
        name = decl.name.text
        scope = self._scope(name, decl.scope)
        k, k_span, family = self._options(decl.options, "input", decl.name, takes_family=True)
        return Input(name, scope, k, family, decl.name.span, tuple(i.span for i in decl.scope), k_span)

    def _leaf_scope(self, decl: LeafDecl) -> LeafScope:
        owner = leaf_scope_owner(LeafScope(_family(decl.family), (), decl.span))
        scope = self._scope(owner, decl.scope)
        return LeafScope(_family(decl.family), tuple(scope), decl.span, tuple(i.span for i in decl.scope))

    def _sum(self, decl: SumDecl) -> Sum:
        k, k_span, _ = self._options(decl.options, "sum", decl.name, takes_family=False)
        return Sum(decl.name.text, k, tuple(tuple(w.text for w in part) for part in decl.partitions),
                   decl.name.span, tuple(tuple(w.span for w in part) for part in decl.partitions), k_span,
                   tuple(decl.elementwise))

    def _tie(self, decl: TieDecl, region_names: set[str]) -> Tie:
        """The tie's regions, up to a name that is no region and starts a line looking like a
        misspelt keyword: that is a statement (reported), not a region."""
        words = decl.regions
        for i, word in enumerate(words[1:], 1):
            slip = None if word.text in region_names or word.span.line == words[i - 1].span.line \
                else self._slip(word)
            if slip is not None:
                self.report.error("unknown-statement", unknown_statement(word.text, slip[2]),
                                  word.span)
                words = words[:i]
                break
        return Tie(tuple(w.text for w in words), decl.span, tuple(w.span for w in words))

    def _scope(self, region: str, items: list[ScopeItem]) -> VarList:
        """The variable indices of a scope as written, as runs (a range is one). Items that name no
        variable are left out (and reported), making the region doubtful."""
        runs: list[int] = []
        for item in items:
            if item.last is None:
                first = last = self._var(item.first, region, is_range_end=False)
                if first is None:
                    continue
            else:
                first = self._var(item.first, region, is_range_end=True)
                last = self._var(item.last, region, is_range_end=True)
                if first is None or last is None:
                    continue
                if last < first:
                    self.report.error("bad-range", f"range {item.first.text}..{item.last.text} runs backwards; "
                                      f"write {item.last.text}..{item.first.text}", item.span)
                    self.doubtful.add(region)
                    continue
            if runs and runs[-1] == first:
                runs[-1] = last + 1
            else:
                runs += (first, last + 1)
        return VarList(tuple(runs))

    def _var(self, word: Word, region: str, is_range_end: bool) -> int | None:
        """The index `word` stands for, or None (reported unless the variables are unknown). A bare
        index is checked here only as a range end (the checker checks the others)."""
        if not self.vars_known:
            self.doubtful.add(region)
            return None
        if word.is_integer:
            index = int(word.text)
            if is_range_end and index >= len(self.vars):
                self.report.error("var-out-of-range", out_of_range(index, region, len(self.vars)), word.span)
                self.doubtful.add(region)
                return None
            return index
        index = self.var_index.get(word.text) if isinstance(self.var_index, dict) else \
            self.var_index.index_of(word.text)
        if index is None:
            if self._vars_text is None:
                self._vars_text = describe_vars(range(len(self.vars)), self.vars)
            hint = did_you_mean(word.text, self.var_index) or f" (the variables are {self._vars_text})"
            self.report.error("unknown-var", f"unknown variable '{word.text}'{hint}", word.span)
            self.doubtful.add(region)
        return index

    def _options(self, options: list[Option], what: str, name: Word,
                 takes_family: bool) -> tuple[int, Span | None, Family | None]:
        """k (1 when missing or not whole, reported) and the leaf family of a region's options."""
        region = name.text
        k_setting: Setting | None = None
        family: FamilyItem | None = None
        k_reported = False
        for opt in options:
            slip = self._slip(opt.name) if isinstance(opt, FamilyItem) and not opt.args \
                and opt.name.text not in FAMILIES else None
            if slip is not None:  # this option and the rest are a statement misspelt
                self.report.error("unknown-statement", unknown_statement(opt.name.text, slip[2]),
                                  opt.span)
                break
            if isinstance(opt, Setting):
                if opt.key.text != "k":
                    self.report.error("unknown-option", f"unknown option '{opt.key.text}' for {what} "
                                      f"'{region}'{did_you_mean(opt.key.text, OPTIONS)}", opt.key.span)
                elif k_setting is not None:
                    self.report.error("duplicate-option", f"k is given twice for {what} '{region}'", opt.span)
                else:
                    k_setting = opt
            elif opt.name.text == "k" and not opt.args:
                self.report.error("missing-k", "k needs a value, e.g. k=4", opt.span)
                k_reported = True
            elif _K_WITHOUT_EQUALS.fullmatch(opt.name.text) and not opt.args:
                self.report.error("missing-k", f"'{opt.name.text}' is not an option; did you mean "
                                  f"'k={opt.name.text[1:]}'?", opt.span)
                k_reported = True
            elif not takes_family:
                self.report.error("unknown-option", f"a sum takes no leaf family: remove '{opt.name.text}' "
                                  f"from sum '{region}'", opt.span)
            elif family is not None:
                self.report.error("duplicate-option", f"input '{region}' has a second leaf family "
                                  f"'{opt.name.text}'", opt.span)
            else:
                family = opt
        k = 1
        if k_setting is None:
            if not k_reported:
                self.report.error("missing-k", f"{what} '{region}' needs k, its number of units, e.g. k=4",
                                  name.span)
            self.doubtful.add(region)
        elif not isinstance(k_setting.value, int):
            self.report.error("bad-k", f"k of {what} '{region}' must be a whole number, got "
                              f"{k_setting.value!r}", k_setting.span)
            self.doubtful.add(region)
        else:
            k = k_setting.value
        return k, k_setting.span if k_setting else None, _family(family) if family else None

    def _param(self, decl: ParamDecl) -> Param | None:
        flat = _flatten(decl.value)
        if isinstance(flat, str):
            target = f"{decl.region.text}.{decl.field.text}" + (f"[{decl.index.text}]" if decl.index else "")
            self.report.error("param-ragged", f"param {target} is not a rectangular array: {flat}",
                              decl.target)
            return None
        shape, values = flat
        return Param(decl.region.text, decl.field.text, int(decl.index.text) if decl.index else None,
                     shape, values, decl.target)


def _family(item: FamilyItem) -> Family:
    return Family(item.name.text, tuple((a.key.text, a.value) for a in item.args), item.span)


def weights_index_defaults(params: list[Param], regions: list[Input | Sum]) -> tuple[Param, ...]:
    """`r.weights` written without an index means partition 0 when `r` has one partition."""
    single = {r.name for r in regions if isinstance(r, Sum) and len(r.partitions) == 1}
    return tuple(dataclasses.replace(p, index=0)
                 if p.field == "weights" and p.index is None and p.region in single else p
                 for p in params)


def _flatten(value) -> tuple[tuple[int, ...], tuple[float, ...]] | str:
    """Shape and row-major values of a number or nested lists, or why they are not rectangular."""
    if not isinstance(value, list):
        return (), (value,)
    shape: list[int] = []
    level = [value]
    while True:
        n = len(level[0])
        if any(len(x) != n for x in level):
            return f"the lists at depth {len(shape) + 1} differ in length"
        shape.append(n)
        flat = [y for x in level for y in x]
        lists = sum(1 for y in flat if isinstance(y, list))
        if lists == 0:
            return tuple(shape), tuple(flat)
        if lists != len(flat):
            return f"the lists at depth {len(shape)} hold both numbers and lists"
        level = flat
