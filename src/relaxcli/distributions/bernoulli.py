"""The Bernoulli family (METHODS.md section 1): relaxations of one binary unit, event_shape ().

Classes (all ``has_rsample = True``; parameters may be Python floats or tensors, noise is drawn
per output element with the parameters' dtype and device):

- :class:`RelaxedBernoulli`: binary Concrete z = sigma((logits + L)/tau), optional hard
  straight-through forward value.
- :class:`GaussianRelaxedBernoulli`: stochastic gate z = clamp(loc + scale*eps, 0, 1).
- :class:`HardConcrete`: stretched and clamped binary Concrete with exact zeros and ones.
- :class:`StochasticTimesSmooth`: h = sg(b) * sqrt(p), b ~ Bernoulli(sqrt(p)).
- :class:`StraightThroughBernoulli`: b ~ Bernoulli(p) forward, gradient of p backward.

Every ``log_prob`` is exact: a density on (0, 1), a mass for hard values, and for the mixed laws
(Gaussian gate, Hard Concrete) the log of the atom's mass at exactly 0 or 1 plus the log density
inside, all in log space.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import Tensor
from torch.distributions import constraints
from torch.distributions.distribution import Distribution
from torch.distributions.utils import broadcast_all, lazy_property, logits_to_probs, probs_to_logits
from torch.nn.functional import binary_cross_entropy_with_logits, softplus

from relaxcli.distributions._hard import HardSwitch
from relaxcli.distributions._numerics import (
    SampleWithGenerator,
    clamped_logit,
    log1m_sigmoid,
    log_ndtr,
    log_sigmoid,
    logistic_noise,
    normal_log_density,
    straight_through,
    uniform_open,
)

_EMPTY = torch.Size()  # default sample_shape (a module singleton, not a call)

__all__ = [
    "GaussianRelaxedBernoulli",
    "HardConcrete",
    "LogitRelaxedBernoulli",
    "ReinMaxBernoulli",
    "RelaxedBernoulli",
    "StochasticTimesSmooth",
    "StraightThroughBernoulli",
]


# ----------------------------------------------------------------------------- shared pieces
class _ZeroOr(constraints.Constraint):
    """The two-point set {0, c} (c a tensor, elementwise): the support of Stochastic Times Smooth.

    Equality with ``c`` is checked up to a few ulps so that values recomputed from the same
    parameters (e.g. by a Pyro model and guide) are recognised.
    """

    is_discrete = True
    event_dim = 0

    def __init__(self, c: Tensor):
        self.c = c
        super().__init__()

    def check(self, value: Tensor) -> Tensor:
        return (value == 0) | _close(value, self.c)


def _close(value: Tensor, c: Tensor) -> Tensor:
    tol = 8 * torch.finfo(c.dtype).eps
    return (value - c).abs() <= tol * c.abs()


def _binary_params(probs, logits, extra=()):
    """Broadcast (extra..., probs or logits); return (tensors, is_probs). Exactly one is given."""
    if (probs is None) == (logits is None):
        raise ValueError("Either `probs` or `logits` must be specified, but not both.")
    param = probs if probs is not None else logits
    return broadcast_all(*extra, param), probs is not None




def _concrete_logit_log_density(x: Tensor, logits: Tensor, temperature: Tensor) -> Tensor:
    """Log density of X = (logits + L)/tau at x: log tau + d - 2 softplus(d), d = logits - tau x.

    (The logistic density of L = tau x - logits, times the Jacobian tau.)
    """
    d = logits - temperature * x
    return torch.log(temperature) + d - 2.0 * softplus(d)


class _BinaryMixin(SampleWithGenerator):
    """``probs`` and ``logits`` of a Bernoulli parameter, whichever was not given, computed lazily."""

    @lazy_property
    def logits(self) -> Tensor:
        return probs_to_logits(self.probs, is_binary=True)

    @lazy_property
    def probs(self) -> Tensor:
        return logits_to_probs(self.logits, is_binary=True)

    def _expand_binary(self, new, batch_shape: torch.Size) -> None:
        # Copy only what was given or already computed, so lazy properties stay lazy.
        if "probs" in self.__dict__:
            new.probs = self.probs.expand(batch_shape)
        if "logits" in self.__dict__:
            new.logits = self.logits.expand(batch_shape)

    def _init_bernoulli_parameter(self, probs, logits, validate_args) -> None:
        """__init__ of a law whose only parameter is a Bernoulli probability (or its logit)."""
        (param,), is_probs = _binary_params(probs, logits)
        if is_probs:
            self.probs = param
        else:
            self.logits = param
        Distribution.__init__(self, param.shape, validate_args=validate_args)

    def _expand_bernoulli_parameter(self, cls, batch_shape, _instance):
        """``expand`` of such a law (its only state is probs/logits)."""
        new = self._get_checked_instance(cls, _instance)
        batch_shape = torch.Size(batch_shape)
        self._expand_binary(new, batch_shape)
        Distribution.__init__(new, batch_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    def _bernoulli_entropy(self) -> Tensor:
        """-p log p - (1 - p) log(1 - p), from the logits (exact at p near 0 or 1)."""
        logits = self.logits
        return binary_cross_entropy_with_logits(logits, torch.sigmoid(logits), reduction="none")

    def _enumerate_binary(self, expand: bool = True) -> Tensor:
        """[0, 1] over a new leading dimension, (2, *batch_shape) (``expand=False``: batch dims 1)."""
        values = torch.arange(2, dtype=self.logits.dtype, device=self.logits.device)
        values = values.view((-1,) + (1,) * len(self.batch_shape))
        return values.expand((-1,) + self.batch_shape) if expand else values

    def _bernoulli_log_mass(self, value: Tensor) -> Tensor:
        """log Bernoulli(value; p) = value log p + (1 - value) log(1 - p), as torch's Bernoulli."""
        logits, value = broadcast_all(self.logits, value)
        return -binary_cross_entropy_with_logits(logits, value, reduction="none")


