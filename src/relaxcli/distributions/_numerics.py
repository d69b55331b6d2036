"""Shared numerics for every distribution family: noise, straight-through, stable log-space maps.

Everything here is a small pure function named after the math it computes, so that each
distribution class reads like its formula. Noise is always drawn with the dtype and device of
the tensor it perturbs and with one independent draw per output element.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

_EMPTY = torch.Size()  # default sample_shape (a module singleton, not a call)


def tiny(x: Tensor) -> float:
    """Smallest positive normal number of ``x``'s dtype (keeps uniforms away from 0)."""
    return torch.finfo(x.dtype).tiny


def eps(x: Tensor) -> float:
    """Machine epsilon of ``x``'s dtype (keeps uniforms away from 1)."""
    return torch.finfo(x.dtype).eps


def uniform_open(shape: torch.Size, like: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """U ~ Uniform(0, 1) strictly inside (0, 1), shape ``shape``, dtype/device of ``like``.

    ``generator``: an optional ``torch.Generator`` (on ``like``'s device) for reproducible noise.
    """
    u = torch.rand(shape, dtype=like.dtype, device=like.device, generator=generator)
    return u.clamp(min=tiny(like), max=1.0 - eps(like))


def gumbel_noise(shape: torch.Size, like: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """G ~ Gumbel(0, 1) = -log(-log U), one independent draw per element."""
    return -torch.log(-torch.log(uniform_open(shape, like, generator)))


def logistic_noise(shape: torch.Size, like: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """L ~ Logistic(0, 1) = logit(U) = log U - log(1 - U), the difference of two Gumbels."""
    u = uniform_open(shape, like, generator)
    return torch.log(u) - torch.log1p(-u)


def normal_noise(shape: torch.Size, like: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """eps ~ N(0, 1), one independent draw per element, dtype/device of ``like``."""
    return torch.randn(shape, dtype=like.dtype, device=like.device, generator=generator)


def clamped_logit(value: Tensor) -> Tensor:
    """logit(value) with value clamped to [tiny, 1 - eps], as torch's SigmoidTransform inverse.

    A float sample of a density on the open interval (0, 1) can round to exactly 0 or 1; the
    clamp makes ``log_prob`` finite there (it is the density at the nearest interior float).
    """
    fi = torch.finfo(value.dtype)
    v = value.clamp(min=fi.tiny, max=1.0 - fi.eps)
    return torch.log(v) - torch.log1p(-v)


class SampleWithGenerator:
    """``sample(sample_shape, generator=None)`` = ``rsample`` without gradient, passing the
    generator on (torch's own ``Distribution.sample`` takes no generator)."""

    def sample(self, sample_shape: torch.Size = _EMPTY, generator: torch.Generator | None = None) -> Tensor:
        with torch.no_grad():
            return self.rsample(sample_shape, generator=generator)


def straight_through(hard: Tensor, soft: Tensor) -> Tensor:
    """Forward value ``hard`` exactly, gradient of ``soft``: hard + (soft - sg(soft)).

    Written with the parenthesis so the forward value is exactly 0 or 1 in float32
    (``hard + soft - sg(soft)`` rounds to 1 +/- 1 ulp).
    """
    return hard + (soft - soft.detach())


def one_hot_argmax(scores: Tensor) -> Tensor:
    """one_hot(argmax_k scores_k) over the last dimension, in the dtype/device of ``scores``.

    The Gumbel-max forward value: take the argmax of the perturbed scores themselves, not of a
    softmax of them (a softmax can tie at 0 or 1 after underflow).
    """
    return torch.zeros_like(scores).scatter_(-1, scores.argmax(dim=-1, keepdim=True), 1.0)


def renormalise(y: Tensor) -> Tensor:
    """y / sum(y) over the last dimension, for a softmax output ``y``.

    A float32 softmax over many categories sums to 1 only within a few 1e-6 (its normaliser is
    accumulated in float32), outside ``constraints.simplex``'s tolerance of 1e-6 at K = 10000, so
    ``log_prob(rsample())`` raised under validation. Dividing once more by the (pairwise) sum
    brings the row sum within a few ulps. In exact arithmetic this is the identity on the
    simplex, and so is its gradient (the softmax's Jacobian has zero column sums).
    """
    return y / y.sum(-1, keepdim=True)


def log_sigmoid(x: Tensor) -> Tensor:
    """log sigma(x), stable for large |x|."""
    return torch.nn.functional.logsigmoid(x)


def log1m_sigmoid(x: Tensor) -> Tensor:
    """log(1 - sigma(x)) = log sigma(-x), stable for large |x|."""
    return torch.nn.functional.logsigmoid(-x)


def log_ndtr(x: Tensor) -> Tensor:
    """log Phi(x), the log standard normal CDF, stable in both tails."""
    return torch.special.log_ndtr(x)


def logit_ndtr(x: Tensor) -> Tensor:
    """logit Phi(x) = log Phi(x) - log Phi(-x), stable in both tails (copula gates).

    logit Phi is odd, so with a = |x|/sqrt 2 and q = Phi(-|x|) = erfc(a)/2 (the small side):
    logit Phi(x) = sign(x) (log1p(-q) - log q). This costs one erfc instead of two log_ndtr
    calls (each ~10x an erfc on CPU). Where erfc(a) would leave the normal floats (|x| beyond
    ~11.7 in float32, ~36 in float64; essentially never for copula noise) log q comes from the
    asymptotic series erfc(a) = e^{-a^2}/(a sqrt pi) (1 - 1/(2a^2) + 3/(4a^4) - 15/(8a^6) +
    105/(16a^8)), accurate to float precision there; that branch is only computed when needed.
    Agrees with log_ndtr(x) - log_ndtr(-x) to ~1e-13 relative in float64, gradient included.
    """
    if x.dtype not in (torch.float32, torch.float64):
        return torch.special.log_ndtr(x) - torch.special.log_ndtr(-x)
    cut = math.sqrt(-math.log(torch.finfo(x.dtype).tiny)) - 1.0  # erfc(cut) is a normal float
    sign = torch.ones_like(x).copysign_(x)  # +-1 without a gradient; +1 at x = 0
    a = (x * sign) * (1.0 / math.sqrt(2.0))  # |x|/sqrt 2, with the one-sided gradient at 0
    q = 0.5 * torch.erfc(a.clamp(max=cut))
    f = torch.log1p(-q) - torch.log(q)
    far = a > cut
    if bool(far.any()):  # rare: blend in the asymptotic tail (both branches finite, no NaN grads)
        t = a.clamp(min=cut)
        t2 = t * t
        r = 0.5 / t2
        series = 1.0 + r * (-1.0 + r * (3.0 + r * (-15.0 + r * 105.0)))
        f_tail = t2 + torch.log(t * (2.0 * math.sqrt(math.pi)) / series)  # -log q; log1p(-q) = 0
        f = f + far.to(x.dtype) * (f_tail - f)
    return sign * f


def ndtri_sigmoid(w: Tensor) -> Tensor:
    """Phi^{-1}(sigma(w)), stable for every finite w.

    Uses the symmetry Phi^{-1}(sigma(w)) = -Phi^{-1}(sigma(-w)) so ndtri only sees the lower half
    (where sigma(-|w|) is accurate), and, where sigma(-|w|) would underflow, solves
    log Phi(z) = log sigma(-|w|) from the asymptotic start z^2 = -2l - log(-2l) - log(2 pi)
    with two Newton steps in log space. The branches see safe inputs only, so torch.where
    leaks no NaN into gradients. Used by the copula gates and by the gaussian-bernoulli registry
    entry (a clamp of sigmoid(w) at [1e-6, 1 - 1e-6] zeroed the gradient for |w| > 13.8).
    """
    sign = torch.ones_like(w).copysign_(w)  # +-1 without a gradient; +1 at w = 0
    # -|w|, with the one-sided gradient at 0; log sigma(-|w|) <= log 1/2
    ell = torch.nn.functional.logsigmoid(-(w * sign))
    cut = -60.0  # e^-60 ~ 1e-26: a normal float32, ndtri is accurate there
    tail = ell < cut
    z_mid = torch.special.ndtri(torch.exp(torch.where(tail, torch.full_like(ell, cut), ell)))
    lt = torch.where(tail, ell, torch.full_like(ell, cut))
    z = -torch.sqrt(-2.0 * lt - torch.log(-2.0 * lt) - math.log(2.0 * math.pi))
    for _ in range(2):
        log_phi = -0.5 * z * z - 0.5 * math.log(2.0 * math.pi)
        lnd = torch.special.log_ndtr(z)
        z = z - (lnd - lt) * torch.exp(lnd - log_phi)
    z_low = torch.where(tail, z, z_mid)
    return -sign * z_low


def normal_log_density(x: Tensor, loc: Tensor, scale: Tensor) -> Tensor:
    """log N(x; loc, scale^2), elementwise."""
    z = (x - loc) / scale
    return -0.5 * z * z - torch.log(scale) - 0.5 * math.log(2 * math.pi)


def as_tensor_pair(a, b) -> tuple[Tensor, Tensor]:
    """Turn Python floats / tensors into tensors of one common dtype and device.

    Floats adopt the dtype/device of the tensor argument (or torch's default dtype).
    """
    like = a if isinstance(a, Tensor) else b if isinstance(b, Tensor) else None
    if like is None:
        dtype, device = torch.get_default_dtype(), None
    else:
        dtype, device = like.dtype, like.device
        if not dtype.is_floating_point:
            dtype = torch.get_default_dtype()
    ta = torch.as_tensor(a, dtype=dtype, device=device)
    tb = torch.as_tensor(b, dtype=dtype, device=device)
    return ta, tb


def as_float_tensors(*values) -> tuple[Tensor, ...]:
    """Turn Python numbers / tensors into tensors of one promoted floating dtype and one device.

    The dtype is the promotion of the floating tensor arguments (float64 wins over float32);
    with no floating tensor among them it is torch's default dtype. The device is the first
    non-CPU tensor argument's, else the first tensor's. Example:
    ``as_float_tensors(0.5, torch.zeros(3, dtype=torch.float64))`` gives a float64 scalar and the float64 vector.
    """
    tensors = [v for v in values if isinstance(v, Tensor)]
    dtype = None
    for t in tensors:
        if t.dtype.is_floating_point:
            dtype = t.dtype if dtype is None else torch.promote_types(dtype, t.dtype)
    dtype = dtype or torch.get_default_dtype()
    # An accelerator tensor among the arguments decides the device (a CPU scalar may ride along).
    devices = [t.device for t in tensors if t.device.type != "cpu"] or [t.device for t in tensors]
    device = devices[0] if devices else None
    return tuple(torch.as_tensor(v, dtype=dtype, device=device) for v in values)


def log1mexp(x: Tensor) -> Tensor:
    """log(1 - e^x) for x <= 0, accurate on both sides of -log 2 (Maechler 2012).

    Uses log(-expm1(x)) near 0 and log1p(-e^x) far from it. Returns -inf at x = 0. Each branch
    sees only inputs on its own side, so the branch not taken never puts NaN into a gradient.
    """
    near = x > -0.6931471805599453
    half = torch.full_like(x, -0.6931471805599453)
    return torch.where(near, torch.log(-torch.expm1(torch.where(near, x, half))),
                       torch.log1p(-torch.exp(torch.where(near, half, x))))


def conditional_gumbel(log_p: Tensor, b: Tensor, v: Tensor) -> Tensor:
    """z ~ p(log p + G | argmax = b) from uniforms ``v``: the conditional Gumbel construction.

    ``log_p`` must be *normalised* log-probabilities (..., K) and ``b`` one-hot (broadcasting);
    with E_i = -log v_i ~ Exp(1): z_b = -log E_b (the max of Gumbels with locations log p_i is
    Gumbel(log sum p) = Gumbel(0)), and z_i = -log(E_i / p_i + E_b) for i != b (Gumbel(log p_i)
    truncated below z_b), in log space. Differentiable in ``log_p`` for fixed ``v`` (REBAR's
    reparameterised z~); Gumbel-Rao holds the noise z - log p fixed instead. Tucker et al. 2017,
    appendix; Paulus et al. 2021, section 3.
    """
    shape = torch.broadcast_shapes(log_p.shape, b.shape, v.shape)
    log_neg_log_v = torch.log(-torch.log(v))                   # log E_i, E_i ~ Exp(1)
    top = (log_neg_log_v * b).sum(-1, keepdim=True)            # log E_b
    others = -torch.logaddexp(log_neg_log_v - log_p, top.expand(shape))
    return torch.where(b > 0.5, -top.expand(shape), others)
