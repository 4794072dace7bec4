"""A compiled circuit inside a larger torch model (examples/embedding.py): trained end to end with
Adam it classifies, gradients reach the layers before it, and torch.compile gives the same loss
and gradients (checked with the aot_eager backend: dynamo and AOTAutograd, without inductor's
C++ build, which takes ~30 s on a CPU; examples/embedding.py --compile runs inductor)."""
import os
import sys

import torch
from torch.nn import functional as F

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "examples"))
from embedding import CircuitClassifier, accuracy, train  # noqa: E402


def blobs(n_per_class: int = 80, classes: int = 3, dim: int = 12, seed: int = 0):
    """Gaussian blobs: class c is N(mu_c, I) with well separated random means."""
    g = torch.Generator().manual_seed(seed)
    means = 3 * torch.randn(classes, dim, generator=g)
    y = torch.arange(classes).repeat_interleave(n_per_class)
    x = means[y] + torch.randn(len(y), dim, generator=g)
    return x, y


def test_trained_end_to_end_it_classifies():
    x, y = blobs()
    model = CircuitClassifier(x.shape[1], 3, num_features=6, k=4)
    before = [p.detach().clone() for p in model.features.parameters()]
    losses = train(model, x, y, epochs=30)
    assert losses[-1] < 0.4 * losses[0]
    assert accuracy(model, x, y) > 0.95
    after = list(model.features.parameters())
    assert all(not torch.equal(a, b) for a, b in zip(before, after))  # the MLP was trained
    assert model(x[:5]).shape == (5, 3)


def test_torch_compile_gives_the_same_loss_and_gradients():
    x, y = blobs(n_per_class=10)
    model = CircuitClassifier(x.shape[1], 3, num_features=6, k=4)
    results = []
    for runner in (model, torch.compile(model, backend="aot_eager")):
        model.zero_grad()
        loss = F.cross_entropy(runner(x), y)
        loss.backward()
        results.append([loss.detach()] + [p.grad.clone() for p in model.parameters()])
    for eager, compiled in zip(*results):
        assert torch.allclose(eager, compiled, atol=1e-5)
