"""Subset family (METHODS.md section 2): relaxed k-hot vectors from one Gumbel perturbation.

GumbelSoftmaxTopK perturbs the normalised logits once, kappa = log p + G, and relaxes the top-k
indicator of kappa. By the Gumbel-top-k theorem (Kool, van Hoof, Welling 2019, arXiv 1903.06059)
the k largest kappa are k draws without replacement from Categorical(p), so the hard sample's law
and its exact log-mass are known.
"""

from __future__ import annotations

import itertools
import math
from typing import ClassVar, NamedTuple

import torch
from torch import Tensor
from torch.distributions import constraints

from relaxcli.distributions._hard import HardSwitch
from relaxcli.distributions._numerics import (
    as_float_tensors,
    gumbel_noise,
    straight_through,
)
from relaxcli.distributions.categorical import _categorical_params, _CategoricalParams

__all__ = ["MAX_ENUMERATED_SUBSETS", "MAX_EXACT_K", "GumbelSoftmaxTopK", "KHot", "ScaledSimplex",
           "sequential_relaxation_warning"]

_EMPTY = torch.Size()  # default sample_shape (a module singleton, not a call)

RELAXATIONS = ("sequential", "threshold")
#: Largest k for which log_prob is computed exactly (a dynamic programme over the 2^k subsets).
MAX_EXACT_K = 12
#: Most subsets C(K, k) that enumerate_support / enumerate_log_prob will list (memory guard).
MAX_ENUMERATED_SUBSETS = 1_000_000


class KHot(constraints.Constraint):
    """Vectors of 0s and 1s with exactly k ones (a k-subset of the K categories)."""

    is_discrete = True
    event_dim = 1

    def __init__(self, k: int):
        self.k = k
        super().__init__()

    def check(self, value: Tensor) -> Tensor:
        binary = ((value == 0) | (value == 1)).all(-1)
        return binary & (value.sum(-1) == self.k)

    def __repr__(self):
        return f"KHot(k={self.k})"


class ScaledSimplex(constraints.Constraint):
    """Nonnegative vectors summing to k (up to 1e-4 relative), entries <= ``upper`` if given."""

    event_dim = 1

    def __init__(self, k: int, upper: float | None = None):
        self.k, self.upper = k, upper
        super().__init__()

    def check(self, value: Tensor) -> Tensor:
        ok = (value >= 0).all(-1) & ((value.sum(-1) - self.k).abs() < 1e-4 * self.k)
        if self.upper is not None:
            ok = ok & (value <= self.upper).all(-1)
        return ok

    def __repr__(self):
        return f"ScaledSimplex(k={self.k}, upper={self.upper})"


