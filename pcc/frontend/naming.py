"""Names in the language: what a valid name is, the reserved words, and how sets of variables read."""
from __future__ import annotations

import re
from typing import Sequence

from ..scopes import Scope, VarList, runs_of

# The keywords, in the order a file uses them; each is the grammar terminal of its upper-case name.
RESERVED_WORDS = ("pc", "vars", "leaf", "input", "sum", "root", "param", "tie")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def is_name(text: object) -> bool:
    """Whether `text` can be written as a region or variable name (reserved words aside)."""
    return isinstance(text, str) and _NAME.fullmatch(text) is not None


def var_label(index: int, names: Sequence[str]) -> str:
    """How variable `index` is written: its name, or the bare index when it has none."""
    return names[index] if 0 <= index < len(names) else str(index)


def var_items(indices: Sequence[int], names: Sequence[str]) -> list[str]:
    """Scope items for `indices` in their order: runs of three or more consecutive declared
    variables become ranges (`x0..x3`); anything else is written alone."""
    runs = indices.runs if isinstance(indices, (VarList, Scope)) else runs_of(indices)
    items: list[str] = []
    declared = len(names)
    for i in range(0, len(runs), 2):
        start, stop = runs[i], runs[i + 1]
        low, high = min(max(start, 0), stop), max(min(stop, declared), start)
        items += (str(v) for v in range(start, low))  # negative: no name
        if high - low >= 3:
            items.append(f"{names[low]}..{names[high - 1]}")
        else:
            items += (names[v] for v in range(low, high))
        items += (var_label(v, names) for v in range(max(high, low), stop))
    return items


def describe_vars(indices, names: Sequence[str], limit: int = 8) -> str:
    """A set of variables for a message, sorted and compressed: `x0..x3, x7`."""
    items = var_items(Scope.of(indices), names)
    if len(items) > limit:
        return ", ".join(items[:limit]) + f" and {len(items) - limit} more"
    return ", ".join(items)
