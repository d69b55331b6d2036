"""Laplace bridge (Hobbhahn et al. 2022): formulas by hand, exact round trip, erratum, KL helpers."""

import math
from fractions import Fraction

import pytest
import torch
from torch.distributions import Dirichlet, kl_divergence

from relaxcli.bridge import (
    dirichlet_to_logistic_normal,
    kl_monte_carlo,
    laplace_bridge,
    logistic_normal_to_dirichlet,
)
from relaxcli.distributions import LogisticNormalSoftmax

ALPHA = (2, 5, 9)
# By hand, K = 3: sum_l 1/alpha_l = 1/2 + 1/5 + 1/9 = 73/90, so (1/K^2) sum = 73/810 and
# Sigma_kk = (1/alpha_k)(1/3) + 73/810 = 135/810 + 73/810, 54/810 + 73/810, 30/810 + 73/810.
VARIANCE = [Fraction(208, 810), Fraction(127, 810), Fraction(103, 810)]
# mu_k = log alpha_k - (log 2 + log 5 + log 9)/3 = log(alpha_k / 90^(1/3))
LOC = [math.log(a) - math.log(90) / 3 for a in ALPHA]


def test_worked_example_by_hand():
    loc, scale = dirichlet_to_logistic_normal(torch.tensor(ALPHA, dtype=torch.float64))
    assert torch.allclose(loc, torch.tensor(LOC, dtype=torch.float64))
    assert torch.allclose(scale, torch.tensor([math.sqrt(v) for v in VARIANCE], dtype=torch.float64))
    assert abs(loc.sum().item()) < 1e-12  # the softmax-basis gauge: mu sums to zero


def test_erratum_scale_is_the_square_root_of_the_variance():
    _, scale = dirichlet_to_logistic_normal(torch.tensor(ALPHA, dtype=torch.float64))
    variance = torch.tensor([float(v) for v in VARIANCE], dtype=torch.float64)
    assert torch.allclose(scale.pow(2), variance)
    assert not torch.allclose(scale, variance)  # relaxit passed the variance as the std
    # and the inverse map reads scale as a standard deviation
    alpha = logistic_normal_to_dirichlet(torch.tensor(LOC, dtype=torch.float64), variance.sqrt())
    assert torch.allclose(alpha, torch.tensor(ALPHA, dtype=torch.float64))


def test_inverse_formula_by_hand():
    # alpha_k = (1/Sigma_kk)(1 - 2/K + e^{mu_k}/K^2 sum_l e^{-mu_l}) with mu = (0, log 2), Sigma = (1, 4)
    # K = 2: 1 - 2/K = 0; sum_l e^{-mu_l} = 1 + 1/2 = 3/2; alpha = (1 * 1/4 * 3/2, 1/4 * 2/4 * 3/2)
    alpha = logistic_normal_to_dirichlet(torch.tensor([0.0, math.log(2.0)]), torch.tensor([1.0, 2.0]))
    assert torch.allclose(alpha, torch.tensor([3 / 8, 3 / 16]))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_round_trip_is_exact(dtype):
    torch.manual_seed(5)
    alpha = torch.rand(4, 6, 7, dtype=dtype) * 20 + 0.05
    back = logistic_normal_to_dirichlet(*dirichlet_to_logistic_normal(alpha))
    rtol = 1e-12 if dtype == torch.float64 else 1e-5
    assert back.dtype == dtype and torch.allclose(back, alpha, rtol=rtol, atol=0)


def test_inverse_is_stable_for_large_means():
    # e^{90} overflows float32, but alpha itself does not: logsumexp keeps every entry finite
    alpha = logistic_normal_to_dirichlet(torch.tensor([-90.0, 0.0, 0.0]), torch.ones(3))
    assert torch.isfinite(alpha).all()
    assert abs(alpha[0].item() - (1 / 3 + 1 / 9)) < 1e-6
    assert abs(alpha[1].item() / (math.exp(90.0 - 2 * math.log(3.0))) - 1) < 1e-4


