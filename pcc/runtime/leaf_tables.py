"""Discrete leaf groups as one batched product of log-probability tables with one-hot codes.

For a family over S values, with T[m, k, s] = log f(s; theta[m, k]) per slot m (a (region,
variable) pair) and unit k, the value of unit k of input region r at sample b is

    L[r, b, k] = sum_{m in r} T[m, k, x[b, v(m)]]  =  (Tab[r] @ F[r])[k, b]

with Tab[r] = [K, Z*C] (region r's slots side by side) and F[r] = [Z*C, B] the one-hot codes of
its variables: one product per group (`pcc_kernels.reference.table_contraction`) instead of a
[M, B, K] tensor of per-slot densities. Z is the largest scope size; shorter scopes are padded
with a slot whose codes are all zero. A missing value has an all-zero row (log 1 = 0: summed
out); under the max semiring F has a column C = S + 1 that is 1 where the value is missing, with
table entry max_s T (maximized out).

The same product, transposed, gives EM's expected counts: with gamma[r, b, k] = dL/dL[r, b, k],
    counts[m, k, s] = sum_b gamma[r(m), b, k] [x[b, v(m)] = s]  = (gamma[r]^T @ F[r]^T)
which is what every discrete family's statistics are made of. Which groups are evaluated so is
the plan's choice (`pcc.passes.plan.uses_table`, shown by `pcc compile --explain`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from pcc_kernels.reference import gather_rows, table_contraction

from .leaves import LeafFamily


@dataclass(frozen=True)
class TableLayout:
    """Slots padded to Z per region, region-major. As numpy arrays of the plan, then buffers.

    pad_vars  [R*Z]  the variable of each padded position (num_vars for padding)
    pad_slots [R*Z]  the slot of each padded position (M for padding)
    positions [M]    the padded position of each slot
    """

    regions: int
    width: int  # Z
    pad_vars: np.ndarray
    pad_slots: np.ndarray
    positions: np.ndarray


def table_layout(var_index: np.ndarray, slot_region: np.ndarray, regions: int,
                 num_vars: int) -> TableLayout:
    """The padded layout of a group's region-major slots."""
    m = len(var_index)
    sizes = np.bincount(slot_region, minlength=regions)
    width = int(sizes.max()) if m else 1
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    positions = slot_region * width + (np.arange(m) - starts[slot_region])
    pad_vars = np.full(regions * width, num_vars, dtype=np.int64)
    pad_slots = np.full(regions * width, m, dtype=np.int64)
    pad_vars[positions] = var_index
    pad_slots[positions] = np.arange(m)
    return TableLayout(regions, width, pad_vars, pad_slots, positions.astype(np.int64))


def one_hot_codes(xt: Tensor, pad_vars: Tensor, regions: int, support: int,
                  columns: int) -> Tensor:
    """F [R, Z*C, B]: column s of position z is 1 where its variable equals s (s < S), or, for
    column S when C = S + 1, where it is missing. xt [V, B], NaN = missing."""
    codes = torch.nan_to_num(xt, nan=float(support))
    pad = torch.full_like(codes[:1], float(support + 1))  # padding: no column matches
    values = torch.arange(columns, dtype=xt.dtype, device=xt.device).view(1, columns, 1)
    onehot = (torch.cat([codes, pad]).unsqueeze(1) == values).to(xt.dtype)  # [V+1, C, B]
    width = len(pad_vars) // regions  # explicit sizes: a batch of 0 rows reshapes too
    return gather_rows(onehot, pad_vars, len(pad_vars)).view(regions, width * columns,
                                                             xt.shape[1])


