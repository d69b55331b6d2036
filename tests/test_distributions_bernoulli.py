"""Bernoulli family (METHODS.md section 1): shapes, noise, dtype, finiteness, validation, laws.

Statistical checks use fixed seeds and 4-standard-error tolerances computed from the sample size.
"""

import math

import pytest
import torch
from torch.distributions import Bernoulli
from torch.distributions import RelaxedBernoulli as TorchRelaxedBernoulli

from relaxcli.distributions import (
    GaussianRelaxedBernoulli,
    HardConcrete,
    RelaxedBernoulli,
    StochasticTimesSmooth,
    StraightThroughBernoulli,
)
from relaxcli.methods import methods_where

# name -> factory(param tensor of logits-like values) -> distribution
FACTORIES = {
    "relaxed": lambda a: RelaxedBernoulli(0.5, logits=a),
    "relaxed-hard": lambda a: RelaxedBernoulli(0.5, logits=a, hard=True),
    "relaxed-probs": lambda a: RelaxedBernoulli(torch.tensor(0.5, dtype=a.dtype), probs=torch.sigmoid(a)),
    "gaussian": lambda a: GaussianRelaxedBernoulli(0.5 + 0.3 * a, scale=0.5),
    "hard-concrete": lambda a: HardConcrete(logits=a),
    "sts": lambda a: StochasticTimesSmooth(logits=a),
    "sts-probs": lambda a: StochasticTimesSmooth(probs=torch.sigmoid(a)),
    "st": lambda a: StraightThroughBernoulli(logits=a),
    "st-probs": lambda a: StraightThroughBernoulli(probs=torch.sigmoid(a)),
}


def four_se(p, n):
    """4 standard errors of a frequency with success probability p over n draws."""
    return 4.0 * math.sqrt(p * (1.0 - p) / n) + 1e-12


# ----------------------------------------------------------------------------- shapes / expand
@pytest.mark.parametrize("name", FACTORIES)
def test_shapes_and_expand(name):
    d = FACTORIES[name](torch.randn(2, 3))
    assert d.batch_shape == (2, 3) and d.event_shape == ()
    assert d.rsample().shape == (2, 3)
    z = d.rsample((4,))
    assert z.shape == (4, 2, 3)
    assert d.sample((4, 5)).shape == (4, 5, 2, 3)
    assert d.log_prob(z).shape == (4, 2, 3)
    assert bool(d.support.check(z).all())
    e = d.expand((5, 2, 3))
    assert type(e) is type(d) and e.batch_shape == (5, 2, 3)
    ze = e.rsample((7,))
    assert ze.shape == (7, 5, 2, 3)
    assert e.log_prob(ze).shape == (7, 5, 2, 3)
    assert bool(e.support.check(ze).all())


def test_python_float_parameters_give_scalar_batch():
    for d in (RelaxedBernoulli(0.5, probs=0.3), GaussianRelaxedBernoulli(0.2, 0.5), HardConcrete(logits=0.1),
              StochasticTimesSmooth(logits=0.2), StraightThroughBernoulli(probs=0.4)):
        assert d.batch_shape == () and d.rsample((3,)).shape == (3,)
        assert d.rsample().dtype == torch.get_default_dtype()


def test_temperature_broadcasts_into_batch():
    d = RelaxedBernoulli(torch.tensor([[0.1], [1.0]]), logits=torch.zeros(3))
    assert d.batch_shape == (2, 3) and d.rsample((4,)).shape == (4, 2, 3)


# ----------------------------------------------------------------------------- independent noise
@pytest.mark.parametrize("name", FACTORIES)
def test_noise_independent_across_batch(name):
    """One parameter broadcast (expand) over a batch: the batch elements are uncorrelated."""
    torch.manual_seed(1)
    n = 4000
    d = FACTORIES[name](torch.zeros(())).expand((2,))
    z = d.sample((n,))
    assert not torch.equal(z[:, 0], z[:, 1])
    c = torch.corrcoef(z.T)[0, 1]
    assert abs(float(c)) < 4.0 / math.sqrt(n)
    # and the same parameter value given as a batch tensor
    z2 = FACTORIES[name](torch.zeros(2)).sample((n,))
    assert abs(float(torch.corrcoef(z2.T)[0, 1])) < 4.0 / math.sqrt(n)


