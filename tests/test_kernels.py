"""The Triton layers (under the interpreter) equal a float64 brute force in log space and the torch
layers (`pcc_kernels.reference`): einsums (arity 1-3, width-1 products, arity 4 delegated to the
reference) and mixes, forward in both semirings and backward (children's flows added into flow
arenas, weight flows overwritten), on fixed and random shapes with gathered and block rows,
repeated rows, zero entries and whole zero rows, zero weights, padded partitions, odd batches.

float64 is compared to 1e-10, float32 (default precision tf32x3, emulated under the interpreter)
to 2e-5 (log-values relative to max(1, |value|), flows relative to the largest). The tile
configurations the GPU autotuner chooses from, and the forward's column groups, run here too
(forced). Every test runs with RuntimeWarnings as errors and checks that nothing is NaN.
"""
import dataclasses

import pytest
import torch

from layer_cases import (Bound, assert_close, assert_flows, brute_einsum, brute_einsum_backward,
                         brute_mix, brute_mix_backward, einsum_case, grad_out_for, logs,
                         mix_case, tolerance)
from pcc_kernels import reference, triton_einsum, triton_flows, triton_grads, triton_ops

pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")

DTYPES = pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
BASE = 0.5  # what the flow arenas hold before a backward adds into them


def assert_normalized(out, what):
    """Every (row, sample) has maximum 1, or is all 0 with norm TINY."""
    top = out.values.amax(-1)
    zero = top == 0
    assert torch.all((top == 1) | zero), f"{what}: a row's maximum is not 1"
    assert torch.all(out.norms[zero] == torch.finfo(out.values.dtype).tiny), what


def check_layer(kind, inputs, w, shape, brute, brute_backward, seed=0, force=None,
                backward=True):
    """Forward (max, then sum) and backward of the Triton layer against the brute force and the
    reference layer; `force(layer)` may replace its launches' tiles first."""
    n, batch, k_out = shape
    dtype = w.dtype
    tol = tolerance(dtype)
    expected = {s: brute(*inputs, w, s) for s in ("max", "sum")}
    g = grad_out_for(torch.Generator().manual_seed(seed), expected["sum"], dtype)
    grads, flows = brute_backward(*inputs, w, g)
    assert torch.isfinite(expected["sum"]).any() and all(x.any() for x in grads), "degenerate"
    results = []
    for kernels in (triton_ops, reference):
        bound = Bound(kind, kernels, inputs, n, batch, k_out, w, g, BASE)
        if force is not None and kernels is triton_ops:
            force(bound.layer)
        name = kernels.__name__.split(".")[-1]
        outs = {}
        for semiring in ("max", "sum"):
            bound.layer.forward(semiring)
            outs[semiring] = (logs(bound.out), bound.out.norms.clone())
            assert_close(outs[semiring][0], expected[semiring], tol, f"{name} {semiring}")
            assert_normalized(bound.out, f"{name} {semiring}")
        if not backward:
            results.append((outs, bound))
            continue
        bound.layer.backward()
        for j, (actual, exact) in enumerate(zip(bound.grads, grads)):
            assert_flows(actual - BASE, exact, tol, f"{name} children's flows {j}")
        if bound.flows is not None:
            assert_flows(bound.flows, flows, tol, f"{name} weight flows")
        results.append((outs, bound))
    (ours, triton_bound), (theirs, ref_bound) = results
    for semiring in ("max", "sum"):
        assert torch.allclose(ours[semiring][1], theirs[semiring][1], rtol=tol, atol=0), \
            f"{semiring} norms vs reference"
    if not backward:
        return triton_bound
    for actual, exact in zip(triton_bound.grads, ref_bound.grads):
        assert_flows(actual - BASE, exact - BASE, tol, "children's flows vs reference")
    if triton_bound.flows is not None:
        assert_flows(triton_bound.flows, ref_bound.flows, tol, "weight flows vs reference")
    return triton_bound


# ----------------------------------------------------------------------------- einsum
# (child K, K_out, N, B, row kinds): the FMA reduction (Ko <= 8), tl.dot with one block and with
# 32 + 16 columns, the max semiring's column groups (Ko = 40 > 32), arity 1-3, K = 1 children,
# width-1 products, arity 4 (the reference's layer).
EINSUM_SHAPES = [
    ((3,), 4, 3, 7, ("index",)),
    ((16,), 1, 2, 33, ("block",)),
    ((4, 3), 10, 3, 1, ("index", "block")),
    ((10, 10), 40, 2, 33, ("index", "index")),
    ((1, 4), 3, 3, 7, ("index", "index")),
    ((3, 4, 3), 20, 2, 7, ("index", "block", "index")),
    ((4, 1, 10), 3, 2, 33, ("block", "index", "index")),
    ((1, 1), 4, 3, 33, ("index", "block")),
    ((1, 1, 1), 1, 2, 3, ("block", "index", "index")),
    ((2, 2, 2, 2), 3, 2, 5, ("index",) * 4),
]


