"""Tests for the categorical family: GumbelSoftmax, decoupled ST-GS, generalized GS (METHODS.md s2).

Statistical tests use fixed seeds and 4-standard-error tolerances from the sample size.
"""

import math

import pytest
import scipy.stats
import torch
from torch.distributions import RelaxedOneHotCategorical

from relaxcli.distributions import (
    DecoupledStraightThroughGumbelSoftmax,
    GeneralizedGumbelSoftmax,
    GumbelSoftmax,
)


def freq_within(counts: torch.Tensor, n: int, p: torch.Tensor, z: float = 4.0) -> bool:
    """Empirical frequencies counts/n agree with p within z standard errors, entrywise."""
    p = p.double()
    se = (p * (1 - p) / n).sqrt().clamp(min=1.0 / n)
    return bool(((counts.double() / n - p).abs() <= z * se).all())


# ----------------------------------------------------------------------------- shapes
@pytest.mark.parametrize("hard", [False, True])
def test_gumbel_softmax_shapes_and_expand(hard):
    d = GumbelSoftmax(0.5, logits=torch.randn(2, 3, 4), hard=hard)
    assert d.batch_shape == (2, 3) and d.event_shape == (4,)
    x = d.rsample((5,))
    assert x.shape == (5, 2, 3, 4) and d.sample().shape == (2, 3, 4)
    assert d.log_prob(x).shape == (5, 2, 3)
    e = GumbelSoftmax(0.5, logits=torch.randn(4), hard=hard).expand((7, 2))
    assert e.batch_shape == (7, 2) and e.rsample((3,)).shape == (3, 7, 2, 4)
    assert e.log_prob(e.rsample()).shape == (7, 2)
    # a batched temperature broadcasts into the batch shape
    t = GumbelSoftmax(torch.tensor([0.5, 1.0, 2.0]), logits=torch.randn(4), hard=hard)
    assert t.batch_shape == (3,) and t.rsample((2,)).shape == (2, 3, 4)
    assert bool(d.support.check(x.detach()).all())


def test_other_shapes_and_expand():
    d = DecoupledStraightThroughGumbelSoftmax(0.5, 2.0, probs=torch.full((2, 3), 1 / 3))
    assert d.rsample((4,)).shape == (4, 2, 3) and d.log_prob(d.sample((4,))).shape == (4, 2)
    assert d.expand((5, 2)).rsample().shape == (5, 2, 3)
    g = GeneralizedGumbelSoftmax(torch.tensor([0.0, 1.0, 5.0]), 0.5, logits=torch.zeros(2, 3))
    assert g.batch_shape == (2,) and g.event_shape == ()
    assert g.rsample((4,)).shape == (4, 2) and g.expand((6, 2)).rsample().shape == (6, 2)
    h = GeneralizedGumbelSoftmax(torch.tensor([0.0, 1.0, 5.0]), 0.5, logits=torch.zeros(2, 3), hard=True)
    assert h.log_prob(h.sample((4,))).shape == (4, 2)


# ----------------------------------------------------------------------------- noise, dtype, range
@pytest.mark.parametrize("hard", [False, True])
def test_independent_noise_across_batch(hard):
    # Two batch elements with identical parameters must not share a noise draw: for hard samples
    # they agree with probability sum_k p_k^2, for soft samples (almost) never.
    torch.manual_seed(1)
    p = torch.tensor([0.5, 0.3, 0.2])
    n = 4000
    for d in (GumbelSoftmax(1.0, probs=p.expand(2, 3), hard=hard),
              GumbelSoftmax(1.0, probs=p, hard=hard).expand((2,))):
        x = d.sample((n,))
        agree = (x[:, 0] == x[:, 1]).all(-1).double()
        target = float((p * p).sum()) if hard else 0.0
        se = math.sqrt(max(target * (1 - target), 1.0 / n) / n)
        assert abs(float(agree.mean()) - target) <= 4 * se


