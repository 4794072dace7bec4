"""The compiled module behaves like a torch module: shapes, errors, devices, state_dict,
gradients to continuous inputs, use inside nn.Sequential, integer data with a marginalize mask."""
import math

import pytest
import torch

import pcc
from pcc.errors import DataError, ShapeError
from random_circuits import random_circuit

PD2X2 = "ir_examples/pd2x2.pc"


@pytest.fixture
def model():
    return pcc.compile(random_circuit(3, num_vars=4, families=("bernoulli",)), backend="torch")


def test_output_shape_and_dtype(model):
    out = model(torch.zeros(5, 4))
    assert out.shape == (5,) and out.dtype == torch.float32
    assert torch.equal(model.log_prob(torch.zeros(5, 4)), out)


def test_wrong_shape_names_both_shapes(model):
    with pytest.raises(ShapeError, match=r"\[B, 4\].*\[5, 3\]"):
        model(torch.zeros(5, 3))


def test_out_of_support_names_row_and_column(model):
    x = torch.zeros(3, 4)
    x[2, 1] = 2
    with pytest.raises(DataError, match=r"^row 3, column 2: .*'x1'"):  # counted from 1
        model(x)


@pytest.mark.parametrize("source", ["ir_examples/rat16.pc", "ir_examples/categorical_named.pc",
                                    "ir_examples/gmm.pc", "ir_examples/mixture2.pc"])
@pytest.mark.parametrize("backend", ["torch", "naive"])
def test_an_empty_batch_gives_an_empty_result(source, backend):
    from pcc.queries import conditional, marginal, mpe
    model = pcc.compile(source, backend=backend)
    x = torch.zeros(0, model.num_vars, requires_grad=True)
    out = model(x)
    assert out.shape == ((0,) if model.root_k == 1 else (0, model.root_k))
    out.sum().backward()  # a graph like any other, with nothing to add up
    states, log_prob = mpe(model, x.detach(), root_unit=0 if model.root_k > 1 else None)
    assert states.shape == (0, model.num_vars) and log_prob.shape == (0,)
    assert marginal(model, x.detach()).shape[0] == 0
    assert conditional(model, torch.zeros(model.num_vars, dtype=torch.bool), x.detach()).shape[0] == 0


def test_integer_data_with_marginalize_mask(model):
    x = torch.randint(0, 2, (6, 4))
    mask = torch.zeros(6, 4, dtype=torch.bool)
    mask[:, 2] = True
    xf = x.float()
    xf[:, 2] = math.nan
    assert torch.allclose(model(x, marginalize=mask), model(xf))
    assert torch.allclose(model(x, marginalize=mask[0]), model(xf))
    with pytest.raises(ShapeError):
        model(x, marginalize=mask[:, :2])


def test_state_dict_round_trip(model):
    other = pcc.compile(model.circuit, backend="torch", seed=99)
    x = torch.randint(0, 2, (8, 4)).float()
    assert not torch.allclose(other(x), model(x))
    other.load_state_dict(model.state_dict())
    assert torch.equal(other(x), model(x))


def test_inside_sequential_and_double():
    circuit = random_circuit(5, num_vars=3, families=("normal",))
    head = pcc.compile(circuit, backend="torch")
    net = torch.nn.Sequential(torch.nn.Linear(3, 3), head).double()
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    out = net(x)
    assert out.shape == (4,) and out.dtype == torch.float64
    out.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert net[0].weight.grad.abs().sum() > 0


def test_gradient_training_keeps_normalization(model):
    """Weights are unconstrained logits: after Adam steps the circuit still sums to one."""
    states = torch.tensor([[(i >> b) & 1 for b in range(4)] for i in range(16)]).float()
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    for _ in range(5):
        opt.zero_grad()
        (-model(states[:5]).mean()).backward()
        opt.step()
    with torch.no_grad():
        assert abs(torch.logsumexp(model(states), 0).item()) < 1e-5


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_moves_to_cuda(model):
    model = model.cuda()
    assert model(torch.zeros(2, 4, device="cuda")).device.type == "cuda"


