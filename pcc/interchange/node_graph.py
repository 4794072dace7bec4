"""Node-level circuits (PSDD, Juice, SPFlow files) and their mapping to the IR, K = 1 everywhere.

A reader fills a `NodeGraph` with leaves, products and sums, each under the id the file gives it
(children may come after their parents), then calls `to_circuit(root)`, which

  checks     every reference names a node, no cycles, products decomposable, sums smooth,
             one leaf family per variable; every problem is reported at its line and column;
  normalizes sums whose weights do not add up to 1: the circuit imported is p(x) / Z, its function
             divided by its total mass, computed exactly bottom-up (with a warning);
  maps       leaf     -> Input k=1 over its variable (identical leaves become one Input)
             sum      -> Sum k=1; each child is a partition: a product child's children (products
                         under products flattened), any other child alone; weights -> `mixing`
                         [1, P] (partitions that end up equal are merged, their weights added)
             product  -> only the root needs a region of its own: a Sum with one partition.
             Nodes the root does not reach are left out (with a warning).

Leaf families: indicators of values 0/1 and Bernoulli leaves give `bernoulli` (an indicator is p =
0 or 1 exactly); binomial leaves of one n give `binomial(n)`; any other mix of discrete leaves
on a variable gives `categorical(n)` (indicators one-hot, Bernoulli and binomial leaves as their
probability tables, shorter tables padded with zeros); normal leaves cannot mix with others.
"""
from __future__ import annotations

import math
import warnings
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Hashable, Sequence

from ..errors import Diagnostic, PcCheckError
from ..frontend.diagnostics import PcWarning
from ..frontend.naming import describe_vars
from ..ir import Circuit, Family, Input, Param, Span, Sum, default_var_names
from .source import Source

NodeId = Hashable
MAX_ERRORS = 20  # structural errors reported before giving up
NORMALIZED = 1e-6  # |log of a row's sum| up to this counts as normalized (no warning)
ROUNDING = 1e-12  # |log Z| up to this is rounding: the node counts as exactly normalized
P_ROUNDING = 1e-9  # a leaf probability up to 1 + this is 1 (rounding of log p in the file)


@dataclass(frozen=True)
class Leaf:
    """A univariate leaf over variable `var` (0-based). `params` by `kind`:
    indicator (value,), bernoulli (p,), categorical (p_0, .., p_n-1), binomial (n, p),
    normal (mean, std)."""

    var: int
    kind: str
    params: tuple[float, ...]


@dataclass(frozen=True)
class _Node:
    kind: str  # "leaf" | "product" | "sum"
    span: Span
    leaf: Leaf | None = None
    terms: tuple[tuple[NodeId, ...], ...] = ()  # product: one term, its children; sum: one per child
    weights: tuple[float, ...] = ()  # sums: as the file gives them, probability space
    ref_tokens: tuple[int, ...] | None = None  # token of each reference on the node's line