class GumbelSoftmaxTopK(HardSwitch, _CategoricalParams):
    r"""Relaxed k-subset sampling with one Gumbel perturbation (Kool et al. 2019, arXiv 1903.06059;
    relaxations: Xie & Ermon 2019, arXiv 1901.10517; Amos, Koltun, Kolter 2019, arXiv 1905.13328).

    kappa = log p + G, G_k ~ Gumbel(0, 1) i.i.d.; the exact sample is the top-k indicator of kappa.
    Relaxations (``relaxation=``):

    * ``"sequential"`` (Xie & Ermon): w_1 = kappa, a_j = softmax(w_j / tau),
      w_{j+1} = w_j + log(1 - a_j); sample = sum_{j<=k} a_j (k vectorised softmax steps, the
      mask computed exactly in log space, see :func:`sequential_topk_relaxation`). Entries are
      >= 0 and sum to k (up to rounding), but the relaxation itself (in exact arithmetic, not
      only in floats) does not keep every entry <= 1 nor its mean at :meth:`inclusion_probs`:

      - at step j+1 the winner m of step j, with a_{j,m} = 1 - eps, keeps a share of about
        1 / (1 + eps^(1 - 1/tau)) of the next step. For tau < 1 that is ~eps^(1/tau - 1), which
        vanishes as its lead grows; at tau = 1 it is 1/2 whatever the lead and for tau > 1 it
        tends to 1, so a dominant item is counted again (logits [10, 0, 0, 0], k = 2: mean
        entries [1.50, 0.17, 0.17, 0.17] at tau = 1, [1.83, 0.06, 0.06, 0.06] at tau = 2). Use
        tau < 1 (the ``relax`` commands warn at tau >= 1 and for k >= 3).
      - for k >= 3, a winner leading the runner-up by D (in kappa) is pushed only
        (1/tau - 1) D below it, so when D is small against the runner-up's lead over the rest
        it wins again at step j+2: kappa [15.5, 14.1, -5.8, ...], k = 3 gives
        [1.94, 1.06, 0.00, ...] at tau = 0.5 and [2.00, 1.00, 0.00, ...] at tau = 0.1 (the
        exact top-3 indicator is [1, 1, 1, ...]).
      - a runner-up that received some mass at step j is barely masked (log(1 - a_j) is near 0
        for it) and then wins nearly a whole unit at step j+1 on top of it (entries near 1.09
        for kappa gap 0.66, tau = 0.3).

      With one dominant item and ties among the rest (logits [20, 0, 0, 0] or
      [30, -30, -30, -30]), or k <= 2 at small tau, the relaxed mean matches
      :meth:`inclusion_probs` within Monte-Carlo error at any tau < 1 (tested).
    * ``"threshold"`` (entropy-regularised top-k as in Amos et al.'s LML layer):
      s_i = sigmoid((kappa_i - t) / tau) with t solved by bisection so that sum_i s_i = k; the
      gradient of t is the implicit-function one, dt/dkappa_j = s_j(1-s_j) / sum_i s_i(1-s_i) and
      dt/dtau = -sum_i c_i (kappa_i - t)/tau with c = that same weight vector. Entries lie in
      (0, 1) (numerically in [0, 1]), the order of kappa is kept, and tau -> 0 gives the exact
      top-k indicator.

    ``hard=True``: forward the exact top-k indicator of kappa, gradient of the chosen relaxation
    (straight-through ``hard + (soft - sg(soft))``).

    ``log_prob(k-hot value)`` (hard only) is the exact log-probability that k draws without
    replacement from Categorical(p) give that set:
    log sum over the k! orders of prod_j p_{i_j} / (1 - sum_{l<j} p_{i_l}), computed in log space
    by a dynamic programme over the 2^k sub-orders (same sum, k 2^k terms instead of k k!), exact
    for k <= MAX_EXACT_K = 12; larger k raises ``NotImplementedError``. Soft values raise
    ``NotImplementedError``: the relaxed k-hot vector has no closed-form density.

    All subsets at once (hard only): ``enumerate_support()`` lists the C(K, k) k-hot vectors
    (lexicographic order of ``itertools.combinations``), shape (C(K,k), *batch_shape, K), and
    ``enumerate_log_prob()`` equals ``log_prob(enumerate_support())``, shape (C(K,k), *batch_shape),
    computed by one dynamic programme over all subsets A of the K categories with |A| <= k that
    shares the sub-orders between subsets (sum_{c<=k} c C(K,c) terms, loops only over c):
    f({}) = 0, f(A) = logsumexp_{i in A} [f(A - i) - log(1 - p(A - i)) + log p_i],
    log(1 - p(B)) = logsumexp of log p outside B (no cancelling subtraction). For k = 2 this is
    the closed form log p_i + log p_j + log(1/(1 - p_i) + 1/(1 - p_j)). Exact KLs between subset
    laws are sums over it, e.g. KL(q || uniform) = sum_S q(S) log q(S) + log C(K, k).

    Erratum (relaxit): it fed probabilities in as logits and masked chosen entries with a large
    constant times a soft vector, which destroys the ordering and gives gradients of 1e17. Here the
    perturbation uses log p, and the sequential mask is the exact log(1 - a_j).

    Logits may be -inf (masked categories): those entries are 0 in every relaxation and in the
    hard sample (as long as at least k logits are finite) and get no gradient.

    Args:
        k: subset size, an integer with 1 <= k < K.
        temperature: tau > 0.
        probs / logits: shape (..., K).
        hard: straight-through exact top-k forward values.
        relaxation: "sequential" or "threshold".

    Example:
        >>> import torch
        >>> d = GumbelSoftmaxTopK(2, 0.5, logits=torch.zeros(5))
        >>> s = d.rsample((3,))
        >>> s.shape, bool(torch.allclose(s.sum(-1), torch.full((3,), 2.0)))
        (torch.Size([3, 5]), True)
        >>> h = GumbelSoftmaxTopK(2, 1.0, logits=torch.zeros(4), hard=True)
        >>> h.enumerate_support().shape, bool(torch.allclose(h.enumerate_log_prob().exp(), torch.full((6,), 1 / 6)))
        (torch.Size([6, 4]), True)
    """

    arg_constraints: ClassVar[dict[str, constraints.Constraint]] = {
        "temperature": constraints.positive,
        "probs": constraints.simplex,
        "logits": constraints.real_vector,
    }
    has_rsample = True

    def __init__(self, k: int, temperature, probs=None, logits=None, *, hard: bool = False,
                 relaxation: str = "sequential", validate_args=None):
        param = _categorical_params(probs, logits)
        temperature, param = as_float_tensors(temperature, param)
        num = param.shape[-1]
        if isinstance(k, bool) or not isinstance(k, int) and not (
                isinstance(k, float) and k.is_integer()):
            raise ValueError(f"Expected parameter k to be an integer with 1 <= k < K = {num}, but found {k!r}")
        k = int(k)
        if not 1 <= k < num:
            raise ValueError(f"Expected parameter k to satisfy 1 <= k < K = {num}, but found k = {k}")
        if relaxation not in RELAXATIONS:
            raise ValueError(f"Expected parameter relaxation to be one of {RELAXATIONS}, but found {relaxation!r}")
        self.k, self.temperature, self.hard, self.relaxation = k, temperature, bool(hard), relaxation
        self._set_params(param if probs is not None else None, param if probs is None else None)
        batch_shape = torch.broadcast_shapes(param.shape[:-1], temperature.shape)
        super().__init__(batch_shape, param.shape[-1:], validate_args=validate_args)

    @constraints.dependent_property(is_discrete=False, event_dim=1)
    def support(self):
        if self.hard:
            return KHot(self.k)
        return ScaledSimplex(self.k, upper=1.0 if self.relaxation == "threshold" else None)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(GumbelSoftmaxTopK, _instance)
        batch_shape = torch.Size(batch_shape)
        new.k, new.temperature, new.hard, new.relaxation = self.k, self.temperature, self.hard, self.relaxation
        self._expand_params(new, batch_shape)
        super(GumbelSoftmaxTopK, new).__init__(batch_shape, self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    # ------------------------------------------------------------------ sampling
    def perturbed_logits(self, sample_shape: torch.Size = _EMPTY, generator: torch.Generator | None = None) -> Tensor:
        """kappa = log p + G, one Gumbel draw per element of sample_shape + batch_shape + (K,)."""
        return self.logits + gumbel_noise(self._extended_shape(sample_shape), self.logits, generator)

    def relax(self, kappa: Tensor) -> Tensor:
        """The chosen relaxation of the top-k indicator of ``kappa``."""
        tau = self.temperature.unsqueeze(-1)
        if self.relaxation == "sequential":
            return sequential_topk_relaxation(kappa, tau, self.k)
        return threshold_topk_relaxation(kappa, tau, self.k)

    def rsample(self, sample_shape: torch.Size = _EMPTY, generator: torch.Generator | None = None) -> Tensor:
        kappa = self.perturbed_logits(sample_shape, generator)
        soft = self.relax(kappa)
        if not self.hard:
            return soft
        return straight_through(topk_indicator(kappa.detach(), self.k), soft)

    def sample(self, sample_shape: torch.Size = _EMPTY, generator: torch.Generator | None = None) -> Tensor:
        with torch.no_grad():
            if self.hard:  # the exact top-k indicator needs no relaxation
                return topk_indicator(self.perturbed_logits(sample_shape, generator), self.k)
            return self.rsample(sample_shape, generator=generator)

    # ------------------------------------------------------------------ log-mass
    def log_prob(self, value: Tensor) -> Tensor:
        if not self.hard:
            raise NotImplementedError(
                "GumbelSoftmaxTopK.log_prob of soft values: the relaxed k-hot vector is a nonlinear "
                "function of K Gumbels constrained to sum to k and has no closed-form density; use "
                "hard=True for the exact log-mass of the k-subset.")
        if self._validate_args:
            self._validate_sample(value)
        return subset_log_prob(self.logits, value, self.k)

    # ------------------------------------------------------------------ all subsets at once
    @property
    def has_enumerate_support(self) -> bool:  # the hard law is finite, the relaxed one is not
        return self.hard

    def _check_enumerable(self, what: str, hard_only: bool = True) -> int:
        if hard_only and not self.hard:
            raise NotImplementedError(
                f"GumbelSoftmaxTopK.{what} of soft values: the relaxed k-hot vectors fill a continuous "
                f"set; use hard=True to enumerate the C(K, k) subsets.")
        count = math.comb(self.num_categories, self.k)
        if count > MAX_ENUMERATED_SUBSETS:
            raise NotImplementedError(
                f"GumbelSoftmaxTopK.{what}: C({self.num_categories}, {self.k}) = {count} subsets is more "
                f"than the {MAX_ENUMERATED_SUBSETS} this enumerates.")
        return count

    def _subsets(self, what: str, hard_only: bool = True, expand: bool = True) -> Tensor:
        count = self._check_enumerable(what, hard_only)
        hot = _subset_lattice(self.num_categories, self.k, self._param.device)[-1].k_hot
        hot = hot.to(self._param.dtype).view(count, *(1,) * len(self.batch_shape), self.num_categories)
        return hot.expand(count, *self.batch_shape, self.num_categories) if expand else hot

    def _subsets_log_prob(self) -> Tensor:
        log_p = self.logits.expand(*self.batch_shape, self.num_categories)
        return all_subsets_log_prob(log_p, self.k).movedim(-1, 0)

    def enumerate_support(self, expand: bool = True) -> Tensor:
        """All C(K, k) k-hot vectors, (C(K,k), *batch_shape, K) (``expand=False``: batch dims 1)."""
        return self._subsets("enumerate_support", expand=expand)

    def enumerate_log_prob(self) -> Tensor:
        """``log_prob(enumerate_support())`` of every subset at once, (C(K,k), *batch_shape)."""
        self._check_enumerable("enumerate_log_prob")
        return self._subsets_log_prob()

    @property
    def mean(self) -> Tensor:
        """Hard: the inclusion probabilities (exact, by enumeration). Soft: no closed form."""
        if not self.hard:
            raise NotImplementedError(
                "GumbelSoftmaxTopK.mean of soft values has no closed form (see inclusion_probs() for "
                "the hard law's, which the soft mean approaches as tau -> 0)")
        return self.inclusion_probs()

    @property
    def variance(self) -> Tensor:
        incl = self.mean
        return incl * (1 - incl)

    def entropy(self) -> Tensor:
        """Hard: -sum_S q(S) log q(S) over the C(K, k) subsets. Soft: no closed form."""
        if not self.hard:
            raise NotImplementedError("GumbelSoftmaxTopK.entropy of soft values has no closed form")
        lp = self.enumerate_log_prob()
        return -(lp.exp() * lp).sum(0)

    def inclusion_probs(self) -> Tensor:
        """P(i is among the k draws without replacement) = sum_S q(S) 1[i in S], (*batch, K).

        Exact, by enumeration of the C(K,k) subsets; the mean of the hard k-hot sample (and what
        the relaxed sample's mean approaches as tau -> 0). Defined for soft and hard laws alike:
        it is a property of the top-k indicator of kappa.
        """
        support = self._subsets("inclusion_probs", hard_only=False)  # (C, *batch, K)
        return (self._subsets_log_prob().exp().unsqueeze(-1) * support).sum(0)


def sequential_relaxation_warning(tau: float, k: int) -> str | None:
    """The one line a runner prints when the sequential relaxation runs where it over-counts.

    None when ``tau < 1`` and ``k <= 2``; otherwise a sentence naming each reason (see the
    class docstring and docs/METHODS.md): at tau >= 1 a dominant item keeps half (tau = 1) or
    more of the next step; for k >= 3 a winner close to the runner-up can win again.

    Example:
        >>> sequential_relaxation_warning(0.5, 2) is None
        True
        >>> sequential_relaxation_warning(1.0, 2).startswith("warning: topk")
        True
    """
    reasons = []
    if tau >= 1:
        reasons.append(f"at tau = {tau:g} (>= 1) it counts a dominant item again (half of the next "
                       "step at tau = 1, nearly all of it above)")
    if k >= 3:
        reasons.append(f"with k = {k} (>= 3) a winner close to the runner-up can win again two "
                       "steps later")
    if not reasons:
        return None
    return ("warning: topk's sequential relaxation over-counts: " + "; ".join(reasons)
            + " (docs/METHODS.md); use tau < 1 and k <= 2 where its mean should match the "
            "inclusion probabilities")


# ----------------------------------------------------------------------------- pure functions
def topk_indicator(kappa: Tensor, k: int) -> Tensor:
    """1 at the k largest entries of ``kappa`` (last dimension), 0 elsewhere."""
    index = kappa.topk(k, dim=-1).indices
    return torch.zeros_like(kappa).scatter_(-1, index, 1.0)


class _SoftmaxAndMask(torch.autograd.Function):
    """(a, log(1 - a)) with a = softmax(u) over the last dimension, both exact, in one pass.

    log(1 - a_i) = log R_i - log Z with e = exp(u - max u), Z = sum e, R_i = sum_{l != i} e_l.
    For every entry but the winner (the one with a > 1/2, if any) a_i <= 1/2 and log1p(-a_i) is
    accurate; for the winner R = the sum of the other terms, never Z - e_winner (which cancels).
    When even that sum leaves the normal floats (the winner leads every other entry by more
    than ~87 in float32), log R comes from a logsumexp of the others instead (rare; a data-
    dependent branch). Backward, with r_i = a_i/(1 - a_i) for non-winners and q = the softmax of
    the others for the winner: d log(1 - a_i)/du_l = r_i (a_l - [l = i]) (non-winner) and
    q_l - a_l (winner), all bounded, so nothing of the form tiny * huge is ever formed.
    """

    @staticmethod
    def forward(ctx, u):
        a = torch.softmax(u, dim=-1)
        top = a > 0.5                                 # the winner, if the row has one
        rest = a.masked_fill(top, 0.0)                # every entry but the winner's
        s = rest.sum(-1, keepdim=True)                # = 1 - a_winner, without cancellation
        mask = rest.neg().log1p_()                    # 0 at the winner, filled in below
        small = s < torch.finfo(u.dtype).tiny * 2.0 ** 24   # the others' shares underflowed
        any_small = bool(small.any())
        log_s = s.log()
        if any_small:
            others = u.masked_fill(top, -math.inf)
            log_s = torch.where(small, others.logsumexp(-1, keepdim=True) - u.logsumexp(-1, keepdim=True),
                                log_s)
        mask[top] = log_s.expand_as(mask)[top]
        ctx.any_small = any_small
        ctx.save_for_backward(u, a, rest, s, top, small)
        return a, mask

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g_a, g_mask):
        # grad = a (g_a - <a, g_a>) + [a sum(h) - h] + g_top (q - a), h = g_mask r (non-winners)
        #      = a (g_a - c) - h + g_top q,  c = <a, g_a> - sum(h) + g_top  (one scalar per row)
        u, a, rest, s, top, small = ctx.saved_tensors
        if g_a is None:
            g_a = torch.zeros_like(a)
        if g_mask is None:
            return a * (g_a - (a * g_a).sum(-1, keepdim=True))
        g_top = g_mask.where(top, 0.0).sum(-1, keepdim=True)      # the winner's mask, per row
        # r_i = a_i/(1 - a_i) for non-winners (rest is 0 at the winner, so h is too)
        h = (1.0 - rest).reciprocal_().mul_(rest).mul_(g_mask)
        c = (a * g_a).sum(-1, keepdim=True) - h.sum(-1, keepdim=True) + g_top
        q = rest / torch.where(small, torch.ones_like(s), s)        # softmax of the others
        if ctx.any_small:
            others = u.masked_fill(top, -math.inf)
            q = torch.where(small, (others - others.logsumexp(-1, keepdim=True)).exp(), q)
        return h.neg_().addcmul_(a, g_a - c).addcmul_(q, g_top)


