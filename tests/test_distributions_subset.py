"""Tests for GumbelSoftmaxTopK (METHODS.md section 2): the Gumbel-top-k law, its exact log-mass,
the two relaxations and their gradients. Statistical tests: fixed seeds, 4 standard errors.
"""

import itertools
import math

import pytest
import torch

from relaxcli.distributions import GumbelSoftmaxTopK
from relaxcli.distributions.subset import (
    MAX_EXACT_K,
    sequential_topk_relaxation,
    subset_log_prob,
    threshold_topk_relaxation,
    topk_indicator,
)

RELAXATIONS = ["sequential", "threshold"]


def brute_subset_prob(p, subset) -> float:
    """P(k draws without replacement from Categorical(p) give ``subset``), by all k! orders."""
    p = [float(q) for q in p]
    total = 0.0
    for order in itertools.permutations(subset):
        prob, used = 1.0, 0.0
        for i in order:
            prob *= p[i] / (1.0 - used)
            used += p[i]
        total += prob
    return total


def k_hot(subset, num):
    v = torch.zeros(num)
    v[list(subset)] = 1.0
    return v


# ----------------------------------------------------------------------------- shapes, dtype, validation
@pytest.mark.parametrize("relaxation", RELAXATIONS)
@pytest.mark.parametrize("hard", [False, True])
def test_shapes_and_expand(relaxation, hard):
    d = GumbelSoftmaxTopK(2, 0.5, logits=torch.randn(3, 5), hard=hard, relaxation=relaxation)
    assert d.batch_shape == (3,) and d.event_shape == (5,)
    x = d.rsample((4,))
    assert x.shape == (4, 3, 5) and d.sample().shape == (3, 5)
    e = GumbelSoftmaxTopK(2, 0.5, logits=torch.randn(5), hard=hard, relaxation=relaxation).expand((6, 2))
    assert e.batch_shape == (6, 2) and e.rsample((3,)).shape == (3, 6, 2, 5)
    assert bool(d.support.check(x.detach()).all())
    if hard:
        assert d.log_prob(x.detach()).shape == (4, 3)
        assert e.log_prob(e.sample()).shape == (6, 2)


def test_float64_stays_float64():
    d = GumbelSoftmaxTopK(2, 0.5, logits=torch.zeros(4, dtype=torch.float64), relaxation="threshold")
    assert d.rsample((2,)).dtype == torch.float64
    h = GumbelSoftmaxTopK(2, torch.tensor(0.5, dtype=torch.float64), probs=torch.full((4,), 0.25), hard=True)
    x = h.rsample((2,))
    assert x.dtype == torch.float64 and h.log_prob(x).dtype == torch.float64


def test_validation_errors():
    logits = torch.zeros(4)
    for bad_k in (0, 4, 5, 2.5, True, "2"):
        with pytest.raises(ValueError, match="k"):
            GumbelSoftmaxTopK(bad_k, 1.0, logits=logits)
    with pytest.raises(ValueError, match="temperature"):
        GumbelSoftmaxTopK(2, 0.0, logits=logits)
    with pytest.raises(ValueError, match="relaxation"):
        GumbelSoftmaxTopK(2, 1.0, logits=logits, relaxation="loop")
    with pytest.raises(ValueError, match="probs"):
        GumbelSoftmaxTopK(2, 1.0, probs=torch.tensor([0.5, -0.1, 0.3, 0.3]), validate_args=True)
    h = GumbelSoftmaxTopK(2, 1.0, logits=logits, hard=True, validate_args=True)
    with pytest.raises(ValueError):
        h.log_prob(torch.tensor([1.0, 1.0, 1.0, 0.0]))  # three ones, k = 2
    soft = GumbelSoftmaxTopK(2, 1.0, logits=logits)
    with pytest.raises(NotImplementedError, match="closed-form"):
        soft.log_prob(soft.rsample())
    big = GumbelSoftmaxTopK(MAX_EXACT_K + 1, 1.0, logits=torch.zeros(MAX_EXACT_K + 3), hard=True)
    with pytest.raises(NotImplementedError, match="too large"):
        big.log_prob(big.sample())
    assert GumbelSoftmaxTopK(2.0, 1.0, logits=logits).k == 2  # an integral float is accepted


