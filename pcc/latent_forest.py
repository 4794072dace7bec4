"""Latent trees in circuits: the shape `find_latent_forest` recognizes.

A circuit built like a hidden Chow-Liu tree (`pcc structure hclt`) is a tree-shaped graphical
model over hidden variables z_v (K states each), one per observed variable x_v:

    tree node   a partition `leaf .* e_1 .* ... .* e_m` (or `leaf` alone): `leaf` an input region
                over {v} with K units, p(x_v | z_v = i), or over a group of variables {v, ..}
                (one hidden variable for the group, e.g. an `mvnormal` leaf); each e_j an *edge*
    edge        a sum region whose one partition is a tree node of child c, with K units:
                W[j, i] = p(z_c = i | z_v = j)
    root        a sum region whose partitions are all tree nodes (one per tree of a mixture)

`find_latent_forest` gives these nodes of any circuit, or None when the circuit has another
shape; `pcc.latent_tree` initializes such a circuit from data.
"""
from __future__ import annotations

from dataclasses import dataclass

from .ir import Circuit, Input, Sum


@dataclass(frozen=True)
class TreeNode:
    """Partition `partition` of sum `region`: leaf region `leaf` over variables `vars` times the
    edges `edges` (sum regions) to the child nodes `children` (indices into the forest's nodes);
    `var` = vars[0] stands for the node's hidden variable."""

    region: str
    partition: int
    vars: tuple[int, ...]
    leaf: str
    edges: tuple[str, ...]
    children: tuple[int, ...]

    @property
    def var(self) -> int:
        return self.vars[0]


@dataclass(frozen=True)
class LatentForest:
    """The tree nodes of a latent-tree circuit; `roots[t]` is the node of tree t's root."""

    k: int
    nodes: tuple[TreeNode, ...]
    roots: tuple[int, ...]
    root_region: str

    @property
    def grouped(self) -> bool:
        """Whether some leaf covers several variables (one hidden variable for the group)."""
        return any(len(node.vars) > 1 for node in self.nodes)

    def group_of(self, num_vars: int) -> list[tuple[int, ...]]:
        """Per node variable (`TreeNode.var`), the variables of its leaf."""
        out = [(v,) for v in range(num_vars)]
        for node in self.nodes:
            out[node.var] = node.vars
        return out

    def neighbours(self, num_vars: int, radius: int = 1) -> list[set[int]]:
        """Per node variable (`TreeNode.var`), the node variables at most `radius` edges away
        in the trees it belongs to."""
        adjacent: list[set[int]] = [set() for _ in range(num_vars)]
        for node in self.nodes:
            for c in node.children:
                child = self.nodes[c].var
                adjacent[node.var].add(child)
                adjacent[child].add(node.var)
        out = []
        for v in range(num_vars):
            reached, frontier = {v}, {v}
            for _ in range(radius):
                frontier = {u for w in frontier for u in adjacent[w]} - reached
                reached |= frontier
            out.append(reached - {v})
        return out


def discrete_leaves(circuit: Circuit) -> bool:
    """Whether every input of `circuit` has a discrete family: what `embed_chow_liu` needs."""
    from .families import family_spec
    for region in circuit.inputs:
        for family, _ in circuit.input_parts(region):
            spec = None if family is None else family_spec(family.name)
            if spec is None or spec.support_size(dict(family.args)) is None:
                return False
    return True


def find_latent_forest(circuit: Circuit) -> LatentForest | None:
    """The latent forest of `circuit` (see the module doc), or None if it has another shape."""
    root = circuit.region(circuit.root)
    if not isinstance(root, Sum) or not circuit.inputs:
        return None
    k = circuit.inputs[0].k
    nodes: list[TreeNode] = []

    def node(region: Sum, p: int) -> int | None:
        children = [circuit.region(c) for c in region.partitions[p]]
        leaves = [c for c in children if isinstance(c, Input)]
        edges = [c for c in children if isinstance(c, Sum)]
        if len(leaves) != 1 or leaves[0].k != k:
            return None
        if len(children) > 1 and not region.is_elementwise(p):
            return None
        child_nodes = []
        for e in edges:
            if e.k != k or len(e.partitions) != 1:
                return None
            c = node(e, 0)
            if c is None:
                return None
            child_nodes.append(c)
        nodes.append(TreeNode(region.name, p, tuple(leaves[0].scope), leaves[0].name,
                              tuple(e.name for e in edges), tuple(child_nodes)))
        return len(nodes) - 1

    roots = []
    for p in range(len(root.partitions)):
        r = node(root, p)
        if r is None:
            return None
        roots.append(r)
    return LatentForest(k, tuple(nodes), tuple(roots), root.name)
