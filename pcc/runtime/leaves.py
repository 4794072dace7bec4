"""Leaf densities: one vectorized op per (family, K) group of input regions.

A group has M slots (region, variable) and K units; every family stores its parameters per slot
and unit, [M, K, ...], in an unconstrained form (so gradient training needs no projection):

    bernoulli       logit [M,K]        log f(x) = log sigmoid(+-logit)
    binomial(n)     logit [M,K]        log f(x) = log C(n,x) + x log p + (n-x) log(1-p)
    categorical(n)  logits [M,K,n]     log f(x) = log_softmax(logits)[x]
    normal          mean, log_std      log f(x) = -((x-mean)/std)^2/2 - log std - log(2 pi)/2

EM works with expected sufficient statistics: `stats` turns posterior flows gamma [M,B,K] into
them; `estimate` turns (running) statistics into MAP parameters.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.nn import functional as F

from ..ir import Family

LOG_2PI = math.log(2 * math.pi)


class LeafFamily:
    """Interface of a leaf family's runtime (all shapes per group: M slots, K units, B samples)."""

    fields: tuple[str, ...] = ()
    ir_fields: tuple[str, ...] = ()  # names of the probability-space fields in .pc `param`

    def __init__(self, family: Family):
        self.family = family
        self.n = int(family.arg("n", 1))

    def log_density(self, x: Tensor, params: dict[str, Tensor]) -> Tensor:
        """x [M, B] (no NaN) -> log f [M, B, K]."""
        raise NotImplementedError

    def evaluate(self, xt: Tensor, var_index: Tensor, params: dict[str, Tensor],
                 semiring: str = "sum") -> Tensor:
        """xt [V, B] (all variables, NaN for missing), var_index [M] (each slot's variable) ->
        [M, B, K]: log f(x), and where x is missing log 1 = 0 (summed out) or, under the max
        semiring, max_x log f(x) (maximized out)."""
        x = xt.index_select(0, var_index)
        obs = ~torch.isnan(x)
        ld = self.log_density(torch.where(obs, x, torch.zeros_like(x)), params)
        if semiring == "max":
            missing = self.log_density(self.mode(params), params).diagonal(0, 1, 2).unsqueeze(1)
        else:
            missing = torch.zeros_like(ld)
        return torch.where(obs.unsqueeze(-1), ld, missing)

    def init(self, m: int, k: int, generator: torch.Generator) -> dict[str, Tensor]:
        raise NotImplementedError

    def to_ir(self, params: dict[str, Tensor]) -> dict[str, Tensor]:
        """Stored parameters -> probability-space fields [M, K, ...] as written in .pc files."""
        raise NotImplementedError

    def from_ir(self, fields: dict[str, Tensor]) -> dict[str, Tensor]:
        raise NotImplementedError

    def stats(self, x: Tensor, obs: Tensor, gamma: Tensor,
              params: dict[str, Tensor] | None = None) -> dict[str, Tensor]:
        """Expected sufficient statistics: x [M,B], obs [M,B] float, gamma [M,B,K] -> sums [M,K,..]
        (`params`, the slots' current parameters, for families whose statistics of missing values
        depend on them).

        Always contains 'n' = sum_b gamma * obs (the expected count of observed values)."""
        w = gamma * obs.unsqueeze(-1)
        return {"n": w.sum(1), "t": torch.einsum("mbk,mb->mk", w, x)}

    def estimate(self, stats: dict[str, Tensor], old: dict[str, Tensor], pseudocount: float,
                 min_prob: float, min_var: float) -> dict[str, Tensor]:
        """M-step: the MAP parameters for expected statistics `stats`, with `pseudocount` virtual
        observations per distribution spread over its values. (The caller keeps the old values
        where no observed value was seen, n == 0.)"""
        raise NotImplementedError

    def sample(self, params: dict[str, Tensor], generator: torch.Generator | None) -> Tensor:
        """One value per entry of the (already selected) parameters [...] -> [...]."""
        raise NotImplementedError

    def mode(self, params: dict[str, Tensor]) -> Tensor:
        raise NotImplementedError

    def support_max(self) -> float:
        """Largest value in the support (inf for continuous families)."""
        return math.inf

    @property
    def discrete(self) -> bool:
        return True

    @property
    def joint(self) -> int | None:
        """How many consecutive slots of a region one density covers (None: each its own)."""
        return None


