"""Marginal and conditional log-probabilities, exact in one upward pass each.

    marginal(model, x)                    log p(x_obs) = log sum_{x_mis} p(x),  NaN = missing
    conditional(model, query_mask, x)     log p(x_q | x_e) = log p(x_q, x_e) - log p(x_e)

In `conditional`, x [B, V] holds the values of the query variables (query_mask True) and of the
evidence (the other observed ones); NaN cells are neither and are summed out of both terms. Where
p(x_e) = 0 the conditional is undefined and comes out NaN. Both keep autograd (they are the
module's forward), so they can sit inside a loss.
"""
from __future__ import annotations

from torch import Tensor


def marginal(model, x: Tensor) -> Tensor:
    """log p(observed part of x): [B] (or [B, K] for a root with K units); NaN = missing."""
    return model(x)


def conditional(model, query_mask: Tensor, x: Tensor) -> Tensor:
    """log p(x_q | x_e): [B] (or [B, K]). query_mask: bool [V] or [B, V], True = query variable;
    x: [B, V] values of query and evidence variables, NaN = summed out."""
    return model(x) - model(x, marginalize=query_mask)