class NodeGraph:
    """The nodes of one file (see the module doc). `one_based` names variables v1..vN (as the
    file counts them) instead of x0..x{N-1}; `num_vars` and `domains` (variable -> number of
    values) are what the file declares, if it does."""

    def __init__(self, source: Source, one_based: bool = False, num_vars: int | None = None,
                 domains: dict[int, int] | None = None):
        self.source = source
        self.one_based = one_based
        self.num_vars = num_vars
        self.domains = domains or {}
        self.nodes: dict[NodeId, _Node] = {}

    # ------------------------------------------------------------------ filling
    def add_leaf(self, node_id: NodeId, leaf: Leaf, span: Span) -> None:
        """A leaf; a probability up to 1 + 1e-9 (exp of a log rounded in the file) is read as 1."""
        if leaf.kind in ("bernoulli", "binomial") and 1 < leaf.params[-1] <= 1 + P_ROUNDING:
            leaf = Leaf(leaf.var, leaf.kind, (*leaf.params[:-1], 1.0))
        problem = _leaf_problem(leaf)
        if problem:
            self._invalid("bad-leaf", f"leaf node {node_id}: {problem}", span)
        self._add(node_id, _Node("leaf", span, leaf=leaf))

    def add_product(self, node_id: NodeId, children: Sequence[NodeId], span: Span,
                    ref_tokens: Sequence[int] | None = None) -> None:
        if not children:
            self._invalid("empty-node", f"product node {node_id} has no children", span)
        self._add(node_id, _Node("product", span, terms=(tuple(children),),
                                 ref_tokens=_tuple(ref_tokens)))

    def add_sum(self, node_id: NodeId, terms: Sequence[Sequence[NodeId]], weights: Sequence[float],
                span: Span, ref_tokens: Sequence[int] | None = None) -> None:
        """A sum of `terms`, each a product of one or more nodes (one: the node itself), with
        `weights` in probability space (checked: finite and >= 0)."""
        if not terms:
            self._invalid("empty-node", f"sum node {node_id} has no children", span)
        for w in weights:
            if not 0 <= w < math.inf:
                self._invalid("bad-weight", f"weight {w!r} of sum node {node_id} is not a "
                              "probability (finite and >= 0)", span)
        self._add(node_id, _Node("sum", span, terms=tuple(map(tuple, terms)), weights=tuple(weights),
                                 ref_tokens=_tuple(ref_tokens)))

    def _add(self, node_id: NodeId, node: _Node) -> None:
        first = self.nodes.get(node_id)
        if first is None:
            self.nodes[node_id] = node
        elif (first.kind, first.leaf, first.terms, first.weights) != \
                (node.kind, node.leaf, node.terms, node.weights):
            self._invalid("duplicate-node", f"node {node_id} is defined twice, differently "
                          f"(first on line {first.span.line})", node.span)

    def _invalid(self, kind: str, message: str, span: Span) -> None:
        raise PcCheckError([self.source.diagnostic(kind, message, span)])

    # ------------------------------------------------------------------ mapping
    def to_circuit(self, root: NodeId | None = None) -> Circuit:
        """The IR of the circuit below `root` (see the module doc); PcCheckError if invalid.

        The default root is the last node added that no node refers to: the last node line in a
        file written children first (as PSDD and Juice files are), and still the root when some
        children come after their parents."""
        return _Mapper(self, self._last_parentless() if root is None else root).circuit()

    def _last_parentless(self) -> NodeId:
        referenced = {c for node in self.nodes.values() for term in node.terms for c in term}
        for node_id in reversed(self.nodes):
            if node_id not in referenced:
                return node_id
        last = self.nodes[next(reversed(self.nodes))]
        self._invalid("no-root", "every node has a parent, so none is the root (a cycle?)",
                      last.span)


