"""Distributions on the open probability simplex built from Gaussians (METHODS.md sections 2-3).

Both laws here are *logistic-normal* laws: the log-ratios ``r_i = log z_i - log z_K`` (i < K) of a
sample ``z`` are Gaussian. That makes their densities exact and cheap (a Gaussian density plus the
change-of-variables term ``-sum_i log z_i``) and their KL divergences exact (the KL of the
log-ratio Gaussians, because ``z -> r`` is a bijection of the open simplex onto R^(K-1)).

- :class:`InvertibleGaussian` (IGR; Potapczynski, Loaiza-Ganem, Cunningham 2020, arXiv 1912.09588):
  ``z = softmax([y / tau, log delta])`` with ``y ~ N(loc, diag(scale^2))`` in R^(K-1).
- :class:`LogisticNormalSoftmax` (the Laplace bridge's target; Hobbhahn, Kristiadi, Hennig 2022,
  arXiv 2003.01227): ``z = softmax(y)`` with ``y ~ N(loc, diag(scale^2))`` in R^K.

Exact KL divergences are registered with :func:`torch.distributions.kl.register_kl` when this
module is imported (which ``import relaxcli.distributions`` does): IGR||IGR (any temperatures and
deltas), LN||LN, IGR||LN and LN||IGR, all from the log-ratio Gaussians' (mean, diagonal,
rank-one) structure without a dense covariance.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor
from torch.distributions import (
    Distribution,
    LowRankMultivariateNormal,
    MultivariateNormal,
    constraints,
)
from torch.distributions.kl import register_kl

from relaxcli.distributions._numerics import (
    SampleWithGenerator,
    as_tensor_pair,
    normal_log_density,
    renormalise,
    tiny,
)

__all__ = ["InvertibleGaussian", "LogisticNormalSoftmax"]

_EMPTY = torch.Size()


def _log_simplex(value: Tensor) -> Tensor:
    """log z, with z clamped at the dtype's smallest normal number.

    A float32 softmax can underflow to an exact 0 although the sampled point lies in the open
    simplex; clamping keeps log_prob finite there (the true value is not representable anyway).
    """
    return torch.log(value.clamp(min=tiny(value)))


def _check_last_dim(x: Tensor, name: str, minimum: int, what: str) -> None:
    if x.dim() == 0 or x.shape[-1] < minimum:
        raise ValueError(
            f"Expected parameter {name} to have a last dimension of size >= {minimum} ({what}), "
            f"but found shape {tuple(x.shape)}"
        )


class InvertibleGaussian(SampleWithGenerator, Distribution):
    r"""Invertible Gaussian reparameterisation (IGR) on the K-simplex.

    ``y = loc + scale * eps`` with ``eps ~ N(0, I)`` in R^(K-1), then the softmax++ of ``y / tau``:

    ``z = softmax([y_1/tau, ..., y_{K-1}/tau, log delta])``, so ``z_K = delta / (sum_j e^{y_j/tau} + delta)``.

    The map is a bijection onto the open simplex with inverse
    ``y_i = tau (log z_i - log z_K + log delta)``, hence the exact density

    ``log p(z) = sum_{i<K} log N(y_i; loc_i, scale_i) + (K-1) log tau - sum_{i=1..K} log z_i``.

    Paper: Potapczynski, Loaiza-Ganem, Cunningham, "Invertible Gaussian Reparameterization:
    Revisiting the Gumbel-Softmax", NeurIPS 2020, arXiv 1912.09588.

    Args:
        loc: means of the Gaussian, shape ``(..., K-1)``.
        scale: standard deviations (> 0), shape ``(..., K-1)``.
        temperature: tau > 0 (float or tensor broadcastable to the batch shape).
        delta: the fixed last logit is ``log delta``; delta > 0 (default 1).

    Example:
        >>> import torch
        >>> d = InvertibleGaussian(torch.zeros(2), torch.ones(2), temperature=0.5)
        >>> z = d.rsample((4,))
        >>> z.shape, bool(torch.allclose(z.sum(-1), torch.ones(4)))
        (torch.Size([4, 3]), True)
        >>> d.log_prob(z).shape
        torch.Size([4])
    """

    arg_constraints: ClassVar[dict[str, constraints.Constraint]] = {
        "loc": constraints.independent(constraints.real, 1),
        "scale": constraints.independent(constraints.positive, 1),
        "temperature": constraints.positive,
        "delta": constraints.positive,
    }
    support = constraints.simplex
    has_rsample = True

    @classmethod
    def infer_shapes(cls, loc, scale, temperature=(), delta=()):
        """(batch_shape, event_shape) from the argument shapes: loc, scale (..., K-1) -> event (K,)."""
        loc, scale = torch.Size(loc), torch.Size(scale)
        batch = torch.broadcast_shapes(loc[:-1], scale[:-1], torch.Size(temperature), torch.Size(delta))
        return batch, torch.Size((torch.broadcast_shapes(loc[-1:], scale[-1:])[0] + 1,))

    def __init__(self, loc, scale, temperature, delta=1.0, validate_args=None):
        loc, scale = as_tensor_pair(loc, scale)
        loc, scale = torch.broadcast_tensors(loc, scale)
        _check_last_dim(loc, "loc", 1, "K-1 Gaussian coordinates for K >= 2 categories")
        temperature = torch.as_tensor(temperature, dtype=loc.dtype, device=loc.device)
        delta = torch.as_tensor(delta, dtype=loc.dtype, device=loc.device)
        batch_shape = torch.broadcast_shapes(loc.shape[:-1], temperature.shape, delta.shape)
        km1 = loc.shape[-1:]
        self.loc = loc.expand(batch_shape + km1)
        self.scale = scale.expand(batch_shape + km1)
        self.temperature = temperature.expand(batch_shape)
        self.delta = delta.expand(batch_shape)
        super().__init__(batch_shape, torch.Size([km1[0] + 1]), validate_args=validate_args)

    @classmethod
    def standard_prior(cls, num_categories: int, temperature, delta=1.0, batch_shape=(),
                       dtype=None, device=None, validate_args=None) -> InvertibleGaussian:
        """The standard IGR prior (loc 0, scale 1) over ``num_categories`` categories.

        This is the prior a VAE with an IGR latent uses (Potapczynski et al. 2020, section 4).

        Example:
            >>> InvertibleGaussian.standard_prior(10, 0.5, batch_shape=(20,)).event_shape
            torch.Size([10])
        """
        if num_categories < 2:
            raise ValueError(f"Expected num_categories >= 2, but found {num_categories}")
        shape = torch.Size(batch_shape) + (num_categories - 1,)
        dtype = dtype or torch.get_default_dtype()
        loc = torch.zeros(shape, dtype=dtype, device=device)
        return cls(loc, torch.ones_like(loc), temperature, delta, validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(InvertibleGaussian, _instance)
        batch_shape = torch.Size(batch_shape)
        new.loc = self.loc.expand(batch_shape + self.loc.shape[-1:])
        new.scale = self.scale.expand(batch_shape + self.scale.shape[-1:])
        new.temperature = self.temperature.expand(batch_shape)
        new.delta = self.delta.expand(batch_shape)
        super(InvertibleGaussian, new).__init__(batch_shape, self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    def _softmax_pp(self, y: Tensor) -> Tensor:
        # softmax of [y/tau, log delta]: the fixed last logit makes the map invertible, and the
        # softmax form is stable for any size of y/tau (no exp overflow).
        tau = self.temperature.unsqueeze(-1)
        last = torch.log(self.delta).unsqueeze(-1).expand(y.shape[:-1] + (1,))
        return renormalise(torch.softmax(torch.cat([y / tau, last], dim=-1), dim=-1))

    def rsample(self, sample_shape: torch.Size = _EMPTY, generator: torch.Generator | None = None) -> Tensor:
        shape = self._extended_shape(sample_shape)[:-1] + self.loc.shape[-1:]
        eps = torch.randn(shape, dtype=self.loc.dtype, device=self.loc.device, generator=generator)
        return self._softmax_pp(self.loc + self.scale * eps)

    def gaussian_coordinates(self, value: Tensor) -> Tensor:
        """The inverse map ``y_i = tau (log z_i - log z_K + log delta)`` (shape ``(..., K-1)``)."""
        log_z = _log_simplex(value)
        tau = self.temperature.unsqueeze(-1)
        return tau * (log_z[..., :-1] - log_z[..., -1:] + torch.log(self.delta).unsqueeze(-1))

    def log_prob(self, value: Tensor) -> Tensor:
        if self._validate_args:
            self._validate_sample(value)
        log_z = _log_simplex(value)
        tau = self.temperature.unsqueeze(-1)
        y = tau * (log_z[..., :-1] - log_z[..., -1:] + torch.log(self.delta).unsqueeze(-1))
        log_normal = normal_log_density(y, self.loc, self.scale)
        km1 = self.loc.shape[-1]
        return log_normal.sum(-1) + km1 * torch.log(self.temperature) - log_z.sum(-1)

    def log_ratio_distribution(self) -> MultivariateNormal:
        """Law of ``r_i = log z_i - log z_K``: N(loc/tau - log delta, diag(scale^2/tau^2))."""
        tau = self.temperature.unsqueeze(-1)
        mean = self.loc / tau - torch.log(self.delta).unsqueeze(-1)
        return MultivariateNormal(mean, scale_tril=torch.diag_embed(self.scale / tau),
                                  validate_args=False)


class LogisticNormalSoftmax(SampleWithGenerator, Distribution):
    r"""Logistic-normal law in the softmax basis: ``z = softmax(y)``, ``y ~ N(loc, diag(scale^2))`` in R^K.

    Softmax is not injective on R^K, but the log-ratios ``r_i = y_i - y_K = log(z_i / z_K)``
    (i < K) are Gaussian with mean ``m_i = loc_i - loc_K`` and covariance
    ``S = diag(scale_{1:K-1}^2) + scale_K^2 11^T``, and ``z -> r`` is a bijection of the open
    simplex, so the exact density is

    ``log p(z) = log N(r; m, S) - sum_{i=1..K} log z_i``.

    ``N(r; m, S)`` is evaluated with :class:`~torch.distributions.LowRankMultivariateNormal`
    (diagonal plus rank one: exactly the structure of S), which needs only a 1x1 Cholesky factor
    and stays well conditioned where a dense Cholesky of S would fail (e.g. tiny scale_{1:K-1}
    next to a large scale_K in float32).

    This is the target family of the Laplace bridge (:mod:`relaxcli.bridge`; Hobbhahn, Kristiadi,
    Hennig, "Fast Predictive Uncertainty for Classification with Bayesian Deep Networks",
    UAI 2022, arXiv 2003.01227).

    Args:
        loc: means of y, shape ``(..., K)`` with K >= 2.
        scale: standard deviations of y (> 0), shape ``(..., K)``.

    Example:
        >>> import torch
        >>> d = LogisticNormalSoftmax(torch.tensor([0.0, 1.0, 2.0]), torch.ones(3))
        >>> z = d.rsample((5,))
        >>> z.shape, d.log_prob(z).shape
        (torch.Size([5, 3]), torch.Size([5]))
    """

    arg_constraints: ClassVar[dict[str, constraints.Constraint]] = {
        "loc": constraints.independent(constraints.real, 1),
        "scale": constraints.independent(constraints.positive, 1),
    }
    support = constraints.simplex
    has_rsample = True

    @classmethod
    def infer_shapes(cls, loc, scale):
        """(batch_shape, event_shape) from the argument shapes: loc, scale (..., K) -> event (K,)."""
        shape = torch.broadcast_shapes(torch.Size(loc), torch.Size(scale))
        return shape[:-1], shape[-1:]

    def __init__(self, loc, scale, validate_args=None):
        loc, scale = as_tensor_pair(loc, scale)
        loc, scale = torch.broadcast_tensors(loc, scale)
        _check_last_dim(loc, "loc", 2, "K >= 2 categories")
        shape = loc.shape
        self.loc, self.scale = loc, scale
        super().__init__(shape[:-1], shape[-1:], validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(LogisticNormalSoftmax, _instance)
        batch_shape = torch.Size(batch_shape)
        new.loc = self.loc.expand(batch_shape + self.event_shape)
        new.scale = self.scale.expand(batch_shape + self.event_shape)
        super(LogisticNormalSoftmax, new).__init__(batch_shape, self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    def rsample(self, sample_shape: torch.Size = _EMPTY, generator: torch.Generator | None = None) -> Tensor:
        shape = self._extended_shape(sample_shape)
        eps = torch.randn(shape, dtype=self.loc.dtype, device=self.loc.device, generator=generator)
        return renormalise(torch.softmax(self.loc + self.scale * eps, dim=-1))

    def log_ratio_distribution(self) -> LowRankMultivariateNormal:
        """Law of ``r_i = log z_i - log z_K``: N(loc_{<K} - loc_K, diag(scale_{<K}^2) + scale_K^2 11^T)."""
        mean = self.loc[..., :-1] - self.loc[..., -1:]
        cov_factor = self.scale[..., -1:].unsqueeze(-1).expand(mean.shape + (1,))
        return LowRankMultivariateNormal(mean, cov_factor, self.scale[..., :-1].pow(2),
                                         validate_args=False)

    def log_prob(self, value: Tensor) -> Tensor:
        if self._validate_args:
            self._validate_sample(value)
        log_z = _log_simplex(value)
        r = log_z[..., :-1] - log_z[..., -1:]
        return self.log_ratio_distribution().log_prob(r) - log_z.sum(-1)


# ----------------------------------------------------------------------------- exact KLs
# Both families are logistic-normal: r = log(z_{<K} / z_K) is Gaussian with covariance
# S = diag(d) + c 11^T (IGR: c = 0; LN: d = scale_{<K}^2, c = scale_K^2), and z -> r is one
# bijection shared by every such law (it depends on neither tau nor delta). So every KL between
# them is the KL of the two Gaussians, computed here from (mean, d, c) with Sherman-Morrison and
# no dense matrix, in forms without cancellation (a dense Cholesky failed in float32 for scales
# three orders of magnitude apart, and the low-rank path lost 11 nats).
def _diag_plus_ones(d: Distribution) -> tuple[Tensor, Tensor, Tensor]:
    """(mean, d, c) of the log-ratio Gaussian N(mean, diag(d) + c 11^T) of an IGR or LN law."""
    if isinstance(d, InvertibleGaussian):
        tau = d.temperature.unsqueeze(-1)
        mean = d.loc / tau - torch.log(d.delta).unsqueeze(-1)
        return mean, (d.scale / tau).pow(2), torch.zeros_like(mean[..., :1])
    mean = d.loc[..., :-1] - d.loc[..., -1:]
    return mean, d.scale[..., :-1].pow(2), d.scale[..., -1:].pow(2)


def _leave_one_out_sum(a: Tensor) -> Tensor:
    """sum_{j != i} a_j for every i, from prefix and suffix sums (never s - a_i, which cancels)."""
    zero = torch.zeros_like(a[..., :1])
    before = torch.cat([zero, a[..., :-1].cumsum(-1)], -1)
    after = torch.cat([a.flip(-1)[..., :-1].cumsum(-1).flip(-1), zero], -1)
    return before + after


def _kl_gaussians_diag_plus_ones(m1, d1, c1, m2, d2, c2) -> Tensor:
    """KL(N(m1, D1 + c1 11^T) || N(m2, D2 + c2 11^T)), all terms nonnegative where they can be.

    With a = 1/d2, s = sum a, g = 1 + c2 s (so S2^{-1} = D2^{-1} - c2 a a^T / g):
    tr(S2^{-1} S1) = sum_i d1_i a_i (1 + c2 s_{-i}) / g + c1 s / g   (s_{-i}: leave-one-out sum),
    delta^T S2^{-1} delta = [sum a delta^2 + c2 s sum a (delta - mean_a delta)^2] / g,
    log|S| = sum log d + log1p(c sum 1/d).
    """
    a = d2.reciprocal()
    s = a.sum(-1, keepdim=True)
    g = 1.0 + c2 * s
    trace = ((d1 * a * (1.0 + c2 * _leave_one_out_sum(a))).sum(-1, keepdim=True) + c1 * s) / g
    delta = m1 - m2
    centre = (a * delta).sum(-1, keepdim=True) / s
    quad = ((a * delta.pow(2)).sum(-1, keepdim=True)
            + c2 * s * (a * (delta - centre).pow(2)).sum(-1, keepdim=True)) / g
    log_det1 = d1.log().sum(-1, keepdim=True) + torch.log1p(c1 * d1.reciprocal().sum(-1, keepdim=True))
    log_det2 = d2.log().sum(-1, keepdim=True) + torch.log1p(c2 * s)
    n = m1.shape[-1]
    return (0.5 * (trace + quad - n + log_det2 - log_det1)).squeeze(-1)


def _kl_logistic_normal(p: Distribution, q: Distribution) -> Tensor:
    """Exact KL between two logistic-normal laws on the simplex (IGR or LN, any tau and delta)."""
    if p.event_shape != q.event_shape:
        raise ValueError(f"KL between laws on simplices of different sizes: {tuple(p.event_shape)} "
                         f"and {tuple(q.event_shape)}")
    return _kl_gaussians_diag_plus_ones(*_diag_plus_ones(p), *_diag_plus_ones(q))


@register_kl(InvertibleGaussian, InvertibleGaussian)
def _kl_igr_igr(p: InvertibleGaussian, q: InvertibleGaussian) -> Tensor:
    """KL(IGR(m1,s1,tau1,delta1) || IGR(m2,s2,tau2,delta2)): the KL of the log-ratio Gaussians
    N(m/tau - log delta, diag(s^2/tau^2)) (exact: r = log(z_{<K}/z_K) is a bijection shared by
    both, whatever their temperatures and deltas). For equal tau and delta it is
    sum_i KL(N(m1_i, s1_i) || N(m2_i, s2_i))."""
    return _kl_logistic_normal(p, q)


@register_kl(LogisticNormalSoftmax, LogisticNormalSoftmax)
def _kl_ln_ln(p: LogisticNormalSoftmax, q: LogisticNormalSoftmax) -> Tensor:
    """KL of the log-ratio Gaussians (exact: z -> log(z_{<K}/z_K) is a bijection)."""
    return _kl_logistic_normal(p, q)


@register_kl(InvertibleGaussian, LogisticNormalSoftmax)
def _kl_igr_ln(p: InvertibleGaussian, q: LogisticNormalSoftmax) -> Tensor:
    """Exact KL through the log-ratio Gaussians (both laws are logistic-normal)."""
    return _kl_logistic_normal(p, q)


@register_kl(LogisticNormalSoftmax, InvertibleGaussian)
def _kl_ln_igr(p: LogisticNormalSoftmax, q: InvertibleGaussian) -> Tensor:
    """Exact KL through the log-ratio Gaussians (both laws are logistic-normal)."""
    return _kl_logistic_normal(p, q)
