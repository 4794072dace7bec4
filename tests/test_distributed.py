"""Data-parallel training on 2 gloo ranks (pcc.distributed) against one process: the same
parameters after online and full-batch EM (a RAT, an HCLT initialized from the data, a
class-conditional RAT), one all-reduce per EM update, a failure or an interrupt on one rank
stopping every rank at the same step, and gradient training under DistributedDataParallel."""
from __future__ import annotations

import itertools
import os
import signal
import sys
import time

import numpy as np
import pytest
import torch

import pcc
from distributed_helpers import on_ranks
from pcc import latent_tree
from pcc.distributed import RankError, StatisticsReducer
from pcc.em import EM
from pcc.rows import FileRows, Labeled, Shard, as_rows
from pcc.data import Columns
from pcc.structures import hidden_chow_liu_tree, random_binary_trees
from pcc.train import TrainConfig, fit
from test_latent_tree import latent_chain_data, tree_data

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "examples"))
from embedding import CircuitClassifier, with_root_units  # noqa: E402

CONFIG = TrainConfig(epochs=2, batch_size=100, step_size=0.1, pseudocount=0.1, patience=5,
                     polish=2, members=1)
KMEANS_ROWS = 400  # < the 1001 rows: the k-means sample is drawn (seeded) from all rows
TRAIN = latent_chain_data(rows=1001, num_vars=8, seed=0).astype(np.float64)  # last batch: 1 row
VALID = latent_chain_data(rows=301, num_vars=8, seed=1).astype(np.float64)
TREE = tree_data(501, 10, 2, seed=5).astype(np.float64)  # a tree: the plain-tree floor wins


def circuits():
    """(name, circuit, init, train, valid): the problems both sides train."""
    labeled = with_root_units(random_binary_trees(7, depth=2, replicas=2, k=3), 2)
    split = lambda x: Labeled(x[:, 1:], x[:, 0].astype(np.int64))  # noqa: E731
    return [("rat", random_binary_trees(8, depth=2, replicas=3, k=4), "keep", TRAIN, VALID),
            ("hclt", hidden_chow_liu_tree(TRAIN, k=3), "data", TRAIN, VALID),
            ("hclt-tree", hidden_chow_liu_tree(TREE[:201], k=8, trees=2), "data", TREE[:201],
             TREE[201:]),
            ("labeled", labeled, "keep", split(TRAIN), split(VALID))]


def train(name, circuit, init, rows, valid, dtype=torch.float32):
    model = pcc.compile(circuit, seed=3, dtype=dtype)
    history = fit(model, rows, valid, TrainConfig(**{**CONFIG.__dict__, "init": init}),
                  progress=False)
    plain = [{"epoch": "plain Chow-Liu tree"}] if history.plain_tree else []
    return model.state_dict(), [dict(r) for r in history.epochs] + plain


def train_on_ranks(group, npy):
    """Every problem on this rank's shard; the RAT's training rows streamed from an .npy."""
    latent_tree.MAX_KMEANS_ROWS = KMEANS_ROWS
    out = {}
    for dtype in (torch.float32, torch.float64):
        for name, circuit, init, rows, valid in circuits():
            if name == "rat":
                rows = FileRows(npy, Columns(tuple(range(8))))
            out[name, dtype] = train(name, circuit, init, Shard(as_rows(rows), group),
                                     Shard(as_rows(valid), group), dtype)
    return out


def probabilities(key: str, value: torch.Tensor) -> torch.Tensor:
    """The probabilities a parameter holds: Bernoulli log-odds or log-weights."""
    return torch.sigmoid(value) if key.endswith(".logit") else value.exp()


def scenarios(group, npy):
    """Every scenario of this module on 2 ranks, one after another in the same processes (a
    failure or an interrupt leaves the group usable: every rank stopped at the same point)."""
    return {"train": train_on_ranks(group, npy), "search": search(group),
            "all_reduces": count_all_reduces(group, 4),
            "failure": fail_on_rank_1(group), "interrupt": interrupt_rank_1(group),
            "ddp": ddp_steps(group, 3, 64)}


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    """What each of the 2 ranks returned from `scenarios`."""
    npy = tmp_path_factory.mktemp("distributed") / "train.npy"
    np.save(npy, TRAIN.astype(np.int8))
    return on_ranks(scenarios, 2, str(npy), timeout=180)


