"""Torch implementations of the layer kernels: the torch backend, and the reference for Triton.

Values are kept in **linear space with a log-scale per row**. An arena of K units is three
tensors (`Arena`):

    values [M, B, K]   v >= 0, each (row, sample) normalized so that max_k v = 1 (or all 0)
    scales [M, B]      s, the log-scale: the log-value of unit k is  log v[m, b, k] + s[m, b]
                       (float64 with these kernels, `SCALES`: a scale is a running sum over the
                       circuit's depth, and float32 sums of log-norms drift by an ulp of the
                       total per layer: 1e-4 relative over a 10,000-step chain)
    norms  [M, B]      n, the raw maximum an op divided its row by (1 for leaves; at least the
                       smallest normal float): the op's loss of range, which the engine checks

Every layer is a product, a contraction with probability-space weights and one normalization:

einsum   p = x_1 (x) ... (x) x_a           Kronecker product of the children's units, [B, K1*..*Ka]
         y = W p                           W [N, Ko, K1*...*Ka] (row-major over i1..ia)
hadamard p = x_1 * ... * x_a               element-wise product of A children of K units
         y = W p                           W [N, Ko, K]
mix      y[k] = sum_p M[p, k] c_p x_p[k],  c_p = exp(s_p - max_q s_q)    M [N, P, K]
then     n = max_k y,  v_out = y / n,  s_out = sum_j s_j + log n  (mix: max_q s_q + log n)

As W's rows sum to 1, y <= max p <= 1: values never overflow, and a layer costs its multiply-adds,
a few memory passes and one logarithm per (row, sample), not an exponential per input and a
logarithm per output. A product whose children all have K = 1 (width 1) has no weights: y = x_1
* ... * x_a for every output unit. The max semiring (MPE) replaces the contraction by
y[o] = max_i W[o, i] p[i] (and the mix's sum by a max); normalization is the same.

Backward: given g = dL/dlog Y [N, B, Ko] (the flows into the output units), a layer adds the
children's flows dL/dlog X into flow arenas [M, B, K] and writes the weight flows W * dL/dW (for
L = sum of log-likelihoods: EM's expected counts). With h = g / (v_out n) = dL/d(W p) and p
recomputed from the children:

    flows = W * (h^T p),   dL/dlog p = p * (h W);   each child of an element-wise product gets
    dL/dlog p, each child j of a Kronecker product the sum of dL/dlog p over the other children's
    units; mix: r = M c x / (v_out n), flows = sum_b g r, dL/dlog x_p = g r.

Flows are posteriors (in [0, 1] for tree-shaped circuits) and need no scale.

Layers are *bound*: built once per batch size onto their arenas' rows, their weights' and flows'
slices and shared scratch buffers (`Scratch`), so that a forward or backward call is a short run
of torch operations with nothing to allocate, slice or look up. Kronecker products are built in
chunks of members so that temporaries stay bounded.
"""
from __future__ import annotations

import math
import warnings
from math import prod
from typing import NamedTuple, Sequence, Union

import torch
from torch import Tensor

Rows = Union[Tensor, int]

# The layers take `overwrite` flags (see `_Writer`): the engine then zeroes only the flow rows
# no layer writes first.
OVERWRITES = True
# The dtype of the arenas' log-scales (see the module doc).
SCALES = torch.float64
# An element-wise product layer takes `first_points`: its members' first children looked up in a
# point block's table (`PointSource`) rather than read from rows the engine wrote before.
GATHERS_POINTS = True

# Elements of the largest Kronecker-product temporary: 2^20 floats = 4 MiB fp32.
CHUNK_ELEMENTS = 1 << 20

# Tensor.index_reduce_ (the scatter-multiply of element-wise products) warns that its API is in
# beta on every call.
warnings.filterwarnings("ignore", message=r"index_reduce\(\) is in beta")


class Arena(NamedTuple):
    """Node values of one unit count K (see the module doc); also a block of rows of one."""

    values: Tensor  # [M, B, K]
    scales: Tensor  # [M, B]
    norms: Tensor  # [M, B]

    def rows(self, start: int, n: int) -> "Arena":
        """Rows [start, start + n), as views."""
        return Arena(self.values.narrow(0, start, n), self.scales.narrow(0, start, n),
                     self.norms.narrow(0, start, n))

    @staticmethod
    def empty(rows: int, batch: int, k: int, like: Tensor) -> "Arena":
        """An uninitialized arena in like's dtype and device."""
        return Arena(like.new_empty(rows, batch, k), like.new_empty(rows, batch),
                     like.new_empty(rows, batch))