# ----------------------------------------------------------------------------- RelaxedBernoulli
class RelaxedBernoulli(HardSwitch, _BinaryMixin, Distribution):
    r"""Binary Concrete / relaxed Bernoulli (Maddison, Mnih, Teh 2017; Jang, Gu, Poole 2017).

    z = sigma((logits + L) / tau),  L ~ Logistic(0, 1) = logit(U).

    Density on (0, 1), with alpha = e^logits (computed in log space through x = logit z)::

        p(z) = tau alpha z^(-tau-1) (1-z)^(-tau-1) / (alpha z^(-tau) + (1-z)^(-tau))^2

    ``hard=True``: the forward value is 1{z > 1/2} (exactly 0 or 1, distributed Bernoulli(p)),
    the gradient is that of z (straight-through, ``hard + (z - sg(z))``); ``log_prob`` is then the
    Bernoulli log-mass and ``support`` is boolean.

    The temperature is broadcast with the parameter (so it may vary across the batch).

    ``log_prob`` is a function of the value alone. In float32, z rounds to exactly 0 or 1 once
    |(logits + L)/tau| > ~17 (19% of the samples at logits 0, tau = 0.1); such a value is
    evaluated at the nearest interior float (as torch's ``SigmoidTransform`` does), which is not
    the point that was drawn (up to ~18 nats off at tau = 0.1). For exact densities of samples,
    sample and evaluate in logit space: :meth:`logit_space` gives :class:`LogitRelaxedBernoulli`.

    Example:
        >>> import torch
        >>> d = RelaxedBernoulli(0.5, logits=torch.zeros(3))
        >>> z = d.rsample((4,))
        >>> z.shape, bool(((z > 0) & (z < 1)).all())
        (torch.Size([4, 3]), True)
        >>> d.log_prob(z).shape
        torch.Size([4, 3])
    """

    arg_constraints: ClassVar[dict[str, constraints.Constraint]] = {
        "temperature": constraints.positive,
        "probs": constraints.unit_interval,
        "logits": constraints.real,
    }
    has_rsample = True

    def __init__(self, temperature, probs=None, logits=None, *, hard: bool = False, validate_args=None):
        (self.temperature, param), is_probs = _binary_params(probs, logits, extra=(temperature,))
        if is_probs:
            self.probs = param
        else:
            self.logits = param
        self.hard = bool(hard)
        super().__init__(param.shape, validate_args=validate_args)

    @constraints.dependent_property(is_discrete=False, event_dim=0)
    def support(self):
        return constraints.boolean if self.hard else constraints.unit_interval

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(RelaxedBernoulli, _instance)
        batch_shape = torch.Size(batch_shape)
        new.temperature = self.temperature.expand(batch_shape)
        self._expand_binary(new, batch_shape)
        new.hard = self.hard
        super(RelaxedBernoulli, new).__init__(batch_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    def rsample(self, sample_shape: torch.Size = _EMPTY, generator: torch.Generator | None = None) -> Tensor:
        shape = self._extended_shape(sample_shape)
        logits = self.logits
        y = logits + logistic_noise(shape, logits, generator)
        z = torch.sigmoid(y / self.temperature)
        if not self.hard:
            return z
        # 1{z > 1/2} == 1{y > 0} since tau > 0; the comparison on y avoids sigmoid rounding.
        return straight_through((y > 0).to(z.dtype), z)

    def log_prob(self, value: Tensor) -> Tensor:
        if self._validate_args:
            self._validate_sample(value)
        if self.hard:
            return self._bernoulli_log_mass(value)
        x = clamped_logit(torch.as_tensor(value, dtype=self.logits.dtype, device=self.logits.device))
        # density of x = logit z, minus log |dz/dx| = log z + log(1 - z)
        return (_concrete_logit_log_density(x, self.logits, self.temperature)
                - log_sigmoid(x) - log1m_sigmoid(x))

    @property
    def mean(self) -> Tensor:
        if self.hard:
            return self.probs
        raise NotImplementedError("the binary Concrete mean has no closed form (it is an integral "
                                  "of a logistic-normal-like law); estimate it by sampling")

    @property
    def variance(self) -> Tensor:
        if self.hard:
            return self.probs * (1 - self.probs)
        raise NotImplementedError("the binary Concrete variance has no closed form; estimate it "
                                  "by sampling (LogitRelaxedBernoulli has one in logit space)")

    def entropy(self) -> Tensor:
        if self.hard:
            return self._bernoulli_entropy()
        raise NotImplementedError("the binary Concrete entropy has no closed form (E[log sigma(x) "
                                  "+ log sigma(-x)] of a logistic x); LogitRelaxedBernoulli's is "
                                  "2 - log tau")

    @property
    def has_enumerate_support(self) -> bool:  # the hard law is Bernoulli, the soft one continuous
        return self.hard

    def enumerate_support(self, expand: bool = True) -> Tensor:
        if not self.hard:
            raise NotImplementedError("RelaxedBernoulli.enumerate_support of soft values: the "
                                      "relaxed law is continuous; use hard=True")
        return self._enumerate_binary(expand)

    def logit_space(self) -> LogitRelaxedBernoulli:
        """The law of logit z = (logits + L)/tau with the same parameters (exact float32 densities)."""
        given = {"probs": self.probs} if "probs" in self.__dict__ and "logits" not in self.__dict__ \
            else {"logits": self.logits}
        return LogitRelaxedBernoulli(self.temperature, validate_args=False, **given)


# ----------------------------------------------------------------------------- logit space
class LogitRelaxedBernoulli(_BinaryMixin, Distribution):
    r"""The binary Concrete in logit space: x = (logits + L)/tau, L ~ Logistic(0, 1), so that
    sigmoid(x) ~ :class:`RelaxedBernoulli` (as torch's ``LogitRelaxedBernoulli``).

    Density on R: log p(x) = log tau + d - 2 softplus(d), d = logits - tau x (a logistic law
    with location logits/tau and scale 1/tau). Exact at every float32 sample, including those
    whose sigmoid rounds to exactly 0 or 1; use it for Monte-Carlo KLs and importance weights
    (log q(z) - log p(z) = log q(x) - log p(x) for two such laws: the Jacobian cancels).

    Example:
        >>> import torch
        >>> d = LogitRelaxedBernoulli(0.1, logits=torch.zeros(3))
        >>> x = d.rsample((4,))
        >>> x.shape, bool(torch.isfinite(d.log_prob(x)).all())
        (torch.Size([4, 3]), True)
    """

    arg_constraints: ClassVar[dict[str, constraints.Constraint]] = {
        "temperature": constraints.positive,
        "probs": constraints.unit_interval,
        "logits": constraints.real,
    }
    support = constraints.real
    has_rsample = True

    def __init__(self, temperature, probs=None, logits=None, *, validate_args=None):
        (self.temperature, param), is_probs = _binary_params(probs, logits, extra=(temperature,))
        if is_probs:
            self.probs = param
        else:
            self.logits = param
        super().__init__(param.shape, validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(LogitRelaxedBernoulli, _instance)
        batch_shape = torch.Size(batch_shape)
        new.temperature = self.temperature.expand(batch_shape)
        self._expand_binary(new, batch_shape)
        super(LogitRelaxedBernoulli, new).__init__(batch_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    def rsample(self, sample_shape: torch.Size = _EMPTY, generator: torch.Generator | None = None) -> Tensor:
        shape = self._extended_shape(sample_shape)
        logits = self.logits
        return (logits + logistic_noise(shape, logits, generator)) / self.temperature

    def log_prob(self, value: Tensor) -> Tensor:
        if self._validate_args:
            self._validate_sample(value)
        value = torch.as_tensor(value, dtype=self.logits.dtype, device=self.logits.device)
        return _concrete_logit_log_density(value, self.logits, self.temperature)

    @property
    def mean(self) -> Tensor:
        """logits / tau (x is logistic with location logits/tau, scale 1/tau)."""
        return self.logits / self.temperature

    @property
    def variance(self) -> Tensor:
        """pi^2 / (3 tau^2)."""
        return (math.pi ** 2 / 3.0) / self.temperature.pow(2) + torch.zeros_like(self.logits)

    def entropy(self) -> Tensor:
        """2 - log tau (a logistic law with scale 1/tau)."""
        return 2.0 - torch.log(self.temperature) + torch.zeros_like(self.logits)

    def relaxed(self) -> RelaxedBernoulli:
        """The law of sigmoid(x)."""
        given = {"probs": self.probs} if "probs" in self.__dict__ and "logits" not in self.__dict__ \
            else {"logits": self.logits}
        return RelaxedBernoulli(self.temperature, validate_args=False, **given)


# ----------------------------------------------------------------------------- Gaussian gate
class GaussianRelaxedBernoulli(SampleWithGenerator, Distribution):
    r"""Gaussian stochastic gate (Yamada, Lindenbaum, Negahban, Kluger 2020, arXiv 1810.04247).

    z = clamp(loc + scale * eps, 0, 1),  eps ~ N(0, 1).

    A mixed law on [0, 1]: atoms P(z=0) = Phi(-loc/scale) and P(z=1) = Phi((loc-1)/scale), and
    the density N(z; loc, scale^2) on (0, 1). ``log_prob`` returns the log of the atom's mass at
    exactly 0 or 1 and the log density inside. :attr:`prob_nonzero` = Phi(loc/scale) is the
    expected-L0 term the paper regularises.

    Example:
        >>> import torch
        >>> d = GaussianRelaxedBernoulli(torch.tensor([0.5, 1.2]), scale=0.5)
        >>> d.rsample((2,)).shape
        torch.Size([2, 2])
        >>> float(d.prob_nonzero[0]) > 0.8
        True
    """

    arg_constraints: ClassVar[dict[str, constraints.Constraint]] = {
        "loc": constraints.real, "scale": constraints.positive}
    support = constraints.unit_interval
    has_rsample = True

    def __init__(self, loc, scale=0.5, *, validate_args=None):
        self.loc, self.scale = broadcast_all(loc, scale)  # scale > 0: checked when validating
        super().__init__(self.loc.shape, validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(GaussianRelaxedBernoulli, _instance)
        batch_shape = torch.Size(batch_shape)
        new.loc = self.loc.expand(batch_shape)
        new.scale = self.scale.expand(batch_shape)
        super(GaussianRelaxedBernoulli, new).__init__(batch_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    def rsample(self, sample_shape: torch.Size = _EMPTY, generator: torch.Generator | None = None) -> Tensor:
        shape = self._extended_shape(sample_shape)
        eps = torch.randn(shape, dtype=self.loc.dtype, device=self.loc.device, generator=generator)
        return (self.loc + self.scale * eps).clamp(0.0, 1.0)

    @property
    def log_prob_zero(self) -> Tensor:
        """log P(z = 0) = log Phi(-loc/scale)."""
        return log_ndtr(-self.loc / self.scale)

    @property
    def log_prob_one(self) -> Tensor:
        """log P(z = 1) = log Phi((loc - 1)/scale)."""
        return log_ndtr((self.loc - 1.0) / self.scale)

    @property
    def prob_zero(self) -> Tensor:
        """P(z = 0) = Phi(-loc/scale)."""
        return self.log_prob_zero.exp()

    @property
    def prob_one(self) -> Tensor:
        """P(z = 1) = Phi((loc - 1)/scale)."""
        return self.log_prob_one.exp()

    @property
    def prob_nonzero(self) -> Tensor:
        """P(z != 0) = Phi(loc/scale), the expected L0 norm of the gate."""
        return torch.special.ndtr(self.loc / self.scale)

    def _clamp_moments(self) -> tuple[Tensor, Tensor]:
        """E[z], E[z^2] of z = clamp(x, 0, 1), x ~ N(loc, scale^2), with a = -loc/scale,
        b = (1 - loc)/scale: E[z] = loc dPhi + scale (phi(a) - phi(b)) + (1 - Phi(b)) and
        E[z^2] = loc^2 dPhi + 2 loc scale (phi(a) - phi(b)) + scale^2 (dPhi + a phi(a) - b phi(b))
        + (1 - Phi(b)), dPhi = Phi(b) - Phi(a) (tails from log_ndtr, not 1 - Phi)."""
        loc, scale = self.loc, self.scale
        a, b = -loc / scale, (1.0 - loc) / scale
        phi_a = torch.exp(-0.5 * a * a) / math.sqrt(2.0 * math.pi)
        phi_b = torch.exp(-0.5 * b * b) / math.sqrt(2.0 * math.pi)
        inside = 1.0 - self.prob_zero - self.prob_one          # Phi(b) - Phi(a)
        d_phi = phi_a - phi_b
        first = loc * inside + scale * d_phi + self.prob_one
        second = (loc.pow(2) * inside + 2.0 * loc * scale * d_phi
                  + scale.pow(2) * (inside + a * phi_a - b * phi_b) + self.prob_one)
        return first, second

    @property
    def mean(self) -> Tensor:
        """E[clamp(loc + scale eps, 0, 1)] in closed form (see ``_clamp_moments``)."""
        return self._clamp_moments()[0]

    @property
    def variance(self) -> Tensor:
        first, second = self._clamp_moments()
        return (second - first.pow(2)).clamp(min=0.0)

    def entropy(self):
        raise NotImplementedError("GaussianRelaxedBernoulli.entropy: a mixed law (atoms plus a "
                                  "density) has no entropy w.r.t. a single base measure")

    def log_prob(self, value: Tensor) -> Tensor:
        if self._validate_args:
            self._validate_sample(value)
        value = torch.as_tensor(value, dtype=self.loc.dtype, device=self.loc.device)
        loc, scale, value = broadcast_all(self.loc, self.scale, value)
        inside = normal_log_density(value, loc, scale)
        out = torch.where(value <= 0, self.log_prob_zero.expand_as(inside),
                          torch.where(value >= 1, self.log_prob_one.expand_as(inside), inside))
        outside = (value < 0) | (value > 1)
        return out.masked_fill(outside, -math.inf)


# ----------------------------------------------------------------------------- Hard Concrete
class HardConcrete(SampleWithGenerator, Distribution):
    r"""Hard Concrete gate (Louizos, Welling, Kingma 2018, arXiv 1712.01312).

    s = sigma((L + logits)/tau),  L ~ Logistic(0, 1);  s_bar = s (zeta - gamma) + gamma;
    z = clamp(s_bar, 0, 1), with ``limits = (gamma, zeta)``, gamma < 0 < 1 < zeta.

    ``HardConcrete(temperature=2/3, probs=None, logits=None, *, limits=(-0.1, 1.1))``: logits is
    log alpha (relaxit's first argument is alpha itself, so the parameter is keyword-only and a
    positional relaxit call fails instead of meaning something else); probs = sigma(log alpha)
    = P(s > 1/2) is accepted too.

    Erratum (the relaxit blog): it writes g ~ Gumbel(0, 1) in the formula for s; the binary
    Concrete uses logistic noise L (the difference of two Gumbels), as here.

    Mixed law on [0, 1]:
    P(z=0) = sigma(tau log(-gamma/zeta) - logits), P(z=1) = sigma(logits - tau log((1-gamma)/(zeta-1))),
    and inside (0, 1) the stretched binary Concrete density / (zeta - gamma).
    :attr:`prob_nonzero` = sigma(logits - tau log(-gamma/zeta)) is the expected L0 penalty;
    :meth:`deterministic_gate` = clamp(sigma(logits)(zeta - gamma) + gamma, 0, 1) for test time.

    Example:
        >>> import torch
        >>> d = HardConcrete(logits=torch.tensor([0.0, 2.0]))
        >>> z = d.rsample((1000,))
        >>> bool(((z >= 0) & (z <= 1)).all()), bool((z == 0).any())
        (True, True)
        >>> d.deterministic_gate().shape
        torch.Size([2])
    """

    arg_constraints: ClassVar[dict[str, constraints.Constraint]] = {
        "logits": constraints.real, "temperature": constraints.positive}
    support = constraints.unit_interval
    has_rsample = True

    def __init__(self, temperature=2.0 / 3.0, probs=None, logits=None, *, limits=(-0.1, 1.1),
                 validate_args=None):
        if (probs is None) == (logits is None):
            raise ValueError("Either `probs` or `logits` (log alpha) must be specified, but not both.")
        if probs is not None:  # P(s > 1/2) = sigma(log alpha): probs = alpha / (1 + alpha)
            probs = torch.as_tensor(probs)
            logits = probs_to_logits(probs if probs.is_floating_point() else probs.float(), is_binary=True)
        self.logits, self.temperature = broadcast_all(logits, temperature)
        gamma, zeta = (float(v) for v in limits)
        if not (gamma < 0.0 and zeta > 1.0):
            raise ValueError(f"Expected parameter limits = (gamma, zeta) with gamma < 0 < 1 < zeta "
                             f"(so that z has atoms at 0 and 1), but found {tuple(limits)}")
        self.limits = (gamma, zeta)
        super().__init__(self.logits.shape, validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(HardConcrete, _instance)
        batch_shape = torch.Size(batch_shape)
        new.logits = self.logits.expand(batch_shape)
        new.temperature = self.temperature.expand(batch_shape)
        new.limits = self.limits
        super(HardConcrete, new).__init__(batch_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    def rsample(self, sample_shape: torch.Size = _EMPTY, generator: torch.Generator | None = None) -> Tensor:
        shape = self._extended_shape(sample_shape)
        gamma, zeta = self.limits
        s = torch.sigmoid((self.logits + logistic_noise(shape, self.logits, generator)) / self.temperature)
        return (s * (zeta - gamma) + gamma).clamp(0.0, 1.0)

    def _zero_threshold(self) -> Tensor:
        # z = 0  <=>  L <= tau log(-gamma/zeta) - logits
        gamma, zeta = self.limits
        return self.temperature * math.log(-gamma / zeta) - self.logits

    def _one_threshold(self) -> Tensor:
        # z = 1  <=>  L >= tau log((1-gamma)/(zeta-1)) - logits
        gamma, zeta = self.limits
        return self.temperature * math.log((1.0 - gamma) / (zeta - 1.0)) - self.logits

    @property
    def log_prob_zero(self) -> Tensor:
        """log P(z = 0) = log sigma(tau log(-gamma/zeta) - logits)."""
        return log_sigmoid(self._zero_threshold())

    @property
    def log_prob_one(self) -> Tensor:
        """log P(z = 1) = log sigma(logits - tau log((1-gamma)/(zeta-1)))."""
        return log1m_sigmoid(self._one_threshold())

    @property
    def prob_zero(self) -> Tensor:
        """P(z = 0)."""
        return torch.sigmoid(self._zero_threshold())

    @property
    def prob_one(self) -> Tensor:
        """P(z = 1)."""
        return torch.sigmoid(-self._one_threshold())

    @property
    def prob_nonzero(self) -> Tensor:
        """P(z != 0) = sigma(logits - tau log(-gamma/zeta)), the expected L0 norm."""
        return torch.sigmoid(-self._zero_threshold())

    def deterministic_gate(self) -> Tensor:
        """Test-time gate clamp(sigma(logits)(zeta - gamma) + gamma, 0, 1)."""
        gamma, zeta = self.limits
        return (torch.sigmoid(self.logits) * (zeta - gamma) + gamma).clamp(0.0, 1.0)

    def log_prob(self, value: Tensor) -> Tensor:
        if self._validate_args:
            self._validate_sample(value)
        gamma, zeta = self.limits
        value = torch.as_tensor(value, dtype=self.logits.dtype, device=self.logits.device)
        logits, tau, value = broadcast_all(self.logits, self.temperature, value)
        # Interior: s = (z - gamma)/(zeta - gamma) in (0, 1) strictly, x = logit s; a safe z keeps
        # the unused branches finite so torch.where does not leak NaN gradients.
        z = value.clamp(0.0, 1.0)
        log_a, log_b = torch.log(z - gamma), torch.log(zeta - z)
        x = log_a - log_b
        inside = (_concrete_logit_log_density(x, logits, tau)
                  - log_a - log_b + math.log(zeta - gamma))
        out = torch.where(value <= 0, self.log_prob_zero.expand_as(inside),
                          torch.where(value >= 1, self.log_prob_one.expand_as(inside), inside))
        return out.masked_fill((value < 0) | (value > 1), -math.inf)


# ----------------------------------------------------------------------------- Stochastic times smooth
class StochasticTimesSmooth(_BinaryMixin, Distribution):
    r"""Stochastic times smooth unit (Bengio, Leonard, Courville 2013, arXiv 1308.3432).

    p = sigma(a);  b ~ Bernoulli(sqrt p) (one trial: the blog's "Binomial(sqrt p)");
    h = sg(b) * sqrt p, so the gradient flows through sqrt p only.

    Law: P(h = 0) = 1 - sqrt p, P(h = sqrt p) = sqrt p, hence E[h] = p. ``log_prob`` is this
    two-point log-mass (-inf off the support {0, sqrt p}).

    Example:
        >>> import torch
        >>> d = StochasticTimesSmooth(probs=torch.tensor([0.25]))
        >>> sorted(set(d.sample((100,)).flatten().tolist()))
        [0.0, 0.5]
        >>> float(d.mean[0])
        0.25
    """

    arg_constraints: ClassVar[dict[str, constraints.Constraint]] = {
        "probs": constraints.unit_interval, "logits": constraints.real}
    has_rsample = True

    def __init__(self, *, probs=None, logits=None, validate_args=None):
        self._init_bernoulli_parameter(probs, logits, validate_args)

    @constraints.dependent_property(is_discrete=True, event_dim=0)
    def support(self):
        return _ZeroOr(self.sqrt_probs)

    def expand(self, batch_shape, _instance=None):
        return self._expand_bernoulli_parameter(StochasticTimesSmooth, batch_shape, _instance)

    @property
    def log_sqrt_probs(self) -> Tensor:
        """log sqrt p, from logits when given (stable) or from probs."""
        if "probs" in self.__dict__ and "logits" not in self.__dict__:
            return 0.5 * torch.log(self.probs)
        return 0.5 * log_sigmoid(self.logits)

    @property
    def sqrt_probs(self) -> Tensor:
        """sqrt p: the nonzero value and its probability."""
        if "probs" in self.__dict__ and "logits" not in self.__dict__:
            return torch.sqrt(self.probs)
        return torch.exp(0.5 * log_sigmoid(self.logits))

    def rsample(self, sample_shape: torch.Size = _EMPTY, generator: torch.Generator | None = None) -> Tensor:
        shape = self._extended_shape(sample_shape)
        r = self.sqrt_probs
        b = (uniform_open(shape, r, generator) < r.detach()).to(r.dtype)  # sg(b): no gradient through b
        return b * r

    def log_prob(self, value: Tensor) -> Tensor:
        if self._validate_args:
            self._validate_sample(value)
        r = self.sqrt_probs
        log_r = self.log_sqrt_probs
        value = torch.as_tensor(value, dtype=r.dtype, device=r.device)
        r, log_r, value = broadcast_all(r, log_r, value)
        log_1m_r = torch.log(-torch.expm1(log_r))  # log(1 - sqrt p), accurate for p near 0
        out = torch.where(value == 0, log_1m_r, log_r)
        return out.masked_fill((value != 0) & ~_close(value, r), -math.inf)

    @property
    def mean(self) -> Tensor:
        return self.probs

    @property
    def variance(self) -> Tensor:
        # E[h^2] = sqrt(p) * p
        return self.probs * self.sqrt_probs - self.probs ** 2

    def entropy(self) -> Tensor:
        """Entropy of the two-point law: -r log r - (1 - r) log(1 - r), r = sqrt(p)."""
        log_r = self.log_sqrt_probs
        log_1m_r = torch.log(-torch.expm1(log_r))
        r = log_r.exp()
        return -(r * log_r + (1.0 - r) * log_1m_r)


# ----------------------------------------------------------------------------- Straight-through
class _ExactBernoulliForward(_BinaryMixin):
    """Straight-through classes whose forward value is an exact Bernoulli(p) draw: the
    Bernoulli law's log-mass, moments, entropy and support (the KL is registered in kl.py)."""

    support = constraints.boolean
    has_rsample = True
    has_enumerate_support = True

    def log_prob(self, value: Tensor) -> Tensor:
        if self._validate_args:
            self._validate_sample(value)
        return self._bernoulli_log_mass(value)

    @property
    def mean(self) -> Tensor:
        return self.probs

    @property
    def variance(self) -> Tensor:
        return self.probs * (1 - self.probs)

    def entropy(self) -> Tensor:
        return self._bernoulli_entropy()

    def enumerate_support(self, expand: bool = True) -> Tensor:
        return self._enumerate_binary(expand)


class StraightThroughBernoulli(_ExactBernoulliForward, Distribution):
    r"""Straight-through Bernoulli (Bengio, Leonard, Courville 2013; Yin et al. 2019).

    Forward b ~ Bernoulli(p), exactly 0 or 1; the value is b + (p - sg(p)), so
    d value / d theta = d p / d theta. ``log_prob`` is the Bernoulli log-mass.

    Example:
        >>> import torch
        >>> a = torch.zeros(2, requires_grad=True)
        >>> b = StraightThroughBernoulli(logits=a).rsample()
        >>> b.sum().backward(); a.grad.tolist()
        [0.25, 0.25]
    """

    arg_constraints: ClassVar[dict[str, constraints.Constraint]] = {
        "probs": constraints.unit_interval, "logits": constraints.real}

    def __init__(self, *, probs=None, logits=None, validate_args=None):
        self._init_bernoulli_parameter(probs, logits, validate_args)

    def expand(self, batch_shape, _instance=None):
        return self._expand_bernoulli_parameter(StraightThroughBernoulli, batch_shape, _instance)

    def rsample(self, sample_shape: torch.Size = _EMPTY, generator: torch.Generator | None = None) -> Tensor:
        shape = self._extended_shape(sample_shape)
        p = self.probs
        b = (uniform_open(shape, p, generator) < p.detach()).to(p.dtype)
        return straight_through(b, p)



# ----------------------------------------------------------------------------- ReinMax (K = 2)
class ReinMaxBernoulli(_ExactBernoulliForward, Distribution):
    r"""ReinMax for a Bernoulli unit (Liu, Liu, Gao, Han 2023, arXiv 2304.08612), as the
    categorical :class:`~relaxcli.distributions.ReinMax` with K = 2 and logits (0, a).

    Forward b ~ Bernoulli(sigmoid(a)), exactly 0 or 1. Backward, with p = sigmoid(a) and the
    Heun midpoint q = (sigmoid(a / tau) + b) / 2 (the probability of 1 in ReinMax's pi_1):

        d value / d a = 2 q (1 - q) - p (1 - p) / 2,

    i.e. value = b + (2 q(1-q) - p(1-p)/2) (a - sg(a)) with q, p held fixed. (Straight-through
    with p would give p (1 - p).) The paper prefers tau >= 1; tau is any positive number here.
    ``log_prob`` is the Bernoulli log-mass; the KL is the Bernoulli one.

    Example:
        >>> import torch
        >>> a = torch.zeros(1, requires_grad=True)
        >>> b = ReinMaxBernoulli(1.0, logits=a).rsample()
        >>> b.sum().backward(); a.grad.tolist()   # q = 3/4 or 1/4: 2 * 3/16 - 1/8
        [0.25]
    """

    arg_constraints: ClassVar[dict[str, constraints.Constraint]] = {
        "temperature": constraints.positive, "probs": constraints.unit_interval, "logits": constraints.real}

    def __init__(self, temperature, *, probs=None, logits=None, validate_args=None):
        (self.temperature, param), is_probs = _binary_params(probs, logits, extra=(temperature,))
        if is_probs:
            self.probs = param
        else:
            self.logits = param
        Distribution.__init__(self, param.shape, validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(ReinMaxBernoulli, _instance)
        batch_shape = torch.Size(batch_shape)
        new.temperature = self.temperature.expand(batch_shape)
        self._expand_binary(new, batch_shape)
        Distribution.__init__(new, batch_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    def rsample(self, sample_shape: torch.Size = _EMPTY, generator: torch.Generator | None = None) -> Tensor:
        shape = self._extended_shape(sample_shape)
        logits = self.logits
        with torch.no_grad():
            p = torch.sigmoid(logits)
            b = (uniform_open(shape, logits, generator) < p).to(logits.dtype)
            q = 0.5 * (torch.sigmoid(logits / self.temperature) + b)
            slope = 2.0 * q * (1.0 - q) - 0.5 * p * (1.0 - p)
        return b + slope * (logits - logits.detach())   # the added term is exactly 0 in value

