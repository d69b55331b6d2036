"""CorrelatedRelaxedBernoulli (Gaussian-copula gates, METHODS.md section 1) and Phi_2.

Statistical checks use fixed seeds and 4-standard-error tolerances computed from the sample size.
"""

import math

import numpy as np
import pytest
import torch
from scipy.stats import multivariate_normal, norm
from torch.distributions import RelaxedBernoulli as TorchRelaxedBernoulli

from relaxcli.distributions import CorrelatedRelaxedBernoulli, LogitCorrelatedRelaxedBernoulli
from relaxcli.distributions.copula import bivariate_normal_cdf
from relaxcli.methods import get_method

# the seed's worked example (METHODS.md): batch 2, event 3
PI = [[0.2, 0.4, 0.4], [0.3, 0.5, 0.2]]
R = [[1.0, 0.5, 0.3], [0.5, 1.0, 0.7], [0.3, 0.7, 1.0]]


def example(dtype=torch.float32, tau=0.1):
    return CorrelatedRelaxedBernoulli(tau, correlation=torch.tensor(R, dtype=dtype),
                                      probs=torch.tensor(PI, dtype=dtype))


def four_se(p, n):
    return 4.0 * math.sqrt(p * (1.0 - p) / n) + 1e-12


# ----------------------------------------------------------------------------- shapes
def test_worked_example_shapes_sample_log_prob():
    d = example()
    assert d.batch_shape == (2,) and d.event_shape == (3,)
    m = d.rsample((4,))
    assert m.shape == (4, 2, 3) and d.rsample().shape == (2, 3)
    assert bool(d.support.check(m).all())
    lp = d.log_prob(m)
    assert lp.shape == (4, 2) and torch.isfinite(lp).all()
    assert torch.allclose(d.marginal_probs(), torch.tensor(PI))
    j = d.pairwise_joint_probs()
    assert j.shape == (2, 3, 3) and torch.allclose(j, j.mT)
    assert torch.allclose(torch.diagonal(j, dim1=-2, dim2=-1), torch.tensor(PI))


def test_expand_and_batched_correlation():
    d = example().expand((5, 2))
    m = d.rsample((3,))
    assert m.shape == (3, 5, 2, 3) and d.log_prob(m).shape == (3, 5, 2)
    r2 = torch.stack([torch.eye(3), torch.tensor(R)])  # a batch of two correlation matrices
    e = CorrelatedRelaxedBernoulli(0.5, correlation=r2, logits=torch.zeros(3))
    assert e.batch_shape == (2,) and e.rsample((4,)).shape == (4, 2, 3)
    assert e.log_prob(e.rsample((4,))).shape == (4, 2)
    assert e.pairwise_joint_probs().shape == (2, 3, 3)


def test_scale_tril_alternative_is_the_same_law():
    r = torch.tensor(R, dtype=torch.float64)
    p = torch.tensor(PI, dtype=torch.float64)
    a = CorrelatedRelaxedBernoulli(0.3, correlation=r, probs=p)
    b = CorrelatedRelaxedBernoulli(0.3, probs=p, scale_tril=torch.linalg.cholesky(r))
    m = a.sample((6,))
    assert torch.allclose(a.log_prob(m), b.log_prob(m))
    assert torch.allclose(b.correlation, r)
    torch.manual_seed(1)
    ma = a.sample((3,))
    torch.manual_seed(1)
    assert torch.equal(ma, b.sample((3,)))


# ----------------------------------------------------------------------------- noise / dtype
def test_noise_independent_across_batch():
    torch.manual_seed(2)
    n = 4000
    d = CorrelatedRelaxedBernoulli(0.5, correlation=torch.tensor(R), logits=torch.zeros(3)).expand((2,))
    m = d.sample((n,))  # (n, 2, 3)
    assert not torch.equal(m[:, 0], m[:, 1])
    for k in range(3):
        c = torch.corrcoef(torch.stack([m[:, 0, k], m[:, 1, k]]))[0, 1]
        assert abs(float(c)) < 4.0 / math.sqrt(n)


def test_float64_stays_float64():
    a = torch.tensor(PI, dtype=torch.float64, requires_grad=True)
    d = CorrelatedRelaxedBernoulli(0.1, correlation=torch.tensor(R, dtype=torch.float64), logits=a)
    m = d.rsample((2,))
    assert m.dtype == torch.float64 and d.log_prob(m).dtype == torch.float64
    assert d.pairwise_joint_probs().dtype == torch.float64
    m.sum().backward()
    assert a.grad.dtype == torch.float64
    # Python-float temperature with float64 parameters, and list parameters
    assert CorrelatedRelaxedBernoulli(0.1, correlation=R, probs=PI).rsample().dtype == torch.get_default_dtype()


