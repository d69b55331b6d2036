"""THE registry: one :class:`Method` record per CLI method name.

``relax list``, the CLI's choices, the VAE's latent construction, grad-bench's method list, the
README table and the parametrised tests all read :data:`METHODS`. Adding a method is one class
(in ``distributions/`` or ``estimators/``) plus one :func:`register` call here.

Parameter convention (what runners hand to :meth:`Method.build`): ``raw`` is an unconstrained
tensor whose last dimension holds ``param_size(K)`` numbers per latent variable, where ``K`` is
the number of categories (1 for a Bernoulli unit). For methods with ``from_logits=True``, ``raw``
*is* the logits of the underlying discrete law (Bernoulli(sigmoid(raw)) or
Categorical(softmax(raw))), so exact gradients can be enumerated and discrete evaluation is
possible.

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
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import Tensor
from torch.distributions import Bernoulli, Distribution, OneHotCategorical

from relaxcli import distributions as D
from relaxcli import estimators as E
from relaxcli.distributions._numerics import ndtri_sigmoid
from relaxcli.errors import BadInput

FAMILIES = ("bernoulli", "categorical", "subset", "simplex")
KINDS = ("relaxed", "straight-through", "score-function")


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


@dataclass(frozen=True)
class Method:
    """One registry record. See the module docstring for the ``raw`` parameter convention.

    Fields:
        name: kebab-case CLI name.
        family: "bernoulli" | "categorical" | "subset" | "simplex".
        kind: "relaxed" | "straight-through" | "score-function".
        unbiased: whether its gradient estimate of the discrete objective is unbiased.
        exact_log_prob: whether its distribution's ``log_prob`` is the exact density/mass of
            what it samples (False where METHODS.md allows ``NotImplementedError``).
        paper: the reference.
        default_tau: default temperature (None where the method has none).
        summary: one line for ``relax list`` and the README.
        builder: ``builder(raw, tau, **options) -> Distribution`` (None for score-function
            methods, which use :attr:`discrete`).
        param_size: numbers per latent variable as a function of K.
        from_logits: ``raw`` are the logits of the underlying discrete law.
        discrete: ``discrete(raw, **options) -> Distribution`` of the underlying discrete law
            (None when the method has no discrete counterpart, e.g. IGR).
        options: extra keyword options ``builder`` accepts, with defaults (CLI and VAE use them).
        rounds_to_discrete: rounding a sample (z > 1/2 per Bernoulli unit, argmax of a vector)
            is an exact draw of ``discrete(raw, **options)`` at every temperature (binary
            Concrete: sigmoid((l + L)/tau) > 1/2 iff l + L > 0; Gumbel-max for argmax).
        estimator: ``estimator(method, **options)`` returning the gradient estimator module
            (filled in by ``relaxcli.estimators``; pathwise for every distribution method).
        families: further latent families a score-function estimator also serves (REINFORCE,
            REBAR and RELAX work for Bernoulli *and* categorical latents; ``family`` is the
            first). Use :meth:`supports` rather than comparing ``family``.
    """

    name: str
    family: str
    kind: str
    unbiased: bool
    exact_log_prob: bool
    paper: Paper
    default_tau: float | None
    summary: str
    builder: Callable[..., Distribution] | None = None
    param_size: Callable[[int], int] = lambda k: k
    from_logits: bool = True
    discrete: Callable[..., Distribution] | None = None
    options: dict[str, Any] = field(default_factory=dict)
    estimator: Callable[..., Any] | None = None
    rounds_to_discrete: bool = False
    families: tuple[str, ...] = ()

    def supports(self, family: str) -> bool:
        """Whether this method applies to latents of ``family``."""
        return family == self.family or family in self.families

    def build(self, raw: Tensor, tau: float | Tensor | None = None, **options) -> Distribution:
        """The method's distribution for parameters ``raw`` at temperature ``tau``."""
        if self.builder is None:
            raise ValueError(f"method {self.name!r} is a score-function estimator: it has no relaxed "
                             "distribution; use .discrete() or its estimator")
        opts = {**self.options, **options}
        return self.builder(raw, self.default_tau if tau is None else tau, **opts)


METHODS: dict[str, Method] = {}


def register(method: Method) -> Method:
    """Add ``method`` to :data:`METHODS` (names are unique)."""
    if method.name in METHODS:
        raise ValueError(f"method {method.name!r} is registered twice")
    if method.family not in FAMILIES or method.kind not in KINDS:
        raise ValueError(f"method {method.name!r}: bad family {method.family!r} or kind {method.kind!r}")
    if method.estimator is None and method.builder is not None:
        # every distribution method differentiates through its samples by default
        method = replace(method, estimator=E.PathwiseEstimator)
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
def bernoulli_law(raw: Tensor, **_) -> Distribution:
    return Bernoulli(logits=raw)