def _documented_param_blocks(model) -> dict:
    """The `param` blocks of `model`, computed from its state_dict as docs/queries.md says."""
    from pcc.passes import EinsumOp, HadamardOp
    state, circuit, plan = model.state_dict(), model.circuit, model.plan
    out = {}
    sums = mixes = 0
    for op in plan.ops:
        if isinstance(op, HadamardOp) or (isinstance(op, EinsumOp) and op.has_weights):
            w = state[f"sum_logits.{sums}"].double()
            sums += 1
            for m, (r, p) in enumerate(op.members):
                ks = [circuit.region(c).k for c in circuit.region(r).partitions[p]]
                shape = (circuit.region(r).k, ks[0]) if isinstance(op, HadamardOp) else (circuit.region(r).k, *ks)
                out[(r, "weights", p)] = torch.softmax(w[m], -1).reshape(shape)
        elif not isinstance(op, EinsumOp):
            w = state[f"mix_logits.{mixes}"].double()
            mixes += 1
            for m, r in enumerate(op.members):
                parts = len(circuit.region(r).partitions)
                out[(r, "mixing", None)] = torch.softmax(w[m, :parts], 0).T
    for g, group in enumerate(plan.leaf_groups):
        for m, r in enumerate(group.regions):
            slots = torch.from_numpy((group.slot_region == m).nonzero()[0])
            name = group.family.name
            if name in ("bernoulli", "binomial"):
                out[(r, "p", None)] = torch.sigmoid(state[f"leaf_params.{g}.logit"][slots].double()).T
            elif name == "categorical":
                out[(r, "probs", None)] = torch.softmax(state[f"leaf_params.{g}.logits"][slots].double(), -1
                                                        ).transpose(0, 1)
            else:
                out[(r, "mean", None)] = state[f"leaf_params.{g}.mean"][slots].double().T
                out[(r, "std", None)] = state[f"leaf_params.{g}.log_std"][slots].double().exp().T
    return out


HADAMARD = """pc 1
vars 3
leaf bernoulli
input x0 {x0} k=4
input x1 {x1} k=4
input x2 {x2} k=4
sum e1 k=4 = x1
sum e2 k=4 = x2
sum top k=1 = x0 .* e1 .* e2
root top
"""


@pytest.mark.parametrize("source", ["ir_examples/params_inline.pc", "ir_examples/categorical_named.pc",
                                    "ir_examples/gmm.pc", "ir_examples/mixture2.pc", HADAMARD])
def test_state_dict_entries_map_to_param_blocks_as_documented(source):
    """docs/queries.md: which state_dict entry holds which `param` block, and how (a mixing block
    [K, P] is stored transposed, a leaf block [K, S] slot-major)."""
    model = pcc.compile(source)
    documented = _documented_param_blocks(model)
    given = {(p.region, p.field, p.index): torch.tensor(p.values, dtype=torch.float64).view(p.shape)
             for p in model.ir_params()}
    assert given.keys() == documented.keys()
    for key, block in given.items():
        assert torch.allclose(block, documented[key], atol=1e-6), key


def test_the_documented_return_shapes():
    model = pcc.compile(random_circuit(5, num_vars=4, families=("bernoulli",), root_k=3))
    x = torch.zeros(6, 4)
    assert model(x).shape == (6, 3) and model.root_k == 3
    states, log_prob = model.mpe(torch.full((6, 4), math.nan), root_unit=1)
    assert states.shape == (6, 4) and log_prob.shape == (6,)
    assert model.sample(8, root_unit=2).shape == (8, 4)
    assert model.conditional(torch.tensor([True, False, False, False]), x).shape == (6, 3)
    arenas = model.upward(x)
    k, row = model.plan.region_row[model.circuit.root]
    assert torch.allclose(arenas[k][row], model(x))
    values = model.leaf_values(x)
    assert [v.shape for v in values] == [(len(g.regions), 6, g.k) for g in model.plan.leaf_groups]


def test_an_epochs_two_batch_sizes_keep_their_bindings(model, monkeypatch):
    """Online EM over an epoch alternates full batches with a shorter last one: both bindings
    are kept (building one allocates every arena), so later epochs bind nothing new."""
    from pcc.em import EM
    from pcc.runtime.engine import Program
    binds = []
    bind = Program.bind
    monkeypatch.setattr(Program, "bind", lambda self, *a, **k: binds.append(a[0]) or
                        bind(self, *a, **k))
    em = EM(model)
    x = torch.randint(0, 2, (11, model.num_vars)).float()
    for _ in range(3):  # three epochs of batches of 4: 4, 4, 3
        for start in range(0, 11, 4):
            em.step(x[start:start + 4])
    assert sorted(binds) == [3, 4]


def test_a_dropped_model_frees_its_buffers_without_the_cycle_collector():
    """The bindings a model keeps (GBs for a large circuit) go with it as soon as it is dropped:
    no reference cycle through them (a search trains one candidate after another)."""
    import gc
    import weakref

    import numpy as np

    from pcc.em import EM
    from pcc.queries import mpe
    from pcc.train import evaluate
    x = (np.random.default_rng(0).random((300, 12)) < 0.3).astype(np.float32)
    enabled = gc.isenabled()
    gc.disable()
    try:
        model = pcc.compile(pcc.structures.hidden_chow_liu_tree(x, k=4, trees=2))
        EM(model, step_size=0.5).step(torch.from_numpy(x[:100]))
        evaluate(model, x)
        mpe(model, torch.from_numpy(x[:10]))
        model(torch.from_numpy(x[:10])).sum().backward()
        alive = weakref.ref(model)
        del model
        assert alive() is None
    finally:
        if enabled:
            gc.enable()
