"""Samples lie in their own support; the support's class-level attributes are true (issue 11)."""

import pickle

import pytest
import torch
from torch.distributions import constraints

from relaxcli import distributions as D


@pytest.mark.parametrize("tau", [0.3, 1.0, 3.0])
def test_float32_simplex_samples_are_in_the_simplex_at_k_10000(tau):
    # A float32 softmax over 10000 categories summed to 1 only within ~2e-6 (simplex allows 1e-6),
    # so log_prob(rsample()) raised under validation on a share of the rows.
    torch.manual_seed(0)
    rows, num = 400, 10000
    laws = [
        D.GumbelSoftmax(tau, logits=torch.zeros(rows, num), validate_args=True),
        D.InvertibleGaussian(torch.zeros(rows, num - 1), torch.ones(rows, num - 1), tau, validate_args=True),
        D.LogisticNormalSoftmax(torch.zeros(rows, num), torch.full((rows, num), tau), validate_args=True),
    ]
    for d in laws:
        y = d.rsample()
        assert bool(constraints.simplex.check(y).all()), type(d).__name__
        assert bool(torch.isfinite(d.log_prob(y)).all())  # validates the sample: no ValueError


def test_generalized_gumbel_soft_values_stay_in_the_hull_of_the_support():
    torch.manual_seed(1)
    values = torch.linspace(-1.0, 1.0, 10000)
    d = D.GeneralizedGumbelSoftmax(values, 1.0, logits=torch.zeros(400, 10000))
    assert bool(d.support.check(d.rsample()).all())


HARD = [
    (D.RelaxedBernoulli, (0.5,), {"logits": torch.zeros(3)}),
    (D.GumbelSoftmax, (0.5,), {"logits": torch.zeros(3)}),
    (D.GeneralizedGumbelSoftmax, (torch.arange(3.0), 0.5), {"logits": torch.zeros(3)}),
    (D.GumbelSoftmaxTopK, (2, 0.5), {"logits": torch.zeros(4)}),
]


@pytest.mark.parametrize("cls, args, kwargs", HARD, ids=lambda x: getattr(x, "__name__", ""))
def test_hard_variants_are_discrete_at_class_level(cls, args, kwargs):
    hard, soft = cls(*args, hard=True, **kwargs), cls(*args, **kwargs)
    assert type(hard).support.is_discrete and hard.support.is_discrete
    assert not type(soft).support.is_discrete and not soft.support.is_discrete
    assert isinstance(hard, cls) and type(soft) is cls and hard.hard and not soft.hard
    assert type(hard).support.event_dim == type(soft).support.event_dim == soft.support.event_dim
    e = hard.expand((2,) + hard.batch_shape)
    assert type(e) is type(hard) and bool(e.support.check(e.sample()).all())
    back = pickle.loads(pickle.dumps(hard))
    assert type(back) is type(hard) and back.hard
    assert bool(hard.support.check(hard.rsample((5,)).detach()).all())


def test_pyro_hard_variants_are_pyro_and_discrete():
    pyro_d = pytest.importorskip("relaxcli.pyro")
    from pyro.distributions.torch_distribution import TorchDistributionMixin

    h = pyro_d.GumbelSoftmax(0.5, logits=torch.zeros(3), hard=True)
    assert isinstance(h, TorchDistributionMixin) and isinstance(h, D.GumbelSoftmax)
    assert type(h).support.is_discrete and type(h).__name__ == "HardGumbelSoftmax"


def test_copula_temperature_constraint_is_elementwise():
    c = D.CorrelatedRelaxedBernoulli.arg_constraints["temperature"]
    assert c.event_dim == 0
    d = D.CorrelatedRelaxedBernoulli(0.3, torch.eye(3), probs=torch.full((3,), 0.4), validate_args=True)
    assert bool(c.check(torch.tensor(0.3))) and d.log_prob(d.rsample()).shape == ()
