"""Initial log-weights of the sum and mix ops, made in place a block of rows at a time.

    sum weights [N, Ko, W]:  log softmax over W of log(U + 0.01)
    mixing      [N, P, K]:   log softmax over P of log(U + 0.01), padded partitions (mask False)
                             at logit 0 (excluded by the mask when used)
    U ~ uniform(0, 1) in float64, one value per weight from `generator`, row-major, computed in
    float64 and then rounded: the same weights in every dtype.

The generator draws serially, so blocks of rows get the same values as one draw of the whole
tensor. A block of about `BLOCK_VALUES` weights at a time, written into the weights, so building
a model of a billion weights needs little more memory than its weights (and no large temporary
that the allocator would keep).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

BLOCK_VALUES = 1 << 16  # weights per block


def sum_log_weights(shape: tuple[int, int, int], generator: torch.Generator,
                    dtype: torch.dtype = torch.float32, out: Tensor | None = None) -> Tensor:
    """Random normalized log-weights [N, Ko, W] of a sum op (see the module doc), written into
    `out` when given."""
    out = torch.empty(shape, dtype=dtype) if out is None else out
    for rows in _blocks(shape):
        u = torch.rand((len(rows), *shape[1:]), generator=generator, dtype=torch.float64)
        out[rows.start:rows.stop] = _log_softmax_(u.add_(0.01).log_(), -1)
    return out


def mix_log_weights(shape: tuple[int, int, int], mask: Tensor, generator: torch.Generator,
                    dtype: torch.dtype = torch.float32, out: Tensor | None = None) -> Tensor:
    """Random normalized log-mixing weights [N, P, K] of a mix op; `mask` [N, P, 1] marks the
    real partitions; written into `out` when given."""
    out = torch.empty(shape, dtype=dtype) if out is None else out
    for rows in _blocks(shape):
        padded = ~mask[rows.start:rows.stop]
        u = torch.rand((len(rows), *shape[1:]), generator=generator, dtype=torch.float64)
        u.add_(0.01).log_().masked_fill_(padded, -math.inf)
        out[rows.start:rows.stop] = _log_softmax_(u, 1).masked_fill_(padded, 0.0)
    return out


def _log_softmax_(x: Tensor, dim: int) -> Tensor:
    """log_softmax along `dim`, in place."""
    return x.sub_(torch.logsumexp(x, dim, keepdim=True))


def _blocks(shape: tuple[int, ...]) -> list[range]:
    rows = max(1, BLOCK_VALUES // max(1, math.prod(shape[1:])))
    return [range(start, min(start + rows, shape[0])) for start in range(0, shape[0], rows)]