def test_laplace_bridge_dispatches_on_type_and_keeps_batch():
    alpha = torch.tensor([[2.0, 5.0, 9.0], [1.0, 1.0, 1.0]])
    ln = laplace_bridge(Dirichlet(alpha))
    assert isinstance(ln, LogisticNormalSoftmax) and ln.batch_shape == (2,) and ln.event_shape == (3,)
    back = laplace_bridge(ln)
    assert isinstance(back, Dirichlet) and torch.allclose(back.concentration, alpha, rtol=1e-5)
    with pytest.raises(TypeError, match="Dirichlet"):
        laplace_bridge(torch.distributions.Normal(0.0, 1.0))


def test_bad_input_is_a_value_error():
    with pytest.raises(ValueError, match="alpha"):
        dirichlet_to_logistic_normal(torch.tensor([1.0, -1.0]))
    with pytest.raises(ValueError, match="alpha"):
        dirichlet_to_logistic_normal(torch.tensor([1.0]))
    with pytest.raises(ValueError, match="scale"):
        logistic_normal_to_dirichlet(torch.zeros(3), torch.tensor([1.0, 0.0, 1.0]))


def test_bridge_log_ratio_means_approach_the_dirichlet():
    # E_Dir[log z_i - log z_K] = digamma(a_i) - digamma(a_K) -> log(a_i / a_K), the bridge's mean
    # log-ratio, as alpha grows; the bridge's diagonal covariance keeps a KL gap (measured, > 0).
    torch.manual_seed(6)
    for scale_up, tol in ((1.0, 0.25), (100.0, 0.005)):
        alpha = torch.tensor([2.0, 5.0, 9.0], dtype=torch.float64) * scale_up
        ln = laplace_bridge(Dirichlet(alpha))
        bridge_mean = ln.loc[:-1] - ln.loc[-1]
        dir_mean = torch.digamma(alpha[:-1]) - torch.digamma(alpha[-1])
        assert torch.allclose(bridge_mean, torch.log(alpha[:-1] / alpha[-1]))
        assert (bridge_mean - dir_mean).abs().max() < tol
    small = Dirichlet(torch.tensor([2.0, 5.0, 9.0], dtype=torch.float64))
    kl_small, se_small = kl_monte_carlo(small, laplace_bridge(small), 4000)
    assert kl_small > 4 * se_small  # a real, measurable gap


def test_kl_monte_carlo_agrees_with_exact_kl():
    torch.manual_seed(7)
    p = LogisticNormalSoftmax(torch.tensor([0.2, -0.1, 0.4]), torch.tensor([0.5, 0.8, 0.6]))
    q = LogisticNormalSoftmax(torch.tensor([0.0, 0.3, 0.1]), torch.tensor([0.7, 0.6, 0.9]))
    est, se = kl_monte_carlo(p, q, 20000)
    assert se > 0 and abs(est - kl_divergence(p, q)) < 4 * se
    # a Dirichlet against itself: every log-ratio is exactly 0
    d = Dirichlet(torch.tensor([[1.5, 2.0], [3.0, 0.7]]))
    est, se = kl_monte_carlo(d, d, 100)
    assert est.shape == (2,) and (est == 0).all() and (se == 0).all()
    with pytest.raises(ValueError, match="num_samples"):
        kl_monte_carlo(d, d, 1)


def test_kl_monte_carlo_standard_error_scales_with_sample_size():
    torch.manual_seed(8)
    d = Dirichlet(torch.tensor([2.0, 5.0, 9.0]))
    ln = laplace_bridge(d)
    _, se1 = kl_monte_carlo(d, ln, 1000)
    _, se2 = kl_monte_carlo(d, ln, 16000)
    assert 2.5 < (se1 / se2).item() < 6.0  # sqrt(16) = 4


def test_ln_kl_through_bridge_module():
    p = laplace_bridge(Dirichlet(torch.tensor([2.0, 5.0, 9.0])))
    q = laplace_bridge(Dirichlet(torch.tensor([3.0, 3.0, 3.0])))
    kl = kl_divergence(p, q)
    assert kl > 0 and torch.isfinite(kl) and kl_divergence(p, p).abs() < 1e-5