# ----------------------------------------------------------------------------- exact law
P5 = torch.tensor([0.45, 0.25, 0.15, 0.1, 0.05])


def test_inclusion_frequencies_match_sampling_without_replacement():
    # Relaxit's bug (probabilities used as logits) makes these almost uniform and fails here.
    torch.manual_seed(11)
    n, k = 20000, 2
    x = GumbelSoftmaxTopK(k, 0.5, probs=P5, hard=True).sample((n,))
    assert (x.sum(-1) == k).all()
    inclusion = torch.zeros(5, dtype=torch.float64)
    for s in itertools.combinations(range(5), k):
        inclusion[list(s)] += brute_subset_prob(P5, s)
    freq = x.double().mean(0)
    se = (inclusion * (1 - inclusion) / n).sqrt()
    assert ((freq - inclusion).abs() <= 4 * se).all()


def test_log_prob_exact_and_normalised():
    torch.manual_seed(12)
    p = torch.softmax(torch.randn(6, dtype=torch.float64), -1)
    d = GumbelSoftmaxTopK(3, 1.0, probs=p, hard=True)
    subsets = list(itertools.combinations(range(6), 3))
    values = torch.stack([k_hot(s, 6) for s in subsets]).double()
    lp = d.log_prob(values)
    ref = torch.tensor([brute_subset_prob(p, s) for s in subsets], dtype=torch.float64)
    torch.testing.assert_close(lp.exp(), ref)
    assert abs(float(torch.logsumexp(lp, 0).exp()) - 1.0) < 1e-12
    # batched parameters, a batch of values, and k = 1 reduces to the categorical mass
    logits = torch.randn(2, 7)
    one = GumbelSoftmaxTopK(1, 1.0, logits=logits, hard=True)
    torch.testing.assert_close(one.log_prob(torch.eye(7).unsqueeze(1)), torch.log_softmax(logits, -1).T)


def test_log_prob_matches_empirical_subset_frequencies():
    torch.manual_seed(13)
    n = 20000
    d = GumbelSoftmaxTopK(2, 1.0, probs=P5, hard=True)
    x = d.sample((n,))
    subsets = list(itertools.combinations(range(5), 2))
    values = torch.stack([k_hot(s, 5) for s in subsets])
    counts = (x.unsqueeze(1) == values).all(-1).sum(0).double()
    p = d.log_prob(values).double().exp()
    assert abs(float(p.sum()) - 1.0) < 1e-5
    assert ((counts / n - p).abs() <= 4 * (p * (1 - p) / n).sqrt()).all()


def test_log_prob_is_stable_for_extreme_probabilities():
    logits = torch.tensor([30.0, 29.0, -30.0, -30.0, 0.0])
    d = GumbelSoftmaxTopK(3, 1.0, logits=logits, hard=True)
    lp = d.log_prob(torch.stack([k_hot(s, 5) for s in itertools.combinations(range(5), 3)]))
    assert torch.isfinite(lp).all()
    assert abs(float(torch.logsumexp(lp.double(), 0))) < 1e-5


def test_dynamic_programme_matches_brute_force_for_k8():
    torch.manual_seed(14)
    p = torch.softmax(torch.randn(10, dtype=torch.float64), -1)
    s = (0, 1, 2, 4, 5, 6, 8, 9)
    lp = subset_log_prob(p.log(), k_hot(s, 10).double(), 8)
    assert abs(float(lp.exp()) / brute_subset_prob(p, s) - 1.0) < 1e-10



