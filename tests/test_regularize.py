"""The regularizers of training (`pcc.regularize`): leaf smoothing mixes every leaf with its
variable's marginal and keeps each distribution normalized (normal leaves: moments matched);
entropy regularization solves its stationarity condition and raises the entropy; both off at 0."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import pcc
from pcc.regularize import Marginals, Regularizers, _entropic, entropy, soften
from pcc.rows import as_rows
from pcc.structures import hidden_chow_liu_tree


def mixed_model():
    rng = np.random.default_rng(0)
    x = np.stack([rng.integers(0, 2, 300), rng.integers(0, 3, 300),
                  3.0 + 2.0 * rng.normal(size=300)], 1).astype(np.float64)
    x[5, 2] = np.nan  # not counted in the marginal
    return pcc.compile(hidden_chow_liu_tree(x, k=3, trees=2), dtype=torch.float64), x


def test_soften_mixes_each_leaf_with_its_marginal():
    model, x = mixed_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    marginals = Marginals(model, as_rows(x))
    soften(model, marginals, 0.5)
    for fam, params, old_key, marginal in zip(model.families, model.leaf_params,
                                               ["leaf_params.0", "leaf_params.1", "leaf_params.2"],
                                               marginals.groups):
        name = fam.family.name
        if name == "bernoulli":
            m = (np.sum(x[:, 0] == 1) + 1) / (300 + 2)
            old = torch.sigmoid(before[f"{old_key}.logit"])
            assert torch.allclose(torch.sigmoid(params.logit), (old + 0.5 * m) / 1.5)
        elif name == "categorical":
            p = torch.softmax(params.logits, -1)
            assert torch.allclose(p.sum(-1), torch.ones_like(p[..., 0]))
            old = torch.softmax(before[f"{old_key}.logits"], -1)
            assert torch.allclose(p, (old + 0.5 * marginal["probs"][:, None]) / 1.5)
        else:
            seen = x[~np.isnan(x[:, 2]), 2]
            mu, var = params.mean, torch.exp(2 * params.log_std)
            old_mu = before[f"{old_key}.mean"]
            old_var = torch.exp(2 * before[f"{old_key}.log_std"])
            assert torch.allclose(mu, (old_mu + 0.5 * seen.mean()) / 1.5)
            second = (old_var + old_mu ** 2 + 0.5 * (seen.var() + seen.mean() ** 2)) / 1.5
            assert torch.allclose(var + mu ** 2, second)


def test_entropic_weights_solve_their_stationarity_condition():
    rng = torch.Generator().manual_seed(0)
    w_hat = torch.log_softmax(3 * torch.randn(4, 6, generator=rng, dtype=torch.float64), -1)
    for t in (0.01, 0.3):
        log_w = _entropic(w_hat, t, None)
        w = log_w.exp()
        assert torch.allclose(w.sum(-1), torch.ones(4, dtype=torch.float64))
        g = w_hat.exp() / w - t * (log_w + 1)  # equal across the entries of each unit
        assert float((g - g.mean(-1, keepdim=True)).abs().max()) < 1e-5
        assert bool(((-(w * log_w).sum(-1)) > -(w_hat.exp() * w_hat).sum(-1)).all())


def test_entropy_keeps_the_mixing_weights_normalized_and_their_masks():
    model, _ = mixed_model()
    entropy(model, 0.2)
    for w in model.sum_logits:
        assert torch.allclose(w.exp().sum(-1), torch.ones_like(w[..., 0]))
    for i, w in enumerate(model.mix_logits):
        mask = getattr(model, f"mix_mask_{i}")
        assert torch.allclose((w.exp() * mask).sum(1), torch.ones_like(w[:, 0]))
        assert bool((w.masked_select(~mask.expand_as(w)) == 0).all())


@pytest.mark.parametrize("strengths", [(0.0, 0.0)])
def test_off_at_zero(strengths):
    model, x = mixed_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    regularize = Regularizers(model, as_rows(x), *strengths)
    assert not regularize
    regularize(model)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_soften_matches_an_mvnormal_leaf_to_its_mixture_with_the_marginal():
    """Each unit N(mu, S) of a joint leaf becomes the normal with the mean and second moment of
    (N(mu, S) + s prod_v N(m_v, var_v)) / (1 + s)."""
    rng = np.random.default_rng(1)
    f = rng.normal(size=400)
    x = np.stack([f + 0.1 * rng.normal(size=400), 2 * f + 0.1 * rng.normal(size=400),
                  rng.normal(size=400)], 1)
    model = pcc.compile(hidden_chow_liu_tree(x, k=3, trees=1), dtype=torch.float64)
    i = next(i for i, fam in enumerate(model.families) if fam.joint)
    fam, params = model.families[i], model.leaf_params[i]
    mu, lower = fam.factor(params.as_dict())
    before = (mu.clone(), lower @ lower.transpose(-1, -2) + mu.unsqueeze(-1) * mu.unsqueeze(-2))
    soften(model, Marginals(model, as_rows(x)), 0.5)
    mu, lower = fam.factor(params.as_dict())
    m = torch.tensor(x[:, :2].mean(0))
    marginal = torch.diag(torch.tensor(x[:, :2].var(0))) + m.unsqueeze(-1) * m.unsqueeze(-2)
    assert torch.allclose(mu, (before[0] + 0.5 * m) / 1.5)
    assert torch.allclose(lower @ lower.transpose(-1, -2) + mu.unsqueeze(-1) * mu.unsqueeze(-2),
                          (before[1] + 0.5 * marginal) / 1.5)
