"""The conventions users bring from torch, Pyro and relaxit (issue 11, part 5): signatures that fail
loudly instead of meaning something else, closed-form moments, enumeration, registered KLs."""

import itertools
import math

import pytest
import torch
from torch.distributions import Bernoulli, Categorical, OneHotCategorical, kl_divergence

from relaxcli import distributions as D

# ----------------------------------------------------------------------------- signatures
RELAXIT_CALLS = {
    # relaxit's positional calls: each must raise, not run with another meaning
    "StraightThroughBernoulli(a)": lambda a: D.StraightThroughBernoulli(a),
    "StochasticTimesSmooth(a)": lambda a: D.StochasticTimesSmooth(a),
    "HardConcrete(alpha, beta, xi, gamma)": lambda a: D.HardConcrete(a.exp(), torch.tensor(0.5),
                                                                    torch.tensor(1.1), torch.tensor(-0.1)),
    "HardConcrete(alpha)": lambda a: D.HardConcrete(a.exp()),
    "DecoupledST(tf, tb, logits)": lambda a: D.DecoupledStraightThroughGumbelSoftmax(0.5, 1.0, a),
    "GumbelSoftmaxTopK(a, K, tau)": lambda a: D.GumbelSoftmaxTopK(a, torch.tensor(2), torch.tensor(0.5)),
    "CorrelatedRelaxedBernoulli(pi, R, tau)": lambda a: D.CorrelatedRelaxedBernoulli(
        torch.sigmoid(a), torch.eye(4), torch.tensor(0.5)),
    "GeneralizedGumbelSoftmax(values, probs)": lambda a: D.GeneralizedGumbelSoftmax(
        torch.arange(4.0), torch.softmax(a, -1)),
    "GeneralizedGumbelSoftmax(values, probs=p, tau=t)": lambda a: D.GeneralizedGumbelSoftmax(
        torch.arange(4.0), probs=torch.softmax(a, -1), tau=0.5),
    "RelaxedBernoulli(tau, None, logits, True)": lambda a: D.RelaxedBernoulli(0.5, None, a, True),
}


@pytest.mark.parametrize("call", RELAXIT_CALLS)
def test_positional_calls_from_relaxit_fail_loudly(call):
    with pytest.raises((TypeError, ValueError)):
        RELAXIT_CALLS[call](torch.tensor([0.3, -1.0, 2.0, 0.5]))


def test_torch_style_calls_mean_what_they_mean_in_torch():
    p = torch.tensor([0.2, 0.7])
    assert torch.allclose(D.RelaxedBernoulli(0.5, p).probs, p)               # (temperature, probs)
    assert torch.allclose(D.GumbelSoftmax(0.5, torch.tensor([0.25, 0.75])).probs, torch.tensor([0.25, 0.75]))
    hc = D.HardConcrete(0.5, probs=p)                                         # probs = sigma(log alpha)
    assert torch.allclose(torch.sigmoid(hc.logits), p) and torch.allclose(hc.temperature, torch.tensor(0.5))