def random_shape(seed):
    gen = torch.Generator().manual_seed(seed)

    def draw(lo, hi):
        return int(torch.randint(lo, hi + 1, (1,), generator=gen))
    arity = draw(1, 3)
    ks = tuple(draw(1, 12) for _ in range(arity))
    kinds = tuple(("index", "block")[draw(0, 1)] for _ in range(arity))
    return ks, draw(1, 24), draw(1, 3), draw(1, 40), kinds


EINSUM_SHAPES += [random_shape(seed) for seed in range(3)]


def shape_id(shape):
    ks, k_out, n, batch, kinds = shape
    return f"{'x'.join(map(str, ks))}->{k_out} N{n} B{batch} {''.join(k[0] for k in kinds)}"


@DTYPES
@pytest.mark.parametrize("shape", EINSUM_SHAPES, ids=shape_id)
def test_einsum_layer(shape, dtype):
    ks, k_out, n, batch, kinds = shape
    sources, rows, w = einsum_case(sum(ks) * 10 + k_out, ks, k_out, n, batch, kinds, dtype)
    bound = check_layer("einsum", (sources, rows), w, (n, batch, k_out), brute_einsum,
                        brute_einsum_backward)
    expected_class = reference.EinsumLayer if len(ks) > 3 else triton_ops.EinsumLayer
    assert type(bound.layer) is expected_class


# ----------------------------------------------------------------------------- forced tiles
CONFIGS = {("einsum_fwd_kernel", "dot"): triton_einsum.DOT_CONFIGS,
           ("einsum_fwd_kernel", "reduce"): triton_einsum.REDUCE_CONFIGS,
           ("einsum_fwd_kernel", "max"): triton_einsum.MAX_CONFIGS,
           ("flows_kernel", "dot"): triton_flows.DOT_CONFIGS,
           ("flows_kernel", "reduce"): triton_flows.REDUCE_CONFIGS,
           ("grads_kernel", "dot"): triton_grads.DOT_CONFIGS,
           ("grads_kernel", "reduce"): triton_grads.REDUCE_CONFIGS}
DOT_SETS = max(len(c) for (_, mode), c in CONFIGS.items() if mode == "dot")
FMA_SETS = max(len(c) for (_, mode), c in CONFIGS.items() if mode != "dot")


def force_tiles(index, **constexprs):
    """A `force` that gives every launch of a layer the index-th configuration (cyclically) of
    its kernel's autotuning list, and the given constexprs where the launch has them."""
    def force(layer):
        for key, launches in layer.plans.items():
            forced = []
            for launch in launches:
                c = launch.constexprs
                mode = "max" if c.get("SEMIRING") == "max" else ("dot" if c.get("DOT") else
                                                                 "reduce")
                configs = CONFIGS.get((launch.kernel.fn.__name__, mode))
                config = configs[index % len(configs)] if configs else launch.config
                extra = {k: v for k, v in constexprs.items() if k in c}
                forced.append(dataclasses.replace(launch, config=config,
                                                  constexprs={**c, **extra}))
            layer.plans[key] = forced
    return force


@pytest.mark.parametrize("index", range(DOT_SETS))
def test_dot_tiles(index):
    """Each tile configuration the GPU autotuner may pick for the dot paths (several sample,
    output and column blocks; a child of 9 units; the other child's flows by the FMA
    reduction), forward and backward, is exact."""
    sources, rows, w = einsum_case(11, (9, 2), 20, 2, 40, ("index", "block"), torch.float64)
    check_layer("einsum", (sources, rows), w, (2, 40, 20), brute_einsum, brute_einsum_backward,
                force=force_tiles(index))


@pytest.mark.parametrize("index", range(FMA_SETS))
def test_fma_and_max_tiles(index):
    """Each tile configuration of the FMA-reduction and max-product paths (Ko = 3, children of 1
    to 6 units), forward and backward, is exact."""
    sources, rows, w = einsum_case(12, (1, 6, 3), 3, 2, 20, ("index", "index", "block"),
                                   torch.float64)
    check_layer("einsum", (sources, rows), w, (2, 20, 3), brute_einsum, brute_einsum_backward,
                force=force_tiles(index))


