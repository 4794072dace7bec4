"""How the downward pass turns logits [A, C] into one choice per row: a sample, or the argmax."""
from __future__ import annotations

import math

import torch
from torch import Tensor

from .descend import Pick


def argmax(logits: Tensor) -> Tensor:
    """The index of the largest logit per row (ties: the first)."""
    return logits.argmax(-1)


def sampler(temperature: float = 1.0, generator: torch.Generator | None = None) -> Pick:
    """Draw index c with probability softmax(logits / T)[c], by inverting the cumulative sum at
    one uniform number per row. T = 1 is exact; T = 0 is the argmax. A logit of -inf (probability
    0) is never drawn; every row must have a finite logit."""
    if not (temperature >= 0 and math.isfinite(temperature)):
        raise ValueError(f"temperature must be a finite number >= 0, got {temperature}")
    if temperature == 0:
        return argmax

    def pick(logits: Tensor) -> Tensor:
        if logits.shape[-1] == 1:
            return logits.new_zeros(logits.shape[0], dtype=torch.long)
        scaled = logits / temperature
        cumulative = torch.exp(scaled - scaled.amax(-1, keepdim=True)).cumsum(-1)
        total = cumulative[:, -1:].contiguous()
        u = torch.rand(total.shape, generator=generator, dtype=total.dtype, device=total.device)
        index = torch.searchsorted(cumulative, u * total, right=True)
        # u * total can round up to total: then take the last bin of positive probability
        return torch.minimum(index, torch.searchsorted(cumulative, total)).squeeze(1)

    return pick
