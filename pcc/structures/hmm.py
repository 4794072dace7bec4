"""Hidden Markov models as circuits: a chain of T hidden variables z_t of H states, each emitting
a token x_t of V values (categorical leaves).

    p(x_0..x_{T-1}) = sum_z  pi(z_0) B(x_0 | z_0)  prod_{t>=1} A(z_t | z_{t-1}) B(x_t | z_t)

Regions (the forward algorithm, read from the end of the chain):

    input emit{t} {x_t} k=H            unit i: B_t(x_t | z_t = i)
    sum   step{t} k=H = emit{t} .* step{t+1}    (t = 1..T-1; the last: = emit{T-1})
          unit j: sum_i A_t(z_t = i | z_{t-1} = j) B_t(x_t | i) step{t+1}[i]   weights [H, H]
    sum   start k=1 = emit0 .* step1    sum_i pi(z_0 = i) B_0(x_0 | i) step1[i]  weights [1, H]

so step{t} unit j is p(x_t..x_{T-1} | z_{t-1} = j), the backward message, and every layer is one
[B, H] x [H, H] product. A *homogeneous* HMM (the default) ties the transition sums
(`tie step1 .. step{T-1}`: one matrix A) and the emission inputs (`tie emit0 .. emit{T-1}`:
one table B); `tied=False` gives every position its own A_t and B_t.

A missing token (NaN) is summed out: its emission contributes 1, so trailing missing tokens give
exactly the likelihood of the shorter sequence (rows of a data file may hold sequences of
different lengths, padded with missing values). The circuit is a latent tree (a chain), so
`pcc.latent_tree` recognizes it; tied, it trains with `pcc.train.TIED_RECIPE`.
"""
from __future__ import annotations

from ..ir import Circuit, Family, Input, Sum, Tie, default_var_names
from .arguments import require_at_least


def hidden_markov_model(length: int, hidden: int, vocab: int, *, tied: bool = True) -> Circuit:
    """The HMM over `length` tokens of `vocab` values with `hidden` states (see the module doc);
    homogeneous (tied) unless `tied=False`."""
    require_at_least("length", length, 1)
    require_at_least("hidden", hidden, 1)
    require_at_least("vocab", vocab, 2)
    emits = [Input(f"emit{t}", (t,), hidden) for t in range(length)]
    steps: list[Sum] = []
    for t in reversed(range(1, length)):
        after = (f"step{t + 1}",) if t + 1 < length else ()
        steps.append(Sum(f"step{t}", hidden, ((f"emit{t}", *after),), elementwise=(0,)))
    first = ("emit0", "step1") if length > 1 else ("emit0",)
    start = Sum("start", 1, (first,), elementwise=(0,))
    ties = ()
    if tied and length > 1:
        ties = (Tie(tuple(e.name for e in emits)),)
        if length > 2:
            ties += (Tie(tuple(f"step{t}" for t in range(1, length))),)
    return Circuit(default_var_names(length), (*emits, *steps, start), "start",
                   Family("categorical", (("n", vocab),)), ties=ties)
