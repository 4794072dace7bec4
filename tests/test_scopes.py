"""Compact scopes (`pcc.scopes`): runs behave as the sets and tuples they stand for; fingerprints
decide decomposability and smoothness as the exact check does; `vars N` names are made on demand;
initial weights drawn in blocks equal one draw."""
from __future__ import annotations

import dataclasses
import random

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pcc.frontend import checks, validate
from pcc.ir import DefaultVarNames, Input, default_var_names
from pcc.runtime import weight_init
from pcc.scopes import Scope, VarList, fingerprints
from random_circuits import random_circuit

INDEX_SETS = st.sets(st.integers(0, 300), max_size=200)


@settings(max_examples=200, deadline=None)
@given(INDEX_SETS, INDEX_SETS, st.lists(INDEX_SETS, min_size=1, max_size=4))
def test_scope_operations_are_the_set_operations(a, b, parts):
    x, y = Scope.of(a), Scope.of(b)
    assert x == frozenset(a) and frozenset(a) == x and hash(x) == hash(frozenset(a))
    assert list(x) == sorted(a) and len(x) == len(a) and x.to_array().tolist() == sorted(a)
    assert x | y == a | b and x & y == a & b and x - y == a - b and x.isdisjoint(y) == a.isdisjoint(b)
    assert all((v in x) == (v in a) for v in range(-2, 303))
    union = set().union(*parts)
    for scope in (Scope.union([Scope.of(p) for p in parts]), Scope.union_of([Scope.of(p) for p in parts])):
        assert scope == union and list(scope) == sorted(union)


def test_many_runs_merge_in_numpy_like_few_runs_in_python():
    evens, odds = Scope.of(range(0, 4000, 2)), Scope.of(range(1, 4000, 2))
    assert evens.num_runs == 2000 and Scope.union([evens, odds]) == Scope.range(0, 4000)
    assert Scope.union([evens, odds]).num_runs == 1


def test_deferred_unions_nest_deeper_than_the_stack():
    scope = Scope.range(0, 1)
    for v in range(1, 5000):
        scope = Scope.union_of([scope, Scope.range(v, v + 1)])
    assert scope == Scope.range(0, 5000) and scope.runs == (0, 5000)


@given(st.lists(st.integers(-3, 40), max_size=60))
def test_a_var_list_is_the_tuple_of_its_indices(indices):
    v = VarList.of(indices)
    assert v == tuple(indices) and tuple(indices) == v and hash(v) == hash(tuple(indices))
    assert list(v) == indices and len(v) == len(indices)
    assert [v[i] for i in range(-len(indices), len(indices))] == indices + indices
    assert v.to_array().tolist() == indices and v.as_scope() == set(indices)


def test_inputs_hold_var_lists_and_compare_with_tuples():
    a = Input("a", (3, 4, 5, 1), 2)
    assert isinstance(a.scope, VarList) and tuple(a.scope.runs) == (3, 6, 1, 2)
    assert a == Input("a", VarList.of([3, 4, 5, 1]), 2) and a.scope == (3, 4, 5, 1)
    assert Input("b", ("x0",), 1).scope == ("x0",)  # not indices: kept for the checker to report


def test_default_names_are_made_on_demand():
    names = default_var_names(1_000_000)
    assert isinstance(names, DefaultVarNames) and len(names) == 1_000_000
    assert names[12] == "x12" and names[-1] == "x999999" and names[2:4] == ("x2", "x3")
    assert names.index_of("x999999") == 999_999 and names.index_of("x1000000") is None
    assert names.index_of("x01") is None and "x7" in names and "y7" not in names
    assert default_var_names(3) == ("x0", "x1", "x2") and ("x0", "x1", "x2") == default_var_names(3)
    assert hash(default_var_names(3)) == hash(("x0", "x1", "x2"))


def test_fingerprints_add_up_and_tell_multisets_apart():
    scopes = [VarList.of(range(0, 70000)), VarList.of(range(70000, 200000)), VarList.of([5, 70001]),
              VarList.of([70001, 5]), VarList.of([5, 5]), VarList.of([6])]
    (a, b, c, c_again, twice, other), whole = fingerprints(scopes, 200000)
    assert a + b == whole and c == c_again and twice != c and twice != other and c != other


def test_fingerprints_decide_as_the_exact_check(monkeypatch):
    """Random circuits, valid and with one input's scope changed (products that share variables,
    sums whose partitions differ, a root that misses a variable): the checker says the same with
    and without fingerprints."""
    said = {}
    for seed in range(60):
        rng = random.Random(seed)
        circuit = random_circuit(seed, num_vars=7)
        if seed % 4:
            i = rng.choice([i for i, r in enumerate(circuit.regions) if isinstance(r, Input)])
            scope = list(circuit.regions[i].scope)
            scope[rng.randrange(len(scope))] = rng.choice([v for v in range(7) if v not in scope] or [0])
            regions = list(circuit.regions)
            regions[i] = dataclasses.replace(regions[i], scope=tuple(scope))
            circuit = dataclasses.replace(circuit, regions=tuple(regions))
        with monkeypatch.context() as patch:
            fast = validate(circuit)
            patch.setattr(checks._Checker, "_verified", lambda self, order: False)
            assert fast == validate(circuit)
        said[seed] = {d.kind for d in fast}
    assert all(not said[seed] for seed in range(0, 60, 4))
    assert {"not-decomposable", "not-smooth", "root-scope"} <= set().union(*said.values())


@pytest.mark.parametrize("rows", [1, 3, 1 << 20])
def test_weights_drawn_in_blocks_equal_one_draw(rows, monkeypatch):
    shape = (5, 3, 4)
    whole = weight_init.sum_log_weights(shape, torch.Generator().manual_seed(1), torch.float32)
    mask = torch.tensor([[True, True, False]] * 5).unsqueeze(-1)
    mix = weight_init.mix_log_weights(shape, mask, torch.Generator().manual_seed(1), torch.float64)
    monkeypatch.setattr(weight_init, "BLOCK_VALUES", rows * 12)
    assert torch.equal(weight_init.sum_log_weights(shape, torch.Generator().manual_seed(1), torch.float32), whole)
    assert torch.equal(weight_init.mix_log_weights(shape, mask, torch.Generator().manual_seed(1), torch.float64), mix)
    assert torch.allclose(mix.exp().masked_fill(~mask, 0).sum(1), torch.ones(5, 4, dtype=torch.float64))