@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("k", [1, 2, 3])
def test_enumerate_log_prob_equals_log_prob_of_every_subset(k, dtype):
    # every K up to 8, batched parameters with spread-out logits (masses down to ~1e-6)
    torch.manual_seed(20 + k)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    for num in range(k + 1, 9):
        d = GumbelSoftmaxTopK(k, 1.0, logits=3.0 * torch.randn(3, 2, num, dtype=dtype), hard=True)
        support = d.enumerate_support()
        subsets = list(itertools.combinations(range(num), k))
        assert support.shape == (len(subsets), 3, 2, num) and support.dtype == dtype
        assert torch.equal(support[:, 0, 0], torch.stack([k_hot(s, num) for s in subsets]).to(dtype))
        assert d.enumerate_support(expand=False).shape == (len(subsets), 1, 1, num)
        lp = d.enumerate_log_prob()
        assert lp.shape == (len(subsets), 3, 2) and lp.dtype == dtype
        torch.testing.assert_close(lp, d.log_prob(support), atol=tol, rtol=tol)
        torch.testing.assert_close(lp.logsumexp(0), torch.zeros(3, 2, dtype=dtype), atol=tol, rtol=0)
    if dtype == torch.float64:  # against the k! orders by hand, not only the other programme
        p = d.probs[1, 0]
        ref = torch.tensor([brute_subset_prob(p, s) for s in subsets], dtype=dtype)
        torch.testing.assert_close(lp[:, 1, 0].exp(), ref, atol=0, rtol=1e-10)


def test_enumerate_log_prob_closed_form_k2_uniform_and_gradient():
    # k = 2: log p_i + log p_j + log(1/(1-p_i) + 1/(1-p_j)); uniform logits: -log C(K, 2)
    logits = torch.tensor([[1.0, 0.0, -0.5, 2.0, -3.0]], dtype=torch.float64, requires_grad=True)
    d = GumbelSoftmaxTopK(2, 1.0, logits=logits, hard=True)
    p = torch.softmax(logits.detach()[0], -1)
    want = [float(p[i].log() + p[j].log() + torch.log(1 / (1 - p[i]) + 1 / (1 - p[j])))
            for i, j in itertools.combinations(range(5), 2)]
    torch.testing.assert_close(d.enumerate_log_prob()[:, 0], torch.tensor(want, dtype=torch.float64))
    u = GumbelSoftmaxTopK(2, 1.0, logits=torch.zeros(4, 7), hard=True).enumerate_log_prob()
    torch.testing.assert_close(u, torch.full((21, 4), -math.log(21.0)))
    # a temperature batch broadcasts the parameters
    t = GumbelSoftmaxTopK(2, torch.ones(3), logits=torch.zeros(5), hard=True)
    assert t.enumerate_log_prob().shape == (10, 3) and t.enumerate_support().shape == (10, 3, 5)
    # the entropy's gradient matches the one through log_prob
    def entropy_grad(log_mass):
        return torch.autograd.grad(-(log_mass.exp() * log_mass).sum(), logits)[0]

    g1 = entropy_grad(GumbelSoftmaxTopK(2, 1.0, logits=logits, hard=True).enumerate_log_prob())
    g2 = entropy_grad(GumbelSoftmaxTopK(2, 1.0, logits=logits, hard=True).log_prob(d.enumerate_support()))
    torch.testing.assert_close(g1, g2)
    assert torch.autograd.gradcheck(
        lambda x: GumbelSoftmaxTopK(3, 1.0, logits=x, hard=True).enumerate_log_prob(), (logits,))


def test_enumerate_is_stable_for_extreme_probabilities_and_refuses_soft():
    logits = torch.tensor([30.0, 29.0, -30.0, -30.0, 0.0])
    d = GumbelSoftmaxTopK(3, 1.0, logits=logits, hard=True)
    lp = d.enumerate_log_prob()
    assert torch.isfinite(lp).all() and abs(float(lp.double().logsumexp(0))) < 1e-5
    torch.testing.assert_close(lp, d.log_prob(d.enumerate_support()), atol=1e-4, rtol=1e-5)
    soft = GumbelSoftmaxTopK(2, 1.0, logits=logits)
    assert d.has_enumerate_support and not soft.has_enumerate_support
    for call in (soft.enumerate_support, soft.enumerate_log_prob):
        with pytest.raises(NotImplementedError, match="continuous"):
            call()
    with pytest.raises(NotImplementedError, match="subsets"):
        GumbelSoftmaxTopK(10, 1.0, logits=torch.zeros(40), hard=True).enumerate_log_prob()

