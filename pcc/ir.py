"""The typed IR of a circuit: what a `.pc` file says, with names resolved.

A circuit is a region graph. An `Input` region holds K factorized leaf densities over its scope;
a `Sum` region holds K sum units over one or more partitions, each partition a product of child
regions. Variables are indices into `Circuit.vars`. Source positions (`Span`) ride along for error
messages but never take part in equality, so `parse(print(ir)) == ir`.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Iterator, Union

from .scopes import Scope, TupleView, VarList


@dataclass(frozen=True)
class Span:
    """A source range, 1-based, `end_col` exclusive (on `end_line`)."""

    line: int
    col: int
    end_line: int
    end_col: int


def _span():
    return field(default=None, compare=False, repr=False, hash=False)


@dataclass(frozen=True)
class Family:
    """A leaf family and its arguments, e.g. `categorical(n=5)` is `Family("categorical", (("n", 5),))`."""

    name: str
    args: tuple[tuple[str, Union[int, float]], ...] = ()
    span: Span | None = _span()

    def arg(self, key: str, default=None):
        return dict(self.args).get(key, default)

    def __str__(self) -> str:
        if not self.args:
            return self.name
        return f"{self.name}({', '.join(f'{k}={v!r}' for k, v in self.args)})"


@dataclass(frozen=True)
class LeafScope:
    """`leaf FAMILY {SCOPE}`: the leaf family of the variables in `scope` (indices), in every
    input that holds them. An input whose variables have several families is *mixed*: unit k is
    still the product over its scope, each variable under its own family."""

    family: Family
    scope: tuple[int, ...]
    span: Span | None = _span()  # of the keyword
    scope_spans: tuple[Span, ...] | None = _span()  # one per scope item as written


@dataclass(frozen=True)
class Input:
    """K factorized leaf densities over `scope`: unit k is prod_{v in scope} f(x_v; theta[k, v]).

    `scope` is the variables in the order written (the order of the leaf parameters' slot axis):
    given as any sequence of ints, it is kept as a `VarList` (runs of consecutive indices, equal
    to the tuple of the same indices); a scope holding anything else stays a tuple, for the
    checker to report."""

    name: str
    scope: VarList
    k: int
    family: Family | None = None  # None: the circuit's default leaf family
    span: Span | None = _span()
    scope_spans: tuple[Span, ...] | None = _span()  # one per scope item as written
    k_span: Span | None = _span()

    def __post_init__(self):
        scope = self.scope
        if not isinstance(scope, VarList) and all(type(v) is int for v in scope):
            object.__setattr__(self, "scope", VarList.of(scope))
        elif not isinstance(scope, VarList) and not isinstance(scope, tuple):
            object.__setattr__(self, "scope", tuple(scope))


@dataclass(frozen=True)
class Sum:
    """K sum units over partitions; partition p is the product of the child regions `partitions[p]`.

    An outer (Kronecker) product `a * b` has one product unit per combination of child units:
        S[o] = log sum_{i,j,..} W[o,i,j,..] exp(L[i]) exp(R[j]) ...       W: [K, K_a, K_b, ..]
    An element-wise (Hadamard) product `a .* b` (partition index in `elementwise`; its children
    all have the same K_c units) has unit i the product of unit i of every child:
        S[o] = log sum_i W[o,i] exp(L[i] + R[i] + ...)                   W: [K, K_c]
    Several partitions: each gets such a sum, then R[o] = log sum_p M[o,p] exp(S_p[o]).
    A partition of one child is the same under both products; `elementwise` never lists one
    (the constructor drops such indices, so equal circuits compare equal).
    """

    name: str
    k: int
    partitions: tuple[tuple[str, ...], ...]
    span: Span | None = _span()
    child_spans: tuple[tuple[Span, ...], ...] | None = _span()
    k_span: Span | None = _span()
    elementwise: tuple[int, ...] = ()  # indices of the element-wise partitions, ascending

    def __post_init__(self):
        if not self.elementwise:
            return
        kept = tuple(sorted({p for p in self.elementwise
                             if not (0 <= p < len(self.partitions)) or len(self.partitions[p]) > 1}))
        if kept != self.elementwise:
            object.__setattr__(self, "elementwise", kept)

    @property
    def children(self) -> Iterator[str]:
        for part in self.partitions:
            yield from part

    def is_elementwise(self, p: int) -> bool:
        """Whether partition p is an element-wise (Hadamard) product."""
        return p in self.elementwise

    def partition_text(self, p: int) -> str:
        """Partition p as written: `a * b` or `a .* b`."""
        return (" .* " if self.is_elementwise(p) else " * ").join(self.partitions[p])


Region = Union[Input, Sum]


@dataclass(frozen=True)
class Param:
    """Inline parameter values, in probability space, row-major with `shape`.

    Fields: sums have `weights` (partition `index`, shape [K, K_child1, K_child2, ...]) and, with
    several partitions, `mixing` ([K, P]); leaves have their family's fields (see `pcc.families`).
    """

    region: str
    field: str
    index: int | None
    shape: tuple[int, ...]
    values: tuple[float, ...]
    span: Span | None = _span()


@dataclass(frozen=True)
class Tie:
    """`tie a b c`: regions that share one set of parameters (a *tie group*). They must have the
    same kind, K and parameter shapes (sums: the same partitions' weight shapes; inputs: the same
    families over the same number of variables, slot j of each sharing slot j's parameters). The
    first region is the group's *owner*: its name stands for the group's parameters (in
    `pcc.runtime.layout`, checkpoints, printed params).

    Sharing is of parameters, not of values: every tied region still computes its own values
    from its own children (an HMM's transition sums, one per position, share one matrix)."""

    regions: tuple[str, ...]
    span: Span | None = _span()  # of the keyword
    region_spans: tuple[Span, ...] | None = _span()  # one per name as written


@dataclass(frozen=True)
class Comment:
    """A source comment kept for `pcc fmt`: it is printed above the statement it preceded."""

    text: str
    line: int


@dataclass(frozen=True)
class Circuit:
    """A whole `.pc` file. `regions` keeps file order; names are unique in a valid circuit."""

    vars: tuple[str, ...]
    regions: tuple[Region, ...]
    root: str
    leaf: Family | None = None
    params: tuple[Param, ...] = ()
    version: int = 1
    leaf_scopes: tuple[LeafScope, ...] = ()  # families of single variables (`leaf F {vars}`)
    ties: tuple[Tie, ...] = ()  # regions sharing parameters (`tie a b c`)
    comments: tuple[Comment, ...] = field(default=(), compare=False, repr=False, hash=False)
    path: str | None = field(default=None, compare=False, repr=False, hash=False)
    source: str | None = field(default=None, compare=False, repr=False, hash=False)

    @property
    def num_vars(self) -> int:
        return len(self.vars)

    @cached_property
    def by_name(self) -> dict[str, Region]:
        return {r.name: r for r in self.regions}

    def region(self, name: str) -> Region:
        return self.by_name[name]

    @property
    def inputs(self) -> tuple[Input, ...]:
        return tuple(r for r in self.regions if isinstance(r, Input))

    @property
    def sums(self) -> tuple[Sum, ...]:
        return tuple(r for r in self.regions if isinstance(r, Sum))

    @cached_property
    def declared_families(self) -> dict[int, Family]:
        """Variable -> the family a `leaf F {vars}` statement gives it (the first, if several)."""
        out: dict[int, Family] = {}
        for scope in self.leaf_scopes:
            for v in scope.scope:
                out.setdefault(v, scope.family)
        return out

    @cached_property
    def tie_owner(self) -> dict[str, str]:
        """Region -> the owner (first region) of its tie group, for every tied region (the owner
        included); the first tie that names a region wins (a second is an error)."""
        out: dict[str, str] = {}
        for tie in self.ties:
            for name in tie.regions:
                out.setdefault(name, tie.regions[0])
        return out

    def owns_parameters(self, name: str) -> bool:
        """Whether region `name` holds parameters of its own: untied, or the owner of its tie."""
        return self.tie_owner.get(name, name) == name

    def var_family(self, v: int) -> Family | None:
        """The family of variable v where an input names none: its `leaf F {..}`, else `leaf`."""
        return self.declared_families.get(v, self.leaf)

    def families_of(self, region: Input) -> tuple[Family | None, ...]:
        """The family of each variable of `region`'s scope, in scope order."""
        if region.family is not None:
            return (region.family,) * len(region.scope)
        return tuple(self.var_family(v) for v in region.scope)

    def input_parts(self, region: Input) -> tuple[tuple[Family | None, tuple[int, ...]], ...]:
        """`region`'s variables grouped by family, families in order of first appearance in the
        scope, variables in scope order: one part for an input of one family, several for a
        mixed one (part j's params are `region.FIELD[j]`)."""
        parts: dict[Family | None, list[int]] = {}
        for v, family in zip(region.scope, self.families_of(region)):
            parts.setdefault(family, []).append(v)
        return tuple((family, tuple(vs)) for family, vs in parts.items())

    def family_of(self, region: Input) -> Family | None:
        """The one family of an input's variables (None when it has none, or is mixed)."""
        if region.family is not None or not region.scope:
            return region.family if region.family is not None else self.leaf
        parts = self.input_parts(region)
        return parts[0][0] if len(parts) == 1 else None

    def is_mixed(self, region: Input) -> bool:
        """Whether the variables of `region` have several families."""
        return region.family is None and len(self.input_parts(region)) > 1

    def topological_order(self) -> list[str]:
        """Region names, children before parents (inputs first). Raises ValueError on a cycle."""
        order: list[str] = []
        state: dict[str, int] = {}  # 1 = on stack, 2 = done
        for start in (r.name for r in self.regions):
            if state.get(start):
                continue
            stack = [(start, iter(self._children(start)))]
            state[start] = 1
            while stack:
                name, it = stack[-1]
                child = next(it, None)
                if child is None:
                    stack.pop()
                    state[name] = 2
                    order.append(name)
                elif child in self.by_name:
                    if state.get(child) == 1:
                        raise ValueError(f"cycle through region '{child}'")
                    if not state.get(child):
                        state[child] = 1
                        stack.append((child, iter(self._children(child))))
        return order

    def scopes(self) -> dict[str, Scope]:
        """Scope of every region: its variables for inputs, the union over a partition's children
        (the first partition's) for sums, each computed when first read. Requires an acyclic
        circuit."""
        out: dict[str, Scope] = {}
        for name in self.topological_order():
            r = self.by_name[name]
            if isinstance(r, Input):
                out[name] = Scope.of(r.scope)
            else:
                out[name] = Scope.union_of(
                    [out[c] for c in (r.partitions[0] if r.partitions else ()) if c in out] or [Scope()])
        return out

    def reachable(self) -> set[str]:
        """Names of the regions reachable from the root (the root included)."""
        reached, todo = {self.root}, [self.root]
        while todo:
            for child in self._children(todo.pop()):
                if child not in reached and child in self.by_name:
                    reached.add(child)
                    todo.append(child)
        return reached

    def _children(self, name: str) -> Iterator[str]:
        r = self.by_name[name]
        return r.children if isinstance(r, Sum) else iter(())


def untied(circuit: Circuit) -> Circuit:
    """The same circuit without ties: every tied region holds its own copy of its group's
    params (those given on any region of the group). What a format without shared parameters
    holds (`pcc export`)."""
    given: dict[tuple, Param] = {}
    for p in circuit.params:
        given.setdefault((circuit.tie_owner.get(p.region, p.region), p.field, p.index), p)
    params = [p for p in circuit.params if p.region not in circuit.tie_owner]
    for name in circuit.tie_owner:  # in tie order, each region once
        owner = circuit.tie_owner[name]
        params += [replace(p, region=name, span=None) for (o, _, _), p in given.items()
                   if o == owner]
    return replace(circuit, ties=(), params=tuple(params))


def default_var_names(n: int) -> "DefaultVarNames":
    """Names of `vars N`: x0 .. x{N-1}."""
    return DefaultVarNames(n)


class DefaultVarNames(TupleView):
    """The names x0 .. x{n-1} of `vars N`, made on demand (no string per variable is kept): a
    sequence equal to, and hashing like, the tuple of those names; `index_of` reads a name."""

    __slots__ = ("n",)

    def __init__(self, n: int):
        self.n = n
        self._hash: int | None = None

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i):
        if isinstance(i, slice):
            return tuple(f"x{j}" for j in range(*i.indices(self.n)))
        if i < 0:
            i += self.n
        if not 0 <= i < self.n:
            raise IndexError("variable index out of range")
        return f"x{i}"

    def __iter__(self) -> Iterator[str]:
        return (f"x{i}" for i in range(self.n))

    def index_of(self, name: str) -> int | None:
        """The index of variable `name`, None if it is not one of these names."""
        digits = name[1:]
        if name[:1] != "x" or not digits.isdigit() or not digits.isascii() or \
                (digits[0] == "0" and len(digits) > 1):
            return None
        i = int(digits)
        return i if i < self.n else None

    def __contains__(self, name) -> bool:
        return isinstance(name, str) and self.index_of(name) is not None

    def index(self, name, start: int = 0, stop: int | None = None) -> int:
        i = self.index_of(name) if isinstance(name, str) else None
        if i is None or i < start or (stop is not None and i >= stop):
            raise ValueError(f"{name!r} is not a variable name")
        return i

    def count(self, name) -> int:
        return int(name in self)

    def _key(self) -> int:
        return self.n

    def __repr__(self) -> str:
        return f"default_var_names({self.n})"

    def __reduce__(self):
        return (DefaultVarNames, (self.n,))
