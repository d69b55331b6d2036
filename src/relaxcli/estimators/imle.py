"""I-MLE as an estimator: perturb-and-MAP k-subsets, lambda applied to each sample's own cost
gradient (Niepert, Minervini, Franceschi 2021, arXiv 2106.01798).

    z_s = top-k(theta + tau eps_s),  eps_s ~ Sum-of-Gamma(k) (or Gumbel),
    z'_s = top-k(theta - lambda df(z_s)/dz + tau eps_s)      (the PID target, same eps_s),
    g = mean_s (z_s - z'_s) / lambda.

The distribution :class:`relaxcli.distributions.PerturbedTopK` does the same inside ``rsample``,
but there lambda multiplies the upstream gradient as it arrives, i.e. the gradient of the
*reduced* loss (divided by the batch size and sample count). Here df/dz is the gradient of each
sample's own cost f(z_s) (row b of ``cost`` depends on z_b only, as in every runner), so lambda
means the same thing whatever the batch size. The cost's own parameters get the gradient of the
mean cost at the z_s, as with every estimator.

Example:
    >>> import torch
    >>> from relaxcli.methods import get_method                       # doctest: +SKIP
    >>> est = IMLEEstimator(get_method("imle"), n_samples=2)           # doctest: +SKIP
"""

from __future__ import annotations

import torch
from torch import Tensor

from relaxcli.distributions.subset import topk_indicator
from relaxcli.estimators.base import Cost, Estimate, Estimator, attach_gradient, check_cost


class IMLEEstimator(Estimator):
    """I-MLE with per-sample lambda (see the module docstring). Settings (the record's): ``lambda``
    (> 0, the finite-difference step, 1.0), and those of its ``PerturbedTopK`` (``k``, ``noise``,
    ``terms``)."""

    families = ("subset",)

    def __init__(self, method, n_samples: int = 1, family: str | None = None, **settings):
        super().__init__(method, n_samples, family)
        method.check_settings(settings)  # ValueError naming the settings it takes
        self.options = settings

    def forward(self, raw: Tensor, cost: Cost, tau: float | None = None) -> Estimate:
        n, batch = self.n_samples, raw.shape[0]
        dist = self.method.build(raw, tau, **self.options)
        theta = dist.logits
        noise = dist.perturbation((n,))                                  # (n, B, ..., K), fixed
        z = topk_indicator(theta.detach() + noise, dist.k).requires_grad_(True)
        f = check_cost(cost(z), n, batch)
        loss = f.mean()
        if not (self._needs_raw_grad(raw) and theta.requires_grad):
            return Estimate(loss=loss, cost=f.detach())
        # each sample's own df(z_s)/dz (rows are independent): grad of the sum, not of the mean
        (slope,) = torch.autograd.grad(f.sum(), z, retain_graph=True, allow_unused=True)
        if slope is None:
            slope = torch.zeros_like(z)
        z_target = topk_indicator(theta.detach() - dist.lam * slope + noise, dist.k)
        grad = ((z.detach() - z_target) / dist.lam).mean(0) / batch      # batch-mean loss
        return Estimate(loss=attach_gradient(loss, theta, grad), cost=f.detach())
