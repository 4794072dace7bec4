"""Most probable explanation: complete each row's missing values with a most probable state.

Max-product upward pass over the same plan and kernels as the likelihood (semiring 'max': every
sum becomes a max, and a missing leaf variable contributes its density at the mode), then the
downward pass (`descend`) takes the argmax at every choice and the mode of every chosen leaf:

    partition of region r, unit o:   argmax_p      log M[p,o] + S^max_p[o]
    child units, unit o:             argmax_(i,j)  log W[o,i,j] + L^max[i] + R^max[j]

This finds the most probable *induced tree* together with its best completion. For selective
(deterministic) circuits, where at most one child of every sum is non-zero at any complete state,
the tree and the state determine each other, so the result is an exact MPE state. For other
circuits it is the usual max-product approximation: a state at least as probable as its tree
says (log p(state) >= the root's max value), but not necessarily the most probable state
(exact MPE is NP-hard there). The returned log-probability is always exact: the completed states
are evaluated again with the sum semiring.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .choices import argmax
from .descend import descend
from .roots import root_units


@torch.no_grad()
def mpe(model, evidence: Tensor, root_unit: "int | Tensor | None" = None) -> tuple[Tensor, Tensor]:
    """(states [B, V], log p(states) [B]): evidence [B, V] (NaN = missing) with every missing
    value filled by the max-product completion (see the module doc for when it is exact).

    root_unit: for a root with K > 1 units, which unit's density (an int, or a tensor [B])."""
    x = model.prepare_input(torch.as_tensor(evidence).to(model.var_max.device))
    units = root_units(model, x.shape[0], root_unit, x.device)
    arenas = model.upward(x, "max")
    states = descend(model, arenas, units, argmax, x, draw=False)
    states = torch.where(torch.isnan(x), states, x)
    log_prob = model(states)
    if log_prob.dim() == 2:
        log_prob = log_prob.gather(1, units.unsqueeze(1)).squeeze(1)
    return states, log_prob
