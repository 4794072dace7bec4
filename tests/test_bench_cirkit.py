"""bench/cirkit_vs.py without cirkit (an optional benchmark extra): a missing cirkit is one line
and exit 1; pcc's side of a cirkit region graph is the circuit cirkit builds for each sum-product
layer (cp: element-wise products and a sum over every input; cp-t: element-wise products;
tucker: Kronecker products); the bmm floor does exactly the plan's sum multiply-adds."""
import importlib.util
import json
import math
import os
import subprocess
import sys

import pytest

import pcc
from pcc.ir import Family, Input

ROOT = os.path.join(os.path.dirname(__file__), "..")
SPEC = importlib.util.spec_from_file_location(
    "cirkit_vs", os.path.join(ROOT, "bench", "cirkit_vs.py"))
cirkit_vs = sys.modules.setdefault("cirkit_vs", importlib.util.module_from_spec(SPEC))
SPEC.loader.exec_module(cirkit_vs)

# A region graph as cirkit's RegionGraph.dump writes it: 5 variables, a binary tree, leaves of
# one and two variables.
REGION_GRAPH = {
    "regions": {"0": {"scope": [0, 1, 2, 3, 4]}, "1": {"scope": [0, 3]}, "2": {"scope": [1, 2, 4]},
                "3": {"scope": [0, 3]}, "4": {"scope": [1]}, "5": {"scope": [2, 4]}},
    "roots": ["0"],
    "graph": [{"output": 0, "inputs": [1, 2]}, {"output": 2, "inputs": [4, 5]},
              {"output": 1, "inputs": [3]}],
}


@pytest.fixture
def region_graph(tmp_path):
    path = tmp_path / "rg.json"
    path.write_text(json.dumps(REGION_GRAPH))
    return str(path)


def test_without_cirkit_one_line_and_exit_1():
    if importlib.util.find_spec("cirkit") is not None:
        pytest.skip("cirkit is installed here")
    env = dict(os.environ, PYTHONPATH=os.path.abspath(ROOT))
    out = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "cirkit_vs.py"), "--cases",
                          "pd"], capture_output=True, text=True, env=env)
    assert out.returncode == 1
    assert out.stderr.count("\n") == 1 and "cirkit is not installed" in out.stderr


@pytest.mark.parametrize("sum_product", ["cp", "cp-t", "tucker"])
def test_region_graph_as_cirkit_builds_it(region_graph, sum_product):
    circuit = cirkit_vs.from_region_graph(region_graph, 3, sum_product, Family("bernoulli"))
    sums = {r.name: r for r in circuit.sums}
    inputs = [r for r in circuit.regions if isinstance(r, Input)]
    assert sorted(tuple(r.scope) for r in inputs) == [(0, 3), (1,), (2, 4)]
    products = [(r, p) for r in sums.values() for p, part in enumerate(r.partitions)
                if len(part) > 1]
    assert len(products) == 2
    assert all(r.is_elementwise(p) == (sum_product != "tucker") for r, p in products)
    over_inputs = [r for r in sums.values() if len(r.partitions) == 1
                   and len(r.partitions[0]) == 1 and r.partitions[0][0] in {i.name for i in inputs}]
    assert len(over_inputs) == (3 if sum_product == "cp" else 1)  # region 1 = region 3 in every one
    model = pcc.compile(circuit, backend="torch")
    x = cirkit_vs.torch.randint(0, 2, (7, 5)).float()
    assert model(x).shape == (7,)


def test_floor_does_the_plans_sum_multiply_adds(region_graph):
    for sum_product in ("cp", "tucker"):
        circuit = cirkit_vs.from_region_graph(region_graph, 4, sum_product, Family("bernoulli"))
        model = pcc.compile(circuit, backend="torch")
        k = {r.name: r.k for r in circuit.regions}
        per_row = sum(r.k * (k[part[0]] if r.is_elementwise(p) else math.prod(k[c] for c in part))
                      for r in circuit.sums for p, part in enumerate(r.partitions))
        floor = cirkit_vs.BmmFloor(model.plan, 6)
        assert floor.macs == 6 * per_row
        floor.train()
