"""Regularizers applied after every EM update of training (`pcc.train`), in parameter space.

**Leaf smoothing toward the marginals** (`soften` = s): every leaf distribution f_k of variable
v is replaced after each M-step by the mixture of itself with the variable's marginal m_v (as the
training data give it), of weight s, matched back to its family:

    discrete (bernoulli, categorical, binomial)   p' = (p + s m_v) / (1 + s)
    normal                                         mean' = (mu + s mu_v) / (1 + s),
                                                   var'  = (var + mu^2 + s (var_v + mu_v^2)) / (1 + s) - mean'^2
    mvnormal (the marginal: independent normals)   the same with Sigma + mu mu^T and diag(var) + m m^T

This is the MAP estimate under a prior of s times the leaf's own (expected) number of rows, drawn
from the marginal; for discrete leaves the same as the M-step of the "data softening" of Liu & Van
den Broeck (NeurIPS 2021), where each observed value is, with probability s, replaced by a draw
from its marginal (their soft evidence also smooths the E-step by a factor of at most 1 +- s per
leaf, which is left out here). It keeps every leaf at least s / (1 + s) m_v(x) on every value x,
so that a hidden state fitted to a handful of rows does not call the values it never saw
impossible.

**Entropy regularization** (`entropy` = t): each sum unit's weights w (normalized counts from
the M-step, w_hat) become the maximizer of  sum_i w_hat_i log w_i + t H(w),  i.e. of the
expected log-likelihood plus t times the unit's flow times the entropy of its weights (the
weighting of the published recipe). Stationarity: w_hat_i / w_i - t (log w_i + 1) = lambda,
solved by Newton steps on log w with lambda from the normalization.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .runtime.joint_normal import covariance, positive_definite_factor, second_moment

ENTROPY_NEWTON_STEPS = 8


class Marginals:
    """Per leaf group, the marginal of each slot's variable from the training rows: discrete
    families `probs` [M, S] (Laplace count 1 per value, so no value is impossible), normal
    `mean` and `var` [M] (of the observed values); per parameter row [U, ...] where inputs are
    tied (the mean of the marginals of the slots that share it)."""

    def __init__(self, model, rows):
        num_vars = model.plan.num_vars
        width = int(max((f.support_size() for f in model.families if f.discrete), default=1))
        counts = torch.zeros(num_vars, width, dtype=torch.float64)
        moments = torch.zeros(3, num_vars, dtype=torch.float64)  # n, sum, sum of squares
        for x, _ in rows.local_chunks(8192):
            x = torch.as_tensor(x, dtype=torch.float64)
            seen = ~torch.isnan(x)
            values = torch.where(seen, x, torch.zeros_like(x))
            moments += torch.stack([seen.sum(0), values.sum(0), (values * values).sum(0)])
            codes = values.clamp(0, width - 1).long()
            counts.scatter_add_(1, codes.t(), seen.t().to(torch.float64))
        totals = rows.total(counts.reshape(-1).tolist() + moments.reshape(-1).tolist())
        counts = torch.tensor(totals[:counts.numel()], dtype=torch.float64).reshape(counts.shape)
        n, total, squares = torch.tensor(totals[counts.numel():],
                                         dtype=torch.float64).reshape(3, num_vars)
        n = n.clamp_min(1.0)
        mean = total / n
        self.groups = []
        for fam, g in zip(model.families, model.plan.leaf_groups):
            index = torch.from_numpy(g.var_index).long()
            if fam.discrete:
                size = fam.support_size()
                c = counts[index, :size] + 1.0
                group = {"probs": c / c.sum(1, keepdim=True)}
            else:
                var = (squares / n - mean * mean).clamp_min(0.0)
                group = {"mean": mean[index], "var": var[index]}
            if g.param_rows is not None:  # tied slots: the mean over each parameter row's
                rows = torch.from_numpy(g.param_rows)
                shared = torch.bincount(rows).to(torch.float64)
                group = {key: v.new_zeros(len(shared), *v.shape[1:]).index_add_(0, rows, v)
                         / shared.view(-1, *[1] * (v.dim() - 1)) for key, v in group.items()}
            self.groups.append(group)


@torch.no_grad()
def soften(model, marginals: Marginals, strength: float) -> None:
    """Mix every leaf of `model` with its variable's marginal (module doc), in place."""
    if strength <= 0:
        return
    s = strength
    for fam, params, marginal in zip(model.families, model.leaf_params, marginals.groups):
        name = fam.family.name
        if name in ("bernoulli", "binomial"):
            m = (marginal["probs"] * torch.arange(marginal["probs"].shape[1],
                                                  dtype=torch.float64)).sum(1) / fam.n
            p = (torch.sigmoid(params.logit.double()) + s * m[:, None]) / (1 + s)
            params.logit.copy_(torch.logit(p))
        elif name == "categorical":
            p = (torch.softmax(params.logits.double(), -1) + s * marginal["probs"][:, None]) / (1 + s)
            params.logits.copy_(torch.log(p))
        elif name == "mvnormal":
            mu, lower = (v.double() for v in fam.factor(params.as_dict()))
            m = marginal["mean"].view(-1, fam.d).unsqueeze(1)  # [R, 1, d]
            spread = torch.diag_embed(marginal["var"].view(-1, fam.d).sqrt()).unsqueeze(1)
            mean = (mu + s * m) / (1 + s)
            second = (second_moment(mu, lower) + s * second_moment(m, spread)) / (1 + s)
            cov = covariance(second, mean)
            for key, v in fam.per_slot(mean, positive_definite_factor(cov, 0.0)).items():
                getattr(params, key).copy_(v)
        elif name == "normal":
            mu, var = params.mean.double(), torch.exp(2 * params.log_std.double())
            mean = (mu + s * marginal["mean"][:, None]) / (1 + s)
            second = (var + mu * mu + s * (marginal["var"] + marginal["mean"] ** 2)[:, None]) / (1 + s)
            params.mean.copy_(mean)
            params.log_std.copy_(0.5 * torch.log((second - mean * mean).clamp_min(1e-12)))


