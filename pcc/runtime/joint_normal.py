"""Multivariate normal leaves, `mvnormal(d)`: one density over the d variables of an input jointly.

Unit k of an input region over x = (x_1 .. x_d) is N(x; mu_k, Sigma_k) with Sigma_k = L_k L_k^T.
Like every family, the parameters live per slot (region, variable), so ties, checkpoints and the
leaf groups need nothing new: slot j of a region holds mu_k[j] (`mean` [M, K]) and row j of L_k
(`chol` [M, K, d], its diagonal entry L_k[j, j] as a logarithm, entries right of it unused).

Missing values are marginalized exactly: with o the observed and m the missing variables of a row,

    log f(x) = log N(x_o; mu_o, Sigma_oo)                                  (sum semiring)
             = log N(x_o; mu_o, Sigma_oo) - |m|/2 log 2 pi + 1/2 log det P_mm     (max semiring)

(P = Sigma^-1; the second is max over x_m, at the conditional mean). Rows are evaluated by
missingness pattern: for pattern o, Sigma_o = o o^T * Sigma + diag(1 - o) has the observed block and
the identity elsewhere, so one batched Cholesky per (region, unit) serves every row of the pattern.
The region's log-density is put in its first slot (the others are 0), so that the product over
slots, the usual input value, is the joint density.

EM's statistics with missing values are the conditional moments under the current parameters:

    E[x_m | x_o, k] = mu_m - P_mm^-1 P_mo (x_o - mu_o),   Cov[x_m | x_o, k] = P_mm^-1

(from A = m m^T * P + diag(o): A^-1 has P_mm^-1 on the missing block and 1 on the observed one).
"""
from __future__ import annotations

import torch
from torch import Tensor

from .leaves import LOG_2PI, LeafFamily, _tiny