# ----------------------------------------------------------------------------- dtype
@pytest.mark.parametrize("name", FACTORIES)
def test_float64_stays_float64(name):
    a = torch.randn(3, dtype=torch.float64, requires_grad=True)
    d = FACTORIES[name](a)
    z = d.rsample((2,))
    assert z.dtype == torch.float64
    assert d.log_prob(z).dtype == torch.float64
    z.sum().backward()
    assert a.grad.dtype == torch.float64


# ----------------------------------------------------------------------------- finiteness
TAUS = [0.01, 0.1, 1.0, 10.0]


@pytest.mark.parametrize("tau", TAUS)
@pytest.mark.parametrize("cls", ["relaxed", "relaxed-hard", "hard-concrete"])
def test_finite_samples_log_probs_and_grads_float32(cls, tau):
    logits = torch.linspace(-30, 30, 61).repeat(20).requires_grad_()
    temp = torch.tensor(tau, requires_grad=True)
    if cls == "hard-concrete":
        d = HardConcrete(logits=logits, temperature=temp)
    else:
        d = RelaxedBernoulli(temp, logits=logits, hard=cls == "relaxed-hard")
    z = d.rsample((5,))
    assert torch.isfinite(z).all()
    lp = d.log_prob(z)
    assert torch.isfinite(lp).all()
    (z.sum() + lp.sum()).backward()
    assert torch.isfinite(logits.grad).all() and torch.isfinite(temp.grad).all()
    if cls != "relaxed-hard":  # soft/mixed values: finite at the support's boundaries too
        ends = torch.tensor([0.0, 1.0]).view(2, 1)
        assert torch.isfinite(d.log_prob(ends)).all()


@pytest.mark.parametrize("cls", [StochasticTimesSmooth, StraightThroughBernoulli])
def test_finite_straight_through_float32(cls):
    logits = torch.linspace(-30, 30, 61).repeat(20).requires_grad_()
    d = cls(logits=logits)
    z = d.rsample((5,))
    lp = d.log_prob(z)
    assert torch.isfinite(z).all() and torch.isfinite(lp).all()
    (z.sum() + lp.sum()).backward()
    assert torch.isfinite(logits.grad).all()


@pytest.mark.parametrize("scale", [0.01, 0.5, 10.0])
def test_finite_gaussian_gate_float32(scale):
    loc = torch.linspace(-30, 30, 61).repeat(20).requires_grad_()
    s = torch.tensor(scale, requires_grad=True)
    d = GaussianRelaxedBernoulli(loc, s)
    z = d.rsample((5,))
    lp = d.log_prob(z)
    assert torch.isfinite(z).all() and torch.isfinite(lp).all()
    (z.sum() + lp.sum()).backward()
    assert torch.isfinite(loc.grad).all() and torch.isfinite(s.grad).all()
    assert torch.isfinite(d.log_prob(torch.tensor([0.0, 1.0]).view(2, 1))).all()


# ----------------------------------------------------------------------------- validation
@pytest.mark.parametrize("bad_tau", [0.0, -1.0])
def test_nonpositive_temperature_rejected_when_validating(bad_tau):
    for validate in (None, True):
        with pytest.raises(ValueError, match="temperature"):
            RelaxedBernoulli(bad_tau, logits=torch.zeros(2), validate_args=validate)
        with pytest.raises(ValueError, match="temperature"):
            HardConcrete(logits=torch.zeros(2), temperature=bad_tau, validate_args=validate)


