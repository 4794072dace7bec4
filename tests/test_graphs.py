"""CUDA-graph capture logic that needs no CUDA (`pcc.runtime.graphs`): with `EagerRecorder` (which
re-runs the captured function at every replay) a graph-driven EM gives exactly the parameters of
plain EM; the first update, other batch shapes, marginalization and targets run eagerly; the
captured step leaves no Python state that a real replay (which runs no Python) would miss; off
CUDA the graphs switch themselves off. Replay against eager on a real GPU: bench/gpu.py."""
import math

import torch

import pcc
from pcc.compiler import plan
from pcc.em import EM
from pcc.runtime.graphs import CapturedForward, EagerRecorder, EMGraph
from pcc.runtime.module import CompiledCircuit
from random_circuits import random_circuit

CIRCUIT = random_circuit(41, num_vars=6, families=("bernoulli", "normal"))


def model(seed: int = 0) -> CompiledCircuit:
    return CompiledCircuit(CIRCUIT, plan(CIRCUIT), backend="torch", seed=seed)


def batches(sizes, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    for size in sizes:
        x = torch.randint(0, 2, (size, CIRCUIT.num_vars), generator=gen).float()
        x[torch.rand(x.shape, generator=gen) < 0.2] = math.nan
        yield x


def state(m: CompiledCircuit) -> list[torch.Tensor]:
    return [p.detach().clone() for p in m.parameters()]


class ReplaySafetyRecorder(EagerRecorder):
    """An eager recorder that also checks, after every replay, that the Python-visible EM state
    is what it was before the capture (a real capture runs the step's Python once and a real
    replay none), and that the tensors the step updates are still the same ones (a real graph
    writes the captured memory)."""

    def __init__(self, em: EM):
        super().__init__()
        self.em = em

    def snapshot(self):
        em = self.em
        running = [t for group in (em._running_sum, em._running_mix, em._running_leaf)
                   for item in group for t in (item.values() if isinstance(item, dict) else [item])]
        return (em.rows, [c is None for c in em._sum_counts], [c is None for c in em._mix_counts],
                [s is None for s in em._leaf_stats], [t.data_ptr() for t in running],
                [p.data_ptr() for p in em.model.parameters()])

    def capture(self, fn, warmup):
        super().capture(fn, warmup)
        self.before = self.snapshot()

    def replay(self):
        out = super().replay()
        assert self.snapshot() == self.before
        return out


def test_em_graph_replays_equal_plain_em():
    """Steps on batches of 8, 8, 8, 3 (a partial batch: eager), 8: the same parameters and
    log-likelihoods as plain EM, with three replays (the first step creates the running
    statistics eagerly, the partial one is eager)."""
    plain, graphed = model(), model()
    em_plain = EM(plain, step_size=0.3)
    em_graph = EM(graphed, step_size=0.3)
    recorder = ReplaySafetyRecorder(em_graph)
    em_graph.graph = EMGraph(em_graph, recorder)
    for x in batches([8, 8, 8, 3, 8]):
        a, b = em_plain.step(x), em_graph.step(x)
        assert a == b
        for p, q in zip(state(plain), state(graphed)):
            assert torch.equal(p, q)
    assert recorder.replays == 3 and em_graph.graph.active
    assert em_graph.graph.shape == (8, CIRCUIT.num_vars)


def test_em_graph_leaves_marginalization_and_targets_eager():
    em = EM(model(), step_size=0.3)
    recorder = EagerRecorder()
    em.graph = EMGraph(em, recorder)
    xs = list(batches([8, 8, 8]))
    mask = torch.zeros(8, CIRCUIT.num_vars, dtype=torch.bool)
    mask[:, 0] = True
    for x in xs:
        em.step(x, marginalize=mask)
    assert recorder.replays == 0 and not em.graph.active


def test_graphs_switch_off_without_cuda():
    """On the CPU `cuda_graph=True` and `model.capture` run eagerly (no recorder) and agree with
    plain EM and the plain forward."""
    plain, graphed = model(1), model(1)
    em_plain, em_graph = EM(plain), EM(graphed, cuda_graph=True)
    assert em_graph.graph is not None and em_graph.graph.recorder is None
    for x in batches([5, 5, 5]):
        assert em_plain.step(x) == em_graph.step(x)
    assert not em_graph.graph.active
    x = next(batches([4]))
    with torch.no_grad():  # the same arithmetic as the inference path (no autograd)
        assert torch.equal(graphed.capture(4)(x), graphed(x))


def test_captured_forward_replays_one_batch_size():
    m = model(2)
    recorder = EagerRecorder()
    forward = CapturedForward(m, 6, recorder)
    first, second = list(batches([6, 6], seed=3))
    out1 = forward(first)
    out2 = forward(second)
    with torch.no_grad():
        assert torch.equal(out1, m(first)) and torch.equal(out2, m(second))
    assert not torch.equal(out1, out2), "each call returns its own tensor"
    other = next(batches([4], seed=4))
    with torch.no_grad():
        assert torch.equal(forward(other), m(other))
    assert recorder.replays == 2


def test_models_whose_passes_depend_on_the_data_are_never_captured():
    """mvnormal leaves branch on the pattern of missing values: EM steps and the forward stay
    eager (a graph would replay the first batch's pattern)."""
    text = ("pc 1\nvars a b c\nleaf mvnormal(d=2) {a, b}\nleaf normal {c}\n"
            "input g {a, b} k=2\ninput h {c} k=2\nsum top k=1 = g .* h\nroot top\n")
    m = pcc.compile(text, backend="torch")
    assert not m.graph_safe and model().graph_safe
    em = EM(m, step_size=0.3)
    recorder = EagerRecorder()
    em.graph = EMGraph(em, recorder)
    x = torch.randn(8, 3)
    for _ in range(3):
        em.step(x)
    forward = CapturedForward(m, 8, recorder)
    forward(x)
    assert recorder.replays == 0 and not em.graph.active and forward.static is None
