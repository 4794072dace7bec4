"""Structural checks on a circuit's IR, parsed (spans give carets) or built by hand (messages name
the region). Every check is linear in the size of the circuit."""
from __future__ import annotations

import math
from itertools import chain

import numpy as np

from ..errors import Diagnostic
from ..families import FAMILIES, family_spec
from ..ir import Circuit, DefaultVarNames, Family, Input, LeafScope, Param, Span, Sum, Tie
from ..scopes import Scope, VarList, fingerprints, is_canonical
from .builder import SourceInfo, leaf_scope_owner, out_of_range
from .diagnostics import Reporter, did_you_mean, format_shape, join_spans, line_of
from .naming import RESERVED_WORDS, describe_vars, is_name, var_label

ROW_TOLERANCE = 1e-6  # |sum of a row - 1| allowed for weights, mixing and probs
_DONE = object()


def validate(circuit: Circuit) -> list[Diagnostic]:
    """Every problem of `circuit` (warnings too), in source order."""
    report = Reporter(circuit.path, circuit.source)
    check(circuit, report)
    return report.sorted()


def check(circuit: Circuit, report: Reporter, info: SourceInfo = SourceInfo()) -> None:
    """Report the problems of `circuit`; `info` tells what parsing knew (see `SourceInfo`)."""
    _Checker(circuit, report, info).run()


