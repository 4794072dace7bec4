"""Posterior marginals of every discrete variable given evidence, in one upward and one backward
pass.

    posterior_marginals(model, evidence) -> [B, V, S]     p(x_v = s | e), NaN in e = missing

By decomposability, every induced tree of a circuit holds exactly one leaf unit over each
variable v, so p(e, x_v = s) is linear in the values L_r[k] of the units of the inputs r over v.
With x_v missing (its factor in L_r[k] is 1), setting it to s multiplies L_r[k] by f_{r,k,v}(s):

    p(x_v = s | e) = sum_{r over v, k} gamma_r[k] f_{r,k,v}(s),    gamma_r[k] = dlog p(e)/dlog L_r[k]

gamma is the posterior probability of unit k of input r given e (the flows EM uses), so one
backward pass gives the marginals of all variables at once; for a hidden Markov model this is
the forward-backward algorithm's p(x_t | e). An observed variable's marginal is the point mass at
its value. S is the largest support of the circuit's discrete families (a variable with fewer
values has probability 0 beyond its own); variables of continuous families get NaN.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from ..errors import DataError
from .roots import root_units


def posterior_marginals(model, evidence: Tensor, root_unit: "int | Tensor | None" = None
                        ) -> Tensor:
    """p(x_v = s | e) [B, V, S] for evidence [B, V] (NaN = missing); see the module doc.
    root_unit: for a root with K > 1 units, which unit's density (an int or a tensor [B]).
    Raises DataError for an evidence row of probability 0."""
    x = model.prepare_input(torch.as_tensor(evidence).to(model.var_max.device))
    units = root_units(model, x.shape[0], root_unit, x.device)
    finite = model.var_max[torch.isfinite(model.var_max)]
    support = int(finite.max()) + 1 if len(finite) else 1
    out = x.new_zeros(x.shape[0], model.num_vars, support)
    with torch.enable_grad():
        values = [v.detach().requires_grad_() for v in model.leaf_values(x)]
        root = model.evaluate(values).gather(1, units.unsqueeze(1)).squeeze(1)
        impossible = torch.isneginf(root.detach())
        if bool(impossible.any()):
            raise DataError("the evidence has probability 0 under the model (log p(e) = -inf), "
                            "so it has no posterior", row=int(impossible.nonzero()[0, 0]))
        gammas = torch.autograd.grad(root.sum(), values)
    with torch.no_grad():
        for i, (family, gamma) in enumerate(zip(model.families, gammas)):
            if not family.discrete:
                continue
            slot_gamma = gamma.index_select(0, getattr(model, f"leaf_slots_{i}"))  # [M, B, K]
            probs = family.log_table(model.leaf_slot_params(i)).exp()  # [M, K, S_g]
            marginal = torch.bmm(slot_gamma, probs.to(slot_gamma.dtype))  # [M, B, S_g]
            out[:, :, : probs.shape[-1]].index_add_(1, getattr(model, f"leaf_vars_{i}"),
                                                    marginal.transpose(0, 1))
        observed = ~torch.isnan(x)
        point = torch.nn.functional.one_hot(
            torch.nan_to_num(x, nan=0.0).clamp(0, support - 1).long(), support).to(out.dtype)
        out = torch.where(observed.unsqueeze(-1), point, out)
        out[:, ~model.var_discrete] = math.nan
    return out
