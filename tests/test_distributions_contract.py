"""The contract of METHODS.md section 0, checked for every registry method that has a builder.

Parametrised over ``relaxcli.methods.METHODS``, so every future method is picked up without
editing this file. Parameters follow the registry's ``raw`` convention: ``raw[..., :P]`` with
``P = method.params.size(K)`` numbers per latent variable (for the Bernoulli family the last dimension
holds the units, one number each).
"""

import pytest
import torch

from relaxcli.methods import METHODS

BUILDABLE = [name for name, m in METHODS.items() if m.relaxed is not None]
K = 5  # categories (or Bernoulli units)


def raw_like(method, batch, fill=None, dtype=torch.float32, device=None):
    """Raw parameters of shape batch + (params.size(K),) (Bernoulli family: batch + (K units,))."""
    width = K if method.family == "bernoulli" else method.params.size(K)
    shape = tuple(batch) + (width,)
    if fill is None:
        return torch.randn(shape, dtype=dtype, device=device)
    return torch.full(shape, fill, dtype=dtype, device=device)


def build(name, raw, tau=None):
    m = METHODS[name]
    # every temperature-like option follows tau, so the extremes are tested for all of them
    opts = {k: tau for k in m.settings if k.startswith("tau_")} if tau is not None else {}
    return m.build(raw, tau, **opts)


def test_every_buildable_method_is_checked():
    assert len(BUILDABLE) >= 13
    assert {"invertible-gaussian", "logistic-normal", "gumbel-softmax", "relaxed-bernoulli"} <= set(BUILDABLE)


@pytest.mark.parametrize("name", BUILDABLE)
def test_rsample_and_sample_shapes(name):
    d = build(name, raw_like(METHODS[name], (2, 3)))
    assert tuple(d.batch_shape)[:2] == (2, 3) or tuple(d.batch_shape + d.event_shape)[:2] == (2, 3)
    for sample_shape in [(), (4,), (2, 3)]:
        expected = torch.Size(sample_shape) + d.batch_shape + d.event_shape
        assert d.rsample(torch.Size(sample_shape)).shape == expected
        assert d.sample(torch.Size(sample_shape)).shape == expected
    assert d.has_rsample


@pytest.mark.parametrize("name", BUILDABLE)
def test_expand(name):
    d = build(name, raw_like(METHODS[name], (3,)))
    e = d.expand(torch.Size([4]) + d.batch_shape)
    assert e.batch_shape == (4,) + d.batch_shape and e.event_shape == d.event_shape
    assert e.rsample((2,)).shape == (2, 4) + d.batch_shape + d.event_shape


@pytest.mark.parametrize("name", BUILDABLE)
def test_independent_noise_across_batch_and_samples(name):
    # identical parameters in all 64 batch elements: the samples must not all be equal
    m = METHODS[name]
    raw = raw_like(m, (1,)).expand((64,) + raw_like(m, (1,)).shape[1:])
    d = build(name, raw)
    z = d.rsample((2,))
    assert not torch.equal(z[:, :1].expand_as(z), z), "one noise draw shared across the batch"
    assert not torch.equal(z[:1].expand_as(z), z), "one noise draw shared across sample_shape"


@pytest.mark.parametrize("name", BUILDABLE)
def test_float64_follows_parameters(name):
    m = METHODS[name]
    d = build(name, raw_like(m, (2,), dtype=torch.float64))
    z = d.rsample((3,))
    assert z.dtype == torch.float64
    if m.exact_log_prob:
        assert d.log_prob(z).dtype == torch.float64


@pytest.mark.parametrize("tau", [0.01, 1.0, 10.0])
@pytest.mark.parametrize("name", BUILDABLE)
def test_finite_samples_and_gradients_float32(name, tau):
    m = METHODS[name]
    rows = [raw_like(m, (1,), fill=-30.0), raw_like(m, (1,), fill=30.0), raw_like(m, (4,)) * 30,
            (torch.rand_like(raw_like(m, (4,))) * 60 - 30)]
    rows.append(torch.where(torch.arange(rows[0].shape[-1]) % 2 == 0, 30.0, -30.0).expand_as(rows[0]))
    raw = torch.cat(rows).clamp(-30, 30).requires_grad_(True)
    d = build(name, raw, tau)
    z = d.rsample((3,))
    assert torch.isfinite(z).all(), f"non-finite sample at tau={tau}"
    weights = torch.randn_like(z)
    (grad,) = torch.autograd.grad((z * weights).sum(), raw, allow_unused=True)
    assert grad is not None, "no gradient reaches the raw parameters"
    assert torch.isfinite(grad).all(), f"non-finite gradient at tau={tau}"


@pytest.mark.parametrize("name", BUILDABLE)
def test_log_prob_shape_where_exact(name):
    m = METHODS[name]
    if not m.exact_log_prob:
        pytest.skip(f"{name}: the registry says its log_prob is not exact (NotImplementedError allowed)")
    d = build(name, raw_like(m, (2, 3)))
    for sample_shape in [(), (4,)]:
        lp = d.log_prob(d.sample(torch.Size(sample_shape)))
        assert lp.shape == torch.Size(sample_shape) + d.batch_shape
        assert torch.isfinite(lp).all(), "log_prob of the distribution's own samples is not finite"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
@pytest.mark.parametrize("name", BUILDABLE)
def test_cuda_follows_parameters(name):
    m = METHODS[name]
    raw = raw_like(m, (2,), device="cuda")
    d = build(name, raw)
    z = d.rsample((3,))
    assert z.device.type == "cuda"
    if m.exact_log_prob:
        assert d.log_prob(z).device.type == "cuda"
