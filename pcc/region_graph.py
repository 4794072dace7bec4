"""A circuit as a networkx region graph, and the structural numbers `pcc check` reports.

Graph layout (`to_graph`): one node per region, key `("region", name)`, and one per partition,
key `("partition", name, p)` for partition p of sum `name`; edges run region -> partition ->
child region, each partition -> child edge holding its `position` in the product. Node attrs:
    region:    kind 'input' | 'sum', scope (a `Scope`: the set of var indices, as runs,
               computed when first read), k;
               inputs also: family (str of the family in force, None if none is),
               declared_family (the Input's own Family, None when it uses the circuit default),
               variables (the scope as written, a `VarList`),
               parts ((Family, variables) per family of its variables, `Circuit.input_parts`)
    partition: kind 'partition', scope (a `Scope`; partition 0 holds its region's),
               children (names in product order),
               elementwise (True for an element-wise product `a .* b`)
Graph attrs: vars, root, leaf, params, version, leaf_scopes, ties (the `Tie`s: regions sharing
parameters, the first of each owning them).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from math import prod

import networkx as nx

from .families import family_spec
from .ir import Circuit, Family, Input, Sum
from .scopes import Scope


def to_graph(circuit: Circuit) -> nx.DiGraph:
    """The region graph of an acyclic circuit. Region nodes come first, in the circuit's order.

    Raises ValueError on a cycle, or on a partition naming one child twice (a DiGraph has no
    parallel edges)."""
    scopes = circuit.scopes()
    graph = nx.DiGraph(vars=circuit.vars, root=circuit.root, leaf=circuit.leaf, params=circuit.params,
                       version=circuit.version, leaf_scopes=circuit.leaf_scopes, ties=circuit.ties)
    for r in circuit.regions:
        if isinstance(r, Input):
            family = circuit.family_of(r)
            graph.add_node(("region", r.name), kind="input", scope=scopes[r.name], k=r.k,
                           family=None if family is None else str(family), declared_family=r.family,
                           variables=r.scope, parts=circuit.input_parts(r))
        else:
            graph.add_node(("region", r.name), kind="sum", scope=scopes[r.name], k=r.k)
    for r in circuit.sums:
        for p, part in enumerate(r.partitions):
            if len(set(part)) != len(part):
                raise ValueError(f"partition {p} of region '{r.name}' names a child twice")
            node = ("partition", r.name, p)
            graph.add_node(node, kind="partition", scope=scopes[r.name] if p == 0 else
                           Scope.union_of([scopes[c] for c in part]),
                           children=tuple(part), elementwise=r.is_elementwise(p))
            graph.add_edge(("region", r.name), node)
            graph.add_edges_from((node, ("region", child), {"position": i}) for i, child in enumerate(part))
    return graph


def from_graph(G: nx.DiGraph, vars: tuple[str, ...] | None = None, root: str | None = None,
               leaf: Family | None = None, params: tuple | None = None) -> Circuit:
    """The circuit of a region graph laid out as `to_graph` does; the inverse of `to_graph`.

    Regions come in G's node order, partitions in index order, children by `position`, so
    `from_graph(to_graph(c)) == c` for every circuit `to_graph` accepts (spans and comments,
    which take no part in equality, are not kept). `vars`, `root`, `leaf`, `params` default to
    the graph's attributes; an input without `variables` gets its scope in ascending order and
    one without `declared_family` uses the circuit default."""
    regions = []
    for node, attrs in G.nodes(data=True):
        if node[0] != "region":
            continue
        name = node[1]
        if attrs["kind"] == "input":
            scope = attrs.get("variables") or sorted(attrs["scope"])
            regions.append(Input(name, scope, attrs["k"], attrs.get("declared_family")))
        else:
            partitions = sorted(G.successors(node), key=lambda part: part[2])
            regions.append(Sum(name, attrs["k"], tuple(partition_children(G, part) for part in partitions),
                               elementwise=tuple(p for p, part in enumerate(partitions)
                                                 if G.nodes[part].get("elementwise"))))
    return Circuit(
        vars=G.graph["vars"] if vars is None else tuple(vars),
        regions=tuple(regions),
        root=G.graph["root"] if root is None else root,
        leaf=G.graph.get("leaf") if leaf is None else leaf,
        params=G.graph.get("params", ()) if params is None else tuple(params),
        version=G.graph.get("version", 1),
        leaf_scopes=G.graph.get("leaf_scopes", ()),
        ties=G.graph.get("ties", ()),
    )


def partition_children(G: nx.DiGraph, partition) -> tuple[str, ...]:
    """Child region names of a partition node of G, in product order: the node's `children`
    attribute (set by `to_graph`), else the edges sorted by `position`."""
    children = G.nodes[partition].get("children")
    if children is None:
        ordered = sorted(G.out_edges(partition, data="position"), key=lambda edge: edge[2])
        children = tuple(child[1] for _, child, _ in ordered)
    return children


def depth(circuit: Circuit) -> int:
    """Sum regions on the longest path from the root down to an input (0 if the root is an input)."""
    layers: dict[str, int] = {}
    for name in circuit.topological_order():
        r = circuit.region(name)
        layers[name] = 0 if isinstance(r, Input) else 1 + max((layers[c] for c in r.children), default=0)
    return layers[circuit.root]


def counts(circuit: Circuit) -> dict[str, int]:
    """Numbers of regions, inputs, sums, partitions and partition -> child edges."""
    return {
        "regions": len(circuit.regions),
        "inputs": len(circuit.inputs),
        "sums": len(circuit.sums),
        "partitions": sum(len(s.partitions) for s in circuit.sums),
        "edges": sum(len(part) for s in circuit.sums for part in s.partitions),
    }


def product_units(circuit: Circuit, region: Sum, p: int) -> int:
    """Product units of partition p: K of a child for an element-wise product, the product of
    the children's K for an outer product."""
    ks = [circuit.region(c).k for c in region.partitions[p]]
    return ks[0] if region.is_elementwise(p) else prod(ks)