# ----------------------------------------------------------------------------- moments
def test_closed_form_moments_of_the_hard_laws():
    logits = torch.tensor([[0.3, -1.0, 2.0, 0.5]], dtype=torch.float64)
    cat = OneHotCategorical(logits=logits)
    for d in (D.GumbelSoftmax(0.5, logits=logits, hard=True),
              D.DecoupledStraightThroughGumbelSoftmax(1.0, 0.5, logits=logits)):
        torch.testing.assert_close(d.mean, cat.mean)
        torch.testing.assert_close(d.variance, cat.variance)
        torch.testing.assert_close(d.entropy(), cat.entropy())
    cold = D.DecoupledStraightThroughGumbelSoftmax(0.5, 1.0, logits=logits)
    torch.testing.assert_close(cold.entropy(), Categorical(logits=logits / 0.5).entropy())
    b = torch.tensor([-3.0, 0.0, 4.0], dtype=torch.float64)
    for d in (D.StraightThroughBernoulli(logits=b), D.RelaxedBernoulli(0.5, logits=b, hard=True)):
        torch.testing.assert_close(d.entropy(), Bernoulli(logits=b).entropy())
        torch.testing.assert_close(d.variance, Bernoulli(logits=b).variance)
    sts = D.StochasticTimesSmooth(logits=b)
    torch.testing.assert_close(sts.entropy(), Bernoulli(probs=sts.sqrt_probs).entropy())
    # generalized GS: repeated values are one outcome
    g = D.GeneralizedGumbelSoftmax(torch.tensor([0.0, 1.0, 1.0, 3.0], dtype=torch.float64), 0.5,
                                   logits=logits[0], hard=True)
    p = torch.softmax(logits[0], -1)
    merged = torch.stack([p[0], p[1] + p[2], p[3]])
    torch.testing.assert_close(g.entropy(), -(merged * merged.log()).sum())
    torch.testing.assert_close(g.variance, (p * torch.tensor([0.0, 1, 1, 3]).double() ** 2).sum() - g.mean ** 2)
    # top-k: inclusion probabilities and the entropy of the subset law by hand
    t = D.GumbelSoftmaxTopK(2, 0.5, logits=logits[0], hard=True)
    masses = t.enumerate_log_prob().exp()
    torch.testing.assert_close(t.entropy(), -(masses * masses.log()).sum())
    torch.testing.assert_close(t.mean, t.inclusion_probs())


def test_closed_form_moments_of_relaxed_laws_by_monte_carlo():
    torch.manual_seed(31)
    n = 200_000
    checks = [
        D.LogitRelaxedBernoulli(0.4, logits=torch.tensor([1.0, -2.0], dtype=torch.float64)),
        D.GaussianRelaxedBernoulli(torch.tensor([-0.3, 0.5, 1.4], dtype=torch.float64),
                                   torch.tensor([0.5, 2.0, 0.4], dtype=torch.float64)),
        D.LogitCorrelatedRelaxedBernoulli(0.5, logits=torch.tensor([0.3, -1.0], dtype=torch.float64),
                                          correlation=torch.tensor([[1.0, 0.7], [0.7, 1.0]], dtype=torch.float64)),
    ]
    for d in checks:
        x = d.sample((n,))
        se = x.std(0) / math.sqrt(n)
        assert bool(((x.mean(0) - d.mean).abs() <= 4 * se).all()), type(d).__name__
        assert bool(((x.var(0) / d.variance - 1).abs() < 0.03).all()), type(d).__name__
        if not isinstance(d, D.GaussianRelaxedBernoulli):
            nll = -d.log_prob(x)
            assert bool(((nll.mean(0) - d.entropy()).abs() <= 4 * nll.std(0) / math.sqrt(n)).all())


def test_laws_without_closed_forms_say_so():
    for call in (lambda: D.GumbelSoftmax(0.5, logits=torch.zeros(3)).entropy(),
                 lambda: D.GumbelSoftmax(0.5, logits=torch.zeros(3)).mean,
                 lambda: D.RelaxedBernoulli(0.5, logits=torch.zeros(3)).variance,
                 lambda: D.RelaxedBernoulli(0.5, logits=torch.zeros(3)).entropy(),
                 lambda: D.GumbelSoftmaxTopK(2, 0.5, logits=torch.zeros(4)).mean,
                 lambda: D.GaussianRelaxedBernoulli(torch.zeros(2)).entropy(),
                 lambda: D.GeneralizedGumbelSoftmax(torch.arange(3.0), 0.5, logits=torch.zeros(3)).variance):
        with pytest.raises(NotImplementedError):
            call()


# ----------------------------------------------------------------------------- enumeration
def test_decoupled_st_enumerates_its_one_hot_support():
    d = D.DecoupledStraightThroughGumbelSoftmax(0.7, 1.0, logits=torch.randn(2, 3, 4))
    assert d.has_enumerate_support
    s = d.enumerate_support()
    assert s.shape == (4, 2, 3, 4) and d.enumerate_support(expand=False).shape == (4, 1, 1, 4)
    torch.testing.assert_close(d.log_prob(s).exp().sum(0), torch.ones(2, 3))
    for hard in (D.GumbelSoftmax(0.5, logits=torch.zeros(2, 4), hard=True),
                 D.StraightThroughBernoulli(logits=torch.zeros(2)),
                 D.RelaxedBernoulli(0.5, logits=torch.zeros(2), hard=True)):
        support = hard.enumerate_support()
        torch.testing.assert_close(hard.log_prob(support).exp().sum(0), torch.ones(2))
    assert not D.GumbelSoftmax(0.5, logits=torch.zeros(4)).has_enumerate_support


