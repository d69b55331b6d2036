"""Relaxed distributions for discrete random variables (METHODS.md sections 1-3).

Every class subclasses :class:`torch.distributions.Distribution`, draws independent noise per
element, follows its parameters' dtype and device, and has an exact ``log_prob`` (or raises
``NotImplementedError`` saying why none exists).
"""

from relaxcli.distributions import kl as _kl  # noqa: F401  (registers the discrete KLs)
from relaxcli.distributions.bernoulli import (
    GaussianRelaxedBernoulli,
    HardConcrete,
    LogitRelaxedBernoulli,
    ReinMaxBernoulli,
    RelaxedBernoulli,
    StochasticTimesSmooth,
    StraightThroughBernoulli,
)
from relaxcli.distributions.categorical import (
    DecoupledStraightThroughGumbelSoftmax,
    GeneralizedGumbelSoftmax,
    GumbelRao,
    GumbelSoftmax,
    LogGumbelSoftmax,
    ReinMaxCategorical,
)
from relaxcli.distributions.copula import (
    CorrelatedRelaxedBernoulli,
    LogitCorrelatedRelaxedBernoulli,
)
from relaxcli.distributions.simplex import InvertibleGaussian, LogisticNormalSoftmax
from relaxcli.distributions.subset import GumbelSoftmaxTopK, KSubset, PerturbedTopK, SimpleKSubset

__all__ = [
    "CorrelatedRelaxedBernoulli",
    "DecoupledStraightThroughGumbelSoftmax",
    "GaussianRelaxedBernoulli",
    "GeneralizedGumbelSoftmax",
    "GumbelRao",
    "GumbelSoftmax",
    "GumbelSoftmaxTopK",
    "HardConcrete",
    "InvertibleGaussian",
    "KSubset",
    "LogGumbelSoftmax",
    "LogisticNormalSoftmax",
    "LogitCorrelatedRelaxedBernoulli",
    "LogitRelaxedBernoulli",
    "PerturbedTopK",
    "ReinMaxBernoulli",
    "ReinMaxCategorical",
    "RelaxedBernoulli",
    "SimpleKSubset",
    "StochasticTimesSmooth",
    "StraightThroughBernoulli",
]