def sequential_topk_relaxation(kappa: Tensor, tau: Tensor, k: int) -> Tensor:
    """Xie & Ermon (2019): sum_{j<=k} softmax(w_j/tau), w_{j+1} = w_j + log(1 - a_j), exactly.

    k vectorised softmax steps over the last dimension (no per-element loop), with u_j = w_j/tau.
    The mask log(1 - a_j) is computed without a clamp and without cancellation
    (:class:`_SoftmaxAndMask`):

    * for the current winner m (a_{j,m} > 1/2), 1 - a_{j,m} = sum_{i != m} a_{j,i}, so its log
      is the log of the other entries' sum (a logsumexp of them where that sum underflows):
      exact even when a_{j,m} rounds to 1 (a clamp at 1 - eps kept a dominant item leading by
      more than ~16 tau in float32 at a mask of log eps, and it won the next step again);
    * every other entry has a_{j,i} <= 1/2, where log1p(-a_{j,i}) is accurate.

    Entries with kappa = -inf (masked categories) get a_j = 0 at every step and no gradient;
    the temperature's gradient ignores them. The last step's mask is never used, so it is not
    computed.
    """
    inv_tau = 1.0 / tau
    dead = torch.isneginf(kappa)
    # -inf * (1/tau) is -inf, but its gradient w.r.t. tau would be 0 * inf = NaN: keep them apart
    u = torch.where(dead, kappa, kappa.masked_fill(dead, 0.0) * inv_tau)
    total = None
    for j in range(k):
        if j + 1 < k:
            a, mask = _SoftmaxAndMask.apply(u)
            u = torch.addcmul(u, mask, inv_tau)
        else:
            a = torch.softmax(u, dim=-1)
        total = a if total is None else total + a
    return total


