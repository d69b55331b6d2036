"""InvertibleGaussian (IGR) and LogisticNormalSoftmax: shapes, noise, densities, KL (METHODS.md 2-3)."""

import math

import pytest
import torch
from torch.distributions import (
    MultivariateNormal,
    Normal,
    TransformedDistribution,
    constraints,
    kl_divergence,
)
from torch.distributions.transforms import SigmoidTransform

from relaxcli.distributions import InvertibleGaussian, LogisticNormalSoftmax


def igr(batch=(2, 3), k=4, tau=0.7, delta=1.0, dtype=torch.float32):
    loc = torch.randn(batch + (k - 1,), dtype=dtype)
    scale = torch.rand(batch + (k - 1,), dtype=dtype) + 0.3
    return InvertibleGaussian(loc, scale, tau, delta=delta)


def ln(batch=(2, 3), k=4, dtype=torch.float32):
    loc = torch.randn(batch + (k,), dtype=dtype)
    scale = torch.rand(batch + (k,), dtype=dtype) + 0.3
    return LogisticNormalSoftmax(loc, scale)


BUILDERS = {"igr": igr, "ln": ln}


# ----------------------------------------------------------------------------- shapes and contract
@pytest.mark.parametrize("name", BUILDERS)
@pytest.mark.parametrize("sample_shape", [(), (5,), (2, 4)])
def test_shapes_and_simplex(name, sample_shape):
    d = BUILDERS[name]()
    assert d.batch_shape == (2, 3) and d.event_shape == (4,)
    z = d.rsample(sample_shape)
    assert z.shape == torch.Size(sample_shape) + (2, 3, 4)
    assert d.sample(sample_shape).shape == z.shape
    assert constraints.simplex.check(z).all()
    assert d.log_prob(z).shape == torch.Size(sample_shape) + (2, 3)
    assert d.support is constraints.simplex and d.has_rsample


@pytest.mark.parametrize("name", BUILDERS)
def test_expand(name):
    d = BUILDERS[name](batch=(3,))
    e = d.expand((5, 3))
    assert e.batch_shape == (5, 3) and e.event_shape == d.event_shape
    z = e.rsample((2,))
    assert z.shape == (2, 5, 3, 4)
    # expanded copies share parameters, so their log densities of one value agree
    assert torch.allclose(e.log_prob(z[:, :1].expand(2, 5, 3, 4)), d.log_prob(z[:, 0]).unsqueeze(1).expand(2, 5, 3))


@pytest.mark.parametrize("name", BUILDERS)
def test_independent_noise_across_batch_and_samples(name):
    d = BUILDERS[name](batch=(1,)).expand((16,))  # identical parameters in every batch element
    z = d.rsample((3,))
    assert not torch.allclose(z[:, 0:1].expand_as(z), z)  # batch elements differ
    assert not torch.allclose(z[0:1].expand_as(z), z)  # sample draws differ


@pytest.mark.parametrize("name", BUILDERS)
def test_float64_follows_parameters(name):
    d = BUILDERS[name](dtype=torch.float64)
    z = d.rsample((2,))
    assert z.dtype == torch.float64 and d.log_prob(z).dtype == torch.float64


def test_float_parameters_and_broadcast_temperature():
    d = InvertibleGaussian([0.0, 1.0], 1.0, torch.tensor([0.5, 2.0, 1.0]))
    assert d.batch_shape == (3,) and d.event_shape == (3,)
    assert d.rsample((4,)).shape == (4, 3, 3)
    assert LogisticNormalSoftmax([0.0, 1.0, 2.0], 0.5).batch_shape == ()


def test_gradients_reach_parameters():
    loc = torch.zeros(3, requires_grad=True)
    raw = torch.zeros(3, requires_grad=True)
    tau = torch.tensor(0.5, requires_grad=True)
    z = InvertibleGaussian(loc, raw.exp(), tau).rsample((4,))
    (z[..., 0] * torch.arange(4.0)).sum().backward()
    for p in (loc, raw, tau):
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0