def categorical_law(raw: Tensor, **_) -> Distribution:
    return OneHotCategorical(logits=raw)


def _gaussian_gate_loc(raw: Tensor, scale: float) -> Tensor:
    # loc = 1/2 + scale * Phi^{-1}(sigmoid(raw)), so that P(z > 1/2) = sigmoid(raw): the gate
    # thresholded at 1/2 is exactly Bernoulli(sigmoid(raw)), which makes raw comparable to the
    # logits of every other Bernoulli-family method.
    # Phi^{-1}(sigmoid(raw)) without a clamp (a clamp at 1e-6 made the gradient exactly 0 for
    # |raw| > 13.8): stable for every finite raw, see ndtri_sigmoid.
    return 0.5 + scale * ndtri_sigmoid(raw)


# ----------------------------------------------------------------------------- the records
BERNOULLI_PAPER = Paper("Maddison, Mnih, Teh; Jang, Gu, Poole", 2017, "1611.00712",
                        "The Concrete Distribution / Categorical Reparameterization with Gumbel-Softmax")
GS_PAPER = Paper("Jang, Gu, Poole", 2017, "1611.01144", "Categorical Reparameterization with Gumbel-Softmax")

register(Method(
    "relaxed-bernoulli", "bernoulli", "relaxed", False, True, BERNOULLI_PAPER, 0.5,
    "Binary Concrete: z = sigmoid((logits + L)/tau), L ~ Logistic(0,1)",
    builder=lambda raw, tau, hard=False, **o: D.RelaxedBernoulli(tau, logits=raw, hard=hard),
    param_size=lambda k: 1, discrete=bernoulli_law, rounds_to_discrete=True,
))
register(Method(
    "gaussian-bernoulli", "bernoulli", "relaxed", False, True,
    Paper("Yamada, Lindenbaum, Negahban, Kluger", 2020, "1810.04247", "Feature Selection using Stochastic Gates"),
    None, "Stochastic gate: z = clamp(loc + scale*eps, 0, 1), atoms at 0 and 1",
    builder=lambda raw, tau, scale=0.5, **o: D.GaussianRelaxedBernoulli(_gaussian_gate_loc(raw, scale), scale),
    param_size=lambda k: 1, discrete=bernoulli_law, options={"scale": 0.5}, rounds_to_discrete=True,
))
register(Method(
    "hard-concrete", "bernoulli", "relaxed", False, True,
    Paper("Louizos, Welling, Kingma", 2018, "1712.01312", "Learning Sparse Neural Networks through L0 Regularization"),
    2.0 / 3.0, "Stretched binary Concrete clamped to [0,1]: exact zeros and ones",
    builder=lambda raw, tau, **o: D.HardConcrete(tau, logits=raw),
    param_size=lambda k: 1, discrete=bernoulli_law, rounds_to_discrete=True,
))
register(Method(
    "stochastic-times-smooth", "bernoulli", "straight-through", False, True,
    Paper("Bengio, Leonard, Courville", 2013, "1308.3432", "Estimating or Propagating Gradients Through Stochastic Neurons"),
    None, "h = sg(b)*sqrt(p), b ~ Bernoulli(sqrt(p)): gradient through sqrt(p)",
    builder=lambda raw, tau, **o: D.StochasticTimesSmooth(logits=raw),
    param_size=lambda k: 1, discrete=bernoulli_law,
))
register(Method(
    "straight-through-bernoulli", "bernoulli", "straight-through", False, True,
    Paper("Bengio, Leonard, Courville", 2013, "1308.3432", "Estimating or Propagating Gradients Through Stochastic Neurons"),
    None, "b ~ Bernoulli(p) forward, identity gradient of p backward",
    builder=lambda raw, tau, **o: D.StraightThroughBernoulli(logits=raw),
    param_size=lambda k: 1, discrete=bernoulli_law, rounds_to_discrete=True,
))
register(Method(
    "correlated-bernoulli", "bernoulli", "relaxed", False, True,
    Paper("Lee, Imrie, van der Schaar", 2022, "", "Self-Supervision Enhanced Feature Selection with Correlated Gates"),
    0.1, "Gaussian-copula relaxed Bernoulli gates with correlation matrix R",
    builder=lambda raw, tau, correlation=None, scale_tril=None, **o: D.CorrelatedRelaxedBernoulli(
        tau, logits=raw, scale_tril=scale_tril, correlation=None if scale_tril is not None else
        torch.eye(raw.shape[-1], dtype=raw.dtype, device=raw.device) if correlation is None else correlation),
    # scale_tril: a Cholesky factor of R with unit-norm rows (a learned one needs no float32
    # Cholesky of a 200 x 200 matrix, which fails once R is ill-conditioned)
    param_size=lambda k: 1, discrete=bernoulli_law, options={"correlation": None, "scale_tril": None},
))
register(Method(
    "gumbel-softmax", "categorical", "relaxed", False, True, GS_PAPER, 1.0,
    "y = softmax((logits + G)/tau), G ~ Gumbel(0,1)",
    builder=lambda raw, tau, hard=False, **o: D.GumbelSoftmax(tau, logits=raw, hard=hard),
    discrete=categorical_law, rounds_to_discrete=True,
))
register(Method(
    "st-gumbel-softmax", "categorical", "straight-through", False, True, GS_PAPER, 1.0,
    "one_hot(argmax(logits + G)) forward, Gumbel-Softmax gradient backward",
    builder=lambda raw, tau, **o: D.GumbelSoftmax(tau, logits=raw, hard=True),
    discrete=categorical_law, rounds_to_discrete=True,
))
register(Method(
    "decoupled-st-gumbel-softmax", "categorical", "straight-through", False, True,
    Paper("Shah, Yan, Mozer, Liu", 2024, "2410.13331", "Improving Discrete Optimisation Via Decoupled Straight-Through Estimator"),
    1.0, "one_hot ~ Categorical(softmax(logits/tau_forward)) forward, softmax((logits + tau_forward*G)/tau) backward",
    # tau (the temperature every runner sweeps and anneals) is the backward one, like ST-GS's;
    # the forward temperature is an option, so the forward law is a fixed discrete law that the
    # VAE's KL and the score functions see exactly (tau_forward = 1: ST Gumbel-Softmax's law).
    builder=lambda raw, tau, tau_forward=1.0, **o: D.DecoupledStraightThroughGumbelSoftmax(
        tau_forward, tau, logits=raw),
    discrete=lambda raw, tau_forward=1.0, **o: OneHotCategorical(logits=raw / tau_forward),
    options={"tau_forward": 1.0}, rounds_to_discrete=True,
))
register(Method(
    "topk", "subset", "relaxed", False, False,  # soft k-hot: no density (exact only when hard)
    Paper("Kool, van Hoof, Welling; Xie, Ermon", 2019, "1903.06059", "Stochastic Beams and Where to Find Them / Reparameterizable Subset Sampling"),
    0.5, "Relaxed k-hot vector from one Gumbel perturbation and k softmax steps",
    builder=lambda raw, tau, k=2, hard=False, relaxation="sequential", **o: D.GumbelSoftmaxTopK(
        k, tau, logits=raw, hard=hard, relaxation=relaxation),
    discrete=lambda raw, k=2, **o: D.GumbelSoftmaxTopK(k, 1.0, logits=raw, hard=True),
    options={"k": 2, "relaxation": "sequential"},
))
register(Method(
    "invertible-gaussian", "categorical", "relaxed", False, True,
    Paper("Potapczynski, Loaiza-Ganem, Cunningham", 2020, "1912.09588", "Invertible Gaussian Reparameterization"),
    1.0, "z = softmax++((loc + scale*eps)/tau): a bijection onto the simplex",
    builder=lambda raw, tau, delta=1.0, **o: D.InvertibleGaussian(
        raw[..., : raw.shape[-1] // 2], torch.nn.functional.softplus(raw[..., raw.shape[-1] // 2:]) + 1e-4,
        tau, delta=delta),
    param_size=lambda k: 2 * (k - 1), from_logits=False, options={"delta": 1.0},
))
register(Method(
    "generalized-gumbel", "categorical", "relaxed", False, False,
    Paper("Joo, Kim, Kim, Moon", 2020, "2003.01847", "Generalized Gumbel-Softmax Gradient Estimator"),
    1.0, "sum_k values_k * w_k, w ~ Gumbel-Softmax over a numeric support",
    builder=lambda raw, tau, values=None, hard=False, **o: D.GeneralizedGumbelSoftmax(
        torch.arange(raw.shape[-1], dtype=raw.dtype, device=raw.device) if values is None else values,
        tau, logits=raw, hard=hard),
    discrete=categorical_law, options={"values": None},
))
register(Method(
    "logistic-normal", "simplex", "relaxed", False, True,
    Paper("Hobbhahn, Kristiadi, Hennig", 2022, "2003.01227", "Fast Predictive Uncertainty for Classification with Bayesian Deep Networks"),
    None, "z = softmax(y), y ~ N(loc, diag(scale^2)); the Laplace bridge's target",
    builder=lambda raw, tau, **o: D.LogisticNormalSoftmax(
        raw[..., : raw.shape[-1] // 2], torch.nn.functional.softplus(raw[..., raw.shape[-1] // 2:]) + 1e-4),
    param_size=lambda k: 2 * k, from_logits=False,
))


# ----------------------------------------------------------------------------- score-function estimators
def discrete_law(raw: Tensor, family: str = "bernoulli", **_) -> Distribution:
    """Bernoulli(sigmoid(raw)) or OneHotCategorical(softmax(raw)) for estimators serving both."""
    if family == "bernoulli":
        return bernoulli_law(raw)
    if family == "categorical":
        return categorical_law(raw)
    raise ValueError(f"no discrete law for family {family!r} (bernoulli or categorical)")


BOTH = ("bernoulli", "categorical")
REINFORCE_PAPER = Paper("Williams", 1992, "", "Simple Statistical Gradient-Following Algorithms for Connectionist RL")

register(Method(
    "reinforce", "bernoulli", "score-function", True, True, REINFORCE_PAPER, None,
    "(f(b) - c) grad log p(b); baseline c: none | moving-average | learned (option baseline=)",
    discrete=discrete_law, options={"baseline": "none"}, estimator=E.ReinforceEstimator, families=BOTH,
))
register(Method(
    "reinforce-rloo", "bernoulli", "score-function", True, True,
    Paper("Kool, van Hoof, Welling", 2019, "", "Buy 4 REINFORCE Samples, Get a Baseline for Free!"), None,
    "REINFORCE with the leave-one-out baseline (n_samples >= 2)",
    discrete=discrete_law, options={"baseline": "leave-one-out"}, estimator=E.ReinforceEstimator, families=BOTH,
))
register(Method(
    "rebar", "bernoulli", "score-function", True, True,
    Paper("Tucker, Mnih, Maddison, Lawson, Sohl-Dickstein", 2017, "1703.07370",
          "REBAR: Low-variance, unbiased gradient estimates for discrete latent variable models"), 0.5,
    "Score function with Concrete control variate eta*f(sigma(z/tau)) and z~ ~ p(z|b); eta, tau learned",
    discrete=discrete_law, options={"network": False}, estimator=E.RebarEstimator, families=BOTH,
))
register(Method(
    "relax", "bernoulli", "score-function", True, True,
    Paper("Grathwohl, Choi, Wu, Roeder, Duvenaud", 2018, "1711.00123",
          "Backpropagation through the Void: Optimizing control variates for black-box gradient estimation"), 0.5,
    "REBAR's control variate plus a learned MLP r(sigma(z/tau)), trained to minimise variance",
    discrete=discrete_law, options={"network": True}, estimator=E.RebarEstimator, families=BOTH,
))
register(Method(
    "arm", "bernoulli", "score-function", True, True,
    Paper("Yin, Zhou", 2019, "1807.11143", "ARM: Augment-REINFORCE-Merge Gradient for Stochastic Binary Networks"), None,
    "(f(1[u > sigma(-a)]) - f(1[u < sigma(a)])) (u - 1/2): antithetic pairs",
    param_size=lambda k: 1, discrete=bernoulli_law, estimator=E.ARMEstimator,
))
register(Method(
    "disarm", "bernoulli", "score-function", True, True,
    Paper("Dong, Mnih, Tucker", 2020, "2006.10680", "DisARM: An Antithetic Gradient Estimator for Binary Latent Variables"), None,
    "ARM with the uniform integrated out per dimension: lower variance, same pairs",
    param_size=lambda k: 1, discrete=bernoulli_law, estimator=E.DisARMEstimator,
))


def method_families(method: Method) -> tuple[str, ...]:
    """Every latent family ``method`` serves: its own, then any further ones."""
    return (method.family, *(f for f in method.families if f != method.family))


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
            f"| `{m.name}` | {', '.join(method_families(m))} | {m.kind} | "
            f"{'yes' if m.unbiased else 'no'} | {'yes' if m.exact_log_prob else 'no'} | {tau} | "
            f"{paper} | {m.summary.replace('|', chr(92) + '|')} |")
    return "\n".join(lines) + "\n"
