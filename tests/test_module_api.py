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