class Children(NamedTuple):
    """The children of N element-wise products, in two layouts of the same rows:
    `rows` [N, A], padded with row 0 (value 1, scale 0); and without padding, each member's
    first child `first` [N] and the others `extra` [E] with their member `parent` [E]."""

    rows: Tensor
    first: Tensor
    extra: Tensor
    parent: Tensor


class Scratch:
    """Temporaries shared by the layers of one bound program: one buffer per tag, sized for the
    largest request. Layers `reserve` while being built, then take `view`s once `allocate`d."""

    def __init__(self, like: Tensor):
        self.like = like
        self.sizes: dict[str, int] = {}
        self.dtypes: dict[str, torch.dtype] = {}
        self.buffers: dict[str, Tensor] = {}

    def reserve(self, tag: str, shape: Sequence[int], dtype: torch.dtype | None = None
                ) -> tuple[str, tuple[int, ...]]:
        """A buffer of `shape` under `tag` (in `like`'s dtype unless `dtype` says)."""
        self.sizes[tag] = max(self.sizes.get(tag, 0), prod(shape))
        self.dtypes[tag] = dtype or self.like.dtype
        return tag, tuple(shape)

    def allocate(self) -> None:
        self.buffers = {tag: torch.empty(n, dtype=self.dtypes[tag], device=self.like.device)
                        for tag, n in self.sizes.items()}

    def view(self, handle: tuple[str, tuple[int, ...]]) -> Tensor:
        tag, shape = handle
        return self.buffers[tag][:prod(shape)].view(shape)


