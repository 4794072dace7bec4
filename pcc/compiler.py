"""`pcc.compile`: .pc text, a path or a Circuit -> a `CompiledCircuit` module.

    text --parse--> Circuit --validate--> region graph --layerize, group--> Plan --lower--> module

Parsing and planning need no torch (`pcc compile --explain` starts without it); `compile` imports
it on first use.
"""
from __future__ import annotations

import gc
import os
from typing import TYPE_CHECKING

from .errors import PcCheckError, PcError
from .ir import Circuit
from .passes import group_by_shape, layerize, make_plan, Plan
from .region_graph import to_graph

if TYPE_CHECKING:
    import torch

    from .runtime.module import CompiledCircuit


def as_circuit(source: "str | os.PathLike | Circuit") -> Circuit:
    """A validated Circuit from a Circuit, a path to a .pc file (or to a file `pcc import` reads,
    by its extension: .psdd .jpc .spn .spflow .json), or .pc text."""
    from .frontend import load, parse, validate
    from .interchange import format_of_path, load_circuit
    if isinstance(source, Circuit):
        errors = [d for d in validate(source) if d.severity == "error"]
        if errors:
            raise PcCheckError(errors)
        return source
    if isinstance(source, os.PathLike) or ("\n" not in source and not source.lstrip().startswith(
            "pc ")):
        from .files import is_checkpoint_path
        path = os.fspath(source)
        if is_checkpoint_path(path):
            raise PcError(f"{path} is a checkpoint, not a circuit: load it with pcc.load({path!r})")
        return as_circuit(load_circuit(path)) if format_of_path(path) else load(path)
    return parse(source)


def plan(circuit: Circuit) -> Plan:
    """Run the passes on a valid circuit."""
    collecting = gc.isenabled()
    gc.disable()  # the passes make many small objects and no cycles: collecting costs ~1.5x
    try:
        graph = to_graph(circuit)
        return make_plan(graph, group_by_shape(graph, layerize(graph)), circuit.root, circuit.vars)
    finally:
        if collecting:
            gc.enable()


def compile(source: "str | os.PathLike | Circuit", backend: str = "auto", seed: int = 0,
            dtype: "torch.dtype | None" = None) -> "CompiledCircuit":
    """Compile a circuit to a torch module computing log p(x); see `CompiledCircuit`.

    backend: 'auto' (Triton on CUDA tensors, torch elsewhere), 'torch', 'triton', or 'naive'
    (node by node, the reference). `seed` initializes parameters the file does not give;
    `dtype` is the parameters' (default float32; inline parameters are read straight into it). A
    circuit too large to build here is a `SizeError` before anything is allocated (`pcc.sizes`)."""
    import torch

    from .runtime.module import CompiledCircuit
    from .sizes import check_build_size
    dtype = torch.float32 if dtype is None else dtype
    circuit = as_circuit(source)
    circuit_plan = plan(circuit)  # index arrays per region, whatever their K: cheap to make
    check_build_size(circuit, circuit_plan, torch.finfo(dtype).bits // 8)
    return CompiledCircuit(circuit, circuit_plan, backend=backend, seed=seed, dtype=dtype)
