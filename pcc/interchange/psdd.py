"""PSDD files (the UCLA psdd package, Juice): reading them into the IR, and writing them.

    c comment                       (any line whose first token starts with 'c')
    psdd N                          header; N (the node count) is not trusted
    L id vtree literal              indicator of a literal: +v is v = 1, -v is v = 0 (v 1-based)
    T id vtree v log(p)             "true" node: Bernoulli leaf, p(v = 1) = p
    D id vtree k {prime sub log(theta)}*k   decision node: sum of k products prime * sub

Ids may be sparse and in any order; the root is the node on the last node line (the last that
no node refers to, should children come after their parents). A vtree file is not needed to
read a PSDD: every node's variables follow from its children. Variables are named v1..vN as the
file counts them (data column 0 is v1).
"""
from __future__ import annotations

import math

from ..ir import Circuit
from .node_graph import Leaf, NodeGraph, log_prob
from .source import Source, expect_fields, fmt, parse_float, parse_int, parse_variable
from .unroll import ExportError, Node, NodeInput, NodeProduct

SYNTAX = "L id vtree literal | T id vtree var log(p) | D id vtree k {prime sub log(theta)}*k"


def read_psdd(source: Source) -> Circuit:
    """The circuit of a PSDD file (see the module doc)."""
    graph = NodeGraph(source, one_based=True)
    for line, tokens in source.token_lines(comment="c"):
        kind = tokens[0]
        if kind == "psdd":
            continue
        if kind not in ("L", "T", "D"):
            source.syntax_error(f"unknown PSDD line '{kind}'; expected {SYNTAX}",
                                source.token_span(line, 0))
        if len(tokens) < 4:
            expect_fields(source, tokens, line, 5 if kind == "T" else 4, SYNTAX)
        node = parse_int(source, tokens[1], line, 1, "a node id")
        span = source.line_span(line)
        if kind == "L":
            expect_fields(source, tokens, line, 4, SYNTAX)
            literal = parse_int(source, tokens[3], line, 3, "a literal")
            if literal == 0:
                source.syntax_error("literal 0: literals are +v or -v with v >= 1",
                                    source.token_span(line, 3))
            graph.add_leaf(node, Leaf(abs(literal) - 1, "indicator", (float(literal > 0),)), span)
        elif kind == "T":
            expect_fields(source, tokens, line, 5, SYNTAX)
            var = parse_variable(source, tokens[3], line, 3, base=1)
            p = math.exp(parse_float(source, tokens[4], line, 4, "log(p)"))
            graph.add_leaf(node, Leaf(var, "bernoulli", (p,)), span)
        else:
            k = parse_int(source, tokens[3], line, 3, "the number of elements")
            if k < 1:
                source.syntax_error(f"a decision node needs at least one element, not {k}",
                                    source.token_span(line, 3))
            expect_fields(source, tokens, line, 4 + 3 * k, SYNTAX)
            terms, weights, refs = [], [], []
            for j in range(k):
                at = 4 + 3 * j
                prime = parse_int(source, tokens[at], line, at, "a prime id")
                sub = parse_int(source, tokens[at + 1], line, at + 1, "a sub id")
                terms.append((prime, sub))
                weights.append(math.exp(parse_float(source, tokens[at + 2], line, at + 2,
                                                    "log(theta)")))
                refs += [at, at + 1]
            graph.add_sum(node, terms, weights, span, refs)
    if not graph.nodes:
        source.syntax_error("no PSDD nodes in the file", None)
    return graph.to_circuit()


def check_psdd_units(circuit: Circuit) -> None:
    """Refuse regions with K > 1 below the root: unrolled, their units are sums over the same
    overlapping children (a latent variable), so the decision nodes above them would have primes
    that are not mutually exclusive, and a PSDD's must be. (A K = 1 circuit's determinism is not
    checked; see `write_psdd`.)"""
    reached = circuit.reachable()
    for region in circuit.regions:
        if region.k > 1 and region.name in reached and region.name != circuit.root:
            raise ExportError(f"region '{region.name}' has K={region.k}: its units overlap (a "
                              "latent variable), so the decision nodes above them would not be "
                              "deterministic, as a PSDD's must be; export to jpc or spflow")