def _solve_threshold(kappa: Tensor, tau: Tensor, k: int, dead: Tensor) -> Tensor:
    """t with sum_i sigmoid((kappa_i - t)/tau) = k over the entries not ``dead`` (kappa_i = -inf),
    by bisection (no gradient), shape (..., 1). ``kappa`` holds finite placeholders where dead."""
    num = kappa.shape[-1]
    # At t = max kappa + tau*L every s_i <= sigmoid(-L) < k/K, so the sum is < k; symmetric below.
    span = abs(math.log(k / (num - k))) + math.log(num) + 2.0
    big = torch.finfo(kappa.dtype).max
    lo = kappa.masked_fill(dead, big).amin(-1, keepdim=True) - tau * span
    hi = kappa.masked_fill(dead, -big).amax(-1, keepdim=True) + tau * span
    iters = 40 if kappa.dtype in (torch.float16, torch.bfloat16, torch.float32) else 80
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        too_low = torch.sigmoid((kappa - mid) / tau).masked_fill(dead, 0.0).sum(-1, keepdim=True) > k
        lo = torch.where(too_low, mid, lo)
        hi = torch.where(too_low, hi, mid)
    return 0.5 * (lo + hi)


def threshold_topk_relaxation(kappa: Tensor, tau: Tensor, k: int) -> Tensor:
    """s_i = sigmoid((kappa_i - t)/tau), sum_i s_i = k, with the implicit-function gradient of t.

    t is found by bisection without gradient; then
    t = sg(t*) + sum_j c_j (kappa_j - sg kappa_j) - (sum_j c_j sg z_j)(tau - sg tau),
    c = softmax(log s_j(1 - s_j)) = s(1-s)/sum s(1-s) (computed in log space, so it is defined even
    when every s_i(1 - s_i) underflows), z = (kappa - t*)/tau. Its value is t*, its gradient is
    the implicit one from d/d(kappa, tau) sum_i sigmoid((kappa_i - t)/tau) = 0.

    Entries with kappa = -inf (masked categories) are 0, take no part in the threshold and get
    no gradient (as in the sequential relaxation); the computation runs on a finite placeholder
    there, so no inf - inf or 0 * inf reaches a value or a gradient.
    """
    dead = torch.isneginf(kappa)
    kappa = kappa.masked_fill(dead, 0.0)
    with torch.no_grad():
        t_star = _solve_threshold(kappa.detach(), tau.detach(), k, dead)
        z = (kappa.detach() - t_star) / tau.detach()
        log_c = torch.nn.functional.logsigmoid(z) + torch.nn.functional.logsigmoid(-z)
        c = torch.softmax(log_c.masked_fill(dead, -math.inf), dim=-1)
        dt_dtau = -(c * z).sum(-1, keepdim=True)
    t = t_star + (c * (kappa - kappa.detach())).sum(-1, keepdim=True)
    if tau.requires_grad:
        t = t + dt_dtau * (tau - tau.detach())
    return torch.sigmoid((kappa - t) / tau).masked_fill(dead, 0.0)


