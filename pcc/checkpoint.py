"""Checkpoints: one file holding the circuit text, every parameter and a checksum of each,
loadable without pickle's code execution (`torch.load(weights_only=True)`), written atomically
(temp file, fsync, rename).

    {"format": "pcc-checkpoint", "version": 3, "circuit": <.pc text>,
     "state_dict": {name: tensor}, "checksums": {name: sha256 of dtype, shape and bytes},
     "layout": {weight pool name: the member of each row}, "meta": {...}}

The layout names the partition (or region) each row of a weight pool holds
(`pcc.runtime.layout.pool_members`), so a checkpoint loads into any later version's layout of
the same circuit; version 2 (one tensor per op, pcc before the linear-space engine) is placed
by reconstructing the op order of its day.

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
from .runtime.layout import pool_members, relayout

FORMAT, VERSION = "pcc-checkpoint", 3
READABLE = (2, 3)  # version 2: one weight tensor per op, placed by the op order of its day


@dataclass(frozen=True)
class Stored:
    """A checkpoint's verified contents: circuit text, parameters, meta."""

    circuit: str
    state_dict: dict
    meta: dict
    layout: dict | None  # pool name -> member per row; None for version 2


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
        "layout": pool_members(model.plan, model.layout),
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
    state = _placed(stored, circuit, model, path)
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
    if payload.get("version") not in READABLE:
        raise CheckpointError(f"{path}: checkpoint version {payload.get('version')!r} is not "
                              f"supported (this pcc reads versions 2 and 3; version 1 had no "
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
    layout = payload.get("layout") if payload["version"] >= 3 else None
    if payload["version"] >= 3 and not isinstance(layout, dict):
        raise CheckpointError(f"{path}: not a valid pcc checkpoint: 'layout' is missing")
    return Stored(payload["circuit"], state, payload["meta"], layout)


def _placed(stored: Stored, circuit, model, path: str) -> dict:
    """The stored parameters in `model`'s layout (see the module doc)."""
    wanted = pool_members(model.plan, model.layout)
    layout = stored.layout if stored.layout is not None else _version2_layout(circuit)
    if layout == wanted:
        return stored.state_dict
    try:
        return relayout(stored.state_dict, layout, wanted)
    except (KeyError, IndexError, RuntimeError):
        raise CheckpointError(f"{path}: the parameters do not fit the circuit (their layout "
                              "names other partitions)") from None


def _version2_layout(circuit) -> dict:
    """Version 2's weights: one tensor per weighted op, `sum_logits.i` / `mix_logits.j` in op
    order, with element-wise products grouped by arity as then."""
    from .passes import group_by_shape, layerize, make_plan
    from .passes.plan import EinsumOp, MixOp
    from .region_graph import to_graph
    graph = to_graph(circuit)
    legacy = make_plan(graph, group_by_shape(graph, layerize(graph), by_arity=True),
                       circuit.root, circuit.vars, split=False)
    out: dict[str, list] = {}
    sums = mixes = 0
    for op in legacy.ops:
        if isinstance(op, MixOp):
            out[f"mix_logits.{mixes}"], mixes = list(op.members), mixes + 1
        elif not isinstance(op, EinsumOp) or op.has_weights:
            out[f"sum_logits.{sums}"], sums = [list(m) for m in op.members], sums + 1
    return out


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
