"""ReinMax, Gumbel-Rao, MuProp and I-MLE (#14): each against exact gradients by enumeration.

Estimates are drawn as one batch: ``raw`` has one row per independent estimate (the cost of row
b depends on z_b only), so ``N * raw.grad`` holds the N per-row estimates. "Within 4 standard
errors" uses the per-coordinate standard error of the mean estimate.
"""

from __future__ import annotations

import itertools
import math
from types import SimpleNamespace

import pytest
import torch
from torch.distributions import Bernoulli, OneHotCategorical

from relaxcli.distributions import (
    GumbelRao,
    GumbelSoftmax,
    GumbelSoftmaxTopK,
    KSubset,
    PerturbedTopK,
    ReinMaxBernoulli,
    ReinMaxCategorical,
)
from relaxcli.distributions.subset import sum_of_gamma_noise
from relaxcli.estimators import IMLEEstimator, MuPropEstimator, make_estimator
from relaxcli.methods import get_method

F64 = torch.float64


def per_row_gradients(sample_fn, theta: torch.Tensor, draws: int, cost) -> torch.Tensor:
    """(draws, *theta.shape) gradients of cost(sample_fn(raw)) for raw = draws copies of theta."""
    raw = theta.expand(draws, *theta.shape).clone().requires_grad_()
    cost(sample_fn(raw)).sum().backward()
    return raw.grad


def z_scores(g: torch.Tensor, exact: torch.Tensor) -> torch.Tensor:
    se = (g.var(0) / len(g)).sqrt()
    return (g.mean(0) - exact).abs() / se.clamp_min(1e-12)


# ----------------------------------------------------------------------------- ReinMax
def quadratic(a: torch.Tensor, w: torch.Tensor):
    """f(z) = z^T A z + w^T z over the last dimension (a continuous extension of f on one-hots)."""
    return lambda z: torch.einsum("...i,ij,...j->...", z, a, z) + (z * w).sum(-1)


def exact_categorical_gradient(theta, f):
    """d/dtheta sum_i softmax(theta)_i f(e_i), by enumeration of the K one-hot vectors."""
    leaf = theta.clone().requires_grad_()
    eye = torch.eye(theta.shape[-1], dtype=theta.dtype)
    (g,) = torch.autograd.grad((torch.softmax(leaf, -1) * f(eye)).sum(), leaf)
    return g