def subset_log_prob(log_p: Tensor, value: Tensor, k: int) -> Tensor:
    """Exact log P(set of k draws without replacement from Categorical(p) = support of ``value``).

    P(S) = sum over orders (i_1..i_k) of S of prod_j p_{i_j} / (1 - sum_{l<j} p_{i_l}).
    Dynamic programme over subsets A of S (positions 1..k): f(empty) = 0 and
    f(A) = logsumexp_{i in A} [f(A - i) + log p_i - log(1 - p(A - i))], where
    log(1 - p(B)) = log(sum of p outside B) is a logsumexp, never a cancelling subtraction.
    ``log_p`` must be normalised log-probabilities (..., K); ``value`` k-hot (..., K).
    """
    if k > MAX_EXACT_K:
        raise NotImplementedError(
            f"GumbelSoftmaxTopK.log_prob: the exact sum over the orders of a k-subset is computed for "
            f"k <= {MAX_EXACT_K} (2^k states); k = {k} is too large.")
    log_p, value = torch.broadcast_tensors(log_p, value)
    chosen = value.topk(k, dim=-1).indices                      # (..., k)
    lp_sel = log_p.gather(-1, chosen)                           # (..., k)
    outside = torch.where(value > 0.5, torch.full_like(log_p, -math.inf), log_p)
    lp_rest = outside.logsumexp(-1, keepdim=True)               # log p(not in S), (..., 1)

    n_sub = 1 << k
    bits = _subset_bits(k, log_p.device)                        # (2^k, k) bool
    neg_inf = torch.tensor(-math.inf, dtype=log_p.dtype, device=log_p.device)
    # log(1 - p(A)) = log(p outside S + p of S's members not in A), for every A.
    not_in = torch.where(~bits, lp_sel.unsqueeze(-2), neg_inf)  # (..., 2^k, k)
    log_rem = torch.cat([not_in, lp_rest.unsqueeze(-2).expand(*not_in.shape[:-1], 1)], -1).logsumexp(-1)

    f = torch.full((*lp_sel.shape[:-1], n_sub), -math.inf, dtype=log_p.dtype, device=log_p.device)
    f[..., 0] = 0.0
    for masks, prev, pos in _subset_layers(k, log_p.device):
        terms = f[..., prev] + lp_sel[..., pos] - log_rem[..., prev]    # (..., n_c, c)
        f[..., masks] = terms.logsumexp(-1)
    return f[..., n_sub - 1]