def test_float64_stays_float64():
    for d in (GumbelSoftmax(0.5, logits=torch.zeros(3, dtype=torch.float64)),
              GumbelSoftmax(torch.tensor(0.5, dtype=torch.float64), probs=torch.tensor([0.2, 0.8])),
              DecoupledStraightThroughGumbelSoftmax(0.5, 2.0, logits=torch.zeros(3, dtype=torch.float64)),
              GeneralizedGumbelSoftmax([0.0, 2.0], 0.5, logits=torch.zeros(2, dtype=torch.float64))):
        x = d.rsample((2,))
        assert x.dtype == torch.float64 and d.logits.dtype == torch.float64
    d = GumbelSoftmax(0.5, logits=torch.zeros(3, dtype=torch.float64))
    assert d.log_prob(d.rsample()).dtype == torch.float64


@pytest.mark.parametrize("tau", [0.01, 0.1, 1.0, 10.0])
def test_finite_samples_and_gradients_float32(tau):
    logits = torch.linspace(-30, 30, 7).repeat(3, 1)
    logits[1] = logits[1].flip(-1)
    logits[2] = torch.tensor([30.0, 30.0, -30.0, -30.0, 0.0, 29.9, -29.9])
    logits.requires_grad_(True)
    temperature = torch.tensor(tau, requires_grad=True)
    w = torch.randn(7)
    dists = [GumbelSoftmax(temperature, logits=logits), GumbelSoftmax(temperature, logits=logits, hard=True),
             DecoupledStraightThroughGumbelSoftmax(temperature, temperature, logits=logits),
             GeneralizedGumbelSoftmax(torch.arange(7.0), temperature, logits=logits),
             GeneralizedGumbelSoftmax(torch.arange(7.0), temperature, logits=logits, hard=True)]
    for d in dists:
        x = d.rsample((200,))
        assert torch.isfinite(x).all()
        loss = (x * w).sum() if x.dim() == 3 else x.sum()
        g_logits, g_tau = torch.autograd.grad(loss, (logits, temperature))
        assert torch.isfinite(g_logits).all() and torch.isfinite(g_tau).all()
    # the Concrete log density of its own samples stays finite even where entries underflow
    d = GumbelSoftmax(tau, logits=logits.detach())
    assert torch.isfinite(d.log_prob(d.sample((200,)))).all()


# ----------------------------------------------------------------------------- validation
def test_validation_errors():
    with pytest.raises(ValueError, match="temperature"):
        GumbelSoftmax(0.0, logits=torch.zeros(3))
    with pytest.raises(ValueError, match="temperature"):
        GumbelSoftmax(torch.tensor([1.0, -1.0]), logits=torch.zeros(3), validate_args=True)
    with pytest.raises(ValueError, match="temperature_forward"):
        DecoupledStraightThroughGumbelSoftmax(-1.0, 1.0, logits=torch.zeros(3))
    with pytest.raises(ValueError, match="temperature_backward"):
        DecoupledStraightThroughGumbelSoftmax(1.0, 0.0, logits=torch.zeros(3))
    with pytest.raises(ValueError, match="probs"):
        GumbelSoftmax(1.0, probs=torch.tensor([0.5, -0.2, 0.7]), validate_args=True)
    with pytest.raises(ValueError, match="logits"):
        GumbelSoftmax(1.0, logits=torch.tensor([0.0, float("nan")]), validate_args=True)
    with pytest.raises(ValueError):
        GumbelSoftmax(1.0, probs=torch.tensor([0.5, 0.5]), logits=torch.zeros(2))
    with pytest.raises(ValueError, match="values"):
        GeneralizedGumbelSoftmax([0.0, 1.0], 1.0, logits=torch.zeros(3))
    with pytest.raises(ValueError, match="temperature"):
        GeneralizedGumbelSoftmax([0.0, 1.0], 0.0, logits=torch.zeros(2))
    d = GumbelSoftmax(1.0, logits=torch.zeros(3), validate_args=True)
    with pytest.raises(ValueError):
        d.log_prob(torch.tensor([0.5, 0.6, 0.2]))  # not on the simplex
    h = GumbelSoftmax(1.0, logits=torch.zeros(3), hard=True, validate_args=True)
    with pytest.raises(ValueError):
        h.log_prob(torch.tensor([0.5, 0.5, 0.0]))  # not one-hot


