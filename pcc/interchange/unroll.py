"""A region graph unrolled into the nodes of a node-level file (`pcc export`): `node_view`.

Every unit becomes a node; the nodes come children first, the root last:

  input region r, K units over scope S      one `NodeInput` per unit k: its |S| leaves (a single
                                            leaf when |S| = 1, else the writers' product of them)
  sum region s, K units, partition p over children c_1..c_a with K_1..K_a units:
    outer product (a > 1)                   one `NodeProduct` per combination (i_1..i_a), row-major
                                            (the layout of W_p [K, K_1, .., K_a]): T_p = K_1..K_a
    element-wise product (a > 1)            one `NodeProduct` per unit i: (c_1[i], .., c_a[i]),
                                            T_p = K_c
    one child (a = 1)                       no product: the terms are the child's T_p = K_1 units
  per unit o of s                           one `NodeSum` over the terms of all P partitions, the
                                            mixing folded into the weights:
        L_s[o] = log sum_p M[o,p] sum_t W_p[o,t] exp(term_t) = log sum_{p,t} (M[o,p] W_p[o,t]) exp(term_t)

A partition with one term (all children K = 1) has W_p[o, 0] = 1, and P = 1 has M[o, 0] = 1: such
weights need no parameter. Children of weight 0 are dropped, and nodes the root no longer reaches
are left out. The root is unit `root_unit` of the root region (needed when it has K > 1).

Size, when no weight is 0 (an upper bound otherwise), with K_root counted as 1:
  nodes   sum_inputs K (|S| + [|S| > 1])  +  sum_sums ( sum_{p: a_p > 1} T_p  +  K )
  edges   sum_inputs K |S| [|S| > 1]      +  sum_sums ( sum_{p: a_p > 1} a_p T_p  +  K sum_p T_p )
`node_view` refuses a circuit over MAX_EDGES edges before building anything.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

from ..errors import PcError
from ..ir import Circuit, Input, Param, Sum
from .node_graph import Leaf

MAX_EDGES = 10_000_000


class ExportError(PcError, ValueError):
    """The circuit cannot be written in the asked format (the message says why)."""


@dataclass(frozen=True)
class NodeInput:
    """A unit of an input region: one leaf per variable of its scope (their product)."""

    name: str
    leaves: tuple[Leaf, ...]


@dataclass(frozen=True)
class NodeProduct:
    """The product of its children (units of the child regions of one partition)."""

    name: str
    children: tuple[str, ...]


@dataclass(frozen=True)
class NodeSum:
    """A unit of a sum region: sum_i weights[i] * children[i], weights in probability space."""

    name: str
    children: tuple[str, ...]
    weights: tuple[float, ...]


Node = NodeInput | NodeProduct | NodeSum


@dataclass(frozen=True)
class UnrolledSize:
    """How many nodes of each kind and edges `node_view` makes (no weight 0: exact)."""

    leaves: int
    products: int  # products of partitions and of multi-variable input units
    sums: int
    edges: int

    @property
    def nodes(self) -> int:
        return self.leaves + self.products + self.sums


def node_view(circuit: Circuit, root_unit: int | None = None) -> list[Node]:
    """The unrolled nodes of the regions the root reaches, children first, the root last (see
    the module doc). ExportError when the root has K > 1 and no `root_unit` is given, when the
    unrolled circuit has more than MAX_EDGES edges, or when a parameter is missing."""
    root_unit = _root_unit(circuit, root_unit)
    order = _reachable_order(circuit)
    size = unrolled_size(circuit)
    if size.edges > MAX_EDGES:
        raise ExportError(f"unrolled into nodes, the circuit has {size.nodes:,} nodes and "
                          f"{size.edges:,} edges, more than the {MAX_EDGES:,} edges pcc exports "
                          "(outer products make K_1 * .. * K_a products per partition); keep it as .pc")
    params = {(p.region, p.field, p.index): p for p in circuit.params}
    units: dict[str, list[str]] = {}  # region -> the node name of each of its units
    nodes: list[Node] = []
    for name in order:
        region = circuit.region(name)
        units[name] = [_unit_name(region, o) for o in range(region.k)]
        written = [root_unit] if name == circuit.root else range(region.k)
        if isinstance(region, Input):
            slots = _slots(circuit, region)
            nodes += [NodeInput(units[name][o], tuple(_leaf(params, region, o, *slot) for slot in slots))
                      for o in written]
            continue
        terms = [_terms(region, p, units, nodes) for p in range(len(region.partitions))]
        nodes += [_unit_sum(region, o, terms, params, units[name][o]) for o in written]
    return _reached(nodes)


def unrolled_size(circuit: Circuit) -> UnrolledSize:
    """The size of `node_view(circuit)` by the formula of the module doc, from the structure
    alone (cheap for any K)."""
    leaves = products = sums = edges = 0
    for name in _reachable_order(circuit):
        region = circuit.region(name)
        k = 1 if name == circuit.root else region.k
        if isinstance(region, Input):
            width = len(region.scope)
            leaves += k * width
            if width > 1:
                products += k
                edges += k * width
            continue
        sums += k
        for p, part in enumerate(region.partitions):
            count = _term_count(circuit, region, p)
            edges += k * count
            if len(part) > 1:
                products += count
                edges += len(part) * count
    return UnrolledSize(leaves, products, sums, edges)


def _root_unit(circuit: Circuit, root_unit: int | None) -> int:
    k = circuit.region(circuit.root).k
    if root_unit is None:
        if k > 1:
            raise ExportError(f"the root '{circuit.root}' has K={k}: it holds {k} densities and a "
                              f"node-level file one; choose one with --root-unit (0..{k - 1})")
        return 0
    if not 0 <= root_unit < k:
        raise ExportError(f"--root-unit {root_unit} is out of range: the root '{circuit.root}' has "
                          f"K={k} (units 0..{k - 1})")
    return root_unit


def _reachable_order(circuit: Circuit) -> list[str]:
    reached = circuit.reachable()
    return [name for name in circuit.topological_order() if name in reached]


def _unit_name(region: Input | Sum, o: int) -> str:
    """Node names cannot clash with region names, which have no '[' or '.'."""
    return region.name if region.k == 1 else f"{region.name}[{o}]"


def _term_count(circuit: Circuit, region: Sum, p: int) -> int:
    """T_p: the products (or child units) partition p contributes to each unit's sum."""
    ks = [circuit.region(c).k for c in region.partitions[p]]
    if region.is_elementwise(p):
        return ks[0]
    count = 1
    for k in ks:
        count *= k
    return count


