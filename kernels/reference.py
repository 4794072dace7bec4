"""Torch implementations of the layer kernels: the torch backend, and the reference for Triton.

Shapes: an arena is [M, B, K] log-values (M rows, batch B, K units). `rows` picks N rows of an
arena: a LongTensor [N], or an int, the first of N contiguous rows (read as a view, no gather).

einsum   out[n,b,o] = log sum_{i1..ia} W[n,o,i1..ia] prod_j exp(X_j[n,b,i_j]),  X_j = src_j[rows_j]
         with log_w = log W of shape [N, Ko, K1*...*Ka] (row-major over i1..ia). When all
         children have K = 1 (width 1) the weight is the constant 1: out = sum_j X_j.
hadamard out[n,b,o] = log sum_k W[n,o,k] exp(x[n,b,k]),  x[n,b,k] = sum_a src[rows[n,a], b, k]
         (an element-wise product of A children of K units, all in one arena; padded children read
         row 0, log 1), with log_w = log W of shape [N, Ko, K].
mix      out[n,b,k] = log sum_p M[n,p,k] exp(src[rows[n,p], b, k]),  log_m = log M of shape [N, P, K].

The sum semiring max-shifts every child, so -inf (log 0) inputs are exact and all -inf rows give -inf
and zero gradients, never NaN. The max semiring (MPE) replaces every sum by a max.

Backward functions take dL/dout, add dL/dX into the gradient arenas in place, and return the weight
flows dL/dlog_w = W * dL/dW (for L = sum of log-likelihoods these are EM's expected counts).
The temporary outer product is built in chunks of partitions so memory stays bounded; nothing of
size [N, B, K1*...*Ka] is kept between forward and backward. Temporaries live in a per-thread
workspace that is reused from call to call: on the CPU a fresh large allocation costs a page
fault per 4 KiB, which made gathers 2-3x slower than the copy itself.
"""
from __future__ import annotations

import math
import threading
from math import prod
from typing import Sequence, Union

import torch
from torch import Tensor

Rows = Union[Tensor, int]

# Elements of the largest temporary a chunk may build: 2^22 floats = 16 MiB fp32.
CHUNK_ELEMENTS = 1 << 20


class _Workspace(threading.local):
    """Scratch tensors by tag, grown on demand and reused (one set per thread)."""

    def __init__(self):
        self.buffers: dict = {}

    def take(self, tag: str, shape: Sequence[int], like: Tensor) -> Tensor:
        if like.is_cuda and torch.cuda.is_current_stream_capturing():
            # inside a CUDA graph capture the graph must own its temporaries: a cached buffer
            # may be reallocated later while the graph still writes into it
            return torch.empty(shape, dtype=like.dtype, device=like.device)
        numel = prod(shape)
        key = (tag, like.dtype, like.device)
        buf = self.buffers.get(key)
        if buf is None or buf.numel() < numel:
            buf = self.buffers[key] = torch.empty(numel, dtype=like.dtype, device=like.device)
        return buf[:numel].view(*shape)


_WS = _Workspace()


def gather_rows(arena: Tensor, rows: Rows, n: int, tag: str | None = None) -> Tensor:
    """arena[rows] as [N, B, K]: a view when `rows` is a contiguous block, else a copy (into the
    workspace slot `tag` when given)."""
    if isinstance(rows, int):
        return arena.narrow(0, rows, n)
    if tag is None:
        return arena.index_select(0, rows)
    return torch.index_select(arena, 0, rows, out=_WS.take(tag, (n, *arena.shape[1:]), arena))


def scatter_add_rows(grad_arena: Tensor, rows: Rows, grad: Tensor) -> None:
    """grad_arena[rows] += grad, with repeated rows accumulated."""
    if isinstance(rows, int):
        grad_arena.narrow(0, rows, grad.shape[0]).add_(grad)
    else:
        grad_arena.index_add_(0, rows, grad)


