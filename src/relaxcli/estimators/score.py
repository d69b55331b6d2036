"""Score-function estimators: REINFORCE with baselines, leave-one-out, ARM and DisARM.

All of them sample the exact discrete law ``method.discrete_law(raw)`` (Bernoulli(sigmoid(raw)) or
OneHotCategorical(softmax(raw))) and are exactly unbiased for d/draw E[f(b)].

REINFORCE (Williams 1992):  g = mean_s (f(b_s) - c) * grad log p(b_s), with baseline c:
    "none"            c = 0;
    "moving-average"  c = exponential moving average of past mean costs (decay 0.9 by default),
                      updated *after* use, so it is independent of the current samples;
    "learned"         c = a learned scalar (input-independent) parameter ``baseline``, trained
                      by least squares towards the cost: d/dc mean (f - c)^2 enters ``c.grad``
                      during the caller's ``loss.backward()`` (zero-valued attachment term).
REINFORCE leave-one-out (RLOO; Kool, van Hoof, Welling 2019, "Buy 4 REINFORCE samples"):
    n >= 2 samples, c_s = mean_{s' != s} f(b_{s'}).
ARM (Yin & Zhou 2019, arXiv 1807.11143), Bernoulli logits a, one u ~ U(0,1)^D per sample:
    g = (f(1[u > sigma(-a)]) - f(1[u < sigma(a)])) (u - 1/2).
DisARM (Dong, Mnih, Tucker 2020, arXiv 2006.10680), b = 1[u < sigma(a)], b~ = 1[1 - u < sigma(a)]:
    g_i = 1/2 (f(b) - f(b~)) (-1)^{b~_i} 1[b_i != b~_i] sigma(|a_i|).

Example:
    >>> import torch
    >>> from relaxcli.methods import get_method
    >>> from relaxcli.estimators import make_estimator
    >>> est = make_estimator(get_method("disarm"), n_samples=2)
    >>> theta = torch.zeros(1, 3, requires_grad=True)
    >>> out = est(theta, lambda b: ((b - 0.45) ** 2).sum(-1))
    >>> out.loss.backward(); theta.grad.shape, out.cost.shape
    (torch.Size([1, 3]), torch.Size([4, 1]))
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from relaxcli.errors import BadInput
from relaxcli.estimators.base import (
    Cost,
    Estimate,
    Estimator,
    attach_gradient,
    check_cost,
    sum_event,
)

BASELINES = ("none", "moving-average", "learned", "leave-one-out")


def _score_surrogate(f: Tensor, log_prob: Tensor, baseline: Tensor | float) -> Tensor:
    """mean f + (mean (sg(f) - sg(c)) log p - its value): gradient of the score estimator."""
    weight = (f.detach() - (baseline.detach() if isinstance(baseline, Tensor) else baseline))
    s = (weight * log_prob).mean()
    return f.mean() + (s - s.detach())


class ReinforceEstimator(Estimator):
    """REINFORCE with a baseline (see the module docstring for each choice).

    Options: ``baseline`` in none | moving-average | learned | leave-one-out; ``decay`` (moving
    average); ``family`` (bernoulli | categorical, default the method's).
    """

    families = ("bernoulli", "categorical")

    def __init__(self, method, n_samples: int = 1, family: str | None = None,
                 baseline: str | None = None, decay: float = 0.9):
        super().__init__(method, n_samples, family)
        baseline = baseline or "none"
        if baseline not in BASELINES:
            raise BadInput(f"unknown baseline {baseline!r}; choose from {', '.join(BASELINES)}")
        if baseline == "leave-one-out" and self.n_samples < 2:
            raise BadInput(f"the leave-one-out baseline ({method.name}) needs n_samples >= 2, got {self.n_samples}")
        if not 0.0 <= decay < 1.0:
            raise BadInput(f"decay must be in [0, 1), got {decay}")
        self.baseline_kind = baseline
        self.decay = float(decay)
        # moving average state (a buffer: saved with state_dict, not optimised)
        self.register_buffer("average", torch.zeros(()))
        self.register_buffer("seen", torch.zeros((), dtype=torch.long))
        self.baseline = nn.Parameter(torch.zeros(())) if baseline == "learned" else None

    def extra_repr(self) -> str:
        return super().extra_repr() + f", baseline={self.baseline_kind!r}"

    def forward(self, raw: Tensor, cost: Cost, tau: float | None = None) -> Estimate:
        n, batch = self.n_samples, raw.shape[0]
        law = self.method.discrete_law(raw, self.family)
        b = law.sample((n,))
        f = check_cost(cost(b), n, batch)
        log_prob = sum_event(law.log_prob(b), n, batch)
        kind = self.baseline_kind
        if kind == "none":
            c: Tensor | float = 0.0
        elif kind == "leave-one-out":
            c = (f.sum(0, keepdim=True) - f) / (n - 1)
        elif kind == "moving-average":
            c = self.average.to(f) if int(self.seen) > 0 else 0.0
        else:
            c = self.baseline.to(f)
        loss = _score_surrogate(f, log_prob, c)
        if self.training:
            mean_cost = f.detach().mean()
            if kind == "moving-average":
                first = int(self.seen) == 0
                self.average.copy_(mean_cost if first else self.decay * self.average + (1 - self.decay) * mean_cost)
                self.seen += 1
            elif kind == "learned" and self.baseline.requires_grad:
                # least squares towards the cost: d/dc mean (f - c)^2 = 2 (c - mean f)
                loss = attach_gradient(loss, self.baseline, 2.0 * (self.baseline.detach() - mean_cost))
        return Estimate(loss=loss, cost=f.detach())


def _bernoulli_logits(estimator: Estimator, raw: Tensor) -> Tensor:
    """The Bernoulli logits of ``method.discrete_law(raw)`` (ARM/DisARM need them explicitly)."""
    law = estimator.method.discrete_law(raw, "bernoulli")
    return law.logits


class ARMEstimator(Estimator):
    """Augment-REINFORCE-merge (Yin & Zhou 2019): antithetic pairs, two cost evaluations each."""

    families = ("bernoulli",)

    def forward(self, raw: Tensor, cost: Cost, tau: float | None = None) -> Estimate:
        n, batch = self.n_samples, raw.shape[0]
        a = _bernoulli_logits(self, raw)
        u = torch.rand((n,) + a.shape, dtype=a.dtype, device=a.device)
        b1 = (u > torch.sigmoid(-a.detach())).to(a.dtype)
        b2 = (u < torch.sigmoid(a.detach())).to(a.dtype)
        f = check_cost(cost(torch.cat([b1, b2])), 2 * n, batch)
        f1, f2 = f[:n], f[n:]
        diff = (f1 - f2).detach().reshape((n, batch) + (1,) * (a.dim() - 1))
        grad = (diff * (u - 0.5)).mean(0) / batch   # gradient of the batch-mean loss
        return Estimate(loss=attach_gradient(f.mean(), a, grad), cost=f.detach())


class DisARMEstimator(Estimator):
    """DisARM (Dong, Mnih, Tucker 2020): ARM with the uniform integrated out per dimension."""

    families = ("bernoulli",)

    def forward(self, raw: Tensor, cost: Cost, tau: float | None = None) -> Estimate:
        n, batch = self.n_samples, raw.shape[0]
        a = _bernoulli_logits(self, raw)
        u = torch.rand((n,) + a.shape, dtype=a.dtype, device=a.device)
        p = torch.sigmoid(a.detach())
        b = (u < p).to(a.dtype)
        b_anti = (1.0 - u < p).to(a.dtype)
        f = check_cost(cost(torch.cat([b, b_anti])), 2 * n, batch)
        diff = (f[:n] - f[n:]).detach().reshape((n, batch) + (1,) * (a.dim() - 1))
        sign = 1.0 - 2.0 * b_anti                      # (-1)^{b~_i}
        weight = sign * (b != b_anti).to(a.dtype) * torch.sigmoid(a.detach().abs())
        grad = (0.5 * diff * weight).mean(0) / batch
        return Estimate(loss=attach_gradient(f.mean(), a, grad), cost=f.detach())


class MuPropEstimator(Estimator):
    """MuProp (Gu, Levine, Sutskever, Mnih 2016, arXiv 1511.05176): the score function with a
    first-order Taylor control variate of f around the mean-field point mu = E[b], plus its
    analytic expectation:

        g = (f(b) - f(mu_) - f'(mu_)^T (b - mu_)) grad log p(b) + f'(mu_)^T grad mu,   mu_ = sg(mu).

    Unbiased for any differentiable f: E[(f(mu_) + f'(mu_)^T (b - mu_)) grad log p(b)] =
    grad E[f'(mu_)^T b] = f'(mu_)^T grad mu (the control variate is linear in b). ``cost`` is
    called once more at mu (shape (1, B, *latent)) and differentiated w.r.t. mu only (no gradient
    reaches the cost's own parameters from that call); a cost that is not differentiable in z
    gives f' = 0 (REINFORCE with the baseline f(mu)). Works for every law with ``mean`` and
    ``log_prob``: Bernoulli, categorical, and the k-subset law (``mean`` = exact marginals).
    """

    families = ("bernoulli", "categorical", "subset")

    def forward(self, raw: Tensor, cost: Cost, tau: float | None = None) -> Estimate:
        n, batch = self.n_samples, raw.shape[0]
        law = self.method.discrete_law(raw, self.family)
        b = law.sample((n,))
        f = check_cost(cost(b), n, batch)
        loss = f.mean()
        if not self._needs_raw_grad(raw):
            return Estimate(loss=loss, cost=f.detach())
        mu = law.mean                                             # (B, *latent), a function of raw
        at = mu.detach().unsqueeze(0).requires_grad_()            # (1, B, *latent)
        f_mu = check_cost(cost(at), 1, batch)
        slope = None
        if f_mu.requires_grad:
            (slope,) = torch.autograd.grad(f_mu.sum(), at, allow_unused=True)
        if slope is None:
            slope = torch.zeros_like(at)
        # the control variate h(b) = f(mu_) + f'(mu_)^T (b - mu_), per sample and row
        h = f_mu.detach() + sum_event(slope * (b - at.detach()), n, batch)
        log_prob = sum_event(law.log_prob(b), n, batch)
        score = ((f.detach() - h) * log_prob).mean()
        analytic = (slope.squeeze(0) * mu).sum() / batch          # f'(mu_)^T mu(raw), per row / B
        return Estimate(loss=loss + (score - score.detach()) + (analytic - analytic.detach()),
                        cost=f.detach())
