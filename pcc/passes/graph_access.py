"""Reading the region graph the way the passes need it (see `pcc.region_graph` for the layout)."""
from __future__ import annotations

import networkx as nx

from ..ir import Family


def input_family(graph: nx.DiGraph, region) -> Family:
    """The family in force for an input region node: its own, else the circuit default."""
    own = graph.nodes[region].get("declared_family")
    return own if own is not None else graph.graph["leaf"]
