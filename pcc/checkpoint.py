"""Checkpoints: one file holding the circuit text and every parameter, loadable without pickle's
code execution (`torch.load(weights_only=True)`), written atomically (temp file, fsync, rename).

    {"format": "pcc-checkpoint", "version": 1, "circuit": <.pc text>, "state_dict": {...},
     "meta": {...}}
"""
from __future__ import annotations

import dataclasses
import os
import warnings

import torch

from .errors import CheckpointError, PcError
from .files import write_atomically
from .runtime.module import CompiledCircuit

FORMAT, VERSION = "pcc-checkpoint", 1


def save(model: CompiledCircuit, path: "str | os.PathLike", meta: dict | None = None) -> None:
    """Write `model` (circuit + parameters) to `path` atomically."""
    from .frontend import to_text
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "circuit": to_text(dataclasses.replace(model.circuit, params=())),
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "meta": dict(meta or {}),
    }
    write_atomically(path, lambda f: torch.save(payload, f))


def load(path: "str | os.PathLike", backend: str = "auto",
         map_location: "str | torch.device" = "cpu") -> tuple[CompiledCircuit, dict]:
    """The model saved at `path` (bit-exact parameters) and its meta dict."""
    from .compiler import compile as compile_circuit
    from .frontend import parse
    path = os.fspath(path)
    try:
        with warnings.catch_warnings():  # torch warns about odd pickle protocols in bad files
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint") from None
    except Exception as e:  # torch raises many types for a file that is not a checkpoint
        raise CheckpointError(f"{path}: not a pcc checkpoint ({type(e).__name__})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a pcc checkpoint")
    if payload.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint version {payload.get('version')} is not "
                              f"supported (this pcc reads version {VERSION})")
    try:
        circuit = parse(payload["circuit"], path=f"{path}[circuit]")
    except PcError as e:
        raise CheckpointError(f"{path}: the stored circuit is invalid:\n{e}") from None
    model = compile_circuit(circuit, backend=backend)
    state = payload["state_dict"]
    dtype = next(iter(state.values())).dtype if state else torch.float32
    model.to(dtype)
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise CheckpointError(f"{path}: parameters do not fit the circuit ({e})") from None
    return model, payload.get("meta", {})