class DiscreteFamily(LeafFamily):
    """A family over {0, ..., S-1}: evaluated by one gather from a table of log-densities."""

    def support_size(self) -> int:
        return int(self.support_max()) + 1

    def log_table(self, params: dict[str, Tensor]) -> Tensor:
        """log f(s) for every value s of the support: [M, K, S]."""
        ref = next(iter(params.values()))
        size = self.support_size()
        values = torch.arange(size, dtype=ref.dtype, device=ref.device).expand(ref.shape[0], size)
        return self.log_density(values, params).transpose(1, 2)

    def stats_from_counts(self, counts: Tensor) -> dict[str, Tensor]:
        """The statistics of `stats` from expected counts of each value, [M, K, S]."""
        values = torch.arange(counts.shape[-1], dtype=counts.dtype, device=counts.device)
        return {"n": counts.sum(-1), "t": counts @ values}

    def evaluate(self, xt, var_index, params, semiring="sum"):
        size = self.support_size()
        m = len(var_index)
        table = self.log_table(params)  # [M, K, S]
        missing = (table.amax(-1, keepdim=True) if semiring == "max"
                   else torch.zeros_like(table[..., :1]))
        table = torch.cat([table, missing], -1)
        # value codes per variable (column S for NaN), then per slot: [V, B] -> [M, B]
        codes = torch.nan_to_num(xt, nan=float(size)).clamp(0, size).long().index_select(
            0, var_index)
        b = codes.shape[1]
        return torch.gather(table, 2, codes.unsqueeze(1).expand(m, table.shape[1], b)) \
            .transpose(1, 2)


def _tiny(t: Tensor) -> float:
    """The smallest positive normal number of t's dtype (a safe floor for denominators)."""
    return torch.finfo(t.dtype).tiny


def _xlogp(x: Tensor, logp: Tensor) -> Tensor:
    """x * log p with 0 * log 0 = 0 (so p = 0 or 1 are exact)."""
    return torch.where(x == 0, torch.zeros_like(logp), x * logp)


class Binomial(DiscreteFamily):
    fields = ("logit",)
    ir_fields = ("p",)

    def log_density(self, x, params):
        t = params["logit"].unsqueeze(1)
        xb = x.unsqueeze(-1)
        n = float(self.n)
        log_c = (math.lgamma(n + 1) - torch.lgamma(xb + 1) - torch.lgamma(n - xb + 1))
        return log_c + _xlogp(xb, F.logsigmoid(t)) + _xlogp(n - xb, F.logsigmoid(-t))

    def init(self, m, k, generator):
        p = 0.25 + 0.5 * torch.rand(m, k, generator=generator, dtype=torch.float64)
        return {"logit": torch.logit(p)}

    def to_ir(self, params):
        return {"p": torch.sigmoid(params["logit"])}

    def from_ir(self, fields):
        return {"logit": torch.logit(fields["p"].double())}

    def estimate(self, stats, old, pseudocount, min_prob, min_var):
        n, t = stats["n"], stats["t"]
        p = (t + pseudocount / 2) / (self.n * n + pseudocount).clamp_min(_tiny(n))
        return {"logit": torch.logit(p.clamp(min_prob, 1 - min_prob))}

    def sample(self, params, generator):
        p = torch.sigmoid(params["logit"])
        return torch.binomial(torch.full_like(p, float(self.n)), p, generator=generator)

    def mode(self, params):
        p = torch.sigmoid(params["logit"])
        return torch.floor((self.n + 1) * p).clamp(0, self.n)

    def support_max(self):
        return float(self.n)


class Bernoulli(Binomial):
    """Binomial with one trial; the density is a select, not a formula."""

    def __init__(self, family: Family):
        super().__init__(family)
        self.n = 1

    def log_density(self, x, params):
        t = params["logit"].unsqueeze(1)
        return torch.where(x.unsqueeze(-1) > 0.5, F.logsigmoid(t), F.logsigmoid(-t))

    def sample(self, params, generator):
        return torch.bernoulli(torch.sigmoid(params["logit"]), generator=generator)


