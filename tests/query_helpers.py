"""Brute force for the query tests: exact joint tables of small discrete circuits, state indices,
a pooled chi-square test of samples against a table, and small selective circuits."""
from __future__ import annotations

import random

import numpy as np
import torch
from scipy import stats

from pcc.ir import Circuit, Family, Input, Param, Sum, default_var_names
from random_circuits import SUPPORT
from test_runtime_exact import all_states, compiled, families_of  # noqa: F401 (re-exported)


def support_sizes(circuit) -> list[int]:
    fams = families_of(circuit)
    return [SUPPORT[fams[v]] for v in range(circuit.num_vars)]


def state_index(x: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """Row-major index of each complete state [N, V] among all states (as `all_states` orders)."""
    index = torch.zeros(x.shape[0], dtype=torch.long)
    for v, size in enumerate(sizes):
        index = index * size + x[:, v].long()
    return index


def chi_square_p(samples: torch.Tensor, probs: torch.Tensor, sizes: list[int]) -> float:
    """p-value of samples [N, V] against the table `probs` [S] (cells with expected count < 5 are
    pooled into one). Asserts that no state of probability 0 was drawn."""
    counts = torch.bincount(state_index(samples, sizes), minlength=len(probs)).double()
    assert counts[probs == 0].sum() == 0, "a state of probability 0 was sampled"
    expected = probs.detach().double() * len(samples)
    small = expected < 5
    observed = torch.cat([counts[~small], counts[small].sum().view(1)])
    expected = torch.cat([expected[~small], expected[small].sum().view(1)])
    keep = expected > 0
    return float(stats.chisquare(observed[keep].numpy(), expected[keep].numpy()).pvalue)


def selective_circuit(seed: int, num_vars: int = 5, max_k: int = 3) -> Circuit:
    """A random tree circuit, selective except perhaps at a root with two partitions (check with
    `is_selective`). Input units are point masses at distinct states (Bernoulli p in {0, 1}), so
    the units of a region have disjoint supports; every sum unit gives positive weight only to
    its own set of child-unit tuples, disjoint from the other units' sets, which keeps the units
    of every region disjoint and every sum deterministic. The root may mix two partitions."""
    rng = random.Random(seed)
    regions: list = []
    params: list[Param] = []

    def build(scope: list[int], is_root: bool) -> tuple[str, int]:
        if len(scope) <= 2 and not is_root:
            name = f"r{len(regions)}"
            states = [tuple(rng.randint(0, 1) for _ in scope) for _ in range(2 ** len(scope))]
            states = list(dict.fromkeys(states))[: rng.randint(1, max_k)]
            regions.append(Input(name, tuple(scope), len(states), Family("bernoulli")))
            params.append(Param(name, "p", None, (len(states), len(scope)),
                                tuple(float(b) for s in states for b in s)))
            return name, len(states)
        num_parts = rng.randint(1, 2) if is_root else 1
        parts, part_ks = [], []
        for _ in range(num_parts):
            items = scope[:]
            rng.shuffle(items)
            cut = rng.randint(1, len(items) - 1)
            children = [build(sorted(items[:cut]), False), build(sorted(items[cut:]), False)]
            parts.append(tuple(c for c, _ in children))
            part_ks.append([k for _, k in children])
        name = f"r{len(regions)}"
        k = 1 if is_root else rng.randint(1, min(max_k, *(int(np.prod(ks)) for ks in part_ks)))
        for p, ks in enumerate(part_ks):
            width = int(np.prod(ks))
            owner = list(range(k)) + [rng.randrange(k + 1) for _ in range(width - k)]
            rng.shuffle(owner)  # tuple c belongs to unit owner[c]; unit k: to nobody
            w = np.zeros((k, width))
            for c, o in enumerate(owner):
                if o < k:
                    w[o, c] = rng.uniform(0.1, 1.0)
            w /= w.sum(1, keepdims=True)
            params.append(Param(name, "weights", p, (k, *ks), tuple(w.reshape(-1))))
        regions.append(Sum(name, k, tuple(parts)))
        if num_parts > 1:
            mix = np.array([[rng.uniform(0.1, 1.0) for _ in range(num_parts)]])
            params.append(Param(name, "mixing", None, (1, num_parts),
                                tuple((mix / mix.sum()).reshape(-1))))
        return name, k

    root, _ = build(list(range(num_vars)), True)
    return Circuit(default_var_names(num_vars), tuple(regions), root, Family("bernoulli"),
                   tuple(params))


@torch.no_grad()
def is_selective(model, states: torch.Tensor) -> bool:
    """Brute force: at every complete state, every sum unit has at most one child (a tuple of
    child units with positive weight, or a partition with positive mixing weight) that is > 0."""
    from pcc.runtime.engine import LoweredMix
    arenas = model.upward(states, "sum")
    log_w = model.log_weights()
    for op in model.program(states.device).ops:
        if isinstance(op, LoweredMix):
            values = arenas[op.k][op.part_rows]  # [N, P, B, K]
            live = (values > -torch.inf) & (log_w[op.weight] > -torch.inf).unsqueeze(2)
            if (live.sum(1) > 1).any():
                return False
        elif op.weight is not None:
            children = []
            for k, rows in zip(op.child_k, op.child_rows):
                block = arenas[k][rows: rows + op.n] if isinstance(rows, int) else arenas[k][rows]
                children.append(block > -torch.inf)  # [N, B, K_j]
            live = children[0]
            for c in children[1:]:
                live = (live.unsqueeze(-1) & c.unsqueeze(-2)).flatten(-2)  # [N, B, width]
            positive = log_w[op.weight] > -torch.inf  # [N, K_out, width]
            if ((live.unsqueeze(2) & positive.unsqueeze(1)).sum(-1) > 1).any():
                return False
    return True