# ----------------------------------------------------------------------------- validation
def test_validation_names_the_parameter():
    with pytest.raises(ValueError, match="scale"):
        InvertibleGaussian(torch.zeros(2), -torch.ones(2), 1.0, validate_args=True)
    with pytest.raises(ValueError, match="delta"):
        InvertibleGaussian(torch.zeros(2), torch.ones(2), 1.0, delta=0.0, validate_args=True)
    with pytest.raises(ValueError, match="scale"):
        LogisticNormalSoftmax(torch.zeros(3), torch.tensor([1.0, 0.0, 1.0]), validate_args=True)
    with pytest.raises(ValueError, match="loc"):
        LogisticNormalSoftmax(torch.tensor([0.0, float("nan")]), torch.ones(2), validate_args=True)
    with pytest.raises(ValueError, match="loc"):
        LogisticNormalSoftmax(torch.zeros(1), torch.ones(1))  # K = 1 is not a simplex
    with pytest.raises(ValueError, match="loc"):
        InvertibleGaussian(torch.zeros(()), torch.ones(()), 1.0)


@pytest.mark.parametrize("tau", [0.0, -1.0])
def test_nonpositive_temperature_is_an_error_when_validating(tau):
    with pytest.raises(ValueError, match="temperature"):
        InvertibleGaussian(torch.zeros(2), torch.ones(2), tau, validate_args=True)


def test_log_prob_validates_support():
    d = InvertibleGaussian(torch.zeros(2), torch.ones(2), 1.0, validate_args=True)
    with pytest.raises(ValueError):
        d.log_prob(torch.tensor([0.5, 0.6, 0.1]))


# ----------------------------------------------------------------------------- exact densities
def _simplex_grid(n):
    """Midpoint rule on the 2-simplex: points (a, b, 1-a-b) with cell area h^2/2 in (a, b)."""
    h = 1.0 / n
    a = (torch.arange(n, dtype=torch.float64) + 0.5) * h
    aa, bb = torch.meshgrid(a, a, indexing="ij")
    # two midpoints per square: the lower-left triangle centroid and the upper-right one
    pts = []
    for da, db in ((-h / 6, -h / 6), (h / 6, h / 6)):
        x, y = aa + da, bb + db
        keep = x + y < 1
        pts.append(torch.stack([x[keep], y[keep], 1 - x[keep] - y[keep]], -1))
    return torch.cat(pts), h * h / 2


@pytest.mark.parametrize("name", BUILDERS)
def test_log_prob_integrates_to_one_on_2_simplex(name):
    if name == "igr":
        d = InvertibleGaussian(torch.tensor([0.2, -0.3], dtype=torch.float64),
                               torch.tensor([0.6, 0.8], dtype=torch.float64), 1.5, delta=2.0)
    else:
        d = LogisticNormalSoftmax(torch.tensor([0.2, -0.3, 0.1], dtype=torch.float64),
                                  torch.tensor([0.5, 0.7, 0.6], dtype=torch.float64))
    z, area = _simplex_grid(400)
    total = d.log_prob(z).exp().sum() * area
    assert abs(total.item() - 1.0) < 5e-3


@pytest.mark.parametrize("name", BUILDERS)
def test_log_prob_integrates_to_one_on_1_simplex(name):
    n = 20000
    a = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    z = torch.stack([a, 1 - a], -1)
    if name == "igr":
        d = InvertibleGaussian(torch.tensor([0.4], dtype=torch.float64), torch.tensor([0.9], dtype=torch.float64), 0.8)
    else:
        d = LogisticNormalSoftmax(torch.tensor([0.4, -0.2], dtype=torch.float64),
                                  torch.tensor([0.5, 0.7], dtype=torch.float64))
    # the density in the coordinate z_1 of the 1-simplex is the log_prob on the simplex
    assert abs((d.log_prob(z).exp().sum() / n).item() - 1.0) < 1e-4


