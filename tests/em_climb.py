"""The property every EM test checks: the log-likelihood of the rows never falls."""
from __future__ import annotations

import math
from typing import Callable

import torch


def assert_climbs(model, x: torch.Tensor, step: Callable[[], None], iterations: int,
                  rel: float = 1e-7) -> None:
    """Run `step()` `iterations` times; after each, sum log p(x) is finite and not below the one
    before by more than `rel` of it (float rounding)."""
    previous = -math.inf
    for _ in range(iterations):
        step()
        with torch.no_grad():
            ll = model(x).sum().item()
        assert math.isfinite(ll)
        assert ll >= previous - rel * abs(previous if math.isfinite(previous) else 1)
        previous = ll
