"""Layer test cases and float64 brute forces in log space, for the torch and Triton layer classes
(`pcc_kernels.reference` / `pcc_kernels.triton_ops`).

Inputs are drawn as log-values (-inf = zero probability) and written into arenas with
`reference.from_log`; the brute forces read the arenas back (`reference.to_log`, in float64), so
they see exactly what a layer sees. Every arena has row 0 = the neutral row (value 1, scale 0),
row 1 all zeros, row 2 zero at sample 0, ~20% zero entries and per-row offsets of the log-values
down to -300 (so the scales matter; down to -60 for mixes, which align their partitions' scales:
in float32 a unit whose only nonzero term sits ~87 nats below the region's largest scale
underflows, in the reference as here).
"""
from __future__ import annotations

import itertools
import math

import torch
from torch import Tensor

from pcc_kernels import reference
from pcc_kernels.reference import Arena, Children, Scratch

NEG_INF = -math.inf


# ----------------------------------------------------------------------------- inputs
def log_values(gen, rows, batch, k, zeros=0.2, spread=300.0) -> Tensor:
    """Random float64 log-values [rows, B, K] (see the module doc)."""
    x = torch.randn(rows, batch, k, generator=gen, dtype=torch.float64) * 2
    x -= torch.rand(rows, 1, 1, generator=gen, dtype=torch.float64) * spread
    x[torch.rand(x.shape, generator=gen) < zeros] = NEG_INF
    x[0] = 0.0
    x[1] = NEG_INF
    x[2, 0] = NEG_INF
    return x


def arena(log: Tensor, dtype) -> Arena:
    """An arena holding log-values `log` in dtype, norms 1."""
    out = Arena.empty(log.shape[0], log.shape[1], log.shape[2], log.to(dtype))
    reference.from_log(log.to(dtype), out)
    return out


def logs(a: Arena) -> Tensor:
    """The float64 log-values of an arena (as a layer reads them)."""
    return reference.to_log(Arena(a.values.double(), a.scales.double(), a.norms.double()))


def rows_for(gen, kind, n, arena_rows, zero=False):
    """An index tensor with repeats (member 0 reading the zero row 1 if `zero`), or an int
    block start; rows >= 2 otherwise."""
    if kind == "block":
        return int(torch.randint(2, arena_rows - n + 1, (1,), generator=gen))
    r = torch.randint(2, arena_rows, (n,), generator=gen)
    if zero:
        r[0] = 1
    if n > 2:
        r[2] = r[1]
    return r


def linear_weights(gen, shape, dim=-1, dtype=torch.float64) -> Tensor:
    """Weights normalized over `dim` with ~15% zeros."""
    w = torch.rand(shape, generator=gen, dtype=torch.float64)
    w[torch.rand(shape, generator=gen) < 0.15] = 0.0
    w.select(dim, 0).add_(0.01)
    return (w / w.sum(dim, keepdim=True)).to(dtype)


def grad_out_for(gen, log_out: Tensor, dtype) -> Tensor:
    """dL/dlog y in [0, 1), 0 where the output is zero (as the engine's flows are)."""
    g = torch.rand(log_out.shape, generator=gen, dtype=torch.float64)
    return g.masked_fill(torch.isneginf(log_out), 0.0).to(dtype)


# ----------------------------------------------------------------------------- binding
class Bound:
    """A layer of class `cls` bound as the engine binds it: its output arena (N rows), and for
    the backward flow arenas pre-filled with `base` (backward adds into them) and weight flows
    pre-filled with NaN (backward overwrites them)."""

    def __init__(self, kind, kernels, inputs, n, batch, k_out, w, grad_out=None, base=0.5):
        like = w
        self.out = Arena.empty(n, batch, k_out, like)
        self.out.values.fill_(math.nan)
        scratch = Scratch(like)
        self.flows = self.grads = None
        backward = grad_out is not None
        if backward and (kind != "einsum" or w.shape[-1] > 1):  # width-1 products: no weights
            self.flows = torch.full_like(w, math.nan)
        if kind == "einsum":
            sources, rows = inputs
            if backward:
                self.grads = [torch.full_like(s.values, base) for s in sources]
            self.layer = kernels.EinsumLayer(sources, rows, w, self.out, scratch, self.grads,
                                             grad_out, self.flows)
        else:
            source, rows = inputs[:2]
            if backward:
                self.grads = [torch.full_like(source.values, base)]
            grad_source = self.grads[0] if backward else None
            if kind == "hadamard":
                self.layer = kernels.HadamardLayer(source, children(rows), w, self.out, scratch,
                                                   grad_source, grad_out, self.flows)
            else:
                self.layer = kernels.MixLayer(source, rows, inputs[2], w, self.out, scratch,
                                              grad_source, grad_out, self.flows)
        scratch.allocate()
        self.layer.attach()