_BITS_CACHE: dict = {}
_LAYER_CACHE: dict = {}


def _subset_bits(k: int, device) -> Tensor:
    key = (k, str(device))
    if key not in _BITS_CACHE:
        m = torch.arange(1 << k, device=device)
        _BITS_CACHE[key] = ((m.unsqueeze(-1) >> torch.arange(k, device=device)) & 1).bool()
    return _BITS_CACHE[key]


def _subset_layers(k: int, device):
    """For c = 1..k: (masks of size c, masks minus one member, that member's position)."""
    key = (k, str(device))
    if key not in _LAYER_CACHE:
        layers = []
        for c in range(1, k + 1):
            combos = list(itertools.combinations(range(k), c))
            masks = [sum(1 << i for i in comb) for comb in combos]
            prev = [[m ^ (1 << i) for i in comb] for m, comb in zip(masks, combos)]
            layers.append((torch.tensor(masks, device=device), torch.tensor(prev, device=device),
                           torch.tensor(combos, device=device)))
        _LAYER_CACHE[key] = layers
    return _LAYER_CACHE[key]


class _Layer(NamedTuple):
    """Subsets of size c (combinations order) for the all-subsets dynamic programme."""

    prev: Tensor       # (C(K,c) * c,) index into layer c - 1 of A minus its j-th member
    member: Tensor     # (C(K,c) * c,) that member's category
    k_hot: Tensor      # (C(K,c), K) indicator of each A (bool)


