"""Names in the language: what a valid name is, the reserved words, and how sets of variables read."""
from __future__ import annotations

import re
from typing import Sequence

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
    items: list[str] = []
    i, n = 0, len(indices)
    while i < n:
        j = i
        if 0 <= indices[i]:
            while j + 1 < n and indices[j + 1] == indices[j] + 1 and indices[j + 1] < len(names):
                j += 1
        if j - i >= 2:
            items.append(f"{names[indices[i]]}..{names[indices[j]]}")
            i = j + 1
        else:
            items.append(var_label(indices[i], names))
            i += 1
    return items


def describe_vars(indices, names: Sequence[str], limit: int = 8) -> str:
    """A set of variables for a message, sorted and compressed: `x0..x3, x7`."""
    items = var_items(sorted(set(indices)), names)
    if len(items) > limit:
        return ", ".join(items[:limit]) + f" and {len(items) - limit} more"
    return ", ".join(items)
