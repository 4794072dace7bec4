"""Node-level circuits through the compiler: K = 1 regions with many partitions group into few
fused ops, the compiled module equals the naive one, and indicator leaves give log 0 = -inf
exactly without NaN, forward and backward."""
import math
import sys
from pathlib import Path

import torch

from interchange_helpers import all_states, compiled, example_text, import_text
from pcc.compiler import plan
from pcc.em import EM
from pcc.passes import EinsumOp, MixOp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from node_level import psdd_text  # noqa: E402


def test_random_psdd_groups_into_few_fused_ops_and_equals_naive():
    circuit = import_text(psdd_text(3000, 24, seed=1), "psdd")
    p = plan(circuit)
    sums = len(circuit.sums)
    mixes = [op for op in p.ops if isinstance(op, MixOp)]
    products = [op for op in p.ops if isinstance(op, EinsumOp)]
    assert sums > 500 and len(p.ops) < sums / 10
    assert all(not op.has_weights and op.child_k == (1, 1) for op in products)
    assert len(products) <= p.depth  # every element is a product of two: one op per layer
    widths = {op.part_rows.shape[1] for op in mixes}
    assert widths <= {2, 3, 4} | {1 << i for i in range(3, 10)}
    x = torch.randint(0, 2, (16, circuit.num_vars)).double()
    x[torch.rand(x.shape) < 0.2] = math.nan
    with torch.no_grad():
        fast, naive = compiled(circuit)(x), compiled(circuit, "naive")(x)
    assert torch.allclose(fast, naive, atol=1e-10)


IMPOSSIBLE = """psdd 8
L 0 0 1
T 1 0 2 -0.5108256237659907
T 2 0 2 -1.6094379124341003
D 3 1 2 0 1 -0.6931471805599453 0 2 -0.6931471805599453
D 4 1 1 0 2 0
T 5 0 3 -0.35667494393873245
T 6 0 3 -0.916290731874155
D 7 2 2 3 5 -1.2039728043259361 4 6 -0.35667494393873245
"""


def test_indicators_give_exact_minus_inf_and_finite_gradients():
    """Every product needs v1 = 1 (literal node 0): with v1 = 0 all partitions of the sums 3 and 7
    are log 0, and their values are -inf exactly, not NaN. Gradients of the finite
    log-likelihoods, computed in the same batch, are finite."""
    circuit = import_text(IMPOSSIBLE, "psdd")
    model = compiled(circuit)
    states = all_states([2, 2, 2])
    out = model(states)
    assert torch.equal(torch.isinf(out), states[:, 0] == 0)
    assert not torch.isnan(out).any()
    impossible = torch.isinf(out)
    assert impossible.any() and (out[impossible] == -math.inf).all()
    out[~impossible].sum().backward()
    for param in model.parameters():
        assert param.grad is None or torch.isfinite(param.grad).all()


def test_em_floors_indicator_leaves_and_stays_finite():
    """EM treats an indicator as a Bernoulli leaf: after an update it is floored to
    [min_prob, 1 - min_prob] (documented), and nothing becomes NaN."""
    circuit = import_text(example_text("little.psdd"), "psdd")
    model = compiled(circuit)
    em = EM(model, step_size=1.0, min_prob=1e-6)
    data = all_states([2, 2, 2])
    with torch.no_grad():
        keep = torch.isfinite(model(data))
    em.step(data[keep])
    p = torch.sigmoid(model.leaf_params[0].logit)
    assert torch.isfinite(p).all() and (p >= 1e-6 - 1e-12).all() and (p <= 1 - 1e-6 + 1e-12).all()
    with torch.no_grad():
        assert not torch.isnan(model(data)).any()


def test_root_leaf_and_root_product():
    one_leaf = import_text("psdd 1\nT 0 0 1 -0.35667494393873245\n", "psdd")
    assert one_leaf.root == one_leaf.inputs[0].name
    with torch.no_grad():
        got = compiled(one_leaf)(all_states([2])).exp()
    assert torch.allclose(got, torch.tensor([0.3, 0.7], dtype=torch.float64))
    product = import_text("(2 2)\nv 0 1\nv 1 0\n* 0 1\nEOF\n", "spn")
    with torch.no_grad():
        got = compiled(product)(all_states([2, 2])).exp()
    assert torch.equal(got, torch.tensor([0.0, 0.0, 1.0, 0.0], dtype=torch.float64))