def test_independent_noise_across_batch():
    # identical parameters in two batch elements agree with probability sum_S P(S)^2, not 1
    torch.manual_seed(15)
    n = 4000
    d = GumbelSoftmaxTopK(2, 1.0, probs=P5, hard=True).expand((2,))
    x = d.sample((n,))
    agree = (x[:, 0] == x[:, 1]).all(-1).double().mean()
    target = sum(brute_subset_prob(P5, s) ** 2 for s in itertools.combinations(range(5), 2))
    assert abs(float(agree) - target) <= 4 * (target * (1 - target) / n) ** 0.5
    soft = GumbelSoftmaxTopK(2, 1.0, probs=P5).expand((2,)).sample((10,))
    assert not torch.isclose(soft[:, 0], soft[:, 1]).all(-1).any()


# ----------------------------------------------------------------------------- relaxations
@pytest.mark.parametrize("relaxation", RELAXATIONS)
def test_relaxations_sum_to_k(relaxation):
    for k in (1, 2, 4):
        x = GumbelSoftmaxTopK(k, 0.3, logits=torch.randn(8, 5), relaxation=relaxation).rsample((50,))
        assert (x >= 0).all()
        torch.testing.assert_close(x.sum(-1), torch.full((50, 8), float(k)), atol=1e-4, rtol=0)


def test_threshold_entries_in_unit_interval_keep_order_and_harden():
    torch.manual_seed(16)
    # float64: in float32 an entry a dozen tau away from t rounds to exactly 0 or 1
    d = GumbelSoftmaxTopK(3, 0.5, logits=torch.randn(6, dtype=torch.float64), relaxation="threshold")
    kappa = d.perturbed_logits((200,))
    s = d.relax(kappa)
    assert ((s > 0) & (s < 1)).all()
    assert torch.equal(s.argsort(-1), kappa.argsort(-1))   # order of kappa kept
    kappa64 = kappa
    hard = topk_indicator(kappa64, 3)
    for relax in (threshold_topk_relaxation, sequential_topk_relaxation):
        cold = relax(kappa64, torch.tensor(1e-4, dtype=torch.float64), 3)
        warm = relax(kappa64, torch.tensor(1.0, dtype=torch.float64), 3)
        # mean, not max: a few of the 200 draws have a k-th/(k+1)-th gap of order tau
        assert (cold - hard).abs().mean() < 1e-4 and (warm - hard).abs().mean() > 0.05


def test_sequential_entries_may_exceed_one_as_documented():
    # kappa gap 0.66 at tau 0.3: the runner-up collects ~0.1 then ~0.99, see the docstring
    s = sequential_topk_relaxation(torch.tensor([0.66, 0.0, -5.0]), torch.tensor(0.3), 2)
    assert 1.05 < float(s[1]) < 1.15 and abs(float(s.sum()) - 2.0) < 1e-5


@pytest.mark.parametrize("relaxation", RELAXATIONS)
def test_relaxation_gradients_are_exact(relaxation):
    # gradcheck against finite differences, w.r.t. kappa and tau (float64); for the threshold this
    # checks the implicit-function gradient of the bisection solution.
    relax = sequential_topk_relaxation if relaxation == "sequential" else threshold_topk_relaxation
    kappa = torch.tensor([[0.3, -0.2, 1.1, 0.5, -1.0], [2.0, 1.9, -0.5, 0.0, 0.1]],
                         dtype=torch.float64, requires_grad=True)
    tau = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, t: relax(a, t, 2), (kappa, tau))