# ----------------------------------------------------------------------------- finiteness
@pytest.mark.parametrize("tau", [0.01, 0.1, 1.0, 10.0])
def test_finite_samples_log_probs_and_grads_float32(tau):
    logits = torch.linspace(-30, 30, 61).repeat_interleave(3).view(61, 3).requires_grad_()
    temp = torch.tensor(tau, requires_grad=True)
    r = torch.tensor(R, requires_grad=True)
    d = CorrelatedRelaxedBernoulli(temp, correlation=r, logits=logits)
    m = d.rsample((20,))
    assert torch.isfinite(m).all()
    lp = d.log_prob(m)
    assert torch.isfinite(lp).all()
    (m.sum() + lp.sum()).backward()
    for g in (logits.grad, temp.grad, r.grad):
        assert torch.isfinite(g).all()
    # the support's boundaries (values that rounded to exactly 0 or 1)
    logits.grad = None
    d = CorrelatedRelaxedBernoulli(temp, correlation=r, logits=logits)
    ends = torch.tensor([[0.0, 1.0, 0.0], [1.0, 1.0, 1.0], [0.0, 0.0, 0.0]]).view(3, 1, 3)
    lpe = d.log_prob(ends)
    assert torch.isfinite(lpe).all()
    lpe.sum().backward()
    assert torch.isfinite(logits.grad).all()


# ----------------------------------------------------------------------------- validation
@pytest.mark.parametrize("bad, match", [
    ([[1.0, 0.5], [0.4, 1.0]], "symmetric"),
    ([[2.0, 0.5], [0.5, 1.0]], "unit diagonal"),
    ([[1.0, 0.9, -0.9], [0.9, 1.0, 0.9], [-0.9, 0.9, 1.0]], "positive definite"),
    ([[1.0, 1.0], [1.0, 1.0]], "positive definite"),
    ([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], "2x2"),
])
def test_bad_correlation_rejected(bad, match):
    for validate in (None, False):
        with pytest.raises(ValueError, match=match):
            CorrelatedRelaxedBernoulli(0.5, correlation=torch.tensor(bad),
                                       logits=torch.zeros(len(bad) if match != "2x2" else 2),
                                       validate_args=validate)


def test_other_bad_parameters_rejected():
    eye = torch.eye(2)
    with pytest.raises(ValueError, match="scale_tril"):
        CorrelatedRelaxedBernoulli(0.5, logits=torch.zeros(2), scale_tril=torch.tensor([[1.0, 0.0], [0.5, 1.0]]))
    with pytest.raises(ValueError, match="correlation"):
        CorrelatedRelaxedBernoulli(0.5, logits=torch.zeros(2))
    with pytest.raises(ValueError, match="temperature"):
        CorrelatedRelaxedBernoulli(0.0, correlation=eye, logits=torch.zeros(2))
    with pytest.raises(ValueError, match="temperature"):
        CorrelatedRelaxedBernoulli(-1.0, correlation=eye, logits=torch.zeros(2), validate_args=True)
    with pytest.raises(ValueError, match="probs"):
        CorrelatedRelaxedBernoulli(0.5, correlation=eye, probs=torch.tensor([0.2, 1.2]), validate_args=True)
    with pytest.raises(ValueError, match="logits"):
        CorrelatedRelaxedBernoulli(0.5, correlation=eye)


# ----------------------------------------------------------------------------- laws
def test_bivariate_normal_cdf_known_values():
    # rho = 0 factorises; Phi_2(0, 0; rho) = 1/4 + arcsin(rho)/(2 pi)
    t = lambda x: torch.tensor(x, dtype=torch.float64)
    phi = lambda x: 0.5 * (1 + math.erf(x / math.sqrt(2)))
    assert float(bivariate_normal_cdf(t(0.3), t(-0.4), t(0.0))) == pytest.approx(phi(0.3) * phi(-0.4), rel=1e-10)
    for rho in (-0.7, 0.3, 0.9):
        assert float(bivariate_normal_cdf(t(0.0), t(0.0), t(rho))) == pytest.approx(
            0.25 + math.asin(rho) / (2 * math.pi), rel=1e-10)


