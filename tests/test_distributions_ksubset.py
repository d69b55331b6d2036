"""The exactly-k subset law (KSubset) and SIMPLE: every exact quantity against brute-force
enumeration of the C(n, k) subsets, the sampler against log_prob, float32 at n = 2000."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch.distributions import kl_divergence

from relaxcli.distributions import KSubset, SimpleKSubset
from relaxcli.distributions.subset import ksubset_marginals

F64 = torch.float64


def brute(logits: torch.Tensor, k: int):
    """(k-hot subsets (C, n), their exact probabilities (C, *batch)) by listing every subset."""
    n = logits.shape[-1]
    hot = torch.zeros(math.comb(n, k), n, dtype=logits.dtype)
    for row, comb in enumerate(itertools.combinations(range(n), k)):
        hot[row, list(comb)] = 1.0
    score = (hot.view(-1, *(1,) * (logits.dim() - 1), n) * logits).sum(-1)   # (C, *batch)
    return hot, score.softmax(0), score.logsumexp(0)


@pytest.mark.parametrize("n,k", [(5, 1), (6, 3), (7, 5), (8, 2)])
def test_log_partition_log_prob_marginals_entropy_match_enumeration(n, k):
    torch.manual_seed(n * 10 + k)
    logits = torch.randn(3, n, dtype=F64) * 2
    d = KSubset(k, logits=logits)
    hot, prob, log_z = brute(logits, k)
    assert torch.allclose(d.log_partition, log_z, atol=1e-12)
    assert torch.allclose(d.log_prob(hot.unsqueeze(1)).exp(), prob, atol=1e-12)
    mu = (prob.unsqueeze(-1) * hot.unsqueeze(1)).sum(0)
    assert torch.allclose(d.mean, mu, atol=1e-12)
    assert torch.allclose(d.mean.sum(-1), torch.full((3,), float(k), dtype=F64))
    assert torch.allclose(d.entropy(), -(prob * prob.log()).sum(0), atol=1e-12)
    # marginals = d log Z / d logits
    leaf = logits.clone().requires_grad_()
    (grad,) = torch.autograd.grad(KSubset(k, logits=leaf).log_partition.sum(), leaf)
    assert torch.allclose(grad, mu, atol=1e-12)


def test_probs_parameter_and_uniform_case():
    d = KSubset(2, probs=torch.full((4,), 0.3))
    assert torch.allclose(d.log_partition, torch.tensor(math.log(6) + 2 * math.log(0.3 / 0.7)))
    assert torch.allclose(d.enumerate_log_prob().exp(), torch.full((6,), 1 / 6))


def test_sampler_frequencies_match_log_prob():
    """Every subset's frequency within 4 standard errors of its exact probability."""
    torch.manual_seed(0)
    logits = torch.tensor([1.5, -0.5, 0.0, 2.0, -1.0, 0.7])
    d = KSubset(3, logits=logits)
    draws = 40_000
    b = d.sample((draws,))
    assert b.shape == (draws, 6) and bool((b.sum(-1) == 3).all())
    hot = d.enumerate_support()
    prob = d.enumerate_log_prob().exp()
    freq = (b.unsqueeze(1) == hot).all(-1).float().mean(0)
    se = (prob * (1 - prob) / draws).sqrt()
    assert ((freq - prob).abs() < 4 * se + 1e-12).all(), (freq, prob)


def test_sampler_batch_has_independent_rows_and_extreme_logits():
    torch.manual_seed(1)
    d = KSubset(2, logits=torch.tensor([[30.0, 30.0, -30.0, -30.0], [-30.0, -30.0, 30.0, 30.0]]))
    b = d.sample((100,))
    assert bool((b[:, 0] == torch.tensor([1.0, 1.0, 0.0, 0.0])).all())
    assert bool((b[:, 1] == torch.tensor([0.0, 0.0, 1.0, 1.0])).all())
    e = KSubset(2, logits=torch.zeros(50, 10)).sample()
    assert len({tuple(r.tolist()) for r in e}) > 10   # not one draw broadcast over the batch


