"""Queries on compiled circuits: sampling, conditional sampling, MPE, marginals and conditionals.

    sample(model, n, evidence=None, temperature=1.0, generator=None, root_unit=None) -> [n, V]
    mpe(model, evidence, root_unit=None) -> (states [B, V], log p(states) [B])
    marginal(model, x) -> log p(x_obs) [B]
    conditional(model, query_mask, x) -> log p(x_q | x_e) [B]
    posterior_marginals(model, evidence, root_unit=None) -> p(x_v = s | e) [B, V, S]

Every query runs the plan the likelihood runs: an upward pass (semiring 'sum' or 'max') and, for
sampling and MPE, one downward pass over the same ops (`descend`); posterior marginals, the
engine's backward pass. See docs/queries.md.
"""
from .marginals import conditional, marginal
from .mpe import mpe
from .posteriors import posterior_marginals
from .sampling import sample

__all__ = ["sample", "mpe", "marginal", "conditional", "posterior_marginals"]
