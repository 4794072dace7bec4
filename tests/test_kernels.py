"""The Triton kernels (under the interpreter) equal `pcc_kernels.reference` and a brute-force float64
computation (the full [N, B, Ko, width] table of log-terms), forward and backward, on random shapes
with gathered and block rows, repeated rows, -inf entries and whole -inf rows, padded partitions.

float64 inputs are compared to 1e-10; float32 inputs (default precision tf32x3, emulated under the
interpreter) to the float64 brute force within 2e-5 relative. The tile configurations the GPU
autotuner chooses from, and split contractions, run here too (forced). Every test runs with
numpy/torch RuntimeWarnings as errors and checks that nothing is NaN.
"""
import itertools
import math

import pytest
import torch
import triton

from pcc_kernels import reference, triton_einsum, triton_flows, triton_ops

pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")

NEG_INF = -math.inf


# ----------------------------------------------------------------------------- brute force
def index_table(ks):
    """[width, arity]: the child units (i_1..i_a) of each column w, row-major."""
    return torch.tensor(list(itertools.product(*(range(k) for k in ks))), dtype=torch.long)


def gathered(arena, rows, n):
    return arena[rows] if isinstance(rows, torch.Tensor) else arena[rows: rows + n]


def brute_terms(sources, rows, log_w):
    """z[n,b,o,w] = log W[n,o,w] + sum_j X_j[n,b,i_j(w)] in float64."""
    n = log_w.shape[0]
    idx = index_table([s.shape[2] for s in sources])
    total = 0
    for j, (s, r) in enumerate(zip(sources, rows)):
        total = total + gathered(s.double(), r, n)[:, :, idx[:, j]]  # [N, B, width]
    return total.unsqueeze(2) + log_w.double().unsqueeze(1)


def brute_einsum(sources, rows, log_w, semiring):
    z = brute_terms(sources, rows, log_w)
    return z.amax(-1) if semiring == "max" else torch.logsumexp(z, -1)


def brute_einsum_backward(sources, rows, log_w, grad_out):
    """Child gradients (as full arenas) and flows, from post[n,b,o,w] = exp(z - out)."""
    z = brute_terms(sources, rows, log_w)
    out = torch.logsumexp(z, -1, keepdim=True)
    live = torch.isfinite(out)
    post = torch.where(live, torch.exp(z - torch.where(live, out, torch.zeros_like(out))), 0.0)
    contrib = post * grad_out.double().unsqueeze(-1)  # [N, B, Ko, width]
    flows = contrib.sum(1)
    idx = index_table([s.shape[2] for s in sources])
    grads = []
    for j, (s, r) in enumerate(zip(sources, rows)):
        per_unit = torch.zeros(*contrib.shape[:2], s.shape[2], dtype=torch.float64)
        per_unit.index_add_(2, idx[:, j], contrib.sum(2))
        g = torch.zeros(s.shape, dtype=torch.float64)
        g.index_add_(0, r if isinstance(r, torch.Tensor) else torch.arange(r, r + len(per_unit)),
                     per_unit)
        grads.append(g)
    return grads, flows


def brute_mix(source, rows, log_m, semiring):
    z = source.double()[rows] + log_m.double().unsqueeze(2)  # [N, P, B, K]
    return z.amax(1) if semiring == "max" else torch.logsumexp(z, 1)


def brute_mix_backward(source, rows, log_m, grad_out):
    z = source.double()[rows] + log_m.double().unsqueeze(2)
    out = torch.logsumexp(z, 1, keepdim=True)
    live = torch.isfinite(out)
    post = torch.where(live, torch.exp(z - torch.where(live, out, torch.zeros_like(out))), 0.0)
    contrib = post * grad_out.double().unsqueeze(1)
    grad = torch.zeros(source.shape, dtype=torch.float64)
    grad.index_add_(0, rows.reshape(-1), contrib.reshape(-1, *source.shape[1:]))
    return grad, contrib.sum(2)