# ----------------------------------------------------------------------------- Gumbel-Softmax law
def test_hard_frequencies_match_softmax():
    torch.manual_seed(2)
    logits = torch.tensor([1.5, 0.0, -1.0, 0.5])
    n = 20000
    x = GumbelSoftmax(0.7, logits=logits, hard=True).sample((n,))
    assert ((x == 0) | (x == 1)).all() and (x.sum(-1) == 1).all()
    assert freq_within(x.sum(0), n, torch.softmax(logits, -1))


def test_hard_forward_is_exactly_one_hot_with_soft_gradient():
    logits = torch.tensor([0.3, -0.2, 1.0], requires_grad=True)
    torch.manual_seed(3)
    y = GumbelSoftmax(0.5, logits=logits, hard=True).rsample((50,))
    assert ((y == 0) | (y == 1)).all()
    torch.manual_seed(3)
    y_soft = GumbelSoftmax(0.5, logits=logits).rsample((50,))
    w = torch.randn(3)
    g_hard, = torch.autograd.grad((y * w).sum(), logits)
    g_soft, = torch.autograd.grad((y_soft * w).sum(), logits)
    torch.testing.assert_close(g_hard, g_soft)
    assert torch.equal(y.detach(), torch.zeros(50, 3).scatter_(-1, y_soft.argmax(-1, keepdim=True), 1.0))


def test_log_prob_matches_torch_relaxed_one_hot():
    logits = torch.randn(4, 5, dtype=torch.float64)
    tau = torch.tensor([0.3, 0.7, 1.0, 2.5], dtype=torch.float64)
    ours = GumbelSoftmax(tau, logits=logits)
    x = ours.sample((6,))
    ref = torch.cat([RelaxedOneHotCategorical(tau[i], logits=logits[i]).log_prob(x[:, i:i + 1])
                     for i in range(4)], -1)
    torch.testing.assert_close(ours.log_prob(x), ref)
    # probs parametrisation gives the same law
    torch.testing.assert_close(GumbelSoftmax(tau, probs=torch.softmax(logits, -1)).log_prob(x), ref)


@pytest.mark.parametrize("tau", [0.4, 1.0, 2.0])
def test_log_prob_integrates_to_one_k2(tau):
    # K = 2 over the edge of the simplex, x1 = sigmoid(u): dx1 = x1 (1 - x1) du (smooth integrand).
    # The tails decay like exp(-tau |u|), hence the wide range; x2 = sigmoid(-u) avoids 1 - 1.
    u = torch.linspace(-150, 150, 300001, dtype=torch.float64)
    x = torch.stack([torch.sigmoid(u), torch.sigmoid(-u)], -1)
    d = GumbelSoftmax(tau, logits=torch.tensor([0.8, -0.4], dtype=torch.float64))
    integrand = torch.exp(d.log_prob(x) + torch.log(x).sum(-1))
    assert abs(float(torch.trapezoid(integrand, u)) - 1.0) < 1e-6


@pytest.mark.parametrize("tau", [0.5, 1.5])
def test_log_prob_integrates_to_one_k3(tau):
    # K = 3 over a 2-D grid of the simplex in additive-logistic coordinates x = softmax(u1, u2, 0),
    # whose Jacobian determinant is x1 x2 x3.
    g = torch.linspace(-40, 40, 801, dtype=torch.float64)
    u1, u2 = torch.meshgrid(g, g, indexing="ij")
    x = torch.softmax(torch.stack([u1, u2, torch.zeros_like(u1)], -1), -1)
    d = GumbelSoftmax(tau, logits=torch.tensor([0.5, -1.0, 0.2], dtype=torch.float64))
    integrand = torch.exp(d.log_prob(x) + torch.log(x).sum(-1))
    total = torch.trapezoid(torch.trapezoid(integrand, g, dim=-1), g)
    assert abs(float(total) - 1.0) < 1e-4