def _terms(region: Sum, p: int, units: dict[str, list[str]], nodes: list[Node]) -> list[str]:
    """The T_p terms of partition p, in the order of W_p's trailing axes; products are appended to
    `nodes`."""
    children = region.partitions[p]
    if len(children) == 1:
        return units[children[0]]
    combos = zip(*(units[c] for c in children)) if region.is_elementwise(p) else \
        itertools.product(*(units[c] for c in children))
    terms = []
    for t, combo in enumerate(combos):
        terms.append(f"{region.name}.{p}[{t}]")
        nodes.append(NodeProduct(terms[-1], combo))
    return terms


def _unit_sum(region: Sum, o: int, terms: list[list[str]], params: dict, name: str) -> NodeSum:
    """Unit o of a sum region: its terms weighted by M[o, p] W_p[o, t], zero weights left out."""
    parts = len(region.partitions)
    mixing = _values(params, region.name, "mixing", None)[o * parts:(o + 1) * parts] \
        if parts > 1 else (1.0,)
    children, weights = [], []
    for p, (m, part_terms) in enumerate(zip(mixing, terms)):
        count = len(part_terms)
        row = _values(params, region.name, "weights", p)[o * count:(o + 1) * count] \
            if count > 1 else (1.0,)
        for term, w in zip(part_terms, row):
            if m * w > 0:
                children.append(term)
                weights.append(m * w)
    return NodeSum(name, tuple(children), tuple(weights))


def _reached(nodes: list[Node]) -> list[Node]:
    """`nodes` (children first) without those the last one does not reach."""
    reached = {nodes[-1].name}
    for node in reversed(nodes):
        if node.name in reached and not isinstance(node, NodeInput):
            reached.update(node.children)
    return [node for node in nodes if node.name in reached]


def _slots(circuit: Circuit, region: Input) -> list[tuple]:
    """Per variable of `region`, in scope order: (variable, family, its part's param index
    (None unless the input mixes families), position in the part, variables in the part)."""
    parts = circuit.input_parts(region)
    where = {v: (family, j if len(parts) > 1 else None, pos, len(vs))
             for j, (family, vs) in enumerate(parts) for pos, v in enumerate(vs)}
    return [(v, *where[v]) for v in region.scope]


def _leaf(params: dict, region: Input, unit: int, var: int, family, index: int | None, slot: int,
          width: int) -> Leaf:
    """The leaf of unit `unit` of `region` over `var`, the `slot`-th of the `width` variables of
    its part `index` (params [K, width, *extra])."""

    def value(field: str, extra: int = 1) -> tuple[float, ...]:
        at = (unit * width + slot) * extra
        return _values(params, region.name, field, index)[at:at + extra]

    if family.name == "mvnormal":
        raise ExportError(f"input '{region.name}' is an mvnormal leaf, one density over several "
                          "variables: the export formats have univariate leaves only")
    if family.name == "bernoulli":
        return Leaf(var, "bernoulli", value("p"))
    if family.name == "categorical":
        return Leaf(var, "categorical", value("probs", int(family.arg("n"))))
    if family.name == "binomial":
        return Leaf(var, "binomial", (float(family.arg("n")), *value("p")))
    return Leaf(var, "normal", (*value("mean"), *value("std")))


def _values(params: dict, region: str, field: str, index: int | None) -> tuple[float, ...]:
    found: Param | None = params.get((region, field, index))
    if found is None:
        raise ExportError(f"region '{region}' has no {field} parameters: export a compiled model "
                          "(its ir_params()) or a .pc with every parameter given")
    return found.values