# ----------------------------------------------------------------------------- inputs
def arena(gen, rows, batch, k, dtype):
    """Random log-values with ~20% -inf entries, row 1 all -inf, and row 2 -inf for sample 0."""
    x = torch.randn(rows, batch, k, generator=gen, dtype=torch.float64) * 2
    x[torch.rand(x.shape, generator=gen) < 0.2] = NEG_INF
    x[1] = NEG_INF
    x[2, 0] = NEG_INF
    return x.to(dtype)


def rows_for(gen, kind, n, arena_rows):
    """An index tensor with repeats that hits the -inf row 1, or an int block start."""
    if kind == "block":
        return int(torch.randint(0, arena_rows - n + 1, (1,), generator=gen))
    r = torch.randint(0, arena_rows, (n,), generator=gen)
    r[0] = 1
    if n > 2:
        r[2] = r[1]
    return r


def log_weights(gen, shape, dtype):
    """Normalized log-weights over the last dim with some zero weights (-inf)."""
    w = torch.rand(shape, generator=gen, dtype=torch.float64)
    w[torch.rand(shape, generator=gen) < 0.15] = 0.0
    w[..., 0] += 0.01
    return torch.log(w / w.sum(-1, keepdim=True)).to(dtype)


def reads_row(rows, n, row):
    """Members n that read arena row `row` from some child."""
    per_child = [r if isinstance(r, torch.Tensor) else torch.arange(r, r + n) for r in rows]
    return (torch.stack(per_child) == row).any(0)


def einsum_case(seed, ks, k_out, n, batch, kinds, dtype):
    gen = torch.Generator().manual_seed(seed)
    arena_rows = n + 4
    sources = [arena(gen, arena_rows, batch, k, dtype) for k in ks]
    rows = [rows_for(gen, kind, n, arena_rows) for kind in kinds]
    log_w = log_weights(gen, (n, k_out, math.prod(ks)), dtype)
    return sources, rows, log_w


def assert_close(actual, expected, dtype, what):
    assert not torch.isnan(actual).any(), f"{what}: NaN"
    assert torch.equal(torch.isneginf(actual), torch.isneginf(expected)), f"{what}: -inf differ"
    fin = torch.isfinite(expected)
    a, e = actual[fin].double(), expected[fin].double()
    tol = 1e-10 if dtype == torch.float64 else 2e-5
    assert torch.allclose(a, e, rtol=tol, atol=tol), \
        f"{what}: max abs error {(a - e).abs().max().item():.3g}"


# shapes: (child K, K_out, N, B, row kinds); K in {1, 3, 4, 10, 16}, arity 1-3, odd batches.
EINSUM_SHAPES = [
    ((3,), 4, 3, 7, ("index",)),
    ((16,), 1, 2, 33, ("block",)),
    ((4, 3), 10, 3, 7, ("index", "block")),
    ((10, 10), 10, 2, 33, ("index", "index")),
    ((16, 16), 3, 2, 1, ("block", "index")),
    ((1, 4), 3, 3, 7, ("index", "index")),
    ((10, 1), 1, 2, 7, ("block", "block")),
    ((3, 4, 3), 4, 2, 7, ("index", "block", "index")),
    ((4, 1, 10), 3, 2, 33, ("index", "index", "index")),
    ((1,), 3, 3, 7, ("index",)),
    ((1, 1), 4, 3, 33, ("index", "block")),
    ((1, 1, 1), 1, 2, 1, ("block", "index", "index")),
]


