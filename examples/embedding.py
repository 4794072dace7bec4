"""A compiled circuit as a layer of a larger torch model, trained end to end with Adam.

    x [B, 64] pixels --MLP--> z [B, F] features --circuit--> log p(z | y) [B, 10] (+ log p(y))

The circuit is a RAT-SPN over the F features with Normal leaves whose root has one unit per
class, so its output is a class-conditional density; `log p(z | y) + log p(y)` are the logits of
the classifier (argmax = the class of highest posterior). Cross-entropy trains the MLP, the
circuit's weights and leaves, and the class prior together: gradients flow through the circuit
into its input. Runs on scikit-learn's 8x8 digits (pip install 'pcc[images]'):

    python examples/embedding.py [--epochs 60] [--compile]

--compile wraps the model in torch.compile (first compile takes tens of seconds on a CPU).
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import Tensor, nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

import pcc  # noqa: E402
from pcc.ir import Circuit, Family  # noqa: E402
from pcc.structures import random_binary_trees  # noqa: E402


def with_root_units(circuit: Circuit, k: int) -> Circuit:
    """The same circuit with K = k units at its root (one density per class)."""
    regions = tuple(dataclasses.replace(r, k=k) if r.name == circuit.root else r
                    for r in circuit.regions)
    return dataclasses.replace(circuit, regions=regions)


class CircuitClassifier(nn.Module):
    """MLP features, then a class-conditional circuit density head; forward gives class logits."""

    def __init__(self, num_inputs: int, num_classes: int, num_features: int = 16, k: int = 8,
                 seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.features = nn.Sequential(nn.Linear(num_inputs, 64), nn.ReLU(),
                                      nn.Linear(64, num_features))
        circuit = random_binary_trees(num_features, 3, 4, k=k, leaf=Family("normal"), seed=seed)
        self.density = pcc.compile(with_root_units(circuit, num_classes), backend="torch",
                                   seed=seed)
        self.log_prior = nn.Parameter(torch.zeros(num_classes))

    def forward(self, x: Tensor) -> Tensor:
        """log p(z, y) for every class y: [B, num_classes] (softmax = the posterior p(y | x))."""
        return self.density(self.features(x)) + torch.log_softmax(self.log_prior, 0)


def train(model: nn.Module, x: Tensor, y: Tensor, epochs: int, batch_size: int = 64,
          lr: float = 3e-3, seed: int = 0) -> list[float]:
    """Adam on the cross-entropy; returns the mean loss of every epoch."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    losses = []
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=g)
        total = 0.0
        for start in range(0, len(x), batch_size):
            batch = order[start: start + batch_size]
            loss = F.cross_entropy(model(x[batch]), y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(batch)
        losses.append(total / len(x))
    return losses


@torch.no_grad()
def accuracy(model: nn.Module, x: Tensor, y: Tensor) -> float:
    return (model(x).argmax(1) == y).float().mean().item()


def digits(seed: int = 0) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """scikit-learn's digits scaled to [0, 1], split 1497 train / 300 test."""
    from sklearn.datasets import load_digits
    data = load_digits()
    order = np.random.default_rng(seed).permutation(len(data.target))
    x = torch.tensor(data.data[order] / 16.0, dtype=torch.float32)
    y = torch.tensor(data.target[order], dtype=torch.long)
    return x[300:], y[300:], x[:300], y[:300]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--compile", action="store_true", help="train a torch.compile'd model")
    args = parser.parse_args()
    torch.set_num_threads(1)
    x_train, y_train, x_test, y_test = digits()
    model = CircuitClassifier(x_train.shape[1], 10)
    runner = torch.compile(model) if args.compile else model
    start = time.perf_counter()
    losses = train(runner, x_train, y_train, args.epochs)
    seconds = time.perf_counter() - start
    print(f"{args.epochs} epochs in {seconds:.1f} s; cross-entropy {losses[0]:.3f} -> "
          f"{losses[-1]:.3f}")
    print(f"accuracy: train {accuracy(model, x_train, y_train):.4f}, "
          f"test {accuracy(model, x_test, y_test):.4f} ({len(y_test)} digits)")


if __name__ == "__main__":
    main()
