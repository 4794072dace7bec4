"""Shared by the interchange tests: reading example files and text, compiling, enumerating states,
and comparing circuits up to region names."""
from __future__ import annotations

import itertools
import math
import warnings
from pathlib import Path

import torch

from pcc.compiler import plan
from pcc.interchange import read_circuit
from pcc.interchange.source import Source
from pcc.ir import Circuit, Input
from pcc.runtime.module import CompiledCircuit

EXAMPLES = Path(__file__).resolve().parent.parent / "ir_examples" / "interchange"


def example_text(name: str) -> str:
    return (EXAMPLES / name).read_text()


def import_text(text: str, fmt: str, **options) -> Circuit:
    """The circuit of `text` read as `fmt`, warnings silenced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return read_circuit(Source(text, f"test.{fmt}"), fmt, **options)


def compiled(circuit: Circuit, backend: str = "torch") -> CompiledCircuit:
    """The compiled model in float64, its parameters loaded again after the conversion (they are
    stored as float32 first)."""
    model = CompiledCircuit(circuit, plan(circuit), backend=backend).double()
    model.load_ir_params(circuit.params)
    return model


def log_likelihoods(circuit: Circuit, x: torch.Tensor, backend: str = "torch") -> torch.Tensor:
    with torch.no_grad():
        return compiled(circuit, backend)(x)


def all_states(sizes: list[int]) -> torch.Tensor:
    return torch.tensor(list(itertools.product(*(range(s) for s in sizes))), dtype=torch.float64)


def canonical(circuit: Circuit) -> tuple:
    """The circuit (variable names aside) with regions renamed in the order a depth-first walk from
    the root (children in partition order) finishes them: equal for circuits that differ only in
    names and order."""
    names: dict[str, str] = {}
    stack = [(circuit.root, False)]
    while stack:
        name, expanded = stack.pop()
        if name in names:
            continue
        region = circuit.region(name)
        if expanded or isinstance(region, Input):
            names[name] = f"r{len(names)}"
            continue
        stack.append((name, True))
        stack += [(c, False) for c in reversed(list(region.children)) if c not in names]
    regions = []
    for name, new in names.items():
        r = circuit.region(name)
        if isinstance(r, Input):
            regions.append((new, "input", r.scope, r.k, str(circuit.family_of(r))))
        else:
            regions.append((new, "sum", r.k, tuple(tuple(names[c] for c in p) for p in r.partitions)))
    params = {(names[p.region], p.field, p.index): (p.shape, p.values) for p in circuit.params
              if p.region in names}
    return circuit.num_vars, tuple(regions), params


def assert_same_circuit(a: Circuit, b: Circuit, rel: float = 1e-12) -> None:
    """Equal up to region names, parameters up to float rounding (`rel`)."""
    vars_a, regions_a, params_a = canonical(a)
    vars_b, regions_b, params_b = canonical(b)
    assert vars_a == vars_b
    assert regions_a == regions_b
    assert params_a.keys() == params_b.keys()
    for key, (shape, values) in params_a.items():
        assert shape == params_b[key][0], key
        for u, v in zip(values, params_b[key][1]):
            assert math.isclose(u, v, rel_tol=rel, abs_tol=1e-300), (key, u, v)
