"""Reading a `.pc` file: every way a file can fail to be text becomes a `PcSyntaxError`."""
from __future__ import annotations

import os
from typing import NoReturn

from ..errors import Diagnostic, PcSyntaxError
from ..ir import Span


def read_source(path: "str | os.PathLike") -> str:
    """The text of a `.pc` file (UTF-8, a leading BOM dropped). Raises PcSyntaxError when it is
    missing, a directory, unreadable, binary, or not UTF-8."""
    name = os.fspath(path)
    try:
        with open(name, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        _fail(name, f"cannot read {name}: no such file")
    except IsADirectoryError:
        _fail(name, f"cannot read {name}: it is a directory, not a .pc file")
    except OSError as e:
        _fail(name, f"cannot read {name}: {e.strerror or e}")
    if b"\0" in data:
        _fail(name, f"cannot read {name}: it is a binary file, not .pc text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        start = data.rfind(b"\n", 0, e.start) + 1
        end = data.find(b"\n", e.start)
        line_text = data[start:end if end >= 0 else len(data)].decode("utf-8", "replace")
        line = data.count(b"\n", 0, e.start) + 1
        col = len(data[start:e.start].decode("utf-8", "replace")) + 1
        _fail(name, f"cannot read {name}: not UTF-8 text (byte 0x{data[e.start]:02x})",
              Span(line, col, line, col + 1), line_text)


def _fail(path: str, message: str, span: Span | None = None, line: str | None = None) -> NoReturn:
    raise PcSyntaxError([Diagnostic("error", "unreadable-file", message, span, path, line)])