@torch.no_grad()
def entropy(model, strength: float) -> None:
    """Entropy-regularize every sum unit's weights of `model` (module doc), in place."""
    if strength <= 0:
        return
    for logits in model.sum_logits:
        logits.copy_(_entropic(logits.double(), strength, None))
    for i, logits in enumerate(model.mix_logits):
        mask = getattr(model, f"mix_mask_{i}")
        logits.copy_(_entropic(logits.double().transpose(1, -1), strength,
                               mask.transpose(1, -1)).transpose(1, -1))


def _entropic(log_w_hat: Tensor, t: float, mask: Tensor | None) -> Tensor:
    """log w maximizing sum w_hat log w + t H(w) along the last dim (entries where `mask` is
    False stay 0 and out of the sums)."""
    w_hat = torch.exp(log_w_hat) if mask is None else torch.exp(log_w_hat) * mask
    log_w = log_w_hat.clone() if mask is None else log_w_hat.masked_fill(~mask, 0.0)
    for _ in range(ENTROPY_NEWTON_STEPS):
        # g_i(log w) = w_hat_i exp(-log w_i) - t log w_i, equal to lambda + t at the optimum; one
        # Newton step per entry toward the lambda that keeps sum w = 1 (lambda: the w-weighted
        # mean of g, the fixed point of the normalization)
        g = w_hat * torch.exp(-log_w) - t * log_w
        slope = w_hat * torch.exp(-log_w) + t  # -dg/dlog w
        w = torch.exp(log_w) if mask is None else torch.exp(log_w) * mask
        lam = (w * g).sum(-1, keepdim=True) / w.sum(-1, keepdim=True)
        log_w = log_w + (g - lam) / slope
        log_w = log_w - torch.logsumexp(log_w if mask is None else
                                        log_w.masked_fill(~mask, -torch.inf), -1, keepdim=True)
        if mask is not None:
            log_w = log_w.masked_fill(~mask, 0.0)
    return log_w


class Regularizers:
    """The regularizers of a training run, applied by calling it after every EM update:
    `soften` and `entropy` strengths (0: off); the marginals come from the training `rows`."""

    def __init__(self, model, rows, soften: float = 0.0, entropy: float = 0.0):
        self.strengths = (soften, entropy)
        self.marginals = Marginals(model, rows) if soften > 0 else None

    def __bool__(self) -> bool:
        return any(s > 0 for s in self.strengths)

    def __call__(self, model) -> None:
        s, t = self.strengths
        if s > 0:
            soften(model, self.marginals, s)
        if t > 0:
            entropy(model, t)
