"""Checkpoints: one file holding the circuit text, every parameter and a checksum of each,
loadable without pickle's code execution (`torch.load(weights_only=True)`), written atomically
(temp file, fsync, rename).

    {"format": "pcc-checkpoint", "version": 2, "circuit": <.pc text>,
     "state_dict": {name: tensor}, "checksums": {name: sha256 of dtype, shape and bytes},
     "meta": {...}}

Reading checks everything before a model is built: the keys and their types, every tensor's
checksum (damaged bytes), that no parameter is NaN and that only logits are infinite (a logit of
+-inf is a probability of 0 or 1), then that the parameters fit the circuit and give a finite
log p(all missing) = 0. Any failure is one `CheckpointError` line naming the file.
"""
from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import warnings
from dataclasses import dataclass

import torch

from .errors import CheckpointError, PcError
from .files import write_atomically

FORMAT, VERSION = "pcc-checkpoint", 2


@dataclass(frozen=True)
class Stored:
    """A checkpoint's verified contents: circuit text, parameters, meta."""

    circuit: str
    state_dict: dict
    meta: dict


def save(model, path: "str | os.PathLike", meta: dict | None = None) -> None:
    """Write `model` (a CompiledCircuit: circuit + parameters) to `path` atomically. Refuses a
    model with NaN parameters (a diverged run is not a model)."""
    from .frontend import to_text
    state = {k: _own_storage(v.detach().cpu()) for k, v in model.state_dict().items()}
    _check_values(state, os.fspath(path), "cannot save")
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "circuit": to_text(dataclasses.replace(model.circuit, params=())),
        "state_dict": state,
        "checksums": {k: checksum(v) for k, v in state.items()},
        "meta": dict(meta or {}),
    }
    write_atomically(path, lambda f: torch.save(payload, f))


def load(path: "str | os.PathLike", backend: str = "auto",
         map_location: "str | torch.device" = "cpu"):
    """(model, meta): the CompiledCircuit saved at `path` (bit-exact parameters) and its meta."""
    from .compiler import compile as compile_circuit
    from .frontend import parse
    path = os.fspath(path)
    stored = read(path, map_location)
    try:
        circuit = parse(stored.circuit, path=f"{path}[circuit]")
    except PcError as e:
        first = str(e).splitlines()[0]
        raise CheckpointError(f"{path}: the stored circuit is invalid ({first})") from None
    model = compile_circuit(circuit, backend=backend)
    state = stored.state_dict
    model.to(next(iter(state.values())).dtype if state else torch.float32)
    expected, given = set(model.state_dict()), set(state)
    if expected != given:
        raise CheckpointError(f"{path}: the parameters do not fit the circuit (missing: "
                              f"{_names(expected - given)}; unexpected: {_names(given - expected)})")
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        shape = next((line.strip() for line in str(e).splitlines() if "size mismatch" in line),
                     str(e).splitlines()[0])
        raise CheckpointError(f"{path}: the parameters do not fit the circuit ({shape})") from None
    with torch.no_grad():
        total = model(torch.full((1, model.num_vars), math.nan, dtype=state_dtype(state)))
    if not bool(torch.isfinite(total).all()):
        raise CheckpointError(f"{path}: the parameters do not define a distribution "
                              "(log p(all missing) is not finite)")
    return model, stored.meta


def load_model(path: "str | os.PathLike", backend: str = "auto",
               map_location: "str | torch.device" = "cpu"):
    """The model of a checkpoint (`pcc.load`): what `pcc train -o` or `pcc compile -o` saved."""
    return load(path, backend, map_location)[0]