@pytest.mark.parametrize("relaxation", RELAXATIONS)
@pytest.mark.parametrize("hard", [False, True])
@pytest.mark.parametrize("tau", [0.01, 1.0, 10.0])
def test_finite_moderate_gradients_float32(relaxation, hard, tau):
    # logits across [-30, 30]; relaxit's masking gave gradients of 1e17 here.
    logits = torch.stack([torch.linspace(-30, 30, 6), torch.tensor([30.0, 30.0, -30.0, 29.9, 0.0, -29.9]),
                          torch.zeros(6)]).requires_grad_(True)
    temperature = torch.tensor(tau, requires_grad=True)
    w = torch.randn(6)
    x = GumbelSoftmaxTopK(3, temperature, logits=logits, hard=hard, relaxation=relaxation).rsample((100,))
    assert torch.isfinite(x).all()
    g_logits, g_tau = torch.autograd.grad((x * w).sum(), (logits, temperature))
    assert torch.isfinite(g_logits).all() and torch.isfinite(g_tau).all()
    # per sample, a gradient entry is at most of order |w| / tau; 100 samples summed
    assert float(g_logits.abs().max()) < 100 * 50 * float(w.abs().max()) / tau


@pytest.mark.parametrize("relaxation", RELAXATIONS)
def test_hard_forward_is_exact_top_k_with_relaxed_gradient(relaxation):
    logits = torch.randn(5, requires_grad=True)
    w = torch.randn(5)
    torch.manual_seed(17)
    h = GumbelSoftmaxTopK(2, 0.5, logits=logits, hard=True, relaxation=relaxation)
    x = h.rsample((40,))
    torch.manual_seed(17)
    s = GumbelSoftmaxTopK(2, 0.5, logits=logits, relaxation=relaxation)
    kappa = s.perturbed_logits((40,))
    assert torch.equal(x.detach(), topk_indicator(kappa.detach(), 2))
    torch.testing.assert_close(torch.autograd.grad((x * w).sum(), logits)[0],
                               torch.autograd.grad((s.relax(kappa) * w).sum(), logits)[0])


def test_inclusion_probs_by_enumeration():
    p = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
    law = lambda k: GumbelSoftmaxTopK(k, 1.0, probs=p, hard=True)
    torch.testing.assert_close(law(1).inclusion_probs(), p)
    incl = law(2).inclusion_probs()
    assert float(incl.sum()) == pytest.approx(2.0)
    # P(0 in a size-2 draw) = p0 + sum_{j != 0} p_j p0 / (1 - p_j)
    assert float(incl[0]) == pytest.approx(0.1 + sum(pj * 0.1 / (1 - pj) for pj in (0.2, 0.3, 0.4)))
    assert float(law(3).inclusion_probs().sum()) == pytest.approx(3.0)


# ----------------------------------------------------------------------------- exact sequential masking
def exact_sequential(kappa, tau, k, digits=60):
    """The sequential relaxation in exact arithmetic (mpmath, ``digits`` significant digits):
    w_{j+1} = w_j + log(1 - a_j), 1 - a_j computed as the sum of the other entries' shares.
    -inf entries of ``kappa`` stay at 0."""
    import mpmath as mp

    with mp.workdps(digits):
        live = [x != -math.inf for x in kappa]
        w = [mp.mpf(x) if ok else None for x, ok in zip(kappa, live)]
        t, total = mp.mpf(tau), [mp.mpf(0)] * len(kappa)
        for _ in range(k):
            e = [mp.exp(x / t) if ok else mp.mpf(0) for x, ok in zip(w, live)]
            z = mp.fsum(e)
            total = [s + x / z for s, x in zip(total, e)]
            w = [w[i] + mp.log(mp.fsum(e[:i] + e[i + 1:]) / z) if live[i] else None
                 for i in range(len(w))]
        return [float(s) for s in total]


