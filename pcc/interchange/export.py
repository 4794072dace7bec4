"""Writing a circuit with its parameters in a node-level format: `pcc export`.

    export_text(circuit, format, root_unit=None) -> {suffix: text}   "" is the main file;
                                                                     psdd adds ".vtree"

Every parameter must be given (`CompiledCircuit.ir_params()` gives them all). `node_view`
(`pcc.interchange.unroll`) unrolls the region graph, K units per region, into the nodes the
writers print; each writer raises `ExportError` saying why a circuit does not fit it.

None of the formats shares parameters between nodes: a circuit with ties (`tie a b c`) is
written with a copy of each group's parameters in every tied region (`pcc.ir.untied`), after a
one-line warning.
"""
from __future__ import annotations

import warnings

from ..ir import Circuit, untied
from .juice import write_jpc
from .psdd import check_psdd_units, write_psdd
from .spflow import write_spflow
from .unroll import ExportError, node_view

EXPORT_FORMATS = ("psdd", "jpc", "spflow")

__all__ = ["EXPORT_FORMATS", "ExportError", "export_text"]


def export_text(circuit: Circuit, format: str, root_unit: int | None = None) -> dict[str, str]:
    """The files of `circuit` in `format` (one of EXPORT_FORMATS), by suffix ("" for the main).
    `root_unit` picks the density of a root with K > 1."""
    if circuit.ties:
        from ..frontend import PcWarning
        groups = len(circuit.ties)
        warnings.warn(f"{format} files share no parameters: the {groups} tie group"
                      f"{'s are' if groups > 1 else ' is'} written as a copy per tied region "
                      f"({len(circuit.tie_owner)} regions)", PcWarning, stacklevel=2)
        circuit = untied(circuit)
    if format == "psdd":
        check_psdd_units(circuit)
        text, vtree = write_psdd(node_view(circuit, root_unit))
        return {"": text, ".vtree": vtree}
    if format == "jpc":
        return {"": write_jpc(node_view(circuit, root_unit))}
    if format == "spflow":
        return {"": write_spflow(node_view(circuit, root_unit))}
    raise ExportError(f"cannot export to {format!r} (formats: {', '.join(EXPORT_FORMATS)})")