# ----------------------------------------------------------------------------- brute forces
def index_table(ks) -> Tensor:
    """[width, arity]: the child units (i_1..i_a) of each column w, row-major."""
    return torch.tensor(list(itertools.product(*(range(k) for k in ks))), dtype=torch.long)


def member_rows(rows, n) -> Tensor:
    return rows if isinstance(rows, Tensor) else torch.arange(rows, rows + n)


def log_posteriors(z: Tensor, dim: int) -> tuple[Tensor, Tensor]:
    """(logsumexp of z over dim, exp(z - that)) with 0 where the sum is -inf."""
    out = torch.logsumexp(z, dim, keepdim=True)
    live = torch.isfinite(out)
    post = torch.where(live, torch.exp(z - torch.where(live, out, torch.zeros_like(out))), 0.0)
    return out.squeeze(dim), post


def einsum_terms(sources, rows, w) -> Tensor:
    """z[n,b,o,w] = log W[n,o,w] + sum_j log X_j[n,b,i_j(w)] in float64."""
    n = w.shape[0]
    idx = index_table([s.values.shape[2] for s in sources])
    total = 0
    for j, (s, r) in enumerate(zip(sources, rows)):
        total = total + logs(s)[member_rows(r, n)][:, :, idx[:, j]]
    return total.unsqueeze(2) + torch.log(w.double()).unsqueeze(1)


def brute_einsum(sources, rows, w, semiring) -> Tensor:
    """The einsum's log-values [N, B, Ko] (a width-1 product: w = 1)."""
    z = einsum_terms(sources, rows, w)
    return z.amax(-1) if semiring == "max" else torch.logsumexp(z, -1)


def brute_einsum_backward(sources, rows, w, g):
    """(child flows as full arenas, weight flows) for dL/dlog y = g."""
    z = einsum_terms(sources, rows, w)
    _, post = log_posteriors(z, -1)
    contrib = post * g.double().unsqueeze(-1)  # [N, B, Ko, width]
    idx = index_table([s.values.shape[2] for s in sources])
    grads = []
    for j, (s, r) in enumerate(zip(sources, rows)):
        per_unit = torch.zeros(*contrib.shape[:2], s.values.shape[2], dtype=torch.float64)
        per_unit.index_add_(2, idx[:, j], contrib.sum(2))
        grad = torch.zeros(s.values.shape, dtype=torch.float64)
        grad.index_add_(0, member_rows(r, len(per_unit)), per_unit)
        grads.append(grad)
    return grads, contrib.sum(1)


def hadamard_terms(source, rows, w) -> Tensor:
    """z[n,b,o,k] = log W[n,o,k] + sum_a log source[rows[n,a],b,k] in float64."""
    x = logs(source)[rows].sum(1)  # [N, B, K]
    return x.unsqueeze(2) + torch.log(w.double()).unsqueeze(1)


def brute_hadamard(source, rows, w, semiring) -> Tensor:
    z = hadamard_terms(source, rows, w)
    return z.amax(-1) if semiring == "max" else torch.logsumexp(z, -1)


def brute_hadamard_backward(source, rows, w, g):
    """([source flows], weight flows): dL/dlog p added at every slot's row but padding (row 0)."""
    _, post = log_posteriors(hadamard_terms(source, rows, w), -1)
    contrib = post * g.double().unsqueeze(-1)  # [N, B, Ko, K]
    dx = contrib.sum(2)
    grad = torch.zeros(source.values.shape, dtype=torch.float64)
    for a in range(rows.shape[1]):
        grad.index_add_(0, rows[:, a], dx)
    grad[0] = 0.0
    return [grad], contrib.sum(1)


def mix_terms(source, rows, mask, m) -> Tensor:
    """z[n,p,b,k] = log M[n,p,k] + log x[rows[n,p],b,k] (-inf for padded partitions)."""
    z = logs(source)[rows] + torch.log(m.double()).unsqueeze(2)
    return z.masked_fill(~mask[:, :, None, None], NEG_INF)


def brute_mix(source, rows, mask, m, semiring) -> Tensor:
    z = mix_terms(source, rows, mask, m)
    return z.amax(1) if semiring == "max" else torch.logsumexp(z, 1)


