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
    d = D.CorrelatedRelaxedBernoulli(0.3, correlation=torch.eye(3), probs=torch.full((3,), 0.4), validate_args=True)
    assert bool(c.check(torch.tensor(0.3))) and d.log_prob(d.rsample()).shape == ()


# ----------------------------------------------------------------------------- logit / log space
def test_logit_relaxed_bernoulli_density_is_exact_in_float32():
    # At tau = 0.1, ~19% of RelaxedBernoulli samples round to exactly 0 or 1 in float32 and their
    # log_prob is taken at a clamped neighbour (up to ~18 nats off); in logit space it is exact.
    torch.manual_seed(3)
    logits = torch.tensor([0.0, 2.0, -3.0])
    d = D.RelaxedBernoulli(0.1, logits=logits)
    x = d.logit_space().rsample((4000,))
    assert isinstance(d.logit_space(), D.LogitRelaxedBernoulli)
    rounded = ((torch.sigmoid(x) == 0) | (torch.sigmoid(x) == 1)).float().mean()
    assert rounded > 0.1
    ref = torch.distributions.relaxed_bernoulli.LogitRelaxedBernoulli(
        torch.tensor(0.1, dtype=torch.float64), logits=logits.double())
    torch.testing.assert_close(d.logit_space().log_prob(x).double(), ref.log_prob(x.double()),
                               rtol=1e-5, atol=1e-4)
    # the law: x is logistic with location logits/tau and scale 1/tau
    torch.testing.assert_close(x.double().mean(0), logits.double() / 0.1, atol=4 * 18.2 / 63, rtol=0)
    assert isinstance(D.LogitRelaxedBernoulli(0.1, probs=torch.tensor(0.3)).relaxed(), D.RelaxedBernoulli)


def test_log_gumbel_softmax_density_is_exact_in_float32():
    torch.manual_seed(4)
    logits = torch.tensor([1.0, 0.0, -2.0, 0.5])
    d = D.GumbelSoftmax(0.05, logits=logits)
    ld = d.log_space()
    assert isinstance(ld, D.LogGumbelSoftmax) and ld.event_shape == (4,)
    x = ld.rsample((2000,))
    assert float((x.exp() == 0).float().mean()) > 0.05  # entries that underflow in the simplex
    ref = torch.distributions.relaxed_categorical.ExpRelaxedCategorical(
        torch.tensor(0.05, dtype=torch.float64), logits=logits.double())
    torch.testing.assert_close(ld.log_prob(x).double(), ref.log_prob(x.double()), rtol=1e-5, atol=1e-3)
    # argmax of exp(x) is the Gumbel-max draw: frequencies are softmax(logits)
    freq = torch.nn.functional.one_hot(x.argmax(-1), 4).double().mean(0)
    p = torch.softmax(logits.double(), -1)
    assert bool(((freq - p).abs() <= 4 * (p * (1 - p) / 2000).sqrt()).all())
    assert isinstance(ld.relaxed(), D.GumbelSoftmax) and ld.expand((3,)).rsample().shape == (3, 4)


