"""The errors pcc raises for bad input. Every one is a `PcError`; none of them is a bug in pcc.

    PcError
    ├── SourceError            a .pc file (or an imported circuit file) is wrong; holds Diagnostics
    │   ├── PcSyntaxError      the text does not parse
    │   └── PcCheckError       it parses but is not a valid circuit
    ├── DataError              a data file or tensor is wrong (names file, line or row, column)
    ├── ShapeError             a tensor has the wrong shape (names both shapes); also a ValueError
    ├── StructureError         a structure generator got arguments it cannot build from
    ├── BackendError           a backend cannot run here (e.g. Triton without CUDA or interpreter)
    ├── CheckpointError        a checkpoint cannot be read or written
    └── SizeError              a circuit is too large to build (checked before any allocation)

The CLI prints a PcError's message as one line on stderr and exits 1 (`pcc.cli.main`); it never
shows a traceback for one.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from .ir import Span


@dataclass(frozen=True)
class Diagnostic:
    """One finding about a source file: `kind` names its class (e.g. 'unknown-region')."""

    severity: str  # "error" | "warning"
    kind: str
    message: str
    span: Span | None = None
    path: str | None = None
    source_line: str | None = None

    def render(self) -> str:
        """`path:LINE:COL: error: message`, then the source line and a caret under the span."""
        where = self.path or "<input>"
        if self.span is None:
            return f"{where}: {self.severity}: {self.message}"
        head = f"{where}:{self.span.line}:{self.span.col}: {self.severity}: {self.message}"
        if self.source_line is None:
            return head
        line = self.source_line.rstrip("\r\n").expandtabs(1)
        width = 1
        if self.span.end_line == self.span.line:
            width = max(1, self.span.end_col - self.span.col)
        width = max(1, min(width, len(line) - self.span.col + 1))
        caret = " " * (self.span.col - 1) + "^" + "~" * (width - 1)
        return f"{head}\n    {line}\n    {caret}"


class PcError(Exception):
    """Base of every error pcc raises for bad input."""


class SourceError(PcError):
    """A source file is wrong. `diagnostics` lists every error found (warnings may ride along)."""

    def __init__(self, diagnostics: Sequence[Diagnostic]):
        self.diagnostics = list(diagnostics)
        super().__init__(self.render())

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]

    def render(self) -> str:
        text = "\n".join(d.render() for d in self.diagnostics)
        n = len(self.errors)
        if n > 1:
            text += f"\n{n} errors"
        return text


class PcSyntaxError(SourceError):
    """The text does not follow the grammar."""


class PcCheckError(SourceError):
    """The text parses but does not describe a valid circuit."""


class DataError(PcError, ValueError):
    """Bad data. The message names the file (if any), then the line of a text file, or else the
    row, and the column, all counted from 1 like lines; `row` and `column` are 0-based indices."""

    def __init__(self, message: str, path: str | None = None, row: int | None = None,
                 column: int | None = None, line: int | None = None):
        self.path, self.row, self.column, self.line = path, row, column, line
        where = []
        if path:
            where.append(str(path))
        if line is not None:
            where.append(f"line {line}")
        elif row is not None:
            where.append(f"row {row + 1}")
        if column is not None:
            where.append(f"column {column + 1}")
        super().__init__(f"{', '.join(where)}: {message}" if where else message)


class ShapeError(PcError, ValueError):
    """A tensor has the wrong shape; the message names the expected and the actual shape."""


class StructureError(PcError, ValueError):
    """A structure generator was given an argument it cannot build from."""


class BackendError(PcError, RuntimeError):
    """A backend was asked for where it cannot run."""


class CheckpointError(PcError):
    """A checkpoint cannot be read or written."""


class SizeError(PcError, ValueError):
    """A circuit is too large to build: its tensors would exceed what pcc or the machine holds."""