class Categorical(DiscreteFamily):
    fields = ("logits",)
    ir_fields = ("probs",)

    def log_density(self, x, params):
        logp = torch.log_softmax(params["logits"], -1)  # [M, K, n]
        idx = x.long().clamp(0, self.n - 1)  # [M, B]
        m, b = idx.shape
        k = logp.shape[1]
        return torch.gather(logp, 2, idx.unsqueeze(1).expand(m, k, b)).transpose(1, 2)

    def init(self, m, k, generator):
        p = 0.5 + torch.rand(m, k, self.n, generator=generator, dtype=torch.float64)
        return {"logits": torch.log(p / p.sum(-1, keepdim=True))}

    def to_ir(self, params):
        return {"probs": torch.softmax(params["logits"], -1)}

    def from_ir(self, fields):
        return {"logits": torch.log(fields["probs"].double())}

    def stats_from_counts(self, counts):
        return {"n": counts.sum(-1), "t": counts}

    def stats(self, x, obs, gamma, params=None):
        w = gamma * obs.unsqueeze(-1)
        onehot = F.one_hot(x.long().clamp(0, self.n - 1), self.n).to(gamma.dtype)  # [M,B,n]
        return {"n": w.sum(1), "t": torch.einsum("mbk,mbc->mkc", w, onehot)}

    def estimate(self, stats, old, pseudocount, min_prob, min_var):
        n, t = stats["n"], stats["t"]
        p = (t + pseudocount / self.n) / (n.unsqueeze(-1) + pseudocount).clamp_min(_tiny(n))
        p = p.clamp_min(min_prob)
        return {"logits": torch.log(p / p.sum(-1, keepdim=True))}

    def sample(self, params, generator):
        probs = torch.softmax(params["logits"], -1)
        flat = probs.reshape(-1, self.n)
        return torch.multinomial(flat, 1, generator=generator).reshape(probs.shape[:-1]).to(
            probs.dtype)

    def mode(self, params):
        return params["logits"].argmax(-1).to(params["logits"].dtype)

    def support_max(self):
        return float(self.n - 1)


class Normal(LeafFamily):
    fields = ("mean", "log_std")
    ir_fields = ("mean", "std")

    def log_density(self, x, params):
        mean = params["mean"].unsqueeze(1)
        log_std = params["log_std"].unsqueeze(1)
        z = (x.unsqueeze(-1) - mean) * torch.exp(-log_std)
        return -0.5 * z * z - log_std - 0.5 * LOG_2PI

    def init(self, m, k, generator):
        return {"mean": torch.randn(m, k, generator=generator, dtype=torch.float64),
                "log_std": torch.zeros(m, k, dtype=torch.float64)}

    def to_ir(self, params):
        return {"mean": params["mean"], "std": torch.exp(params["log_std"])}

    def from_ir(self, fields):
        return {"mean": fields["mean"].double(), "log_std": torch.log(fields["std"].double())}

    def stats(self, x, obs, gamma, params=None):
        out = super().stats(x, obs, gamma, params)
        w = gamma * obs.unsqueeze(-1)
        out["t2"] = torch.einsum("mbk,mb->mk", w, x * x)
        return out

    def estimate(self, stats, old, pseudocount, min_prob, min_var):
        n, t, t2 = stats["n"], stats["t"], stats["t2"]
        old_mean = old["mean"]
        old_var = torch.exp(2 * old["log_std"])
        denom = (n + pseudocount).clamp_min(_tiny(n))
        # MAP-style shrinkage toward the old parameters with `pseudocount` virtual samples.
        mean = (t + pseudocount * old_mean) / denom
        m2 = (t2 + pseudocount * (old_var + old_mean ** 2)) / denom
        var = (m2 - mean ** 2).clamp_min(min_var)
        return {"mean": mean, "log_std": 0.5 * torch.log(var)}

    def sample(self, params, generator):
        noise = torch.randn(params["mean"].shape, generator=generator, dtype=params["mean"].dtype,
                            device=params["mean"].device)
        return params["mean"] + torch.exp(params["log_std"]) * noise

    def mode(self, params):
        return params["mean"]

    @property
    def discrete(self) -> bool:
        return False
