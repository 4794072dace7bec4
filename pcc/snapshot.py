"""Snapshots of a training run, to resume it after a kill (`pcc train --resume`): the state of
the training loop at one of its safe points (`pcc.train`), written beside the checkpoint
(`m.pt.state`) at most every `every` seconds, by the process that saves (rank 0 under torchrun).

A snapshot file is MAGIC (8 bytes), the sha256 of the rest (32 bytes), then a `torch.save`
archive, read with `weights_only=True` (no code runs), of

    {"format": "pcc-snapshot", "version": 1, "serial": n (1, 2, ... over the run),
     "written": unix time, "made": {"ranks": N, "device": "cpu"},
     "fingerprint": {what the run is made of: content hashes of the circuit, the starting
                     parameters and the data; the settings},
     "where": {a summary of where the run stands, see below},
     "state": {the training loop's state: `pcc.train` writes and reads it}}

`where` holds "stage" ("online", "polish": full-batch EM, "floor": the plain Chow-Liu tree
check, "next member": between the members of an ensemble), "member" and "members", "epoch"
(online epochs done) of "epochs", "batch" (of the current epoch) of "batches", "polished"
(full-batch iterations done) of "polish", "best" (the best score so far, or None), "best_epoch",
and "seconds" (training time used over every session).

Two generations. A new snapshot goes to a temp file (fsync), the newest one is renamed to
`m.pt.state.1`, the temp file to `m.pt.state`, then the folder is synced: a kill at any moment
leaves at least one whole snapshot, and a full disk leaves both as they were. Resuming reads the
newest, falls back to the older one if it is damaged or missing (and says so), and refuses a
snapshot whose fingerprint differs from the run's with one line naming the first difference.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import math
import os
import sys
import time
import warnings
from dataclasses import dataclass
from typing import Callable

import torch

from .errors import CheckpointError, PcError
from .files import write_atomically

FORMAT, VERSION = "pcc-snapshot", 1
MAGIC = b"PCCSNAP\x01"
DIGEST_BYTES = 32
DEFAULT_EVERY = 300.0  # seconds between snapshots (`pcc train --snapshot-every`)
OLDER = ".1"  # the older generation's suffix
FIELDS = {"serial": int, "written": float, "made": dict, "fingerprint": dict, "where": dict,
          "state": dict}


class SnapshotMismatch(PcError):
    """A snapshot was made from another circuit, other data or other settings than the run."""


@dataclass(frozen=True)
class Snapshot:
    """A verified snapshot read from `path`; `digest`: the sha256 of its archive (hex)."""

    path: str
    digest: str
    serial: int
    written: float
    made: dict
    fingerprint: dict
    where: dict
    state: dict


def write(path: str, serial: int, fingerprint: dict, where: dict, state: dict,
          made: dict | None = None, keep: bool = True) -> int:
    """Write a snapshot to `path` atomically (see the module doc), the file at `path` kept as
    the older generation unless `keep` is False; its size in bytes. A PcError if it cannot be
    written (the files there stay as they were)."""
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, "version": VERSION, "serial": serial, "written": time.time(),
                "made": dict(made or {}), "fingerprint": fingerprint, "where": where,
                "state": state}, buffer)
    body = buffer.getbuffer()
    digest = hashlib.sha256(body).digest()

    def put(f) -> None:
        f.write(MAGIC)
        f.write(digest)
        f.write(body)
    write_atomically(path, put, keep=path + OLDER if keep else None)
    return len(MAGIC) + DIGEST_BYTES + len(body)


def read(path: str) -> Snapshot:
    """The snapshot at `path`, verified (checksum, format, fields); a CheckpointError naming the
    file and what is wrong otherwise."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such snapshot") from None
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read it ({e.strerror or e})") from None
    if not data.startswith(MAGIC):
        raise CheckpointError(f"{path}: not a pcc snapshot")
    digest, body = data[len(MAGIC): len(MAGIC) + DIGEST_BYTES], memoryview(data)[
        len(MAGIC) + DIGEST_BYTES:]
    if hashlib.sha256(body).digest() != digest:
        raise CheckpointError(f"{path}: damaged (its checksum does not match its contents)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            payload = torch.load(io.BytesIO(body), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 -- torch raises many types for a bad archive
        raise CheckpointError(f"{path}: damaged ({type(e).__name__})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a pcc snapshot")
    if payload.get("version") != VERSION:
        raise CheckpointError(f"{path}: snapshot version {payload.get('version')!r} is not "
                              f"supported (this pcc reads version {VERSION})")
    for key, kind in FIELDS.items():
        if not isinstance(payload.get(key), kind):
            raise CheckpointError(f"{path}: not a valid pcc snapshot: '{key}' is missing or not "
                                  f"a {kind.__name__}")
    return Snapshot(path, digest.hex(), **{key: payload[key] for key in FIELDS})


def is_snapshot(path: str) -> bool:
    """Whether the file at `path` starts as a snapshot does."""
    try:
        with open(path, "rb") as f:
            return f.read(len(MAGIC)) == MAGIC
    except OSError:
        return False


def newest(path: str) -> tuple[Snapshot | None, list[str]]:
    """(the newest valid snapshot at `path` or its older generation, or None if neither file
    exists; notes saying why the older one was taken). A CheckpointError if the files there are
    all damaged."""
    older = path + OLDER
    try:
        return read(path), []
    except CheckpointError as e:
        if not os.path.exists(path) and not os.path.exists(older):
            return None, []
        problem = str(e) if os.path.exists(path) else f"{path}: missing (a write was cut short)"
    try:
        found = read(older)
    except CheckpointError as e:
        raise CheckpointError(f"{problem}, and {e}: no snapshot to resume from") from None
    return found, [f"{problem}: resuming from the older snapshot {older}"]


def mismatch(stored: dict, current: dict) -> str | None:
    """The first difference between two fingerprints, in words; None if they are equal. Keys
    starting with "--" are settings (shown with their values), the others content hashes."""
    for key in dict.fromkeys([*current, *stored]):
        old, new = stored.get(key), current.get(key)
        if old == new:
            continue
        if key.startswith("--"):
            return f"{key} {_show(new)} (the snapshot's run had {key} {_show(old)})"
        if new is None:
            return f"no {key} (the snapshot's run had some)"
        if old is None:
            return f"{key} (the snapshot's run had none)"
        return f"other {key} (sha256 {str(new)[:12]}..., the snapshot's {str(old)[:12]}...)"
    return None


def _show(value) -> str:
    return "none" if value is None else str(value)


def describe(where: dict) -> str:
    """Where a run stands, in words: `member 2 of 4, online EM epoch 3 of at most 60 (batch 40
    of 162)`, `full-batch EM, 5 of at most 300 iterations done`, ..."""
    stage = where.get("stage")
    parts = []
    if where.get("candidate") is not None:  # the capacity search (`pcc.search`)
        parts.append(f"capacity search, candidate {where['candidate']} of at least "
                     f"{where['candidates']}" + (f" ({where['capacity']})" if where.get("capacity")
                                                 else ""))
        if stage == "next member":
            return parts[0] + " next"
    if where.get("members", 1) > 1:
        parts.append(f"member {where.get('member')} of {where.get('members')}")
    if stage == "online":
        parts.append(f"online EM epoch {where.get('epoch', 0) + 1} of at most "
                     f"{where.get('epochs')} (batch {where.get('batch')} of "
                     f"{where.get('batches')} done)")
    elif stage == "polish":
        parts.append(f"full-batch EM, {where.get('polished')} of at most {where.get('polish')} "
                     "iterations done")
    elif stage == "floor":
        parts.append("trained; the plain Chow-Liu tree floor next")
    elif stage == "next member":
        parts[-1:] = [f"member {where.get('member')} of {where.get('members')} next"]
    else:
        parts.append(f"stage {stage}")
    return ", ".join(parts)


def describe_best(where: dict) -> str:
    """The best score so far (validation, or training without validation): `-6.0123 (epoch
    2)` in online EM, `-6.0011` once full-batch EM improved on it, or `none yet`."""
    best = where.get("best")
    if best is None or not math.isfinite(best):
        return "none yet"
    epoch = where.get("best_epoch") if where.get("stage") == "online" else None
    return f"{best:.4f}" + (f" (epoch {epoch})" if epoch and epoch > 0 else "")


class Snapshots:
    """The snapshots of one training run at `path` (and `path` + OLDER): `fit`/`fit_members`
    (`pcc.train`) call `due()` at every safe point and `save(where, state)` when it is true,
    which is at most every `every` seconds (0: never) and only where `write` (the saving rank).
    `resume()` reads the newest valid snapshot into `resumed` for the training to go on from.

    `fingerprint` says what the run is made of (see `mismatch`); `made` how (ranks, device:
    resuming with others is allowed, but then the parameters differ from an uninterrupted run's
    by float rounding). `say(line)` reports (default: stderr). A snapshot that cannot be
    written (a full disk) is reported once and training goes on; the previous ones stay."""

    def __init__(self, path: "str | os.PathLike", every: float = DEFAULT_EVERY,
                 fingerprint: dict | None = None, write: bool = True, made: dict | None = None,
                 say: Callable[[str], None] | None = None):
        if every < 0:
            raise ValueError(f"every must be >= 0 seconds, got {every}")
        self.path, self.every, self.writes = os.fspath(path), every, write
        self.fingerprint, self.made = dict(fingerprint or {}), dict(made or {})
        self.say = say or (lambda line: print(line, file=sys.stderr))
        self.resumed: Snapshot | None = None
        self.latest: dict | None = None  # `where` of this run's newest snapshot
        self.serial = 0
        self.seconds: list[float] = []  # how long each save took
        self.bytes = 0  # the size of the last snapshot written
        self._last = time.monotonic()
        self._failure: str | None = None

    def due(self) -> bool:
        """Whether a snapshot is to be written at this safe point."""
        return self.writes and self.every > 0 and time.monotonic() - self._last >= self.every

    def save(self, where: dict, state: dict) -> None:
        """Write a snapshot (see the module doc) if this process writes; the first of a new run
        replaces the files of any earlier run, and a failure is reported, not raised."""
        if not self.writes:
            return
        started = time.perf_counter()
        first = self.serial == 0
        try:
            self.bytes = write(self.path, self.serial + 1, self.fingerprint, where, state,
                               self.made, keep=not first)
            if first and os.path.exists(self.path + OLDER):
                os.unlink(self.path + OLDER)
        except (PcError, OSError) as e:
            if str(e) != self._failure:
                kept = (f"the previous one ({describe(self.latest)}) is intact"
                        if self.latest is not None else "no earlier snapshot of this run")
                self.say(f"could not write a snapshot: {e}; {kept}; training goes on")
            self._failure = str(e)
        else:
            if self._failure is not None:
                self.say(f"wrote a snapshot to {self.path} again")
            self.serial, self.latest, self._failure = self.serial + 1, where, None
        self._last = time.monotonic()
        self.seconds.append(time.perf_counter() - started)

    def resume(self) -> Snapshot | None:
        """Read the newest valid snapshot into `resumed` (None, and said so, if there is none:
        the run starts from the beginning). A CheckpointError if every snapshot there is
        damaged; a SnapshotMismatch if it was made from another circuit, data or settings."""
        found, notes = newest(self.path)
        for note in notes:
            self.say(note)
        if found is None:
            self.say(f"no snapshot at {self.path}: starting the run from the beginning")
            return None
        difference = mismatch(found.fingerprint, self.fingerprint)
        if difference is not None:
            raise SnapshotMismatch(f"{found.path}: cannot resume with {difference}: give the "
                                   "same circuit, data and settings, or leave out --resume to "
                                   "start a new run")
        self.resumed, self.serial, self.latest = found, found.serial, found.where
        self.say(f"resuming from {found.path} (snapshot {found.serial}: {describe(found.where)}; "
                 f"{found.where.get('seconds', 0.0):.1f} s of training before)")
        made = {k: v for k, v in found.made.items() if self.made.get(k, v) != v}
        if made:
            self.say("the snapshot was made with " + ", ".join(
                f"{k} {v}" for k, v in made.items()) + ", this run has " + ", ".join(
                f"{k} {self.made[k]}" for k in made) + ": the parameters will differ from an "
                "uninterrupted run's by float rounding")
        return found

    def existing(self) -> Snapshot | None:
        """The newest valid snapshot at `path`, of any run (None if there is none or it is
        damaged)."""
        try:
            return newest(self.path)[0]
        except CheckpointError:
            return None

    def remove(self) -> None:
        """Delete the snapshot files (the run is over)."""
        for name in (self.path, self.path + OLDER):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name)


def file_hash(path: "str | os.PathLike") -> str:
    """sha256 of a file's bytes (hex)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def parameters_hash(model) -> str:
    """sha256 (hex) of a model's parameters and buffers: names, dtypes, shapes and bytes."""
    from .checkpoint import checksum
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(f"{name}:{checksum(tensor)};".encode())
    return digest.hexdigest()


def circuit_hash(circuit) -> str:
    """sha256 (hex) of a circuit's canonical text, without its inline parameter values."""
    from .frontend import to_text
    return hashlib.sha256(to_text(dataclasses.replace(circuit, params=())).encode()).hexdigest()
