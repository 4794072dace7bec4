"""Layerize: assign every node of the region graph the earliest layer at which it can run.

    level(input region) = 0
    level(partition)    = 1 + max(level(child region))
    level(sum region)   = max(level(partition))     (its mixing step runs after that layer's einsums)

This is depth-minimal: every node runs as soon as its inputs exist (ASAP scheduling).
"""
from __future__ import annotations

from dataclasses import dataclass

import networkx as nx


@dataclass(frozen=True)
class Layering:
    """`level[node]` for every region and partition node; `depth` is the number of sum layers."""

    level: dict
    depth: int


def layerize(graph: nx.DiGraph) -> Layering:
    """Levels of all nodes of `graph` (edges parent -> partition -> child)."""
    level: dict = {}
    for node in reversed(list(nx.topological_sort(graph))):
        succ = list(graph.successors(node))
        if node[0] == "partition":
            level[node] = 1 + max(level[c] for c in succ)
        else:
            level[node] = max((level[c] for c in succ), default=0)
    return Layering(level, max(level.values(), default=0))