class _Mapper:
    """One run of `NodeGraph.to_circuit`."""

    def __init__(self, graph: NodeGraph, root: NodeId):
        self.g, self.root, self.source = graph, root, graph.source
        self.nodes = graph.nodes
        self.errors: list[Diagnostic] = []
        self.flat: dict[NodeId, tuple[NodeId, ...]] = {}  # products: flattened children

    def circuit(self) -> Circuit:
        order = self._order()
        num_vars = self._num_vars(order)
        families = self._families(order, num_vars)
        self._check_scopes(order, num_vars)
        log_z = self._log_masses(order)
        circuit = self._build(order, families, log_z, num_vars)
        self._warn_dropped(len(order))
        return circuit

    # ------------------------------------------------------------------ checks
    def _error(self, kind: str, message: str, span: Span) -> None:
        self.errors.append(self.source.diagnostic(kind, message, span))
        if len(self.errors) >= MAX_ERRORS:
            self._raise()

    def _raise(self) -> None:
        if self.errors:
            raise PcCheckError(self.errors)

    def _ref_span(self, node: _Node, ordinal: int) -> Span:
        if node.ref_tokens is None or ordinal >= len(node.ref_tokens):
            return node.span
        return self.source.token_span(node.span.line, node.ref_tokens[ordinal])

    def _order(self) -> list[NodeId]:
        """Nodes reachable from the root, children first; unknown references and cycles are
        errors."""
        if self.root not in self.nodes:
            raise PcCheckError([self.source.diagnostic("unknown-node", f"the root {self.root} is not "
                                                       "a node", None)])
        order: list[NodeId] = []
        state: dict[NodeId, int] = {self.root: 1}  # 1: on the path, 2: done
        stack = [(self.root, self._refs(self.root))]
        while stack:
            node_id, refs = stack[-1]
            ordinal, child = next(refs, (None, None))
            if ordinal is None:
                stack.pop()
                state[node_id] = 2
                order.append(node_id)
            elif child not in self.nodes:
                self._error("unknown-node", f"node {node_id} refers to node {child}, which the file "
                            "does not define", self._ref_span(self.nodes[node_id], ordinal))
            elif state.get(child) == 1:
                path = [n for n, _ in stack]
                cycle = " -> ".join(map(str, path[path.index(child):] + [child]))
                self._error("cycle", f"cycle through node {child}: {cycle}",
                            self._ref_span(self.nodes[node_id], ordinal))
            elif child not in state:
                state[child] = 1
                stack.append((child, self._refs(child)))
        self._raise()
        return order

    def _refs(self, node_id: NodeId):
        ordinal = 0
        for term in self.nodes[node_id].terms:
            for child in term:
                yield ordinal, child
                ordinal += 1

    def _num_vars(self, order: list[NodeId]) -> int:
        used = [self.nodes[n].leaf.var for n in order if self.nodes[n].kind == "leaf"]
        return max(self.g.num_vars or 0, max(used, default=-1) + 1)

    def var_names(self, num_vars: int) -> tuple[str, ...]:
        if self.g.one_based:
            return tuple(f"v{i + 1}" for i in range(num_vars))
        return default_var_names(num_vars)

    def _families(self, order: list[NodeId], num_vars: int) -> dict[int, Family]:
        """The family of each variable, from all its leaves (see the module doc)."""
        leaves: dict[int, list[_Node]] = defaultdict(list)
        for n in order:
            node = self.nodes[n]
            if node.kind == "leaf":
                leaves[node.leaf.var].append(node)
        names = self.var_names(num_vars)
        families = {}
        for var, nodes in leaves.items():
            families[var] = self._family(names[var], nodes, self.g.domains.get(var))
        self._raise()
        return families

    def _family(self, name: str, nodes: list[_Node], domain: int | None) -> Family:
        kinds = {node.leaf.kind for node in nodes}
        if "normal" in kinds:
            if kinds != {"normal"}:
                other = next(node for node in nodes if node.leaf.kind != "normal")
                first = next(node for node in nodes if node.leaf.kind == "normal")
                self._error("family-conflict", f"variable {name} has a normal leaf (line "
                            f"{first.span.line}) and a discrete one; pcc gives each variable one "
                            "leaf family", other.span)
            return Family("normal")
        size = max([domain or 0] + [_support(node.leaf) for node in nodes])
        for node in nodes:
            if node.leaf.kind == "indicator" and domain is not None and node.leaf.params[0] >= domain:
                self._error("bad-leaf", f"value {int(node.leaf.params[0])} of variable {name} is "
                            f"outside its domain of {domain} values", node.span)
        if kinds <= {"indicator", "bernoulli"} and size == 2:
            return Family("bernoulli")
        ns = {node.leaf.params[0] for node in nodes if node.leaf.kind == "binomial"}
        if kinds == {"binomial"} and len(ns) == 1 and (domain is None or domain == size):
            return Family("binomial", (("n", int(ns.pop())),))
        return Family("categorical", (("n", size),))

    def _check_scopes(self, order: list[NodeId], num_vars: int) -> None:
        """Decomposable products, smooth sums, and a root over every variable."""
        names = self.var_names(num_vars)
        scope: dict[NodeId, int] = {}  # bitset of variables
        for n in order:
            node = self.nodes[n]
            if node.kind == "leaf":
                scope[n] = 1 << node.leaf.var
            elif node.kind == "product":
                self.flat[n] = self._flatten(node.terms[0])
                scope[n] = self._product_scope(n, node, 0, self.flat[n], scope, names)
            else:
                term_scopes = []
                ordinal = 0
                for term in node.terms:
                    term_scopes.append(self._product_scope(n, node, ordinal, term, scope, names))
                    ordinal += len(term)
                scope[n] = term_scopes[0]
                self._check_smooth(n, node, term_scopes, names)
        self._raise()
        missing = ((1 << num_vars) - 1) & ~scope[self.root]
        if missing:
            vs = _bits(missing)
            self._error("root-scope", f"variable{'s' if len(vs) > 1 else ''} "
                        f"{describe_vars(vs, names)} never appear{'s' if len(vs) == 1 else ''} in "
                        f"the circuit below the root (node {self.root})", self.nodes[self.root].span)
            self._raise()

    def _flatten(self, children: tuple[NodeId, ...]) -> tuple[NodeId, ...]:
        """Children with product children replaced by their (flattened) children."""
        out: list[NodeId] = []
        for c in children:
            if self.nodes[c].kind == "product":
                out.extend(self.flat[c])
            else:
                out.append(c)
        return tuple(out)

    def _product_scope(self, n, node: _Node, ordinal: int, children, scope, names) -> int:
        acc = 0
        for i, c in enumerate(children):
            shared = acc & scope[c]
            if shared:
                vs = _bits(shared)
                what = "product node" if node.kind == "product" else "a product in sum node"
                self._error("not-decomposable", f"{what} {n} is not decomposable: its factors "
                            f"share {describe_vars(vs, names)}",
                            self._ref_span(node, ordinal + i) if node.kind == "sum" else node.span)
            acc |= scope[c]
        return acc

    def _check_smooth(self, n, node: _Node, term_scopes: list[int], names) -> None:
        first = term_scopes[0]
        ordinal = len(node.terms[0])
        for term, s in zip(node.terms[1:], term_scopes[1:]):
            if s != first:
                detail = "; ".join(f"only {who} has {describe_vars(_bits(vs), names)}" for who, vs in
                                   (("the first child", first & ~s), ("this child", s & ~first)) if vs)
                self._error("not-smooth", f"sum node {n} is not smooth: its children cover "
                            f"different variables ({detail})", self._ref_span(node, ordinal))
            ordinal += len(term)

    # ------------------------------------------------------------------ normalization
    def _log_masses(self, order: list[NodeId]) -> dict[NodeId, float]:
        """log Z of every node: the total mass of its function (0 for normalized ones)."""
        log_z: dict[NodeId, float] = {}
        for n in order:
            node = self.nodes[n]
            if node.kind == "leaf":
                log_z[n] = _leaf_log_mass(node.leaf)
            elif node.kind == "product":
                log_z[n] = sum(log_z[c] for c in self.flat[n])
            else:
                terms = [log_prob(w) + sum(log_z[c] for c in t) for w, t in zip(node.weights, node.terms)]
                log_z[n] = _logsumexp(terms)
                if log_z[n] == -math.inf:
                    self._error("zero-mass", f"sum node {n} has total weight 0", node.span)
            if abs(log_z[n]) < ROUNDING:
                log_z[n] = 0.0
        self._raise()
        return log_z

    # ------------------------------------------------------------------ IR
    def _build(self, order, families, log_z, num_vars) -> Circuit:
        region: dict[NodeId, str] = {}  # node -> region name (leaves: the shared Input)
        by_leaf: dict[tuple, str] = {}
        regions, params = [], []
        leaf_default = Counter(families.values()).most_common(1)[0][0]
        for n in order:
            node = self.nodes[n]
            if node.kind == "leaf":
                family = families[node.leaf.var]
                fields = _leaf_fields(node.leaf, family)
                key = (node.leaf.var, tuple((k, tuple(v)) for k, v in fields.items()))
                if key not in by_leaf:
                    by_leaf[key] = name = _name(n)
                    regions.append(Input(name, (node.leaf.var,), 1,
                                         None if family == leaf_default else family, span=node.span))
                    params += [Param(name, field, None, (1, 1, len(v)) if field == "probs" else
                                     (1, 1), tuple(v)) for field, v in fields.items()]
                region[n] = by_leaf[key]
            elif node.kind == "sum":
                region[n] = _name(n)
                parts: dict[frozenset, int] = {}
                partitions, weights = [], []
                for w, term in zip(node.weights, node.terms):
                    part = tuple(region[c] for c in self._flatten(term))
                    weight = w * math.exp(sum(log_z[c] for c in term) - log_z[n])
                    key = frozenset(part)
                    if key in parts:
                        weights[parts[key]] += weight
                    else:
                        parts[key] = len(partitions)
                        partitions.append(part)
                        weights.append(weight)
                regions.append(Sum(region[n], 1, tuple(partitions), span=node.span))
                if len(partitions) > 1:
                    params.append(Param(region[n], "mixing", None, (1, len(weights)), tuple(weights)))
        root = self.nodes[self.root]
        root_name = region.get(self.root)
        if root.kind == "product":
            root_name = _name(self.root)
            regions.append(Sum(root_name, 1, (tuple(region[c] for c in self.flat[self.root]),),
                               span=root.span))
        self._warn_unnormalized(order, log_z)
        return Circuit(self.var_names(num_vars), tuple(regions), root_name, leaf_default,
                       tuple(params), path=self.source.path, source=self.source.text)

    # ------------------------------------------------------------------ warnings
    def _warn(self, message: str, span: Span | None) -> None:
        d = self.source.diagnostic("import-note", message, span, severity="warning")
        warnings.warn(d.render(), PcWarning, stacklevel=4)

    def _warn_unnormalized(self, order, log_z) -> None:
        off = [n for n in order if self.nodes[n].kind == "sum"
               and abs(_log_sum(self.nodes[n].weights)) > NORMALIZED]
        off += [n for n in order if self.nodes[n].kind == "leaf" and abs(log_z[n]) > NORMALIZED]
        if off:
            first = self.nodes[off[0]]
            self._warn(f"{len(off)} node{'s' if len(off) > 1 else ''} with weights or probabilities "
                       f"that do not sum to 1 (first: node {off[0]}); imported the normalized "
                       f"circuit p(x) / Z, log Z = {log_z[self.root]!r}", first.span)

    def _warn_dropped(self, reached: int) -> None:
        dropped = len(self.nodes) - reached
        if dropped:
            self._warn(f"{dropped} node{'s' if dropped > 1 else ''} not reachable from the root "
                       f"(node {self.root}) left out", None)