AUDIT_ROWS = [[20.0, 0.0, 0.0, 0.0], [30.0, -30.0, -30.0, -30.0], [12.0, -3.0, -4.0, -5.0]]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("tau", [0.05, 0.2, 0.5, 0.9])
def test_sequential_relaxation_is_the_exact_relaxation(tau, dtype):
    # The audit's bug: a mask of log1p(-min(a, 1 - eps)) >= log eps let a dominant item win the
    # next step again ([1.93, 0.02, 0.02, 0.03] for logits [20, 0, 0, 0]). Every entry must be the
    # relaxation's own value in exact arithmetic, so none exceeds 1 by more than it allows.
    gen = torch.Generator().manual_seed(int(tau * 100))
    tol = 1e-3 if dtype == torch.float32 else 1e-9
    for num in (4, 6):
        logits = torch.rand(6, num, generator=gen, dtype=torch.float64) * 60 - 30
        logits[0] = torch.tensor([20.0] + [0.0] * (num - 1))
        logits[1] = torch.tensor([30.0] + [-30.0] * (num - 1))
        logits[2, :4] = torch.tensor(AUDIT_ROWS[2])
        logits[3, 1] = -math.inf                                   # a masked category
        for k in range(1, num - 1):
            d = GumbelSoftmaxTopK(k, tau, logits=logits.to(dtype))
            kappa = d.perturbed_logits((3,)).reshape(-1, num)
            ours = sequential_topk_relaxation(kappa, torch.tensor(tau, dtype=dtype), k)
            ref = torch.tensor([exact_sequential(row, tau, k) for row in kappa.double().tolist()],
                               dtype=torch.float64)
            torch.testing.assert_close(ours.double(), ref, atol=tol, rtol=0)
            assert bool(torch.isfinite(ours).all())


def test_audit_examples_dominant_item_is_counted_once():
    torch.manual_seed(0)
    s = GumbelSoftmaxTopK(2, 0.5, logits=torch.tensor([20.0, 0, 0, 0])).rsample((1000,))
    assert float(s.max()) <= 1.0 + 1e-5
    torch.testing.assert_close(s.mean(0)[0], torch.tensor(1.0), atol=1e-5, rtol=0)
    one = GumbelSoftmaxTopK(2, 0.5, logits=torch.tensor([30.0, -30, -30, -30], dtype=torch.float64)).rsample()
    assert abs(float(one[0]) - 1.0) < 1e-12 and abs(float(one[1:].sum()) - 1.0) < 1e-12
    big = GumbelSoftmaxTopK(2, 0.5, logits=torch.tensor([12.0, -3, -4, -5])).rsample((10000,))
    assert float((big > 1.5).float().mean()) == 0.0


def _mean_within_mc_error(d, n, floor):
    x = d.rsample((n,)).double()
    incl = d.inclusion_probs().double()
    se = (incl * (1 - incl)).clamp(min=0).div(n).sqrt()      # the hard indicator's MC error
    return bool(((x.mean(0) - incl).abs() <= 4 * se + floor).all()), x.mean(0), incl


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_relaxed_mean_matches_inclusion_probs(dtype):
    torch.manual_seed(21)
    n = 4000
    # One dominant item (lead >= 20) and ties below: every k, any tau up to 0.5. (floor: a rare
    # Gumbel tail can bring a runner-up within reach, which the relaxation smooths.)
    for row in ([20.0, 0.0, 0.0, 0.0], [30.0, -30.0, -30.0, -30.0], [-30.0, -30.0, 30.0, -30.0, -30.0]):
        for tau in (0.1, 0.3, 0.5):
            for k in range(1, len(row)):
                d = GumbelSoftmaxTopK(k, tau, logits=torch.tensor(row, dtype=dtype))
                ok, mean, incl = _mean_within_mc_error(d, n, floor=1e-3)
                assert ok, (row, tau, k, mean, incl)
    # Logits anywhere in [-30, 30], k <= 2, small tau: only near-ties (leads within ~tau) are
    # smoothed, which moves a mean by about 1e-3 here.
    gen = torch.Generator().manual_seed(22)
    for _ in range(8):
        logits = (torch.rand(5, generator=gen) * 60 - 30).to(dtype)
        for k in (1, 2):
            ok, mean, incl = _mean_within_mc_error(GumbelSoftmaxTopK(k, 0.05, logits=logits), n, floor=2.5e-3)
            assert ok, (logits, k, mean, incl)