def write_psdd(nodes: list[Node]) -> tuple[str, str]:
    """A PSDD file and its vtree for the unrolled nodes of a circuit (`pcc.interchange.unroll`).

    Fits when every input is a Bernoulli leaf over one variable (p = 0 or 1 become literals), every
    sum's children are products of two (prime * sub), and the circuit is structured-decomposable
    (every node over the same variables splits them the same way): that split is the vtree.
    Whether the primes are deterministic (mutually exclusive) is not checked."""
    scope: dict[str, frozenset[int]] = {}
    products = {node.name: node.children for node in nodes if isinstance(node, NodeProduct)}
    vtree = _Vtree()
    lines = []
    ids: dict[str, int] = {}
    for node in nodes:
        if isinstance(node, NodeProduct):
            continue
        i = ids[node.name] = len(ids)
        if isinstance(node, NodeInput):
            leaf = _single_bernoulli(node)
            scope[node.name] = frozenset((leaf.var,))
            v, p = leaf.var + 1, leaf.params[0]
            vt = vtree.leaf(leaf.var)
            lines.append(f"L {i} {vt} {v if p == 1 else -v}" if p in (0.0, 1.0)
                         else f"T {i} {vt} {v} {fmt(log_prob(p))}")
            continue
        elements = []
        for child, w in zip(node.children, node.weights):
            part = products.get(child, (child,))
            if len(part) != 2:
                raise ExportError(f"sum '{node.name}' has a partition of {len(part)} children: "
                                  "PSDD decision nodes hold products of exactly two (prime * sub)")
            prime, sub = vtree.orient(node.name, part, scope)
            elements.append(f"{ids[prime]} {ids[sub]} {fmt(log_prob(w))}")
        scope[node.name] = scope[prime] | scope[sub]
        lines.append(f"D {i} {vtree.internal(scope[node.name])} {len(elements)} " + " ".join(elements))
    head = ["c written by pcc export", "c ids of psdd nodes start at 0",
            "c psdd nodes appear bottom-up, children before parents",
            "c L id-of-literal-node id-of-vtree literal",
            "c T id-of-true-node id-of-vtree variable log(p)",
            "c D id-of-decision-node id-of-vtree number-of-elements {id-of-prime id-of-sub log(theta)}*",
            f"psdd {len(lines)}"]
    return "\n".join(head + lines) + "\n", vtree.text(scope[nodes[-1].name])


class _Vtree:
    """The vtree a structured-decomposable circuit follows: scope -> (left scope, right scope)."""

    def __init__(self):
        self.split: dict[frozenset[int], tuple[frozenset[int], frozenset[int]]] = {}
        self.ids: dict[frozenset[int], int] = {}

    def leaf(self, var: int) -> int:
        return self._id(frozenset((var,)))

    def internal(self, scope: frozenset[int]) -> int:
        return self._id(scope)

    def orient(self, name: str, part: tuple[str, str], scope) -> tuple[str, str]:
        """(prime, sub) of a partition: the prime is over the left side of its scope's split."""
        a, b = part
        whole = scope[a] | scope[b]
        left, right = self.split.setdefault(whole, (scope[a], scope[b]))
        if (scope[a], scope[b]) == (left, right):
            return a, b
        if (scope[b], scope[a]) == (left, right):
            return b, a
        raise ExportError(f"sum '{name}' splits its variables differently from another region over "
                          "the same variables: the circuit is not structured-decomposable, so it has "
                          "no vtree and is no PSDD (export to jpc instead)")

    def _id(self, scope: frozenset[int]) -> int:
        return self.ids.setdefault(scope, len(self.ids))

    def text(self, root: frozenset[int]) -> str:
        """The vtree file: `vtree N`, then `L id var` and `I id left right`, children first."""
        order, todo = [], [root]
        while todo:  # parents before children, reversed at the end
            s = todo.pop()
            order.append(s)
            if len(s) > 1:
                todo += list(self.split[s])
        order.reverse()
        lines = [f"vtree {len(order)}"]
        for s in order:
            if len(s) == 1:
                lines.append(f"L {self._id(s)} {next(iter(s)) + 1}")
            else:
                left, right = self.split[s]
                lines.append(f"I {self._id(s)} {self._id(left)} {self._id(right)}")
        return "\n".join(lines) + "\n"


def _single_bernoulli(node: NodeInput) -> Leaf:
    if len(node.leaves) != 1 or node.leaves[0].kind != "bernoulli":
        what = f"{len(node.leaves)} variables" if len(node.leaves) != 1 else \
            f"a {node.leaves[0].kind} leaf"
        raise ExportError(f"input '{node.name}' has {what}: PSDD leaves are literals and "
                          "Bernoulli ('T') nodes over one binary variable")
    return node.leaves[0]