def _chunks(n: int, per_item: int) -> list[tuple[int, int]]:
    step = max(1, CHUNK_ELEMENTS // max(1, per_item))
    return [(start, min(n, start + step)) for start in range(0, n, step)]


def _slice_rows(rows: Rows, start: int, stop: int) -> Rows:
    return rows + start if isinstance(rows, int) else rows[start:stop]


class _Writer:
    """Puts flows [E, ...] into rows of a flow arena: entry e is written over row rows[e] where
    `overwrite[e]` (its first writer in the backward pass: nothing to add to, so the row needs
    no zeroing), else added (repeated rows accumulate)."""

    def __init__(self, rows: Rows, count: int, overwrite: Tensor | None):
        self.rows, self.count = rows, count
        if overwrite is None or not bool(overwrite.any()):
            self.mode = "add"
        elif bool(overwrite.all()):
            self.mode = "copy"
        else:
            self.mode = "split"
            index = (torch.arange(rows, rows + count, device=overwrite.device)
                     if isinstance(rows, int) else rows)
            self.copy_entries = overwrite.nonzero().squeeze(1)
            self.add_entries = (~overwrite).nonzero().squeeze(1)
            self.copy_rows = index.index_select(0, self.copy_entries)
            self.add_rows = index.index_select(0, self.add_entries)

    def __call__(self, target: Tensor, values: Tensor) -> None:
        if self.mode == "split":
            target.index_copy_(0, self.copy_rows, values.index_select(0, self.copy_entries))
            target.index_add_(0, self.add_rows, values.index_select(0, self.add_entries))
        elif isinstance(self.rows, int):
            block = target.narrow(0, self.rows, self.count)
            block.copy_(values) if self.mode == "copy" else block.add_(values)
        elif self.mode == "copy":
            target.index_copy_(0, self.rows, values)
        else:
            target.index_add_(0, self.rows, values)


# ------------------------------------------------------------------------------ leaves, roots
def from_log(log_values: Tensor, out: Arena) -> None:
    """Write log-values [R, B, K] (-inf allowed) into arena rows: s = max_k (finite), v =
    exp(x - s), n = 1."""
    scale = torch.amax(log_values, -1).clamp_min_(torch.finfo(log_values.dtype).min)
    out.scales.copy_(scale)
    torch.sub(log_values, scale.unsqueeze(-1), out=out.values).exp_()
    out.norms.fill_(1.0)


def to_log(arena: Arena) -> Tensor:
    """The log-values [M, B, K] of arena rows (log 0 = -inf)."""
    return arena.values.log().add_(arena.scales.unsqueeze(-1))


# ------------------------------------------------------------------------------ shared steps
class _Output:
    """A layer's output rows and, when bound for the backward pass, their flows."""

    def __init__(self, out: Arena, grad_out: Tensor | None):
        self.out, self.grad_out = out, grad_out
        self.norms = out.norms.unsqueeze(-1)  # [N, B, 1]
        self.tiny = torch.finfo(out.values.dtype).tiny
        self.tiny_tensor = out.values.new_full((), self.tiny)

    def normalize(self, y: Tensor, scale: Tensor) -> None:
        """values = y / n, n = max_k y (at least the smallest normal float: an all-zero row
        stays 0), scales = scale + log n; y [N, B, K] may be the values themselves."""
        out = self.out
        torch.amax(y, -1, out=out.norms).clamp_min_(self.tiny)
        if y.data_ptr() == out.values.data_ptr():
            out.values.div_(self.norms)
        else:
            torch.div(y, self.norms, out=out.values)
        torch.log(out.norms, out=out.scales).add_(scale)

    def output_grad(self, h: Tensor) -> Tensor:
        """h = g / (v * n) = dL/dY_raw into `h` [N, B, Ko] (0 where v = 0, as g is)."""
        torch.addcmul(self.tiny_tensor, self.out.values, self.norms, out=h)
        return torch.div(self.grad_out, h, out=h)


def _contract(p: Tensor, w: Tensor, out: Tensor, semiring: str) -> Tensor:
    """out = W p per sample: p [n, B, W], w [n, Ko, W] -> out [n, B, Ko] (max semiring: max_i,
    which builds a [n, B, Ko, W] temporary)."""
    if semiring == "max":
        return torch.amax(p.unsqueeze(2) * w.unsqueeze(1), -1, out=out)
    return torch.bmm(p, w.transpose(1, 2), out=out)


# ------------------------------------------------------------------------------ einsum
class _EinsumChunk(NamedTuple):
    """Members [a, b) of an einsum layer, bound: per child slot its rows and (for gathered rows)
    the buffers to gather values and scales into, and the layer's slices for these members."""

    rows: list  # per slot: an int start or an index tensor [b-a]
    x: list  # per slot: a buffer [b-a, B, K_j] (gathered) or None (a view of the arena)
    s: list  # per slot: a buffer [b-a, B] or None
    scale: Tensor | None  # [b-a, B], the sum of the scales (more than one child)
    kron: list  # buffers [b-a, B, K1*..*K(j+2)] of the partial Kronecker products
    out: _Output
    w: Tensor  # [b-a, Ko, width]
    flows: Tensor | None
    h: Tensor | None  # [b-a, B, Ko]
    dp: Tensor | None  # [b-a, B, width]
    writers: list  # per slot: a `_Writer` of the children's flows (backward only)


class EinsumLayer:
    """The einsum of N partitions (see the module doc) over child arenas `sources`, child slot
    j's rows `rows[j]`, weights `w` [N, Ko, width] (linear), writing `out` (N rows); with
    `grads` (the child slots' flow arenas), `grad_out` [N, B, Ko] and `flows` [N, Ko, width],
    also the backward pass; `overwrite` (per slot a bool tensor [N] or None) marks the children
    whose flows are written over their rows rather than added. Members are taken in chunks that
    bound the Kronecker product."""

    def __init__(self, sources: Sequence[Arena], rows: Sequence[Rows], w: Tensor, out: Arena,
                 scratch: Scratch, grads: Sequence[Tensor] | None = None,
                 grad_out: Tensor | None = None, flows: Tensor | None = None,
                 overwrite: Sequence[Tensor | None] | None = None):
        self.sources, self.grads = list(sources), grads
        self.overwrite = list(overwrite) if overwrite is not None else [None] * len(rows)
        n, batch, k_out = out.values.shape
        self.sizes = [s.values.shape[-1] for s in sources]
        self.width = w.shape[-1]
        chunks = _chunks(n, batch * max(self.width, k_out))
        step = chunks[0][1] - chunks[0][0] if chunks else 0
        gathered = [not isinstance(r, int) for r in rows]
        handles = {
            "x": [scratch.reserve(f"x{j}", (step, batch, k)) if g else None
                  for j, (g, k) in enumerate(zip(gathered, self.sizes))],
            "s": [scratch.reserve(f"s{j}", (step, batch), out.scales.dtype) if g else None
                  for j, g in enumerate(gathered)],
            "scale": (scratch.reserve("scale", (step, batch), out.scales.dtype)
                      if len(rows) > 1 else None),
            "kron": [scratch.reserve(f"kron{j % 2}", (step, batch, prod(self.sizes[: j + 2])))
                     for j in range(len(self.sizes) - 1)],
            "h": scratch.reserve("h", (step, batch, k_out)) if grads is not None else None,
            "dp": scratch.reserve("dp", (step, batch, self.width)) if grads is not None else None,
        }
        self._bind = (scratch, handles, chunks, list(rows), w, out, grad_out, flows)
        self.chunks: list[_EinsumChunk] = []

    def attach(self) -> None:
        """Take this layer's views of the allocated scratch buffers."""
        scratch, handles, chunks, rows, w, out, grad_out, flows = self._bind

        def view(handle, n):
            return None if handle is None else _first(scratch.view(handle), n)
        for a, b in chunks:
            n = b - a
            sliced = [_slice_rows(r, a, b) for r in rows]
            self.chunks.append(_EinsumChunk(
                sliced,
                [view(hx, n) for hx in handles["x"]], [view(hs, n) for hs in handles["s"]],
                view(handles["scale"], n), [view(hk, n) for hk in handles["kron"]],
                _Output(out.rows(a, n), None if grad_out is None else grad_out[a:b]),
                w[a:b], None if flows is None else flows[a:b],
                view(handles["h"], n), view(handles["dp"], n),
                [_Writer(r, n, None if o is None else o[a:b])
                 for r, o in zip(sliced, self.overwrite)] if self.grads is not None else []))
        self._bind = None

    def _children(self, c: _EinsumChunk) -> tuple[list[Tensor], Tensor]:
        """Children values [n, B, K_j] and the sum of their scales [n, B]."""
        n = c.w.shape[0]
        xs, scales = [], []
        for src, r, x, s in zip(self.sources, c.rows, c.x, c.s):
            if x is None:
                xs.append(src.values.narrow(0, r, n))
                scales.append(src.scales.narrow(0, r, n))
            else:
                xs.append(torch.index_select(src.values, 0, r, out=x))
                scales.append(torch.index_select(src.scales, 0, r, out=s))
        if len(scales) == 1:
            return xs, scales[0]
        total = torch.add(scales[0], scales[1], out=c.scale)
        for s in scales[2:]:
            total.add_(s)
        return xs, total

    @staticmethod
    def _product(xs: Sequence[Tensor], c: _EinsumChunk) -> Tensor:
        """The Kronecker product [n, B, K1*..*Ka] of the children (the child itself for one)."""
        acc = xs[0]
        for x, buf in zip(xs[1:], c.kron):
            acc = torch.mul(acc.unsqueeze(-1), x.unsqueeze(-2),
                            out=buf.view(*acc.shape, x.shape[-1])).flatten(-2)
        return acc

    def forward(self, semiring: str = "sum") -> None:
        for c in self.chunks:
            xs, scale = self._children(c)
            if self.width == 1:  # a plain product, the same for every output unit
                y = xs[0]
                if len(xs) > 1:
                    y = torch.mul(xs[0], xs[1], out=c.kron[0].view_as(xs[0]))
                    for x in xs[2:]:
                        y.mul_(x)
                c.out.normalize(y.expand_as(c.out.out.values), scale)
                continue
            _contract(self._product(xs, c), c.w, c.out.out.values, semiring)
            c.out.normalize(c.out.out.values, scale)

    def backward(self) -> None:
        for c in self.chunks:
            g = c.out.grad_out
            if self.width == 1:  # every output unit is the product: each child gets the sum
                child_grads = [g.sum(-1, keepdim=True)] * len(self.sources)
            else:
                xs, _ = self._children(c)
                p = self._product(xs, c)
                h = c.out.output_grad(c.h)
                torch.bmm(h.transpose(1, 2), p, out=c.flows).mul_(c.w)
                dp = torch.bmm(h, c.w, out=c.dp).mul_(p)
                child_grads = _kron_backward(dp, self.sizes)
            for target, write, cg in zip(self.grads, c.writers, child_grads):
                write(target, cg)


def _first(t: Tensor, n: int) -> Tensor:
    return t if t.shape[0] == n else t.narrow(0, 0, n)


def _kron_backward(dp: Tensor, sizes: Sequence[int]) -> list[Tensor]:
    """dL/dlog x_j from dL/dlog p [n, B, K1*..*Ka]: the sum over the other children's units."""
    if len(sizes) == 1:
        return [dp]
    full = dp.view(*dp.shape[:2], *sizes)
    dims = range(2, len(sizes) + 2)
    return [full.sum([d for d in dims if d != j]) for j in dims]


# ------------------------------------------------------------------------------ hadamard
class HadamardLayer:
    """y = W (x_1 * ... * x_A) of N members whose children are rows of `source` (see the module
    doc); `grad_source` is the source's flow arena. Bound for the backward pass, the layer keeps
    its product from the forward (the size of its output) instead of gathering it again. With
    `first_points` (a point block's `PointSource` and the members' first children's rows in
    it, an int start for a block), each member's first child is T[codes[r, b]] of the block's
    table, [N, B, K], one gather, in place of the engine writing the block's rows first.
    (The product's backward reads no child value, so nothing else needs those rows.)"""

    def __init__(self, source: Arena, children: Children, w: Tensor, out: Arena,
                 scratch: Scratch, grad_source: Tensor | None = None,
                 grad_out: Tensor | None = None, flows: Tensor | None = None,
                 overwrite: Tensor | None = None,
                 first_points: tuple[PointSource, Rows] | None = None):
        self.source, self.children, self.w, self.flows = source, children, w, flows
        self.first_points = first_points
        if grad_source is not None:  # overwrite [N, A]: per child slot, as `children.rows`
            real = children.rows[:, 1:] != 0
            self.write_first = _Writer(children.first, children.first.shape[0],
                                       None if overwrite is None else overwrite[:, 0])
            self.write_extra = _Writer(children.extra, children.extra.shape[0],
                                       None if overwrite is None else overwrite[:, 1:][real])
        self.wt = w.transpose(1, 2)
        self.grad_source = grad_source
        self.out = _Output(out, grad_out)
        n, batch, k_out = out.values.shape
        k = source.values.shape[-1]
        e = children.extra.shape[0]
        self.scratch = scratch
        self.flat_rows = children.rows.reshape(-1)
        # every member with the same number of children: slot by slot, a block of rows read
        # as a view where the plan laid them out so, else gathered (no scatter-multiply)
        self.columns = _columns(children.rows)
        self._col = (scratch.reserve("had_col", (n, batch, k))
                     if self.columns is not None else None)
        if self.columns is not None and grad_source is not None:
            self.write_columns = [_Writer(c, n, None if overwrite is None else overwrite[:, j])
                                  for j, c in enumerate(self.columns)]
        self._p = None if grad_source is not None else scratch.reserve("had", (n, batch, k))
        self.p = source.values.new_empty(n, batch, k) if grad_source is not None else None
        self._s = scratch.reserve("had_s", (n, batch), out.scales.dtype)
        self._x = scratch.reserve("had_x", (e, batch, k)) if e else None
        self._xs = scratch.reserve("had_xs", (children.rows.numel(), batch), out.scales.dtype)
        self._h = scratch.reserve("h", (n, batch, k_out)) if grad_source is not None else None
        self._dp = scratch.reserve("dp", (n, batch, k)) if grad_source is not None else None
        self.max_chunks = _chunks(n, batch * k_out * k)
        self.codes = (source.values.new_empty(n, batch, dtype=torch.long)
                      if first_points is not None and not isinstance(first_points[1], int)
                      else None)

    def attach(self) -> None:
        """Take this layer's views of the allocated scratch buffers."""
        sc = self.scratch
        self.s = sc.view(self._s)
        if self._p is not None:
            self.p = sc.view(self._p)
        self.x = None if self._x is None else sc.view(self._x)
        self.xs = sc.view(self._xs).view(*self.children.rows.shape, -1)
        self.col = None if self._col is None else sc.view(self._col)
        self.h = None if self._h is None else sc.view(self._h)
        self.dp = None if self._dp is None else sc.view(self._dp)

    def _first(self) -> Tensor:
        """Each member's first child [N, B, K]: a view of a block of the source's rows, or
        gathered into p; with `first_points`, looked up in the point block's table at the
        codes of the members' rows."""
        if self.first_points is None:
            rows = self.columns[0] if self.columns is not None else self.children.first
            return _gather_into(self.source.values, rows, self.p)
        source, rows = self.first_points
        n, k = self.p.shape[0], self.p.shape[-1]
        codes = (source.codes.narrow(0, rows, n) if isinstance(rows, int)
                 else torch.index_select(source.codes, 0, rows, out=self.codes))
        torch.index_select(source.table.view(-1, k), 0, codes.reshape(-1), out=self.p.view(-1, k))
        return self.p

    def _product(self) -> Tensor:
        """p = prod of each member's children [N, B, K]."""
        c, src = self.children, self.source
        if self.columns is not None:
            first = self._first()
            if len(self.columns) == 1:
                return first if first is self.p else self.p.copy_(first)
            torch.mul(first, _gather_into(src.values, self.columns[1], self.col), out=self.p)
            for column in self.columns[2:]:
                self.p.mul_(_gather_into(src.values, column, self.col))
            return self.p
        p = self._first()
        if self.x is not None:
            p.index_reduce_(0, c.parent, torch.index_select(src.values, 0, c.extra, out=self.x),
                            "prod")
        return p

    def _scale(self) -> Tensor:
        """The sum of each member's children's scales [N, B]: gathered over the padded child
        rows (padding reads row 0, scale 0) and summed (an indexed add of such small rows costs
        more in torch's CPU kernels); with `columns`, slot by slot."""
        if self.columns is not None and len(self.columns) > 1:
            scales, n = self.source.scales, self.s.shape[0]
            flat = self.xs.view(-1, self.xs.shape[-1])
            total = _gather_into(scales, self.columns[0], self.s)
            if total is not self.s:
                total = self.s.copy_(total)
            for column in self.columns[1:]:
                total.add_(_gather_into(scales, column, flat[:n]))
            return total
        torch.index_select(self.source.scales, 0, self.flat_rows,
                           out=self.xs.view(-1, self.xs.shape[-1]))
        return torch.sum(self.xs, 1, out=self.s)

    def forward(self, semiring: str = "sum") -> None:
        p, scale = self._product(), self._scale()
        values = self.out.out.values
        if semiring == "max":
            for a, b in self.max_chunks:
                _contract(p[a:b], self.w[a:b], values[a:b], semiring)
        else:
            torch.bmm(p, self.wt, out=values)
        self.out.normalize(values, scale)

    def backward(self) -> None:
        p = self.p  # the forward's (see the class doc)
        h = self.out.output_grad(self.h)
        torch.bmm(h.transpose(1, 2), p, out=self.flows).mul_(self.w)
        dp = torch.bmm(h, self.w, out=self.dp).mul_(p)
        if self.columns is not None:
            for write in self.write_columns:
                write(self.grad_source, dp)
            return
        self.write_first(self.grad_source, dp)
        if self.x is not None:
            self.write_extra(self.grad_source, torch.index_select(dp, 0, self.children.parent,
                                                                  out=self.x))


def _columns(rows: Tensor) -> list[Rows] | None:
    """The child rows [N, A] slot by slot (an int start for a block of consecutive rows, else
    the column), or None when members have different numbers of children (padding, row 0)."""
    if rows.numel() == 0 or bool((rows == 0).any()):
        return None
    out: list[Rows] = []
    for j in range(rows.shape[1]):
        column = rows[:, j]
        first = int(column[0])
        consecutive = bool((column == torch.arange(first, first + len(column),
                                                   device=column.device)).all())
        out.append(first if consecutive else column.contiguous())
    return out


def _gather_into(source: Tensor, rows: Rows, buffer: Tensor) -> Tensor:
    """source[rows] [N, ...]: a view for a block, else gathered into `buffer`."""
    if isinstance(rows, int):
        return source.narrow(0, rows, buffer.shape[0])
    return torch.index_select(source, 0, rows, out=buffer)


# ------------------------------------------------------------------------------ mix
class MixLayer:
    """y[k] = sum_p M[p,k] x_p[k] (scales aligned) of N regions whose partitions are rows
    `rows` [N, P] of `source` (`mask` [N, P] marks the real ones; M is 0 elsewhere)."""

    def __init__(self, source: Arena, rows: Tensor, mask: Tensor, m: Tensor, out: Arena,
                 scratch: Scratch, grad_source: Tensor | None = None,
                 grad_out: Tensor | None = None, flows: Tensor | None = None,
                 overwrite: Tensor | None = None):
        self.source, self.rows, self.m, self.flows = source, rows, m, flows
        self.padded = ~mask.unsqueeze(-1)  # [N, P, 1]
        self.grad_source = grad_source
        n, parts = rows.shape
        batch, k = out.values.shape[1:]
        self.chunks = _chunks(n, parts * batch * k)
        step = self.chunks[0][1] - self.chunks[0][0] if self.chunks else 0
        self.out = [_Output(out.rows(a, b - a), None if grad_out is None else grad_out[a:b])
                    for a, b in self.chunks]
        self.writers = [_Writer(rows[a:b].reshape(-1), (b - a) * parts,
                                None if overwrite is None else overwrite[a:b].reshape(-1))
                        for a, b in self.chunks] if grad_source is not None else []
        self.scratch = scratch
        self._t = scratch.reserve("mix", (step * parts, batch, k))
        self._s = scratch.reserve("mix_s", (step * parts, batch), out.scales.dtype)
        self._h = scratch.reserve("h", (step, batch, k)) if grad_source is not None else None

    def attach(self) -> None:
        """Take this layer's views of the allocated scratch buffers."""
        self.t, self.s = self.scratch.view(self._t), self.scratch.view(self._s)
        self.h = None if self._h is None else self.scratch.view(self._h)

    def _terms(self, a: int, b: int) -> tuple[Tensor, Tensor]:
        """t[n,p,b,k] = M[n,p,k] c[n,p,b] x_p[n,b,k] [n, P, B, K] and max_p s_p [n, B]."""
        rows = self.rows[a:b]
        n, parts = rows.shape
        flat = rows.reshape(-1)
        x = torch.index_select(self.source.values, 0, flat, out=_first(self.t, n * parts))
        s = torch.index_select(self.source.scales, 0, flat, out=_first(self.s, n * parts))
        x, s = x.view(n, parts, *x.shape[1:]), s.view(n, parts, -1)
        s.masked_fill_(self.padded[a:b], -math.inf)
        top = s.amax(1).clamp_min_(torch.finfo(s.dtype).min)
        c = s.sub_(top.unsqueeze(1)).exp_().to(x.dtype)  # [n, P, B]
        x.mul_(c.unsqueeze(-1)).mul_(self.m[a:b].unsqueeze(2))
        return x, top

    def forward(self, semiring: str = "sum") -> None:
        for (a, b), out in zip(self.chunks, self.out):
            t, top = self._terms(a, b)
            (torch.amax if semiring == "max" else torch.sum)(t, 1, out=out.out.values)
            out.normalize(out.out.values, top)

    def backward(self) -> None:
        for (a, b), out, write in zip(self.chunks, self.out, self.writers):
            t, _ = self._terms(a, b)
            h = out.output_grad(_first(self.h, b - a))
            contrib = t.mul_(h.unsqueeze(1))  # the flow into each partition's unit
            torch.sum(contrib, 2, out=self.flows[a:b])
            write(self.grad_source, contrib.reshape(-1, *contrib.shape[2:]))


# ------------------------------------------------------------------------------ point sums
class PointSource:
    """What a group of point inputs (regions over one discrete variable, looked up in tables)
    gives its point sums for one batch, set before the layers run: `table` [U, S+1, K] in
    probability space (value s of table u, unit k; column S: a missing value; region r reads
    table r unless inputs share tables), `codes` [R, B] (long), u * (S+1) + the column of each
    sample's value for region r's table u, and the same as `onehot` columns [R, S+1, B] (in the
    values' dtype)."""

    def __init__(self):
        self.table: Tensor | None = None
        self.codes: Tensor | None = None
        self.onehot: Tensor | None = None


class PointSumLayer:
    """Sums y = W x of N members whose one child x is a point input (member n's child is
    `members[n]` of `source`): a table over the child's values, not a product per sample,

        Q[n, s] = W T[m_n, s]  ([S+1, Ko]: max_k W[o, k] T[s, k] under the max semiring)
        v_out[n, b] = Q[n, c_b] / n[n, c_b],  n[n, s] = max_o Q[n, s, o],  s_out = log n

    and backward, with H[n, s] = G[n, s] / Q[n, s], G[n, s] the sum of the flows g of the samples
    whose value is s (as h = g / (v n) = g / Q[c_b]: one pass over g, a product with the one-hot
    codes):

        flows = W * (H^T T),   counts[m_n, s, k] += T[m_n, s, k] (H W)[s, k]

    the expected counts of each value of the child's leaf (`counts`, the group's [R, S+1, K]
    buffer; column S, missing values, is no count): the leaf's flows, summed by value.

    `table_rows` [N]: member n's rows of `source.table` where they are not `members` (inputs
    sharing one table, whose codes are u * (S+1) + s for their table u)."""

    def __init__(self, source: PointSource, members: Tensor, support: int, w: Tensor,
                 out: Arena, scratch: Scratch, grad_out: Tensor | None = None,
                 flows: Tensor | None = None, counts: Tensor | None = None,
                 table_rows: Tensor | None = None):
        self.source, self.members, self.w, self.flows, self.counts = source, members, w, flows, counts
        self.table_rows = members if table_rows is None else table_rows
        self.out = _Output(out, grad_out)
        n, batch, k_out = out.values.shape
        k = w.shape[-1]
        columns = support + 1
        # codes of the group (u * (S+1) + s) -> rows of this layer's tables (n * (S+1) + s)
        self.shift = ((torch.arange(n, device=members.device) - self.table_rows)
                      * columns).unsqueeze(1)
        self.codes = torch.empty(n, batch, dtype=torch.long, device=members.device)
        self.scratch = scratch
        self._t = scratch.reserve("pt_t", (n, columns, k))
        self._q = scratch.reserve("pt_q", (n, columns, k_out))
        self._qn = scratch.reserve("pt_n", (n, columns))
        self._onehot = (scratch.reserve("pt_onehot", (n, columns, batch))
                        if grad_out is not None else None)

    def attach(self) -> None:
        sc = self.scratch
        self.t, self.q, self.qn = sc.view(self._t), sc.view(self._q), sc.view(self._qn)
        self.onehot = None if self._onehot is None else sc.view(self._onehot)

    def _tables(self) -> Tensor:
        return torch.index_select(self.source.table, 0, self.table_rows, out=self.t)

    def forward(self, semiring: str = "sum") -> None:
        t, q, qn = self._tables(), self.q, self.qn
        _contract(t, self.w, q, semiring)
        torch.amax(q, -1, out=qn).clamp_min_(torch.finfo(q.dtype).tiny)
        q.div_(qn.unsqueeze(-1))
        codes = torch.index_select(self.source.codes, 0, self.members, out=self.codes)
        flat = codes.add_(self.shift).view(-1)
        out = self.out.out
        torch.index_select(q.view(-1, q.shape[-1]), 0, flat, out=out.values.view(-1, q.shape[-1]))
        torch.index_select(qn.view(-1), 0, flat, out=out.norms.view(-1))
        torch.log(out.norms, out=out.scales)

    def backward(self) -> None:
        onehot = torch.index_select(self.source.onehot, 0, self.members, out=self.onehot)
        t = self._tables()
        q = _contract(t, self.w, self.q, "sum")  # Q [N, S+1, Ko], raw
        q.add_(torch.finfo(q.dtype).tiny)
        by_value = torch.bmm(onehot, self.out.grad_out).div_(q)  # H [N, S+1, Ko]
        torch.bmm(by_value.transpose(1, 2), t, out=self.flows).mul_(self.w)
        self.counts.index_add_(0, self.members, torch.bmm(by_value, self.w).mul_(t))


def table_contraction(table: Tensor, onehot: Tensor) -> Tensor:
    """out[r, k, b] = sum_w table[r, k, w] * onehot[r, w, b]: [R, K, W] x [R, W, B] -> [R, K, B].

    For log-probability tables (entries in [-inf, 0]) and 0/1 columns: the sum of the table
    entries each column selects. log 0 is exact: entries are clamped to the most negative finite
    number (so 0 * entry stays 0 in the product) and any result at or below half of it (at least
    one selected log 0) is -inf again; gradients reach the finite entries only."""
    floor = torch.finfo(table.dtype).min
    out = torch.bmm(table.clamp_min(floor), onehot)
    return out.masked_fill(out <= floor / 2, -math.inf)


def gather_rows(source: Tensor, rows: Rows, n: int) -> Tensor:
    """source[rows] as [N, ...]: a view when `rows` is a contiguous block, else a copy."""
    if isinstance(rows, int):
        return source.narrow(0, rows, n)
    return source.index_select(0, rows)
