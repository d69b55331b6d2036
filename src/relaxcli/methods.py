"""THE registry: one typed :class:`Method` record per CLI method name.

``relax list``, the CLI's choices, every command, the README table and the parametrised tests
read :data:`METHODS`. Adding a method is one class (in ``distributions/`` or ``estimators/``)
plus one :func:`register` call here; commands read the record's typed fields and never a
method's name.

Parameters: what commands hand to :meth:`Method.build` is ``raw``, an unconstrained tensor whose
last dimension holds ``method.params.size(K)`` numbers per latent variable (``K`` categories; 1
for a Bernoulli unit). Two packings exist, each written once here:

* :class:`Logits`: ``raw`` *are* the logits of the discrete law (Bernoulli(sigmoid(raw)) or
  Categorical(softmax(raw))), so exact gradients can be enumerated and the discrete law evaluated;
* :class:`LocScale`: ``raw = [loc, softplus^-1(scale - 1e-4)]`` of a Gaussian with
  ``K - reduced_by`` coordinates (IGR: K - 1, the logistic normal: K).

Example:
    >>> import torch
    >>> from relaxcli.methods import get_method
    >>> m = get_method("hard-concrete")
    >>> d = m.build(torch.zeros(3), tau=m.default_tau)
    >>> d.rsample((5,)).shape
    torch.Size([5, 3])
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from types import MappingProxyType
from typing import Any

import torch
from torch import Tensor
from torch.distributions import Bernoulli, Distribution, OneHotCategorical

from relaxcli import distributions as D
from relaxcli import estimators as E
from relaxcli.distributions._numerics import ndtri_sigmoid
from relaxcli.errors import BadInput
from relaxcli.options import Choice


class Family(Choice):
    """The kind of discrete variable a method serves."""

    BERNOULLI = "bernoulli"
    CATEGORICAL = "categorical"
    SUBSET = "subset"
    SIMPLEX = "simplex"


class Kind(Choice):
    """How a method gets a gradient."""

    RELAXED = "relaxed"
    STRAIGHT_THROUGH = "straight-through"
    SCORE_FUNCTION = "score-function"


FAMILIES = tuple(f.value for f in Family)
KINDS = tuple(k.value for k in Kind)


@dataclass(frozen=True)
class Paper:
    """Where a method comes from: ``authors`` as cited (e.g. "Jang, Gu, Poole"), year, arXiv id."""

    authors: str
    year: int
    arxiv: str = ""
    title: str = ""

    def short(self) -> str:
        """"Jang et al. 2017" style, for narrow tables."""
        first = self.authors.split(";")[0].split(",")[0].strip()
        many = "," in self.authors or ";" in self.authors
        return f"{first}{' et al.' if many else ''} {self.year}"

    def cite(self) -> str:
        return f"{self.authors} ({self.year})" + (f", arXiv:{self.arxiv}" if self.arxiv else "")


# ----------------------------------------------------------------------------- parameter packings
@dataclass(frozen=True)
class Logits:
    """``raw`` are the logits of the discrete law: one number per Bernoulli unit, K per
    categorical variable. The neutral parameters (a prior) are logits 0: the uniform law."""

    from_logits = True

    def size(self, categories: int) -> int:
        return categories

    def categories(self, size: int) -> int:
        """K from the number of raw numbers per variable (the inverse of :meth:`size`)."""
        return size

    def neutral(self, shape, device=None, dtype=None) -> Tensor:
        return torch.zeros(shape, device=device, dtype=dtype)


@dataclass(frozen=True)
class LocScale:
    """``raw = [loc, softplus^-1(scale - offset)]`` of a Gaussian with ``K - reduced_by``
    coordinates per variable (IGR: ``reduced_by = 1``; the logistic normal: 0)."""

    reduced_by: int = 0
    offset: float = 1e-4
    from_logits = False

    def size(self, categories: int) -> int:
        return 2 * (categories - self.reduced_by)

    def categories(self, size: int) -> int:
        if size % 2:
            raise ValueError(f"loc/scale parameters come in pairs, got {size} numbers")
        return size // 2 + self.reduced_by

    def unpack(self, raw: Tensor) -> tuple[Tensor, Tensor]:
        """(loc, scale) with scale = softplus(raw_scale) + offset > 0."""
        half = raw.shape[-1] // 2
        return raw[..., :half], torch.nn.functional.softplus(raw[..., half:]) + self.offset

    def pack(self, loc: Tensor, scale: Tensor) -> Tensor:
        """The ``raw`` of (loc, scale); ``scale`` must exceed ``offset``."""
        loc, scale = torch.broadcast_tensors(torch.as_tensor(loc), torch.as_tensor(scale))
        if bool((scale <= self.offset).any()):
            raise ValueError(f"scale must be greater than {self.offset:g}, got {scale.min().item():g}")
        y = scale - self.offset
        return torch.cat([loc, y + torch.log(-torch.expm1(-y))], -1)  # softplus^-1(y)

    def neutral(self, shape, device=None, dtype=None) -> Tensor:
        """loc 0 and scale 1 (the standard Gaussian's log-ratio law)."""
        raw = torch.zeros(shape, device=device, dtype=dtype)
        y = 1.0 - self.offset
        raw[..., raw.shape[-1] // 2:] = y + math.log(-math.expm1(-y))
        return raw


LOGITS = Logits()


# ----------------------------------------------------------------------------- the record
@dataclass(frozen=True, kw_only=True)
class Method:
    """One registry record, built by keyword only.

    Identity and documentation:
        name: kebab-case CLI name.
        kind: :class:`Kind`; unbiased: its gradient of the discrete objective is unbiased;
        exact_log_prob: its distribution's ``log_prob`` is the exact density/mass of what it samples.
        paper, summary: the reference and one line for ``relax list`` / the README.
        families: the :class:`Family` values it serves, its own first (score-function estimators
            serve Bernoulli *and* categorical latents).

    The math:
        params: how ``raw`` is packed (:class:`Logits` or :class:`LocScale`).
        relaxed: ``relaxed(raw, tau, **settings) -> Distribution`` (None for score-function
            methods, which sample :attr:`discrete`).
        discrete: ``discrete(raw, family, **settings) -> Distribution``, the exact discrete law
            behind it (None where it has none, e.g. IGR). Every discrete law has a KL registered
            with ``torch.distributions.kl_divergence`` (a test checks it).
        default_tau: default temperature (None: the method has none).
        min_tau: the lowest temperature its paper uses, where that is a bound (ReinMax: tau >= 1);
            a schedule that anneals the temperature stops there by default (None: no bound).
        settings: the distribution's keyword settings and their defaults (``k``, ``scale``,
            ``hard`` ...); ``--setting KEY=VALUE`` sets those with a bool, int, float or str
            default from the command line (:func:`parse_settings`).
        estimator: ``estimator(method, n_samples=..., family=..., **kw)``, the gradient
            estimator module (pathwise through ``relaxed`` by default).

    What commands need to know (typed, so that no command asks about a method by name):
        min_samples: Monte-Carlo samples per example the estimator needs (leave-one-out: 2).
        needs_latent_size: the estimator learns a network whose input is the latent (RELAX).
        takes_correlation: the distribution takes a correlation matrix (the Gaussian copula).
        rounds_to_discrete: rounding a sample (z > 1/2, argmax) is an exact draw of ``discrete``
            at every temperature (binary Concrete; Gumbel-max).
        sample_in_law_space: a sample lives where the discrete law's values do (binary, one-hot,
            k-hot, or their relaxation); False for the generalized Gumbel's numeric values.
        exact_relaxed_kl: ``kl_divergence`` between two of its relaxed laws is exact (IGR, the
            logistic normal); else a VAE uses the exact discrete KL or a Monte-Carlo estimate.
        exact_sampler: its forward (hard) samples are exact draws of ``discrete``; False where
            they only approximate it (I-MLE's perturb-and-MAP with sum-of-Gamma noise), so that
            ``relax sample`` does not test them against the law's closed forms.
    """

    name: str
    kind: Kind
    families: tuple[Family, ...]
    unbiased: bool
    exact_log_prob: bool
    paper: Paper
    summary: str
    params: Logits | LocScale = LOGITS
    relaxed: Callable[..., Distribution] | None = None
    discrete: Callable[..., Distribution] | None = None
    default_tau: float | None = None
    min_tau: float | None = None
    settings: Mapping[str, Any] = field(default_factory=dict)
    estimator: Callable[..., Any] = E.PathwiseEstimator
    min_samples: int = 1
    needs_latent_size: bool = False
    takes_correlation: bool = False
    rounds_to_discrete: bool = False
    sample_in_law_space: bool = True
    exact_relaxed_kl: bool = False
    exact_sampler: bool = True

    def __post_init__(self):
        object.__setattr__(self, "kind", Kind(self.kind))
        object.__setattr__(self, "families", tuple(Family(f) for f in self.families))
        object.__setattr__(self, "settings", MappingProxyType(dict(self.settings)))
        if not self.families:
            raise ValueError(f"method {self.name!r}: give at least one family")
        if (self.relaxed is None) != (self.kind is Kind.SCORE_FUNCTION):
            raise ValueError(f"method {self.name!r}: score-function methods (only) have no relaxed law")
        if self.relaxed is None and self.discrete is None:
            raise ValueError(f"method {self.name!r}: a score-function method needs a discrete law")
        if self.min_samples < 1:
            raise ValueError(f"method {self.name!r}: min_samples must be >= 1")
        if self.min_tau is not None and (self.default_tau is None or self.min_tau > self.default_tau):
            raise ValueError(f"method {self.name!r}: min_tau needs a default_tau at or above it")

    @property
    def family(self) -> Family:
        """The method's own family (the first it serves)."""
        return self.families[0]

    @property
    def from_logits(self) -> bool:
        """``raw`` are the logits of the discrete law (see :class:`Logits`)."""
        return self.params.from_logits

    @property
    def has_temperature(self) -> bool:
        """It relaxes with a temperature that commands sweep and anneal."""
        return self.relaxed is not None and self.default_tau is not None

    def supports(self, family: str) -> bool:
        """Whether this method applies to latents of ``family``."""
        return family in {f.value for f in self.families}

    def build(self, raw: Tensor, tau: float | Tensor | None = None, **settings) -> Distribution:
        """The method's relaxed (or straight-through) distribution of ``raw`` at ``tau``."""
        if self.relaxed is None:
            raise ValueError(f"method {self.name!r} is a score-function estimator: it has no relaxed "
                             "distribution; use .discrete_law() or its estimator")
        self.check_settings(settings)
        return self.relaxed(raw, self.default_tau if tau is None else tau, **{**self.settings, **settings})

    def discrete_law(self, raw: Tensor, family: str | None = None, **settings) -> Distribution:
        """The exact discrete law of ``raw`` (for ``family``, default the method's own)."""
        if self.discrete is None:
            raise ValueError(f"method {self.name!r} has no discrete law")
        self.check_settings(settings)
        return self.discrete(raw, Family(family or self.family), **{**self.settings, **settings})

    def check_settings(self, settings: Mapping[str, Any]) -> None:
        unknown = set(settings) - set(self.settings)
        if unknown:
            allowed = ", ".join(self.settings) or "none"
            raise ValueError(f"unknown setting(s) {sorted(unknown)} for method {self.name!r} "
                             f"(it takes: {allowed})")


METHODS: dict[str, Method] = {}


def register(method: Method) -> Method:
    """Add ``method`` to :data:`METHODS` (names are unique)."""
    if method.name in METHODS:
        raise ValueError(f"method {method.name!r} is registered twice")
    METHODS[method.name] = method
    return method


class UnknownMethodError(BadInput):
    """Raised by :func:`get_method` with the list of methods and the closest match."""


def get_method(name: str) -> Method:
    """The record for ``name``; an :class:`UnknownMethodError` names the closest match."""
    try:
        return METHODS[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(METHODS), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise UnknownMethodError(
            f"unknown method {name!r}.{hint} Choose from: {', '.join(METHODS)}"
        ) from None


def methods_where(**conditions) -> list[Method]:
    """Registry records whose attributes equal ``conditions`` (e.g. ``family="bernoulli"``)."""
    return [m for m in METHODS.values() if all(getattr(m, k) == v for k, v in conditions.items())]


# ----------------------------------------------------------------------------- discrete laws
def bernoulli_law(raw: Tensor, family: Family = Family.BERNOULLI, **_) -> Distribution:
    """Bernoulli(sigmoid(raw))."""
    return Bernoulli(logits=raw)


def categorical_law(raw: Tensor, family: Family = Family.CATEGORICAL, **_) -> Distribution:
    """OneHotCategorical(softmax(raw))."""
    return OneHotCategorical(logits=raw)


def discrete_law(raw: Tensor, family: str = "bernoulli", **_) -> Distribution:
    """Bernoulli(sigmoid(raw)) or OneHotCategorical(softmax(raw)), for estimators serving both."""
    if family == Family.BERNOULLI:
        return bernoulli_law(raw)
    if family == Family.CATEGORICAL:
        return categorical_law(raw)
    raise ValueError(f"no discrete law for family {family!r} (bernoulli or categorical)")


def _gaussian_gate_loc(raw: Tensor, scale: float) -> Tensor:
    # loc = 1/2 + scale * Phi^{-1}(sigmoid(raw)), so that P(z > 1/2) = sigmoid(raw): the gate
    # thresholded at 1/2 is exactly Bernoulli(sigmoid(raw)), which makes raw comparable to the
    # logits of every other Bernoulli-family method.
    # Phi^{-1}(sigmoid(raw)) without a clamp (a clamp at 1e-6 made the gradient exactly 0 for
    # |raw| > 13.8): stable for every finite raw, see ndtri_sigmoid.
    return 0.5 + scale * ndtri_sigmoid(raw)


def _copula(raw: Tensor, tau, correlation=None, scale_tril=None, **_) -> Distribution:
    # scale_tril: a Cholesky factor of R with unit-norm rows (a learned one needs no float32
    # Cholesky of a 200 x 200 matrix, which fails once R is ill-conditioned); no R: independence
    if scale_tril is None and correlation is None:
        correlation = torch.eye(raw.shape[-1], dtype=raw.dtype, device=raw.device)
    return D.CorrelatedRelaxedBernoulli(tau, logits=raw, scale_tril=scale_tril,
                                        correlation=None if scale_tril is not None else correlation)


IGR_PARAMS = LocScale(reduced_by=1)
LN_PARAMS = LocScale(reduced_by=0)


# ----------------------------------------------------------------------------- the records
BERNOULLI = (Family.BERNOULLI,)
CATEGORICAL = (Family.CATEGORICAL,)
BOTH = (Family.BERNOULLI, Family.CATEGORICAL)
BERNOULLI_PAPER = Paper("Maddison, Mnih, Teh; Jang, Gu, Poole", 2017, "1611.00712",
                        "The Concrete Distribution / Categorical Reparameterization with Gumbel-Softmax")
GS_PAPER = Paper("Jang, Gu, Poole", 2017, "1611.01144", "Categorical Reparameterization with Gumbel-Softmax")
BENGIO_PAPER = Paper("Bengio, Leonard, Courville", 2013, "1308.3432",
                     "Estimating or Propagating Gradients Through Stochastic Neurons")

register(Method(
    name="relaxed-bernoulli", kind=Kind.RELAXED, families=BERNOULLI, unbiased=False,
    exact_log_prob=True, paper=BERNOULLI_PAPER, default_tau=0.5,
    summary="Binary Concrete: z = sigmoid((logits + L)/tau), L ~ Logistic(0,1)",
    relaxed=lambda raw, tau, hard, **_: D.RelaxedBernoulli(tau, logits=raw, hard=hard),
    discrete=bernoulli_law, settings={"hard": False}, rounds_to_discrete=True,
))
register(Method(
    name="gaussian-bernoulli", kind=Kind.RELAXED, families=BERNOULLI, unbiased=False,
    exact_log_prob=True,
    paper=Paper("Yamada, Lindenbaum, Negahban, Kluger", 2020, "1810.04247",
                "Feature Selection using Stochastic Gates"),
    summary="Stochastic gate: z = clamp(loc + scale*eps, 0, 1), atoms at 0 and 1",
    relaxed=lambda raw, tau, scale, **_: D.GaussianRelaxedBernoulli(_gaussian_gate_loc(raw, scale), scale),
    discrete=bernoulli_law, settings={"scale": 0.5}, rounds_to_discrete=True,
))
register(Method(
    name="hard-concrete", kind=Kind.RELAXED, families=BERNOULLI, unbiased=False, exact_log_prob=True,
    paper=Paper("Louizos, Welling, Kingma", 2018, "1712.01312",
                "Learning Sparse Neural Networks through L0 Regularization"),
    default_tau=2.0 / 3.0, summary="Stretched binary Concrete clamped to [0,1]: exact zeros and ones",
    relaxed=lambda raw, tau, **_: D.HardConcrete(tau, logits=raw),
    discrete=bernoulli_law, rounds_to_discrete=True,
))
register(Method(
    name="stochastic-times-smooth", kind=Kind.STRAIGHT_THROUGH, families=BERNOULLI, unbiased=False,
    exact_log_prob=True, paper=BENGIO_PAPER,
    summary="h = sg(b)*sqrt(p), b ~ Bernoulli(sqrt(p)): gradient through sqrt(p)",
    relaxed=lambda raw, tau, **_: D.StochasticTimesSmooth(logits=raw), discrete=bernoulli_law,
))
register(Method(
    name="straight-through-bernoulli", kind=Kind.STRAIGHT_THROUGH, families=BERNOULLI,
    unbiased=False, exact_log_prob=True, paper=BENGIO_PAPER,
    summary="b ~ Bernoulli(p) forward, identity gradient of p backward",
    relaxed=lambda raw, tau, **_: D.StraightThroughBernoulli(logits=raw),
    discrete=bernoulli_law, rounds_to_discrete=True,
))
register(Method(
    name="correlated-bernoulli", kind=Kind.RELAXED, families=BERNOULLI, unbiased=False,
    exact_log_prob=True,
    paper=Paper("Lee, Imrie, van der Schaar", 2022, "",
                "Self-Supervision Enhanced Feature Selection with Correlated Gates"),
    default_tau=0.1, summary="Gaussian-copula relaxed Bernoulli gates with correlation matrix R",
    relaxed=_copula, discrete=bernoulli_law, settings={"correlation": None, "scale_tril": None},
    takes_correlation=True,
))
register(Method(
    name="gumbel-softmax", kind=Kind.RELAXED, families=CATEGORICAL, unbiased=False,
    exact_log_prob=True, paper=GS_PAPER, default_tau=1.0,
    summary="y = softmax((logits + G)/tau), G ~ Gumbel(0,1)",
    relaxed=lambda raw, tau, hard, **_: D.GumbelSoftmax(tau, logits=raw, hard=hard),
    discrete=categorical_law, settings={"hard": False}, rounds_to_discrete=True,
))
register(Method(
    name="st-gumbel-softmax", kind=Kind.STRAIGHT_THROUGH, families=CATEGORICAL, unbiased=False,
    exact_log_prob=True, paper=GS_PAPER, default_tau=1.0,
    summary="one_hot(argmax(logits + G)) forward, Gumbel-Softmax gradient backward",
    relaxed=lambda raw, tau, **_: D.GumbelSoftmax(tau, logits=raw, hard=True),
    discrete=categorical_law, rounds_to_discrete=True,
))
register(Method(
    name="decoupled-st-gumbel-softmax", kind=Kind.STRAIGHT_THROUGH, families=CATEGORICAL,
    unbiased=False, exact_log_prob=True,
    paper=Paper("Shah, Yan, Mozer, Liu", 2024, "2410.13331",
                "Improving Discrete Optimisation Via Decoupled Straight-Through Estimator"),
    default_tau=1.0,
    summary="one_hot ~ Categorical(softmax(logits/tau_forward)) forward, "
            "softmax((logits + tau_forward*G)/tau) backward",
    # tau (the temperature every command sweeps and anneals) is the backward one, like ST-GS's;
    # the forward temperature is a setting, so the forward law is a fixed discrete law that the
    # VAE's KL and the score functions see exactly (tau_forward = 1: ST Gumbel-Softmax's law).
    relaxed=lambda raw, tau, tau_forward, **_: D.DecoupledStraightThroughGumbelSoftmax(
        tau_forward, tau, logits=raw),
    discrete=lambda raw, family, tau_forward, **_: OneHotCategorical(logits=raw / tau_forward),
    settings={"tau_forward": 1.0}, rounds_to_discrete=True,
))
register(Method(
    name="topk", kind=Kind.RELAXED, families=(Family.SUBSET,), unbiased=False,
    exact_log_prob=False,  # soft k-hot: no density (exact only when hard)
    paper=Paper("Kool, van Hoof, Welling; Xie, Ermon", 2019, "1903.06059",
                "Stochastic Beams and Where to Find Them / Reparameterizable Subset Sampling"),
    default_tau=0.5, summary="Relaxed k-hot vector from one Gumbel perturbation and k softmax steps",
    relaxed=lambda raw, tau, k, hard, relaxation, **_: D.GumbelSoftmaxTopK(
        k, tau, logits=raw, hard=hard, relaxation=relaxation),
    # the hard top-k law (k draws without replacement); its KL is registered by enumeration
    discrete=lambda raw, family, k, **_: D.GumbelSoftmaxTopK(k, 1.0, logits=raw, hard=True),
    settings={"k": 2, "hard": False, "relaxation": "sequential"},
))
register(Method(
    name="invertible-gaussian", kind=Kind.RELAXED, families=CATEGORICAL, unbiased=False,
    exact_log_prob=True,
    paper=Paper("Potapczynski, Loaiza-Ganem, Cunningham", 2020, "1912.09588",
                "Invertible Gaussian Reparameterization"),
    default_tau=1.0, summary="z = softmax++((loc + scale*eps)/tau): a bijection onto the simplex",
    params=IGR_PARAMS,
    relaxed=lambda raw, tau, delta, **_: D.InvertibleGaussian(*IGR_PARAMS.unpack(raw), tau, delta=delta),
    settings={"delta": 1.0}, exact_relaxed_kl=True,
))
register(Method(
    name="generalized-gumbel", kind=Kind.RELAXED, families=CATEGORICAL, unbiased=False,
    exact_log_prob=False,
    paper=Paper("Joo, Kim, Kim, Moon", 2020, "2003.01847", "Generalized Gumbel-Softmax Gradient Estimator"),
    default_tau=1.0, summary="sum_k values_k * w_k, w ~ Gumbel-Softmax over a numeric support",
    relaxed=lambda raw, tau, values, hard, **_: D.GeneralizedGumbelSoftmax(
        torch.arange(raw.shape[-1], dtype=raw.dtype, device=raw.device) if values is None else values,
        tau, logits=raw, hard=hard),
    discrete=categorical_law, settings={"values": None, "hard": False},
    # one number per variable (sum_k values_k w_k), not a point of its one-hot law's space
    sample_in_law_space=False,
))
register(Method(
    name="logistic-normal", kind=Kind.RELAXED, families=(Family.SIMPLEX,), unbiased=False,
    exact_log_prob=True,
    paper=Paper("Hobbhahn, Kristiadi, Hennig", 2022, "2003.01227",
                "Fast Predictive Uncertainty for Classification with Bayesian Deep Networks"),
    summary="z = softmax(y), y ~ N(loc, diag(scale^2)); the Laplace bridge's target",
    params=LN_PARAMS, relaxed=lambda raw, tau, **_: D.LogisticNormalSoftmax(*LN_PARAMS.unpack(raw)),
    exact_relaxed_kl=True,
))

REINMAX_PAPER = Paper("Liu, Liu, Gao, Han", 2023, "2304.08612",
                      "Bridging Discrete and Backpropagation: Straight-Through and Beyond")
register(Method(
    name="reinmax", kind=Kind.STRAIGHT_THROUGH, families=CATEGORICAL, unbiased=False,
    exact_log_prob=True, paper=REINMAX_PAPER, default_tau=1.0,
    min_tau=1.0,  # the paper prefers tau >= 1; annealed to 0.5, a linear VAE trained worse (README)
    summary="one_hot ~ Categorical(softmax(logits)) forward, Heun backward 2 J(pi_1) g - J(pi_0) g / 2",
    relaxed=lambda raw, tau, **_: D.ReinMaxCategorical(tau, logits=raw),
    discrete=categorical_law, rounds_to_discrete=True,
))
register(Method(
    name="reinmax-bernoulli", kind=Kind.STRAIGHT_THROUGH, families=BERNOULLI, unbiased=False,
    exact_log_prob=True, paper=REINMAX_PAPER, default_tau=1.0, min_tau=1.0,
    summary="b ~ Bernoulli(p) forward, ReinMax backward (K = 2): 2 q(1-q) - p(1-p)/2",
    relaxed=lambda raw, tau, **_: D.ReinMaxBernoulli(tau, logits=raw),
    discrete=bernoulli_law, rounds_to_discrete=True,
))
register(Method(
    name="gumbel-rao", kind=Kind.STRAIGHT_THROUGH, families=CATEGORICAL, unbiased=False,
    exact_log_prob=True,
    paper=Paper("Paulus, Maddison, Krause", 2021, "2010.04838",
                "Rao-Blackwellizing the Straight-Through Gumbel-Softmax Gradient Estimator"),
    default_tau=1.0,
    summary="ST-GS forward; backward the ST-GS gradient averaged over M Gumbels drawn given the sample",
    relaxed=lambda raw, tau, M, **_: D.GumbelRao(tau, logits=raw, samples=M),
    discrete=categorical_law, settings={"M": 10}, rounds_to_discrete=True,
))


def ksubset_law(raw: Tensor, family: Family = Family.SUBSET, k: int = 2, **_) -> Distribution:
    """The exactly-k subset law: Bernoulli(sigmoid(raw)) conditioned on k ones."""
    return D.KSubset(k, logits=raw)


SUBSET = (Family.SUBSET,)
register(Method(
    name="simple", kind=Kind.STRAIGHT_THROUGH, families=SUBSET, unbiased=False, exact_log_prob=True,
    paper=Paper("Ahmed, Zeng, Niepert, Van den Broeck", 2023, "2210.01941",
                "SIMPLE: A Gradient Estimator for k-Subset Sampling"),
    summary="exact k-subset sample forward (O(nk) DP), gradient of the exact marginals backward",
    relaxed=lambda raw, tau, k, **_: D.SimpleKSubset(k, logits=raw),
    discrete=ksubset_law, settings={"k": 2},
))
register(Method(
    name="imle", kind=Kind.STRAIGHT_THROUGH, families=SUBSET, unbiased=False,
    exact_log_prob=False,  # top-k(theta + Sum-of-Gamma noise) has no closed-form law
    paper=Paper("Niepert, Minervini, Franceschi", 2021, "2106.01798",
                "Implicit MLE: Backpropagating Through Discrete Exponential Family Distributions"),
    default_tau=1.0,  # the noise temperature
    summary="top-k(theta + tau*SoG noise) forward; (z - top-k(theta - lambda df/dz + tau*noise))/lambda backward",
    relaxed=lambda raw, tau, k, noise, terms, **s: D.PerturbedTopK(k, raw, tau, noise=noise, lam=s["lambda"],
                                                                  terms=terms),
    # the exponential-family law I-MLE models (and its samples approximate); its exact KL is the
    # VAE's, its gradient is what grad-bench compares with
    discrete=ksubset_law, settings={"k": 2, "noise": "sog", "lambda": 1.0, "terms": 10},
    estimator=E.IMLEEstimator, exact_sampler=False,
))

# ----------------------------------------------------------------------------- score-function estimators
REINFORCE_PAPER = Paper("Williams", 1992, "", "Simple Statistical Gradient-Following Algorithms for Connectionist RL")
REBAR_PAPER = Paper("Tucker, Mnih, Maddison, Lawson, Sohl-Dickstein", 2017, "1703.07370",
                    "REBAR: Low-variance, unbiased gradient estimates for discrete latent variable models")

register(Method(
    name="reinforce", kind=Kind.SCORE_FUNCTION, families=BOTH, unbiased=True, exact_log_prob=True,
    paper=REINFORCE_PAPER,
    summary="(f(b) - c) grad log p(b); baseline c: none | moving-average | learned (option baseline=)",
    discrete=discrete_law, estimator=partial(E.ReinforceEstimator, baseline="none"),
))
register(Method(
    name="reinforce-rloo", kind=Kind.SCORE_FUNCTION, families=BOTH, unbiased=True,
    exact_log_prob=True,
    paper=Paper("Kool, van Hoof, Welling", 2019, "", "Buy 4 REINFORCE Samples, Get a Baseline for Free!"),
    summary="REINFORCE with the leave-one-out baseline (n_samples >= 2)",
    discrete=discrete_law, estimator=partial(E.ReinforceEstimator, baseline="leave-one-out"),
    min_samples=2,
))
register(Method(
    name="rebar", kind=Kind.SCORE_FUNCTION, families=BOTH, unbiased=True, exact_log_prob=True,
    paper=REBAR_PAPER, default_tau=0.5,
    summary="Score function with Concrete control variate eta*f(sigma(z/tau)) and z~ ~ p(z|b); eta, tau learned",
    discrete=discrete_law, estimator=partial(E.RebarEstimator, network=False),
))
register(Method(
    name="relax", kind=Kind.SCORE_FUNCTION, families=BOTH, unbiased=True, exact_log_prob=True,
    paper=Paper("Grathwohl, Choi, Wu, Roeder, Duvenaud", 2018, "1711.00123",
                "Backpropagation through the Void: Optimizing control variates for black-box gradient estimation"),
    default_tau=0.5,
    summary="REBAR's control variate plus a learned MLP r(sigma(z/tau)), trained to minimise variance",
    discrete=discrete_law, estimator=partial(E.RebarEstimator, network=True), needs_latent_size=True,
))
register(Method(
    name="muprop", kind=Kind.SCORE_FUNCTION, families=BOTH, unbiased=True, exact_log_prob=True,
    paper=Paper("Gu, Levine, Sutskever, Mnih", 2016, "1511.05176",
                "MuProp: Unbiased Backpropagation for Stochastic Neural Networks"),
    summary="(f(b) - f(mu) - f'(mu)(b - mu)) grad log p(b) + f'(mu) grad mu: Taylor control variate",
    discrete=discrete_law, estimator=E.MuPropEstimator,
))
register(Method(
    name="arm", kind=Kind.SCORE_FUNCTION, families=BERNOULLI, unbiased=True, exact_log_prob=True,
    paper=Paper("Yin, Zhou", 2019, "1807.11143",
                "ARM: Augment-REINFORCE-Merge Gradient for Stochastic Binary Networks"),
    summary="(f(1[u > sigma(-a)]) - f(1[u < sigma(a)])) (u - 1/2): antithetic pairs",
    discrete=bernoulli_law, estimator=E.ARMEstimator,
))
register(Method(
    name="disarm", kind=Kind.SCORE_FUNCTION, families=BERNOULLI, unbiased=True, exact_log_prob=True,
    paper=Paper("Dong, Mnih, Tucker", 2020, "2006.10680",
                "DisARM: An Antithetic Gradient Estimator for Binary Latent Variables"),
    summary="ARM with the uniform integrated out per dimension: lower variance, same pairs",
    discrete=bernoulli_law, estimator=E.DisARMEstimator,
))


# ----------------------------------------------------------------------------- settings on the command line
BOOL_WORDS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
PROBE_CATEGORIES = 4  # the tiny logits a setting is tried on (more when a subset size k needs it)


def settable(method: Method) -> dict[str, Any]:
    """The settings of ``method`` a user can type as ``KEY=VALUE`` (those with a bool, int,
    float or str default), with their defaults; None- or tensor-valued ones (a correlation
    matrix, a numeric support) need an option of their own."""
    return {key: v for key, v in method.settings.items() if isinstance(v, (bool, int, float, str))}


def format_setting(value: Any) -> str:
    """A setting's value as ``KEY=VALUE`` text that :func:`parse_settings` reads back exactly
    (bools as true/false, floats by ``repr``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, float) else str(value)


def settings_text(method: Method) -> str:
    """``"M=10"``, ``"k=2, hard=false, ..."``: the settings and defaults ``relax list`` shows
    (``correlation=<matrix>``-style for the ones ``--setting`` cannot set)."""
    free = settable(method)
    return ", ".join(f"{key}={format_setting(v)}" if key in free else f"{key}=<tensor>"
                     for key, v in method.settings.items())


def settings_overview() -> str:
    """Every registered method's typed settings and defaults, for ``--setting``'s help:
    ``"gumbel-rao: M=10; imle: k=2, noise=sog, lambda=1.0, terms=10; ..."``."""
    return "; ".join(f"{m.name}: {', '.join(f'{k}={format_setting(v)}' for k, v in settable(m).items())}"
                     for m in METHODS.values() if settable(m))


def _convert(method: Method, key: str, text: str, default: Any) -> Any:
    """``text`` as the type of ``default`` (bool words, int, finite float, str)."""
    where = f"--setting {key}={text}"
    if isinstance(default, bool):
        word = text.strip().lower()
        if word not in BOOL_WORDS:
            raise BadInput(f"{where}: {key} of {method.name} is true or false (also 1/0, yes/no)")
        return BOOL_WORDS[word]
    if isinstance(default, int):
        try:
            return int(text)
        except ValueError:
            try:
                x = float(text)
            except ValueError:
                x = math.nan
            if math.isfinite(x) and x.is_integer():
                return int(x)
            raise BadInput(f"{where}: {key} of {method.name} is an integer (default "
                           f"{default})") from None
    if isinstance(default, float):
        try:
            x = float(text)
        except ValueError:
            raise BadInput(f"{where}: {key} of {method.name} is a number (default "
                           f"{default:g})") from None
        if not math.isfinite(x):
            raise BadInput(f"{where}: {key} of {method.name} must be a finite number")
        return x
    return text.strip()


def _short_error(e: Exception) -> str:
    """One line of a distribution's ValueError (torch's constraint messages print tensors)."""
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    found = re.match(r"Expected parameter (\w+).*? to satisfy the constraint (.+?), but found", text)
    if found:
        text = f"expected {found.group(1)} to satisfy {found.group(2)}"
    return text if len(text) <= 200 else text[:197] + "..."


def probe_settings(method: Method, settings: Mapping[str, Any], categories: int | None = None,
                   family: str | None = None) -> None:
    """Build ``method``'s distribution (and its discrete law) once on tiny neutral parameters with
    ``settings`` and draw one sample: a value the distribution refuses raises its ValueError
    (or TypeError) here, before any run starts. ``categories``: K of the parameters (default 4,
    or k + 1 for a subset size k)."""
    if categories is None:
        k = settings.get("k", method.settings.get("k"))
        categories = max(PROBE_CATEGORIES, k + 1 if isinstance(k, int) and not isinstance(k, bool) else 0)
    raw = method.params.neutral((1, method.params.size(categories)))
    with torch.no_grad():
        if method.relaxed is not None:
            method.build(raw, None, **settings).sample((1,))
        if method.discrete is not None:
            method.discrete_law(raw, family, **settings).sample((1,))


def parse_settings(method: Method, items: list[str] | None, *, dedicated: Mapping[str, str] | None = None,
                   categories: int | None = None, family: str | None = None) -> dict[str, Any]:
    """``["M=100", "hard=true"]`` -> ``{"M": 100, "hard": True}``: ``--setting KEY=VALUE`` items
    of ``method``, each KEY one of its settings and VALUE converted to the type of its default
    (int, float, str; bools from true/false, 1/0, yes/no), then tried on the distribution
    (:func:`probe_settings`, at ``categories`` when given). Anything wrong is a
    :class:`BadInput` (exit 2) of one line: an unknown key (naming the settings the method
    takes), a value of the wrong type or one the distribution refuses, a key given twice with
    two values, or a setting that is a matrix or None by default (``dedicated`` maps such a
    setting to the command's own option for it, e.g. ``{"correlation": "--correlation"}``).

    Example:
        >>> parse_settings(get_method("gumbel-rao"), ["M=100"])
        {'M': 100}
        >>> parse_settings(get_method("imle"), ["lambda=10", "noise=gumbel"])  # the record's order
        {'noise': 'gumbel', 'lambda': 10.0}
    """
    parsed: dict[str, Any] = {}
    for item in items or []:
        key, value = split_setting(item)
        if key not in method.settings:
            raise BadInput(unknown_setting(method, key))
        default = method.settings[key]
        if key not in settable(method):
            flag = (dedicated or {}).get(key)
            how = f"use {flag}" if flag else "it cannot be set from the command line"
            raise BadInput(f"--setting {key}: {method.name}'s {key} is a tensor (default "
                           f"{default if default is None else 'a tensor'}), not a number, flag or "
                           f"word; {how}")
        v = _convert(method, key, value, default)
        if key in parsed and parsed[key] != v:
            raise BadInput(f"--setting {key} is given twice for {method.name}, as "
                           f"{format_setting(parsed[key])} and {format_setting(v)}")
        parsed[key] = v
    for key in [*parsed, None] if parsed else []:  # each alone (to name the culprit), then all
        tried = parsed if key is None else {key: parsed[key]}
        try:
            probe_settings(method, tried, categories, family)
        except (ValueError, TypeError) as e:
            what = " ".join(f"{k}={format_setting(v)}" for k, v in tried.items())
            raise BadInput(f"--setting {what}: {method.name} refuses it ({_short_error(e)})") from None
    return {key: parsed[key] for key in method.settings if key in parsed}  # the record's order


def split_setting(item: str) -> tuple[str, str]:
    """``"KEY=VALUE"`` -> (KEY, VALUE); anything else is bad input."""
    key, eq, value = str(item).partition("=")
    key, value = key.strip(), value.strip()
    if not eq or not key or not value:
        raise BadInput(f"--setting {item!r}: give KEY=VALUE, e.g. --setting M=100 (see `relax list` "
                       "for each method's settings)")
    return key, value


def unknown_setting(method: Method, key: str) -> str:
    """The line for a KEY ``method`` does not take: the settings it does take, or none."""
    if not method.settings:
        return f"--setting {key}: {method.name} takes no settings"
    close = ([k for k in method.settings if k.lower() == key.lower()]
             or difflib.get_close_matches(key, list(method.settings), n=1))
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return f"--setting {key}: {method.name} has no setting {key!r}.{hint} It takes: {settings_text(method)}"


def parse_method_settings(methods: list[Method], items: list[str] | None, *,
                          dedicated: Mapping[str, str] | None = None,
                          categories: int | None = None,
                          family: str | None = None) -> dict[str, dict[str, Any]]:
    """``--setting`` items for several methods at once (``relax grad-bench --methods a,b``):
    ``KEY=VALUE`` applies to every method in ``methods`` that takes KEY (at least one must),
    ``METHOD:KEY=VALUE`` to that method only (it must be in ``methods``) and wins over a plain
    KEY=VALUE. Returns {method name: its parsed settings} for the methods that got any.

    Example:
        >>> m = [get_method("gumbel-rao"), get_method("gumbel-softmax")]
        >>> parse_method_settings(m, ["M=100", "gumbel-softmax:hard=true"])
        {'gumbel-rao': {'M': 100}, 'gumbel-softmax': {'hard': True}}
    """
    common: list[tuple[str, str]] = []
    targeted: dict[str, list[str]] = {}
    names = [m.name for m in methods]
    for item in items or []:
        key, value = split_setting(item)
        target, colon, key = key.rpartition(":") if ":" in key else ("", "", key)
        if colon:
            if target not in names:
                get_method(target)  # an unknown name: the closest match
                raise BadInput(f"--setting {item}: {target} is not among the methods run here "
                               f"({', '.join(names)})")
            targeted.setdefault(target, []).append(f"{key}={value}")
            continue
        takers = [m for m in methods if key in m.settings]
        if not takers:
            offered = "; ".join(f"{m.name}: {settings_text(m)}" for m in methods if m.settings)
            raise BadInput(f"--setting {key}: no method run here takes {key!r} "
                           f"({offered or 'none of them takes any setting'})")
        common.append((key, value))
    out: dict[str, dict[str, Any]] = {}
    for m in methods:
        own = [f"{k}={v}" for k, v in common if k in m.settings
               and not any(t.partition("=")[0].strip() == k for t in targeted.get(m.name, []))]
        items_m = own + targeted.get(m.name, [])
        if items_m:
            out[m.name] = parse_settings(m, items_m, dedicated=dedicated, categories=categories,
                                         family=family)
    return out


def markdown_table() -> str:
    """The registry as the README's Markdown method table (``relax list --markdown``).

    A test checks that README.md contains exactly this text, so the README cannot drift from
    the registry.
    """
    lines = [
        "| method | family | kind | unbiased | exact log_prob | default tau | paper | what it computes |",
        "|---|---|---|:-:|:-:|--:|---|---|",
    ]
    for m in METHODS.values():
        tau = "-" if m.default_tau is None else f"{m.default_tau:.3g}"
        paper = m.paper.cite().replace("|", "\\|")
        lines.append(
            f"| `{m.name}` | {', '.join(f.value for f in m.families)} | {m.kind.value} | "
            f"{'yes' if m.unbiased else 'no'} | {'yes' if m.exact_log_prob else 'no'} | {tau} | "
            f"{paper} | {m.summary.replace('|', chr(92) + '|')} |")
    return "\n".join(lines) + "\n"
