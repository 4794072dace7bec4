"""CUDA graphs: a compiled model's forward, or a whole EM step, captured once for a fixed batch
shape and replayed, so that a step costs one graph launch instead of one Python launch per
kernel (~10-40 per layer at batch 100, where the launches dominate).

    forward = model.capture(batch_size)        # CapturedForward
    ll = forward(x)                            # x [batch_size, V]: replay; other shapes: eager
    em = pcc.EM(model, cuda_graph=True)        # em.step(x): E-step, statistics and M-step replayed

How. The captured function reads a static input buffer and leaves its results in static output
tensors; a call validates x eagerly (`model.prepare_input`, which may raise), copies it into the
buffer, replays, and reads the outputs. Everything a replay must redo lives in tensors: the
arenas, gradients and statistics come from the graph's private memory pool (so do the torch
kernels' workspace temporaries while capturing, and the captured forward uses fresh arenas, not
the model's reusable inference arenas: memory the graph writes is never handed back), the
parameters and EM's running statistics are updated in place, and Python state (EM's counters and
lists) is left as it was after the capture. Capture happens on first use of the shape, after warm-up runs on a
side stream (which also let the Triton autotuner time its configurations, which it cannot do
inside a capture). For EM the warm-up is the E-step alone (no parameter changes) and the first
update runs eagerly (it creates the running statistics); the partial last batch of an epoch, or
any other shape, marginalization or targets, run eagerly. Off CUDA, with `cuda_graph=False`, or
for a model whose passes depend on the data (`CompiledCircuit.graph_safe`: joint leaves),
everything is eager.

A `Recorder` does the capturing: `CudaRecorder` (torch.cuda.CUDAGraph), or `EagerRecorder`, which
re-runs the function at every replay: the same buffers and control flow without CUDA, for tests.
"""
from __future__ import annotations

import weakref
from typing import Callable, Iterator, Protocol

import torch
from torch import Tensor


class Model(Protocol):
    """What a capture needs of a compiled model (`pcc.runtime.module.CompiledCircuit`)."""

    backend: str
    root_k: int
    graph_safe: bool

    def parameters(self) -> Iterator[Tensor]: ...
    def prepare_input(self, x: Tensor, marginalize: Tensor | None = None) -> Tensor: ...
    def weights_changed(self) -> None: ...
    # the forward on fresh arenas: the naive evaluator's, or the plan's program
    def leaf_values(self, x: Tensor) -> object: ...
    def evaluate(self, leaves: object) -> Tensor: ...
    def leaf_inputs(self, x: Tensor) -> object: ...
    def log_weight_pools(self) -> object: ...
    def program(self, device: torch.device) -> object: ...


class Stepper(Protocol):
    """What a captured EM step needs of EM (`pcc.em.EM`): its E-step, its update (blend and
    M-step) and the statistics it holds."""

    model: Model
    started: bool
    rows: int

    def estep(self, x: Tensor) -> Tensor: ...
    def update(self) -> None: ...
    def discard(self) -> None: ...


class Recorder(Protocol):
    def capture(self, fn: Callable[[], object], warmup: Callable[[], object]) -> None:
        """Run `warmup` as needed, then record `fn` (without running its effects)."""

    def replay(self) -> object:
        """Run what was recorded; return its outputs (the same static tensors every time)."""


class CudaRecorder:
    """torch.cuda.CUDAGraph capture after `warmups` warm-up runs on a side stream."""

    def __init__(self, warmups: int = 2):
        self.warmups = warmups
        self.graph: torch.cuda.CUDAGraph | None = None
        self.outputs = None

    def capture(self, fn, warmup) -> None:
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(self.warmups):
                warmup()
        torch.cuda.current_stream().wait_stream(stream)
        torch.cuda.synchronize()
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.outputs = fn()

    def replay(self):
        self.graph.replay()
        return self.outputs


class EagerRecorder:
    """Runs the function at every replay (and nothing at capture but the warm-up): the graph's
    contract without the graph, for testing buffers and control flow on any device."""

    def __init__(self):
        self.fn: Callable[[], object] | None = None
        self.replays = 0

    def capture(self, fn, warmup) -> None:
        warmup()
        self.fn = fn

    def replay(self):
        self.replays += 1
        return self.fn()