def sum_parameter_count(circuit: Circuit) -> int:
    """Sum weights: K * (product units) per partition, plus K * P mixing weights when P > 1;
    a tie group's once (its owner's)."""
    sums = [s for s in circuit.sums if circuit.owns_parameters(s.name)]
    return sum(s.k * product_units(circuit, s, p) for s in sums
               for p in range(len(s.partitions))) \
        + sum(s.k * len(s.partitions) for s in sums if len(s.partitions) > 1)


def leaf_parameter_count(circuit: Circuit) -> int:
    """Leaf parameters: K * |scope| * prod(extra dims) per field of the input's family; a tie
    group's once. Inputs whose family pcc does not know (or that have none) count 0."""
    total = 0
    for r in (r for r in circuit.inputs if circuit.owns_parameters(r.name)):
        for family, variables in circuit.input_parts(r):
            spec = family_spec(family.name) if family is not None else None
            if spec is not None:
                args = dict(family.args)
                total += sum(r.k * len(variables) * prod(f.extra(args)) for f in spec.fields)
    return total


def parameter_count(circuit: Circuit) -> int:
    """All parameters: sum weights plus leaf parameters."""
    return sum_parameter_count(circuit) + leaf_parameter_count(circuit)


@dataclass(frozen=True)
class Summary:
    """The structural numbers of a circuit; `str()` gives the compact text `pcc check` prints."""

    num_vars: int
    num_inputs: int
    num_sums: int
    num_partitions: int
    max_arity: int
    max_partitions: int
    leaves_per_family: tuple[tuple[str, int], ...]  # (family text, input regions), most first
    k_values: tuple[int, ...]
    depth: int
    sum_parameters: int
    leaf_parameters: int
    root: str = ""
    root_k: int = 1
    mixed_inputs: int = 0  # inputs whose variables have several families
    tie_groups: int = 0
    tied_regions: int = 0  # regions in tie groups

    @property
    def parameter_count(self) -> int:
        return self.sum_parameters + self.leaf_parameters

    def __str__(self) -> str:
        leaves = ", ".join(f"{family} x{n}" for family, n in self.leaves_per_family) or "none"
        if self.mixed_inputs:
            leaves += f" ({_count(self.mixed_inputs, 'input')} mixing families)"
        returns = "log p(x), [B]" if self.root_k == 1 else (
            f"one log-density per root unit, [B, {self.root_k}] (e.g. one per class; a single density "
            "needs k=1)")
        ties = ([f"ties        {_count(self.tie_groups, 'group')} over {self.tied_regions} regions "
                 "(their parameters counted once)"] if self.tie_groups else [])
        return "\n".join([
            f"vars        {self.num_vars}",
            f"regions     {self.num_inputs + self.num_sums} ({_count(self.num_inputs, 'input')}, "
            f"{_count(self.num_sums, 'sum')}, {_count(self.num_partitions, 'partition')})",
            f"shape       depth {_count(self.depth, 'sum layer')}, max arity {self.max_arity}, "
            f"max {_count(self.max_partitions, 'partition')} per sum",
            f"K           {', '.join(map(str, self.k_values))}",
            f"leaves      {leaves}",
            f"parameters  {self.parameter_count:,} ({self.sum_parameters:,} sum weights, "
            f"{self.leaf_parameters:,} leaf)",
            *ties,
            f"root        {self.root} (k={self.root_k}): the model returns {returns}",
        ])


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def summary(circuit: Circuit) -> Summary:
    """The `Summary` of an acyclic circuit whose region names resolve."""
    families = Counter(str(family) if family else "unspecified"  # a mixed input counts per family
                       for r in circuit.inputs for family, _ in circuit.input_parts(r))
    n = counts(circuit)
    return Summary(
        num_vars=circuit.num_vars,
        num_inputs=n["inputs"],
        num_sums=n["sums"],
        num_partitions=n["partitions"],
        max_arity=max((len(part) for s in circuit.sums for part in s.partitions), default=0),
        max_partitions=max((len(s.partitions) for s in circuit.sums), default=0),
        leaves_per_family=tuple(sorted(families.items(), key=lambda item: (-item[1], item[0]))),
        k_values=tuple(sorted({r.k for r in circuit.regions})),
        depth=depth(circuit),
        sum_parameters=sum_parameter_count(circuit),
        leaf_parameters=leaf_parameter_count(circuit),
        root=circuit.root,
        root_k=circuit.region(circuit.root).k,
        mixed_inputs=sum(map(circuit.is_mixed, circuit.inputs)),
        tie_groups=len(circuit.ties),
        tied_regions=len(circuit.tie_owner),
    )


def input_parts(G: nx.DiGraph, region) -> tuple[tuple[Family, tuple[int, ...]], ...]:
    """The (family, variables) parts of an input region node (one unless it mixes families);
    for a node without `parts`, its own family, else the circuit's default, over its scope."""
    parts = G.nodes[region].get("parts")
    if parts is not None:
        return parts
    node = G.nodes[region]
    own = node.get("declared_family")
    variables = node.get("variables") or tuple(sorted(node["scope"]))
    return ((own if own is not None else G.graph["leaf"], tuple(variables)),)