def shape_id(shape):
    ks, k_out, n, batch, kinds = shape
    return f"{'x'.join(map(str, ks))}->{k_out} N{n} B{batch} {'/'.join(k[0] for k in kinds)}"


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("semiring", ["sum", "max"])
@pytest.mark.parametrize("shape", EINSUM_SHAPES, ids=shape_id)
def test_einsum_forward(shape, semiring, dtype):
    ks, k_out, n, batch, kinds = shape
    sources, rows, log_w = einsum_case(len(ks) * 100 + k_out, ks, k_out, n, batch, kinds, dtype)
    out = torch.full((n, batch, k_out), math.nan, dtype=dtype)
    triton_ops.einsum_forward(sources, rows, log_w, out, semiring)
    ref = torch.empty_like(out)
    reference.einsum_forward(sources, rows, log_w, ref, semiring)
    assert_close(out, brute_einsum(sources, rows, log_w, semiring), dtype, "vs brute force")
    assert_close(out, ref, dtype, "vs reference")
    assert torch.isneginf(out[reads_row(rows, n, 1)]).all(), "partitions over an all -inf row"


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("shape", EINSUM_SHAPES, ids=shape_id)
def test_einsum_backward(shape, dtype):
    ks, k_out, n, batch, kinds = shape
    sources, rows, log_w = einsum_case(len(ks) * 100 + k_out + 1, ks, k_out, n, batch, kinds,
                                       dtype)
    out = torch.empty(n, batch, k_out, dtype=dtype)
    reference.einsum_forward(sources, rows, log_w, out)
    grad_out = torch.randn(out.shape, generator=torch.Generator().manual_seed(7), dtype=dtype)
    grads = [torch.zeros_like(s) for s in sources]
    ref_grads = [torch.zeros_like(s) for s in sources]
    flows = triton_ops.einsum_backward(sources, rows, log_w, out, grad_out, grads)
    ref_flows = reference.einsum_backward(sources, rows, log_w, out, grad_out, ref_grads)
    assert flows.dtype == dtype and flows.shape == log_w.shape
    for g, rg in zip(grads, ref_grads):
        assert_close(g, rg, dtype, "child gradients vs reference")
    assert_close(flows, ref_flows, dtype, "flows vs reference")
    if math.prod(ks) > 1:  # the reference propagates dL/dout through -inf products; brute doesn't
        brute_grads, brute_flows = brute_einsum_backward(sources, rows, log_w, grad_out)
        for g, bg in zip(grads, brute_grads):
            assert_close(g, bg, dtype, "child gradients vs brute force")
        assert_close(flows, brute_flows, dtype, "flows vs brute force")
        assert (grads[0][1] == 0).all(), "the all -inf row gets zero gradient"


def test_gradients_accumulate_into_arenas():
    """Backward adds into the gradient arenas (it does not overwrite them)."""
    sources, rows, log_w = einsum_case(5, (3, 4), 2, 3, 7, ("index", "index"), torch.float64)
    out = torch.empty(3, 7, 2, dtype=torch.float64)
    reference.einsum_forward(sources, rows, log_w, out)
    g = torch.ones(out.shape, dtype=torch.float64)
    once = [torch.zeros_like(s) for s in sources]
    twice = [torch.zeros_like(s) for s in sources]
    triton_ops.einsum_backward(sources, rows, log_w, out, g, once)
    for _ in range(2):
        triton_ops.einsum_backward(sources, rows, log_w, out, g, twice)
    for a, b in zip(once, twice):
        assert torch.allclose(2 * a, b, atol=1e-12)


def run_einsum(sources, rows, log_w, semiring, split, config, flow_config=None):
    """Forward (and, for the sum semiring, backward with dL/dout = 1) with fixed tiles and
    split; returns (out, child gradients, flows)."""
    n, k_out = log_w.shape[:2]
    out = torch.full((n, sources[0].shape[1], k_out), math.nan, dtype=log_w.dtype)
    triton_ops.run(triton_einsum.einsum_forward_steps(sources, rows, log_w, out, semiring, "ieee",
                                                      split, config))
    if semiring == "max":
        return out, None, None
    grads = [torch.zeros_like(s) for s in sources]
    steps, flows = triton_einsum.einsum_backward_steps(sources, rows, log_w, out,
                                                       torch.ones_like(out), grads, "ieee", split,
                                                       config, flow_config)
    triton_ops.run(steps)
    return out, grads, flows


def check_einsum_run(sources, rows, log_w, semiring, split, config, flow_config=None):
    out, grads, flows = run_einsum(sources, rows, log_w, semiring, split, config, flow_config)
    assert_close(out, brute_einsum(sources, rows, log_w, semiring), log_w.dtype, "forward")
    if grads is not None:
        brute_grads, brute_flows = brute_einsum_backward(sources, rows, log_w, torch.ones_like(out))
        assert_close(flows, brute_flows, log_w.dtype, "flows")
        for g, bg in zip(grads, brute_grads):
            assert_close(g, bg, log_w.dtype, "child gradients")