def table_values(family: LeafFamily, params: dict[str, Tensor], xt: Tensor, pad_vars: Tensor,
                 pad_slots: Tensor, regions: int, semiring: str = "sum") -> Tensor:
    """Region values [R, B, K] of a group (see the module doc)."""
    table = family.log_table(params)  # [M, K, S]
    support = table.shape[-1]
    if semiring == "max":
        table = torch.cat([table, table.amax(-1, keepdim=True)], -1)
    m, k, columns = table.shape
    table = torch.cat([table, table.new_zeros(1, k, columns)]).index_select(0, pad_slots)
    table = table.view(regions, -1, k, columns).transpose(1, 2).reshape(regions, k, -1)
    onehot = one_hot_codes(xt, pad_vars, regions, support, columns)
    return table_contraction(table, onehot).transpose(1, 2)


def table_counts(family: LeafFamily, xt: Tensor, gamma: Tensor, pad_vars: Tensor,
                 positions: Tensor) -> Tensor:
    """Expected counts [M, K, S] of each slot's values, from gamma = dL/d(region values)
    [R, B, K] (see the module doc); missing values count nowhere."""
    regions, _, k = gamma.shape
    support = family.support_size()
    onehot = one_hot_codes(xt, pad_vars, regions, support, support)
    counts = torch.bmm(gamma.transpose(1, 2), onehot.transpose(1, 2))  # [R, K, Z*S]
    counts = counts.view(regions, k, -1, support).transpose(1, 2).reshape(-1, k, support)
    return counts.index_select(0, positions)


def value_counts(xt: Tensor, gamma: Tensor, var_index: Tensor, support: int,
                 param_rows: Tensor | None, num_rows: int) -> Tensor:
    """Expected counts [U, K, S] of each parameter row's values for a group of one-variable
    regions (slot r is region r, reading parameter row param_rows[r], or r when None), from
    gamma = dL/d(region values) [R, B, K]: counts[u, k, s] = sum over regions r of row u and
    samples b with x[b, v(r)] = s of gamma[r, b, k] (one indexed add of gamma's observed rows,
    R*B*K additions, where the one-hot product of `table_counts` costs R*B*K*S); missing values
    count nowhere."""
    regions, batch, k = gamma.shape
    x = xt.index_select(0, var_index)  # [R, B]
    rows = torch.arange(regions, device=x.device) if param_rows is None else param_rows
    trash = num_rows * support  # where missing values count: a row dropped at the end
    flat = torch.nan_to_num(x, nan=float(trash)).long()
    flat = torch.where(flat < trash, flat + rows.unsqueeze(1) * support, flat)
    counts = gamma.new_zeros(trash + 1, k).index_add_(0, flat.view(-1), gamma.reshape(-1, k))
    return counts[:trash].view(num_rows, support, k).transpose(1, 2).contiguous()


def table_probabilities(family: LeafFamily, params: dict[str, Tensor], xt: Tensor,
                        var_index: Tensor, semiring: str = "sum", out: Tensor | None = None,
                        param_rows: Tensor | None = None) -> Tensor:
    """Region values [R, B, K] in probability space of a group of one-variable regions (slot r
    is region r): f(x_v(r); theta[r, k]) looked up in the group's table, 1 where the value is
    missing (summed out) or, under the max semiring, max_s f(s) (maximized out); written into
    `out` when given. With `param_rows` [R] (tied regions), region r reads parameter row
    param_rows[r] of `params` (one table per row, however many regions share it)."""
    probs = family.log_table(params).exp()  # [U, K, S]
    k, support = probs.shape[1:]
    regions = len(var_index)
    missing = (probs.amax(-1, keepdim=True) if semiring == "max"
               else torch.ones_like(probs[..., :1]))
    table = torch.cat([probs, missing], -1).transpose(1, 2).reshape(-1, k)  # [U*(S+1), K]
    codes = torch.nan_to_num(xt.index_select(0, var_index), nan=float(support)).long()
    rows = torch.arange(regions, device=codes.device) if param_rows is None else param_rows
    codes += rows.unsqueeze(1) * (support + 1)
    if out is None:
        return table.index_select(0, codes.view(-1)).view(regions, -1, k)
    torch.index_select(table, 0, codes.view(-1), out=out.view(-1, k))
    return out
