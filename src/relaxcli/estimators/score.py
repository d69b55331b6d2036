"""Score-function estimators: REINFORCE with baselines, leave-one-out, ARM and DisARM.

All of them sample the exact discrete law ``method.discrete_law(raw)`` (Bernoulli(sigmoid(raw)) or
OneHotCategorical(softmax(raw))) and are exactly unbiased for d/draw E[f(b)].

REINFORCE (Williams 1992):  g = mean_s (f(b_s) - c) * grad log p(b_s), with baseline c:
    "none"            c = 0;
    "moving-average"  c = exponential moving average of past mean costs (decay 0.9 by default),
                      updated *after* use, so it is independent of the current samples;
    "learned"         c = a learned baseline (:class:`LearnedBaseline`; here one scalar,
                      input-independent), trained by least squares towards the cost:
                      d/dc 1/2 mean (f - c)^2 enters ``c.grad`` during the caller's
                      ``loss.backward()`` (zero-valued attachment term);
    "leave-one-out"   (RLOO; Kool, van Hoof, Welling 2019, "Buy 4 REINFORCE samples"):
                      n >= 2 samples, c_s = mean_{s' != s} f(b_{s'}).
The closed forms are public functions that take samples already drawn (:func:`reinforce_gradient`,
:func:`leave_one_out`, :func:`update_moving_average`, :class:`LearnedBaseline`): ``relax
reinforce`` calls them with actions, log-probabilities and advantages (see
:mod:`relaxcli.estimators.policy`), :class:`ReinforceEstimator` with its own samples.
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

from enum import Enum

import torch
from torch import Tensor, nn

from relaxcli.estimators.base import (
    Cost,
    Estimate,
    Estimator,
    attach_gradient,
    check_cost,
    sum_event,
)


class Baseline(str, Enum):
    """The baselines c of REINFORCE: one vocabulary for the library and ``relax reinforce``.

    ``Baseline("mean")`` and ``Baseline("value")`` still parse: they are the names ``relax
    reinforce`` used before relaxcli 0.2 (issue 13) for moving-average and learned.
    """

    NONE = "none"
    MOVING_AVERAGE = "moving-average"
    LEARNED = "learned"
    LEAVE_ONE_OUT = "leave-one-out"

    @classmethod
    def _missing_(cls, value):
        return cls(RENAMED_BASELINES[value]) if isinstance(value, str) and value in RENAMED_BASELINES else None


#: old name -> current name (``relax reinforce --baseline mean|value`` before relaxcli 0.2)
RENAMED_BASELINES = {"mean": "moving-average", "value": "learned"}
BASELINES = tuple(b.value for b in Baseline)


def reinforce_gradient(inputs: Tensor, log_prob: Tensor, f: Tensor, baseline: Tensor | float = 0.0) -> Tensor:
    """REINFORCE at given samples: sum_s (f_s - c_s) d log p(b_s) / d inputs (Williams 1992).

    ``log_prob`` holds log p(b_s) of samples already drawn (any shape, a function of ``inputs``);
    ``f`` and ``baseline`` broadcast to it and are constants (detached). Each ``f_s`` may be a
    cost, a reward or an advantage: the estimate is of d/d inputs sum_s E[f_s], whatever its sign.
    Returns a tensor shaped like ``inputs``; when each row of ``inputs`` parameterises its own
    samples (logits of one example, one state's policy), row i is the estimate for row i.

    Example:
        >>> logits = torch.zeros(2, 3, requires_grad=True)
        >>> a = torch.tensor([0, 2])
        >>> log_p = torch.log_softmax(logits, -1).gather(-1, a[:, None])[:, 0]
        >>> reinforce_gradient(logits, log_p, torch.tensor([1.0, -1.0]))[0]   # (onehot - p) f
        tensor([ 0.6667, -0.3333, -0.3333])
    """
    c = baseline.detach() if isinstance(baseline, Tensor) else baseline
    weight = (f.detach() - c).expand_as(log_prob)
    grad, = torch.autograd.grad(log_prob, inputs, grad_outputs=weight, retain_graph=True, allow_unused=True)
    return torch.zeros_like(inputs) if grad is None else grad


def leave_one_out(f: Tensor, dim: int = 0) -> Tensor:
    """c_s = mean_{s' != s} f_{s'} along ``dim`` (needs at least 2 entries there; Kool et al. 2019).

    A valid baseline whenever the samples along ``dim`` are independent: c_s does not depend on
    sample s. Example: ``leave_one_out(torch.tensor([1., 2., 3.]))`` is ``[2.5, 2., 1.5]``.
    """
    n = f.shape[dim]
    if n < 2:
        raise ValueError(f"the leave-one-out baseline needs at least 2 samples, got {n}")
    return (f.sum(dim, keepdim=True) - f) / (n - 1)


def update_moving_average(average: Tensor, seen: Tensor, value: Tensor | float, decay: float) -> None:
    """In place: average <- value on the first update, else decay * average + (1 - decay) * value.

    The moving-average baseline reads ``average`` (0 before any update) *before* the update with
    the current samples' mean, so it is independent of them and the estimator stays unbiased.
    """
    value = torch.as_tensor(value, dtype=average.dtype, device=average.device)
    average.copy_(value if int(seen) == 0 else decay * average + (1 - decay) * value)
    seen += 1


class MovingAverage(nn.Module):
    """The moving-average baseline as a module (buffers ``average`` and ``seen``, saved with
    ``state_dict``): ``c = ma()`` before the samples are scored, ``ma.update(mean f)`` after.

    Example:
        >>> ma = MovingAverage(decay=0.5)
        >>> float(ma()); ma.update(2.0); ma.update(4.0); float(ma())
        0.0
        3.0
    """

    def __init__(self, decay: float = 0.9):
        super().__init__()
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must be in [0, 1), got {decay}")
        self.decay = float(decay)
        self.register_buffer("average", torch.zeros(()))
        self.register_buffer("seen", torch.zeros((), dtype=torch.long))

    def forward(self) -> Tensor:
        return self.average if int(self.seen) > 0 else torch.zeros_like(self.average)

    def update(self, value: Tensor | float) -> None:
        update_moving_average(self.average, self.seen, value, self.decay)


class LearnedBaseline(nn.Module):
    """A learned baseline c_psi(x), fitted by least squares to f: psi minimises 1/2 mean (c - f)^2.

    ``net=None``: c is one scalar parameter ``constant`` (input-independent), as in
    :class:`ReinforceEstimator`; else c_psi(x) = net(x) with the last dimension squeezed, e.g. a
    state-value network V_psi(s) in ``relax reinforce``. Any function of x that does not see the
    sample b itself keeps REINFORCE unbiased.

    Example:
        >>> c = LearnedBaseline()
        >>> c.loss(torch.tensor([1.0, 3.0])).backward(); float(c.constant.grad)   # c - mean f
        -2.0
    """

    def __init__(self, net: nn.Module | None = None):
        super().__init__()
        self.net = net
        self.constant = nn.Parameter(torch.zeros(())) if net is None else None

    def forward(self, x: Tensor | None = None) -> Tensor:
        return self.constant if self.net is None else self.net(x).squeeze(-1)

    def loss(self, f: Tensor, *x: Tensor) -> Tensor:
        """1/2 mean (c(x) - f)^2; ``x`` are the inputs of ``forward`` (none for the constant,
        the state for V(s), the state and the action for a critic Q(s, a))."""
        return 0.5 * ((self(*x) - f.detach()) ** 2).mean()


class ReinforceEstimator(Estimator):
    """REINFORCE with a baseline (see the module docstring for each choice).

    Options: ``baseline`` a :class:`Baseline` name (none | moving-average | learned |
    leave-one-out); ``decay`` (moving average); ``family`` (bernoulli | categorical, default the
    method's).
    """

    families = ("bernoulli", "categorical")

    def __init__(self, method, n_samples: int = 1, family: str | None = None,
                 baseline: str | None = None, decay: float = 0.9):
        super().__init__(method, n_samples, family)
        name = baseline or "none"
        try:
            kind = Baseline(name)
        except ValueError:
            raise ValueError(f"unknown baseline {name!r}; choose from {', '.join(BASELINES)}") from None
        if kind is Baseline.LEAVE_ONE_OUT and self.n_samples < 2:
            raise ValueError(f"the leave-one-out baseline ({method.name}) needs n_samples >= 2, got {self.n_samples}")
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must be in [0, 1), got {decay}")
        self.baseline_kind = kind
        self.decay = float(decay)
        # moving average state (a buffer: saved with state_dict, not optimised)
        self.register_buffer("average", torch.zeros(()))
        self.register_buffer("seen", torch.zeros((), dtype=torch.long))
        self.baseline = LearnedBaseline() if kind is Baseline.LEARNED else None

    def extra_repr(self) -> str:
        return super().extra_repr() + f", baseline={self.baseline_kind.value!r}"

    def forward(self, raw: Tensor, cost: Cost, tau: float | None = None) -> Estimate:
        n, batch = self.n_samples, raw.shape[0]
        law = self.method.discrete_law(raw, self.family)
        b = law.sample((n,))
        f = check_cost(cost(b), n, batch)
        log_prob = sum_event(law.log_prob(b), n, batch)
        kind = self.baseline_kind
        if kind is Baseline.NONE:
            c: Tensor | float = 0.0
        elif kind is Baseline.LEAVE_ONE_OUT:
            c = leave_one_out(f, dim=0)
        elif kind is Baseline.MOVING_AVERAGE:
            c = self.average.to(f) if int(self.seen) > 0 else 0.0
        else:
            c = self.baseline().to(f)
        loss = f.mean()
        if self._needs_raw_grad(raw):
            loss = attach_gradient(loss, raw, reinforce_gradient(raw, log_prob, f, c) / (n * batch))
        if self.training:
            if kind is Baseline.MOVING_AVERAGE:
                update_moving_average(self.average, self.seen, f.detach().mean(), self.decay)
            elif kind is Baseline.LEARNED and self.baseline.constant.requires_grad:
                psi = self.baseline.constant
                loss = attach_gradient(loss, psi, torch.autograd.grad(self.baseline.loss(f), psi)[0])
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