def test_logistic_normal_k2_matches_torch_logit_normal():
    # z_1 = softmax(y)_1 = sigmoid(y_1 - y_2), y_1 - y_2 ~ N(m1 - m2, s1^2 + s2^2)
    loc, scale = torch.tensor([0.4, -0.2]), torch.tensor([0.5, 0.7])
    d = LogisticNormalSoftmax(loc, scale)
    ref = TransformedDistribution(Normal(loc[0] - loc[1], scale.pow(2).sum().sqrt()), SigmoidTransform())
    z1 = torch.linspace(0.01, 0.99, 50)
    assert torch.allclose(d.log_prob(torch.stack([z1, 1 - z1], -1)), ref.log_prob(z1), atol=1e-5)


def test_igr_k2_matches_torch_logit_normal():
    # z_1 = sigmoid(y/tau - log delta), y ~ N(m, s): logit z_1 ~ N(m/tau - log delta, s/tau)
    m, s, tau, delta = 0.3, 0.8, 0.5, 3.0
    d = InvertibleGaussian(torch.tensor([m]), torch.tensor([s]), tau, delta=delta)
    ref = TransformedDistribution(Normal(m / tau - math.log(delta), s / tau), SigmoidTransform())
    z1 = torch.linspace(0.01, 0.99, 50)
    assert torch.allclose(d.log_prob(torch.stack([z1, 1 - z1], -1)), ref.log_prob(z1), atol=1e-4)


