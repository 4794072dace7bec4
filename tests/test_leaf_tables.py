"""Discrete leaf groups as table products (`pcc.runtime.leaf_tables`) equal the slot-by-slot
densities summed over each scope: values under both semirings with missing values and log 0
entries, EM's counts, and gradients; never NaN."""
import math

import numpy as np
import pytest
import torch

from pcc.ir import Family
from pcc.passes.tables import uses_table
from pcc.runtime.leaf_tables import table_counts, table_layout, table_values
from pcc.runtime.leaf_kinds import leaf_family

FAMILIES = [Family("bernoulli"), Family("categorical", (("n", 3),)),
            Family("binomial", (("n", 4),))]


def random_group(seed: int, num_vars: int = 7, regions: int = 4):
    """Region-major slots with scopes of unequal sizes (some of one variable)."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 4, size=regions)
    var_index = np.concatenate([rng.choice(num_vars, size=s, replace=False) for s in sizes])
    slot_region = np.repeat(np.arange(regions), sizes)
    return var_index.astype(np.int64), slot_region.astype(np.int64)


def random_data(family, num_vars: int, batch: int, seed: int, missing: float = 0.3):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(0, family.support_size(), (batch, num_vars), generator=gen).double()
    return x.masked_fill(torch.rand(batch, num_vars, generator=gen) < missing, math.nan)


def setup(spec: Family, seed: int, k: int = 3, num_vars: int = 7, log_zeros: bool = False):
    family = leaf_family(spec)
    var_index, slot_region = random_group(seed, num_vars)
    params = {name: v.requires_grad_() for name, v in
              family.init(len(var_index), k, torch.Generator().manual_seed(seed)).items()}
    if log_zeros:  # some values impossible: p = 0 or 1, a category with probability 0
        with torch.no_grad():
            for v in params.values():
                v.view(-1)[::3] = -math.inf
    layout = table_layout(var_index, slot_region, int(slot_region.max()) + 1, num_vars)
    return family, var_index, slot_region, params, layout


def by_slots(family, params, xt, var_index, slot_region, semiring):
    """The reference: per-slot densities [M, B, K], summed per region."""
    ld = family.evaluate(xt, torch.from_numpy(var_index), params, semiring)
    regions = int(slot_region.max()) + 1
    return torch.zeros(regions, *ld.shape[1:], dtype=ld.dtype).index_add(
        0, torch.from_numpy(slot_region), ld)


def by_table(family, params, xt, layout, semiring):
    return table_values(family, params, xt, torch.from_numpy(layout.pad_vars),
                        torch.from_numpy(layout.pad_slots), layout.regions, semiring)


@pytest.mark.parametrize("spec", FAMILIES, ids=str)
@pytest.mark.parametrize("semiring", ["sum", "max"])
@pytest.mark.parametrize("log_zeros", [False, True])
@pytest.mark.parametrize("seed", range(3))
def test_table_product_equals_slot_densities(spec, semiring, log_zeros, seed):
    family, var_index, slot_region, params, layout = setup(spec, seed, log_zeros=log_zeros)
    xt = random_data(family, 7, 11, seed).t()
    want = by_slots(family, params, xt, var_index, slot_region, semiring)
    got = by_table(family, params, xt, layout, semiring)
    assert got.shape == want.shape
    assert not got.isnan().any()
    assert torch.equal(got == -math.inf, want == -math.inf)
    finite = want > -math.inf
    assert torch.allclose(got[finite], want[finite], atol=1e-12)
    if log_zeros:
        assert (want == -math.inf).any()  # the case is exercised


@pytest.mark.parametrize("spec", FAMILIES, ids=str)
@pytest.mark.parametrize("seed", range(3))
def test_table_gradients_equal_slot_gradients(spec, seed):
    family, var_index, slot_region, params, layout = setup(spec, seed)
    xt = random_data(family, 7, 9, seed).t()
    weights = torch.randn(layout.regions, 9, 3, dtype=torch.float64)
    grads = []
    for values in (by_slots(family, params, xt, var_index, slot_region, "sum"),
                   by_table(family, params, xt, layout, "sum")):
        grads.append(torch.autograd.grad((values * weights).sum(), list(params.values())))
    for a, b in zip(*grads):
        assert torch.allclose(a, b, atol=1e-12)


@pytest.mark.parametrize("spec", FAMILIES, ids=str)
@pytest.mark.parametrize("seed", range(3))
def test_table_counts_equal_slot_statistics(spec, seed):
    family, var_index, slot_region, params, layout = setup(spec, seed)
    xt = random_data(family, 7, 13, seed).t()
    gamma = torch.rand(layout.regions, 13, 3, dtype=torch.float64)
    counts = table_counts(family, xt, gamma, torch.from_numpy(layout.pad_vars),
                          torch.from_numpy(layout.positions))
    got = family.stats_from_counts(counts)
    xs = xt.index_select(0, torch.from_numpy(var_index))
    obs = ~torch.isnan(xs)
    want = family.stats(torch.where(obs, xs, torch.zeros_like(xs)), obs.double(),
                        gamma.index_select(0, torch.from_numpy(slot_region)))
    assert set(got) == set(want)
    for name in want:
        assert torch.allclose(got[name], want[name], atol=1e-12), name


def test_which_groups_use_tables():
    assert uses_table(Family("bernoulli"), 1)
    assert uses_table(Family("categorical", (("n", 8),)), 1)
    assert uses_table(Family("binomial", (("n", 16),)), 10)
    assert not uses_table(Family("binomial", (("n", 255),)), 10)
    assert not uses_table(Family("normal"), 10)


def test_layout_pads_every_region_to_the_widest_scope():
    var_index, slot_region = np.array([4, 0, 2, 5, 1, 3]), np.array([0, 0, 0, 1, 2, 2])
    layout = table_layout(var_index, slot_region, 3, num_vars=6)
    assert layout.width == 3
    assert layout.pad_vars.tolist() == [4, 0, 2, 5, 6, 6, 1, 3, 6]
    assert layout.pad_slots.tolist() == [0, 1, 2, 3, 6, 6, 4, 5, 6]
    assert layout.positions.tolist() == [0, 1, 2, 3, 6, 7]