def test_hard_log_prob_is_categorical_mass():
    logits = torch.tensor([0.2, 1.0, -0.5])
    d = GumbelSoftmax(0.5, logits=logits, hard=True)
    torch.testing.assert_close(d.log_prob(torch.eye(3)), torch.log_softmax(logits, -1))


# ----------------------------------------------------------------------------- decoupled ST-GS
def test_decoupled_forward_temperature_changes_frequencies():
    # Forward law is Categorical(softmax(logits / tau_f)); relaxit's argmax((logits+G)/tau_f)
    # would give softmax(logits) for every tau_f and fail this test.
    torch.manual_seed(4)
    logits = torch.tensor([1.0, 0.0, -1.0])
    n = 20000
    freqs = {}
    for tau_f in (0.5, 2.0):
        d = DecoupledStraightThroughGumbelSoftmax(tau_f, 1.0, logits=logits)
        z = d.sample((n,))
        assert ((z == 0) | (z == 1)).all() and (z.sum(-1) == 1).all()
        assert freq_within(z.sum(0), n, torch.softmax(logits / tau_f, -1))
        freqs[tau_f] = z.mean(0)
        torch.testing.assert_close(d.log_prob(torch.eye(3)), torch.log_softmax(logits / tau_f, -1))
    assert float(freqs[0.5][0] - freqs[2.0][0]) > 0.2


def test_decoupled_backward_temperature_changes_gradient_only():
    logits = torch.tensor([0.4, -0.3, 0.1, 0.0], requires_grad=True)
    w = torch.tensor([1.0, -2.0, 0.5, 3.0])
    out = {}
    for tau_b in (0.3, 3.0):
        torch.manual_seed(5)
        z = DecoupledStraightThroughGumbelSoftmax(0.7, tau_b, logits=logits).rsample((64,))
        out[tau_b] = (z.detach(), torch.autograd.grad((z * w).sum(), logits)[0])
    assert torch.equal(out[0.3][0], out[3.0][0])              # same forward values
    assert not torch.allclose(out[0.3][1], out[3.0][1], rtol=0.1, atol=1e-3)  # different gradient


def test_decoupled_at_unit_forward_temperature_is_st_gumbel_softmax():
    logits = torch.tensor([0.4, -0.3, 0.1], requires_grad=True)
    w = torch.tensor([1.0, -2.0, 0.5])
    torch.manual_seed(6)
    z = DecoupledStraightThroughGumbelSoftmax(1.0, 0.6, logits=logits).rsample((32,))
    torch.manual_seed(6)
    y = GumbelSoftmax(0.6, logits=logits, hard=True).rsample((32,))
    assert torch.equal(z.detach(), y.detach())
    torch.testing.assert_close(torch.autograd.grad((z * w).sum(), logits)[0],
                               torch.autograd.grad((y * w).sum(), logits)[0])


# ----------------------------------------------------------------------------- generalized GS
def test_generalized_hard_frequencies_and_log_mass():
    torch.manual_seed(7)
    values = torch.tensor([-1.0, 0.0, 2.5, 10.0])
    probs = torch.tensor([0.1, 0.4, 0.3, 0.2])
    n = 20000
    d = GeneralizedGumbelSoftmax(values, 0.5, probs=probs, hard=True, validate_args=True)
    x = d.sample((n,))
    counts = (x.unsqueeze(-1) == values).sum(0)
    assert int(counts.sum()) == n  # every forward value is exactly on the support
    assert freq_within(counts, n, probs)
    torch.testing.assert_close(d.log_prob(values), probs.log())
    with pytest.raises(ValueError):
        d.log_prob(torch.tensor(1.0))  # off the support
    soft = GeneralizedGumbelSoftmax(values, 0.5, probs=probs)
    y = soft.sample((100,))
    assert ((y >= -1.0) & (y <= 10.0)).all()
    with pytest.raises(NotImplementedError, match="closed form"):
        soft.log_prob(y)
    # the discrete law's mean is the mean of hard samples only: soft samples average elsewhere
    se = float(x.std() / n**0.5)
    assert abs(float(x.mean() - d.mean)) < 4 * se
    with pytest.raises(NotImplementedError, match="closed form"):
        _ = soft.mean


