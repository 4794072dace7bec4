"""Reading and writing circuits in other tools' formats (PSDD, Juice, SPFlow, cirkit).

    load_circuit(path, format=None) -> Circuit      any supported file, as the IR
    export_text(circuit, format, root_unit=None) -> {suffix: text}  (in pcc.interchange.export;
                                                    regions with K > 1 unrolled by .unroll)

Formats: psdd (.psdd), jpc (.jpc, Juice), spn (.spn, Juice/Libra-style SPN), spflow (.spflow,
SPFlow's text form), cirkit (.json, cirkit region-graph JSON: structure only). The format comes
from the file's extension, else from its first line (see `sniff_format`).
"""
from __future__ import annotations

import gc
import os
import re

from ..errors import PcSyntaxError
from ..ir import Circuit, Family
from .source import Source

FORMATS = ("psdd", "jpc", "spn", "spflow", "cirkit")
EXTENSIONS = {".psdd": "psdd", ".jpc": "jpc", ".spn": "spn", ".spflow": "spflow", ".json": "cirkit"}
_DOMAIN_LINE = re.compile(r"\(\s*\d+(\s+\d+)*\s*\)")
_SPFLOW_START = re.compile(r"\(|[A-Za-z]\w*\(")

__all__ = ["FORMATS", "EXTENSIONS", "load_circuit", "read_circuit", "format_of_path", "sniff_format"]


def format_of_path(path: "str | os.PathLike") -> str | None:
    """The format its extension names, or None."""
    return EXTENSIONS.get(os.path.splitext(os.fspath(path))[1].lower())


def sniff_format(text: str) -> str | None:
    """The format of a file from its first line that is not blank or a `c` comment, or None."""
    for line in text.split("\n"):
        stripped = line.strip()
        if not stripped or stripped.startswith("c"):
            continue
        first = stripped.split()[0]
        if first in ("psdd", "jpc"):
            return first
        if stripped.startswith("{"):
            return "cirkit"
        if _DOMAIN_LINE.fullmatch(stripped):
            return "spn"
        if _SPFLOW_START.match(stripped):
            return "spflow"
        return None
    return None


def load_circuit(path: "str | os.PathLike", format: str | None = None, k: int | None = None,
                 leaf: Family | None = None) -> Circuit:
    """The circuit in the file at `path`, in `format` (default: from the extension, else sniffed).

    `k` and `leaf` apply to structure-only formats (cirkit): units per region (the root gets 1)
    and the leaf family. Raises PcSyntaxError or PcCheckError (SourceErrors) pointing into the
    file; warns PcWarning for what was tolerated (unreachable nodes, unnormalized weights)."""
    source = Source.read(path)
    return read_circuit(source, format or format_of_path(path) or _sniffed(source), k, leaf)


def read_circuit(source: Source, format: str, k: int | None = None,
                 leaf: Family | None = None) -> Circuit:
    """The circuit in `source`, read as `format` (one of FORMATS)."""
    collecting = gc.isenabled()
    gc.disable()  # readers make many small objects and no cycles; collection would cost 1.5x
    try:
        return _read(source, format, k, leaf)
    finally:
        if collecting:
            gc.enable()


def _read(source: Source, format: str, k: int | None, leaf: Family | None) -> Circuit:
    if format == "psdd":
        from .psdd import read_psdd
        return read_psdd(source)
    if format in ("jpc", "spn"):
        from .juice import read_jpc, read_spn
        return read_jpc(source) if format == "jpc" else read_spn(source)
    if format == "spflow":
        from .spflow import read_spflow
        return read_spflow(source)
    if format == "cirkit":
        from .cirkit import read_cirkit
        return read_cirkit(source, k, leaf)
    raise ValueError(f"unknown format {format!r} (known: {', '.join(FORMATS)})")


def _sniffed(source: Source) -> str:
    found = sniff_format(source.text)
    if found is None:
        raise PcSyntaxError([source.diagnostic(
            "unknown-format", "cannot tell the format of this file from its extension or its "
            f"first line; name it with --format ({', '.join(FORMATS)})", None)])
    return found
