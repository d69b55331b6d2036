"""The Laplace bridge between Dirichlet and logistic-normal laws (METHODS.md section 3).

Hobbhahn, Kristiadi, Hennig, "Fast Predictive Uncertainty for Classification with Bayesian Deep
Networks", UAI 2022, arXiv 2003.01227. In the softmax basis a Dirichlet(alpha) on the K-simplex
is approximated (Laplace approximation of the density of the softmax's logits, with the
sum-to-zero gauge) by ``z = softmax(y)``, ``y ~ N(mu, diag(Sigma_kk))``:

    mu_k      = log alpha_k - (1/K) sum_l log alpha_l
    Sigma_kk  = (1/alpha_k)(1 - 2/K) + (1/K^2) sum_l 1/alpha_l          (a *variance*)
    alpha_k   = (1/Sigma_kk)(1 - 2/K + (e^{mu_k}/K^2) sum_l e^{-mu_l})   (the inverse map)

The round trip alpha -> (mu, Sigma) -> alpha is exact. The bridge itself is an approximation:
the logistic-normal it returns is *not* the Dirichlet; :func:`kl_monte_carlo` measures the gap.

Erratum (relaxit): Sigma_kk is a variance; the standard deviation passed to the logistic-normal
is ``scale = sqrt(Sigma_kk)``.

Exact KL divergences between :class:`~relaxcli.distributions.LogisticNormalSoftmax` laws (and
with :class:`~relaxcli.distributions.InvertibleGaussian`) go through the Gaussians of the
log-ratios ``log(z_i / z_K)``. They are registered with ``torch.distributions.kl.register_kl`` in
:mod:`relaxcli.distributions.simplex`, next to the classes, so that ``kl_divergence`` works
whether or not this module was imported; :func:`kl_divergence` is re-exported here.

Example:
    >>> import torch
    >>> from torch.distributions import Dirichlet
    >>> ln = laplace_bridge(Dirichlet(torch.tensor([2.0, 5.0, 9.0])))
    >>> laplace_bridge(ln).concentration
    tensor([2.0000, 5.0000, 9.0000])
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.distributions import Dirichlet, Distribution, constraints, kl_divergence

from relaxcli.distributions.simplex import LogisticNormalSoftmax

__all__ = [
    "dirichlet_to_logistic_normal",
    "kl_divergence",
    "kl_monte_carlo",
    "laplace_bridge",
    "logistic_normal_to_dirichlet",
]


def _check_categories(x: Tensor, name: str) -> int:
    if x.dim() == 0 or x.shape[-1] < 2:
        raise ValueError(
            f"Expected {name} to have a last dimension of size K >= 2 (categories), "
            f"but found shape {tuple(x.shape)}"
        )
    return x.shape[-1]


def dirichlet_to_logistic_normal(alpha) -> tuple[Tensor, Tensor]:
    """Laplace bridge Dirichlet(alpha) -> logistic-normal ``(loc, scale)`` in the softmax basis.

    ``loc_k = log alpha_k - mean_l log alpha_l``;
    ``scale_k = sqrt((1/alpha_k)(1 - 2/K) + (1/K^2) sum_l 1/alpha_l)`` (the square root of the
    variance Sigma_kk; see the erratum in the module docstring).

    Example:
        >>> loc, scale = dirichlet_to_logistic_normal(torch.tensor([1.0, 1.0]))
        >>> loc, scale
        (tensor([0., 0.]), tensor([0.7071, 0.7071]))
    """
    alpha = torch.as_tensor(alpha, dtype=alpha.dtype if isinstance(alpha, Tensor) else None)
    if not alpha.is_floating_point():
        alpha = alpha.to(torch.get_default_dtype())
    k = _check_categories(alpha, "alpha")
    if not bool(torch.all(alpha > 0)):
        raise ValueError(f"Expected alpha to be positive (a Dirichlet concentration), but found {alpha}")
    log_alpha = alpha.log()
    loc = log_alpha - log_alpha.mean(-1, keepdim=True)
    inv = alpha.reciprocal()
    variance = inv * (1.0 - 2.0 / k) + inv.sum(-1, keepdim=True) / k**2
    return loc, variance.sqrt()


def logistic_normal_to_dirichlet(loc, scale) -> Tensor:
    """Inverse Laplace bridge: logistic-normal ``(loc, scale)`` -> Dirichlet concentration alpha.

    ``alpha_k = (1/Sigma_kk)(1 - 2/K + (e^{loc_k}/K^2) sum_l e^{-loc_l})`` with
    ``Sigma_kk = scale_k^2``; the product ``e^{loc_k} sum_l e^{-loc_l}`` is computed as
    ``exp(loc_k + logsumexp(-loc))`` so that large means do not overflow.

    Example:
        >>> logistic_normal_to_dirichlet(torch.zeros(2), torch.full((2,), 0.5 ** 0.5)).round(decimals=4)
        tensor([1., 1.])
    """
    loc, scale = torch.broadcast_tensors(*map(torch.as_tensor, (loc, scale)))
    k = _check_categories(loc, "loc")
    if not bool(torch.all(scale > 0)):
        raise ValueError(f"Expected scale to be positive (standard deviations), but found {scale}")
    log_cross = loc + torch.logsumexp(-loc, dim=-1, keepdim=True)
    return (1.0 - 2.0 / k + torch.exp(log_cross - 2 * math.log(k))) / scale.pow(2)


def laplace_bridge(dist: Distribution) -> Distribution:
    """Map a Dirichlet to its Laplace-bridge :class:`LogisticNormalSoftmax`, or back.

    ``laplace_bridge(Dirichlet(alpha))`` returns ``LogisticNormalSoftmax(loc, scale)`` from
    :func:`dirichlet_to_logistic_normal`; ``laplace_bridge(LogisticNormalSoftmax(loc, scale))``
    returns ``Dirichlet(alpha)`` from :func:`logistic_normal_to_dirichlet`. Batch shapes are kept.

    Example:
        >>> ln = laplace_bridge(Dirichlet(torch.ones(4)))
        >>> type(ln).__name__, ln.event_shape
        ('LogisticNormalSoftmax', torch.Size([4]))
    """
    if isinstance(dist, Dirichlet):
        loc, scale = dirichlet_to_logistic_normal(dist.concentration)
        return LogisticNormalSoftmax(loc, scale)
    if isinstance(dist, LogisticNormalSoftmax):
        return Dirichlet(logistic_normal_to_dirichlet(dist.loc, dist.scale))
    raise TypeError(
        "laplace_bridge expects a torch Dirichlet or a relaxcli LogisticNormalSoftmax, "
        f"got {type(dist).__name__}"
    )


def kl_monte_carlo(p: Distribution, q: Distribution, num_samples: int = 4096) -> tuple[Tensor, Tensor]:
    """Monte-Carlo estimate of KL(p || q) = E_p[log p(x) - log q(x)] and its standard error.

    Both laws need an exact ``log_prob`` on the same support (e.g. a Dirichlet and a
    :class:`LogisticNormalSoftmax`). Draws ``num_samples`` independent samples of ``p`` and
    returns ``(mean, std / sqrt(num_samples))`` of the log-ratio, each of shape
    ``p.batch_shape``. The estimate is unbiased; at the exact KL of two identical laws both are 0.

    Example:
        >>> d = Dirichlet(torch.tensor([2.0, 5.0, 9.0]))
        >>> est, se = kl_monte_carlo(d, laplace_bridge(d), num_samples=2000)
        >>> bool(est > -4 * se)
        True
    """
    if num_samples < 2:
        raise ValueError(f"Expected num_samples >= 2 (for a standard error), but found {num_samples}")
    with torch.no_grad():
        x = p.sample((num_samples,))
        # Dirichlet samples can hold exact zeros in float32 for small alpha; nudge them into the
        # open simplex so both log densities are evaluated at a point of the support.
        if p.support is constraints.simplex:
            x = x.clamp(min=torch.finfo(x.dtype).tiny)
            x = x / x.sum(-1, keepdim=True)
        ratio = p.log_prob(x) - q.log_prob(x)
    return ratio.mean(0), ratio.std(0) / math.sqrt(num_samples)
