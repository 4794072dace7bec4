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
    """Draw index c with probability softmax(logits / T)[c] (Gumbel-max: argmax(logits/T + G),
    G i.i.d. standard Gumbel). T = 1 is exact; T = 0 is the argmax. -inf logits are never drawn."""
    if not (temperature >= 0 and math.isfinite(temperature)):
        raise ValueError(f"temperature must be a finite number >= 0, got {temperature}")
    if temperature == 0:
        return argmax

    def pick(logits: Tensor) -> Tensor:
        u = torch.rand(logits.shape, generator=generator, dtype=logits.dtype,
                       device=logits.device).clamp_min_(torch.finfo(logits.dtype).tiny)
        return (logits / temperature - torch.log(-torch.log(u))).argmax(-1)

    return pick
