"""Which root unit each query row starts from (a root with K > 1 units holds K densities)."""
from __future__ import annotations

import torch
from torch import Tensor

from ..errors import ShapeError


def root_units(model, n: int, root_unit: "int | Tensor | None", device: torch.device) -> Tensor:
    """The root unit of each of `n` rows as a LongTensor [n].

    `root_unit`: None (only for a root with one unit), an int for every row, or a tensor [n]."""
    k = model.root_k
    if root_unit is None:
        if k > 1:
            raise ShapeError(f"the root has {k} units (e.g. one density per class): pass root_unit, "
                             f"an int or a tensor [{n}] of units in 0..{k - 1}")
        return torch.zeros(n, dtype=torch.long, device=device)
    units = torch.as_tensor(root_unit, device=device)
    if units.dtype.is_floating_point or units.dtype == torch.bool:
        raise ShapeError(f"root_unit must hold integers, got {units.dtype}")
    units = units.long()
    if units.dim() == 0:
        units = units.expand(n)
    if units.shape != (n,):
        raise ShapeError(f"root_unit must be an int or a tensor of shape [{n}], "
                         f"got shape {list(units.shape)}")
    if n and not bool(((units >= 0) & (units < k)).all()):
        raise ShapeError(f"root_unit must lie in 0..{k - 1} (the root's units), "
                         f"got {units.min().item()}..{units.max().item()}")
    return units.contiguous()


def root_values(model, arenas: dict[int, Tensor], units: Tensor) -> Tensor:
    """The root's value at each row's unit, [B], from the arenas of an upward pass."""
    k, row = model.plan.region_row[model.plan.root]
    return arenas[k][row].gather(1, units.unsqueeze(1)).squeeze(1)
