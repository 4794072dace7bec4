"""Capacity and regularization chosen on validation (`pcc.search`, `pcc.capacity`): the open
dimensions a file declares, resizing, the choice is the best candidate on validation, settings the
user fixed are never changed, the budget skips candidates and says why, a held-out share when no
validation rows are given, `pcc.fit` and `pcc.structures.hclt`, and `pcc train` end to end."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import pcc
import pcc.search
from pcc.capacity import open_dimensions, resize
from pcc.frontend import parse, to_text, validate
from pcc.latent_forest import find_latent_forest
from pcc.rows import as_rows, hold_out
from pcc.structures import hclt, hidden_chow_liu_tree
from pcc.members import fit_members
from pcc.train import TrainConfig, evaluate


def data(rows=600, num_vars=6, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.integers(0, 3, rows)
    probs = np.array([0.1, 0.5, 0.9])[z]
    return (rng.random((rows, num_vars)) < probs[:, None]).astype(np.float32)


@pytest.fixture
def small_space(monkeypatch):
    """Two K choices and one alternative of each other setting: 7 candidates."""
    monkeypatch.setattr(pcc.search, "K_CHOICES", (2, 3))
    monkeypatch.setattr(pcc.search, "SCREEN_POLISH", 3)


def test_a_generated_file_says_what_it_leaves_open_and_round_trips():
    x = data()
    circuit = hclt(x, k=None, trees=None)
    assert open_dimensions(circuit) == ("k", "trees")
    assert open_dimensions(hclt(x, k=4)) == ("trees",)
    assert open_dimensions(hclt(x, k=4, trees=2)) == ()
    reparsed = parse(to_text(circuit))  # the comment line travels with the text
    assert open_dimensions(reparsed) == ("k", "trees")
    with_params = pcc.compile(circuit).ir_params()
    import dataclasses
    assert open_dimensions(dataclasses.replace(circuit, params=with_params)) == ()


def test_resize_sets_k_and_keeps_the_first_trees():
    circuit = hidden_chow_liu_tree(data(), k=8, trees=4)
    small = resize(circuit, 3, 1)
    validate(small)
    forest = find_latent_forest(small)
    assert forest.k == 3 and len(forest.roots) == 1
    assert all(r.k == 3 for r in small.regions if r.name != small.root)
    assert not any(r.name.startswith("t1_") for r in small.regions)  # other trees dropped
    assert resize(circuit, 8, 4).regions == circuit.regions
    assert "chosen on validation" in small.comments[0].text
    with pytest.raises(ValueError, match="trees must be in 1..4"):
        resize(circuit, 3, 5)


def test_capacity_is_the_cheapest_within_one_standard_error_then_the_best_settings(small_space):
    x = data()
    model = pcc.compile(hclt(x[:400]))
    trained, histories = fit_members(model, x[:400], x[400:], TrainConfig(epochs=3),
                                     progress=False)
    search = histories[0].capacity
    tried = [c for c in search["candidates"] if c["valid"] is not None]
    assert len(tried) == 9  # 2 K x 3 tree counts (1, 4, 8), then one more pseudocount, entropy,
    #                        smoothing
    capacity, settings = tried[:6], tried[6:]  # the capacity phase, cheapest first
    within = [c["gap"] <= pcc.search.CAPACITY_TOLERANCE * c["se"] for c in capacity]
    pick = within.index(True)  # the cheapest within one standard error of the best
    assert [c["gap"] for c in capacity if c["se"] == 0.0] == [0.0]  # the best, measured alone
    assert all(c["se"] > 0 for c in capacity if c["gap"] != 0.0)
    assert search["valid"] == max([capacity[pick]["valid"]] + [c["valid"] for c in settings])
    assert all(c[f] == capacity[pick][f] for c in settings for f in ("k", "trees"))
    best = max(capacity, key=lambda c: c["valid"])
    assert (search["best_capacity"] is None) == (best is capacity[pick])
    forest = find_latent_forest(trained.circuit)
    assert (forest.k, len(forest.roots)) == (search["k"], search["trees"])
    # the chosen model goes on from where its screening stopped: never below its score there
    assert evaluate(trained, x[400:]).mean >= search["valid"] - 1e-6


@pytest.mark.parametrize("tolerance", [0.0, 1e9])
def test_the_tolerance_moves_the_capacity_between_the_best_and_the_cheapest(
        small_space, monkeypatch, tolerance):
    x = data()
    monkeypatch.setattr(pcc.search, "CAPACITY_TOLERANCE", tolerance)
    model = pcc.compile(hclt(x[:400]))
    _, histories = fit_members(model, x[:400], x[400:],
                               TrainConfig(epochs=2, pseudocount=0.1, entropy=0.0, soften=0.0),
                               progress=False)
    search = histories[0].capacity
    capacity = search["candidates"]
    chosen = next(c for c in capacity if (c["k"], c["trees"]) == (search["k"], search["trees"]))
    if tolerance == 0.0:  # the plain maximum
        assert chosen["valid"] == max(c["valid"] for c in capacity)
    else:  # the cheapest: K=2, one tree
        assert chosen is capacity[0] and (chosen["k"], chosen["trees"]) == (2, 1)
        assert search["best_capacity"] == {f: max(capacity, key=lambda c: c["valid"])[f]
                                           for f in ("k", "trees")}


def test_the_paired_gap_is_the_mean_and_standard_error_of_the_row_differences():
    x = data()
    better, other = pcc.compile(hclt(x, k=3, trees=2), seed=0), pcc.compile(hclt(x, k=2), seed=1)
    d = (better(torch.from_numpy(x)).double() - other(torch.from_numpy(x)).double()).detach().numpy()
    gap, se = pcc.search.paired_gap(better, other, x, batch_size=77)
    assert gap == pytest.approx(d.mean(), rel=1e-5)  # float32 circuits, other batches
    assert se == pytest.approx(d.std(ddof=1) / math.sqrt(len(d)), rel=1e-5)


def test_settings_the_user_fixed_are_never_changed(small_space):
    x = data()
    model = pcc.compile(hclt(x[:400], k=3))  # K fixed; the trees open
    _, histories = fit_members(model, x[:400], x[400:],
                               TrainConfig(epochs=2, pseudocount=0.5, entropy=0.0),
                               progress=False)
    candidates = histories[0].capacity["candidates"]
    assert {c["k"] for c in candidates} == {3}
    assert {c["pseudocount"] for c in candidates} == {0.5}
    assert {c["entropy"] for c in candidates} == {0.0}
    assert {c["trees"] for c in candidates} == {1, 4, 8}
    fixed = pcc.compile(hclt(x[:400], k=3, trees=2))
    _, histories = fit_members(fixed, x[:400], x[400:],
                               TrainConfig(epochs=2, pseudocount=0.1, entropy=0.0, soften=0.0),
                               progress=False)
    assert histories[0].capacity is None  # nothing left to choose: no search


def test_a_small_budget_skips_candidates_and_says_why(small_space, monkeypatch):
    x = data()
    monkeypatch.setattr(pcc.search, "SEARCH_SHARE", 1e-9)  # nothing fits after the first
    model = pcc.compile(hclt(x[:400]))
    trained, histories = fit_members(model, x[:400], x[400:], TrainConfig(epochs=2, budget=1.0),
                                     progress=False)
    results = histories[0].capacity["candidates"]
    assert results[0]["valid"] is not None
    assert all(c["valid"] is None and "budget" in c["skipped"] for c in results[1:])
    assert find_latent_forest(trained.circuit).k == 2  # the one tried is the one chosen


def test_hold_out_is_seeded_disjoint_and_complete():
    rows = as_rows(torch.arange(50.0).reshape(25, 2))
    train, valid = hold_out(rows, 0.2, seed=3)
    assert (len(train), len(valid)) == (20, 5)
    seen = torch.cat([train.span(0, 20)[0], valid.span(0, 5)[0]])[:, 0]
    assert sorted(seen.tolist()) == list(range(0, 50, 2))
    again = hold_out(rows, 0.2, seed=3)[1].span(0, 5)[0]
    assert torch.equal(again, valid.span(0, 5)[0])
    assert not torch.equal(hold_out(rows, 0.2, seed=4)[1].span(0, 5)[0], again)
    from pcc.errors import DataError
    with pytest.raises(DataError, match="too few"):
        hold_out(as_rows(torch.zeros(1, 2)), 0.1)


def test_fit_from_arrays_holds_out_validation_and_returns_the_trained_module(small_space,
                                                                              capsys):
    x = data()
    model = pcc.fit(hclt(x[:500]), torch.tensor(x[:500]), budget=math.inf, epochs=2)
    assert "validating on 50 of the 500 training rows" in capsys.readouterr().err
    assert isinstance(model, pcc.CompiledCircuit) and model.capacity is not None
    untrained = pcc.compile(hclt(x[:500]))
    assert evaluate(model, x[500:]).mean > evaluate(untrained, x[500:]).mean + 0.5
    again = pcc.fit(model, x[:500], x[500:], progress=False, epochs=1, polish=0)
    assert again is model and again.capacity is None  # continued: nothing chosen


def test_mixed_columns_get_their_leaves_and_train(small_space):
    rng = np.random.default_rng(0)
    z = rng.integers(0, 2, 500)
    x = np.stack([z + 0.3 * rng.normal(size=500), z * 2.0 + rng.normal(size=500),
                  (rng.random(500) < 0.2 + 0.6 * z).astype(float)], 1)
    x[rng.random(x.shape) < 0.1] = np.nan  # missing values in every column
    circuit = hclt(x[:400])
    assert [circuit.var_family(v).name for v in range(3)] == ["normal", "normal", "bernoulli"]
    model = pcc.fit(circuit, x[:400], x[400:], progress=False, epochs=3)
    assert math.isfinite(evaluate(model, x).mean)


def test_the_two_commands_on_a_mixed_csv_choose_say_and_record(small_space, tmp_path, capsys):
    from pcc import checkpoint
    from pcc.cli.main import main
    rng = np.random.default_rng(0)
    z = rng.integers(0, 2, 300)
    lines = ["height,smoker,weight"] + [
        f"{1.6 + 0.2 * a + 0.05 * rng.normal():.3f},{int(rng.random() < 0.2 + 0.6 * a)},"
        + ("" if rng.random() < 0.05 else f"{60 + 20 * a + 5 * rng.normal():.2f}") for a in z]
    (tmp_path / "t.csv").write_text("\n".join(lines) + "\n")
    pc, pt = tmp_path / "t.pc", tmp_path / "t.pt"
    assert main(["structure", "hclt", "--data", str(tmp_path / "t.csv"), "-o", str(pc)]) == 0
    text = pc.read_text()
    assert "# capacity: open (k, trees)" in text and "leaf bernoulli {smoker}" in text
    assert main(["train", str(pc), "--train", str(tmp_path / "t.csv"), "--epochs", "2",
                 "--quiet", "-o", str(pt)]) == 0
    out, err = capsys.readouterr()
    assert "no --valid: validating on 30 of the 300 training rows" in err
    assert "chose K=" in out
    _, meta = checkpoint.load(pt)
    assert meta["capacity"]["k"] in (2, 3) and "held out" in meta["data"]["valid"]
    assert main(["info", str(pt)]) == 0
    assert "chosen on validation" in capsys.readouterr().out
    assert main(["train", str(pc), "--train", str(tmp_path / "t.csv"), "-k", "3", "--trees",
                 "1", "--epochs", "1", "--quiet", "-o", str(pt)]) == 0
    model, meta = checkpoint.load(pt)
    assert find_latent_forest(model.circuit).k == 3 and {c["k"] for c in
                                                         meta["capacity"]["candidates"]} == {3}
    fixed = tmp_path / "fixed.pc"
    assert main(["structure", "hclt", "--data", str(tmp_path / "t.csv"), "-k", "2", "-o",
                 str(fixed)]) == 0
    assert main(["train", str(fixed), "--train", str(tmp_path / "t.csv"), "-k", "3", "-o",
                 str(pt)]) == 1
    assert "-k: " in capsys.readouterr().err
