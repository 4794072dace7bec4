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
the plan's choice (`pcc.passes.tables.uses_table`, shown by `pcc compile --explain`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from pcc_kernels.reference import gather_rows, table_contraction

from .leaves import LeafFamily
from .stamps import Stamp


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


ONEHOT_COLUMNS = 8  # counts by a product with one-hot codes up to this many columns (S + 1)


class PointTables:
    """A group of one-variable discrete inputs (region r is slot r, over variable v(r)) looked up
    in probability space, with no logarithm or exponential per unit:

        value[r, b, k] = T[u(r), c(r, b), k],   T[u, s, k] = f(s; theta[u, k]) for s < S,
                                               T[u, S, k] = 1 (a missing value, summed out),
                                               or max_s f(s; theta[u, k]) under the max semiring
        counts[u, k, s] = sum_{r: u(r) = u} sum_b gamma[r, b, k] [c(r, b) = s]
                                               (EM's expected counts, s < S)

    with c(r, b) = x[b, v(r)], or S where it is missing, and u(r) region r's parameter row:
    r, or `param_rows[r]` where inputs are tied (they share one table). The tables are remade
    only when the parameters change (their in-place version counters), the codes once per
    batch."""

    def __init__(self, family: LeafFamily, var_index: Tensor, param_rows: Tensor | None = None):
        self.family, self.var_index, self.param_rows = family, var_index, param_rows
        self.support = family.support_size()
        self._table: tuple | None = None
        self._codes: tuple | None = None
        self._onehot: tuple | None = None

    def table(self, params: dict[str, Tensor], semiring: str) -> Tensor:
        """T as [U * (S+1), K] (params: [U, K, ...], one row per table)."""
        tensors = list(params.values())
        if self._table is None or not self._table[0].matches(tensors, semiring):
            with torch.no_grad():
                probs = self.family.log_table(params).exp()  # [U, K, S]
                missing = (probs.amax(-1, keepdim=True) if semiring == "max"
                           else torch.ones_like(probs[..., :1]))
                table = torch.cat([probs, missing], -1).transpose(1, 2).reshape(-1, probs.shape[1])
            self._table = (Stamp(tensors, semiring), table)
        return self._table[1]

    def _offsets(self, device) -> Tensor:
        """[R, 1] u(r) * (S+1): where region r's table starts."""
        rows = (torch.arange(len(self.var_index), device=device) if self.param_rows is None
                else self.param_rows)
        return (rows * (self.support + 1)).unsqueeze(1)

    def codes(self, x: Tensor) -> Tensor:
        """u(r) * (S+1) + c(r, b) as [R, B] (long), for x [B, V]; kept for the same batch."""
        if self._codes is None or not self._codes[0].matches([x]):
            codes = torch.nan_to_num(x.t().index_select(0, self.var_index),
                                     nan=float(self.support))
            self._codes = (Stamp([x]), codes.long().add_(self._offsets(x.device)))
        return self._codes[1]

    def onehot(self, x: Tensor) -> Tensor:
        """[R, S+1, B]: 1 where sample b's value of region r's variable is s (s = S: missing),
        in x's dtype; kept for the same batch."""
        if self._onehot is None or not self._onehot[0].matches([x]):
            local = self.codes(x) - self._offsets(x.device)
            values = torch.arange(self.support + 1, device=x.device).view(1, -1, 1)
            self._onehot = (Stamp([x]), (local.unsqueeze(1) == values).to(x.dtype))
        return self._onehot[1]

    def counts(self, x: Tensor, gamma: Tensor, extra: Tensor | None = None) -> Tensor:
        """[U, K, S] from x [B, V], gamma [R, B, K] and counts already made per region
        ([R, S+1, K], the point sums'): a product with the one-hot codes for few values (an
        indexed add of every sample is slower there on the CPU), else an indexed add of gamma
        at each sample's code (R B K additions against R B K (S+1) multiply-adds)."""
        regions, _, k = gamma.shape
        tables = regions if self.param_rows is None else int(self.param_rows.max()) + 1
        columns = self.support + 1
        if columns <= ONEHOT_COLUMNS:
            per_region = torch.bmm(self.onehot(x), gamma)  # [R, S+1, K]
            if extra is not None:
                per_region += extra
            counts = (per_region if self.param_rows is None else per_region.new_zeros(
                tables, columns, k).index_add_(0, self.param_rows, per_region))
        else:
            counts = gamma.new_zeros(tables * columns, k).index_add_(
                0, self.codes(x).view(-1), gamma.reshape(-1, k)).view(tables, columns, k)
            if extra is not None:
                rows = (torch.arange(regions, device=gamma.device) if self.param_rows is None
                        else self.param_rows)
                counts.index_add_(0, rows, extra)
        return counts[:, :self.support].transpose(1, 2)
