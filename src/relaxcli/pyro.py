"""Pyro-ready versions of every :mod:`relaxcli.distributions` class (optional: needs pyro-ppl).

Each class here is ``class X(relaxcli.distributions.X, TorchDistributionMixin)``: the torch class
first, then Pyro's mixin, which is the order Pyro's documentation asks for (the same pattern as
Pyro's own ``pyro.distributions.torch`` wrappers and ``relaxed_straight_through.py``). The mixin
adds what ``pyro.sample`` needs (``__call__``, ``to_event``, ``mask``, ``expand_by``, shape
helpers); the math, ``expand`` and ``log_prob`` stay those of the relaxcli class.

This is the only module of relaxcli that imports pyro; ``import relaxcli`` and
``import relaxcli.distributions`` work without it (``pip install relaxcli[pyro]`` installs it).

Example:
    >>> import pyro, torch
    >>> from relaxcli.pyro import GumbelSoftmax
    >>> def model():
    ...     return pyro.sample("z", GumbelSoftmax(0.5, logits=torch.zeros(3)))
    >>> model().shape
    torch.Size([3])
"""

from __future__ import annotations

try:
    from pyro.distributions.torch_distribution import TorchDistributionMixin
except ImportError as exc:  # pragma: no cover - exercised only without pyro installed
    raise ImportError(
        "relaxcli.pyro needs pyro-ppl; install it with `pip install pyro-ppl` "
        "(or `pip install relaxcli[pyro]`)"
    ) from exc

from relaxcli import distributions as _D

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


class RelaxedBernoulli(_D.RelaxedBernoulli, TorchDistributionMixin):
    """Pyro-ready :class:`relaxcli.distributions.RelaxedBernoulli`."""


class GaussianRelaxedBernoulli(_D.GaussianRelaxedBernoulli, TorchDistributionMixin):
    """Pyro-ready :class:`relaxcli.distributions.GaussianRelaxedBernoulli`."""


class HardConcrete(_D.HardConcrete, TorchDistributionMixin):
    """Pyro-ready :class:`relaxcli.distributions.HardConcrete`."""


class StochasticTimesSmooth(_D.StochasticTimesSmooth, TorchDistributionMixin):
    """Pyro-ready :class:`relaxcli.distributions.StochasticTimesSmooth`."""


class StraightThroughBernoulli(_D.StraightThroughBernoulli, TorchDistributionMixin):
    """Pyro-ready :class:`relaxcli.distributions.StraightThroughBernoulli`."""


class CorrelatedRelaxedBernoulli(_D.CorrelatedRelaxedBernoulli, TorchDistributionMixin):
    """Pyro-ready :class:`relaxcli.distributions.CorrelatedRelaxedBernoulli`."""


class GumbelSoftmax(_D.GumbelSoftmax, TorchDistributionMixin):
    """Pyro-ready :class:`relaxcli.distributions.GumbelSoftmax`."""


class DecoupledStraightThroughGumbelSoftmax(_D.DecoupledStraightThroughGumbelSoftmax, TorchDistributionMixin):
    """Pyro-ready :class:`relaxcli.distributions.DecoupledStraightThroughGumbelSoftmax`."""


class GumbelSoftmaxTopK(_D.GumbelSoftmaxTopK, TorchDistributionMixin):
    """Pyro-ready :class:`relaxcli.distributions.GumbelSoftmaxTopK`."""


class InvertibleGaussian(_D.InvertibleGaussian, TorchDistributionMixin):
    """Pyro-ready :class:`relaxcli.distributions.InvertibleGaussian`."""


class GeneralizedGumbelSoftmax(_D.GeneralizedGumbelSoftmax, TorchDistributionMixin):
    """Pyro-ready :class:`relaxcli.distributions.GeneralizedGumbelSoftmax`."""


class LogisticNormalSoftmax(_D.LogisticNormalSoftmax, TorchDistributionMixin):
    """Pyro-ready :class:`relaxcli.distributions.LogisticNormalSoftmax`."""


class LogitRelaxedBernoulli(_D.LogitRelaxedBernoulli, TorchDistributionMixin):
    """Pyro-ready :class:`relaxcli.distributions.LogitRelaxedBernoulli`."""


class LogGumbelSoftmax(_D.LogGumbelSoftmax, TorchDistributionMixin):
    """Pyro-ready :class:`relaxcli.distributions.LogGumbelSoftmax`."""


class LogitCorrelatedRelaxedBernoulli(_D.LogitCorrelatedRelaxedBernoulli, TorchDistributionMixin):
    """Pyro-ready :class:`relaxcli.distributions.LogitCorrelatedRelaxedBernoulli`."""


class GumbelRao(_D.GumbelRao, TorchDistributionMixin):
    """Pyro-ready :class:`relaxcli.distributions.GumbelRao`."""


class KSubset(_D.KSubset, TorchDistributionMixin):
    """Pyro-ready :class:`relaxcli.distributions.KSubset`."""


class PerturbedTopK(_D.PerturbedTopK, TorchDistributionMixin):
    """Pyro-ready :class:`relaxcli.distributions.PerturbedTopK`."""


class ReinMaxBernoulli(_D.ReinMaxBernoulli, TorchDistributionMixin):
    """Pyro-ready :class:`relaxcli.distributions.ReinMaxBernoulli`."""


class ReinMaxCategorical(_D.ReinMaxCategorical, TorchDistributionMixin):
    """Pyro-ready :class:`relaxcli.distributions.ReinMaxCategorical`."""


class SimpleKSubset(_D.SimpleKSubset, TorchDistributionMixin):
    """Pyro-ready :class:`relaxcli.distributions.SimpleKSubset`."""
