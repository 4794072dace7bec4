"""Exact ancestral sampling, unconditional or given evidence, batched through the layer plan.

    x ~ p(x)          sample(model, n)
    x ~ p(x | e)      sample(model, n, evidence)      evidence [B, V], NaN = free; B divides n

Upward pass on the evidence (sum semiring; with no evidence an all-missing row, whose node values
are each node's total mass), then the downward pass (`descend`) draws, top-down, every choice
from its posterior given the evidence below it:

    partition p of region r, unit o:   P(p | o, e)     = M[p,o] p_p,o(e) / sum_p' M[p',o] p_p',o(e)
    child units of partition, unit o:  P(i,j.. | o, e) = W[o,i,j..] p_i(e) p_j(e).. / p_o(e)

and each chosen leaf unit's free variables from its density; observed values are kept. By the
chain rule this draws x_free from p(x_free | e) exactly.

Temperature T rescales every latent choice: it is drawn from softmax(logits / T). T = 1 is exact;
T < 1 favours the heavier mixture components (T = 0: always the most probable one, "greedy"
ancestral sampling); T > 1 flattens the choices toward uniform. The leaves always draw from their
own densities, so T changes which components are used, not the noise within a component.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from ..errors import DataError, ShapeError
from .choices import sampler
from .descend import descend
from .roots import root_units, root_values


def sample(model, n: int, evidence: "Tensor | None" = None, temperature: float = 1.0,
           generator: torch.Generator | None = None,
           root_unit: "int | Tensor | None" = None) -> Tensor:
    """`n` samples [n, V] of `model` (a CompiledCircuit), given `evidence` if any.

    evidence: [B, V] (or [V]), NaN = free; each row gets n // B consecutive samples (so B must
    divide n); observed values are copied into the samples. temperature: see the module doc.
    generator: a torch.Generator on the model's device. root_unit: for a root with K > 1 units,
    the unit (an int, or a tensor [n]) to sample from, e.g. the class of a class-conditional root.
    Raises DataError when an evidence row has probability 0 (there is nothing to sample)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be an int >= 0, got {n!r}")
    pick = sampler(temperature, generator)
    device = model.var_max.device
    if evidence is None:
        evidence = torch.full((1, model.num_vars), math.nan)
    evidence = torch.as_tensor(evidence)
    if evidence.dim() == 1:
        evidence = evidence.unsqueeze(0)
    x = model.prepare_input(evidence.to(device))
    rows = x.shape[0]
    if rows == 0 or n % rows:
        raise ShapeError(f"n = {n} samples cannot be shared equally by {rows} evidence rows "
                         f"(the number of rows must divide n)")
    units = root_units(model, n, root_unit, device)
    arenas = model.upward(x, "sum")
    source = torch.arange(n, device=device) // (n // rows)  # evidence row of each sample
    arenas = {k: a.expand(-1, n, -1) if rows == 1 else a.index_select(1, source)
              for k, a in arenas.items()}
    _check_possible(root_values(model, arenas, units), source)
    x = x[source]
    out = descend(model, arenas, units, pick, x, generator)
    return torch.where(torch.isnan(x), out, x)


def _check_possible(log_evidence: Tensor, source: Tensor) -> None:
    impossible = torch.isneginf(log_evidence)
    if bool(impossible.any()):
        row = int(source[impossible.nonzero()[0, 0]])
        raise DataError("the evidence has probability 0 under the model (log p(e) = -inf), so "
                        "there is no conditional distribution to sample from", row=row)