def test_bivariate_normal_cdf_matches_scipy():
    rng = np.random.default_rng(0)
    h, k = rng.normal(size=(2, 60)) * 1.5
    r = rng.uniform(-0.99, 0.99, size=60)
    r[:4] = [0.99, -0.99, 0.0, 0.95]
    ref = [multivariate_normal(mean=[0, 0], cov=[[1, ri], [ri, 1]]).cdf([hi, ki]) for hi, ki, ri in zip(h, k, r)]
    got = bivariate_normal_cdf(*(torch.tensor(a, dtype=torch.float64) for a in (h, k, r)))
    assert np.allclose(got.numpy(), ref, atol=1e-7)
    inf = torch.tensor([math.inf, -math.inf, 0.3], dtype=torch.float64)
    other = torch.tensor([0.4, 0.4, math.inf], dtype=torch.float64)
    assert np.allclose(bivariate_normal_cdf(inf, other, torch.full((3,), 0.5, dtype=torch.float64)).numpy(),
                       [norm.cdf(0.4), 0.0, norm.cdf(0.3)])


def test_marginals_and_pairwise_joints_match_gaussian_copula():
    """m_k > 1/2 iff U_k > 1 - pi_k, at any tau; at small tau m is nearly binary."""
    torch.manual_seed(3)
    n = 20000
    d = example(torch.float64, tau=0.05)
    b = d.sample((n,)) > 0.5  # (n, 2, 3)
    marg, joint = d.marginal_probs(), d.pairwise_joint_probs()
    for bi in range(2):
        for i in range(3):
            f = float(b[:, bi, i].double().mean())
            assert abs(f - float(marg[bi, i])) < four_se(float(marg[bi, i]), n)
            for j in range(i + 1, 3):
                p = float(joint[bi, i, j])
                f = float((b[:, bi, i] & b[:, bi, j]).double().mean())
                assert abs(f - p) < four_se(p, n), (bi, i, j, f, p)
    # the closed form against scipy directly
    h = norm.ppf(PI[1][1]), norm.ppf(PI[1][2])
    ref = multivariate_normal(mean=[0, 0], cov=[[1, 0.7], [0.7, 1]]).cdf(h)
    assert abs(float(joint[1, 1, 2]) - ref) < 1e-8


# ----------------------------------------------------------------------------- exact log_prob
def test_identity_correlation_is_independent_relaxed_bernoulli():
    logits = torch.tensor([[-1.0, 0.5, 2.0]], dtype=torch.float64)
    d = CorrelatedRelaxedBernoulli(0.4, correlation=torch.eye(3, dtype=torch.float64), logits=logits)
    ref = TorchRelaxedBernoulli(torch.tensor(0.4, dtype=torch.float64), logits=logits)
    m = d.sample((50,))
    assert torch.allclose(d.log_prob(m), ref.log_prob(m).sum(-1), rtol=1e-9, atol=1e-9)


