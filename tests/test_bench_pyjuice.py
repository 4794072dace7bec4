"""bench/pyjuice_vs.py's conversion of PyJuice node graphs into pcc circuits, on the CPU with
stand-in nodes (PyJuice itself needs CUDA): the converted circuit, with the copied parameters,
computes the graph's log-likelihoods exactly (float64) for the HCLT layout and for sums over
several element-wise products whose weights have zero blocks (PyJuice's block sparsity)."""
import importlib.util
import os
import sys

import torch

import pcc

SPEC = importlib.util.spec_from_file_location(
    "pyjuice_vs", os.path.join(os.path.dirname(__file__), "..", "bench", "pyjuice_vs.py"))
pyjuice_vs = sys.modules.setdefault("pyjuice_vs", importlib.util.module_from_spec(SPEC))
SPEC.loader.exec_module(pyjuice_vs)
Node = pyjuice_vs.FakeNode


def converted_ll(root, x, num_vars):
    circuit, values = pyjuice_vs.to_pcc(root, num_vars)
    model = pcc.compile(circuit, backend="torch", dtype=torch.float64)
    pyjuice_vs.load_params(model, values)
    with torch.no_grad():
        return model(x.double())


def test_hclt_layout_converts_exactly():
    assert pyjuice_vs.smoke() == 0


def test_mixed_partitions_with_zero_blocks_convert_exactly():
    gen = torch.Generator().manual_seed(0)
    k = 4

    def leaf(v):
        p1 = torch.rand(k, generator=gen, dtype=torch.float64) * 0.8 + 0.1
        return Node("input", num_nodes=k, scope=[v], params=torch.stack([1 - p1, p1], 1).reshape(-1))
    a, b, c = leaf(0), leaf(1), leaf(2)
    inner = Node("sum", [Node("prod", [a, b], num_nodes=k)], num_nodes=k,
                 params=torch.softmax(torch.randn(k, k, generator=gen, dtype=torch.float64), 1))
    prods = [Node("prod", [inner, c], num_nodes=k), Node("prod", [a, b, leaf(2)], num_nodes=k)]
    v = torch.rand(k, 2 * k, generator=gen, dtype=torch.float64)
    v[:2, k:] = 0.0  # units 0 and 1 do not connect to the second product (a zero block)
    top = Node("sum", prods, num_nodes=1, params=(v[:1] / v[:1].sum()))
    mid = Node("sum", prods, num_nodes=k, params=v / v.sum(1, keepdim=True))
    root = Node("sum", [Node("prod", [mid], num_nodes=k)], num_nodes=1,
                params=torch.full((1, k), 1.0 / k, dtype=torch.float64))
    x = torch.randint(0, 2, (32, 3), generator=gen)
    for graph in (top, root):
        ours = converted_ll(graph, x, 3)
        assert torch.allclose(ours, graph.log_likelihood(x), atol=1e-12)