def test_kl_matches_enumeration_and_is_zero_on_itself():
    torch.manual_seed(2)
    lq, lp = torch.randn(4, 7, dtype=F64) * 2, torch.randn(7, dtype=F64)
    q, p = KSubset(3, logits=lq), KSubset(3, logits=lp)
    _, prob_q, _ = brute(lq, 3)
    _, prob_p, _ = brute(lp, 3)
    exact = (prob_q * (prob_q.log() - prob_p.log().unsqueeze(-1))).sum(0)
    assert torch.allclose(kl_divergence(q, p), exact, atol=1e-12)
    assert torch.allclose(kl_divergence(q, q), torch.zeros(4, dtype=F64), atol=1e-12)
    with pytest.raises(ValueError, match="different sizes"):
        kl_divergence(q, KSubset(2, logits=lp))


def test_large_n_float32_finite_and_matches_float64():
    """n = 2000, k = 50: log Z, marginals, their gradient, entropy and KL agree with float64."""
    torch.manual_seed(3)
    base = (torch.randn(2000, dtype=F64) * 5).clamp(-30, 30) + 10.0
    other = torch.randn(2000, dtype=F64)
    weights = torch.linspace(-1, 1, 2000, dtype=F64)
    out = {}
    for dtype in (torch.float32, F64):
        leaf = base.to(dtype).requires_grad_()
        d = KSubset(50, logits=leaf)
        mu = d.mean
        (grad,) = torch.autograd.grad((mu * weights.to(dtype)).sum(), leaf)
        kl = kl_divergence(d, KSubset(50, logits=other.to(dtype)))
        out[dtype] = [t.detach().double() for t in (d.log_partition, mu, grad, d.entropy(), kl)]
        assert all(bool(torch.isfinite(t).all()) for t in out[dtype])
    tol = [1e-6, 1e-4, 2e-3, 1e-5, 1e-5]   # relative to each quantity's scale
    for a, b, t in zip(out[torch.float32], out[F64], tol):
        assert float((a - b).abs().max()) <= t * max(1.0, float(b.abs().max())), (a, b)
    assert abs(float(out[F64][1].sum()) - 50) < 1e-9


def test_large_n_sample_is_k_hot():
    torch.manual_seed(4)
    d = KSubset(50, logits=torch.randn(2000) * 5)
    b = d.sample((3,))
    assert bool((b.sum(-1) == 50).all())
    assert bool(((b == 0) | (b == 1)).all())


def test_expand_and_validation():
    d = KSubset(2, logits=torch.zeros(4))
    e = d.expand((3, 5))
    assert e.batch_shape == (3, 5) and e.sample().shape == (3, 5, 4)
    with pytest.raises(ValueError):
        KSubset(4, logits=torch.zeros(4))
    with pytest.raises(ValueError):
        KSubset(2, logits=torch.zeros(4), validate_args=True).log_prob(torch.tensor([1.0, 1.0, 1.0, 0.0]))


def test_simple_forward_is_exact_sample_and_backward_is_marginal_gradient():
    torch.manual_seed(5)
    logits = torch.randn(2, 6, dtype=F64, requires_grad=True)
    w = torch.randn(6, dtype=F64)
    b = SimpleKSubset(3, logits=logits).rsample((4,))
    assert bool(((b == 0) | (b == 1)).all()) and bool((b.sum(-1) == 3).all())
    (g,) = torch.autograd.grad((b * w).sum(), logits)
    (g_mu,) = torch.autograd.grad(4 * (ksubset_marginals(logits, 3) * w).sum(), logits)
    assert torch.allclose(g, g_mu, atol=1e-12)
    # linear cost: the gradient equals the exact gradient of E[<w, b>] (enumeration)
    _, prob, _ = brute(logits, 3)
    hot, _, _ = brute(logits.detach(), 3)
    exact = (prob * (hot @ w).unsqueeze(-1)).sum()
    (g_exact,) = torch.autograd.grad(exact * 4, logits)
    assert torch.allclose(g, g_exact, atol=1e-10)
