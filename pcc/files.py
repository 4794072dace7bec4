"""Writing files atomically: a temp file next to the target, fsynced, then renamed over it (and
the folder synced), so a crash or a full disk never leaves a half-written file (the old one stays
intact). And telling a checkpoint file from a circuit without importing torch."""
from __future__ import annotations

import os
import stat
import tempfile
from typing import BinaryIO, Callable

from .errors import PcError

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt")
_ZIP_MAGIC = b"PK\x03\x04"  # torch.save writes a zip archive


def write_atomically(path: "str | os.PathLike", write: Callable[[BinaryIO], object],
                     keep: "str | os.PathLike | None" = None) -> None:
    """Call write(file) on a temp file next to `path`, then rename it over `path`. The file gets
    the mode of the file it replaces, or the usual mode of a new file (0666 minus the umask).
    `keep`: the file at `path`, if any, is first renamed to `keep` (a previous generation; a
    crash between the two renames leaves it and no file at `path`). An OSError becomes a PcError
    naming the path; the temp file never outlives the call."""
    path = os.fspath(path)
    temp = None
    try:
        fd, temp = tempfile.mkstemp(prefix=".pcc-", suffix=".tmp",
                                    dir=os.path.dirname(os.path.abspath(path)))
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(temp, _mode_for(path))
        if keep is not None and os.path.exists(path):
            os.replace(path, keep)
        os.replace(temp, path)
        temp = None
        _sync_folder(path)
    except OSError as e:
        raise PcError(f"cannot write {path}: {e.strerror or e}") from None
    finally:
        if temp is not None and os.path.exists(temp):
            os.unlink(temp)


def write_text(path: "str | os.PathLike", text: str) -> None:
    """Replace the file at `path` by UTF-8 `text` atomically."""
    write_atomically(path, lambda f: f.write(text.encode("utf-8")))


def _sync_folder(path: str) -> None:
    """fsync the folder holding `path`, so that its renames survive a power cut (where the file
    system allows it)."""
    try:
        fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems cannot sync a folder
    finally:
        os.close(fd)


def _mode_for(path: str) -> int:
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def is_checkpoint_path(path: "str | os.PathLike") -> bool:
    """Whether `path` names a checkpoint: by its extension, or by its first bytes (a zip
    archive, as torch.save writes)."""
    path = os.fspath(path)
    if path.lower().endswith(CHECKPOINT_SUFFIXES):
        return True
    try:
        with open(path, "rb") as f:
            return f.read(4) == _ZIP_MAGIC
    except OSError:
        return False
