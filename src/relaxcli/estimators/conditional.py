"""Relaxed-sample pairs for REBAR and RELAX: (b, z, z_tilde) with z_tilde ~ p(z | b).

REBAR (Tucker et al. 2017, arXiv 1703.07370, appendix) and RELAX (Grathwohl et al. 2018,
arXiv 1711.00123, appendix B) need three things per discrete variable:

* ``z``: the reparameterised pre-relaxation sample (a function of the logits and fresh noise);
* ``b = H(z)``: the discrete sample it hard-thresholds to (exactly distributed as the
  Bernoulli / categorical law of the logits);
* ``z_tilde``: a second, *conditional* reparameterised sample z_tilde ~ p(z | b), drawn with
  independent noise ``v`` and differentiable in the logits for fixed ``v`` and ``b``.

Marginalising ``b`` out of p(z | b) p(b) gives back p(z), so ``z_tilde`` pooled over ``b`` has the
same law as ``z`` (the tests check exactly this), and ``H(z_tilde) == b`` always.

Bernoulli (logits a, theta = sigma(a)):
    z = a + L,  L ~ Logistic(0, 1)  (pre-sigmoid; the Concrete sample is sigma(z / tau));
    b = 1{z > 0};
    z_tilde | b=1 = log(1 + v / ((1 - v)(1 - theta))) = softplus(logit v - log(1 - theta)),
    z_tilde | b=0 = -log(1 + v / ((1 - v) theta))    = -softplus(logit v - log theta),
    v ~ Uniform(0, 1). (Inverse CDF of Logistic(a, 1) truncated to z > 0 or z <= 0.)

Categorical (logits l, normalised first: log p = log_softmax(l)):
    z = log p + G,  G ~ Gumbel(0, 1) per category;  b = one_hot(argmax z);
    z_tilde_b = -log(-log v_b),
    z_tilde_i = -log(-log(v_i) / p_i - log v_b)      (i != b),  v ~ Uniform(0, 1)^K.
    The top coordinate is the max of the Gumbels, which is Gumbel(log sum_i p_i) = Gumbel(0)
    only because the log-probabilities are normalised; every other coordinate is a Gumbel with
    location log p_i truncated below z_tilde_b.
    Erratum (relaxit): feeding unnormalised logits here shifts the top coordinate and makes
    REBAR/RELAX biased; we always apply ``log_softmax`` first.

All computations are in log space (``softplus``, ``logaddexp``), so nothing overflows for
logits in [-30, 30]. Noise is independent per element and follows the logits' dtype/device.

Example:
    >>> import torch
    >>> b, z, zt = bernoulli_relaxed_pair(torch.zeros(4), sample_shape=(2,))
    >>> b.shape, bool(((zt > 0).float() == b).all())
    (torch.Size([2, 4]), True)
    >>> b, z, zt = categorical_relaxed_pair(torch.randn(3, 5))
    >>> bool((zt.argmax(-1) == b.argmax(-1)).all())
    True
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F

from relaxcli.distributions._numerics import (
    conditional_gumbel,
    gumbel_noise,
    logistic_noise,
    uniform_open,
)

__all__ = [
    "bernoulli_conditional",
    "bernoulli_relaxed_pair",
    "categorical_conditional",
    "categorical_relaxed_pair",
]


def _shape(sample_shape, logits: Tensor) -> torch.Size:
    return torch.Size(sample_shape) + logits.shape


def bernoulli_conditional(logits: Tensor, b: Tensor, v: Tensor | None = None) -> Tensor:
    """z_tilde ~ p(z | b) for z = logits + L, by the inverse conditional CDF (see module docs).

    ``b`` (0/1 floats) must broadcast against ``logits``; ``v`` are the uniforms (drawn fresh
    when None, shape of ``b`` broadcast with ``logits``). Differentiable in ``logits``.
    """
    shape = torch.broadcast_shapes(logits.shape, b.shape)
    if v is None:
        v = uniform_open(shape, logits)
    logit_v = torch.log(v) - torch.log1p(-v)
    # log(1 - theta) = logsigmoid(-a) and log(theta) = logsigmoid(a), both stable.
    upper = F.softplus(logit_v - F.logsigmoid(-logits))      # z > 0 branch (b = 1)
    lower = -F.softplus(logit_v - F.logsigmoid(logits))      # z <= 0 branch (b = 0)
    return torch.where(b > 0.5, upper, lower)


def bernoulli_relaxed_pair(logits: Tensor, sample_shape=()) -> tuple[Tensor, Tensor, Tensor]:
    """(b, z, z_tilde) for Bernoulli(sigmoid(logits)), shape ``sample_shape + logits.shape``.

    z = logits + L (pre-sigmoid, L ~ Logistic(0,1)), b = 1{z > 0} as a float (no gradient),
    z_tilde ~ p(z | b) with independent noise (Tucker et al. 2017, appendix). ``z`` and
    ``z_tilde`` are differentiable in ``logits``.
    """
    shape = _shape(sample_shape, logits)
    z = logits + logistic_noise(shape, logits)
    b = (z > 0).to(logits.dtype).detach()
    z_tilde = bernoulli_conditional(logits, b)
    return b, z, z_tilde


def categorical_conditional(logits: Tensor, b: Tensor, v: Tensor | None = None) -> Tensor:
    """z_tilde ~ p(z | b) for z = log_softmax(logits) + G, given one-hot ``b`` (see module docs).

    ``b`` is one-hot over the last dimension and broadcasts against ``logits``; ``v`` are the
    uniforms (fresh when None). Differentiable in ``logits``.
    """
    log_p = torch.log_softmax(logits, dim=-1)  # normalise: the construction needs sum p = 1
    if v is None:
        v = uniform_open(torch.broadcast_shapes(log_p.shape, b.shape), logits)
    return conditional_gumbel(log_p, b, v)


def categorical_relaxed_pair(logits: Tensor, sample_shape=()) -> tuple[Tensor, Tensor, Tensor]:
    """(b, z, z_tilde) for Categorical(softmax(logits)) over the last dimension.

    The logits are normalised first (log p = log_softmax(logits)); z = log p + G,
    b = one_hot(argmax z) as floats (no gradient), z_tilde ~ p(z | b) by the conditional Gumbel
    construction (Tucker et al. 2017 appendix; Grathwohl et al. 2018 appendix B). Shapes:
    ``sample_shape + logits.shape`` for all three.
    """
    shape = _shape(sample_shape, logits)
    log_p = torch.log_softmax(logits, dim=-1)
    z = log_p + gumbel_noise(shape, logits)
    b = F.one_hot(z.argmax(-1), logits.shape[-1]).to(logits.dtype).detach()
    z_tilde = categorical_conditional(logits, b)
    return b, z, z_tilde
