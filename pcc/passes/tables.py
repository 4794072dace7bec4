"""Which discrete leaf groups are evaluated as tables (shared by grouping and planning)."""
from __future__ import annotations

from ..families import FAMILIES
from ..ir import Family

# A discrete leaf group is a table product when its support has at most this many values, or
# at most 2 K: its one-hot codes (Z*S*B per region) then cost no more than per-slot densities.
MAX_TABLE_SUPPORT = 8


def uses_table(family: Family, k: int) -> bool:
    """Whether a (family, K) leaf group is evaluated as a table product."""
    support = FAMILIES[family.name].support_size(dict(family.args))
    return support is not None and support <= max(MAX_TABLE_SUPPORT, 2 * k)
