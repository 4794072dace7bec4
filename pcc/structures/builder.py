"""Collects the regions a generator makes and emits them as a `Circuit`, children first."""
from __future__ import annotations

import dataclasses
from typing import Iterable, Sequence

from ..ir import Circuit, Family, Input, Region, Sum, default_var_names
from ..scopes import VarList


class CircuitBuilder:
    """Regions of one circuit by name. Every region holds `k` units except the root, which holds 1.

    Inputs leave their family unset, so they use the circuit's default leaf family `leaf`."""

    def __init__(self, num_vars: int, k: int, leaf: Family):
        self.num_vars, self.k, self.leaf = num_vars, k, leaf
        self._regions: dict[str, Region] = {}

    def input(self, name: str, scope: Iterable[int]) -> str:
        """An input region over `scope`, in ascending order (a `VarList` is taken as it is)."""
        return self._add(Input(name, scope if isinstance(scope, VarList) else tuple(sorted(scope)), self.k))

    def sum(self, name: str, partitions: Sequence[Sequence[str]], elementwise: bool = False) -> str:
        """A sum region over `partitions`: outer products, or element-wise ones (`a .* b`)."""
        return self._add(Sum(name, self.k, tuple(tuple(p) for p in partitions),
                             elementwise=tuple(range(len(partitions))) if elementwise else ()))

    def build(self, root: str) -> Circuit:
        regions = dict(self._regions)
        regions[root] = dataclasses.replace(regions[root], k=1)
        circuit = Circuit(default_var_names(self.num_vars), tuple(regions.values()), root, self.leaf)
        order = circuit.topological_order()
        return dataclasses.replace(circuit, regions=tuple(regions[name] for name in order))

    def _add(self, region: Region) -> str:
        assert region.name not in self._regions, f"region '{region.name}' made twice"
        self._regions[region.name] = region
        return region.name
