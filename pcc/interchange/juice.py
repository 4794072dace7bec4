"""Juice (ProbabilisticCircuits.jl) files: `.jpc` circuits and `.spn` sum-product networks.

.jpc (variables 1-based, node ids 0-based, all weights and probabilities as natural logs):
    c comment                       (any line whose first token starts with 'c')
    jpc N                           header; N is not trusted
    L id vtree literal              indicator: +v is v = 1, -v is v = 0
    I id vtree v value              indicator v = value (values 0-based, as in categorical leaves)
    C id vtree v log(p_0) .. log(p_n-1)   categorical leaf
    B id vtree v N log(p)           binomial leaf (N = 1 is read as a Bernoulli leaf)
    G id vtree v mean std           normal leaf
    P id vtree k child*k            product
    S id vtree k {child log(w)}*k   sum
  The root is the node on the last node line (the last that no node refers to).

.spn (the Libra-style text Juice reads; variables 0-based):
    (2 2 3)                         domain sizes, one per variable
    v var value                     indicator var = value
    * c1 c2 ...                     product
    + c1 log(w1) c2 log(w2) ...     sum
    EOF                             end (optional; anything after it is ignored)
  A node's id is its position among the node lines (0-based); the root is the last node (that no
  node refers to).
"""
from __future__ import annotations

import math

from ..ir import Circuit
from .node_graph import Leaf, NodeGraph, log_prob
from .source import Source, expect_fields, fmt, parse_float, parse_int, parse_variable
from .unroll import Node, NodeInput, NodeProduct

JPC_SYNTAX = ("L id vtree literal | I id vtree var value | C id vtree var log(p)+ | "
              "B id vtree var N log(p) | G id vtree var mean std | P id vtree k child*k | "
              "S id vtree k {child log(w)}*k")
JPC_KINDS = ("L", "I", "C", "B", "G", "P", "S")
SPN_SYNTAX = "v var value | * child+ | + {child log(w)}+ | EOF"


def read_jpc(source: Source) -> Circuit:
    """The circuit of a .jpc file (see the module doc)."""
    graph = NodeGraph(source, one_based=True)
    for line, tokens in source.token_lines(comment="c"):
        kind = tokens[0]
        if kind == "jpc":
            continue
        if kind not in JPC_KINDS:
            source.syntax_error(f"unknown jpc line '{kind}'; expected {JPC_SYNTAX}",
                                source.token_span(line, 0))
        if len(tokens) < 4:
            expect_fields(source, tokens, line, 4, JPC_SYNTAX)
        node = parse_int(source, tokens[1], line, 1, "a node id")
        span = source.line_span(line)
        if kind in "PS":
            _read_inner(source, graph, kind, node, tokens, line)
        else:
            graph.add_leaf(node, _jpc_leaf(source, kind, tokens, line), span)
    if not graph.nodes:
        source.syntax_error("no jpc nodes in the file", None)
    return graph.to_circuit()


def _jpc_leaf(source: Source, kind: str, tokens: list[str], line: int) -> Leaf:
    if kind == "L":
        expect_fields(source, tokens, line, 4, JPC_SYNTAX)
        literal = parse_int(source, tokens[3], line, 3, "a literal")
        if literal == 0:
            source.syntax_error("literal 0: literals are +v or -v with v >= 1",
                                source.token_span(line, 3))
        return Leaf(abs(literal) - 1, "indicator", (float(literal > 0),))
    var = parse_variable(source, tokens[3], line, 3, base=1)
    if kind == "I":
        expect_fields(source, tokens, line, 5, JPC_SYNTAX)
        return Leaf(var, "indicator", (float(parse_int(source, tokens[4], line, 4, "a value")),))
    if kind == "C":
        if len(tokens) < 5:
            expect_fields(source, tokens, line, 5, JPC_SYNTAX)
        return Leaf(var, "categorical", tuple(
            math.exp(parse_float(source, t, line, i, "log(p)")) for i, t in enumerate(tokens[4:], 4)))
    if kind == "B":
        expect_fields(source, tokens, line, 6, JPC_SYNTAX)
        n = parse_int(source, tokens[4], line, 4, "N")
        p = math.exp(parse_float(source, tokens[5], line, 5, "log(p)"))
        return Leaf(var, "bernoulli", (p,)) if n == 1 else Leaf(var, "binomial", (float(n), p))
    expect_fields(source, tokens, line, 6, JPC_SYNTAX)
    return Leaf(var, "normal", (parse_float(source, tokens[4], line, 4, "the mean"),
                                parse_float(source, tokens[5], line, 5, "the std")))


def _read_inner(source: Source, graph: NodeGraph, kind: str, node: int, tokens: list[str],
                line: int) -> None:
    k = parse_int(source, tokens[3], line, 3, "the number of children")
    if k < 1:
        source.syntax_error(f"a '{kind}' node needs at least one child, not {k}",
                            source.token_span(line, 3))
    span = source.line_span(line)
    if kind == "P":
        expect_fields(source, tokens, line, 4 + k, JPC_SYNTAX)
        graph.add_product(node, [parse_int(source, tokens[i], line, i, "a child id")
                                 for i in range(4, 4 + k)], span, range(4, 4 + k))
        return
    expect_fields(source, tokens, line, 4 + 2 * k, JPC_SYNTAX)
    children, weights = _weighted_children(source, tokens, line, 4)
    graph.add_sum(node, [(c,) for c in children], weights, span, range(4, 4 + 2 * k, 2))