def brute_mix_backward(source, rows, mask, m, g):
    """([source flows], weight flows)."""
    _, post = log_posteriors(mix_terms(source, rows, mask, m), 1)
    contrib = post * g.double().unsqueeze(1)  # [N, P, B, K]
    grad = torch.zeros(source.values.shape, dtype=torch.float64)
    grad.index_add_(0, rows.reshape(-1), contrib.reshape(-1, *source.values.shape[1:]))
    return [grad], contrib.sum(2)


# ----------------------------------------------------------------------------- cases
def einsum_case(seed, ks, k_out, n, batch, kinds, dtype, spread=300.0):
    """(sources, rows, w): child arenas of n + 4 rows, weights [n, Ko, prod ks]; member 0 reads
    the zero row in the first gathered slot."""
    gen = torch.Generator().manual_seed(seed)
    sources = [arena(log_values(gen, n + 4, batch, k, spread=spread), dtype) for k in ks]
    first = kinds.index("index") if "index" in kinds else -1
    rows = [rows_for(gen, kind, n, n + 4, j == first) for j, kind in enumerate(kinds)]
    return sources, rows, linear_weights(gen, (n, k_out, math.prod(ks)), dtype=dtype)


def hadamard_case(seed, n, slots, batch, k, k_out, dtype, spread=300.0):
    """(source, Children, w): member 0 reads the zero row 1; member 1 reads one row twice and
    pads its last slot with row 0; member 2 repeats the last member's children."""
    gen = torch.Generator().manual_seed(seed)
    source = arena(log_values(gen, n + 6, batch, k, spread=spread), dtype)
    rows = torch.randint(2, n + 6, (n, slots), generator=gen)
    rows[0, 0] = 1
    if n > 1 and slots > 1:
        rows[1, 0] = rows[1, -1]
        rows[1, -1] = 0
    if n > 2:
        rows[2] = rows[n - 1]
    return source, children(rows), linear_weights(gen, (n, k_out, k), dtype=dtype)


def children(rows: Tensor) -> Children:
    """Both layouts of element-wise children `rows` [N, A] (row 0 = padding)."""
    first = rows[:, 0].clone()
    parent, slot = (rows[:, 1:] != 0).nonzero(as_tuple=True)
    return Children(rows, first, rows[:, 1:][parent, slot], parent)


def mix_case(seed, k, parts, batch, n, dtype):
    """(source, rows, mask, m): rows with repeats and the zero row 1; the last partition of
    member 0 padded (row 0, M = 0, mask False) when P > 1; member 1 reads member n-1's first
    partition in every slot."""
    gen = torch.Generator().manual_seed(seed)
    source = arena(log_values(gen, 3 * n + 3, batch, k, spread=60.0), dtype)
    rows = torch.randint(2, 3 * n + 3, (n, parts), generator=gen)
    rows[0, 0] = 1
    mask = torch.ones(n, parts, dtype=torch.bool)
    if parts > 1:
        rows[0, -1] = 0
        mask[0, -1] = False
    if n > 1:
        rows[1] = rows[-1, 0]
    m = linear_weights(gen, (n, parts, k), dim=1) * mask.unsqueeze(-1)
    return source, rows, mask, (m / m.sum(1, keepdim=True)).to(dtype)


# ----------------------------------------------------------------------------- checks
def assert_close(actual: Tensor, expected: Tensor, tol: float, what: str) -> None:
    """Same zeros (-inf) and NaN-free; |a - e| <= tol * max(1, |e|) (log-values)."""
    actual, expected = actual.double(), expected.double()
    assert not torch.isnan(actual).any(), f"{what}: NaN"
    assert torch.equal(torch.isneginf(actual), torch.isneginf(expected)), f"{what}: zeros differ"
    fin = torch.isfinite(expected)
    err = ((actual[fin] - expected[fin]).abs() / expected[fin].abs().clamp_min(1)).max().item() \
        if fin.any() else 0.0
    assert err <= tol, f"{what}: max relative error {err:.3g} > {tol:.3g}"


def assert_flows(actual: Tensor, expected: Tensor, tol: float, what: str) -> None:
    """NaN-free and |a - e| <= tol * max |e| (flows: sums of posteriors)."""
    actual, expected = actual.double(), expected.double()
    assert not torch.isnan(actual).any(), f"{what}: NaN"
    scale = expected.abs().max().clamp_min(1e-300).item()
    err = (actual - expected).abs().max().item() / scale
    assert err <= tol, f"{what}: max error {err:.3g} (of the largest) > {tol:.3g}"


def tolerance(dtype) -> float:
    return 1e-10 if dtype == torch.float64 else 2e-5