TILE_CASES = [(config, flows) for config, flows in
              zip(triton_einsum.DOT_CONFIGS,
                  itertools.cycle(triton_flows.DOT_CONFIGS))]


@pytest.mark.parametrize("config, flow_config", TILE_CASES, ids=lambda c: str(c.kwargs))
def test_tuned_dot_tiles_and_split(config, flow_config):
    """Every tile configuration the GPU autotuner may pick (several sample, column and output
    blocks per member) and a split of the contraction in 2 (partials in the forward, shared
    gradient adds, batch shares of the flows) give the exact results."""
    sources, rows, log_w = einsum_case(11, (5, 8), 40, 2, 70, ("index", "block"), torch.float64)
    check_einsum_run(sources, rows, log_w, "sum", 2, config, flow_config)


@pytest.mark.parametrize("config", triton_einsum.REDUCE_CONFIGS, ids=lambda c: str(c.kwargs))
def test_tuned_reduction_tiles(config):
    """C <= 8 (here K_out = 3 and a K = 1 child) runs the FMA reduction path, unpadded."""
    flow_config = triton_flows.REDUCE_CONFIGS[0]
    sources, rows, log_w = einsum_case(12, (1, 24, 3), 3, 2, 40, ("index", "index", "block"),
                                       torch.float64)
    check_einsum_run(sources, rows, log_w, "sum", 2, config, flow_config)


@pytest.mark.parametrize("config", triton_einsum.MAX_CONFIGS, ids=lambda c: str(c.kwargs))
def test_tuned_max_tiles(config):
    sources, rows, log_w = einsum_case(13, (6, 7), 20, 2, 40, ("index", "block"), torch.float64)
    check_einsum_run(sources, rows, log_w, "max", 2, config)


def test_padding_of_tiles_is_bounded():
    """The autotuner's candidates pad C and the contraction Q by at most 1.5x: K = 40 (Q = 1600,
    C = 40) runs 16 or 32 + 16 output columns, never 64; Q = 40 chunks of 16; a K_out = 1 root
    takes the FMA reduction path (no 16-wide output tile)."""
    def covered(size, cfg, names):
        block = sum(cfg.kwargs[name] for name in names)
        return triton.cdiv(size, block) * block
    kept = triton_einsum.prune_padding(triton_einsum.DOT_CONFIGS, dict(K1=40, K2=40, K3=1, C=40))
    assert {covered(40, c, ("BLOCK_C", "BLOCK_C2")) for c in kept} == {48}
    assert any(c.kwargs["BLOCK_C2"] for c in kept)
    kept = triton_einsum.prune_padding(triton_einsum.DOT_CONFIGS, dict(K1=40, K2=1, K3=1, C=40))
    assert kept and all(covered(40, c, ("BLOCK_Q",)) <= 60 for c in kept)
    assert triton_einsum.mode_of("sum", 1) == "reduce" and triton_einsum.mode_of("sum", 40) == "dot"


# ----------------------------------------------------------------------------- mix
MIX_SHAPES = [(1, 3, 7, 3), (3, 1, 1, 2), (10, 4, 33, 3), (16, 2, 7, 2), (4, 3, 33, 1)]


def mix_case(seed, k, p, batch, n, dtype):
    """Rows with repeats and the all -inf row 1; the last partition of member 0 padded (log M =
    -inf, row 0) when P > 1."""
    gen = torch.Generator().manual_seed(seed)
    source = arena(gen, 3 * n + 3, batch, k, dtype)
    rows = torch.randint(2, source.shape[0], (n, p), generator=gen)
    rows[0, 0] = 1
    log_m = log_weights(gen, (n, k, p), dtype).transpose(1, 2).contiguous()
    if p > 1:
        rows[0, -1] = 0
        log_m[0, -1] = NEG_INF
        log_m[0, :-1] = torch.log_softmax(log_m[0, :-1].double(), 0).to(dtype)
    if n > 1:
        rows[1] = rows[-1, 0]
    return source, rows, log_m