def _weighted_children(source: Source, tokens: list[str], line: int,
                       start: int) -> tuple[list[int], list[float]]:
    """`child log(w) child log(w) ...` from token `start` on: the children and exp(log(w))."""
    children = [parse_int(source, tokens[i], line, i, "a child id")
                for i in range(start, len(tokens), 2)]
    weights = [math.exp(parse_float(source, tokens[i], line, i, "log(w)"))
               for i in range(start + 1, len(tokens), 2)]
    return children, weights


def read_spn(source: Source) -> Circuit:
    """The circuit of a Juice .spn file (see the module doc)."""
    lines = source.token_lines()
    first = next(lines, None)
    if first is None:
        source.syntax_error("empty .spn file: expected a domain line such as (2 2 2)", None)
    domains = _domains(source, *first)
    graph = NodeGraph(source, num_vars=len(domains), domains=dict(enumerate(domains)))
    node = -1
    for line, tokens in lines:
        kind = tokens[0]
        if kind == "EOF":
            break
        node += 1
        span = source.line_span(line)
        if kind == "v":
            expect_fields(source, tokens, line, 3, SPN_SYNTAX)
            var = parse_variable(source, tokens[1], line, 1, base=0)
            if var >= len(domains):
                source.syntax_error(f"variable {var} is not declared: the domain line has "
                                    f"{len(domains)} variables", source.token_span(line, 1))
            value = parse_int(source, tokens[2], line, 2, "a value")
            graph.add_leaf(node, Leaf(var, "indicator", (float(value),)), span)
        elif kind == "*":
            if len(tokens) < 2:
                expect_fields(source, tokens, line, 2, SPN_SYNTAX)
            graph.add_product(node, [parse_int(source, t, line, i, "a child id")
                                     for i, t in enumerate(tokens[1:], 1)], span, range(1, len(tokens)))
        elif kind == "+":
            if len(tokens) < 3 or len(tokens) % 2 == 0:
                source.syntax_error("a '+' line lists pairs `child log(w)`", source.token_span(
                    line, len(tokens)))
            children, weights = _weighted_children(source, tokens, line, 1)
            graph.add_sum(node, [(c,) for c in children], weights, span, range(1, len(tokens), 2))
        else:
            source.syntax_error(f"unknown .spn line '{kind}'; expected {SPN_SYNTAX}",
                                source.token_span(line, 0))
    if node < 0:
        source.syntax_error("no nodes in the .spn file", None)
    return graph.to_circuit()


def _domains(source: Source, line: int, tokens: list[str]) -> list[int]:
    """The domain line `(2 2 3)`: the number of values of each variable."""
    text = " ".join(tokens)
    if not (text.startswith("(") and text.endswith(")")):
        source.syntax_error("expected the domain line, e.g. (2 2 2): one number of values per "
                            "variable", source.line_span(line))
    inner = text[1:-1].split()
    sizes = []
    for word in inner:
        size = int(word) if word.isdigit() else 0
        if size < 2:
            source.syntax_error(f"domain size {word!r}: each variable needs a whole number >= 2 "
                                "of values", source.line_span(line))
        sizes.append(size)
    if not sizes:
        source.syntax_error("the domain line names no variables", source.line_span(line))
    return sizes


def write_jpc(nodes: list[Node]) -> str:
    """A .jpc file for the unrolled nodes of a circuit (`pcc.interchange.unroll.node_view`);
    every smooth, decomposable circuit fits. Bernoulli leaves with p = 0 or 1 become literals,
    others `B v 1 log(p)`; an input unit over several variables becomes a product of leaves."""
    lines: list[str] = []
    node_id: dict[str, int] = {}

    def emit(line: str) -> int:
        lines.append(line.format(id=len(lines)))
        return len(lines) - 1

    for node in nodes:
        if isinstance(node, NodeInput):
            leaves = [emit(_leaf_line(leaf)) for leaf in node.leaves]
            node_id[node.name] = leaves[0] if len(leaves) == 1 else emit(_product_line(leaves))
        elif isinstance(node, NodeProduct):
            node_id[node.name] = emit(_product_line([node_id[c] for c in node.children]))
        else:
            node_id[node.name] = emit(f"S {{id}} 0 {len(node.children)} " + " ".join(
                f"{node_id[c]} {fmt(log_prob(w))}" for c, w in zip(node.children, node.weights)))
    head = ["c written by pcc export", "c ids of jpc nodes start at 0, variables at 1",
            "c jpc nodes appear bottom-up, children before parents", "c " + JPC_SYNTAX,
            f"jpc {len(lines)}"]
    return "\n".join(head + lines) + "\n"


def _leaf_line(leaf: Leaf) -> str:
    v, params = leaf.var + 1, leaf.params
    if leaf.kind == "bernoulli":
        if params[0] in (0.0, 1.0):
            return f"L {{id}} 0 {v if params[0] == 1 else -v}"
        return f"B {{id}} 0 {v} 1 {fmt(log_prob(params[0]))}"
    if leaf.kind == "categorical":
        return f"C {{id}} 0 {v} " + " ".join(fmt(log_prob(p)) for p in params)
    if leaf.kind == "binomial":
        return f"B {{id}} 0 {v} {int(params[0])} {fmt(log_prob(params[1]))}"
    return f"G {{id}} 0 {v} {fmt(params[0])} {fmt(params[1])}"


def _product_line(children: list[int]) -> str:
    return f"P {{id}} 0 {len(children)} " + " ".join(map(str, children))