def test_sequential_relaxation_limits_in_exact_arithmetic():
    # What the docstring and METHODS.md say the relaxation itself does (not a float effect):
    # tau >= 1 counts a dominant item again ...
    kappa = [10.0, 0.0, 0.0, 0.0]
    assert exact_sequential(kappa, 1.0, 2)[0] == pytest.approx(1.5, abs=1e-3)
    assert exact_sequential(kappa, 2.0, 2)[0] > 1.8
    assert exact_sequential(kappa, 0.5, 2)[0] == pytest.approx(1.0, abs=1e-6)
    torch.manual_seed(23)
    for tau, want in ((1.0, [1.50, 0.167]), (2.0, [1.83, 0.057])):
        m = GumbelSoftmaxTopK(2, tau, logits=torch.tensor(kappa, dtype=torch.float64)).rsample((20000,)).mean(0)
        assert abs(float(m[0]) - want[0]) < 0.01 and abs(float(m[1:].mean()) - want[1]) < 0.01
    # ... and for k >= 3 a winner close to the runner-up wins again against the rest.
    close = [15.5, 14.1, -5.8, -13.2, -28.2]
    for tau, first in ((0.5, 1.94), (0.1, 2.0)):
        ref = exact_sequential(close, tau, 3)
        assert ref[0] == pytest.approx(first, abs=0.01) and ref[2] < 1e-10
        ours = sequential_topk_relaxation(torch.tensor(close, dtype=torch.float64),
                                          torch.tensor(tau, dtype=torch.float64), 3)
        torch.testing.assert_close(ours, torch.tensor(ref, dtype=torch.float64), atol=1e-9, rtol=0)
    # the threshold relaxation has neither defect: entries in (0, 1), the top 3 near 1
    th = threshold_topk_relaxation(torch.tensor(close, dtype=torch.float64), torch.tensor(0.5, dtype=torch.float64), 3)
    assert float(th[:3].min()) > 0.99 and float(th.max()) <= 1.0


@pytest.mark.parametrize("relaxation", RELAXATIONS)
@pytest.mark.parametrize("hard", [False, True])
def test_minus_inf_logits_are_masked_categories(relaxation, hard):
    logits = torch.tensor([[0.0, -math.inf, 1.0, 2.0, -math.inf], [3.0, 3.0, -math.inf, 0.0, -1.0]],
                          requires_grad=True)
    tau = torch.tensor(0.5, requires_grad=True)
    x = GumbelSoftmaxTopK(2, tau, logits=logits, hard=hard, relaxation=relaxation).rsample((200,))
    assert bool(torch.isfinite(x).all())
    assert bool((x[..., 0, 1] == 0).all() and (x[..., 0, 4] == 0).all() and (x[..., 1, 2] == 0).all())
    torch.testing.assert_close(x.sum(-1), torch.full((200, 2), 2.0), atol=1e-5, rtol=0)
    g_logits, g_tau = torch.autograd.grad((x * torch.randn(5)).sum(), (logits, tau))
    assert bool(torch.isfinite(g_logits).all()) and bool(torch.isfinite(g_tau))
    assert float(g_logits[0, 1]) == 0.0 and float(g_logits[1, 2]) == 0.0


@pytest.mark.parametrize("tau", [0.02, 0.7])
def test_sequential_gradient_is_exact_with_a_dominant_item(tau):
    # The exact mask's own backward (winner: softmax of the others; others: a/(1 - a)), in the
    # regular case and where the others' shares underflow (tau = 0.02: leads of 60/0.02 in u).
    kappa = torch.tensor([[30.0, -30.0, -29.0, -28.0, -30.5], [0.3, -0.2, 1.1, 0.5, -1.0],
                          [30.0, 29.5, -30.0, -29.0, -math.inf]], dtype=torch.float64, requires_grad=True)
    t = torch.tensor(tau, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, s: sequential_topk_relaxation(x, s, 3), (kappa, t))
