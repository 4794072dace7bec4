"""The backward pass writes a row's first flows over it and adds the rest, zeroing only rows no
layer writes first (`pcc.passes.flow_writes`): on random circuits (shared children, mixing,
element-wise products, point sums), the flows of batch after batch on one binding equal the
naive evaluator's, so nothing of an earlier batch is left in the flow arenas."""
import pytest
import torch

from pcc.compiler import plan
from pcc.em import EM
from pcc.passes.flow_writes import flow_writes
from pcc.runtime.module import CompiledCircuit
from random_circuits import random_circuit


def sample_data(seed, n, num_vars):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 2, (n, num_vars), generator=gen).double()
    x[torch.rand(x.shape, generator=gen) < 0.2] = float("nan")
    return x


def compiled(circuit, backend):
    return CompiledCircuit(circuit, plan(circuit), backend=backend, seed=1).double()


@pytest.mark.parametrize("seed", range(6))
def test_flows_of_successive_batches_equal_the_naive_evaluator(seed):
    c = random_circuit(900 + seed, num_vars=6, families=("bernoulli", "categorical"))
    fast, naive = compiled(c, "torch"), compiled(c, "naive")
    writes = flow_writes(fast.plan)
    assert any(f is not None for f in writes.overwrite.values())
    x = sample_data(seed, 90, 6)
    for start in range(0, 90, 30):  # one binding (same batch size), three batches
        ems = EM(fast), EM(naive)
        for em in ems:
            em.accumulate(x[start: start + 30])
        for got, want in zip(ems[0]._sum_counts + ems[0]._mix_counts,
                             ems[1]._sum_counts + ems[1]._mix_counts):
            assert torch.allclose(got, want, atol=1e-10)
        for got, want in zip(ems[0]._leaf_stats, ems[1]._leaf_stats):
            for key in want:
                assert torch.allclose(got[key], want[key], atol=1e-10)