def test_generalized_gradient_is_that_of_the_weighted_relaxation():
    logits = torch.tensor([0.1, 0.5, -0.3], requires_grad=True)
    values = torch.tensor([0.0, 1.0, 4.0])
    torch.manual_seed(8)
    x = GeneralizedGumbelSoftmax(values, 0.5, logits=logits, hard=True).rsample((16,))
    torch.manual_seed(8)
    w = GumbelSoftmax(0.5, logits=logits, hard=True).rsample((16,))
    torch.testing.assert_close(x, (w * values).sum(-1))
    torch.testing.assert_close(torch.autograd.grad(x.sum(), logits)[0],
                               torch.autograd.grad((w * values).sum(), logits)[0])


def test_truncated_poisson_reports_cut_mass():
    rate = torch.tensor([0.5, 3.0, 12.0], dtype=torch.float64)
    d = GeneralizedGumbelSoftmax.truncated_poisson(rate, 0.5, max_value=15)
    ref = scipy.stats.poisson.sf(15, rate.numpy())
    torch.testing.assert_close(d.truncated_mass, torch.from_numpy(ref), rtol=1e-8, atol=1e-15)
    assert d.batch_shape == (3,) and d.values.tolist() == list(range(16))
    kept = scipy.stats.poisson.pmf(range(16), rate.numpy()[:, None])
    torch.testing.assert_close(d.probs, torch.from_numpy(kept / kept.sum(-1, keepdims=True)))
    auto = GeneralizedGumbelSoftmax.truncated_poisson(rate, 0.5, tol=1e-9)
    assert float(auto.truncated_mass.max()) <= 1e-9


def test_truncated_geometric_reports_cut_mass():
    p = torch.tensor([0.2, 0.6], dtype=torch.float64)
    d = GeneralizedGumbelSoftmax.truncated_geometric(p, 1.0, max_value=10, hard=True)
    # scipy's geom counts trials (>= 1); ours counts failures, so X > 10  <=>  trials > 11
    torch.testing.assert_close(d.truncated_mass, torch.from_numpy(scipy.stats.geom.sf(11, p.numpy())))
    torch.testing.assert_close(d.truncated_mass, (1 - p) ** 11)
    kept = scipy.stats.geom.pmf(torch.arange(1, 12).numpy(), p.numpy()[:, None])
    torch.testing.assert_close(d.probs, torch.from_numpy(kept / kept.sum(-1, keepdims=True)))
    auto = GeneralizedGumbelSoftmax.truncated_geometric(p, 1.0, tol=1e-6)
    assert float(auto.truncated_mass.max()) <= 1e-6


def test_truncated_binomial_reports_cut_mass():
    p = torch.tensor([0.3, 0.7], dtype=torch.float64)
    d = GeneralizedGumbelSoftmax.truncated_binomial(20, p, 0.5, max_value=8)
    torch.testing.assert_close(d.truncated_mass, torch.from_numpy(scipy.stats.binom.sf(8, 20, p.numpy())))
    kept = scipy.stats.binom.pmf(range(9), 20, p.numpy()[:, None])
    torch.testing.assert_close(d.probs, torch.from_numpy(kept / kept.sum(-1, keepdims=True)))
    full = GeneralizedGumbelSoftmax.truncated_binomial(20, p, 0.5)
    assert full.values.numel() == 21 and float(full.truncated_mass.abs().max()) == 0.0
    with pytest.raises(ValueError, match="total_count"):
        GeneralizedGumbelSoftmax.truncated_binomial(0, p, 0.5)
