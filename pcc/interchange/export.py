"""Writing a circuit with its parameters in a node-level format: `pcc export`.

    export_text(circuit, format) -> {suffix: text}   "" is the main file; psdd adds ".vtree"

The formats hold node-level circuits: every region must have K = 1 and every parameter must be
given (`CompiledCircuit.ir_params()` gives them all). `node_view` turns such a circuit into the
nodes the writers print; each writer raises `ExportError` saying why a circuit does not fit it.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import PcError
from ..ir import Circuit, Input
from .node_graph import Leaf

EXPORT_FORMATS = ("psdd", "jpc", "spflow")


class ExportError(PcError, ValueError):
    """The circuit cannot be written in the asked format (the message says why)."""


@dataclass(frozen=True)
class NodeInput:
    """An input region: one leaf per variable of its scope (their product)."""

    name: str
    leaves: tuple[Leaf, ...]


@dataclass(frozen=True)
class NodeSum:
    """A sum region: a weighted sum of its partitions, each the product of its child regions."""

    name: str
    partitions: tuple[tuple[str, ...], ...]
    weights: tuple[float, ...]


def export_text(circuit: Circuit, format: str) -> dict[str, str]:
    """The files of `circuit` in `format` (one of EXPORT_FORMATS), by suffix ("" for the main)."""
    nodes = node_view(circuit, format)
    if format == "psdd":
        from .psdd import write_psdd
        text, vtree = write_psdd(nodes)
        return {"": text, ".vtree": vtree}
    if format == "jpc":
        from .juice import write_jpc
        return {"": write_jpc(nodes)}
    if format == "spflow":
        from .spflow import write_spflow
        return {"": write_spflow(nodes)}
    raise ExportError(f"cannot export to {format!r} (formats: {', '.join(EXPORT_FORMATS)})")


def node_view(circuit: Circuit, format: str) -> list[NodeInput | NodeSum]:
    """The regions the root reaches, children first (the root last), with their parameters."""
    params = {(p.region, p.field): p for p in circuit.params}
    order = _reachable_order(circuit)
    nodes: list[NodeInput | NodeSum] = []
    for name in order:
        region = circuit.region(name)
        if region.k != 1:
            raise ExportError(f"region '{name}' has K={region.k}: {format} files hold node-level "
                              "circuits (K = 1 in every region); keep it as .pc")
        if isinstance(region, Input):
            family = circuit.family_of(region)
            nodes.append(NodeInput(name, tuple(
                _leaf(v, s, family, params, name) for s, v in enumerate(region.scope))))
        else:
            weights = (1.0,)
            if len(region.partitions) > 1:
                weights = _param(params, name, "mixing").values
            nodes.append(NodeSum(name, region.partitions, tuple(weights)))
    return nodes


def _reachable_order(circuit: Circuit) -> list[str]:
    reached = circuit.reachable()
    return [name for name in circuit.topological_order() if name in reached]


def _leaf(var: int, slot: int, family, params, name: str) -> Leaf:
    """The leaf of input `name` over its `slot`-th variable `var`."""
    def value(field: str, extra: int = 1):
        values = _param(params, name, field).values
        return values[slot * extra:(slot + 1) * extra]

    if family.name == "bernoulli":
        return Leaf(var, "bernoulli", value("p"))
    if family.name == "categorical":
        return Leaf(var, "categorical", value("probs", int(family.arg("n"))))
    if family.name == "binomial":
        return Leaf(var, "binomial", (float(family.arg("n")), *value("p")))
    return Leaf(var, "normal", (*value("mean"), *value("std")))


def _param(params, region: str, field: str):
    found = params.get((region, field))
    if found is None:
        raise ExportError(f"region '{region}' has no {field} parameters: export a compiled model "
                          "(its ir_params()) or a .pc with every parameter given")
    return found


def fmt(x: float) -> str:
    """A float as text that reads back exactly (`repr`), -inf for log 0."""
    return repr(float(x))
