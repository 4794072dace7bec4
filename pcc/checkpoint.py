"""Checkpoints: one file holding the circuit text and every parameter, loadable without pickle's
code execution (`torch.load(weights_only=True)`), written atomically (temp file, fsync, rename).

    {"format": "pcc-checkpoint", "version": 1, "circuit": <.pc text>, "state_dict": {...},
     "meta": {...}}
"""
from __future__ import annotations

import dataclasses
import os
import tempfile
import warnings

import torch

from .errors import CheckpointError, PcError
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


def write_atomically(path: "str | os.PathLike", write) -> None:
    """Call write(file) on a temp file next to `path`, fsync it, then rename it over `path`."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=folder)
    except OSError as e:
        raise CheckpointError(f"{path}: cannot write ({e.strerror})") from None
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual mode
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


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