def graphs_available(device: torch.device) -> bool:
    """Whether CUDA graphs can run on `device`."""
    return device.type == "cuda" and torch.cuda.is_available()


def default_recorder(device: torch.device) -> Recorder | None:
    return CudaRecorder() if graphs_available(device) else None


class StaticInput:
    """A fixed-shape input buffer that captured functions read."""

    def __init__(self, like: Tensor):
        self.buffer = torch.empty_like(like)

    def load(self, x: Tensor) -> Tensor:
        return self.buffer.copy_(x)


class CapturedForward:
    """model(x) for one batch size, replayed from a CUDA graph (see the module doc). Calls with
    another batch size, or where graphs cannot run, evaluate eagerly. The result is a fresh
    tensor (a copy of the graph's output)."""

    def __init__(self, model: Model, batch_size: int,
                 recorder: Recorder | None = None):
        self.model, self.batch_size = model, batch_size
        self.recorder = recorder if recorder is not None else default_recorder(_device(model))
        self.static: StaticInput | None = None

    def _run(self, x: Tensor) -> Tensor:
        """The forward on fresh arenas (a captured graph must not write the model's reusable
        inference arenas, which a later batch size replaces)."""
        m = self.model
        with torch.no_grad():
            if m.backend == "naive":
                out = m.evaluate(m.leaf_values(x))
            else:
                out = m.program(x.device).evaluate(m.leaf_inputs(x), m.log_weight_pools()).root
        return out.squeeze(-1) if m.root_k == 1 else out

    def __call__(self, x: Tensor, marginalize: Tensor | None = None) -> Tensor:
        x = self.model.prepare_input(x, marginalize)
        if self.recorder is None or x.shape[0] != self.batch_size or not self.model.graph_safe:
            return self._run(x)
        if self.static is None:
            self.static = StaticInput(x)
            self.static.load(x)
            self.recorder.capture(lambda: self._run(self.static.buffer),
                                  lambda: self._run(self.static.buffer))
        else:
            self.static.load(x)
        return self.recorder.replay().clone()


class EMGraph:
    """EM.step for the first batch shape seen, replayed from a CUDA graph (see the module doc).
    `step` returns the batch's mean log-likelihood, or None when the step must run eagerly."""

    def __init__(self, em: Stepper, recorder: Recorder | None = None):
        self._em = weakref.ref(em)  # no reference cycle: the graph's memory goes with the EM
        self.recorder = recorder if recorder is not None else default_recorder(_device(em.model))
        self.shape: tuple | None = None  # the captured batch shape (the first one seen)
        self.static: StaticInput | None = None

    @property
    def em(self) -> Stepper:
        return self._em()

    @property
    def active(self) -> bool:
        """Whether a graph is captured and replayed."""
        return self.static is not None

    def step(self, x: Tensor, marginalize: Tensor | None, target: Tensor | None) -> float | None:
        if self.recorder is None or marginalize is not None or target is not None \
                or not self.em.model.graph_safe:
            return None
        x = self.em.model.prepare_input(x)
        if self.shape is None:
            self.shape = tuple(x.shape)
        if tuple(x.shape) != self.shape or not self.em.started or self.em.rows:
            return None  # another shape, the first update, or statistics pending: eager
        if self.static is None:
            self.static = StaticInput(x)
            self.static.load(x)
            self.recorder.capture(self._captured, self._warmup)
        else:
            self.static.load(x)
        ll = float(self.recorder.replay())
        self.em.model.weights_changed()  # the replayed M-step wrote the logits unseen
        return ll

    def _captured(self) -> Tensor:
        """E-step, blend and M-step on the static batch: the mean log-likelihood [] (static)."""
        ll = self.em.estep(self.static.buffer)
        self.em.update()
        return ll.mean()

    def _warmup(self) -> None:
        """The E-step alone (the parameters do not move), then its statistics dropped."""
        self.em.estep(self.static.buffer)
        self.em.discard()


def _device(model) -> torch.device:
    return next(model.parameters()).device