def _leaf_fields(leaf: Leaf, family: Family) -> dict[str, list[float]]:
    """The probability-space fields of `leaf` as a leaf of `family` (normalized)."""
    kind, params = leaf.kind, leaf.params
    if family.name == "normal":
        return {"mean": [params[0]], "std": [params[1]]}
    if family.name == "bernoulli":
        return {"p": [float(params[0])]}
    if family.name == "binomial":
        return {"p": [params[1]]}
    n = int(family.arg("n"))
    table = [0.0] * n
    if kind == "indicator":
        table[int(params[0])] = 1.0
    elif kind == "bernoulli":
        table[0], table[1] = 1.0 - params[0], params[0]
    elif kind == "binomial":
        m, p = int(params[0]), params[1]
        for x in range(m + 1):
            table[x] = math.comb(m, x) * p ** x * (1 - p) ** (m - x)
    else:
        total = math.fsum(params)
        table[:len(params)] = [q / total for q in params]
    return {"probs": table}


def _leaf_problem(leaf: Leaf) -> str | None:
    """What is wrong with a leaf's parameters, or None."""
    kind, params = leaf.kind, leaf.params
    if leaf.var < 0:
        return f"variable index {leaf.var} is negative"
    if kind == "indicator" and not (params[0] >= 0 and params[0] == int(params[0])):
        return f"value {params[0]!r} is not a whole number >= 0"
    if kind == "bernoulli" and not 0 <= params[0] <= 1:
        return f"probability {params[0]!r} is not in [0, 1]"
    if kind == "categorical" and not (all(0 <= q < math.inf for q in params) and sum(params) > 0):
        return "probabilities must be finite, >= 0 and not all 0"
    if kind == "binomial" and not (params[0] >= 1 and params[0] == int(params[0])
                                   and 0 <= params[1] <= 1):
        return f"binomial n={params[0]!r}, p={params[1]!r}: n must be a whole number >= 1, p in [0, 1]"
    if kind == "normal" and not (math.isfinite(params[0]) and 0 < params[1] < math.inf):
        return f"normal mean={params[0]!r}, std={params[1]!r}: the mean must be finite, std > 0"
    return None


def _support(leaf: Leaf) -> int:
    """Values a discrete leaf's variable must be able to take."""
    if leaf.kind == "indicator":
        return max(2, int(leaf.params[0]) + 1)
    if leaf.kind == "bernoulli":
        return 2
    if leaf.kind == "binomial":
        return int(leaf.params[0]) + 1
    return max(2, len(leaf.params))


def _leaf_log_mass(leaf: Leaf) -> float:
    return math.log(math.fsum(leaf.params)) if leaf.kind == "categorical" else 0.0


def log_prob(w: float) -> float:
    """log w, with log 0 = -inf."""
    return math.log(w) if w > 0 else -math.inf


def _log_sum(weights) -> float:
    return log_prob(math.fsum(weights))


def _logsumexp(values: list[float]) -> float:
    top = max(values)
    if top == -math.inf:
        return top
    return top + math.log(math.fsum(math.exp(v - top) for v in values))


def _bits(x: int) -> list[int]:
    """The variables in a bitset."""
    return [v for v in range(x.bit_length()) if x >> v & 1]


def _name(node_id: NodeId) -> str:
    return f"n{node_id}"


def _tuple(items) -> tuple | None:
    return None if items is None else tuple(items)