class _Checker:
    def __init__(self, circuit: Circuit, report: Reporter, info: SourceInfo):
        self.c = circuit
        self.report = report
        self.info = info
        self.regions: dict[str, Input | Sum] = {}  # the first definition of each name
        self.children: dict[str, list[str]] = {}  # of each region, those that are regions
        self.unusable_family: set[str] = set()  # inputs whose family was reported
        self.duplicated: set[str] = set()  # region names defined twice: which one is meant is unknown
        self.odd_scope: set[str] = set()  # inputs whose scope holds something other than indices
        self.dangling = False  # some sum uses an unknown region: reachability is uncertain
        self.unusable_vars: set[int] = set()  # variables whose `leaf F {..}` family was reported
        self.vars_ambiguous = False  # a variable name is declared twice
        self.reached: set[str] | None = None

    def run(self) -> None:
        if self.c.version != 1:
            self.report.error("unsupported-version", f"unsupported format version {self.c.version}; "
                              "this pcc reads version 1 (`pc 1`)", self.info.version)
        self._vars()
        leaf_ok = self.c.leaf is None or self._family(self.c.leaf, "the `leaf` default")
        self._leaf_scopes()
        for r in self.c.regions:
            self._region(r, leaf_ok)
        self.children = {name: self._known_children(r) for name, r in self.regions.items()}
        self._elementwise_k()
        order = None if self.report.has_errors else self._file_order()
        if order is not None and self._verified(order):
            self._root(None)
        else:
            order = self._acyclic_order()
            self._root(self._scopes(order))
        self._family_conflicts()
        self._joint_sizes()
        self._ties()
        self._params()

    def _known_children(self, r: Input | Sum) -> list[str]:
        """The children of a region that are regions, partition by partition."""
        if r.__class__ is not Sum:
            return []
        if not self.dangling:  # every child is a region
            return list(chain.from_iterable(r.partitions))
        return [c for part in r.partitions for c in part if c in self.regions]

    # ------------------------------------------------------------------ variables and regions

    def _vars(self) -> None:
        names, spans = self.c.vars, self.info.var_names
        if not names and self.info.vars_known:
            self.report.error("no-vars", "the circuit has no variables", self.info.vars)
        if isinstance(names, DefaultVarNames):
            return  # x0 .. x{N-1}: names, all different
        first: dict[str, int] = {}
        for i, name in enumerate(names):
            span = spans[i] if i < len(spans) else self.info.vars
            self._name(name, "variable", span)
            if name in first:
                self.vars_ambiguous = True
                self.report.error("duplicate-var", f"variable '{name}' is declared twice "
                                  f"(positions {first[name]} and {i})", span)
            else:
                first[name] = i

    def _name(self, name: str, what: str, span: Span | None) -> None:
        if not is_name(name):
            self.report.error("bad-name", f"{what} name {name!r} is not a name: use letters, digits "
                              "and '_', not starting with a digit", span)
        elif name in RESERVED_WORDS:
            self.report.error("reserved-word", f"'{name}' is a reserved word and cannot name a {what}", span)

    def _region(self, r: Input | Sum, leaf_ok: bool) -> None:
        self._name(r.name, "region", r.span)
        if r.name in self.regions:
            self.duplicated.add(r.name)
            self.report.error("duplicate-region", f"region '{r.name}' is defined twice"
                              f"{line_of(self.regions[r.name].span)}", r.span)
            return
        self.regions[r.name] = r
        what = "input" if isinstance(r, Input) else "sum"
        if type(r.k) is not int:
            self.report.error("bad-k", f"k of {what} '{r.name}' must be a whole number, got {r.k!r}",
                              r.k_span or r.span)
        elif r.k < 1:
            self.report.error("bad-k", f"k of {what} '{r.name}' must be at least 1, got {r.k}",
                              r.k_span or r.span)
        if isinstance(r, Input):
            self._input(r, leaf_ok)
        else:
            self._sum(r)

    def _input(self, r: Input, leaf_ok: bool) -> None:
        if not r.scope and r.name not in self.info.doubtful:
            self.report.error("empty-scope", f"input '{r.name}' has an empty scope", r.span)
        if not self._scope_is_clean(r.scope):
            self._scope_items(r)
        if r.family is not None:
            if not self._family(r.family, f"input '{r.name}'"):
                self.unusable_family.add(r.name)
            return
        declared = self.c.declared_families
        undeclared = [v for v in r.scope if v not in declared] if declared else r.scope
        if self.c.leaf is None and (undeclared or not r.scope):
            if len(undeclared) == len(r.scope):
                self.report.error("missing-family", f"input '{r.name}' has no leaf family: name one after "
                                  "its k (e.g. `k=4 bernoulli`) or set a default with `leaf`", r.span)
            else:
                vs = describe_vars([v for v in undeclared if type(v) is int], self.c.vars)
                self.report.error("missing-family", f"input '{r.name}' has no leaf family for {vs}: "
                                  f"give one with `leaf FAMILY {{{vs}}}`, name one after the input's k, "
                                  "or set a default with `leaf`", r.span)
            self.unusable_family.add(r.name)
        elif (undeclared and not leaf_ok) or (self.unusable_vars
                                              and self.unusable_vars.intersection(r.scope)):
            self.unusable_family.add(r.name)

    def _scope_is_clean(self, scope) -> bool:
        """Whether a scope holds only variable indices in range, each once (checked on its runs)."""
        if not isinstance(scope, VarList):
            return False
        runs = scope.runs
        return not runs or (min(runs[0::2]) >= 0 and max(runs[1::2]) <= len(self.c.vars)
                            and (is_canonical(runs) or len(scope.as_scope()) == len(scope)))

    def _scope_items(self, r: Input) -> None:
        """Report each scope item that is no variable index, out of range or repeated."""
        spans = r.scope_spans or ()
        n = len(self.c.vars)
        seen: set[int] = set()
        for pos, v in enumerate(r.scope):
            if type(v) is int and 0 <= v < n and v not in seen:
                seen.add(v)
                continue
            span = spans[pos] if len(spans) == len(r.scope) else \
                join_spans(spans[0], spans[-1]) if spans else r.span
            if type(v) is not int:
                self.odd_scope.add(r.name)
                self.report.error("var-out-of-range", f"the scope of input '{r.name}' holds {v!r}, "
                                  "which is not a variable index", span)
            elif not 0 <= v < n:
                if self.info.vars_known and n:
                    self.report.error("var-out-of-range", out_of_range(v, r.name, n), span)
            elif v in seen:
                self.report.error("duplicate-scope-var", f"variable {var_label(v, self.c.vars)} appears "
                                  f"twice in the scope of input '{r.name}'", span)
            seen.add(v)

    def _family(self, family: Family, owner: str) -> bool:
        """Check a family and its arguments; whether it is usable."""
        spec = family_spec(family.name)
        if spec is None:
            hint = did_you_mean(family.name, FAMILIES) or f" (known: {', '.join(FAMILIES)})"
            self.report.error("unknown-family", f"unknown leaf family '{family.name}' for {owner}{hint}",
                              family.span)
            return False
        problems = []
        given: set[str] = set()
        for key, value in family.args:
            if key in given:
                problems.append(f"argument {key} of {family.name} is given twice")
            elif key not in spec.int_args:
                takes = f"it takes {', '.join(spec.int_args)}" if spec.int_args else "it takes no arguments"
                problems.append(f"unknown argument '{key}' for {family.name}; {takes}")
            elif type(value) is not int or value < spec.arg_min:
                problems.append(f"{key} of {family.name} must be a whole number >= {spec.arg_min}, "
                                f"got {value!r}")
            given.add(key)
        problems += [f"{family.name} needs {key}, e.g. {family.name}({key}={max(spec.arg_min, 4)})"
                     for key in spec.int_args if key not in given]
        for problem in problems:
            self.report.error("bad-family-args", f"{problem} (in {owner})", family.span)
        return not problems

    def _leaf_scopes(self) -> None:
        """`leaf F {vars}`: a usable family, a scope of variables, each given one family."""
        n = len(self.c.vars)
        first: dict[int, LeafScope] = {}
        for scope in self.c.leaf_scopes:
            owner = leaf_scope_owner(scope)
            usable = self._family(scope.family, owner)
            spans = scope.scope_spans or ()
            if not scope.scope and not spans:
                self.report.error("empty-scope", f"{owner} has an empty scope", scope.span)
            for pos, v in enumerate(scope.scope):
                span = spans[pos] if len(spans) == len(scope.scope) else scope.span
                if type(v) is not int or not 0 <= v < n:
                    if self.info.vars_known and n:
                        self.report.error("var-out-of-range", out_of_range(v, owner, n), span)
                    continue
                if not usable:
                    self.unusable_vars.add(v)
                other = first.setdefault(v, scope)
                if other.family != scope.family:
                    self.report.error("family-conflict", f"variable {var_label(v, self.c.vars)} is "
                                      f"{scope.family} in {owner} but {other.family} in "
                                      f"{leaf_scope_owner(other)}", span)

    def _sum(self, r: Sum) -> None:
        if r.partitions and all(r.partitions) and all(map(self.c.by_name.__contains__, chain.from_iterable(r.partitions))):
            return  # the usual case, checked at once
        if not r.partitions:
            self.report.error("empty-partition", f"sum '{r.name}' has no partitions", r.span)
        for p, part in enumerate(r.partitions):
            if not part:
                self.report.error("empty-partition", f"sum '{r.name}' has an empty partition (index {p})",
                                  r.span)
            for i, child in enumerate(part):
                if child not in self.c.by_name:
                    self.dangling = True
                    self.report.error("unknown-region", f"sum '{r.name}' uses unknown region '{child}'"
                                      f"{did_you_mean(child, self.c.by_name)}", _child_span(r, p, i))

    def _elementwise_k(self) -> None:
        """The children of an element-wise product must all have the same number of units."""
        for r in self.regions.values():
            if not isinstance(r, Sum):
                continue
            for p in r.elementwise:
                if p >= len(r.partitions):
                    self.report.error("bad-elementwise", f"sum '{r.name}' marks partition {p} as "
                                      f"element-wise but has {_count(len(r.partitions), 'partition')}",
                                      r.span)
                    continue
                known = [(i, c) for i, c in enumerate(r.partitions[p]) if c in self.regions
                         and c not in self.info.doubtful and c not in self.duplicated]
                odd = next(((i, c) for i, c in known if self.regions[c].k != self.regions[known[0][1]].k),
                           None)
                if odd is not None:
                    ks = ", ".join(f"'{c}' has k={self.regions[c].k}" for _, c in known)
                    self.report.error("elementwise-k", f"element-wise product {r.partition_text(p)} in "
                                      f"sum '{r.name}' needs children with the same k: {ks}",
                                      _child_span(r, p, odd[0]))

    # ------------------------------------------------------------------ graph structure

    def _acyclic_order(self) -> list[str]:
        """Regions, children before parents (depth-first); reports each cycle once."""
        order: list[str] = []
        state: dict[str, int] = {}  # 1: on the current path, 2: done
        reported: set[frozenset[str]] = set()
        for start in self.regions:
            if start in state:
                continue
            state[start] = 1
            stack = [(start, iter(self.children[start]))]
            while stack:
                name, children = stack[-1]
                child = next(children, _DONE)
                if child is _DONE:
                    stack.pop()
                    state[name] = 2
                    order.append(name)
                elif state.get(child) == 1:
                    path = [n for n, _ in stack]
                    cycle = path[path.index(child):] + [child]
                    if frozenset(cycle) not in reported:
                        reported.add(frozenset(cycle))
                        parent = self.regions[name]
                        self.report.error("cycle", f"cycle in the region graph: {' -> '.join(cycle)}",
                                          _child_span(parent, *_position(parent, child)))
                elif child not in state:
                    state[child] = 1
                    stack.append((child, iter(self.children[child])))
        return order

    def _verified(self, order: list[str]) -> bool:
        """Whether every region is decomposable and smooth and the root covers every variable,
        shown by scope fingerprints (`pcc.scopes.fingerprints`) in time linear in the circuit,
        without computing a scope. False leaves it to `_scopes`, which says what is wrong.

        Each sum gets the fingerprint of its first partition's multiset union (the sum of its
        children's). If every other partition of a sum has its sum's, the root's is that of every
        variable once, and every region is reachable from the root, then (but for a chance below
        2^-100 per comparison) every multiset on the way down from the root is a set: no product
        shares a variable and all partitions of a sum cover the same variables. `order` lists
        children before parents."""
        root = self.c.root
        if root not in self.regions or len(self._reached()) != len(self.regions):
            return False
        inputs = [r for r in self.regions.values() if r.__class__ is Input]
        hashes, whole = fingerprints([r.scope for r in inputs], len(self.c.vars))
        fingerprint = dict(zip((r.name for r in inputs), hashes))
        of = fingerprint.__getitem__
        for name in order:
            r = self.regions[name]
            if r.__class__ is Sum:
                fingerprint[name] = sum(map(of, r.partitions[0]))
        for r in self.regions.values():
            if r.__class__ is Sum and len(r.partitions) > 1 and any(
                    sum(map(of, part)) != fingerprint[r.name] for part in r.partitions[1:]):
                return False
        return fingerprint[root] == whole

    def _file_order(self) -> list[str] | None:
        """The regions in file order if each sum comes after its children (then there is no
        cycle), else None."""
        position = {name: i for i, name in enumerate(self.regions)}
        at = position.__getitem__
        for i, children in enumerate(self.children.values()):
            if children and max(map(at, children)) >= i:
                return None
        return list(self.regions)

    def _reached(self) -> set[str]:
        """The regions reachable from the root (computed once; `Circuit.reachable` where a name is
        defined twice, as it follows the last definition)."""
        if self.reached is None and self.duplicated:
            self.reached = self.c.reachable()
        if self.reached is None:
            reached, todo, children = {self.c.root}, [self.c.root], self.children
            while todo:
                for child in children.get(todo.pop(), ()):
                    if child not in reached:
                        reached.add(child)
                        todo.append(child)
            self.reached = reached
        return self.reached

    def _scopes(self, order: list[str]) -> dict[str, Scope | None]:
        """Scope of each region (None where unknown: on a cycle, doubtful, or below a problem);
        reports products that are not decomposable and sums that are not smooth."""
        scopes: dict[str, Scope | None] = {}
        unknown = self.info.doubtful | self.duplicated | self.odd_scope
        for name in order:
            r = self.regions[name]
            if name in unknown:
                scopes[name] = None
            elif r.__class__ is Input:
                scopes[name] = r.scope.as_scope()
            else:
                scopes[name] = self._sum_scope(r, scopes)
        return scopes

    def _sum_scope(self, r: Sum, scopes: dict[str, Scope | None]) -> Scope | None:
        """The scope of a sum, None if unknown or if it is not smooth (each partition checked)."""
        first: tuple[int, Scope] | None = None
        complete, smooth = True, True
        for p, part in enumerate(r.partitions):
            child_scopes = [scopes.get(child) for child in part]
            if not part or None in child_scopes:
                complete = False
                continue
            union = Scope.union(child_scopes)
            if len(part) > 1 and sum(map(len, child_scopes)) != len(union):
                self._not_decomposable(r, p, child_scopes)
            if first is None:
                first = (p, union)
            elif union != first[1]:
                smooth = False
                self._not_smooth(r, *first, p, union)
        return first[1] if first is not None and complete and smooth else None

    def _not_smooth(self, r: Sum, p: int, scope_p: Scope, q: int, scope_q: Scope) -> None:
        a, b = r.partition_text(p), r.partition_text(q)
        only = [f"only {text} has {describe_vars(vs, self.c.vars)}"
                for text, vs in ((a, scope_p - scope_q), (b, scope_q - scope_p)) if vs]
        self.report.error("not-smooth", f"sum '{r.name}' is not smooth: partitions {a} and {b} cover "
                          f"different variables ({'; '.join(only)})", _child_span(r, q, 0))

    def _not_decomposable(self, r: Sum, p: int, child_scopes: list[Scope]) -> None:
        part = r.partitions[p]
        pairs = [(i, j, child_scopes[i] & child_scopes[j])
                 for i in range(len(part)) for j in range(i + 1, len(part))
                 if child_scopes[i] & child_scopes[j]]
        shared = "; ".join(f"'{part[i]}' and '{part[j]}' share {describe_vars(vs, self.c.vars)}"
                           for i, j, vs in pairs)
        self.report.error("not-decomposable", f"product {r.partition_text(p)} in sum '{r.name}' is not "
                          f"decomposable: {shared}", _child_span(r, p, pairs[0][1]))

    def _root(self, scopes: dict[str, Scope | None] | None) -> None:
        """Root checks; `scopes` None: its scope is known to hold every variable."""
        root = self.c.root
        if not root:
            self._missing_root()
        elif root not in self.regions:
            self.report.error("unknown-region", f"the root '{root}' is not a region"
                              f"{did_you_mean(root, self.regions)}", self.info.root)
        else:
            scope = None if scopes is None else scopes.get(root)
            if scope is not None and self.info.vars_known and not self.vars_ambiguous:
                self._root_scope(root, scope)
            if not self.dangling:
                self._unreachable(root)

    def _root_scope(self, root: str, scope: Scope) -> None:
        missing = Scope.range(0, len(self.c.vars)) - scope
        if missing:
            missed = describe_vars(missing, self.c.vars)
            self.report.error("root-scope", f"root '{root}' does not cover {missed}: its scope must hold "
                              "every variable", self.info.root)

    def _unreachable(self, root: str) -> None:
        reached = self._reached()
        for name, r in self.regions.items():
            if name not in reached:
                self.report.warning("unreachable", f"region '{name}' is not reachable from the root '{root}'",
                                    r.span)

    def _missing_root(self) -> None:
        if not self.regions:
            self.report.error("missing-root", "no `root` statement and no regions")
            return
        children = {child for names in self.children.values() for child in names}
        tops = [name for name in self.regions if name not in children]
        if len(tops) == 1:
            hint = f"; add `root {tops[0]}` (the only region without a parent)"
        elif tops:
            hint = f"; regions without a parent: {', '.join(tops[:8])}" + (" ..." if len(tops) > 8 else "")
        else:
            hint = ""
        self.report.error("missing-root", f"no `root` statement{hint}")

    def _joint_sizes(self) -> None:
        """A joint family (`mvnormal(d)`) covers exactly d variables of each input that uses it."""
        for r in self.regions.values():
            if not isinstance(r, Input) or r.name in self.unusable_family \
                    or not self._scope_is_clean(r.scope):
                continue
            for family, vs in self.c.input_parts(r):
                spec = None if family is None else family_spec(family.name)
                size = None if spec is None else spec.joint_size(dict(family.args))
                if size is not None and len(vs) != size:
                    self.report.error("joint-size", f"input '{r.name}' gives {family} "
                                      f"{_count(len(vs), 'variable')} "
                                      f"({describe_vars(vs, self.c.vars)}); one {family.name} "
                                      f"density covers exactly d = {size}", r.span)
                    self.unusable_family.add(r.name)

    def _family_conflicts(self) -> None:
        """Every variable has one family (with the same arguments): in every input that holds it,
        and as its `leaf F {..}` statement says. An input that names no family of its own takes
        each variable's. Without `leaf F {..}` statements this is checked on the scopes' runs:
        only when two families share a variable are the variables looked at."""
        inputs = [r for r in self.regions.values()
                  if isinstance(r, Input) and r.name not in self.unusable_family]
        if not self.c.leaf_scopes and all(isinstance(r.scope, VarList) for r in inputs):
            covered: dict[Family, list[Input]] = {}
            for r in inputs:
                covered.setdefault(self.c.family_of(r), []).append(r)
            if len(covered) < 2:
                return
            unions = [Scope.union([r.scope.as_scope() for r in group]) for group in covered.values()]
            if sum(map(len, unions)) == len(Scope.union(unions)):
                return
        owner: dict[int, tuple[Family, str]] = {}
        for scope in self.c.leaf_scopes:
            for v in scope.scope:
                owner.setdefault(v, (scope.family, leaf_scope_owner(scope)))
        for r in inputs:
            clashes: dict[tuple[str, Family], tuple[Family, list[int]]] = {}
            for v, family in zip(r.scope, self.c.families_of(r)):
                first = owner.setdefault(v, (family, f"input '{r.name}'"))
                if first[0] != family:
                    clashes.setdefault((first[1], family), (first[0], []))[1].append(v)
            for (other, family), (other_family, vs) in clashes.items():
                named = describe_vars(vs, self.c.vars)
                subject = f"variable {named} is" if len(vs) == 1 else f"variables {named} are"
                if other.startswith("`leaf"):
                    fix = f"; name no family on input '{r.name}' (its variables then take theirs)"
                elif len(vs) < len(r.scope):  # likely meant to mix families in one input
                    fix = ("; a variable has one family: to mix families in one input, give each "
                           f"variable its own (`leaf {other_family} {{{named}}}`)"
                           + (f" and name none on input '{r.name}'" if r.family is not None else ""))
                else:
                    fix = ""
                self.report.error("family-conflict", f"{subject} {family} in input '{r.name}' but "
                                  f"{other_family} in {other}{fix}", r.family.span if r.family else r.span)

    # ------------------------------------------------------------------ ties

    def _ties(self) -> None:
        """Each `tie`: two or more known regions, each tied once, all of the first one's kind,
        K and parameter shapes (`_tie_shape`)."""
        tied: dict[str, Tie] = {}
        for tie in self.c.ties:
            spans = tie.region_spans if tie.region_spans and \
                len(tie.region_spans) == len(tie.regions) else (tie.span,) * len(tie.regions)
            if len(tie.regions) < 2:
                self.report.error("bad-tie", "a tie needs two or more regions"
                                  + (f": '{tie.regions[0]}' alone shares with none" if tie.regions
                                     else ""), tie.span)
            owner = None
            for name, span in zip(tie.regions, spans):
                if name not in self.c.by_name:
                    self.report.error("unknown-region", f"tie names unknown region '{name}'"
                                      f"{did_you_mean(name, self.c.by_name)}", span)
                    continue
                if name in tied:
                    again = tied[name] is tie
                    self.report.error("duplicate-tie", f"region '{name}' is " + (
                        "named twice in this tie" if again else
                        f"tied twice{line_of(tied[name].span)}: a region shares the parameters "
                        "of one group"), span)
                    continue
                tied[name] = tie
                if self._tie_shape(name) is None:
                    continue
                if owner is None:
                    owner = name
                    continue
                reason = self._tie_mismatch(owner, name)
                if reason is not None:
                    self.report.error("tie-mismatch", f"'{name}' cannot share the parameters of "
                                      f"'{owner}': {reason}", span)

    def _tie_shape(self, name: str):
        """What must agree between tied regions, or None when it is not known (an error was
        reported about the region): (kind, K, per partition its weight shape or text) for a sum,
        (kind, K, its (family, scope size) parts) for an input."""
        r = self.regions.get(name)
        if r is None or name in self.info.doubtful or name in self.duplicated or type(r.k) is not int:
            return None
        if isinstance(r, Input):
            if name in self.unusable_family or name in self.odd_scope:
                return None
            return ("input", r.k, tuple((f, len(vs)) for f, vs in self.c.input_parts(r)))
        shapes = []
        for p, part in enumerate(r.partitions):
            children = [self.regions.get(c) for c in part]
            if any(c is None or c.name in self.info.doubtful for c in children) or not children:
                return None
            ks = (children[0].k,) if r.is_elementwise(p) else tuple(c.k for c in children)
            shapes.append((r.k, *ks))
        return ("sum", r.k, tuple(shapes))

    def _tie_mismatch(self, owner: str, name: str) -> str | None:
        """Why region `name` cannot share the parameters of `owner`, or None if it can."""
        a, b = self._tie_shape(owner), self._tie_shape(name)
        if a == b:
            return None
        if a[0] != b[0]:
            return (f"'{name}' is {'an input' if b[0] == 'input' else 'a sum'} and '{owner}' "
                    f"{'an input' if a[0] == 'input' else 'a sum'}: tied regions are all sums or "
                    "all inputs")
        if a[1] != b[1]:
            return f"'{name}' has k={b[1]} and '{owner}' has k={a[1]}: tied regions need the same k"
        if a[0] == "input":
            if [f for f, _ in a[2]] != [f for f, _ in b[2]]:
                return (f"'{name}' is {_families(b[2])} and '{owner}' {_families(a[2])}: tied "
                        "inputs need the same leaf family")
            return (f"'{name}' has {_count(sum(n for _, n in b[2]), 'variable')} and '{owner}' "
                    f"{_count(sum(n for _, n in a[2]), 'variable')}"
                    + ("" if len(a[2]) == 1 else " per family") + ": tied inputs need scopes of "
                    "the same size (variable j of each shares the parameters of position j)")
        if len(a[2]) != len(b[2]):
            return (f"'{name}' has {_count(len(b[2]), 'partition')} and '{owner}' has "
                    f"{len(a[2])}: tied sums need the same partitions")
        p = next(p for p, (x, y) in enumerate(zip(a[2], b[2])) if x != y)
        where = "" if len(a[2]) == 1 else f" of partition {p}"
        ra, rb = self.regions[owner], self.regions[name]
        return (f"the weights{where} of '{name}' ({rb.partition_text(p)}) have shape "
                f"{format_shape(b[2][p])} and those of '{owner}' ({ra.partition_text(p)}) "
                f"{format_shape(a[2][p])}: tied sums need the same weight shapes")

    # ------------------------------------------------------------------ params

    def _params(self) -> None:
        first: dict[tuple, Param] = {}
        owner = self.c.tie_owner
        for prm in self.c.params:
            target = self._target(prm)
            key = (owner.get(prm.region, prm.region), prm.field, prm.index)
            if key in first and first[key].region != prm.region:
                other = first[key]
                self.report.error("duplicate-param", f"param {target} sets parameters that "
                                  f"'{prm.region}' shares with '{other.region}' (tied), given "
                                  f"already by param {self._target(other)}"
                                  + (f" on line {other.span.line}" if other.span else ""),
                                  prm.span)
                continue
            if key in first:
                self.report.error("duplicate-param",
                                  f"param {target} is given twice{line_of(first[key].span)}", prm.span)
                continue
            first[key] = prm
            r = self.regions.get(prm.region)
            if r is None:
                self.report.error("unknown-region", f"param {target} names unknown region '{prm.region}'"
                                  f"{did_you_mean(prm.region, self.regions)}", prm.span)
                continue
            expected = self._param_shape(prm, r, target)
            if expected is None:
                continue
            shape = tuple(prm.shape)
            if shape != expected:
                self.report.error("param-shape", f"param {target} has shape {format_shape(shape)}, expected "
                                  f"{format_shape(expected)}", prm.span)
            elif len(prm.values) != math.prod(shape):
                self.report.error("param-shape", f"param {target} has {len(prm.values)} values for shape "
                                  f"{format_shape(shape)}", prm.span)
            else:
                self._param_values(prm, r, target)

    def _target(self, prm: Param) -> str:
        r = self.regions.get(prm.region)
        implied = prm.field == "weights" and prm.index == 0 and isinstance(r, Sum) and len(r.partitions) == 1
        return f"{prm.region}.{prm.field}" + ("" if prm.index is None or implied else f"[{prm.index}]")

    def _param_shape(self, prm: Param, r: Input | Sum, target: str) -> tuple[int, ...] | None:
        """The shape `prm` must have, or None when it cannot be known (the reason reported, or an
        earlier error)."""
        doubtful = self.info.doubtful
        if isinstance(r, Sum):
            parts = len(r.partitions)
            if prm.field == "weights":
                if prm.index is None:
                    self.report.error("param-index", f"param {target} needs a partition index: sum "
                                      f"'{r.name}' has {parts} partitions, {r.name}.weights[0] .. "
                                      f"{r.name}.weights[{parts - 1}]", prm.span)
                    return None
                if type(prm.index) is not int or not 0 <= prm.index < parts:
                    self.report.error("param-index", f"partition index {prm.index} of param {target} is out "
                                      f"of range: sum '{r.name}' has {_count(parts, 'partition')}", prm.span)
                    return None
                children = r.partitions[prm.index]
                if r.name in doubtful or any(c not in self.regions or c in doubtful for c in children):
                    return None
                if r.is_elementwise(prm.index):
                    return (r.k, self.regions[children[0]].k)
                return (r.k, *(self.regions[c].k for c in children))
            if prm.field == "mixing" and parts > 1:
                return None if self._has_index(prm, target) or r.name in doubtful else (r.k, parts)
            fields = ["weights", "mixing"] if parts > 1 else ["weights"]
            reason = f"sum '{r.name}' has one partition, so no mixing weights" if prm.field == "mixing" else \
                f"'{prm.field}' is not a parameter of sum '{r.name}'; its parameters: {', '.join(fields)}" \
                f"{did_you_mean(prm.field, fields)}"
            self.report.error("param-unknown-field", reason, prm.span)
            return None
        if r.name in self.unusable_family:
            return None
        if self.c.is_mixed(r):
            return self._part_shape(prm, r, target)
        family = self.c.family_of(r)
        fields = {f.name: f for f in family_spec(family.name).fields}
        if prm.field not in fields:
            self.report.error("param-unknown-field", f"'{prm.field}' is not a parameter of {family.name} "
                              f"input '{r.name}'; its parameters: {', '.join(fields)}"
                              f"{did_you_mean(prm.field, fields)}", prm.span)
            return None
        if self._has_index(prm, target) or r.name in doubtful:
            return None
        return (r.k, len(r.scope), *fields[prm.field].extra(dict(family.args)))

    def _part_shape(self, prm: Param, r: Input, target: str) -> tuple[int, ...] | None:
        """The shape of a param of a mixed input: part `prm.index`, [K, its variables, *extra]."""
        parts = self.c.input_parts(r)
        listing = "; ".join(f"[{j}] {family} over {describe_vars(vs, self.c.vars)}"
                            for j, (family, vs) in enumerate(parts))
        if prm.index is None or type(prm.index) is not int or not 0 <= prm.index < len(parts):
            what = (f"param {target} needs a part index: input '{r.name}'" if prm.index is None else
                    f"param {target}: input '{r.name}' has no part {prm.index}; it")
            self.report.error("param-index", f"{what} mixes {len(parts)} families, one part each "
                              f"({listing})", prm.span)
            return None
        family, vs = parts[prm.index]
        fields = {f.name: f for f in family_spec(family.name).fields}
        if prm.field not in fields:
            self.report.error("param-unknown-field", f"'{prm.field}' is not a parameter of part "
                              f"{prm.index} of input '{r.name}' ({family} over "
                              f"{describe_vars(vs, self.c.vars)}); its parameters: {', '.join(fields)}"
                              f"{did_you_mean(prm.field, fields)}", prm.span)
            return None
        if r.name in self.info.doubtful:
            return None
        return (r.k, len(vs), *fields[prm.field].extra(dict(family.args)))

    def _has_index(self, prm: Param, target: str) -> bool:
        if prm.index is not None:
            self.report.error("param-index", f"param {target} takes no index", prm.span)
        return prm.index is not None

    def _param_values(self, prm: Param, r: Input | Sum, target: str) -> None:
        """Values in range, and rows summing to 1 where they must."""
        if isinstance(r, Sum):
            check, row = "simplex", math.prod(prm.shape[1:])
        else:
            family = self.c.input_parts(r)[prm.index][0] if self.c.is_mixed(r) else self.c.family_of(r)
            spec = family_spec(family.name)
            check = next(f.check for f in spec.fields if f.name == prm.field)
            row = prm.shape[-1]
        ok, condition = _VALUE_CHECKS[check]
        values = prm.values
        bad = [i for i, v in enumerate(values) if not ok(v)]
        if bad:
            more = f" ({len(bad)} such values)" if len(bad) > 1 else ""
            self.report.error("param-value", f"param {target}: {values[bad[0]]!r} at "
                              f"{_unravel(bad[0], prm.shape)} is {condition}{more}", prm.span)
            return
        if check == "covariance":
            self._covariance(prm, target)
        if check != "simplex" or row == 0:
            return
        off = [start for start in range(0, len(values), row)
               if abs(math.fsum(values[start:start + row]) - 1) > ROW_TOLERANCE]
        if off:
            where = [off[0] // row] if isinstance(r, Sum) else _unravel(off[0], prm.shape)[:-1]
            total = math.fsum(values[off[0]:off[0] + row])
            more = f" ({len(off)} rows are off)" if len(off) > 1 else ""
            self.report.error("param-not-normalized", f"param {target}: row {where} sums to {total!r}, "
                              f"not 1{more}", prm.span)


    def _covariance(self, prm: Param, target: str) -> None:
        """Each unit's [d, d] block of a covariance field symmetric and positive definite."""
        d = prm.shape[-1]
        blocks = np.asarray(prm.values, dtype=np.float64).reshape(-1, d, d)
        for unit, block in enumerate(blocks):
            if not np.allclose(block, block.T, rtol=1e-6, atol=1e-9):
                problem = "not symmetric"
            elif np.linalg.eigvalsh(0.5 * (block + block.T))[0] <= 0:
                problem = "not positive definite"
            else:
                continue
            self.report.error("param-value", f"param {target}: the matrix of unit {unit} is "
                              f"{problem}", prm.span)
            return


_VALUE_CHECKS = {
    "prob": (lambda v: 0 <= v <= 1, "not in [0, 1]"),
    "simplex": (lambda v: 0 <= v < math.inf, "negative or not finite"),
    "real": (math.isfinite, "not finite"),
    "positive": (lambda v: 0 < v < math.inf, "not positive and finite"),
    "covariance": (math.isfinite, "not finite"),
}


def _unravel(flat: int, shape: tuple[int, ...]) -> list[int]:
    index = []
    for n in reversed(shape):
        flat, i = divmod(flat, n)
        index.append(i)
    return index[::-1]


def _position(r: Sum, child: str) -> tuple[int, int]:
    """(partition, position) of the first place `child` appears in sum `r`."""
    return next((p, i) for p, part in enumerate(r.partitions) for i, c in enumerate(part) if c == child)


def _child_span(r: Sum, p: int, i: int) -> Span | None:
    spans = r.child_spans
    if spans and p < len(spans) and i < len(spans[p]):
        return spans[p][i]
    return r.span


def _families(parts) -> str:
    return " and ".join(str(f) for f, _ in parts)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
