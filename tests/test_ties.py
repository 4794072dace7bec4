"""Ties as a general mechanism: random circuits (every leaf family, mixed inputs, element-wise and
outer products, several partitions) with random tie groups compute what their untied copies
compute; gradients and EM statistics of a tie are the sums of its copies'; one parameter row per
group in the module, `--explain` and checkpoints; ties survive printing, ensembles and export."""
from __future__ import annotations

import dataclasses
import math
import random
import warnings

import pytest
import torch

import pcc
from pcc.checkpoint import read, save
from pcc.ensemble import ensemble_circuit
from pcc.frontend import PcWarning, parse, to_text, validate
from pcc.interchange.export import export_text
from pcc.ir import Circuit, Input, Sum, Tie, untied
from pcc.passes.explain import explain
from pcc.region_graph import parameter_count, product_units
from pcc.structures import poon_domingos
from random_circuits import FAMILIES, random_circuit

SEEDS = range(8)


def signature(c: Circuit, r) -> tuple:
    """What tied regions must share (docs/ir.md, Ties)."""
    if isinstance(r, Input):
        return ("input", r.k, tuple((f, len(vs)) for f, vs in c.input_parts(r)))
    return ("sum", r.k, tuple((r.is_elementwise(p), product_units(c, r, p),
                               tuple(c.region(ch).k for ch in part)
                               if not r.is_elementwise(p) else c.region(part[0]).k)
                              for p, part in enumerate(r.partitions)))


def with_random_ties(c: Circuit, seed: int) -> Circuit:
    """`c` with random tie groups among its regions of the same shape (at least one group)."""
    rng = random.Random(seed)
    alike: dict[tuple, list[str]] = {}
    for r in c.regions:
        alike.setdefault(signature(c, r), []).append(r.name)
    ties = []
    for names in alike.values():
        rng.shuffle(names)
        while len(names) >= 2:
            size = rng.randint(2, len(names))
            ties.append(Tie(tuple(names[:size])))
            names = names[size:]
    tied = dataclasses.replace(c, ties=tuple(ties))
    assert [d for d in validate(tied) if d.severity == "error"] == []
    return tied


