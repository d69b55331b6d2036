"""Gradient estimators behind one interface (METHODS.md section 4).

``make_estimator(method, n_samples=1, **options)`` returns an :class:`Estimator` module for any
registry record: the record's ``estimator`` factory when it has one (score-function methods),
else the pathwise estimator (every distribution method). Call it as
``estimator(raw, cost, tau=None) -> Estimate`` (see :mod:`relaxcli.estimators.base`), and add
``estimator.parameters()`` to the optimizer (learned baselines, REBAR's eta and temperature,
RELAX's network receive their variance-minimising gradients during ``loss.backward()``).

Example:
    >>> import torch
    >>> from relaxcli.methods import get_method
    >>> est = make_estimator(get_method("reinforce"), n_samples=3, baseline="moving-average")
    >>> theta = torch.zeros(2, 4, requires_grad=True)
    >>> out = est(theta, lambda b: b.sum(-1))
    >>> out.loss.backward(); out.cost.shape
    torch.Size([3, 2])
"""

from __future__ import annotations

from relaxcli.estimators.base import Estimate, Estimator, attach_gradient
from relaxcli.estimators.conditional import (
    bernoulli_conditional,
    bernoulli_relaxed_pair,
    categorical_conditional,
    categorical_relaxed_pair,
)
from relaxcli.estimators.imle import IMLEEstimator
from relaxcli.estimators.pathwise import PathwiseEstimator
from relaxcli.estimators.policy import (
    PolicyEstimator,
    categorical_policy_gradient,
    critic_policy_gradient,
    muprop_policy_gradient,
)
from relaxcli.estimators.rebar import (
    ContextControlVariate,
    ControlVariateNet,
    RebarEstimator,
    relax_gradient,
    variance_gradient,
)
from relaxcli.estimators.score import (
    ARMEstimator,
    Baseline,
    DisARMEstimator,
    LearnedBaseline,
    MovingAverage,
    MuPropEstimator,
    ReinforceEstimator,
    leave_one_out,
    reinforce_gradient,
)


def make_estimator(method, n_samples: int = 1, **options) -> Estimator:
    """The gradient estimator of registry record ``method`` (pathwise when it names none).

    ``options`` go to the estimator class: e.g. ``baseline=`` for reinforce, ``family=`` for
    methods that serve both Bernoulli and categorical latents, ``latent_size=`` for RELAX, or a
    distribution method's build options (``scale=``, ``correlation=`` ...).
    """
    factory = method.estimator or PathwiseEstimator
    return factory(method, n_samples=n_samples, **options)


__all__ = [
    "ARMEstimator",
    "Baseline",
    "ContextControlVariate",
    "ControlVariateNet",
    "DisARMEstimator",
    "Estimate",
    "Estimator",
    "IMLEEstimator",
    "LearnedBaseline",
    "MovingAverage",
    "MuPropEstimator",
    "PathwiseEstimator",
    "PolicyEstimator",
    "RebarEstimator",
    "ReinforceEstimator",
    "attach_gradient",
    "bernoulli_conditional",
    "bernoulli_relaxed_pair",
    "categorical_conditional",
    "categorical_policy_gradient",
    "critic_policy_gradient",
    "categorical_relaxed_pair",
    "leave_one_out",
    "make_estimator",
    "muprop_policy_gradient",
    "reinforce_gradient",
    "relax_gradient",
    "variance_gradient",
]