class MultivariateNormal(LeafFamily):
    fields = ("mean", "chol")
    ir_fields = ("mean", "cov")

    def __init__(self, family):
        super().__init__(family)
        self.d = int(family.arg("d"))

    @property
    def discrete(self) -> bool:
        return False

    @property
    def joint(self) -> int:
        """The number of variables one density covers (consecutive slots of a region)."""
        return self.d

    # ------------------------------------------------------------------ parameters
    def factor(self, params: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Per-slot parameters [R*d, K, ...] -> (mu [R, K, d], L [R, K, d, d] lower triangular)."""
        d = self.d
        mean = params["mean"].unflatten(0, (-1, d)).transpose(1, 2)
        rows = params["chol"].unflatten(0, (-1, d)).permute(0, 2, 1, 3)  # [R, K, row, col]
        diag = torch.diagonal(rows, dim1=-2, dim2=-1).exp()
        return mean, rows.tril(-1) + torch.diag_embed(diag)

    def per_slot(self, mean: Tensor, lower: Tensor) -> dict[str, Tensor]:
        """The inverse of `factor`."""
        diag = torch.diagonal(lower, dim1=-2, dim2=-1)
        rows = lower.tril(-1) + torch.diag_embed(torch.log(diag))
        return {"mean": mean.transpose(1, 2).flatten(0, 1),
                "chol": rows.permute(0, 2, 1, 3).flatten(0, 1)}

    def init(self, m, k, generator):
        return {"mean": torch.randn(m, k, generator=generator, dtype=torch.float64),
                "chol": torch.zeros(m, k, self.d, dtype=torch.float64)}

    def to_ir(self, params):
        mean, lower = self.factor(params)
        cov = lower @ lower.transpose(-1, -2)  # [1, K, d, d]
        return {"mean": params["mean"], "cov": cov.permute(0, 2, 1, 3).flatten(0, 1)}

    def from_ir(self, fields):
        d = self.d
        cov = fields["cov"].double().unflatten(0, (-1, d)).permute(0, 2, 1, 3)
        lower = torch.linalg.cholesky(0.5 * (cov + cov.transpose(-1, -2)))
        mean = fields["mean"].double().unflatten(0, (-1, d)).transpose(1, 2)
        return self.per_slot(mean, lower)

    # ------------------------------------------------------------------ densities
    def evaluate(self, xt, var_index, params, semiring="sum"):
        """Region log-densities in each region's first slot: [R*d, B, K] (module doc), computed
        in float64 and returned in xt's dtype."""
        d = self.d
        dtype = xt.dtype  # computed in float64 (re-factorizing blocks of L L^T loses digits)
        x = xt.index_select(0, var_index).unflatten(0, (-1, d)).transpose(1, 2).double()
        mean, lower = (v.double() for v in self.factor(params))
        regions, batch, k = x.shape[0], x.shape[1], mean.shape[1]
        observed = ~torch.isnan(x)
        x = torch.where(observed, x, torch.zeros_like(x))
        log_det = torch.log(torch.diagonal(lower, dim1=-2, dim2=-1)).sum(-1)  # [R, K]
        if bool(observed.all()):
            diff = x.unsqueeze(1) - mean.unsqueeze(2)  # [R, K, B, d]
            z = torch.linalg.solve_triangular(lower, diff.transpose(-1, -2), upper=False)
            ld = (-0.5 * (z * z).sum(-2) - log_det.unsqueeze(-1) - 0.5 * d * LOG_2PI)
            ld = ld.transpose(1, 2)  # [R, B, K]
        else:
            ld = x.new_zeros(regions, batch, k)
            cov = lower @ lower.transpose(-1, -2)
            precision = torch.cholesky_inverse(lower) if semiring == "max" else None
            for mask, r, b in _patterns(observed):
                seen = mask.to(x.dtype)
                if not bool(mask.any()) and semiring != "max":
                    continue  # all missing: log 1
                factor = (lower if bool(mask.all())  # [R, K, d, d]
                          else torch.linalg.cholesky(_masked(cov, seen)))
                diff = (x[r, b].unsqueeze(1) - mean[r]) * seen  # [A, K, d]
                z = torch.linalg.solve_triangular(factor[r], diff.unsqueeze(-1), upper=False)
                value = (-0.5 * (z * z).sum((-2, -1))
                         - torch.log(torch.diagonal(factor, dim1=-2, dim2=-1)).sum(-1)[r]
                         - 0.5 * float(mask.sum()) * LOG_2PI)
                if semiring == "max" and not bool(mask.all()):
                    # + max over the missing block: its conditional density at its mean
                    block = torch.linalg.cholesky(_masked(precision, 1 - seen))
                    half_log_det = torch.log(torch.diagonal(block, dim1=-2, dim2=-1)).sum(-1)
                    value = value + half_log_det[r] - 0.5 * float((~mask).sum()) * LOG_2PI
                ld = ld.index_put((r, b), value)
        ld = ld.to(dtype)
        return torch.cat([ld.unsqueeze(1), ld.new_zeros(regions, d - 1, batch, k)], 1).flatten(0, 1)

    # ------------------------------------------------------------------ EM
    def stats(self, x, obs, gamma, params=None):
        """Per slot: n [M, K] (the region's flow), t [M, K] (sum of gamma E[x_j]), t2 [M, K, d]
        (row j of sum of gamma E[x x^T]); missing values by their conditional moments."""
        d = self.d
        xr = x.unflatten(0, (-1, d)).transpose(1, 2).double()  # [R, B, d]
        observed = obs.unflatten(0, (-1, d)).transpose(1, 2) > 0
        g = gamma.unflatten(0, (-1, d))[:, 0].double()  # [R, B, K]
        n = g.sum(1)
        if bool(observed.all()):
            t = torch.einsum("rbk,rbi->rki", g, xr)
            outer = (xr.unsqueeze(-1) * xr.unsqueeze(-2)).flatten(-2)  # [R, B, d*d]
            t2 = torch.bmm(g.transpose(1, 2), outer).unflatten(-1, (d, d))
        else:
            mean, lower = (v.double() for v in self.factor(params))
            precision = torch.cholesky_inverse(lower)
            t = g.new_zeros(*n.shape, d)
            t2 = g.new_zeros(*n.shape, d, d)
            for mask, r, b in _patterns(observed):
                seen = mask.to(g.dtype)
                weight = g[r, b]  # [A, K]
                value = xr[r, b].unsqueeze(1).expand(-1, weight.shape[1], -1)  # [A, K, d]
                second = value.unsqueeze(-1) * value.unsqueeze(-2)
                if not bool(mask.all()):
                    inverse = torch.cholesky_inverse(torch.linalg.cholesky(
                        _masked(precision, 1 - seen)))  # P_mm^-1 on the missing block
                    delta = (value - mean[r]) * seen
                    shift = -(1 - seen) * (precision[r] @ delta.unsqueeze(-1)).squeeze(-1)
                    value = value * seen + (1 - seen) * (
                        mean[r] + (inverse[r] @ shift.unsqueeze(-1)).squeeze(-1))
                    spread = inverse - torch.diag_embed(seen.expand(d))
                    second = value.unsqueeze(-1) * value.unsqueeze(-2) + spread[r]
                t.index_add_(0, r, weight.unsqueeze(-1) * value)
                t2.index_add_(0, r, weight.unsqueeze(-1).unsqueeze(-1) * second)
        regions, k = n.shape
        dtype = gamma.dtype
        return {"n": n.unsqueeze(1).expand(regions, d, k).flatten(0, 1).to(dtype),
                "t": t.transpose(1, 2).flatten(0, 1).to(dtype),
                "t2": t2.permute(0, 2, 1, 3).flatten(0, 1).to(dtype)}

    def moments(self, stats: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        """Per-slot statistics -> n [R, K], sum [R, K, d], sum of outer products [R, K, d, d]."""
        d = self.d
        n = stats["n"].unflatten(0, (-1, d))[:, 0]
        t = stats["t"].unflatten(0, (-1, d)).transpose(1, 2)
        t2 = stats["t2"].unflatten(0, (-1, d)).permute(0, 2, 1, 3)
        return n, t, t2

    def estimate(self, stats, old, pseudocount, min_prob, min_var):
        """mu = (t + c mu_old) / (n + c), Sigma = (t2 + c (Sigma_old + mu_old mu_old^T)) / (n + c)
        - mu mu^T + min_var I: the MAP estimate with c = pseudocount virtual rows drawn from the
        old density, a ridge of min_var."""
        n, t, t2 = (v.double() for v in self.moments(stats))
        old_mean, old_lower = (v.double() for v in self.factor(old))
        denom = (n + pseudocount).clamp_min(_tiny(n)).unsqueeze(-1)
        mean = (t + pseudocount * old_mean) / denom
        second = (t2 + pseudocount * second_moment(old_mean, old_lower)) / denom.unsqueeze(-1)
        return self.per_slot(mean, positive_definite_factor(covariance(second, mean), min_var))

    # ------------------------------------------------------------------ queries
    def conditional(self, mean: Tensor, lower: Tensor, evidence: Tensor, draw: bool,
                    generator: torch.Generator | None = None) -> Tensor:
        """Values [A, d] of units (mu [A, d], L [A, d, d]) given evidence [A, d] (NaN = free):
        the free variables drawn from their conditional density (`draw`) or at its mean, the
        density's maximum; observed values kept."""
        mean, lower = mean.double(), lower.double()
        seen = (~torch.isnan(evidence)).double()
        free = 1 - seen
        e = torch.nan_to_num(evidence.double(), nan=0.0)
        precision = torch.cholesky_inverse(lower)
        block = torch.linalg.cholesky(_masked(precision, free))  # A = m m^T P + diag(o)
        shift = -free * (precision @ ((e - mean) * seen).unsqueeze(-1)).squeeze(-1)
        centre = mean + torch.cholesky_solve(shift.unsqueeze(-1), block).squeeze(-1)
        if draw:  # + A^-1/2 noise: covariance P_mm^-1 on the free block
            noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype,
                                device=mean.device)
            centre = centre + torch.linalg.solve_triangular(
                block.transpose(-1, -2), noise.unsqueeze(-1), upper=True).squeeze(-1)
        return seen * e + free * centre



def second_moment(mean: Tensor, lower: Tensor) -> Tensor:
    """E[x x^T] = L L^T + mu mu^T of N(mu, L L^T): [..., d, d]."""
    return lower @ lower.transpose(-1, -2) + mean.unsqueeze(-1) * mean.unsqueeze(-2)


def covariance(second: Tensor, mean: Tensor) -> Tensor:
    """E[x x^T] - mu mu^T: [..., d, d]."""
    return second - mean.unsqueeze(-1) * mean.unsqueeze(-2)


def positive_definite_factor(cov: Tensor, ridge: float) -> Tensor:
    """The Cholesky factor of (cov + cov^T) / 2 + ridge I (float64), the ridge raised tenfold
    where that is not positive definite (rounding, or fewer rows than variables and ridge 0)."""
    eye = torch.eye(cov.shape[-1], dtype=cov.dtype, device=cov.device)
    sym = 0.5 * (cov + cov.transpose(-1, -2))
    scale = sym.diagonal(dim1=-2, dim2=-1).abs().mean(-1).clamp_min(1.0)[..., None, None]
    extra = torch.full_like(scale, max(ridge, 0.0))
    for _ in range(30):
        lower, info = torch.linalg.cholesky_ex(sym + extra * eye)
        bad = (info > 0)[..., None, None]
        if not bool(bad.any()):
            return lower
        extra = torch.where(bad, torch.clamp_min(extra * 10, 1e-12 * scale), extra)
    return lower


def _masked(matrix: Tensor, keep: Tensor) -> Tensor:
    """keep keep^T * matrix + diag(1 - keep): the block of `keep` (0/1 [d]) and 1 elsewhere."""
    return matrix * (keep.unsqueeze(-1) * keep.unsqueeze(-2)) + torch.diag_embed(1 - keep)


def _patterns(observed: Tensor):
    """(mask [d] bool, r [A], b [A]) for every missingness pattern of observed [R, B, d]."""
    d = observed.shape[-1]
    bits = 2 ** torch.arange(d, device=observed.device)
    codes = (observed.long() * bits).sum(-1)  # [R, B]
    for code in torch.unique(codes).tolist():
        r, b = (codes == code).nonzero(as_tuple=True)
        yield (torch.tensor([(code >> j) & 1 for j in range(d)], dtype=torch.bool,
                            device=observed.device), r, b)