def read(path: "str | os.PathLike", map_location: "str | torch.device" = "cpu") -> Stored:
    """The verified contents of a checkpoint (see the module doc), without building a model."""
    path = os.fspath(path)
    try:
        with warnings.catch_warnings():  # torch warns about odd pickle protocols in bad files
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint") from None
    except IsADirectoryError:
        raise CheckpointError(f"{path}: is a folder, not a checkpoint") from None
    except Exception as e:  # torch raises many types for a file that is not a checkpoint
        raise CheckpointError(f"{path}: not a pcc checkpoint ({type(e).__name__})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a pcc checkpoint")
    if payload.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint version {payload.get('version')!r} is not "
                              f"supported (this pcc reads version {VERSION}; version 1 had no "
                              "checksums: train or compile it again)")
    _check_fields(payload, path)
    state, sums = payload["state_dict"], payload["checksums"]
    if set(sums) != set(state):
        raise CheckpointError(f"{path}: damaged: the checksums do not list the parameters "
                              f"({_names(set(state) ^ set(sums))})")
    for name, tensor in state.items():
        if checksum(tensor) != sums[name]:
            raise CheckpointError(f"{path}: damaged: parameter '{name}' does not match its "
                                  "checksum")
    _check_values(state, path, "refusing")
    return Stored(payload["circuit"], state, payload["meta"])


def checksum(tensor: torch.Tensor) -> str:
    """sha256 of a tensor's dtype, shape and bytes (hex)."""
    t = tensor.detach().cpu().contiguous()
    digest = hashlib.sha256(f"{t.dtype}{tuple(t.shape)}".encode())
    digest.update(t.reshape(-1).view(torch.uint8).numpy())  # the bytes in place, not a copy
    return digest.hexdigest()


def _own_storage(tensor: torch.Tensor) -> torch.Tensor:
    """`tensor`, or a compact copy when it is a view of a larger storage (torch.save writes a
    tensor's whole storage); a parameter is saved as it is, without a second copy in memory."""
    if tensor.is_contiguous() and tensor.untyped_storage().nbytes() == tensor.numel() * tensor.element_size():
        return tensor
    return tensor.clone()


def state_dtype(state: dict) -> torch.dtype:
    return next((v.dtype for v in state.values() if v.is_floating_point()), torch.float32)


def _check_fields(payload: dict, path: str) -> None:
    """The keys a checkpoint must have, with their types."""
    fields = {"circuit": str, "state_dict": dict, "checksums": dict, "meta": dict}
    for key, kind in fields.items():
        if key not in payload:
            raise CheckpointError(f"{path}: not a valid pcc checkpoint: '{key}' is missing")
        if not isinstance(payload[key], kind):
            raise CheckpointError(f"{path}: not a valid pcc checkpoint: '{key}' is a "
                                  f"{type(payload[key]).__name__}, expected a {kind.__name__}")
    for name, value in payload["state_dict"].items():
        if not isinstance(name, str) or not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{path}: not a valid pcc checkpoint: parameter {name!r} is a "
                                  f"{type(value).__name__}, expected a tensor")
    for name, value in payload["checksums"].items():
        if not isinstance(value, str):
            raise CheckpointError(f"{path}: not a valid pcc checkpoint: the checksum of "
                                  f"{name!r} is a {type(value).__name__}, expected text")


def _check_values(state: dict, path: str, verb: str) -> None:
    """No NaN anywhere; infinities only in logits (log-odds or log-probabilities)."""
    for name, value in state.items():
        if not value.is_floating_point():
            continue
        nan = bool(torch.isnan(value).any())
        if nan or (not _is_logit(name) and bool(torch.isinf(value).any())):
            raise CheckpointError(f"{path}: {verb}: parameter '{name}' has "
                                  f"{'NaN' if nan else 'infinite'} values")


def _is_logit(name: str) -> bool:
    """Whether a state_dict entry holds logits (`sum_logits.3`, `leaf_params.0.logit`)."""
    return any(part in ("logit", "logits", "sum_logits", "mix_logits") for part in name.split("."))


def _names(names: set, most: int = 3) -> str:
    if not names:
        return "none"
    shown = sorted(names)[:most]
    return ", ".join(shown) + (f" and {len(names) - most} more" if len(names) > most else "")
