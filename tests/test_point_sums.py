"""Point sums: a sum whose one child is an input over one discrete variable is evaluated as a
table over that variable's values (`pcc_kernels.reference.PointSumLayer`), its flows and the
leaf's expected counts summed by value. Checked against the naive node-by-node evaluator in
float64: values in both semirings, EM statistics, with missing values, Bernoulli and categorical
leaves, and inputs shared by point sums and element-wise products."""
import itertools
import math

import pytest
import torch

import pcc
from pcc.em import EM
from pcc.passes import EinsumOp

CIRCUIT = """pc 1
vars 4
leaf bernoulli
input a {x0} k=3
input b {x1} k=3
input c {x2} k=3 categorical(n=4)
input d {x3} k=2
sum sa k=2 = a
sum sb k=2 = b
sum sc k=3 = c
sum sd k=2 = d
sum bc k=3 = b .* sc
sum abc k=2 = sa * bc | sa * sb * sc
sum top k=1 = abc * sd
root top
"""


def models(text: str = CIRCUIT):
    """The circuit folded (the torch backend) and node by node, same random parameters."""
    gen = torch.Generator().manual_seed(0)
    folded = pcc.compile(text).double()
    with torch.no_grad():
        for p in folded.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64))
    naive = pcc.compile(text, backend="naive").double()
    naive.load_state_dict(folded.state_dict())
    return folded, naive


def data(n: int = 40) -> torch.Tensor:
    gen = torch.Generator().manual_seed(1)
    x = torch.stack([torch.randint(0, 2, (n,), generator=gen), torch.randint(0, 2, (n,), generator=gen),
                     torch.randint(0, 4, (n,), generator=gen), torch.randint(0, 2, (n,), generator=gen)],
                    1).double()
    x[torch.rand(x.shape, generator=gen) < 0.25] = math.nan
    return x


def test_the_plan_folds_sums_over_point_inputs():
    folded, _ = models()
    points = [op for op in folded.plan.ops if isinstance(op, EinsumOp) and op.points is not None]
    assert sum(len(op.members) for op in points) == 4  # sa, sb, sc, sd; not bc (element-wise)
    program = folded.program(torch.device("cpu"))
    bound = program.bind(5, torch.zeros(1, dtype=torch.float64), backward=False)
    assert any(type(layer).__name__ == "PointSumLayer" for layer in bound.layers)


def unfolded_upward(model, x, semiring):
    """Every node's log-values with the point sums evaluated sample by sample (as under
    autograd): the leaves' values, then the same layers, folding off."""
    program = model.program(x.device)
    blocks = model.leaf_blocks(model.leaf_values(model.prepare_input(x), semiring))
    evaluation = program.evaluate(blocks, model.log_weight_pools(), semiring,
                                  program.bind(x.shape[0], x, points=False))
    return program.log_arenas(evaluation)


@pytest.mark.parametrize("semiring", ["sum", "max"])
def test_every_value_equals_the_unfolded_layers(semiring):
    assert_equals_the_unfolded_layers(*models(), data(), semiring)


def assert_equals_the_unfolded_layers(folded, naive, x, semiring):
    """Every node's log-values of `folded` on x equal those of its layers run without point
    sums (and, for the sum semiring, its root the naive evaluator's), to 1e-12."""
    with torch.no_grad():
        got, want = folded.upward(x, semiring), unfolded_upward(folded, x, semiring)
        for k in want:
            assert torch.equal(torch.isinf(got[k]), torch.isinf(want[k]))
            finite = torch.isfinite(want[k])
            assert torch.allclose(got[k][finite], want[k][finite], atol=1e-12), k
        if semiring == "sum":
            assert torch.allclose(folded(x), naive(x), atol=1e-12)


def test_mpe_completes_with_a_state_at_least_as_probable_as_its_tree():
    folded, _ = models()
    x = torch.tensor([[1.0, math.nan, math.nan, 0.0], [math.nan, 0.0, 3.0, math.nan]],
                     dtype=torch.float64)
    states, logp = folded.mpe(x)
    with torch.no_grad():
        root_k, root_row = folded.plan.region_row[folded.plan.root]
        tree = unfolded_upward(folded, x, "max")[root_k][root_row, :, 0]
        assert torch.allclose(logp, folded(states), atol=1e-12)
        assert (logp >= tree - 1e-12).all()


def test_em_statistics_equal_the_naive_evaluator():
    assert_same_em_statistics(*models(), data())


def assert_same_em_statistics(folded, naive, x):
    """EM's accumulated statistics of both models on x agree to 1e-10."""
    ems = EM(folded), EM(naive)
    for em in ems:
        em.accumulate(x)
    for got, want in zip(ems[0]._sum_counts + ems[0]._mix_counts,
                         ems[1]._sum_counts + ems[1]._mix_counts):
        assert torch.allclose(got, want, atol=1e-10)
    for got, want in zip(ems[0]._leaf_stats, ems[1]._leaf_stats):
        for key in want:
            assert torch.allclose(got[key], want[key], atol=1e-10), key


def test_the_folded_circuit_is_normalized():
    folded, _ = models()
    states = torch.tensor(list(itertools.product((0, 1), (0, 1), range(4), (0, 1))),
                          dtype=torch.float64)
    with torch.no_grad():
        assert abs(torch.logsumexp(folded(states), 0).item()) < 1e-12