def expected_given_draw(grads: torch.Tensor, draws: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
    """sum_i p_i E[g | D = e_i] from per-draw gradients that are deterministic given D (checked)."""
    total = torch.zeros_like(grads[0])
    for i in range(probs.shape[-1]):
        rows = grads[draws[:, i] == 1]
        assert len(rows) > 0
        assert torch.allclose(rows, rows[:1].expand_as(rows), atol=1e-12)   # a function of D only
        total += probs[i] * rows[0]
    return total


def test_reinmax_is_exact_for_quadratic_costs_where_straight_through_is_not():
    """ReinMax's backward is the trapezoid (Heun) rule: at tau = 1 its expectation over D is the
    exact gradient for any quadratic f (the paper's second-order accuracy); ST's is not."""
    torch.manual_seed(0)
    theta = torch.tensor([0.3, -1.0, 0.8, 0.1], dtype=F64)
    a = torch.randn(4, 4, dtype=F64)
    f = quadratic(a + a.T, torch.randn(4, dtype=F64))
    exact = exact_categorical_gradient(theta, f)
    probs = torch.softmax(theta, -1)
    draws = {}
    g = per_row_gradients(lambda r: draws.setdefault("d", ReinMaxCategorical(1.0, logits=r).rsample()),
                          theta, 400, f)
    reinmax = expected_given_draw(g, draws["d"].detach(), probs)
    assert torch.allclose(reinmax, exact, atol=1e-12), (reinmax, exact)
    # straight-through with softmax(theta) (ReinMax's first-order special case) is biased here
    def st(r):
        d = draws.setdefault("st", OneHotCategorical(logits=r.detach()).sample())
        p = torch.softmax(r, -1)
        return d + (p - p.detach())
    g_st = per_row_gradients(st, theta, 400, f)
    straight = expected_given_draw(g_st, draws["st"], probs)
    assert (straight - exact).abs().max() > 0.05


def test_reinmax_backward_formula_and_temperature():
    """grad = 2 J(pi_1) g - J(pi_0) g / 2, pi_1 = (softmax(theta/tau) + D)/2, J(p) = diag p - p p^T."""
    torch.manual_seed(1)
    theta = torch.randn(5, dtype=F64, requires_grad=True)
    w = torch.randn(5, dtype=F64)
    for tau in (1.0, 3.0):
        z = ReinMaxCategorical(tau, logits=theta).rsample()
        assert bool((z.sum() == 1) & ((z == 0) | (z == 1)).all())
        (g,) = torch.autograd.grad((z * w).sum(), theta)

        def jac(p):
            return torch.diag(p) - torch.outer(p, p)
        pi_0 = torch.softmax(theta.detach(), -1)
        pi_1 = 0.5 * (torch.softmax(theta.detach() / tau, -1) + z.detach())
        assert torch.allclose(g, 2 * jac(pi_1) @ w - 0.5 * jac(pi_0) @ w, atol=1e-12)


def test_reinmax_forward_is_the_categorical_law():
    torch.manual_seed(2)
    theta = torch.tensor([1.0, 0.0, -1.0])
    z = ReinMaxCategorical(3.0, logits=theta).sample((40_000,))
    p = torch.softmax(theta, -1)
    se = (p * (1 - p) / 40_000).sqrt()
    assert ((z.mean(0) - p).abs() < 4 * se).all()   # tau does not change the forward law


def test_reinmax_bernoulli_is_categorical_with_two_classes_and_exact_for_quadratics():
    torch.manual_seed(3)
    a = torch.tensor(0.7, dtype=F64)
    alpha, beta = 1.3, -0.4
    f = lambda z: alpha * z ** 2 + beta * z
    p = torch.sigmoid(a)
    exact = p * (1 - p) * (alpha + beta)                  # d/da [p f(1) + (1 - p) f(0)]
    draws = {}
    g = per_row_gradients(lambda r: draws.setdefault("b", ReinMaxBernoulli(1.0, logits=r).rsample()), a, 400, f)
    b = draws["b"].detach()
    g1, g0 = g[b == 1], g[b == 0]
    assert torch.allclose(g1, g1[:1].expand_as(g1)) and torch.allclose(g0, g0[:1].expand_as(g0))
    assert torch.allclose(p * g1[0] + (1 - p) * g0[0], exact, atol=1e-12)
    # the same numbers as the categorical ReinMax on logits (0, a), cost on the second entry
    for tau in (1.0, 2.0):
        for bit in (0.0, 1.0):
            q = 0.5 * (torch.sigmoid(a / tau) + bit)
            slope = 2 * q * (1 - q) - 0.5 * p * (1 - p)
            pi_1 = 0.5 * (torch.softmax(torch.stack([0 * a, a]) / tau, -1) + torch.tensor([1 - bit, bit], dtype=F64))
            pi_0 = torch.stack([1 - p, p])
            jac = lambda v: (torch.diag(v) - torch.outer(v, v))[1, 1]
            assert torch.allclose(slope, 2 * jac(pi_1) - 0.5 * jac(pi_0))


# ----------------------------------------------------------------------------- Gumbel-Rao
def test_gumbel_rao_mean_equals_st_gumbel_softmax_and_variance_is_lower():
    torch.manual_seed(4)
    theta = torch.tensor([0.5, -0.3, 1.2, 0.0])
    target = torch.tensor([0.1, 0.6, 0.1, 0.2])
    f = lambda z: ((z - target) ** 2 * torch.tensor([1.0, 2.0, 0.5, 1.5])).sum(-1)
    n = 20_000
    tau = 0.5
    g_st = per_row_gradients(lambda r: GumbelSoftmax(tau, logits=r, hard=True).rsample(), theta, n, f).double()
    g_gr = per_row_gradients(lambda r: GumbelRao(tau, logits=r, samples=10).rsample(), theta, n, f).double()
    se = (g_st.var(0) / n + g_gr.var(0) / n).sqrt()
    assert ((g_st.mean(0) - g_gr.mean(0)).abs() < 4 * se).all(), (g_st.mean(0), g_gr.mean(0))
    ratio = float(g_gr.var(0).sum() / g_st.var(0).sum())
    assert ratio < 0.7, ratio
    # ST-GS (and so Gumbel-Rao) is biased here: their common mean is far from the exact gradient
    exact = exact_categorical_gradient(theta.double(), lambda e: f(e.float()).double())
    assert (z_scores(g_gr, exact) > 4).any()


def test_gumbel_rao_forward_is_categorical_and_more_samples_lower_variance():
    torch.manual_seed(5)
    theta = torch.tensor([0.0, 1.0, -0.5])
    z = GumbelRao(0.5, logits=theta, samples=3).sample((40_000,))
    p = torch.softmax(theta, -1)
    assert ((z.mean(0) - p).abs() < 4 * (p * (1 - p) / 40_000).sqrt()).all()
    f = lambda z: (z * torch.tensor([1.0, -2.0, 0.5])).sum(-1) ** 2
    v = [float(per_row_gradients(lambda r, m=m: GumbelRao(0.5, logits=r, samples=m).rsample(), theta, 10_000, f)
               .var(0).sum()) for m in (1, 20)]
    assert v[1] < 0.8 * v[0], v
    with pytest.raises(ValueError):
        GumbelRao(0.5, logits=theta, samples=0)


# ----------------------------------------------------------------------------- MuProp
def record(family: str, discrete):
    """The few fields of a registry record an estimator reads (here with a test's own law)."""
    return SimpleNamespace(name=f"muprop-{family}", family=family,
                           discrete_law=lambda raw, family=None, **_: discrete(raw))


def bernoulli_case():
    theta = torch.tensor([0.4, -0.7, 1.1], dtype=F64)
    v = torch.tensor([1.0, -2.0, 0.5], dtype=F64)
    f = lambda z: ((z * v).sum(-1) - 0.3) ** 2 + z[..., 0] * z[..., 1] * z[..., 2]
    outcomes = torch.tensor(list(itertools.product([0.0, 1.0], repeat=3)), dtype=F64)
    leaf = theta.clone().requires_grad_()
    (exact,) = torch.autograd.grad((Bernoulli(logits=leaf).log_prob(outcomes).sum(-1).exp() * f(outcomes)).sum(), leaf)
    return theta, f, exact, lambda raw, **_: Bernoulli(logits=raw)


def categorical_case():
    theta = torch.tensor([[0.3, -0.5, 1.0], [0.0, 0.8, -0.2]], dtype=F64)
    w = torch.tensor([[1.0, -1.0, 0.5], [2.0, 0.0, -1.5]], dtype=F64)
    f = lambda z: ((z * w).sum((-1, -2)) - 0.5) ** 2
    eye = torch.eye(3, dtype=F64)
    outcomes = torch.stack([torch.stack([eye[i], eye[j]]) for i in range(3) for j in range(3)])
    leaf = theta.clone().requires_grad_()
    log_p = OneHotCategorical(logits=leaf).log_prob(outcomes).sum(-1)
    (exact,) = torch.autograd.grad((log_p.exp() * f(outcomes)).sum(), leaf)
    return theta, f, exact, lambda raw, **_: OneHotCategorical(logits=raw)


def subset_case():
    theta = torch.tensor([0.5, -0.2, 1.0, 0.0, -1.0], dtype=F64)
    w = torch.tensor([1.0, 0.5, -0.3, 2.0, 0.1], dtype=F64)
    v = torch.tensor([0.5, 1.0, 1.0, -0.5, 0.3], dtype=F64)
    f = lambda z: (z * w).sum(-1) - (z * v).sum(-1) ** 2
    leaf = theta.clone().requires_grad_()
    law = KSubset(2, logits=leaf)
    (exact,) = torch.autograd.grad((law.enumerate_log_prob().exp() * f(law.enumerate_support())).sum(), leaf)
    return theta, f, exact, lambda raw, **_: KSubset(2, logits=raw)


CASES = {"bernoulli": bernoulli_case, "categorical": categorical_case, "subset": subset_case}


def estimator_rows(est, theta, f, draws):
    raw = theta.expand(draws, *theta.shape).clone().requires_grad_()
    out = est(raw, f)
    out.loss.backward()
    assert torch.allclose(out.loss, out.cost.mean())
    return raw.grad * draws


@pytest.mark.parametrize("family", list(CASES))
def test_muprop_is_unbiased_within_4_standard_errors(family):
    torch.manual_seed(6)
    theta, f, exact, law = CASES[family]()
    est = MuPropEstimator(record(family, law), n_samples=1)
    g = estimator_rows(est, theta, f, 20_000)
    assert (z_scores(g, exact) < 4).all(), (g.mean(0), exact)


@pytest.mark.parametrize("family", list(CASES))
def test_muprop_is_exact_with_zero_variance_for_linear_costs(family):
    """For f linear in b the Taylor control variate is f itself: every estimate is exact."""
    torch.manual_seed(7)
    theta, _, _, law = CASES[family]()
    w = torch.randn(theta.shape, dtype=F64)
    f = lambda z: (z * w).flatten(-theta.dim()).sum(-1) + 0.3
    leaf = theta.clone().requires_grad_()
    (exact,) = torch.autograd.grad((law(leaf).mean * w).sum(), leaf)
    g = estimator_rows(MuPropEstimator(record(family, law), n_samples=2), theta, f, 500)
    assert torch.allclose(g, exact.expand_as(g), atol=1e-12)


def test_muprop_cost_parameters_get_the_mean_cost_gradient_only():
    """The extra call f(mu) must not leak a gradient into the cost's own parameters."""
    torch.manual_seed(7)
    psi = torch.tensor(0.7, dtype=F64, requires_grad=True)
    theta = torch.zeros(4, 3, dtype=F64, requires_grad=True)
    est = MuPropEstimator(record("bernoulli", lambda raw, **_: Bernoulli(logits=raw)), n_samples=2)
    out = est(theta, lambda z: (psi * z).sum(-1) ** 2)
    out.loss.backward()
    # d/dpsi mean (psi s)^2 = mean 2 psi s^2 over the sampled sums s
    s = out.cost.sqrt() / psi.detach()
    assert torch.allclose(psi.grad, (2 * psi.detach() * s ** 2).mean())


# ----------------------------------------------------------------------------- I-MLE
def test_sum_of_gamma_noise_moments():
    """The sum of k i.i.d. Sum-of-Gamma(k, S) draws has mean H_S - log S and variance
    sum_{s<=S} 1/s^2 exactly (-> Gumbel(0, 1)'s 0.5772 and pi^2/6 as S grows)."""
    torch.manual_seed(8)
    k, terms, draws = 5, 20, 40_000
    total = sum_of_gamma_noise(torch.Size((draws, k)), torch.zeros((), dtype=F64), k, terms).sum(-1)
    mean = sum(1 / s for s in range(1, terms + 1)) - math.log(terms)
    var = sum(1 / s ** 2 for s in range(1, terms + 1))
    assert abs(float(total.mean()) - mean) < 4 * math.sqrt(var / draws)
    assert abs(float(total.var()) - var) < 4 * var * math.sqrt(4.4 / draws)   # Gumbel-like kurtosis 5.4


def test_perturbed_topk_with_gumbel_noise_samples_the_gumbel_topk_law():
    torch.manual_seed(9)
    theta = torch.tensor([1.0, 0.0, -0.5, 0.7, 0.2])
    d = PerturbedTopK(2, theta, 1.5, noise="gumbel")
    z = d.sample((40_000,))
    law = GumbelSoftmaxTopK(2, 1.0, logits=theta / 1.5, hard=True)
    prob = law.enumerate_log_prob().exp()
    freq = (z.unsqueeze(1) == law.enumerate_support()).all(-1).float().mean(0)
    assert ((freq - prob).abs() < 4 * (prob * (1 - prob) / 40_000).sqrt()).all()
    assert torch.allclose(d.log_prob(law.enumerate_support()), law.enumerate_log_prob())
    with pytest.raises(NotImplementedError):
        PerturbedTopK(2, theta).log_prob(z[0])


def test_imle_backward_is_the_finite_difference_of_perturbed_maps():
    """grad = (top-k(theta + eps) - top-k(theta - lambda g + eps)) / lambda for the same eps."""
    torch.manual_seed(10)
    theta = torch.tensor([0.2, 0.1, 0.0, -0.1], requires_grad=True)
    g = torch.tensor([3.0, 0.0, -3.0, 0.0])
    d = PerturbedTopK(2, theta, 0.0 + 1e-6, noise="gumbel", lam=1.0)   # (nearly) no noise
    z = d.rsample()
    assert z.tolist() == [1.0, 1.0, 0.0, 0.0]
    (grad,) = torch.autograd.grad((z * g).sum(), theta)
    # theta' = theta - g = [-2.8, 0.1, 3.0, -0.1]: top-2 = items 2 and 1
    assert grad.tolist() == [1.0, 0.0, -1.0, 0.0]


def test_imle_estimator_descends_a_linear_cost():
    """For f(z) = <c, z> the I-MLE direction moves theta towards the k smallest c (its gradient is
    positive on costly items, negative on cheap ones), whatever the batch size."""
    torch.manual_seed(11)
    c = torch.tensor([2.0, -1.0, 0.5, -3.0, 1.0])
    rec = get_method("imle")
    # theta = 0: z is a uniform 2-subset (P(i in z) = 0.4); the target -lambda c is far larger than
    # the noise, so z' = {1, 3} (the two cheapest) always: E[g] = (0.4 - 1[i in {1, 3}]) / lambda
    expected = (0.4 - torch.tensor([0.0, 1.0, 0.0, 1.0, 0.0])) / 10.0
    for batch, samples in ((1, 400), (400, 1)):
        est = IMLEEstimator(rec, n_samples=samples, k=2, noise="sog", **{"lambda": 10.0}, terms=10)
        assert isinstance(make_estimator(rec), IMLEEstimator)
        g = estimator_rows(est, torch.zeros(5), lambda z: (z * c).sum(-1), batch).mean(0)
        assert torch.allclose(g, expected, atol=0.012), (batch, g)