def test_bad_parameters_rejected():
    for make in (lambda: RelaxedBernoulli(0.5, probs=torch.tensor([0.2, 1.5]), validate_args=True),
                 lambda: StochasticTimesSmooth(probs=torch.tensor([-0.1]), validate_args=True),
                 lambda: StraightThroughBernoulli(probs=torch.tensor([1.1]), validate_args=True)):
        with pytest.raises(ValueError, match="probs"):
            make()
    with pytest.raises(ValueError, match="scale"):
        GaussianRelaxedBernoulli(torch.zeros(2), 0.0)
    with pytest.raises(ValueError, match="limits"):
        HardConcrete(logits=torch.zeros(2), limits=(0.0, 1.1))
    with pytest.raises(ValueError, match="logits"):
        RelaxedBernoulli(0.5, probs=0.3, logits=0.1)
    with pytest.raises(ValueError, match="logits"):
        StraightThroughBernoulli()
    with pytest.raises(ValueError):  # a sample outside the support with validation on
        RelaxedBernoulli(0.5, logits=torch.zeros(2), validate_args=True).log_prob(torch.tensor([1.5, 0.5]))


# ----------------------------------------------------------------------------- laws
def test_hard_concrete_atoms_match_closed_form():
    torch.manual_seed(2)
    n = 20000
    logits = torch.tensor([-1.0, 0.5, 2.0, 0.0])
    tau = torch.tensor([2 / 3, 2 / 3, 2 / 3, 0.3])
    d = HardConcrete(logits=logits, temperature=tau)
    z = d.sample((n,))
    for atom, closed in ((0.0, d.prob_zero), (1.0, d.prob_one)):
        freq = (z == atom).double().mean(0)
        for f, p in zip(freq.tolist(), closed.tolist()):
            assert abs(f - p) < four_se(p, n), (atom, f, p)
    assert torch.allclose(d.prob_nonzero, 1 - d.prob_zero)
    assert torch.allclose(d.log_prob(torch.zeros(4)), d.prob_zero.log())
    assert torch.allclose(d.log_prob(torch.ones(4)), d.prob_one.log())


def test_hard_concrete_deterministic_gate():
    d = HardConcrete(logits=torch.tensor([-30.0, 0.0, 30.0]))
    assert d.deterministic_gate().tolist() == pytest.approx([0.0, 0.5, 1.0])


def test_gaussian_gate_atoms_match_closed_form():
    torch.manual_seed(3)
    n = 20000
    d = GaussianRelaxedBernoulli(torch.tensor([-0.2, 0.3, 0.9]), scale=0.5)
    z = d.sample((n,))
    phi = torch.special.ndtr
    assert torch.allclose(d.prob_zero, phi(-d.loc / 0.5)) and torch.allclose(d.prob_one, phi((d.loc - 1) / 0.5))
    assert torch.allclose(d.prob_nonzero, 1 - d.prob_zero)
    for atom, closed in ((0.0, d.prob_zero), (1.0, d.prob_one)):
        freq = (z == atom).double().mean(0)
        for f, p in zip(freq.tolist(), closed.tolist()):
            assert abs(f - p) < four_se(p, n), (atom, f, p)


def test_stochastic_times_smooth_law_and_mean():
    torch.manual_seed(4)
    n = 20000
    p = torch.tensor([0.04, 0.3, 0.8])
    d = StochasticTimesSmooth(probs=p)
    h = d.sample((n,))
    assert bool(d.support.check(h).all())
    sd = d.variance.sqrt()
    for m, pk, s in zip(h.mean(0).tolist(), p.tolist(), sd.tolist()):
        assert abs(m - pk) < 4 * s / math.sqrt(n)
    assert torch.allclose(d.mean, p)
    # two-point mass sums to one; off-support values have mass 0
    total = d.log_prob(torch.zeros(3)).exp() + d.log_prob(p.sqrt()).exp()
    assert torch.allclose(total, torch.ones(3))
    loose = StochasticTimesSmooth(probs=p, validate_args=False)
    assert torch.isinf(loose.log_prob(torch.full((3,), 0.123))).all()


