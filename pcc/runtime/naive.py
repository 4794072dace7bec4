"""The naive backend: the same circuit and parameters, evaluated node by node.

One op per node: each product node adds its children's log-values (an outer product has one node
per combination of child units, an element-wise product one per unit), each sum node takes a
log-sum-exp of its weighted children, each mixing unit a log-sum-exp over its partitions. It is
slow on purpose and obviously right: the reference in tests and the baseline in benchmarks.
"""
from __future__ import annotations

import itertools

import torch
from torch import Tensor

from ..ir import Input


def naive_evaluate(model, leaf_values: list[Tensor]) -> Tensor:
    """Root values [B, K_root] of `model` (a CompiledCircuit) from its leaf group values."""
    part, mix, leaf = model._locate()
    sums = [model.log_weight("sum", i) for i in range(len(model.sum_logits))]
    mixes = [model.log_weight("mix", i) for i in range(len(model.mix_logits))]
    values: dict[str, list[Tensor]] = {}
    circuit = model.circuit
    for name in circuit.topological_order():
        region = circuit.region(name)
        if isinstance(region, Input):  # the product of its parts (one unless mixed)
            values[name] = list(sum(leaf_values[group][member] for group, member in leaf[name])
                                .unbind(-1))
            continue
        part_values = []
        for p, children in enumerate(region.partitions):
            if region.is_elementwise(p):
                products = [sum(values[c][i] for c in children)
                            for i in range(len(values[children[0]]))]
            else:
                products = [sum(values[c][i] for c, i in zip(children, combo))
                            for combo in itertools.product(*(range(len(values[c]))
                                                             for c in children))]
            if (name, p) not in part:  # one product: the weight is the constant 1
                part_values.append([products[0]] * region.k)
                continue
            i, m = part[(name, p)]
            w = sums[i][m]  # [K, width]
            stacked = torch.stack(products)
            part_values.append([torch.logsumexp(stacked + w[o].unsqueeze(-1), 0)
                                for o in range(region.k)])
        if len(part_values) == 1:
            values[name] = part_values[0]
        else:
            i, m = mix[name]
            w = mixes[i][m]  # [P, K]
            values[name] = [torch.logsumexp(torch.stack([pv[o] for pv in part_values])
                                            + w[: len(part_values), o].unsqueeze(-1), 0)
                            for o in range(region.k)]
    return torch.stack(values[circuit.root], -1)