def test_log_prob_matches_scipy_copula_density():
    d = example(torch.float64, tau=0.3)
    m = d.sample((20,))
    tau, a = 0.3, d.logits.numpy()
    x = np.log(m.numpy()) - np.log1p(-m.numpy())
    w = tau * x - a
    u = 1 / (1 + np.exp(-w))
    z = norm.ppf(u)
    log_c = multivariate_normal(mean=np.zeros(3), cov=R).logpdf(z) - norm.logpdf(z).sum(-1)
    log_jac = (np.log(tau) + np.log(u) + np.log1p(-u) - np.log(m.numpy()) - np.log1p(-m.numpy())).sum(-1)
    assert np.allclose(d.log_prob(m).numpy(), log_c + log_jac, rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("tau, rho", [(0.5, 0.6), (1.0, -0.8)])
def test_log_prob_integrates_to_one_d2(tau, rho):
    """2-D grid in x = logit m: integral of p(m) |dm/dx| = 1."""
    r = torch.tensor([[1.0, rho], [rho, 1.0]], dtype=torch.float64)
    d = CorrelatedRelaxedBernoulli(tau, correlation=r, logits=torch.tensor([0.3, -0.5], dtype=torch.float64))
    g = torch.linspace(-34.0, 34.0, 341, dtype=torch.float64)  # sigmoid is accurate within +-36
    x = torch.stack(torch.meshgrid(g, g, indexing="ij"), -1)
    lp = d.log_prob(torch.sigmoid(x)) + (torch.nn.functional.logsigmoid(x)
                                          + torch.nn.functional.logsigmoid(-x)).sum(-1)
    total = torch.trapezoid(torch.trapezoid(lp.exp(), g, dim=-1), g)
    assert abs(float(total) - 1.0) < 1e-5, float(total)  # tails beyond |x| = 34 hold < 1e-6


# ----------------------------------------------------------------------------- registry
def test_registry_builder_default_and_given_correlation():
    m = get_method("correlated-bernoulli")
    raw = torch.zeros(4, 3, requires_grad=True)
    d = m.build(raw)
    assert d.batch_shape == (4,) and d.event_shape == (3,)
    d = m.build(raw, correlation=torch.tensor(R))
    z = d.rsample((2,))
    z.sum().backward()
    assert z.shape == (2, 4, 3) and torch.isfinite(raw.grad).all()


def test_exact_densities_of_saturated_samples_come_from_logit_space():
    """At tau = 0.05 half the gates round to exactly 0 or 1 in float32. The logit-space law keeps
    the point drawn, and its density (under its own law and under another copula, e.g. a prior)
    is exact in float32; the relaxed law's log_prob is a function of the value alone."""
    torch.manual_seed(0)
    r = torch.tensor([[1.0, 0.6], [0.6, 1.0]])
    q = CorrelatedRelaxedBernoulli(0.05, correlation=r, logits=torch.tensor([3.0, -2.0]))
    prior = CorrelatedRelaxedBernoulli(0.05, correlation=torch.eye(2), logits=torch.zeros(2))
    qx = q.logit_space()
    assert isinstance(qx, LogitCorrelatedRelaxedBernoulli) and qx.batch_shape == q.batch_shape
    x = qx.rsample((2000,))
    m = torch.sigmoid(x)
    assert ((m == 0) | (m == 1)).float().mean() > 0.3  # the case this guards
    for law, law64 in ((q, CorrelatedRelaxedBernoulli(0.05, correlation=r.double(),
                                                      logits=torch.tensor([3.0, -2.0]).double())),
                       (prior, CorrelatedRelaxedBernoulli(0.05, correlation=torch.eye(2).double(),
                                                          logits=torch.zeros(2).double()))):
        lp = law.logit_space().log_prob(x)
        assert torch.isfinite(lp).all()
        torch.testing.assert_close(lp.double(), law64.logit_space().log_prob(x.double()), rtol=1e-4, atol=1e-3)
    # the relaxed law's density is the logit-space one minus log |dm/dx| where float32 m still
    # holds logit m to a few digits (|x| < 7); closer to 0 or 1 that is the float32 limit
    inner = (x.abs() < 7).all(-1)
    jac = (torch.nn.functional.logsigmoid(x) + torch.nn.functional.logsigmoid(-x)).sum(-1)
    torch.testing.assert_close(q.log_prob(m)[inner], (qx.log_prob(x) - jac)[inner], rtol=1e-4, atol=1e-3)


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning", "ignore::FutureWarning")
def test_log_prob_is_a_function_of_the_value_alone():
    # It used to read a pre-sigmoid value cached on the sample: log_prob(m) and log_prob(m.clone())
    # differed, an in-place edit was ignored, and torch.jit.trace baked the first sample's density in.
    torch.manual_seed(1)
    d = CorrelatedRelaxedBernoulli(0.1, correlation=torch.tensor(R), probs=torch.tensor([0.2, 0.4, 0.4]))
    m = d.rsample((500,))
    torch.testing.assert_close(d.log_prob(m), d.log_prob(m.clone()), rtol=0, atol=0)
    edited = m.clone()
    m.mul_(0.5).add_(0.25)
    torch.testing.assert_close(d.log_prob(m), d.log_prob(m.detach().clone()), rtol=0, atol=0)
    assert not torch.allclose(d.log_prob(m), d.log_prob(edited))
    m1, m2 = d.rsample(), d.rsample()
    traced = torch.jit.trace(lambda v: d.log_prob(v), (m1,), check_trace=False)
    torch.testing.assert_close(traced(m2), d.log_prob(m2))


def test_logit_space_with_identity_correlation_is_independent_logit_concrete():
    torch.manual_seed(2)
    logits = torch.tensor([[1.0, -0.5, 2.0], [0.0, 0.3, -3.0]], dtype=torch.float64)
    d = LogitCorrelatedRelaxedBernoulli(0.3, correlation=torch.eye(3, dtype=torch.float64), logits=logits)
    x = d.rsample((100,))
    ref = torch.distributions.relaxed_bernoulli.LogitRelaxedBernoulli(torch.tensor(0.3, dtype=torch.float64),
                                                                      logits=logits)
    torch.testing.assert_close(d.log_prob(x), ref.log_prob(x).sum(-1))
    assert isinstance(d.relaxed(), CorrelatedRelaxedBernoulli)
    torch.testing.assert_close(d.relaxed().log_prob(torch.sigmoid(x)),
                               d.log_prob(x) - (torch.nn.functional.logsigmoid(x)
                                                + torch.nn.functional.logsigmoid(-x)).sum(-1))
    e = d.expand((4, 2))
    assert type(e) is LogitCorrelatedRelaxedBernoulli and e.rsample().shape == (4, 2, 3)