def test_stochastic_times_smooth_gradient_flows_through_sqrt_p():
    a = torch.tensor([0.3, -1.0], requires_grad=True)
    h = StochasticTimesSmooth(logits=a).rsample((50,))
    h.sum().backward()
    p = torch.sigmoid(a.detach())
    b_count = (h.detach() > 0).sum(0).double()
    # d/da [b sqrt(sigma(a))] = b * sqrt(p) (1 - p) / 2
    assert torch.allclose(a.grad.double(), b_count * (p.sqrt() * (1 - p) / 2).double(), rtol=1e-5)


@pytest.mark.parametrize("cls", ["relaxed-hard", "st"])
def test_hard_frequency_equals_p(cls):
    torch.manual_seed(5)
    n = 20000
    probs = torch.tensor([0.1, 0.5, 0.8])
    d = (RelaxedBernoulli(0.7, probs=probs, hard=True) if cls == "relaxed-hard"
         else StraightThroughBernoulli(probs=probs))
    b = d.sample((n,))
    assert set(b.unique().tolist()) <= {0.0, 1.0}
    for f, p in zip(b.mean(0).tolist(), probs.tolist()):
        assert abs(f - p) < four_se(p, n)


def test_straight_through_bernoulli_gradient_is_dp():
    a = torch.tensor([-2.0, 0.0, 1.5], requires_grad=True)
    b = StraightThroughBernoulli(logits=a).rsample((10,))
    assert set(b.detach().unique().tolist()) <= {0.0, 1.0}  # exactly 0/1 forward
    b.sum().backward()
    p = torch.sigmoid(a.detach())
    assert torch.allclose(a.grad, 10 * p * (1 - p))


def test_hard_relaxed_bernoulli_is_straight_through_of_soft():
    a = torch.tensor([-1.0, 0.0, 2.0], requires_grad=True)
    torch.manual_seed(6)
    soft = RelaxedBernoulli(0.5, logits=a).rsample((8,))
    (g_soft,) = torch.autograd.grad(soft.sum(), a)
    torch.manual_seed(6)
    hard = RelaxedBernoulli(0.5, logits=a, hard=True).rsample((8,))
    (g_hard,) = torch.autograd.grad(hard.sum(), a)
    assert torch.equal(hard.detach(), (soft.detach() > 0.5).float())
    assert torch.allclose(g_hard, g_soft)