_LATTICE_CACHE: dict = {}


def _subset_lattice(num: int, k: int, device) -> list[_Layer]:
    """Layers c = 0..k of the subsets of range(num); built once per (K, k, device)."""
    key = (num, k, str(device))
    if key not in _LATTICE_CACHE:
        layers, index = [], {(): 0}
        for c in range(k + 1):
            combos = list(itertools.combinations(range(num), c))
            prev = [index[comb[:j] + comb[j + 1:]] for comb in combos for j in range(c)]
            member = [i for comb in combos for i in comb]
            hot = torch.zeros(len(combos), num, dtype=torch.bool)
            if c:
                hot[torch.arange(len(combos)).repeat_interleave(c), torch.tensor(member)] = True
            layers.append(_Layer(torch.tensor(prev, dtype=torch.long, device=device),
                                 torch.tensor(member, dtype=torch.long, device=device), hot.to(device)))
            index = {comb: row for row, comb in enumerate(combos)}
        _LATTICE_CACHE[key] = layers
    return _LATTICE_CACHE[key]


def all_subsets_log_prob(log_p: Tensor, k: int) -> Tensor:
    """Exact log P(S) for every k-subset S of the K categories, (..., C(K,k)) in combinations order.

    P(S) = sum over the orders of S of prod_j p_{i_j} / (1 - sum_{l<j} p_{i_l}) (k draws without
    replacement from Categorical(p)), by a dynamic programme over all subsets A with |A| <= k:
    f({}) = 0, f(A) = logsumexp_{i in A} [f(A - i) - log(1 - p(A - i)) + log p_i], where
    log(1 - p(B)) = logsumexp_{l not in B} log p_l (B empty: log 1 = 0). Vectorised over subsets
    and batch; the only Python loop is over the k layers. ``log_p``: normalised log p, (..., K).
    """
    layers = _subset_lattice(log_p.shape[-1], k, log_p.device)
    f = log_p.new_zeros((*log_p.shape[:-1], 1))     # f({}) = log 1
    for c in range(1, k + 1):
        below, here = layers[c - 1], layers[c]
        if c > 1:  # log(1 - p(B)) = log p(outside B) for every B of size c - 1
            f = f - torch.where(below.k_hot, -math.inf, log_p.unsqueeze(-2)).logsumexp(-1)
        terms = f.index_select(-1, here.prev) + log_p.index_select(-1, here.member)
        f = terms.view(*terms.shape[:-1], -1, c).logsumexp(-1)
    return f