def test_two_ranks_train_the_parameters_of_one_process(ranks, monkeypatch):
    ranks = [r["train"] for r in ranks]
    monkeypatch.setattr(latent_tree, "MAX_KMEANS_ROWS", KMEANS_ROWS)
    for (name, circuit, init, rows, valid), dtype in itertools.product(
            circuits(), (torch.float32, torch.float64)):
        one_state, one_history = train(name, circuit, init, rows, valid, dtype)
        (state, history), (other, _) = ranks[0][name, dtype], ranks[1][name, dtype]
        for key, value in state.items():
            assert torch.equal(value, other[key]), (name, key)  # the ranks agree bit for bit
            if dtype == torch.float64:  # the same arithmetic but for the order of additions
                assert torch.allclose(value, one_state[key], rtol=0, atol=1e-9), (name, key)
            else:  # float32 rounding: a probability near 1 is known to ~6e-8 only
                assert torch.allclose(probabilities(key, value), probabilities(
                    key, one_state[key]), rtol=1e-5, atol=0), (name, key)
        assert [r["epoch"] for r in history] == [r["epoch"] for r in one_history]
        assert (history[-1]["epoch"] == "plain Chow-Liu tree") == (name == "hclt-tree")
        assert len(history) >= CONFIG.epochs + 1  # online epochs, then full-batch EM steps
        for got, want in zip(history, one_history):
            for key in ("train_ll", "valid_ll"):
                if key in want:
                    assert got[key] == pytest.approx(want[key], rel=1e-5), (name, got["epoch"])


def search(group=None):
    """A capacity and regularization search (`pcc.search`) of an HCLT whose K and trees are open,
    on this rank's shard (or all rows): (the chosen model's state, the search's summary)."""
    import pcc.search
    from pcc.structures import hclt
    from pcc.members import fit_members
    pcc.search.K_CHOICES, pcc.search.SCREEN_POLISH = (2, 3), 2
    latent_tree.MAX_KMEANS_ROWS = KMEANS_ROWS
    shard = (lambda x: x) if group is None else (lambda x: Shard(as_rows(x), group))
    model = pcc.compile(hclt(TRAIN.astype(np.float32)), seed=3)
    trained, histories = fit_members(model, shard(TRAIN), shard(VALID),
                                     TrainConfig(epochs=2, batch_size=100, polish=2),
                                     progress=False)
    return trained.state_dict(), histories[0].capacity


def count_all_reduces(group, steps):
    """(all-reduces per online step, per full-batch update, statistics bytes, parameters)."""
    import pcc.distributed
    calls = []
    real = pcc.distributed.dist.all_reduce
    pcc.distributed.dist.all_reduce = lambda t, *a, **k: (calls.append(t.numel()), real(t))[1]
    try:
        return _count(group, steps, calls)
    finally:
        pcc.distributed.dist.all_reduce = real


def _count(group, steps, calls):
    model = pcc.compile(random_binary_trees(8, depth=2, replicas=3, k=4), seed=3)
    rows = Shard(as_rows(TRAIN), group)
    em = EM(model, step_size=0.1, reduce=StatisticsReducer(group))
    for i in range(steps):
        em.step(rows.batch(torch.arange(100 * i, 100 * i + 100))[0])
    online = len(calls)
    full = EM(model, step_size=1.0, reduce=StatisticsReducer(group))
    for x, _ in rows.local_chunks(128):
        full.accumulate(x)
    full.update()
    parameters = sum(p.numel() for p in model.parameters())
    return online / steps, len(calls) - online, calls[-1], em.reduce.statistics_bytes(em), \
        parameters, sum(p.numel() for p in model.leaf_params.parameters())


def test_two_ranks_search_as_one_process(ranks, monkeypatch):
    """The capacity search's decisions (the paired gaps to the best, totalled over the ranks)
    and its result are the same on both ranks and as in one process."""
    import pcc.search
    (state, summary), (other, other_summary) = ranks[0]["search"], ranks[1]["search"]
    timeless = lambda s: {**s, "candidates": [  # noqa: E731 (each rank's own clock)
        {k: v for k, v in c.items() if k != "seconds"} for c in s["candidates"]]}
    assert timeless(summary) == timeless(other_summary)
    assert all(torch.equal(value, other[key]) for key, value in state.items())
    for name in ("K_CHOICES", "SCREEN_POLISH"):
        monkeypatch.setattr(pcc.search, name, getattr(pcc.search, name))  # restored after
    monkeypatch.setattr(latent_tree, "MAX_KMEANS_ROWS", latent_tree.MAX_KMEANS_ROWS)
    one_state, one = search()
    settings = ("k", "trees", "pseudocount", "entropy", "soften", "best_capacity")
    assert {f: summary[f] for f in settings} == {f: one[f] for f in settings}
    capacity = [c for c in summary["candidates"] if "se" in c]
    assert len(capacity) == 6 and any(c["se"] > 0 for c in capacity)
    for got, want in zip(summary["candidates"], one["candidates"]):
        for key in ("valid", "gap", "se"):
            if key in want:
                assert got[key] == pytest.approx(want[key], rel=1e-4, abs=1e-6), key
    assert state.keys() == one_state.keys()


