"""`mvnormal(d)` leaves, one full-covariance normal over the d variables of an input: densities
with every pattern of missing values against torch's MultivariateNormal in float64, MPE and
samples against the conditional Gaussian, EM's exact M-step and its monotone likelihood with
missing values, text and checkpoint round trips, diagnostics, and the HCLT that groups strongly
correlated columns."""
import dataclasses
import itertools
import math

import numpy as np
import pytest
import torch
from torch.distributions import MultivariateNormal

import pcc
from pcc import checkpoint
from pcc.em import EM
from pcc.frontend import check_source, to_text
from pcc.latent_forest import find_latent_forest
from pcc.queries import mpe, sample
from em_climb import assert_climbs

NAN = math.nan
MIXTURE = """pc 1
vars a b c e
leaf mvnormal(d=3) {a, b, c}
leaf normal {e}
input g {a, b, c} k={k}
input h {e} k={k}
sum top k=1 = g * h
root top
"""


def model_with(k: int, seed: int = 0, dtype=torch.float64):
    """The MIXTURE circuit with K^2 components and random means and covariances."""
    model = pcc.compile(MIXTURE.replace("{k}", str(k)), backend="torch").to(dtype)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for params in model.leaf_params:
            for name, value in params.as_dict().items():
                value.copy_(0.6 * torch.randn(value.shape, generator=gen, dtype=torch.float64))
        for logits in model.sum_logits:
            logits.copy_(torch.randn(logits.shape, generator=gen, dtype=torch.float64))
    return model


def components(model):
    """(log w [C], means [C, 4], covariances [C, 4, 4]) of the model as a Gaussian mixture."""
    params = {(p.region, p.field): torch.tensor(p.values, dtype=torch.float64).reshape(p.shape)
              for p in model.ir_params()}
    kg = params[("g", "mean")].shape[0]
    w = params.get(("top", "weights"), torch.ones(1, 1, 1, dtype=torch.float64))[0]  # [Kg, Kh]
    kg, kh = w.shape
    means, covs, logw = [], [], []
    for i, j in itertools.product(range(kg), range(kh)):
        cov = torch.zeros(4, 4, dtype=torch.float64)
        cov[:3, :3] = params[("g", "cov")][i]
        cov[3, 3] = params[("h", "std")][j, 0] ** 2
        means.append(torch.cat([params[("g", "mean")][i], params[("h", "mean")][j]]))
        covs.append(cov)
        logw.append(torch.log(w[i, j]))
    return torch.stack(logw), torch.stack(means), torch.stack(covs)


def reference_log_p(model, x: torch.Tensor) -> torch.Tensor:
    """log sum_c w_c N(x_o; mu_c,o, Sigma_c,oo) per row, in float64."""
    logw, means, covs = components(model)
    out = []
    for row in x.double():
        seen = ~torch.isnan(row)
        if not seen.any():
            out.append(torch.tensor(0.0, dtype=torch.float64))
            continue
        idx = seen.nonzero().squeeze(1)
        terms = [MultivariateNormal(means[c][idx], covs[c][idx][:, idx]).log_prob(row[idx])
                 for c in range(len(logw))]
        out.append(torch.logsumexp(logw + torch.stack(terms), 0))
    return torch.stack(out)


