"""The canonical text of a circuit: `parse(to_text(c)) == c` and `to_text` is a fixed point.

Layout: `pc`, `vars`, `leaf`, the `leaf F {vars}` statements; a blank line; the regions in IR
order; a blank line; the `tie` statements (if any; a long one wraps, its further lines indented)
and a blank line; `root`; then, after a blank line, the params. Comments kept from the source are printed above the statement
that followed them there.
"""
from __future__ import annotations

import bisect
import math
import re

from ..ir import Circuit, Input, Param, Span, Sum, Tie, default_var_names
from .naming import var_items

LINE_WIDTH = 100  # a param longer than this gets one line per outer row
_HEAD_STATEMENT = re.compile(r"^[ \t\f\r]*(pc|vars|leaf|root)(?![A-Za-z0-9_])", re.MULTILINE)


def to_text(circuit: Circuit) -> str:
    """The canonical `.pc` text of `circuit`."""
    head = [f"pc {circuit.version}", _vars_line(circuit.vars)]
    if circuit.leaf is not None:
        head.append(f"leaf {circuit.leaf}")
    at = _head_lines(circuit)
    sections: list[list[tuple[int | None, str]]] = [
        [(at.get(text.split()[0]), text) for text in head]
        + [(_line(scope.span), f"leaf {scope.family} {{{', '.join(var_items(scope.scope, circuit.vars))}}}")
           for scope in circuit.leaf_scopes],
        [(_line(r.span), _region_line(r, circuit.vars)) for r in circuit.regions],
        [(_line(t.span), _tie_text(t)) for t in circuit.ties],
        [(at.get("root"), f"root {circuit.root}")],
        [(_line(p.span), _param_text(p, circuit)) for p in circuit.params],
    ]
    return _with_comments([s for s in sections if s], circuit)


def _vars_line(names: tuple[str, ...]) -> str:
    if names == default_var_names(len(names)):
        return f"vars {len(names)}"
    return "vars " + " ".join(names)


def _region_line(r: Input | Sum, names: tuple[str, ...]) -> str:
    if isinstance(r, Input):
        family = f" {r.family}" if r.family is not None else ""
        return f"input {r.name} {{{', '.join(var_items(r.scope, names))}}} k={r.k}{family}"
    return f"sum {r.name} k={r.k} = " + " | ".join(r.partition_text(p) for p in range(len(r.partitions)))


def _tie_text(tie: Tie) -> str:
    """`tie a b c`, wrapped at LINE_WIDTH with the further lines indented."""
    lines, line = [], "tie"
    for name in tie.regions:
        if len(line) + 1 + len(name) > LINE_WIDTH and line.strip() != "tie":
            lines.append(line)
            line = "   "
        line += " " + name
    return "\n".join(lines + [line])


def _param_text(p: Param, circuit: Circuit) -> str:
    region = circuit.by_name.get(p.region)
    implied = (p.field == "weights" and p.index == 0 and isinstance(region, Sum)
               and len(region.partitions) == 1)
    index = "" if p.index is None or implied else f"[{p.index}]"
    head = f"param {p.region}.{p.field}{index} = "
    rows = _nest(p.values, p.shape)
    if isinstance(rows, str) or len(head) + sum(map(len, rows)) + 2 * len(rows) <= LINE_WIDTH:
        return head + _join(rows)
    return head + "[\n" + ",\n".join(f"    {row}" for row in rows) + "\n]"


def _nest(values: tuple[float, ...], shape: tuple[int, ...]) -> str | list[str]:
    """The number (shape ()) or the texts of the outer rows of an array."""
    if not shape:
        return repr(float(values[0]))
    texts = [repr(float(v)) for v in values]
    for d in range(len(shape) - 1, 0, -1):
        n = shape[d]
        texts = [_join(texts[g * n:(g + 1) * n]) for g in range(math.prod(shape[:d]))]
    return texts


def _join(items: list[str]) -> str:
    return "[" + ", ".join(items) + "]"


def _line(span: Span | None) -> int | None:
    return span.line if span is not None else None


def _head_lines(circuit: Circuit) -> dict[str, int]:
    """Source line of the first `pc`, `vars`, `leaf` and `root` statement (the IR keeps no span for
    them); only needed, and only looked for, when there are comments to place."""
    lines: dict[str, int] = {}
    if circuit.source is not None and circuit.comments:
        for m in _HEAD_STATEMENT.finditer(circuit.source):
            if m.group(1) not in lines:
                lines[m.group(1)] = circuit.source.count("\n", 0, m.start()) + 1
    return lines


def _with_comments(sections: list[list[tuple[int | None, str]]], circuit: Circuit) -> str:
    """Join the sections with blank lines, each comment above the statement that followed it."""
    anchors = sorted({line for section in sections for line, _ in section if line is not None})
    above: dict[int | None, list[str]] = {}
    for comment in circuit.comments:
        at = bisect.bisect_left(anchors, comment.line)
        above.setdefault(anchors[at] if at < len(anchors) else None, []).append(comment.text)
    out: list[str] = []
    for section in sections:
        if out:
            out.append("")
        for line, text in section:
            out.extend(above.pop(line, []) if line is not None else [])
            out.append(text)
    trailing = [text for texts in above.values() for text in texts]
    if trailing:
        out += ["", *trailing]
    return "\n".join(out) + "\n"