def test_igr_log_prob_is_change_of_variables_of_the_gaussian():
    # log p(z) = log N(y) - log|det dz_{<K}/dy| with the Jacobian computed by autograd
    torch.manual_seed(1)
    loc, scale = torch.randn(3, dtype=torch.float64), torch.rand(3, dtype=torch.float64) + 0.5
    d = InvertibleGaussian(loc, scale, 0.7, delta=0.5)
    y = loc + scale * torch.randn(3, dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(lambda v: d._softmax_pp(v)[:-1], y)
    expected = Normal(loc, scale).log_prob(y).sum() - torch.linalg.slogdet(jac).logabsdet
    z = d._softmax_pp(y)
    assert torch.allclose(d.log_prob(z), expected)
    assert torch.allclose(d.gaussian_coordinates(z), y)


def test_logistic_normal_log_prob_uses_the_dense_log_ratio_gaussian():
    torch.manual_seed(2)
    loc, scale = torch.randn(5, dtype=torch.float64), torch.rand(5, dtype=torch.float64) + 0.2
    d = LogisticNormalSoftmax(loc, scale)
    z = d.sample((7,))
    cov = torch.diag(scale[:-1] ** 2) + scale[-1] ** 2 * torch.ones(4, 4, dtype=torch.float64)
    r = z[..., :-1].log() - z[..., -1:].log()
    expected = MultivariateNormal(loc[:-1] - loc[-1], cov).log_prob(r) - z.log().sum(-1)
    assert torch.allclose(d.log_prob(z), expected)


def test_sample_moments_match_the_gaussian():
    # log-ratios of IGR samples are N(loc/tau - log delta, scale/tau): check means within 4 SE
    n = 20000
    loc, scale, tau, delta = torch.tensor([0.5, -1.0]), torch.tensor([1.0, 0.5]), 0.5, 2.0
    z = InvertibleGaussian(loc, scale, tau, delta).sample((n,))
    r = z[:, :2].log() - z[:, 2:].log()
    se = (scale / tau) / math.sqrt(n)
    assert ((r.mean(0) - (loc / tau - math.log(delta))).abs() < 4 * se).all()
    assert ((r.std(0) - scale / tau).abs() < 4 * (scale / tau) / math.sqrt(2 * n)).all()
    # and for the logistic-normal, r_1 = y_1 - y_3 has variance s_1^2 + s_3^2
    lloc, lscale = torch.tensor([0.3, 0.0, -0.2]), torch.tensor([0.4, 0.9, 0.6])
    z = LogisticNormalSoftmax(lloc, lscale).sample((n,))
    r1 = (z[:, 0] / z[:, 2]).log()
    sd = math.sqrt(0.4**2 + 0.6**2)
    assert abs(r1.mean().item() - 0.5) < 4 * sd / math.sqrt(n)
    assert abs(r1.std().item() - sd) < 4 * sd / math.sqrt(2 * n)


def test_finite_for_extreme_parameters_float32():
    loc = torch.tensor([[-30.0, 30.0, 0.0], [30.0, 30.0, 30.0]], requires_grad=True)
    for tau in (0.01, 1.0, 10.0):
        d = InvertibleGaussian(loc, torch.full((2, 3), 5.0), tau)
        z = d.rsample((8,))
        lp = d.log_prob(z)
        assert torch.isfinite(z).all() and torch.isfinite(lp).all()
        assert torch.autograd.grad((z[..., 0] + lp).sum(), loc)[0].isfinite().all()
    lloc = torch.tensor([-30.0, 30.0, 0.0, 5.0], requires_grad=True)
    d = LogisticNormalSoftmax(lloc, torch.tensor([1e-4, 30.0, 1.0, 0.1]))
    z = d.rsample((8,))
    lp = d.log_prob(z)
    assert torch.isfinite(z).all() and torch.isfinite(lp).all()
    g = torch.autograd.grad((z[..., 0] + lp).sum(), lloc)[0]
    assert torch.isfinite(g).all()


def test_standard_prior():
    p = InvertibleGaussian.standard_prior(10, 0.5, batch_shape=(20,), dtype=torch.float64)
    assert p.batch_shape == (20,) and p.event_shape == (10,) and p.loc.dtype == torch.float64
    assert (p.loc == 0).all() and (p.scale == 1).all()
    with pytest.raises(ValueError):
        InvertibleGaussian.standard_prior(1, 0.5)


# ----------------------------------------------------------------------------- KL
def test_igr_kl_is_the_gaussian_kl():
    p, q = igr(tau=0.3, delta=2.0), igr(tau=0.3, delta=2.0)
    expected = kl_divergence(Normal(p.loc, p.scale), Normal(q.loc, q.scale)).sum(-1)
    assert torch.allclose(kl_divergence(p, q), expected)
    # the registered KL agrees with a Monte-Carlo estimate on the simplex (4 standard errors)
    torch.manual_seed(3)
    p1 = InvertibleGaussian(torch.tensor([0.3, -0.5]), torch.tensor([0.7, 1.2]), 0.4)
    q1 = InvertibleGaussian(torch.tensor([-0.2, 0.1]), torch.tensor([1.0, 0.8]), 0.4)
    x = p1.sample((20000,))
    ratio = p1.log_prob(x) - q1.log_prob(x)
    assert abs(ratio.mean() - kl_divergence(p1, q1)) < 4 * ratio.std() / math.sqrt(20000)


def _exact_gaussian_kl(p, q) -> float:
    """KL of the two laws' log-ratio Gaussians in 50-digit arithmetic (dense matrices)."""
    import mpmath as mp

    def moments(d):
        g = d.log_ratio_distribution()
        return mp.matrix(g.loc.double().tolist()), mp.matrix(g.covariance_matrix.double().tolist())

    with mp.workdps(50):
        (m1, s1), (m2, s2) = moments(p), moments(q)
        inv, n = s2 ** -1, len(m1)
        delta = m2 - m1
        value = (sum((inv * s1)[i, i] for i in range(n)) + (delta.T * inv * delta)[0] - n
                 + mp.log(mp.det(s2)) - mp.log(mp.det(s1)))
        return float(value / 2)


def _kl_cases(dtype):
    scales = torch.tensor([1e-3, 1e-2, 0.1, 1.0, 10.0], dtype=dtype)
    loc = torch.tensor([0.0, 1.0, -1.0, 2.0, 0.5], dtype=dtype)
    ln_ = lambda m, s: LogisticNormalSoftmax(m, s)
    igr_ = lambda m, s, t, d=1.0: InvertibleGaussian(m, s, t, delta=d)
    return [
        (ln_(loc, scales), ln_(loc + 0.01, scales * 1.01)),            # nearly equal: KL ~ 4e-4
        (ln_(loc, scales), ln_(0.5 * loc + 0.1, 1.3 * scales)),
        (ln_(loc, scales), ln_(loc, scales.flip(0))),
        (igr_(loc[:4], scales[:4], 0.5), ln_(loc, scales)),
        (ln_(loc, scales), igr_(loc[:4], scales[:4], 0.5)),
        (igr_(loc[:4], scales[:4], 0.5), igr_(loc[:4] + 1, scales[:4].flip(0), 2.0, 3.0)),
        (igr_(loc[:4], scales[:4], 0.3), igr_(loc[:4], scales[:4], 0.3, 2.0)),
    ]


def test_simplex_kls_are_exact_in_float32_with_scales_far_apart():
    # KL(LN || LN) in float32 returned -10 or 11.7 nats off for scales 1e-3 ... 10, and the
    # KLs between IGR and LN raised LinAlgError (a dense Cholesky); IGR || IGR raised for
    # different tau or delta although the log-ratio Gaussians give it exactly.
    for (p, q), (p64, q64) in zip(_kl_cases(torch.float32), _kl_cases(torch.float64)):
        want = _exact_gaussian_kl(p64, q64)
        got32, got64 = float(kl_divergence(p, q)), float(kl_divergence(p64, q64))
        assert got64 == pytest.approx(want, rel=1e-9, abs=1e-12)
        assert got32 == pytest.approx(want, rel=1e-5, abs=1e-5), (type(p).__name__, type(q).__name__)


def test_igr_kl_across_temperatures_matches_monte_carlo():
    torch.manual_seed(5)
    p = InvertibleGaussian(torch.tensor([0.3, -0.5], dtype=torch.float64),
                           torch.tensor([0.7, 1.2], dtype=torch.float64), 0.4)
    q = InvertibleGaussian(torch.tensor([-0.2, 0.1], dtype=torch.float64),
                           torch.tensor([1.0, 0.8], dtype=torch.float64), 0.9, delta=2.0)
    x = p.sample((20000,))
    ratio = p.log_prob(x) - q.log_prob(x)
    assert abs(ratio.mean() - kl_divergence(p, q)) < 4 * ratio.std() / math.sqrt(20000)


def test_logistic_normal_kl_is_the_log_ratio_gaussian_kl():
    p, q = ln(dtype=torch.float64), ln(dtype=torch.float64)
    cov = lambda d: torch.diag_embed(d.scale[..., :-1] ** 2) + (d.scale[..., -1] ** 2)[..., None, None]
    mvn = lambda d: MultivariateNormal(d.loc[..., :-1] - d.loc[..., -1:], cov(d))
    assert torch.allclose(kl_divergence(p, q), kl_divergence(mvn(p), mvn(q)))
    assert torch.allclose(kl_divergence(p, p), torch.zeros(2, 3, dtype=torch.float64), atol=1e-10)


def test_cross_kl_igr_and_logistic_normal():
    # IGR is a logistic-normal with diagonal log-ratio covariance: KL(IGR || LN) by Monte Carlo
    torch.manual_seed(4)
    p = InvertibleGaussian(torch.tensor([0.3, -0.5], dtype=torch.float64),
                           torch.tensor([0.7, 1.2], dtype=torch.float64), 0.8)
    q = LogisticNormalSoftmax(torch.tensor([0.1, -0.4, 0.0], dtype=torch.float64),
                              torch.tensor([0.6, 0.9, 0.7], dtype=torch.float64))
    for a, b in ((p, q), (q, p)):
        x = a.sample((20000,))
        ratio = a.log_prob(x) - b.log_prob(x)
        assert abs(ratio.mean() - kl_divergence(a, b)) < 4 * ratio.std() / math.sqrt(20000)