def test_trace_enum_elbo_enumerates_the_decoupled_st_site():
    pyro = pytest.importorskip("pyro")
    from pyro.infer import SVI, TraceEnum_ELBO, config_enumerate

    import relaxcli.pyro as RP

    pyro.clear_param_store()

    @config_enumerate
    def model():
        z = pyro.sample("z", RP.DecoupledStraightThroughGumbelSoftmax(1.0, 0.5, logits=torch.zeros(3)))
        pyro.sample("x", pyro.distributions.Normal((z * torch.arange(3.0)).sum(-1), 1.0), obs=torch.tensor(2.0))

    def guide():
        pass

    loss = SVI(model, guide, pyro.optim.Adam({"lr": 0.1}), TraceEnum_ELBO(max_plate_nesting=0)).step()
    # exact marginal: -log sum_k (1/3) N(2; k, 1)
    want = -math.log(sum(math.exp(-0.5 * (2 - k) ** 2) / math.sqrt(2 * math.pi) / 3 for k in range(3)))
    assert loss == pytest.approx(want, rel=1e-5)


# ----------------------------------------------------------------------------- registered KLs
def test_registered_kls_of_the_discrete_laws():
    a, b = torch.randn(5, dtype=torch.float64), torch.randn(5, dtype=torch.float64)
    ref = kl_divergence(Bernoulli(logits=a), Bernoulli(logits=b))
    torch.testing.assert_close(kl_divergence(D.StraightThroughBernoulli(logits=a), Bernoulli(logits=b)), ref)
    torch.testing.assert_close(kl_divergence(Bernoulli(logits=a), D.StraightThroughBernoulli(logits=b)), ref)
    torch.testing.assert_close(kl_divergence(D.StraightThroughBernoulli(logits=a),
                                             D.StraightThroughBernoulli(probs=torch.sigmoid(b))), ref)
    la, lb = torch.randn(2, 4, dtype=torch.float64), torch.randn(2, 4, dtype=torch.float64)
    ref = kl_divergence(OneHotCategorical(logits=la), OneHotCategorical(logits=lb))
    hard = D.GumbelSoftmax(0.5, logits=la, hard=True)
    torch.testing.assert_close(kl_divergence(hard, OneHotCategorical(logits=lb)), ref)
    torch.testing.assert_close(kl_divergence(hard, D.GumbelSoftmax(2.0, logits=lb, hard=True)), ref)
    dst = D.DecoupledStraightThroughGumbelSoftmax(0.5, 1.0, logits=la)
    torch.testing.assert_close(kl_divergence(dst, OneHotCategorical(logits=lb)),
                               kl_divergence(OneHotCategorical(logits=la / 0.5), OneHotCategorical(logits=lb)))
    with pytest.raises(NotImplementedError, match="soft"):
        kl_divergence(D.GumbelSoftmax(0.5, logits=la), OneHotCategorical(logits=lb))
    # hard top-k || hard top-k: the sum over the subsets, against the k! orders by hand
    p = D.GumbelSoftmaxTopK(2, 0.5, logits=la[0], hard=True)
    q = D.GumbelSoftmaxTopK(2, 0.5, logits=lb[0], hard=True)

    def mass(logits, subset):
        pr = torch.softmax(logits, -1)
        return sum(pr[i] * pr[j] / (1 - pr[i]) for i, j in itertools.permutations(subset))

    subsets = list(itertools.combinations(range(4), 2))
    want = sum(mass(la[0], s) * (mass(la[0], s) / mass(lb[0], s)).log() for s in subsets)
    torch.testing.assert_close(kl_divergence(p, q), want)
    with pytest.raises(ValueError, match="sizes"):
        kl_divergence(p, D.GumbelSoftmaxTopK(3, 0.5, logits=lb[0], hard=True))
