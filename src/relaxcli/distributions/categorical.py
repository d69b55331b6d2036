"""Categorical family (METHODS.md section 2): Gumbel-Softmax and its straight-through variants.

Every class here perturbs the logits with one independent Gumbel(0, 1) draw per category, per
batch element and per sample (``_numerics.gumbel_noise``), follows the dtype and device of its
parameters, and has an exact ``log_prob`` or raises ``NotImplementedError`` saying why.

Classes:
    GumbelSoftmax                          y = softmax((logits + G)/tau)   (Concrete)
    DecoupledStraightThroughGumbelSoftmax  forward argmax(logits + tau_f G), backward softmax(./tau_b)
    GeneralizedGumbelSoftmax               sum_k values_k w_k, w ~ GumbelSoftmax  (numeric support)
    ReinMaxCategorical                     categorical forward, Heun (second-order) ST backward
    GumbelRao                              ST-GS backward averaged over M conditional Gumbels
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import Tensor
from torch.distributions import constraints
from torch.distributions.distribution import Distribution
from torch.distributions.utils import lazy_property, logits_to_probs, probs_to_logits

from relaxcli.distributions._hard import HardSwitch
from relaxcli.distributions._numerics import (
    SampleWithGenerator,
    as_float_tensors,
    conditional_gumbel,
    gumbel_noise,
    one_hot_argmax,
    renormalise,
    straight_through,
    uniform_open,
)

__all__ = ["DecoupledStraightThroughGumbelSoftmax", "GeneralizedGumbelSoftmax", "GumbelRao", "GumbelSoftmax",
           "LogGumbelSoftmax", "ReinMaxCategorical"]

_EMPTY = torch.Size()  # default sample_shape (a module singleton, not a call)


# ----------------------------------------------------------------------------- shared pieces
class _FiniteSet(constraints.Constraint):
    """Values equal to one of the numbers in ``values`` (last dimension), event_dim 0."""

    is_discrete = True
    event_dim = 0

    def __init__(self, values: Tensor):
        self.values = values
        super().__init__()

    def check(self, value: Tensor) -> Tensor:
        return (value.unsqueeze(-1) == self.values).any(-1)


class _Interval(constraints.Constraint):
    """Closed interval [low, high] with tensor bounds (the convex hull of a numeric support)."""

    event_dim = 0

    def __init__(self, low: Tensor, high: Tensor):
        self.low, self.high = low, high
        super().__init__()

    def check(self, value: Tensor) -> Tensor:
        return (value >= self.low) & (value <= self.high)


def _categorical_params(probs, logits, like: Tensor | None = None):
    """(probs or None, normalised logits or None, param) from exactly one of probs / logits."""
    if (probs is None) == (logits is None):
        raise ValueError("Either `probs` or `logits` must be specified, but not both.")
    param = probs if probs is not None else logits
    if not isinstance(param, Tensor):
        param = torch.as_tensor(param, dtype=like.dtype if like is not None else None)
    if param.dim() < 1:
        raise ValueError(f"Expected parameter {'probs' if probs is not None else 'logits'} to have at "
                         f"least one dimension (the K categories), but found shape {tuple(param.shape)}")
    return param


class _CategoricalParams(SampleWithGenerator, Distribution):
    """Shared bookkeeping: probs/logits as lazy properties (as in torch's Categorical).

    Subclasses call :meth:`_set_params` before ``Distribution.__init__`` (which resolves to
    :meth:`__init__` here) so that ``validate_args=True`` checks whichever of probs / logits was
    given. Given logits are normalised lazily: sampling only needs them up to a constant per row
    (softmax and argmax are shift invariant, see :attr:`_shift_free_logits`), so with validation
    off a training step never pays for the logsumexp and its backward.
    """

    def __init__(self, batch_shape=_EMPTY, event_shape=_EMPTY, validate_args=None):
        validate = self._validate_args if validate_args is None else validate_args
        if validate and "_given_logits" in self.__dict__:
            self.logits  # noqa: B018 - normalise now so Distribution.__init__ checks them, as torch does
        super().__init__(batch_shape, event_shape, validate_args=validate_args)

    def _set_params(self, probs: Tensor | None, logits: Tensor | None) -> None:
        if probs is not None:
            # Normalise as torch's Categorical does; the simplex check then catches negative entries.
            self.probs = probs / probs.sum(-1, keepdim=True)
            self._param = self.probs
        else:
            # `logits` (a lazy property) are the normalised log p, needed by the Gumbel-top-k
            # theorem and log_prob; sampling uses the given ones directly.
            self._given_logits = self._param = logits

    @lazy_property
    def logits(self) -> Tensor:
        if "_given_logits" in self.__dict__:
            given = self._given_logits
            return given - given.logsumexp(dim=-1, keepdim=True)
        return probs_to_logits(self.probs)  # clamps probs away from 0: finite logits

    @lazy_property
    def probs(self) -> Tensor:
        return logits_to_probs(self.logits)

    @property
    def _shift_free_logits(self) -> Tensor:
        """log p up to an additive constant per row: all that softmax / argmax sampling needs."""
        given = self.__dict__.get("_given_logits")
        return self.logits if given is None else given

    @property
    def param_shape(self) -> torch.Size:
        return self._param.size()

    #: arguments whose last dimension is the K categories (the rest broadcast into the batch)
    _vector_args: ClassVar[tuple[str, ...]] = ("probs", "logits")

    @classmethod
    def infer_shapes(cls, **arg_shapes):
        """(batch_shape, event_shape) from the shapes of the arguments (Pyro's ``infer_shapes``).

        probs / logits (and ``values``) are (..., K); temperatures broadcast into the batch.
        """
        batch, num = [], None
        for name, shape in arg_shapes.items():
            shape = torch.Size(shape)
            if name in cls._vector_args:
                batch.append(shape[:-1])
                num = shape[-1] if name != "values" or num is None else num
            else:
                batch.append(shape)
        if num is None:
            raise ValueError(f"{cls.__name__}.infer_shapes needs the shape of probs or logits")
        return torch.broadcast_shapes(*batch), cls._event_shape_for(num)

    @classmethod
    def _event_shape_for(cls, num: int) -> torch.Size:
        return torch.Size((num,))

    @property
    def num_categories(self) -> int:
        return self._param.shape[-1]

    def _one_hot_support(self, expand: bool = True) -> Tensor:
        """The K one-hot vectors, (K, *batch_shape, K) (``expand=False``: batch dims 1), as torch's
        ``OneHotCategorical.enumerate_support``."""
        num = self.num_categories
        eye = torch.eye(num, dtype=self._param.dtype, device=self._param.device)
        eye = eye.view((num,) + (1,) * len(self.batch_shape) + (num,))
        return eye.expand((num,) + self.batch_shape + (num,)) if expand else eye

    def _expand_params(self, new, batch_shape: torch.Size) -> None:
        shape = batch_shape + self._param.shape[-1:]
        if "probs" in self.__dict__:
            new.probs = self.probs.expand(shape)
            new._param = new.probs
        if "_given_logits" in self.__dict__:
            new._given_logits = new._param = self._given_logits.expand(shape)
        if "logits" in self.__dict__:
            new.logits = self.logits.expand(shape)

    def _init_tempered(self, temperature, probs, logits, validate_args) -> None:
        """``__init__`` of a law with a temperature and categorical probs or logits (batch shapes
        broadcast)."""
        param = _categorical_params(probs, logits)
        temperature, param = as_float_tensors(temperature, param)
        self.temperature = temperature
        self._set_params(param if probs is not None else None, param if probs is None else None)
        batch_shape = torch.broadcast_shapes(param.shape[:-1], temperature.shape)
        _CategoricalParams.__init__(self, batch_shape, param.shape[-1:], validate_args=validate_args)

    def _expand_tempered(self, cls, batch_shape, _instance):
        """``expand`` of such a law (the temperature is kept; it broadcasts)."""
        new = self._get_checked_instance(cls, _instance)
        batch_shape = torch.Size(batch_shape)
        new.temperature = self.temperature
        self._expand_params(new, batch_shape)
        _CategoricalParams.__init__(new, batch_shape, self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new


# ----------------------------------------------------------------------------- Gumbel-Softmax
class GumbelSoftmax(HardSwitch, _CategoricalParams):
    r"""Gumbel-Softmax / Concrete distribution on the probability simplex (Jang, Gu, Poole 2017,
    arXiv 1611.01144; Maddison, Mnih, Teh 2017, arXiv 1611.00712).

    Sample: ``y = softmax((logits + G) / tau)`` with ``G_k ~ Gumbel(0, 1)`` i.i.d.
    With ``hard=True`` the forward value is ``one_hot(argmax(logits + G))`` (exactly a
    Categorical(softmax(logits)) draw, Gumbel-max trick) and the gradient is that of ``y``
    (straight-through: ``hard + (y - sg(y))``).

    ``log_prob``:
      * soft values (``hard=False``): the exact Concrete density w.r.t. Lebesgue measure on the
        first K-1 coordinates of the simplex, computed in log space,
        ``log p(y) = log (K-1)! + (K-1) log tau + sum_k (l_k - (tau+1) log y_k)
        - K logsumexp_k (l_k - tau log y_k)``. It is a function of the value alone: entries of
        ``y`` that underflowed to 0 (tiny tau in float32) are floored at the dtype's smallest
        normal number, so the result is finite but is not the density at the point drawn. For
        exact densities of samples use :meth:`log_space` (:class:`LogGumbelSoftmax`).
      * hard values: the categorical log-mass ``sum_k y_k log p_k`` of the one-hot value.

    Implemented directly (not as a TransformedDistribution), so ``rsample`` + backward costs one
    softmax, no slower than torch's ``RelaxedOneHotCategorical``.

    Args:
        temperature: tau > 0 (float or tensor broadcastable to the batch shape).
        probs / logits: event probabilities or unnormalised log-probabilities, shape (..., K).
        hard: straight-through one-hot forward values.

    Example:
        >>> import torch
        >>> d = GumbelSoftmax(0.5, logits=torch.zeros(2, 3))
        >>> y = d.rsample((4,))
        >>> y.shape, bool(torch.allclose(y.sum(-1), torch.ones(4, 2)))
        (torch.Size([4, 2, 3]), True)
    """

    arg_constraints: ClassVar[dict[str, constraints.Constraint]] = {
        "temperature": constraints.positive,
        "probs": constraints.simplex,
        "logits": constraints.real_vector,
    }
    has_rsample = True

    def __init__(self, temperature, probs=None, logits=None, *, hard: bool = False, validate_args=None):
        self.hard = bool(hard)
        self._init_tempered(temperature, probs, logits, validate_args)

    @constraints.dependent_property(is_discrete=False, event_dim=1)
    def support(self):
        return constraints.one_hot if self.hard else constraints.simplex

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(GumbelSoftmax, _instance)
        new.hard = self.hard
        return self._expand_tempered(GumbelSoftmax, batch_shape, new)

    def _scores(self, sample_shape, generator=None) -> Tensor:
        """logits + G with one Gumbel draw per element of sample_shape + batch_shape + (K,)."""
        shape = self._extended_shape(sample_shape)
        logits = self._shift_free_logits  # softmax and argmax ignore a shift per row
        return logits + gumbel_noise(shape, logits, generator)

    def rsample(self, sample_shape: torch.Size = _EMPTY, generator: torch.Generator | None = None) -> Tensor:
        scores = self._scores(sample_shape, generator)
        y = torch.softmax(scores / self.temperature.unsqueeze(-1), dim=-1)
        if not self.hard:
            return renormalise(y)
        return straight_through(one_hot_argmax(scores), y)

    def log_prob(self, value: Tensor) -> Tensor:
        if self._validate_args:
            self._validate_sample(value)
        if self.hard:
            return (value * self.logits).sum(-1)
        return concrete_log_density(value, self.logits, self.temperature)

    def _soft_has_none(self, what: str):
        raise NotImplementedError(f"GumbelSoftmax.{what} of soft values: the Concrete distribution's "
                                  f"{what} has no closed form (estimate it by Monte Carlo); the hard "
                                  f"law (hard=True) is Categorical and has one")

    @property
    def mean(self) -> Tensor:
        if not self.hard:
            self._soft_has_none("mean")
        return self.probs.expand(self.batch_shape + self.event_shape)

    @property
    def variance(self) -> Tensor:
        if not self.hard:
            self._soft_has_none("variance")
        p = self.probs.expand(self.batch_shape + self.event_shape)
        return p * (1 - p)

    def entropy(self) -> Tensor:
        if not self.hard:
            self._soft_has_none("entropy")
        logits = self.logits.expand(self.batch_shape + self.event_shape)
        return -(logits.exp() * logits).sum(-1)

    @property
    def has_enumerate_support(self) -> bool:  # the hard law is finite, the relaxed one is not
        return self.hard

    def enumerate_support(self, expand: bool = True) -> Tensor:
        if not self.hard:
            raise NotImplementedError("GumbelSoftmax.enumerate_support of soft values: the relaxed "
                                      "law is continuous; use hard=True")
        return self._one_hot_support(expand)

    def log_space(self) -> LogGumbelSoftmax:
        """The law of log y = log_softmax((logits + G)/tau), same parameters (exact float32 densities)."""
        given = {"probs": self.probs} if "probs" in self.__dict__ else {"logits": self._shift_free_logits}
        return LogGumbelSoftmax(self.temperature, validate_args=False, **given)


class LogGumbelSoftmax(_CategoricalParams):
    r"""The Concrete distribution in log space (Maddison et al. 2017's ExpConcrete; torch's
    ``ExpRelaxedCategorical``): x = log_softmax((logits + G)/tau), so exp(x) ~ :class:`GumbelSoftmax`.

    Density w.r.t. Lebesgue measure on the first K-1 coordinates::

        log p(x) = log (K-1)! + (K-1) log tau + sum_k (l_k - tau x_k) - K logsumexp_k (l_k - tau x_k)

    Exact at every float32 sample, also where exp(x) has entries that underflow to 0 (tiny tau),
    so use it for Monte-Carlo KLs and importance weights of the Concrete law (the Jacobian of exp
    cancels in log q - log p). ``support`` is ``real_vector`` (as torch's), although x also
    satisfies logsumexp(x) = 0.

    Example:
        >>> import torch
        >>> d = LogGumbelSoftmax(0.1, logits=torch.zeros(4))
        >>> x = d.rsample((2,))
        >>> x.shape, bool(torch.allclose(x.logsumexp(-1), torch.zeros(2), atol=1e-6))
        (torch.Size([2, 4]), True)
    """

    arg_constraints: ClassVar[dict[str, constraints.Constraint]] = {
        "temperature": constraints.positive,
        "probs": constraints.simplex,
        "logits": constraints.real_vector,
    }
    support = constraints.real_vector
    has_rsample = True

    def __init__(self, temperature, probs=None, logits=None, *, validate_args=None):
        self._init_tempered(temperature, probs, logits, validate_args)

    def expand(self, batch_shape, _instance=None):
        return self._expand_tempered(LogGumbelSoftmax, batch_shape, _instance)

    def rsample(self, sample_shape: torch.Size = _EMPTY, generator: torch.Generator | None = None) -> Tensor:
        shape = self._extended_shape(sample_shape)
        logits = self._shift_free_logits
        scores = (logits + gumbel_noise(shape, logits, generator)) / self.temperature.unsqueeze(-1)
        return torch.log_softmax(scores, dim=-1)

    def log_prob(self, value: Tensor) -> Tensor:
        if self._validate_args:
            self._validate_sample(value)
        k = value.shape[-1]
        score = self._shift_free_logits - self.temperature.unsqueeze(-1) * value
        log_norm = math.lgamma(k) + (k - 1) * self.temperature.log()
        return log_norm + score.sum(-1) - k * score.logsumexp(-1)

    def relaxed(self) -> GumbelSoftmax:
        """The law of exp(x)."""
        given = {"probs": self.probs} if "probs" in self.__dict__ else {"logits": self._shift_free_logits}
        return GumbelSoftmax(self.temperature, validate_args=False, **given)


def concrete_log_density(value: Tensor, logits: Tensor, temperature: Tensor) -> Tensor:
    """Exact log density of the Concrete(logits, tau) law at simplex points ``value`` (log space).

    log p(y) = log (K-1)! + (K-1) log tau + sum_k (l_k - (tau+1) log y_k)
               - K logsumexp_k (l_k - tau log y_k)   (Maddison et al. 2017, Definition 1).
    Invariant to shifting ``logits``. Zero entries are floored at the dtype's tiny.
    """
    k = value.shape[-1]
    tau = temperature.unsqueeze(-1)
    log_y = value.clamp(min=torch.finfo(value.dtype).tiny).log()
    score = logits - tau * log_y
    log_norm = math.lgamma(k) + (k - 1) * temperature.log()
    return log_norm + (score - log_y).sum(-1) - k * score.logsumexp(-1)


# ----------------------------------------------------------------------------- decoupled ST-GS
class DecoupledStraightThroughGumbelSoftmax(_CategoricalParams):
    r"""Decoupled Straight-Through Gumbel-Softmax (Shah, Yan, Mozer, Liu 2024, arXiv 2410.13331 v2,
    "Decoupled ST"): one temperature for forward stochasticity, one for backward dispersion.

    With ``s = logits + tau_f * G`` (``G_k ~ Gumbel(0, 1)`` i.i.d.):

    * forward value: ``z = one_hot(argmax s)``; since ``argmax(logits + tau_f G) =
      argmax(logits/tau_f + G)``, z is an exact draw of **Categorical(softmax(logits / tau_f))**:
      tau_f -> 0 is the deterministic argmax (Softmax-STE forward), tau_f = 1 is the categorical
      of the logits (ST-GS forward), tau_f -> inf is uniform. So tau_f changes the forward
      sampling frequencies.
    * backward: the gradient of ``softmax(s / tau_b)`` (straight-through,
      ``z + (y_b - sg(y_b))``): tau_b sets how the gradient is dispersed over the categories.

    Special cases: tau_f = 1 is ST-GS at temperature tau_b; tau_f -> 0 is the Softmax STE at
    temperature tau_b; tau_b -> inf approaches the (centred, rescaled) identity STE.

    Erratum (relaxit): ``argmax((logits + G)/tau_f)`` does not depend on tau_f, so a forward
    temperature applied after the noise is a no-op. Here tau_f scales the noise (equivalently
    tempers the logits before the Gumbel-max), which is the paper's forward-stochasticity
    temperature. Note: the stored reference copy of v2 available while writing this code showed
    the abstract (forward temperature = forward stochasticity / exploration, backward temperature
    = gradient dispersion; baselines Identity STE, Softmax STE, ST-GS), and the definition above is
    the one that matches it and reproduces those baselines as special cases.

    ``log_prob(one-hot z)`` is the exact log-mass of the forward law it samples:
    ``sum_k z_k log softmax(logits / tau_f)_k``. Support: one-hot vectors.

    Args:
        temperature_forward: tau_f > 0.
        temperature_backward: tau_b > 0.
        probs / logits: parameters of the base categorical, shape (..., K).

    Example:
        >>> import torch
        >>> d = DecoupledStraightThroughGumbelSoftmax(0.5, 2.0, logits=torch.tensor([0.0, 1.0]))
        >>> z = d.rsample((3,))
        >>> z.shape, bool((z.sum(-1) == 1).all())
        (torch.Size([3, 2]), True)
    """

    arg_constraints: ClassVar[dict[str, constraints.Constraint]] = {
        "temperature_forward": constraints.positive,
        "temperature_backward": constraints.positive,
        "probs": constraints.simplex,
        "logits": constraints.real_vector,
    }
    support = constraints.one_hot
    has_rsample = True

    def __init__(self, temperature_forward, temperature_backward, *, probs=None, logits=None,
                 validate_args=None):
        param = _categorical_params(probs, logits)
        tau_f, tau_b, param = as_float_tensors(temperature_forward, temperature_backward, param)
        self.temperature_forward, self.temperature_backward = tau_f, tau_b
        self._set_params(param if probs is not None else None, param if probs is None else None)
        batch_shape = torch.broadcast_shapes(param.shape[:-1], tau_f.shape, tau_b.shape)
        super().__init__(batch_shape, param.shape[-1:], validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(DecoupledStraightThroughGumbelSoftmax, _instance)
        batch_shape = torch.Size(batch_shape)
        new.temperature_forward = self.temperature_forward
        new.temperature_backward = self.temperature_backward
        self._expand_params(new, batch_shape)
        super(DecoupledStraightThroughGumbelSoftmax, new).__init__(
            batch_shape, self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    @property
    def forward_logits(self) -> Tensor:
        """log softmax(logits / tau_f): the log-probabilities of the forward one-hot law."""
        return torch.log_softmax(self.logits / self.temperature_forward.unsqueeze(-1), dim=-1)

    has_enumerate_support = True

    def enumerate_support(self, expand: bool = True) -> Tensor:
        """The K one-hot vectors, (K, *batch_shape, K) (Pyro's TraceEnum_ELBO enumerates them)."""
        return self._one_hot_support(expand)

    @property
    def mean(self) -> Tensor:
        """softmax(logits / tau_f): the forward law's probabilities."""
        return self.forward_logits.exp().expand(self.batch_shape + self.event_shape)

    @property
    def variance(self) -> Tensor:
        p = self.mean
        return p * (1 - p)

    def entropy(self) -> Tensor:
        """Entropy of the forward law Categorical(softmax(logits / tau_f))."""
        lp = self.forward_logits.expand(self.batch_shape + self.event_shape)
        return -(lp.exp() * lp).sum(-1)

    def rsample(self, sample_shape: torch.Size = _EMPTY, generator: torch.Generator | None = None) -> Tensor:
        shape = self._extended_shape(sample_shape)
        logits = self._shift_free_logits  # softmax and argmax ignore a shift per row
        s = logits + self.temperature_forward.unsqueeze(-1) * gumbel_noise(shape, logits, generator)
        y_b = torch.softmax(s / self.temperature_backward.unsqueeze(-1), dim=-1)
        return straight_through(one_hot_argmax(s), y_b)

    def log_prob(self, value: Tensor) -> Tensor:
        if self._validate_args:
            self._validate_sample(value)
        return (value * self.forward_logits).sum(-1)


# ----------------------------------------------------------------------------- ReinMax, Gumbel-Rao
class _OneHotCategoricalLaw(_CategoricalParams):
    """Straight-through classes whose forward value is an exact Categorical(softmax(logits)) draw:
    the categorical law's log-mass, moments, entropy and support."""

    arg_constraints: ClassVar[dict[str, constraints.Constraint]] = {
        "temperature": constraints.positive,
        "probs": constraints.simplex,
        "logits": constraints.real_vector,
    }
    support = constraints.one_hot
    has_rsample = True
    has_enumerate_support = True

    def __init__(self, temperature, probs=None, logits=None, *, validate_args=None):
        self._init_tempered(temperature, probs, logits, validate_args)

    def _one_hot_draw(self, sample_shape, generator=None) -> Tensor:
        """one_hot(argmax(logits + G)): an exact Categorical(softmax(logits)) draw (Gumbel-max)."""
        logits = self._shift_free_logits.detach()
        return one_hot_argmax(logits + gumbel_noise(self._extended_shape(sample_shape), logits, generator))

    def sample(self, sample_shape: torch.Size = _EMPTY, generator: torch.Generator | None = None) -> Tensor:
        with torch.no_grad():
            return self._one_hot_draw(sample_shape, generator)

    def log_prob(self, value: Tensor) -> Tensor:
        if self._validate_args:
            self._validate_sample(value)
        return (value * self.logits).sum(-1)

    def enumerate_support(self, expand: bool = True) -> Tensor:
        return self._one_hot_support(expand)

    @property
    def mean(self) -> Tensor:
        return self.probs.expand(self.batch_shape + self.event_shape)

    @property
    def variance(self) -> Tensor:
        p = self.mean
        return p * (1 - p)

    def entropy(self) -> Tensor:
        logits = self.logits.expand(self.batch_shape + self.event_shape)
        return -(logits.exp() * logits).sum(-1)


def softmax_jvp(pi: Tensor, delta: Tensor) -> Tensor:
    """J(pi) delta with J(pi) = diag(pi) - pi pi^T, the softmax Jacobian at output pi (symmetric).

    With ``delta = logits - sg(logits)`` (exactly 0 in value) and ``pi`` detached this is a
    zero-valued term whose gradient w.r.t. the logits is J(pi) g: the gradient a softmax with
    output pi would pass back, evaluated at a chosen pi.
    """
    return pi * delta - pi * (pi * delta).sum(-1, keepdim=True)


class ReinMaxCategorical(_OneHotCategoricalLaw):
    r"""ReinMax (Liu, Liu, Gao, Han 2023, "Bridging Discrete and Backpropagation: Straight-Through
    and Beyond", arXiv 2304.08612): straight-through with a second-order (Heun) backward.

    Forward: D = one_hot sample of Categorical(pi_0), pi_0 = softmax(logits) (exact, Gumbel-max;
    the temperature does *not* change the forward law). Backward, for the upstream gradient g:

        grad_logits = 2 J(pi_1) g - (1/2) J(pi_0) g,   pi_1 = (softmax(logits / tau) + D) / 2,

    J(pi) = diag(pi) - pi pi^T. Straight-through (forward Euler) would be J(softmax(logits/tau)) g;
    ReinMax averages the slopes at the start and at the sampled end point, as Heun's method does,
    which makes the estimate second-order accurate (the paper's Theorem). Written as
    ``D + 2 J(sg pi_1) delta - J(sg pi_0) delta / 2`` with ``delta = logits - sg(logits)``, so the
    value is exactly D. The paper prefers tau >= 1 (its default 1.0 here).

    ``log_prob`` and the KL are the categorical law's (the forward value is an exact draw of it).

    Example:
        >>> import torch
        >>> d = ReinMaxCategorical(1.0, logits=torch.zeros(2, 3))
        >>> z = d.rsample((4,))
        >>> z.shape, bool((z.sum(-1) == 1).all())
        (torch.Size([4, 2, 3]), True)
    """

    def expand(self, batch_shape, _instance=None):
        return self._expand_tempered(ReinMaxCategorical, batch_shape, _instance)

    def rsample(self, sample_shape: torch.Size = _EMPTY, generator: torch.Generator | None = None) -> Tensor:
        logits = self._shift_free_logits
        d = self._one_hot_draw(sample_shape, generator)
        with torch.no_grad():
            pi_0 = torch.softmax(logits, dim=-1)
            pi_1 = 0.5 * (torch.softmax(logits / self.temperature.unsqueeze(-1), dim=-1) + d)
        delta = logits - logits.detach()
        return d + (2.0 * softmax_jvp(pi_1, delta) - 0.5 * softmax_jvp(pi_0, delta))


class GumbelRao(_OneHotCategoricalLaw):
    r"""Gumbel-Rao (Paulus, Maddison, Krause 2021, "Rao-Blackwellizing the Straight-Through
    Gumbel-Softmax Gradient Estimator", arXiv 2010.04838), the Monte-Carlo version GR-MC_M.

    Forward: D = one_hot(argmax(logits + G)), an exact Categorical(softmax(logits)) draw.
    Backward: the ST Gumbel-Softmax gradient averaged over M Gumbel vectors drawn *given* D,

        grad = (1/M) sum_m d/dlogits softmax((logits + G_m) / tau),  G_m ~ G | argmax(logits + G) = D,

    with each G_m held fixed (the ST-GS gradient at that noise). G_m comes from the conditional
    Gumbel construction (:func:`~relaxcli.distributions._numerics.conditional_gumbel`). By the
    tower rule its expectation equals ST-GS's, E[grad_ST-GS] = E[E[grad_ST-GS | D]], and by
    Rao-Blackwell its variance is no larger (tested: both). ``samples`` = M >= 1 (default 10).

    ``log_prob`` and the KL are the categorical law's.

    Example:
        >>> import torch
        >>> d = GumbelRao(0.5, logits=torch.zeros(2, 3), samples=4)
        >>> z = d.rsample((5,))
        >>> z.shape, bool((z.sum(-1) == 1).all())
        (torch.Size([5, 2, 3]), True)
    """

    def __init__(self, temperature, probs=None, logits=None, *, samples: int = 10, validate_args=None):
        if isinstance(samples, bool) or int(samples) != samples or int(samples) < 1:
            raise ValueError(f"Expected parameter samples (M) to be a positive integer, but found {samples!r}")
        self.samples = int(samples)
        super().__init__(temperature, probs, logits, validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(GumbelRao, _instance)
        new.samples = self.samples
        return self._expand_tempered(GumbelRao, batch_shape, new)

    def rsample(self, sample_shape: torch.Size = _EMPTY, generator: torch.Generator | None = None) -> Tensor:
        d = self._one_hot_draw(sample_shape, generator)
        log_p = self.logits                                             # normalised: needed below
        with torch.no_grad():
            v = uniform_open((self.samples,) + d.shape, log_p, generator)
            noise = conditional_gumbel(log_p.detach(), d, v) - log_p.detach()    # G_m | D, fixed
        y = torch.softmax((log_p + noise) / self.temperature.unsqueeze(-1), dim=-1).mean(0)
        return straight_through(d, y)


# ----------------------------------------------------------------------------- generalized GS
class GeneralizedGumbelSoftmax(HardSwitch, _CategoricalParams):
    r"""Generalized Gumbel-Softmax over a numeric support (Joo, Kim, Kim, Moon 2020, arXiv 2003.01847).

    A discrete variable X with P(X = values_k) = p_k is relaxed as
    ``x = sum_k values_k * w_k`` with ``w ~ GumbelSoftmax(tau, p)`` (``w`` one-hot straight-through
    when ``hard=True``, so the forward value is exactly one of ``values``). event_shape = ().

    ``log_prob``: for ``hard=True`` the exact log-mass ``log sum_{k: values_k = x} p_k`` (-inf off the
    support). For soft values it raises ``NotImplementedError``: the law of the projection
    ``sum_k values_k w_k`` of a Concrete vector is an integral of the Concrete density over a
    (K-2)-dimensional slice of the simplex, with no closed form.

    Truncated constructors (:meth:`truncated_poisson`, :meth:`truncated_geometric`,
    :meth:`truncated_binomial`) keep ``values = 0..n_max``, renormalise the kept pmf and report the
    exact probability mass cut off in ``.truncated_mass`` (batch shaped; 0 for a direct construction).

    Args:
        values: numeric support, shape (K,) (or broadcastable to the parameters' shape).
        temperature: tau > 0.
        probs / logits: shape (..., K).
        hard: straight-through, forward value exactly in ``values``.

    Example:
        >>> import torch
        >>> d = GeneralizedGumbelSoftmax.truncated_poisson(3.0, 0.5, max_value=20, hard=True)
        >>> x = d.rsample((5,))
        >>> x.shape, float(d.truncated_mass) < 1e-6
        (torch.Size([5]), True)
    """

    arg_constraints: ClassVar[dict[str, constraints.Constraint]] = {
        "temperature": constraints.positive,
        "probs": constraints.simplex,
        "logits": constraints.real_vector,
    }
    has_rsample = True
    _vector_args: ClassVar[tuple[str, ...]] = ("probs", "logits", "values")

    @classmethod
    def _event_shape_for(cls, num: int) -> torch.Size:
        return torch.Size()  # one number per variable

    def __init__(self, values, temperature, *, probs=None, logits=None, hard: bool = False,
                 validate_args=None):
        param = _categorical_params(probs, logits)
        values, temperature, param = as_float_tensors(values, temperature, param)
        if values.dim() < 1 or values.shape[-1] != param.shape[-1]:
            raise ValueError(f"Expected parameter values to have K = {param.shape[-1]} entries in its "
                             f"last dimension (one per category), but found shape {tuple(values.shape)}")
        if not bool(torch.isfinite(values).all()):
            raise ValueError("Expected parameter values to be finite numbers")
        self.values = values
        self.temperature = temperature
        self.hard = bool(hard)
        self._set_params(param if probs is not None else None, param if probs is None else None)
        batch_shape = torch.broadcast_shapes(param.shape[:-1], values.shape[:-1], temperature.shape)
        self.truncated_mass = torch.zeros(batch_shape, dtype=param.dtype, device=param.device)
        super().__init__(batch_shape, torch.Size(), validate_args=validate_args)

    @constraints.dependent_property(is_discrete=False, event_dim=0)
    def support(self):
        if self.hard:
            return _FiniteSet(self.values)
        return _Interval(self.values.min(-1).values, self.values.max(-1).values)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(GeneralizedGumbelSoftmax, _instance)
        batch_shape = torch.Size(batch_shape)
        new.values = self.values
        new.temperature = self.temperature
        new.hard = self.hard
        new.truncated_mass = self.truncated_mass.expand(batch_shape)
        self._expand_params(new, batch_shape)
        super(GeneralizedGumbelSoftmax, new).__init__(batch_shape, torch.Size(), validate_args=False)
        new._validate_args = self._validate_args
        return new

    @property
    def mean(self) -> Tensor:
        """E[X] = sum_k p_k values_k when ``hard`` (the discrete law's mean).

        Soft samples sum_k values_k w_k have E[w] != p (E[softmax] is not softmax of E), and no
        closed form, so the mean of a soft sample raises instead of returning the discrete one.
        """
        if not self.hard:
            raise NotImplementedError(
                "the mean of a soft generalized Gumbel-Softmax sample has no closed form "
                "(E[w] != probs); use hard=True for the discrete law's mean")
        return (self.probs * self.values).sum(-1).expand(self.batch_shape)

    @property
    def variance(self) -> Tensor:
        """sum_k p_k values_k^2 - mean^2 when ``hard`` (no closed form for soft values)."""
        if not self.hard:
            raise NotImplementedError(
                "the variance of a soft generalized Gumbel-Softmax sample has no closed form; use "
                "hard=True for the discrete law's variance")
        m = self.mean
        return ((self.probs * (self.values - m.unsqueeze(-1)).pow(2)).sum(-1)).expand(self.batch_shape)

    def entropy(self) -> Tensor:
        """Entropy of the discrete law over the distinct numbers in ``values`` (hard only):
        -sum_k p_k log P(X = values_k), so repeated values are merged."""
        if not self.hard:
            raise NotImplementedError(
                "the entropy of a soft generalized Gumbel-Softmax value has no closed form (its "
                "density has none); use hard=True")
        same = self.values.unsqueeze(-1) == self.values.unsqueeze(-2)          # (..., K, K)
        logits = self.logits.unsqueeze(-2).expand(same.shape)
        log_mass = torch.where(same, logits, torch.full_like(logits, -math.inf)).logsumexp(-1)
        return -(self.probs * log_mass).sum(-1).expand(self.batch_shape)

    def rsample(self, sample_shape: torch.Size = _EMPTY, generator: torch.Generator | None = None) -> Tensor:
        shape = self._extended_shape(sample_shape) + self._param.shape[-1:]
        logits = self._shift_free_logits  # softmax and argmax ignore a shift per row
        scores = logits + gumbel_noise(shape, logits, generator)
        w = torch.softmax(scores / self.temperature.unsqueeze(-1), dim=-1)
        if self.hard:  # noqa: SIM108 - the soft branch carries its own comment
            w = straight_through(one_hot_argmax(scores), w)
        else:
            w = renormalise(w)  # weights summing to 1 keep the value inside [min, max] of values
        return (w * self.values).sum(-1)

    def log_prob(self, value: Tensor) -> Tensor:
        if not self.hard:
            raise NotImplementedError(
                "GeneralizedGumbelSoftmax.log_prob of soft values: the density of sum_k values_k w_k "
                "with w ~ Concrete is an integral of the Concrete density over a (K-2)-dimensional "
                "slice of the simplex and has no closed form; use hard=True for the exact log-mass.")
        if self._validate_args:
            self._validate_sample(value)
        match = value.unsqueeze(-1) == self.values
        log_p = torch.where(match, self.logits, torch.full_like(self.logits, -math.inf))
        return log_p.logsumexp(-1)

    # ------------------------------------------------------------------ truncated constructors
    @classmethod
    def _from_log_pmf(cls, log_pmf: Tensor, values: Tensor, cut: Tensor, temperature, hard, validate_args):
        d = cls(values, temperature, logits=log_pmf, hard=hard, validate_args=validate_args)
        d.truncated_mass = cut.expand(d.batch_shape).to(d.logits.dtype)
        return d

    @classmethod
    def truncated_poisson(cls, rate, temperature, max_value: int | None = None, tol: float = 1e-6,
                          hard: bool = False, validate_args=None) -> GeneralizedGumbelSoftmax:
        """Poisson(rate) kept on 0..max_value and renormalised.

        ``truncated_mass`` = P(X > n) = P(n+1, rate), the regularised lower incomplete gamma
        function (``torch.special.gammainc``). With ``max_value=None`` the smallest n with
        truncated_mass <= ``tol`` for every rate in the batch is used.
        """
        rate, _ = as_float_tensors(rate, temperature)
        if not bool((rate > 0).all()):
            raise ValueError(f"Expected parameter rate to be positive, but found {rate.tolist()}")
        if max_value is None:
            r = float(rate.max())
            n = int(r + 5 * math.sqrt(r) + 5)
            while float(torch.special.gammainc(torch.tensor(n + 1.0, dtype=torch.float64),
                                               rate.double()).max()) > tol:
                n = int(n * 1.5) + 1
            max_value = n
        _check_max_value(max_value)
        k = torch.arange(max_value + 1, dtype=rate.dtype, device=rate.device)
        r = rate.unsqueeze(-1)
        log_pmf = k * r.log() - r - torch.lgamma(k + 1)
        cut = torch.special.gammainc(torch.as_tensor(max_value + 1.0, dtype=rate.dtype), rate)
        return cls._from_log_pmf(log_pmf, k, cut, temperature, hard, validate_args)

    @classmethod
    def truncated_geometric(cls, probs, temperature, max_value: int | None = None, tol: float = 1e-6,
                            hard: bool = False, validate_args=None) -> GeneralizedGumbelSoftmax:
        """Geometric(p), p in (0, 1): failures before the first success, P(X=k) = (1-p)^k p,
        kept on 0..max_value and renormalised. ``truncated_mass`` = P(X > n) = (1-p)^(n+1).
        With ``max_value=None`` n is the smallest value with (1-p)^(n+1) <= ``tol``.
        """
        p, _ = as_float_tensors(probs, temperature)
        if not bool(((p > 0) & (p < 1)).all()):
            raise ValueError(f"Expected parameter probs to be in (0, 1), but found {p.tolist()}")
        if max_value is None:
            max_value = max(1, math.ceil(math.log(tol) / math.log1p(-float(p.min()))) - 1)
        _check_max_value(max_value)
        k = torch.arange(max_value + 1, dtype=p.dtype, device=p.device)
        pe = p.unsqueeze(-1)
        log_pmf = k * torch.log1p(-pe) + pe.log()
        cut = torch.exp((max_value + 1) * torch.log1p(-p))
        return cls._from_log_pmf(log_pmf, k, cut, temperature, hard, validate_args)

    @classmethod
    def truncated_binomial(cls, total_count: int, probs, temperature, max_value: int | None = None,
                           hard: bool = False, validate_args=None) -> GeneralizedGumbelSoftmax:
        """Binomial(total_count, p) kept on 0..max_value (default: all of 0..total_count, nothing cut).

        ``truncated_mass`` = P(X > max_value) = sum_{k > max_value} C(n,k) p^k (1-p)^(n-k),
        summed exactly in log space.
        """
        p, _ = as_float_tensors(probs, temperature)
        if int(total_count) != total_count or total_count < 1:
            raise ValueError(f"Expected parameter total_count to be a positive integer, but found {total_count}")
        if not bool(((p > 0) & (p < 1)).all()):
            raise ValueError(f"Expected parameter probs to be in (0, 1), but found {p.tolist()}")
        n = int(total_count)
        max_value = n if max_value is None else min(int(max_value), n)
        _check_max_value(max_value)
        k = torch.arange(n + 1, dtype=p.dtype, device=p.device)
        pe = p.unsqueeze(-1)
        log_choose = math.lgamma(n + 1) - torch.lgamma(k + 1) - torch.lgamma(n - k + 1)
        log_pmf_all = log_choose + k * pe.log() + (n - k) * torch.log1p(-pe)
        kept = log_pmf_all[..., : max_value + 1]
        cut = (log_pmf_all[..., max_value + 1:].exp().sum(-1) if max_value < n
               else torch.zeros_like(p))
        return cls._from_log_pmf(kept, k[: max_value + 1], cut, temperature, hard, validate_args)


def _check_max_value(max_value) -> None:
    if int(max_value) != max_value or max_value < 1:
        raise ValueError(f"Expected max_value to be an integer >= 1 (at least two support points), "
                         f"but found {max_value}")