@pytest.mark.parametrize("columns", [(16, 0), (16, 16), (32, 0)], ids=str)
def test_column_groups(columns):
    """Layers wider than one program's columns run in groups (raw values stored, then divided
    by the row maximum): forced here on Ko = 40."""
    block_c, block_c2 = columns
    sources, rows, w = einsum_case(13, (6, 7), 40, 2, 40, ("index", "block"), torch.float32)
    check_layer("einsum", (sources, rows), w, (2, 40, 40), brute_einsum, brute_einsum_backward,
                force=force_tiles(0, BLOCK_C=block_c, BLOCK_C2=block_c2, SINGLE=False),
                backward=False)


def test_column_cover_pads_little():
    """The forward covers Ko = 40 with 32 + 16 columns (1.2x), never 64; 20 with 32;
    every Ko from 24 to 128 pads by at most 1.5x; the max semiring and wide layers run groups;
    Ko <= 8 takes the FMA reduction, unpadded."""
    assert triton_einsum.columns_for(40, "dot") == (32, 16, True)
    assert triton_einsum.columns_for(20, "dot") == (32, 0, True)
    assert triton_einsum.columns_for(100, "dot") == (128, 0, True)
    assert triton_einsum.columns_for(200, "dot") == (64, 0, False)
    assert triton_einsum.columns_for(40, "max") == (32, 0, False)
    assert triton_einsum.columns_for(3, "reduce") == (4, 0, True)
    assert max(triton_einsum.column_padding(c, "dot") for c in range(24, 129)) <= 1.5
    assert triton_einsum.mode_of("sum", 8) == "reduce" and triton_einsum.mode_of("sum", 9) == "dot"


# ----------------------------------------------------------------------------- mix
# (K, P, B, N)
MIX_SHAPES = [(1, 3, 7, 3), (3, 1, 1, 2), (10, 4, 33, 3), (16, 2, 7, 2), (4, 3, 33, 1)]


def mix_id(shape):
    k, parts, batch, n = shape
    return f"K{k} P{parts} B{batch} N{n}"


@DTYPES
@pytest.mark.parametrize("shape", MIX_SHAPES, ids=mix_id)
def test_mix_layer(shape, dtype):
    k, parts, batch, n = shape
    source, rows, mask, m = mix_case(k * 10 + parts, k, parts, batch, n, dtype)
    bound = check_layer("mix", (source, rows, mask), m, (n, batch, k), brute_mix,
                        brute_mix_backward)
    if parts > 1:
        assert (bound.flows[0, -1] == 0).all(), "a padded partition has no flow"


def test_mix_over_several_sample_blocks():
    """The backward walks the batch in blocks and adds each block's weight flows in place."""
    source, rows, mask, m = mix_case(5, 4, 3, 37, 3, torch.float64)
    tile = force_tiles(0)

    def force(layer):
        tile(layer)
        key = ("backward", "sum", triton_ops.kernel_precision(torch.float64))
        layer.plans[key] = [dataclasses.replace(launch, config=type(launch.config)(
            {"BLOCK_B": 8}, num_warps=4)) for launch in layer.plans[key]]
    check_layer("mix", (source, rows, mask), m, (3, 37, 4), brute_mix, brute_mix_backward,
                force=force)


# ----------------------------------------------------------------------------- API
def test_bad_arguments_are_refused():
    sources, rows, w = einsum_case(3, (3, 4), 2, 2, 5, ("index", "index"), torch.float64)
    bound = Bound("einsum", triton_ops, (sources, rows), 2, 5, 2, w)
    with pytest.raises(ValueError, match="semiring"):
        bound.layer.forward("min")
    with pytest.raises(ValueError, match="precision"):
        triton_ops.set_precision("fp16")
    with pytest.raises(TypeError, match="dtype"):
        Bound("einsum", triton_ops, (sources, rows), 2, 5, 2, w.float())
    assert triton_ops.get_precision() == "tf32x3"


def test_empty_batch_launches_nothing():
    sources, rows, w = einsum_case(3, (3, 4), 2, 2, 5, ("index", "index"), torch.float64)
    empty = [reference.Arena(s.values[:, :0], s.scales[:, :0], s.norms[:, :0]) for s in sources]
    g = torch.zeros(2, 0, 2, dtype=torch.float64)
    bound = Bound("einsum", triton_ops, (empty, rows), 2, 0, 2, w, g)
    bound.layer.forward()
    bound.layer.backward()
    assert all(not launches for launches in bound.layer.plans.values())