def tied_circuit(seed: int, families=("bernoulli", "categorical", "binomial", "normal")) -> Circuit:
    """A circuit with tied sums and tied inputs: a random DAG (odd seeds: mixed inputs,
    element-wise products, several partitions) or a Poon-Domingos circuit (even seeds: mixing
    sums, and ops some of whose members are tied)."""
    for attempt in range(200):
        if seed % 2:
            c = random_circuit(100 * seed + attempt, num_vars=6, families=families, max_k=2,
                               max_arity=2, max_parts=2, mixed=0.5, elementwise=0.5)
        else:
            c = poon_domingos(2, 3, [1], k=2, leaf=FAMILIES[families[seed // 2 % len(families)]])
        c = with_random_ties(c, seed + attempt)
        if {type(c.region(t.regions[0])) for t in c.ties} == {Input, Sum}:
            return c
    raise AssertionError("no circuit with tied sums and inputs")


def data(c: Circuit, rows: int = 40, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    model = pcc.compile(c, backend="torch", dtype=torch.float64)
    x = model.sample(rows, generator=gen)
    return x.masked_fill(torch.rand(x.shape, generator=gen) < 0.25, math.nan)


def untied_copy(model) -> "pcc.CompiledCircuit":
    """The circuit without ties, every tied region holding a copy of its group's parameters."""
    c = untied(dataclasses.replace(model.circuit, params=model.ir_params()))
    return pcc.compile(c, backend=model.backend, dtype=torch.float64)


@pytest.mark.parametrize("seed", SEEDS)
def test_a_tied_circuit_computes_what_its_untied_copy_computes(seed):
    c = tied_circuit(seed)
    model = pcc.compile(c, backend="torch", seed=seed, dtype=torch.float64)
    x = data(c, seed=seed)
    assert torch.allclose(model(x), untied_copy(model)(x), atol=1e-10)
    naive = pcc.compile(c, backend="naive", seed=seed, dtype=torch.float64)
    assert torch.allclose(naive(x), model(x), atol=1e-10)
    assert sum(p.numel() for p in model.parameters()) < \
        sum(p.numel() for p in untied_copy(model).parameters())


def _by_copy(model) -> dict[tuple, tuple]:
    """(region, what) -> the parameter tensor and its row(s) holding it: sum weights by (region,
    p), mixing by (region, 'mix'), leaves by (region, part)."""
    part, mix, leaf = model._locate()
    out = {(r, p): (model.sum_logits[i], [m]) for (r, p), (i, m) in part.items()}
    out.update({(r, "mix"): (model.mix_logits[i], [m]) for r, (i, m) in mix.items()})
    for r, parts in leaf.items():
        for j, (gi, m) in enumerate(parts):
            for name, tensor in model.leaf_params[gi].named_parameters():
                out[(r, j, name)] = (tensor, model._param_rows_of(gi, m).tolist())
    return out


@pytest.mark.parametrize("backend", ["torch", "naive"])
@pytest.mark.parametrize("seed", SEEDS)
def test_the_gradient_of_a_tie_is_the_sum_of_its_copies(seed, backend):
    c = tied_circuit(seed)
    model = pcc.compile(c, backend=backend, seed=seed, dtype=torch.float64)
    copy = untied_copy(model)
    x = data(c, seed=seed)
    model(x).sum().backward()
    copy(x).sum().backward()
    tied, copies = _by_copy(model), _by_copy(copy)
    summed: dict[tuple, torch.Tensor] = {}
    for key, (tensor, rows) in copies.items():
        owner_tensor, owner_rows = tied[key]
        at = (id(owner_tensor), tuple(owner_rows))
        summed[at] = summed.get(at, 0) + tensor.grad[rows]
    for key, (tensor, rows) in tied.items():
        assert torch.allclose(tensor.grad[rows], summed[(id(tensor), tuple(rows))], atol=1e-9), key


@pytest.mark.parametrize("backend", ["torch", "naive"])
@pytest.mark.parametrize("seed", SEEDS)
def test_em_adds_the_expected_counts_of_tied_copies(seed, backend):
    c = tied_circuit(seed, families=("bernoulli", "categorical", "normal"))
    model = pcc.compile(c, backend=backend, seed=seed, dtype=torch.float64)
    copy = untied_copy(model)
    x = data(c, seed=seed)
    em, copy_em = pcc.EM(model, step_size=1.0), pcc.EM(copy, step_size=1.0)
    em.accumulate(x)
    copy_em.accumulate(x)

    def statistics(m, em):
        """(region, what) -> (its statistics tensor's identity and rows, the values)."""
        part, mix, leaf = m._locate()
        out = {(r, p): (("sum", i, m_), em._sum_counts[i][m_]) for (r, p), (i, m_) in part.items()}
        out.update({(r, "mix"): (("mix", i, m_), em._mix_counts[i][m_])
                    for r, (i, m_) in mix.items()})
        for r, parts in leaf.items():
            for j, (gi, m_) in enumerate(parts):
                rows = m._param_rows_of(gi, m_)
                for name, value in em._leaf_stats[gi].items():
                    out[(r, j, name)] = (("leaf", gi, name, tuple(rows.tolist())), value[rows])
        return out
    tied, copies = statistics(model, em), statistics(copy, copy_em)
    summed: dict = {}
    for key, (_, value) in copies.items():
        place = tied[key][0]
        summed[place] = summed.get(place, 0) + value
    for key, (place, value) in tied.items():
        assert torch.allclose(value, summed[place], atol=1e-9), key


def test_leaves_share_one_table_across_the_pixels_of_a_pd_circuit(tmp_path):
    c = poon_domingos(2, 4, [2, 1], k=3)
    pixels = tuple(r.name for r in c.inputs)
    tied = dataclasses.replace(c, ties=(Tie(pixels),))
    assert parse(to_text(tied)) == tied
    model = pcc.compile(tied, seed=0)
    assert model.leaf_params[0].logit.shape == (1, 3)  # one table of 3 units for 8 pixels
    x = (torch.rand(200, 8, generator=torch.Generator().manual_seed(0)) < 0.3).float()
    em = pcc.EM(model, step_size=1.0)
    before = float(model(x).mean().detach())
    for _ in range(3):
        em.accumulate(x)
        em.update()
    assert float(model(x).mean()) > before
    text = explain(model.plan)
    assert "1 tie group" in text and f"shared by {len(pixels)} regions" in text
    assert f"total: {parameter_count(tied):,} parameters" in text
    assert parameter_count(tied) == sum(p.numel() for p in model.parameters())
    path = tmp_path / "pd.pt"
    save(model, path)
    stored = read(path)
    assert stored.state_dict["leaf_params.0.logit"].shape == (1, 3)
    loaded = pcc.load(path)
    assert torch.equal(loaded(x), model(x))


def test_checkpoints_hold_one_row_per_tie_group(tmp_path):
    c = tied_circuit(3)
    model = pcc.compile(c, seed=1)
    save(model, tmp_path / "m.pt")
    stored = read(tmp_path / "m.pt")
    keys = {model.plan.weight_key(m) for op in model.plan.ops for m in op.members
            if not isinstance(op, pcc.passes.EinsumOp) or op.has_weights}
    rows = sum(len(v) for v in stored.layout.values())
    assert rows == len(keys)
    owners = {o for o in c.tie_owner.values()}
    named = {m[0] if isinstance(m, list) else m for v in stored.layout.values() for m in v}
    assert not (named & set(c.tie_owner)) - owners  # rows are named by their tie's owner
    x = data(c, seed=1).float()
    assert torch.equal(pcc.load(tmp_path / "m.pt")(x), model(x))


def test_printing_ensembles_and_export_keep_or_expand_ties():
    c = tied_circuit(5, families=("bernoulli",))
    assert parse(to_text(c)) == c
    hand = Circuit(c.vars, c.regions, c.root, c.leaf, ties=c.ties, leaf_scopes=c.leaf_scopes)
    assert parse(to_text(hand)) == hand
    model = pcc.compile(c, seed=2, dtype=torch.float64)
    two = ensemble_circuit([dataclasses.replace(c, params=model.ir_params())] * 2)
    assert [t.regions for t in two.ties] == [tuple(f"m{i}_{r}" for r in t.regions)
                                             for i in range(2) for t in c.ties]
    x = data(c, seed=2)
    assert torch.allclose(pcc.compile(two, dtype=torch.float64)(x), model(x), atol=1e-10)
    with_params = dataclasses.replace(c, params=model.ir_params())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        files = export_text(with_params, "jpc")
    assert [str(w.message) for w in caught if w.category is PcWarning] == [
        f"jpc files share no parameters: the {len(c.ties)} tie group"
        f"{'s are' if len(c.ties) > 1 else ' is'} written as a copy per tied region "
        f"({len(c.tie_owner)} regions)"]
    from pcc.interchange import read_circuit
    from pcc.interchange.source import Source
    back = read_circuit(Source(files[""], "m.jpc"), "jpc")
    assert torch.allclose(pcc.compile(back, dtype=torch.float64)(x), model(x), atol=1e-9)


def test_an_op_with_two_tied_members_gathers_its_weights():
    """Two tied sums computed by one fused op read one row twice (an index array)."""
    text = """pc 1
vars 4
leaf bernoulli
input a {x0} k=2
input b {x1} k=2
input c {x2} k=2
input d {x3} k=2
sum s k=2 = a * b
sum t k=2 = c * d
sum top k=1 = s * t
tie s t
tie a b c d
root top
"""
    model = pcc.compile(text, backend="torch", dtype=torch.float64)
    [slot] = [s for s in model.layout.slots if s is not None and s.n == 2]
    assert slot.rows.tolist() == [0, 0] and not slot.block
    x = torch.tensor([[0, 1, 1, 0], [1, 1, 0, math.nan]], dtype=torch.float64)
    assert torch.allclose(model(x), untied_copy(model)(x), atol=1e-12)
    em = pcc.EM(model, step_size=1.0)
    em.accumulate(x)
    copy_em = pcc.EM(untied_copy(model), step_size=1.0)
    copy_em.accumulate(x)
    s_rows = [m for op in copy_em.model.plan.ops for m in op.members if m in (("s", 0), ("t", 0))]
    assert len(s_rows) == 2
    part, _, _ = copy_em.model._locate()
    total = sum(copy_em._sum_counts[part[m][0]][part[m][1]] for m in s_rows)
    i, row = model._locate()[0][("s", 0)]
    assert torch.allclose(em._sum_counts[i][row], total, atol=1e-12)