# ----------------------------------------------------------------------------- exact log_prob
def test_relaxed_bernoulli_log_prob_matches_torch():
    torch.manual_seed(7)
    for tau in (0.1, 0.5, 2.0):
        logits = torch.tensor([-3.0, 0.0, 1.5], dtype=torch.float64)
        ours = RelaxedBernoulli(tau, logits=logits)
        ref = TorchRelaxedBernoulli(torch.tensor(tau, dtype=torch.float64), logits=logits)
        z = ours.sample((50,))
        assert torch.allclose(ours.log_prob(z), ref.log_prob(z), rtol=1e-9, atol=1e-9)
    # float32 including values rounded to the boundaries
    ours = RelaxedBernoulli(0.05, logits=torch.tensor([3.0]))
    ref = TorchRelaxedBernoulli(torch.tensor(0.05), logits=torch.tensor([3.0]))
    v = torch.tensor([[0.0], [1e-30], [0.3], [1 - 1e-7], [1.0]])
    assert torch.allclose(ours.log_prob(v), ref.log_prob(v), rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("make", [
    lambda p: RelaxedBernoulli(0.5, probs=p, hard=True),
    lambda p: StraightThroughBernoulli(probs=p),
])
def test_hard_log_prob_is_bernoulli_mass(make):
    p = torch.tensor([0.1, 0.5, 0.9])
    d, ref = make(p), Bernoulli(probs=p)
    for v in (torch.zeros(3), torch.ones(3)):
        assert torch.allclose(d.log_prob(v), ref.log_prob(v))
    assert torch.allclose(d.log_prob(torch.zeros(3)).exp() + d.log_prob(torch.ones(3)).exp(), torch.ones(3))


def _midpoint_integral_01(log_prob, n=200000):
    z = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    return log_prob(z.unsqueeze(-1)).exp().mean(0)


def test_relaxed_bernoulli_density_integrates_to_one():
    # Integrate in x = logit z (the density in z is unbounded at the ends for small tau), over
    # x <= 0 only, where z = sigmoid(x) is accurate in float64; the half z > 1/2 is the half
    # z' = 1 - z < 1/2 of the law with logits -> -logits (the binary Concrete is symmetric).
    logits = torch.tensor([-2.0, 0.0, 1.0], dtype=torch.float64)
    x = torch.linspace(-500, 0, 40001, dtype=torch.float64).unsqueeze(-1)
    jac = torch.nn.functional.logsigmoid(x) + torch.nn.functional.logsigmoid(-x)
    for tau in (0.3, 1.0, 3.0):
        total = 0
        for a in (logits, -logits):
            d = RelaxedBernoulli(torch.tensor(tau, dtype=torch.float64), logits=a)
            total = total + torch.trapezoid((d.log_prob(torch.sigmoid(x)) + jac).exp(), x, dim=0)
        assert torch.allclose(total, torch.ones(3, dtype=torch.float64), atol=1e-6), total


def test_hard_concrete_mixed_law_integrates_to_one():
    logits = torch.tensor([-1.5, 0.0, 2.0], dtype=torch.float64)
    for tau in (0.3, 2 / 3, 2.0):
        d = HardConcrete(logits=logits, temperature=tau)
        total = _midpoint_integral_01(d.log_prob) + d.prob_zero + d.prob_one
        assert torch.allclose(total, torch.ones(3, dtype=torch.float64), atol=1e-6), total


def test_gaussian_gate_mixed_law_integrates_to_one():
    d = GaussianRelaxedBernoulli(torch.tensor([-0.3, 0.5, 1.4], dtype=torch.float64), 0.5)
    total = _midpoint_integral_01(d.log_prob) + d.prob_zero + d.prob_one
    assert torch.allclose(total, torch.ones(3, dtype=torch.float64), atol=1e-8), total
    loose = GaussianRelaxedBernoulli(d.loc, 0.5, validate_args=False)
    assert torch.isinf(loose.log_prob(torch.tensor([-0.1, 1.1, 2.0], dtype=torch.float64))).all()


# ----------------------------------------------------------------------------- registry
@pytest.mark.parametrize("method", [m.name for m in methods_where(family="bernoulli") if m.relaxed])
def test_registry_builders(method):
    from relaxcli.methods import get_method

    m = get_method(method)
    raw = torch.randn(4, 3, requires_grad=True)
    d = m.build(raw)
    z = d.rsample((2,))
    assert z.shape[:2] == (2, 4) and torch.isfinite(z).all()
    z.sum().backward()
    assert raw.grad is not None and torch.isfinite(raw.grad).all()


def test_gaussian_bernoulli_registry_gate_is_placed_without_a_clamp():
    # loc = 1/2 + scale Phi^{-1}(sigmoid(raw)): a clamp of sigmoid(raw) at 1e-6 made the gradient
    # exactly 0 for |raw| > 13.8 and P(z > 1/2) stop following sigmoid(raw).
    from relaxcli.methods import get_method

    m = get_method("gaussian-bernoulli")
    raw = torch.tensor([-30.0, -20.0, -14.0, 0.0, 14.0, 20.0, 30.0], dtype=torch.float64, requires_grad=True)
    d = m.build(raw)
    p_gt_half = torch.special.log_ndtr((d.loc - 0.5) / d.scale).exp()  # (ndtr loses the tail)
    torch.testing.assert_close(p_gt_half, torch.sigmoid(raw.detach()), rtol=1e-9, atol=0)
    (g,) = torch.autograd.grad(d.loc.sum(), raw)
    assert bool(torch.isfinite(g).all()) and bool((g > 0).all())
    raw32 = raw.detach().float().requires_grad_(True)
    (g32,) = torch.autograd.grad(m.build(raw32).loc.sum(), raw32)
    assert bool(torch.isfinite(g32).all()) and bool((g32 > 0).all())