def mix_id(shape):
    k, p, batch, n = shape
    return f"K{k} P{p} B{batch} N{n}"


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("semiring", ["sum", "max"])
@pytest.mark.parametrize("shape", MIX_SHAPES, ids=mix_id)
def test_mix_forward(shape, semiring, dtype):
    k, p, batch, n = shape
    source, rows, log_m = mix_case(k * 10 + p, k, p, batch, n, dtype)
    out = torch.full((n, batch, k), math.nan, dtype=dtype)
    triton_ops.mix_forward(source, rows, log_m, out, semiring)
    ref = torch.empty_like(out)
    reference.mix_forward(source, rows, log_m, ref, semiring)
    assert_close(out, brute_mix(source, rows, log_m, semiring), dtype, "vs brute force")
    assert_close(out, ref, dtype, "vs reference")


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("shape", MIX_SHAPES, ids=mix_id)
def test_mix_backward(shape, dtype):
    k, p, batch, n = shape
    source, rows, log_m = mix_case(k * 10 + p + 1, k, p, batch, n, dtype)
    out = torch.empty(n, batch, k, dtype=dtype)
    reference.mix_forward(source, rows, log_m, out)
    grad_out = torch.randn(out.shape, generator=torch.Generator().manual_seed(3), dtype=dtype)
    grad, ref_grad = torch.zeros_like(source), torch.zeros_like(source)
    flows = triton_ops.mix_backward(source, rows, log_m, out, grad_out, grad)
    ref_flows = reference.mix_backward(source, rows, log_m, out, grad_out, ref_grad)
    brute_grad, brute_flows = brute_mix_backward(source, rows, log_m, grad_out)
    assert_close(grad, ref_grad, dtype, "gradient vs reference")
    assert_close(flows, ref_flows, dtype, "flows vs reference")
    assert_close(grad, brute_grad, dtype, "gradient vs brute force")
    assert_close(flows, brute_flows, dtype, "flows vs brute force")
    assert (grad[1] == 0).all() and (grad[0] == 0).all(), "-inf and padded rows get no gradient"
    if p > 1:
        assert (flows[0, -1] == 0).all(), "a padded partition has no flow"


# ----------------------------------------------------------------------------- API
def test_wider_arity_falls_back_to_reference():
    sources, rows, log_w = einsum_case(3, (2, 2, 2, 2), 3, 2, 5, ("index",) * 4, torch.float64)
    out = torch.empty(2, 5, 3, dtype=torch.float64)
    triton_ops.einsum_forward(sources, rows, log_w, out)
    assert_close(out, brute_einsum(sources, rows, log_w, "sum"), torch.float64, "arity 4")


def test_empty_batch_and_partitions():
    sources, rows, log_w = einsum_case(3, (3, 4), 2, 2, 5, ("index", "index"), torch.float64)
    empty = torch.empty(2, 0, 2, dtype=torch.float64)
    triton_ops.einsum_forward([s[:, :0] for s in sources], rows, log_w, empty)
    flows = triton_ops.einsum_backward([s[:, :0] for s in sources], rows, log_w, empty, empty,
                                       [torch.zeros_like(s[:, :0]) for s in sources])
    assert flows.shape == log_w.shape and not flows.any()


def test_bad_arguments_are_refused():
    sources, rows, log_w = einsum_case(3, (3, 4), 2, 2, 5, ("index", "index"), torch.float64)
    out = torch.empty(2, 5, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="semiring"):
        triton_ops.einsum_forward(sources, rows, log_w, out, "min")
    with pytest.raises(ValueError, match="precision"):
        triton_ops.einsum_forward(sources, rows, log_w, out, precision="fp8")
    with pytest.raises(TypeError, match="dtype"):
        triton_ops.einsum_forward(sources, rows, log_w.float(), out)
    with pytest.raises(ValueError, match="precision"):
        triton_ops.set_precision("fp16")
    assert triton_ops.get_precision() == "tf32x3"
