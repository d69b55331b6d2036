"""The REBAR/RELAX relaxed-sample pairs: b has the discrete law, z_tilde ~ p(z | b).

Laws are checked with Kolmogorov-Smirnov distances against the exact CDFs, with the critical
value at level 1e-3 for the sample size (D < 1.95 / sqrt(n)): sharing noise, dropping the
log-softmax normalisation or swapping the branches all fail these.
"""

import math

import pytest
import torch
from scipy import stats

from relaxcli.estimators.conditional import (
    bernoulli_conditional,
    bernoulli_relaxed_pair,
    categorical_conditional,
    categorical_relaxed_pair,
)

N = 40_000
KS_CRIT = 1.95 / math.sqrt(N)  # Kolmogorov-Smirnov critical value, level 0.001


def ks(sample: torch.Tensor, cdf) -> float:
    return stats.kstest(sample.double().numpy(), cdf).statistic


def logistic_cdf(loc):
    return lambda x: stats.logistic.cdf(x, loc=loc)


def gumbel_cdf(loc):
    return lambda x: stats.gumbel_r.cdf(x, loc=loc)


@pytest.mark.parametrize("a", [-2.0, 0.3, 1.5])
def test_bernoulli_pair_laws(a):
    torch.manual_seed(1)
    logits = torch.full((2,), a)
    b, z, zt = bernoulli_relaxed_pair(logits, sample_shape=(N // 2,))
    assert b.shape == z.shape == zt.shape == (N // 2, 2)
    # H(z_tilde) == b always, and b = H(z).
    assert torch.equal((zt > 0).float(), b)
    assert torch.equal((z > 0).float(), b)
    # b ~ Bernoulli(sigmoid(a)) within 4 standard errors.
    p = torch.sigmoid(torch.tensor(a)).item()
    se = math.sqrt(p * (1 - p) / N)
    assert abs(b.mean().item() - p) < 4 * se
    # z ~ Logistic(a, 1), and z_tilde pooled over b has the same (unconditional) law.
    assert ks(z.flatten(), logistic_cdf(a)) < KS_CRIT
    assert ks(zt.flatten(), logistic_cdf(a)) < KS_CRIT
    # z_tilde is independent of z given b: within b=1, corr(z, z_tilde) ~ 0.
    sel = b.flatten() > 0
    c = torch.corrcoef(torch.stack([z.flatten()[sel], zt.flatten()[sel]]))[0, 1].item()
    assert abs(c) < 4 / math.sqrt(int(sel.sum()))


def test_bernoulli_conditional_is_truncated_logistic():
    """Given b=1 the law is Logistic(a,1) truncated to (0, inf); given b=0, to (-inf, 0]."""
    torch.manual_seed(2)
    a = 0.7
    logits = torch.full((N,), a)
    theta = stats.logistic.cdf(a)
    up = bernoulli_conditional(logits, torch.ones(N))
    lo = bernoulli_conditional(logits, torch.zeros(N))
    assert (up > 0).all() and (lo <= 0).all()
    cdf_up = lambda x: (stats.logistic.cdf(x, loc=a) - (1 - theta)) / theta
    cdf_lo = lambda x: stats.logistic.cdf(x, loc=a) / (1 - theta)
    assert ks(up, cdf_up) < KS_CRIT
    assert ks(lo, cdf_lo) < KS_CRIT


def test_bernoulli_pair_finite_and_differentiable_at_extremes():
    logits = torch.tensor([-30.0, -5.0, 0.0, 5.0, 30.0], requires_grad=True)
    b, z, zt = bernoulli_relaxed_pair(logits, sample_shape=(2000,))
    assert torch.isfinite(zt).all() and torch.equal((zt > 0).float(), b)
    (torch.sigmoid(zt / 0.5).sum() + torch.sigmoid(z).sum()).backward()
    assert torch.isfinite(logits.grad).all()


def test_bernoulli_noise_independent_per_element():
    torch.manual_seed(3)
    _b, z, zt = bernoulli_relaxed_pair(torch.zeros(3), sample_shape=(4,))
    assert len(set(zt.flatten().tolist())) == 12 and len(set(z.flatten().tolist())) == 12


@pytest.mark.parametrize("shift", [0.0, 3.0])
def test_categorical_pair_laws(shift):
    """Unnormalised logits (shift) must give the same law: the construction normalises first."""
    torch.manual_seed(4)
    base = torch.tensor([0.5, -1.0, 1.2, 0.0])
    logits = base + shift
    log_p = torch.log_softmax(base, -1)
    b, z, zt = categorical_relaxed_pair(logits, sample_shape=(N,))
    assert b.shape == z.shape == zt.shape == (N, 4)
    assert torch.equal(zt.argmax(-1), b.argmax(-1))
    assert torch.equal(z.argmax(-1), b.argmax(-1))
    freq = b.mean(0)
    p = log_p.exp()
    assert ((freq - p).abs() < 4 * (p * (1 - p) / N).sqrt()).all()
    for i in range(4):
        loc = log_p[i].item()
        assert ks(z[:, i], gumbel_cdf(loc)) < KS_CRIT
        assert ks(zt[:, i], gumbel_cdf(loc)) < KS_CRIT
    # The max of z_tilde is Gumbel(log sum p) = Gumbel(0) (the normalisation erratum).
    assert ks(zt.max(-1).values, gumbel_cdf(0.0)) < KS_CRIT


def test_categorical_conditional_given_b():
    """Given b=k: the top coordinate is Gumbel(0) and the argmax is k (not just pooled)."""
    torch.manual_seed(5)
    logits = torch.tensor([0.2, -0.4, 1.0])
    b = torch.zeros(N, 3)
    b[:, 2] = 1.0
    zt = categorical_conditional(logits, b)
    assert (zt.argmax(-1) == 2).all()
    assert ks(zt[:, 2], gumbel_cdf(0.0)) < KS_CRIT
    # Second coordinate given b=2: P(z_0 <= x | argmax = 2) by Monte-Carlo of the unconditional
    # law, compared by a two-sample KS test.
    g = torch.log_softmax(logits, -1) + -torch.log(-torch.log(torch.rand(6 * N, 3).clamp(1e-30, 1 - 1e-7)))
    ref = g[g.argmax(-1) == 2][:, 0]
    d = stats.ks_2samp(zt[:, 0].numpy(), ref.numpy()).statistic
    n_eff = N * len(ref) / (N + len(ref))
    assert d < 1.95 / math.sqrt(n_eff)


def test_categorical_pair_extremes_and_grad():
    logits = torch.tensor([[-30.0, 0.0, 30.0], [0.0, 0.0, 0.0]], requires_grad=True)
    b, z, zt = categorical_relaxed_pair(logits, sample_shape=(1000,))
    assert torch.isfinite(zt).all() and torch.isfinite(z).all()
    assert torch.equal(zt.argmax(-1), b.argmax(-1))
    torch.softmax(zt / 0.5, -1)[..., 0].sum().backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0
