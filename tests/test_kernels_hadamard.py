"""The Triton element-wise (Hadamard) product layer (under the interpreter) equals a float64 brute
force in log space and the torch layer (`pcc_kernels.reference`), forward in both semirings and
backward: A = 1..8 children per member (padded slots read row 0, value 1, and get no flow),
repeated rows (the same child twice in a member, shared children across members), zero entries
and whole zero rows, odd batches, K_out <= 8 (the FMA reduction path) and K_out > 8 (tl.dot),
and every tile configuration of the GPU autotuner.
"""
import pytest
import torch

from layer_cases import brute_hadamard, brute_hadamard_backward, hadamard_case
from pcc_kernels import triton_ops
from pcc_kernels import triton_einsum
from test_kernels import DTYPES, check_layer, force_tiles

pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")

# (N, A, B, K, K_out)
SHAPES = [(3, 1, 7, 4, 5), (3, 2, 33, 10, 1), (2, 3, 7, 16, 20), (2, 8, 5, 40, 3),
          (3, 4, 3, 2, 2), (2, 5, 1, 12, 16)]


def shape_id(shape):
    n, slots, batch, k, k_out = shape
    return f"N{n} A{slots} B{batch} K{k}->{k_out}"


def run(shape, dtype, seed, force=None):
    n, slots, batch, k, k_out = shape
    source, children, w = hadamard_case(seed, n, slots, batch, k, k_out, dtype)
    bound = check_layer("hadamard", (source, children.rows), w, (n, batch, k_out),
                        brute_hadamard, brute_hadamard_backward, force=force)
    assert type(bound.layer) is triton_ops.HadamardLayer
    return bound


@DTYPES
@pytest.mark.parametrize("shape", SHAPES, ids=shape_id)
def test_hadamard_layer(shape, dtype):
    bound = run(shape, dtype, sum(shape))
    assert (bound.out.values[0] == 0).all(), "a member with a zero child is zero"
    assert (bound.grads[0][0] == 0.5).all(), "the padding row gets no flow"


@pytest.mark.parametrize("index", [0, 1, len(triton_einsum.DOT_CONFIGS) - 1])
def test_hadamard_autotuner_tiles(index):
    """Tile configurations of the forward, flows and gradient kernels (several K chunks,
    output and sample blocks; every configuration runs in test_kernels) with slots."""
    run((2, 3, 40, 40, 20), torch.float64, index, force_tiles(index))
