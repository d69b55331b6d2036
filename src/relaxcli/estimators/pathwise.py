"""Pathwise (reparameterised or straight-through) estimator for every registry distribution.

surrogate = mean_{s, b} f(z_{s,b}),  z ~ method.build(raw, tau).rsample((n,)),
so ``loss.backward()`` differentiates through the sample (Kingma & Welling 2014; for relaxed
methods the gradient is that of the relaxed objective, hence biased for the discrete one; for
straight-through methods the backward pass is the method's surrogate).

Example:
    >>> import torch
    >>> from relaxcli.methods import get_method
    >>> from relaxcli.estimators import make_estimator
    >>> est = make_estimator(get_method("gumbel-softmax"), n_samples=4)      # doctest: +SKIP
    >>> raw = torch.zeros(2, 3, 5, requires_grad=True)                        # doctest: +SKIP
    >>> out = est(raw, lambda z: z[..., 0].sum(-1), tau=0.5)                  # doctest: +SKIP
    >>> out.cost.shape                                                        # doctest: +SKIP
    torch.Size([4, 2])
"""

from __future__ import annotations

from torch import Tensor

from relaxcli.estimators.base import Cost, Estimate, Estimator, check_cost


class PathwiseEstimator(Estimator):
    """f(rsample) averaged over ``n_samples`` draws; ``options`` go to ``method.build``."""

    def __init__(self, method, n_samples: int = 1, family: str | None = None, **options):
        super().__init__(method, n_samples, family)
        if method.builder is None:
            raise ValueError(f"method {method.name!r} has no distribution to differentiate through")
        unknown = set(options) - set(method.options)
        if unknown:
            allowed = ", ".join(method.options) or "none"
            raise ValueError(f"unknown option(s) {sorted(unknown)} for method {method.name!r} (allowed: {allowed})")
        self.options = options

    def forward(self, raw: Tensor, cost: Cost, tau: float | None = None) -> Estimate:
        dist = self.method.build(raw, tau, **self.options)
        z = dist.rsample((self.n_samples,))
        f = check_cost(cost(z), self.n_samples, raw.shape[0])
        return Estimate(loss=f.mean(), cost=f.detach())