def _chunks(n: int, per_item: int):
    step = max(1, CHUNK_ELEMENTS // max(1, per_item))
    for start in range(0, n, step):
        yield start, min(n, start + step)


def _slice_rows(rows: Rows, start: int, stop: int) -> Rows:
    return rows + start if isinstance(rows, int) else rows[start:stop]


def _shift(x: Tensor, dim: int = -1) -> Tensor:
    """Max along `dim` (kept), clamped to the most negative finite number so that x - shift
    never gives NaN (-inf - that is -inf)."""
    return x.amax(dim, keepdim=True).clamp_min_(torch.finfo(x.dtype).min)


def _children(sources, rows, a: int, b: int) -> list[Tensor]:
    """The children of partitions a..b, [b-a, B, K_j] each (views or workspace copies)."""
    return [gather_rows(s, _slice_rows(r, a, b), b - a, f"x{j}")
            for j, (s, r) in enumerate(zip(sources, rows))]


def _exp_shifted(xs: Sequence[Tensor]) -> tuple[list[Tensor], Tensor]:
    """exp(x_j - shift_j) per child, unit-major [n, K_j, B] (in the workspace), and the sum of
    the shifts [n, B, 1]. Unit-major operands make the contraction a [Ko, width] @ [width, B]
    product per partition, which runs 1.5-3x faster on the CPU than [B, width] @ [width, Ko]."""
    es, total = [], None
    for j, x in enumerate(xs):
        s = _shift(x)
        shape = (x.shape[0], x.shape[2], x.shape[1])
        es.append(torch.sub(x.transpose(1, 2), s.transpose(1, 2),
                            out=_WS.take(f"e{j}", shape, x)).exp_())
        total = s if total is None else total + s
    return es, total


def _outer(factors: Sequence[Tensor]) -> Tensor:
    """Kronecker product over dim 1: [n, K1, B], ..., [n, Ka, B] -> [n, K1*...*Ka, B]."""
    acc = factors[0]
    for j, f in enumerate(factors[1:]):
        shape = (acc.shape[0], acc.shape[1], f.shape[1], acc.shape[2])
        acc = torch.mul(acc.unsqueeze(2), f.unsqueeze(1),
                        out=_WS.take(f"outer{j % 2}", shape, acc)).flatten(1, 2)
    return acc


def einsum_forward(sources: Sequence[Tensor], rows: Sequence[Rows], log_w: Tensor, out: Tensor,
                   semiring: str = "sum") -> None:
    """Write the einsum of N partitions into `out` [N, B, Ko] (see module doc)."""
    n, batch, k_out = out.shape
    width = log_w.shape[-1]
    per_item = batch * max(width, k_out) * (k_out if semiring == "max" else 1)
    for a, b in _chunks(n, per_item):
        xs = _children(sources, rows, a, b)
        if width == 1:  # one product per partition, weight 1 (log_w = 0): a sum of logs
            _sum_into(out[a:b], xs)
        elif semiring == "max":
            prod_ = xs[0]
            for x in xs[1:]:
                prod_ = (prod_.unsqueeze(-1) + x.unsqueeze(-2)).flatten(-2)
            out[a:b] = (prod_.unsqueeze(2) + log_w[a:b].unsqueeze(1)).amax(-1)
        else:
            es, shift = _exp_shifted(xs)
            outer = _outer(es)
            res = torch.bmm(_exp_weights(log_w, a, b), outer,
                            out=_WS.take("res", (b - a, k_out, batch), outer))
            out[a:b].copy_(res.transpose(1, 2)).log_().add_(shift)


def _sum_into(out: Tensor, xs: Sequence[Tensor]) -> None:
    """out = sum(xs), broadcast over out's last dim."""
    if out.shape[-1] == 1 and len(xs) > 1:
        torch.add(xs[0], xs[1], out=out)
        for x in xs[2:]:
            out.add_(x)
        return
    out.copy_(xs[0].expand_as(out))
    for x in xs[1:]:
        out.add_(x)


def einsum_backward(sources: Sequence[Tensor], rows: Sequence[Rows], log_w: Tensor, out: Tensor,
                    grad_out: Tensor, grad_sources: Sequence[Tensor]) -> Tensor:
    """Add dL/dX_j into grad_sources[j] at rows[j]; return the flows W * dL/dW, [N, Ko, K1*..*Ka].

    Per partition, with E_j = exp(X_j - shift_j) unit-major [K_j, B], outer = kron(E_1..E_a)
    [width, B] and h = dL/dout * exp(shift - out) [Ko, B] (dL/dP for P = W @ outer):
        flows = W * (h @ outer^T),   dL/dX_j = sum over the other children's units of
        (W^T @ h) * outer   (as outer = E_1 x ... x E_a, this is E_j * dL/dE_j)."""
    n, batch, k_out = out.shape
    width = log_w.shape[-1]
    flows = torch.empty_like(log_w)
    for a, b in _chunks(n, batch * max(width, k_out)):
        g = grad_out[a:b]
        if width == 1:
            flows[a:b] = g.sum(1).unsqueeze(-1)
            child_grads = [g.sum(-1, keepdim=True)] * len(sources)
        else:
            es, shift = _exp_shifted(_children(sources, rows, a, b))
            h = _output_grad(out[a:b], g, shift).transpose(1, 2)  # [n, Ko, B]
            w = _exp_weights(log_w, a, b)
            outer = _outer(es)  # [n, width, B]
            torch.bmm(h, outer.transpose(1, 2), out=flows[a:b]).mul_(w)
            d_outer = torch.bmm(w.transpose(1, 2), h, out=_WS.take("d_outer", outer.shape, outer))
            child_grads = [cg.transpose(1, 2) for cg in _outer_backward(d_outer, outer, es)]
        for gs, r, cg in zip(grad_sources, rows, child_grads):
            scatter_add_rows(gs, _slice_rows(r, a, b), cg)
    return flows


def _exp_weights(log_w: Tensor, a: int, b: int) -> Tensor:
    """W = exp(log_w[a:b]) in the workspace."""
    return torch.exp(log_w[a:b], out=_WS.take("w", (b - a, *log_w.shape[1:]), log_w))


def _outer_backward(d_outer: Tensor, outer: Tensor, es: Sequence[Tensor]) -> list[Tensor]:
    """Given dL/d(outer) (overwritten) and outer = kron(e_1..e_a), unit-major [n, K1*..*Ka, B],
    return dL/dx_j = e_j * dL/de_j = sum over the other children's units of dL/d(outer) * outer,
    as [n, K_j, B] (x_j = log e_j)."""
    full = d_outer.mul_(outer).view(d_outer.shape[0], *(e.shape[1] for e in es), d_outer.shape[2])
    if len(es) == 1:
        return [full]
    dims = range(1, len(es) + 1)
    return [full.sum([d for d in dims if d != j]) for j in dims]


def hadamard_forward(source: Tensor, rows: Tensor, log_w: Tensor, out: Tensor,
                     semiring: str = "sum") -> None:
    """Write out[n,b,o] = log sum_k W[n,o,k] exp(sum_a source[rows[n,a],b,k]) into `out`
    [N, B, Ko] (max semiring: max_k log W[n,o,k] + sum_a source[rows[n,a],b,k]).

    Batch-major throughout: exp(x - shift) [n, B, K] @ W^T [n, K, Ko] lands in `out`'s own
    layout, so nothing is transposed or copied."""
    n, batch, k_out = out.shape
    k = source.shape[2]
    per_item = batch * max(k, k_out) * (rows.shape[1] + (k_out if semiring == "max" else 1))
    for a, b in _chunks(n, per_item):
        x = _hadamard_product(source, rows[a:b])
        if semiring == "max":
            out[a:b] = (x.unsqueeze(2) + log_w[a:b].unsqueeze(1)).amax(-1)
            continue
        shift = _shift(x)
        e = x.sub_(shift).exp_()
        w_t = torch.exp(log_w[a:b]).transpose(1, 2)
        if out.is_contiguous():
            torch.bmm(e, w_t, out=out[a:b])
        else:
            out[a:b] = torch.bmm(e, w_t)
        out[a:b].log_().add_(shift)


def hadamard_backward(source: Tensor, rows: Tensor, log_w: Tensor, out: Tensor, grad_out: Tensor,
                      grad_source: Tensor) -> Tensor:
    """Add dL/dsource into grad_source at every rows[n,a] (repeats accumulate); return the flows
    W * dL/dW, [N, Ko, K]. Batch-major, like the forward."""
    n, batch, k_out = out.shape
    k = source.shape[2]
    arity = rows.shape[1]
    flows = torch.empty_like(log_w)
    for a, b in _chunks(n, batch * max(k, k_out) * (arity + 1)):
        x = _hadamard_product(source, rows[a:b])
        shift = _shift(x)
        e = x.sub_(shift).exp_()  # [n, B, K]
        h = _output_grad(out[a:b], grad_out[a:b], shift)  # [n, B, Ko]
        w = torch.exp(log_w[a:b])  # [n, Ko, K]
        torch.bmm(h.transpose(1, 2), e, out=flows[a:b]).mul_(w)
        dx = torch.bmm(h, w).mul_(e)  # dL/dx, [n, B, K]
        for j in range(arity):  # every child of an element-wise product gets dL/dx
            grad_source.index_add_(0, rows[a:b, j], dx)
    return flows


def _hadamard_product(source: Tensor, rows: Tensor) -> Tensor:
    """sum_a source[rows[:, a]]: the log of the element-wise product, [n, B, K] (workspace)."""
    x = torch.index_select(source, 0, rows[:, 0],
                           out=_WS.take("had", (rows.shape[0], *source.shape[1:]), source))
    if rows.shape[1] > 1:
        child = _WS.take("had_child", x.shape, source)
        for j in range(1, rows.shape[1]):
            x.add_(torch.index_select(source, 0, rows[:, j], out=child))
    return x


def _output_grad(out: Tensor, grad_out: Tensor, shift: Tensor) -> Tensor:
    """h = dL/dP where P = exp(out - shift) is the contraction's result: grad * exp(shift - out),
    0 where out = -inf; [n, B, Ko] like `out`."""
    return torch.where(torch.isfinite(out), grad_out * torch.exp(shift - out),
                       torch.zeros_like(grad_out))


def mix_forward(source: Tensor, rows: Tensor, log_m: Tensor, out: Tensor,
                semiring: str = "sum") -> None:
    """Write out[n,b,k] = log sum_p M[n,p,k] exp(source[rows[n,p],b,k]) into `out` [N, B, K]."""
    n, p = rows.shape
    batch, k = out.shape[1:]
    for a, b in _chunks(n, p * batch * k):
        z = _mix_terms(source, rows[a:b], log_m[a:b])
        if semiring == "max":
            torch.amax(z, 1, out=out[a:b])
        else:  # log sum_p exp(z - m) + m, in place; m = 0 where every term is -inf
            m = _shift(z, 1)
            torch.sum(z.sub_(m).exp_(), 1, out=out[a:b]).log_().add_(m.squeeze(1))


def mix_backward(source: Tensor, rows: Tensor, log_m: Tensor, out: Tensor, grad_out: Tensor,
                 grad_source: Tensor) -> Tensor:
    """Add dL/dsource at rows into grad_source; return the flows M * dL/dM, [N, P, K]."""
    n, p = rows.shape
    batch, k = out.shape[1:]
    flows = torch.zeros_like(log_m)
    for a, b in _chunks(n, p * batch * k):
        z = _mix_terms(source, rows[a:b], log_m[a:b])
        o = _shift(out[a:b].unsqueeze(1), 1)  # out, finite (where out = -inf, every z is)
        contrib = z.sub_(o).exp_().mul_(grad_out[a:b].unsqueeze(1))  # posterior * dL/dout
        flows[a:b] = contrib.sum(2)
        grad_source.index_add_(0, rows[a:b].reshape(-1), contrib.reshape(-1, batch, k))
    return flows


def _mix_terms(source: Tensor, rows: Tensor, log_m: Tensor) -> Tensor:
    """log M[n,p,k] + source[rows[n,p], b, k] as [n, P, B, K] (in the workspace)."""
    n, p = rows.shape
    vals = gather_rows(source, rows.reshape(-1), n * p, "mix")
    return vals.view(n, p, *source.shape[1:]).add_(log_m.unsqueeze(2))


def table_contraction(table: Tensor, onehot: Tensor) -> Tensor:
    """out[r, k, b] = sum_w table[r, k, w] * onehot[r, w, b]: [R, K, W] x [R, W, B] -> [R, K, B].

    For log-probability tables (entries in [-inf, 0]) and 0/1 columns: the sum of the table
    entries each column selects. log 0 is exact: entries are clamped to the most negative finite
    number (so 0 * entry stays 0 in the product) and any result at or below half of it (at least
    one selected log 0) is -inf again; gradients reach the finite entries only."""
    floor = torch.finfo(table.dtype).min
    out = torch.bmm(table.clamp_min(floor), onehot)
    return out.masked_fill(out <= floor / 2, -math.inf)
