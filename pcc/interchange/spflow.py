"""SPFlow's text form of an SPN (`spn_to_str_equation` / `str_to_spn`): reading and writing.

    sum       (w1*(child1) + w2*(child2) + ...)       weights in probability space
    product   (child1 * child2 * ...)                 a single parenthesized node is that node
    leaves    Bernoulli(V3|p=0.2)
              Categorical(V0|p=[0.1, 0.2, 0.7])       (commas in the list optional)
              Gaussian(V1|mean=0.5;stdev=2.0)

Whitespace, line breaks included, is free; numbers may have `E` exponents. Variables are the
feature names V0, V1, ... (0-based, named x0, x1, ... in the IR). The text is a tree: a node
used twice is written twice, so writing a circuit that shares sub-circuits repeats them.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from ..ir import Circuit, Span
from .node_graph import Leaf, NodeGraph
from .source import Source, fmt
from .unroll import ExportError, Node, NodeInput, NodeProduct

_TOKEN = re.compile(r"\s*(?:(?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)"
                    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<punct>[()*+\-|=;\[\],]))")
_FEATURE = re.compile(r"V(\d+)")
MAX_TREE_NODES = 1_000_000
LEAVES = {"Bernoulli": ("p",), "Categorical": ("p",), "Gaussian": ("mean", "stdev")}


@dataclass(frozen=True)
class _Token:
    kind: str  # "number" | "name" | "punct" | "end"
    text: str
    start: int


def read_spflow(source: Source) -> Circuit:
    """The circuit of SPFlow text (see the module doc)."""
    return _Parser(source).parse()


class _Parser:
    """Builds the node graph of SPFlow text with an explicit stack (no recursion limit)."""

    def __init__(self, source: Source):
        self.source = source
        self.tokens = _tokens(source)
        self.pos = 0
        self.graph = NodeGraph(source)
        self.next_id = 0

    def parse(self) -> Circuit:
        stack: list[tuple[str, Span, list, list]] = []  # (kind, span, children, weights)
        while True:
            node = self._node_start(stack)
            if node is None:
                continue
            while True:  # `node` is complete: hand it to the open sum or product
                if not stack:
                    if self._peek().kind != "end":
                        self._fail("unexpected text after the circuit")
                    return self.graph.to_circuit(node)
                kind, span, children, weights = stack[-1]
                children.append(node)
                tok = self._take()
                if tok.text == ")":
                    stack.pop()
                    node = self._close(kind, span, children, weights)
                    continue
                if kind == "sum" and tok.text == "+":
                    weights.append(self._weight())
                    break
                if kind == "product" and tok.text == "*":
                    break
                self._fail(f"expected {'+' if kind == 'sum' else '*'} or ')'", tok)

    def _node_start(self, stack: list) -> int | None:
        """Read the start of a node: a whole leaf (its id), or the opening of a sum or product
        (pushed on `stack`; None)."""
        tok = self._take()
        if tok.text == "(":
            span = self._span(tok)
            if self._peek().kind == "number" or self._peek().text == "-":
                stack.append(("sum", span, [], [self._weight()]))
            else:
                stack.append(("product", span, [], []))
            return None
        if tok.kind == "name":
            return self._leaf(tok)
        self._fail("expected a node: '(' or a leaf such as Gaussian(V0|mean=0;stdev=1)", tok)

    def _close(self, kind: str, span: Span, children: list, weights: list) -> int:
        if kind == "product" and len(children) == 1:
            return children[0]
        node = self._new_id()
        if kind == "sum":
            self.graph.add_sum(node, [(c,) for c in children], weights, span)
        else:
            self.graph.add_product(node, children, span)
        return node

    def _weight(self) -> float:
        """`w *` at the start of a sum term."""
        value = self._number("a weight")
        self._expect("*")
        return value

    def _leaf(self, name: _Token) -> int:
        span = self._span(name)
        if name.text not in LEAVES:
            self._fail(f"SPFlow leaf '{name.text}' is not supported; pcc reads "
                       f"{', '.join(LEAVES)}", name)
        self._expect("(")
        feature = self._take()
        match = _FEATURE.fullmatch(feature.text)
        if match is None:
            self._fail("expected a feature name V0, V1, ... (named features need their list, "
                       "which the text does not hold)", feature)
        self._expect("|")
        params = {}
        while self._peek().text != ")":
            if params:
                self._expect(";")
            key = self._take()
            if key.text not in LEAVES[name.text]:
                self._fail(f"{name.text} has parameters {', '.join(LEAVES[name.text])}, not "
                           f"{key.text!r}", key)
            self._expect("=")
            if name.text == "Categorical":
                params[key.text] = self._list()
            else:
                params[key.text] = self._number(key.text)
        end = self._take()
        missing = [k for k in LEAVES[name.text] if k not in params]
        if missing:
            self._fail(f"{name.text} needs {', '.join(missing)}", end)
        node = self._new_id()
        self.graph.add_leaf(node, _leaf(int(match.group(1)), name.text, params), span)
        return node

    def _list(self) -> list[float]:
        self._expect("[")
        values = []
        while self._peek().text != "]":
            if values and self._peek().text == ",":
                self._take()
            values.append(self._number("a probability"))
        self._take()
        return values

    def _number(self, what: str) -> float:
        tok = self._take()
        sign = 1.0
        if tok.kind == "punct" and tok.text in ("+", "-"):
            sign, tok = (-1.0 if tok.text == "-" else 1.0), self._take()
        if tok.kind != "number":
            self._fail(f"expected {what}, a number", tok)
        return sign * float(tok.text)

    # ------------------------------------------------------------------ tokens
    def _peek(self) -> _Token:
        return self.tokens[self.pos]

    def _take(self) -> _Token:
        tok = self.tokens[self.pos]
        self.pos = min(self.pos + 1, len(self.tokens) - 1)
        return tok

    def _expect(self, text: str) -> None:
        tok = self._take()
        if tok.text != text:
            self._fail(f"expected '{text}'", tok)

    def _fail(self, message: str, tok: _Token | None = None):
        tok = tok or self._peek()
        found = "the end of the text" if tok.kind == "end" else repr(tok.text)
        self.source.syntax_error(f"{message}, found {found}", self._span(tok))

    def _span(self, tok: _Token) -> Span:
        return self.source.offset_span(tok.start, tok.start + max(1, len(tok.text)))

    def _new_id(self) -> int:
        self.next_id += 1
        return self.next_id - 1


def _tokens(source: Source) -> list[_Token]:
    text = source.text
    out, pos = [], 0
    while True:
        m = _TOKEN.match(text, pos)
        if m is None:
            rest = text[pos:].lstrip()
            if not rest:
                out.append(_Token("end", "", len(text.rstrip())))
                return out
            start = len(text) - len(rest)
            source.syntax_error(f"unexpected character {rest[0]!r}",
                                source.offset_span(start, start + 1))
        kind = m.lastgroup
        out.append(_Token(kind, m.group(kind), m.start(kind)))
        pos = m.end()


def _leaf(var: int, name: str, params: dict) -> Leaf:
    if name == "Gaussian":
        return Leaf(var, "normal", (params["mean"], params["stdev"]))
    if name == "Bernoulli":
        return Leaf(var, "bernoulli", (params["p"],))
    return Leaf(var, "categorical", tuple(params["p"]))


def write_spflow(nodes: list[Node]) -> str:
    """SPFlow text for the unrolled nodes of a circuit (`pcc.interchange.unroll.node_view`), in
    the form `spn_to_str_equation` writes. Leaves must be Bernoulli, categorical or normal; a
    circuit whose tree expansion would exceed MAX_TREE_NODES nodes is refused."""
    size: dict[str, int] = {}
    text: dict[str, str] = {}
    for node in nodes:
        if isinstance(node, NodeInput):
            size[node.name] = len(node.leaves) + (len(node.leaves) > 1)
            text[node.name] = _product([_leaf_text(node.name, leaf) for leaf in node.leaves])
            continue
        size[node.name] = 1 + sum(size[c] for c in node.children)
        if size[node.name] > MAX_TREE_NODES:
            raise ExportError(f"written as SPFlow text, a tree, the circuit would have more than "
                              f"{MAX_TREE_NODES:,} nodes (node '{node.name}' repeats shared "
                              "sub-circuits); export to jpc instead")
        if isinstance(node, NodeProduct):
            text[node.name] = _product([text[c] for c in node.children])
        else:
            text[node.name] = "(" + " + ".join(
                f"{fmt(w)}*({text[c]})" for c, w in zip(node.children, node.weights)) + ")"
    return text[nodes[-1].name] + "\n"


def _product(factors: list[str]) -> str:
    return factors[0] if len(factors) == 1 else "(" + " * ".join(factors) + ")"


def _leaf_text(name: str, leaf: Leaf) -> str:
    feature = f"V{leaf.var}"
    if leaf.kind == "bernoulli":
        return f"Bernoulli({feature}|p={fmt(leaf.params[0])})"
    if leaf.kind == "categorical":
        return f"Categorical({feature}|p=[{', '.join(map(fmt, leaf.params))}])"
    if leaf.kind == "normal":
        return f"Gaussian({feature}|mean={fmt(leaf.params[0])};stdev={fmt(leaf.params[1])})"
    raise ExportError(f"input '{name}' is a {leaf.kind} leaf: SPFlow's text form has no such leaf "
                      "(it reads Bernoulli, Categorical, Gaussian)")