def test_each_em_update_is_one_all_reduce_of_the_statistics(ranks):
    per_step, per_update, numel, payload, parameters, leaf_parameters = ranks[0]["all_reduces"]
    assert per_step == 1 and per_update == 1
    assert numel * 4 == payload + 3 * 4  # the statistics, then 3 status slots, in float32
    # the statistics: one per parameter, plus the expected count n of every Bernoulli leaf
    # (1 parameter, 2 statistics: n and t), plus the row count
    assert payload == 4 * (parameters + leaf_parameters + 1)


def on_call(model, number: int, action) -> None:
    """Make `model` call action() in its number-th leaf_statistics (an E-step), then go on."""
    real, calls = model.leaf_statistics, []

    def leaf_statistics(*args):
        calls.append(1)
        if len(calls) == number:
            action()
        return real(*args)
    model.leaf_statistics = leaf_statistics


def injected():
    raise RuntimeError("injected")


def fail_on_rank_1(group):
    """Rank 1's third E-step raises; every rank should stop at that step with its message."""
    model = pcc.compile(random_binary_trees(8, depth=2, replicas=3, k=4), seed=3)
    if group.rank == 1:
        on_call(model, 3, injected)
    started = time.monotonic()
    try:
        fit(model, Shard(as_rows(TRAIN), group), Shard(as_rows(VALID), group), CONFIG,
            progress=False)
    except RankError as e:
        return str(e), time.monotonic() - started
    return None, time.monotonic() - started


def test_a_failing_rank_stops_every_rank_with_its_error(ranks):
    for message, seconds in (r["failure"] for r in ranks):
        assert message == "rank 1: RuntimeError: injected" and seconds < 30


def interrupt_rank_1(group):
    """Rank 1 gets SIGTERM in the middle of its 15th E-step (epoch 2)."""
    model = pcc.compile(random_binary_trees(8, depth=2, replicas=3, k=4), seed=3)
    if group.rank == 1:  # the handler raises during the sleep
        on_call(model, 15, lambda: (os.kill(os.getpid(), signal.SIGTERM), time.sleep(1)))
    epochs = []
    with group.interrupt_on(signal.SIGINT, signal.SIGTERM):
        history = fit(model, Shard(as_rows(TRAIN), group), Shard(as_rows(VALID), group),
                      TrainConfig(**{**CONFIG.__dict__, "epochs": 5}), progress=False,
                      on_epoch=epochs.append)
    return history.interrupted, history.best_epoch, epochs, model.state_dict()


def test_an_interrupt_on_one_rank_stops_every_rank_at_the_same_step(ranks):
    (stopped, best, epochs, state), (stopped_1, best_1, epochs_1, state_1) = (
        r["interrupt"] for r in ranks)
    assert stopped and stopped_1 and best == best_1 == 1
    assert [r["valid_ll"] for r in epochs] == [r["valid_ll"] for r in epochs_1]
    assert len(epochs) == 1  # stopped during epoch 2, back at epoch 1's parameters
    assert all(torch.equal(state[k], state_1[k]) for k in state)


def ddp_steps(group, steps, global_batch):
    """Adam on -log p(z, y) of a circuit head under DistributedDataParallel (or alone)."""
    torch.manual_seed(0)
    x = torch.randn(global_batch * steps, 12)
    y = torch.arange(len(x)) % 3
    model = CircuitClassifier(12, 3, num_features=6, k=4, seed=0)
    runner = model
    if group is not None:
        runner = torch.nn.parallel.DistributedDataParallel(model)
    optimizer = torch.optim.Adam(runner.parameters(), lr=1e-2)
    share = slice(None) if group is None else slice(group.rank, None, group.size)
    for s in range(steps):
        xb = x[s * global_batch: (s + 1) * global_batch][share]
        yb = y[s * global_batch: (s + 1) * global_batch][share]
        loss = -runner(xb).gather(1, yb.unsqueeze(1)).mean()  # the log-likelihood of (z, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_gradient_training_under_ddp_matches_one_process(ranks):
    one = ddp_steps(None, 3, 64)
    for key, value in ranks[0]["ddp"].items():
        assert torch.equal(value, ranks[1]["ddp"][key]), key
        assert torch.allclose(value, one[key], rtol=1e-5, atol=1e-6), key