# ----------------------------------------------------------------------------- validation like torch
TEMPERED = [
    ("RelaxedBernoulli", lambda t, v: D.RelaxedBernoulli(t, logits=torch.zeros(3), validate_args=v)),
    ("LogitRelaxedBernoulli", lambda t, v: D.LogitRelaxedBernoulli(t, logits=torch.zeros(3), validate_args=v)),
    ("HardConcrete", lambda t, v: D.HardConcrete(logits=torch.zeros(3), temperature=t, validate_args=v)),
    ("CorrelatedRelaxedBernoulli", lambda t, v: D.CorrelatedRelaxedBernoulli(t, correlation=torch.eye(2),
                                                                             logits=torch.zeros(2), validate_args=v)),
    ("GumbelSoftmax", lambda t, v: D.GumbelSoftmax(t, logits=torch.zeros(3), validate_args=v)),
    ("LogGumbelSoftmax", lambda t, v: D.LogGumbelSoftmax(t, logits=torch.zeros(3), validate_args=v)),
    ("DecoupledST", lambda t, v: D.DecoupledStraightThroughGumbelSoftmax(t, 1.0, logits=torch.zeros(3),
                                                                         validate_args=v)),
    ("GeneralizedGumbelSoftmax", lambda t, v: D.GeneralizedGumbelSoftmax(torch.arange(3.0), t, logits=torch.zeros(3),
                                                                         validate_args=v)),
    ("GumbelSoftmaxTopK", lambda t, v: D.GumbelSoftmaxTopK(2, t, logits=torch.zeros(4), validate_args=v)),
    ("InvertibleGaussian", lambda t, v: D.InvertibleGaussian(torch.zeros(2), torch.ones(2), t, validate_args=v)),
    ("GaussianRelaxedBernoulli.scale", lambda t, v: D.GaussianRelaxedBernoulli(torch.zeros(2), t, validate_args=v)),
]


@pytest.mark.parametrize("name, make", TEMPERED, ids=[n for n, _ in TEMPERED])
def test_nonpositive_temperature_or_scale_is_checked_only_when_validating(name, make):
    # as torch does: validate_args=False skips the check (and its device sync); True raises
    for bad in (0.0, -1.0):
        make(bad, False)
        with pytest.raises(ValueError, match="temperature|scale"):
            make(bad, True)


# ----------------------------------------------------------------------------- generator=
GENERATED = [
    lambda: D.RelaxedBernoulli(0.5, logits=torch.zeros(3)),
    lambda: D.RelaxedBernoulli(0.5, logits=torch.zeros(3), hard=True),
    lambda: D.LogitRelaxedBernoulli(0.5, logits=torch.zeros(3)),
    lambda: D.GaussianRelaxedBernoulli(torch.full((3,), 0.5), 0.5),
    lambda: D.HardConcrete(logits=torch.zeros(3)),
    lambda: D.StochasticTimesSmooth(logits=torch.zeros(3)),
    lambda: D.StraightThroughBernoulli(logits=torch.zeros(3)),
    lambda: D.CorrelatedRelaxedBernoulli(0.3, logits=torch.zeros(3), correlation=torch.eye(3)),
    lambda: D.LogitCorrelatedRelaxedBernoulli(0.3, logits=torch.zeros(3), correlation=torch.eye(3)),
    lambda: D.GumbelSoftmax(0.5, logits=torch.zeros(4)),
    lambda: D.GumbelSoftmax(0.5, logits=torch.zeros(4), hard=True),
    lambda: D.LogGumbelSoftmax(0.5, logits=torch.zeros(4)),
    lambda: D.DecoupledStraightThroughGumbelSoftmax(0.5, 1.0, logits=torch.zeros(4)),
    lambda: D.GeneralizedGumbelSoftmax(torch.arange(4.0), 0.5, logits=torch.zeros(4)),
    lambda: D.GumbelSoftmaxTopK(2, 0.5, logits=torch.zeros(5)),
    lambda: D.GumbelSoftmaxTopK(2, 0.5, logits=torch.zeros(5), hard=True),
    lambda: D.InvertibleGaussian(torch.zeros(3), torch.ones(3), 0.5),
    lambda: D.LogisticNormalSoftmax(torch.zeros(3), torch.ones(3)),
]


@pytest.mark.parametrize("make", GENERATED, ids=lambda m: type(m()).__name__)
def test_generator_makes_noise_reproducible_without_the_global_seed(make):
    d = make()
    for method in (d.rsample, d.sample):
        a = method((50,), generator=torch.Generator().manual_seed(7))
        torch.rand(3)  # the global stream moves on; the generator's does not depend on it
        b = method((50,), generator=torch.Generator().manual_seed(7))
        c = method((50,), generator=torch.Generator().manual_seed(8))
        assert torch.equal(a, b) and not torch.equal(a, c)
    assert d.sample((2,)).shape == (2,) + d.batch_shape + d.event_shape  # default: global RNG