def every_pattern(rows: int = 3, seed: int = 1) -> torch.Tensor:
    """Random rows under every one of the 16 patterns of missing values."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for pattern in itertools.product([False, True], repeat=4):
        x = torch.randn(rows, 4, generator=gen, dtype=torch.float64)
        x[:, list(pattern)] = NAN
        out.append(x)
    return torch.cat(out)


@pytest.mark.parametrize("k", [1, 3])
def test_log_density_is_the_gaussian_marginal_of_the_observed_variables(k):
    model = model_with(k)
    x = every_pattern()
    want = reference_log_p(model, x)
    torch.testing.assert_close(model(x).detach(), want, rtol=1e-10, atol=1e-10)
    single = model_with(k).float()
    got = single(x.float()).detach().double()
    assert (got - want).abs().max() <= 1e-5 * want.abs().clamp_min(1).max()


def test_a_fully_observed_batch_and_a_batch_with_gaps_agree_row_by_row():
    """The fast path (no missing value) and the pattern path give the same densities."""
    model = model_with(3)
    x = torch.randn(20, 4, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    gaps = torch.cat([x, torch.full((1, 4), NAN, dtype=torch.float64)])
    torch.testing.assert_close(model(gaps)[:20].detach(), model(x).detach(), rtol=1e-12, atol=1e-12)


def test_mpe_fills_the_free_variables_with_the_conditional_mean_of_the_best_component():
    model = model_with(3, seed=2)
    logw, means, covs = components(model)
    x = every_pattern(rows=2, seed=3)[2:-2]  # not all observed, not all free
    states, log_p = mpe(model, x)
    for row, state, lp in zip(x, states, log_p):
        seen = ~torch.isnan(row)
        o, m = seen.nonzero().squeeze(1), (~seen).nonzero().squeeze(1)
        best, best_state = -math.inf, None
        for c in range(len(logw)):  # max over x_m of w_c N_c(x_o, x_m): the conditional mean
            mu, cov = means[c], covs[c]
            fill = row.clone()
            if len(o):
                gain = cov[m][:, o] @ torch.linalg.inv(cov[o][:, o])
                fill[m] = mu[m] + gain @ (row[o] - mu[o])
            else:
                fill[m] = mu[m]
            value = logw[c] + MultivariateNormal(mu, cov).log_prob(fill)
            if value > best:
                best, best_state = value, fill
        torch.testing.assert_close(state, best_state, rtol=1e-7, atol=1e-7)
        assert lp.item() >= reference_log_p(model, state.unsqueeze(0)).item() - 1e-9


def test_samples_given_evidence_follow_the_conditional_gaussian():
    text = MIXTURE.replace("{k}", "1")
    model = pcc.compile(text, backend="torch").double()
    cov = torch.tensor([[1.0, 0.8, 0.3], [0.8, 1.0, 0.5], [0.3, 0.5, 2.0]], dtype=torch.float64)
    mean = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    fam = model.families[0]
    with torch.no_grad():
        for name, value in fam.per_slot(mean.view(1, 1, 3),
                                        torch.linalg.cholesky(cov).view(1, 1, 3, 3)).items():
            getattr(model.leaf_params[0], name).copy_(value)
    gen = torch.Generator().manual_seed(0)
    n = 40_000
    free = sample(model, n, generator=gen)[:, :3]
    torch.testing.assert_close(free.mean(0), mean, atol=0.05, rtol=0)
    torch.testing.assert_close(torch.cov(free.t()), cov, atol=0.06, rtol=0)
    given = sample(model, n, torch.tensor([[1.5, NAN, NAN, 0.0]]), generator=gen)
    assert (given[:, 0] == 1.5).all() and (given[:, 3] == 0.0).all()
    gain = cov[1:, :1] / cov[0, 0]
    want_mean = mean[1:] + (gain * (1.5 - mean[0])).squeeze(1)
    want_cov = cov[1:, 1:] - gain @ cov[:1, 1:]
    torch.testing.assert_close(given[:, 1:3].mean(0), want_mean, atol=0.04, rtol=0)
    torch.testing.assert_close(torch.cov(given[:, 1:3].t()), want_cov, atol=0.05, rtol=0)


def test_one_em_step_on_complete_data_is_the_sample_mean_and_covariance():
    model = pcc.compile(MIXTURE.replace("{k}", "1"), backend="torch").double()
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(500, 4, generator=gen, dtype=torch.float64) @ torch.tensor(
        [[1.0, 0.5, 0.0, 0.0], [0.0, 1.0, 0.7, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 2.0]],
        dtype=torch.float64)
    EM(model, step_size=1.0, pseudocount=0.0, min_var=1e-6).step(x)
    _, means, covs = components(model)
    torch.testing.assert_close(means[0][:3], x[:, :3].mean(0))
    want = torch.cov(x[:, :3].t(), correction=0) + 1e-6 * torch.eye(3, dtype=torch.float64)
    torch.testing.assert_close(covs[0][:3, :3], want)


@pytest.mark.parametrize("seed", range(3))
def test_full_batch_em_with_missing_values_never_lowers_the_likelihood(seed):
    model = model_with(3, seed=seed)
    gen = torch.Generator().manual_seed(seed)
    base = torch.randn(300, 4, generator=gen, dtype=torch.float64)
    x = base @ torch.tensor([[1.0, 0.9, 0.2, 0.0], [0.0, 0.4, 0.8, 0.1], [0.0, 0.0, 0.3, 0.0],
                             [0.0, 0.0, 0.0, 1.0]], dtype=torch.float64)
    x = x.masked_fill(torch.rand(x.shape, generator=gen, dtype=torch.float64) < 0.3, NAN)
    em = EM(model, step_size=1.0, pseudocount=0.0, min_var=1e-6)
    assert_climbs(model, x, lambda: em.step(x), 8, rel=1e-8)


def test_gradients_reach_the_mean_and_the_factor():
    model = model_with(3).float()
    x = every_pattern().float()
    model(x).sum().backward()
    for name, value in model.leaf_params[0].as_dict().items():
        assert value.grad is not None and torch.isfinite(value.grad).all(), name
        assert value.grad.abs().sum() > 0, name


def with_params(model):
    return dataclasses.replace(model.circuit, params=model.ir_params())


def test_parameters_round_trip_through_text_and_checkpoints(tmp_path):
    model = model_with(3)
    path = tmp_path / "m.pt"
    checkpoint.save(model, path)
    x = every_pattern()
    torch.testing.assert_close(pcc.load(path).double()(x).detach(), model(x).detach())
    again = pcc.compile(to_text(with_params(model)), backend="torch").double()
    torch.testing.assert_close(again(x).detach(), model(x).detach())


@pytest.mark.parametrize("text, kind, message", [
    (MIXTURE.replace("{k}", "2").replace("mvnormal(d=3)", "mvnormal(d=2)"),
     "joint-size", "input 'g' gives mvnormal(d=2) 3 variables (a..c); one mvnormal density covers "
                   "exactly d = 2"),
    (MIXTURE.replace("{k}", "1") + "param g.cov = [[[1, 0, 0], [0, 1, 0], [0, 0, -1]]]\n",
     "param-value", "param g.cov: the matrix of unit 0 is not positive definite"),
    (MIXTURE.replace("{k}", "1") + "param g.cov = [[[1, 0.5, 0], [0, 1, 0], [0, 0, 1]]]\n",
     "param-value", "param g.cov: the matrix of unit 0 is not symmetric"),
])
def test_bad_joint_leaves_get_one_precise_diagnostic(text, kind, message):
    _, found = check_source(text)
    errors = [d for d in found if d.severity == "error"]
    assert [(d.kind, d.message) for d in errors] == [(kind, message)]


def correlated_table(rows: int, seed: int = 0) -> np.ndarray:
    """Columns 0-2 nearly linear in one factor, 3 independent of them, 4 binary."""
    rng = np.random.default_rng(seed)
    f = rng.standard_normal(rows)
    x = np.stack([f + 0.05 * rng.standard_normal(rows), 2 * f + 0.1 * rng.standard_normal(rows),
                  -f + 0.05 * rng.standard_normal(rows), rng.standard_normal(rows),
                  (rng.random(rows) < 0.3).astype(float)], 1)
    return x


def test_hclt_gives_strongly_correlated_columns_one_joint_leaf_and_a_latent_tree():
    x = correlated_table(400)
    circuit = pcc.structures.hclt(x, k=4, trees=2)
    text = pcc.to_text(circuit)
    assert "leaf mvnormal(d=3)\n" in text and "input leaf0 {x0..x2} k=4" in text
    forest = find_latent_forest(circuit)
    assert forest is not None and forest.grouped
    assert "mvnormal" not in pcc.to_text(pcc.structures.hclt(x, k=4, correlation=1.0))


def test_the_joint_leaf_fits_near_linear_columns_better_than_one_normal_per_column():
    train, test = correlated_table(600, seed=1), correlated_table(300, seed=2)
    train[::7, 1] = NAN  # missing values in the group, through initialization and EM
    scores = {}
    for correlation in (0.9, 1.0):
        circuit = pcc.structures.hclt(train, k=4, trees=1, correlation=correlation)
        model = pcc.fit(circuit, train, train, budget=20, seed=0, progress=False)
        with torch.no_grad():
            scores[correlation] = model(torch.as_tensor(test, dtype=torch.float32)).mean().item()
    assert scores[0.9] > scores[1.0] + 1.0, scores


def test_exporting_a_joint_leaf_is_refused_in_one_line():
    from pcc.interchange.export import export_text
    from pcc.interchange.unroll import ExportError
    with pytest.raises(ExportError, match="mvnormal leaf, one density over several variables"):
        export_text(with_params(model_with(1)), "spflow")
