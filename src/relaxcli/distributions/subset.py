"""Subset family (METHODS.md section 2): k-subsets of K items.

Two laws over k-hot vectors live here: :class:`GumbelSoftmaxTopK` (k draws without replacement,
with relaxations) and :class:`KSubset` (independent Bernoullis conditioned on exactly k ones,
exact by an O(nk) dynamic programme), with :class:`SimpleKSubset`, its straight-through version
with SIMPLE's gradient, and :class:`PerturbedTopK` (perturb-and-MAP with I-MLE's gradient).

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
from torch.distributions.distribution import Distribution
from torch.distributions.utils import lazy_property, probs_to_logits

from relaxcli.distributions._hard import HardSwitch
from relaxcli.distributions._numerics import (
    as_float_tensors,
    gumbel_noise,
    straight_through,
    uniform_open,
)
from relaxcli.distributions.categorical import _categorical_params, _CategoricalParams

__all__ = [
    "MAX_ENUMERATED_SUBSETS",
    "MAX_EXACT_K",
    "GumbelSoftmaxTopK",
    "KHot",
    "KSubset",
    "PerturbedTopK",
    "ScaledSimplex",
    "SimpleKSubset",
    "imle_topk",
    "ksubset_log_partition",
    "ksubset_marginals",
    "ksubset_sample",
    "log_elementary_symmetric",
    "sequential_relaxation_warning",
    "sum_of_gamma_noise",
]

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


# ----------------------------------------------------------------------------- exactly-k subsets
def _log_zero(like: Tensor) -> float:
    """A finite stand-in for log 0 in the k-subset tables.

    -inf would make logcumsumexp's backward form exp(-inf - (-inf)) = NaN on the empty corner of
    the table (log e_j of fewer than j items). finfo.min / 8 absorbs any finite logit
    (x + l == x in floating point), stays finite when two of them are added (the marginals add a
    prefix and a suffix entry), and exp() of it minus any real log-partition is exactly 0.
    """
    return torch.finfo(like.dtype).min / 8


def log_elementary_symmetric(logits: Tensor, k: int) -> Tensor:
    """Table A[..., j, i] = log e_j(exp(l_1), ..., exp(l_i)) for j = 0..k and i = 0..n.

    e_j is the j-th elementary symmetric polynomial: the sum over the j-subsets S of the first i
    items of exp(sum_{s in S} l_s). The recursion e_j(1..i) = e_j(1..i-1) + e_{j-1}(1..i-1) x_i
    unrolls to e_j(1..i) = sum_{m <= i} e_{j-1}(1..m-1) x_m, so each row j is one
    ``logcumsumexp`` of row j - 1 shifted by one plus the logits: O(n k) work in log space with
    k vectorised steps (no loop over the n items). Entries with i < j (e_j of fewer than j items
    = 0) hold the finite stand-in :func:`_log_zero`. Shape (..., k + 1, n + 1).
    """
    n = logits.shape[-1]
    batch = logits.shape[:-1]
    rows = [logits.new_zeros((*batch, n + 1))]                   # log e_0 = log 1
    empty = logits.new_full((*batch, 1), _log_zero(logits))      # e_j() = 0 for j >= 1
    for _ in range(k):
        shifted = rows[-1][..., :n] + logits                     # log e_{j-1}(1..m-1) + l_m
        rows.append(torch.cat([empty, torch.logcumsumexp(shifted, dim=-1)], dim=-1))
    return torch.stack(rows, dim=-2)


def ksubset_log_partition(logits: Tensor, k: int) -> Tensor:
    """log Z = log e_k(exp(logits)) = log sum_{|S| = k} exp(sum_{i in S} l_i), shape (...)."""
    return log_elementary_symmetric(logits, k)[..., k, -1]


def ksubset_marginals(logits: Tensor, k: int, table: Tensor | None = None) -> Tensor:
    """P(b_i = 1) under the k-subset law, exactly, by the forward-backward sums.

    mu_i = exp(l_i - log Z) sum_{j=0}^{k-1} e_j(items before i) e_{k-1-j}(items after i), with the
    prefix table of :func:`log_elementary_symmetric` and the same table of the reversed logits
    for the suffixes, all in log space. Differentiable (SIMPLE's backward is its gradient); it
    equals d log Z / d logits (tested). ``table``: the prefix table if already computed.
    """
    n = logits.shape[-1]
    prefix = log_elementary_symmetric(logits, k) if table is None else table
    suffix = log_elementary_symmetric(logits.flip(-1), k)
    log_z = prefix[..., k, n]
    before = prefix[..., :k, :n]                          # log e_j(1..i-1), j < k, i = 1..n
    after = suffix[..., :k, :n].flip(-1).flip(-2)         # log e_{k-1-j}(i+1..n)
    log_mu = logits + (before + after).logsumexp(-2) - log_z.unsqueeze(-1)
    return log_mu.exp()


def ksubset_sample(logits: Tensor, k: int, sample_shape: torch.Size = _EMPTY,
                   generator: torch.Generator | None = None, table: Tensor | None = None) -> Tensor:
    """Exact k-hot draws of the k-subset law by backward sampling through the DP table.

    Going from the last item to the first with r ones still to place among items 1..i:
    P(b_i = 1 | r) = x_i e_{r-1}(1..i-1) / e_r(1..i) (the share of the subsets that contain i),
    forced to 1 when r = i and 0 when r = 0, so every draw has exactly k ones. No gradient.
    One uniform per item and sample; a loop over the n items (each step vectorised over samples
    and batch). Shape ``sample_shape + logits.shape``.
    """
    with torch.no_grad():
        logits = logits.detach()
        table = log_elementary_symmetric(logits, k) if table is None else table.detach()
        n = logits.shape[-1]
        shape = torch.Size(sample_shape) + logits.shape
        log_u = torch.log(uniform_open(shape, logits, generator))
        lead = shape[:-1]
        cols = table.expand(*lead, *table.shape[-2:])               # (..., k+1, n+1)
        remaining = torch.full(lead, k, dtype=torch.long, device=logits.device)
        out = torch.zeros(shape, dtype=logits.dtype, device=logits.device)
        l_all = logits.expand(shape)
        for i in range(n, 0, -1):
            r = remaining.unsqueeze(-1)
            a_here = cols[..., i].gather(-1, r).squeeze(-1)                       # log e_r(1..i)
            a_before = cols[..., i - 1].gather(-1, (r - 1).clamp(min=0)).squeeze(-1)
            log_p = l_all[..., i - 1] + a_before - a_here
            take = ((log_u[..., i - 1] < log_p) & (remaining > 0)) | (remaining >= i)
            out[..., i - 1] = take.to(out.dtype)
            remaining = remaining - take.long()
        return out


class KSubset(Distribution):
    r"""The exactly-k subset law: independent Bernoullis conditioned on exactly k ones.

    p(b) = exp(sum_i l_i b_i) / Z for k-hot b (a k-subset of the n items), 0 otherwise, with
    l = the Bernoulli logits (``probs`` p: l = logit p) and Z = e_k(exp(l)) the k-th elementary
    symmetric polynomial (the conditional Bernoulli / k-subset distribution of Ahmed, Zeng,
    Niepert, Van den Broeck 2023, "SIMPLE", arXiv 2210.01941; an exponential family in b).

    Exact and O(n k) in log space (stable for n in the thousands in float32):

    * ``log_partition`` by the dynamic programme of :func:`log_elementary_symmetric`;
    * ``log_prob(b) = <l, b> - log Z``;
    * ``sample`` by backward sampling through the DP table (:func:`ksubset_sample`; exact);
    * ``mean`` = the marginals P(b_i = 1) by forward-backward (:func:`ksubset_marginals`),
      = d log Z / d l;
    * ``entropy() = log Z - <l, mean>``;
    * ``kl_divergence(KSubset(k, l_q), KSubset(k, l_p))`` (registered in
      :mod:`relaxcli.distributions.kl`) = <mu_q, l_q - l_p> - log Z_q + log Z_p, exact, since
      log q - log p is linear in b.

    Unlike :class:`GumbelSoftmaxTopK` (k draws *without replacement* from Categorical(softmax(l)),
    whose log-mass sums over the k! orders), this law's mass is a product over the items: the two
    coincide only for k = 1 (then both are Categorical(softmax(l))).

    ``rsample`` is not defined here (the law is discrete); :class:`SimpleKSubset` is the
    straight-through version with SIMPLE's gradient.

    Args:
        k: subset size, 1 <= k < n.
        probs / logits: Bernoulli probabilities / logits of the n items, shape (..., n).

    Example:
        >>> import torch
        >>> d = KSubset(2, logits=torch.zeros(4))
        >>> b = d.sample((3,))
        >>> b.shape, b.sum(-1).tolist()
        (torch.Size([3, 4]), [2.0, 2.0, 2.0])
        >>> round(float(d.log_partition.exp()), 4), d.mean.tolist()
        (6.0, [0.5, 0.5, 0.5, 0.5])
    """

    arg_constraints: ClassVar[dict[str, constraints.Constraint]] = {
        "probs": constraints.independent(constraints.unit_interval, 1),
        "logits": constraints.real_vector,
    }

    def __init__(self, k: int, probs=None, logits=None, validate_args=None):
        if (probs is None) == (logits is None):
            raise ValueError("Either `probs` or `logits` must be specified, but not both.")
        param = probs if probs is not None else logits
        (param,) = as_float_tensors(param)
        if param.dim() < 1:
            raise ValueError(f"Expected parameter {'probs' if probs is not None else 'logits'} to have at "
                             f"least one dimension (the n items), but found shape {tuple(param.shape)}")
        num = param.shape[-1]
        if isinstance(k, bool) or not isinstance(k, int) and not (isinstance(k, float) and k.is_integer()):
            raise ValueError(f"Expected parameter k to be an integer with 1 <= k < n = {num}, but found {k!r}")
        k = int(k)
        if not 1 <= k < num:
            raise ValueError(f"Expected parameter k to satisfy 1 <= k < n = {num}, but found k = {k}")
        self.k = k
        if probs is not None:
            self.probs = param
            # clamped away from 0 and 1 (as torch's Bernoulli): finite logits for the DP
            self.logits = probs_to_logits(param, is_binary=True)
        else:
            self.logits = param
        super().__init__(param.shape[:-1], param.shape[-1:], validate_args=validate_args)

    @constraints.dependent_property(is_discrete=True, event_dim=1)
    def support(self):
        return KHot(self.k)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(KSubset, _instance)
        batch_shape = torch.Size(batch_shape)
        new.k = self.k
        new.logits = self.logits.expand(batch_shape + self.event_shape)
        if "probs" in self.__dict__:
            new.probs = self.probs.expand(batch_shape + self.event_shape)
        super(KSubset, new).__init__(batch_shape, self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    @lazy_property
    def probs(self) -> Tensor:
        """The Bernoulli probabilities sigmoid(logits) (before conditioning; not the marginals)."""
        return torch.sigmoid(self.logits)

    @property
    def num_items(self) -> int:
        return self.logits.shape[-1]

    @property
    def param_shape(self) -> torch.Size:
        return self.logits.shape

    # ------------------------------------------------------------------ the dynamic programme
    @lazy_property
    def _shift(self) -> Tensor:
        # The law ignores a constant c added to every logit (it multiplies Z by e^{kc}), so the DP
        # runs on logits shifted per row by the k-th largest: the table's entries then stay near
        # log C(n, k) instead of growing with the logits' size, and float32 rounding (relative to
        # their size) with them (n = 2000, k = 50: marginals within ~1e-5 of float64).
        return self.logits.detach().topk(self.k, dim=-1).values[..., -1:]

    @lazy_property
    def _centred(self) -> Tensor:
        return self.logits - self._shift

    @lazy_property
    def _table(self) -> Tensor:
        return log_elementary_symmetric(self._centred, self.k)

    @property
    def log_partition(self) -> Tensor:
        """log Z = log e_k(exp(logits)), shape batch_shape."""
        return self._table[..., self.k, -1] + self.k * self._shift.squeeze(-1)

    def sample(self, sample_shape: torch.Size = _EMPTY, generator: torch.Generator | None = None) -> Tensor:
        return ksubset_sample(self._centred, self.k, sample_shape, generator, table=self._table)

    def log_prob(self, value: Tensor) -> Tensor:
        if self._validate_args:
            self._validate_sample(value)
        return (value * self.logits).sum(-1) - self.log_partition

    @property
    def mean(self) -> Tensor:
        """The marginals P(b_i = 1), exact (forward-backward), differentiable in the logits."""
        return ksubset_marginals(self._centred, self.k, table=self._table)

    @property
    def variance(self) -> Tensor:
        mu = self.mean
        return mu * (1 - mu)

    def inclusion_probs(self) -> Tensor:
        """P(i in S) = the marginals (the name :class:`GumbelSoftmaxTopK` uses for them)."""
        return self.mean

    @property
    def mode(self) -> Tensor:
        """The most probable subset: the k largest logits."""
        return topk_indicator(self.logits.detach(), self.k)

    def entropy(self) -> Tensor:
        """log Z - <l, mu>, computed with the shifted logits (no cancellation of large terms)."""
        return self._table[..., self.k, -1] - (self.mean * self._centred).sum(-1)

    # ------------------------------------------------------------------ all subsets (small n)
    @property
    def has_enumerate_support(self) -> bool:
        return math.comb(self.num_items, self.k) <= MAX_ENUMERATED_SUBSETS

    def enumerate_support(self, expand: bool = True) -> Tensor:
        """All C(n, k) k-hot vectors, (C(n,k), *batch_shape, n), ``itertools.combinations`` order."""
        count = math.comb(self.num_items, self.k)
        if count > MAX_ENUMERATED_SUBSETS:
            raise NotImplementedError(f"KSubset.enumerate_support: C({self.num_items}, {self.k}) = {count} "
                                      f"subsets is more than the {MAX_ENUMERATED_SUBSETS} this lists")
        hot = _subset_lattice(self.num_items, self.k, self.logits.device)[-1].k_hot
        hot = hot.to(self.logits.dtype).view(count, *(1,) * len(self.batch_shape), self.num_items)
        return hot.expand(count, *self.batch_shape, self.num_items) if expand else hot

    def enumerate_log_prob(self) -> Tensor:
        """``log_prob(enumerate_support())``, (C(n,k), *batch_shape)."""
        return self.log_prob(self.enumerate_support(expand=False))


class SimpleKSubset(KSubset):
    r"""SIMPLE (Ahmed, Zeng, Niepert, Van den Broeck 2023, arXiv 2210.01941): an exact k-subset
    sample forward, the gradient of the exact marginals backward.

    ``rsample() = b + (mu(l) - sg(mu(l)))`` with b ~ :class:`KSubset` (exact, backward sampling)
    and mu = the marginals (:func:`ksubset_marginals`), so d value / d l = d mu / d l (the
    covariance of b under the law). For a cost f, the gradient is grad_b f(b)^T d mu / d l: the
    exact gradient when f is linear in b (E[f(b)] = f(mu) then), biased otherwise. ``log_prob``
    and the KL are those of the k-subset law (the forward value is an exact draw of it).

    Example:
        >>> import torch
        >>> l = torch.zeros(4, requires_grad=True)
        >>> b = SimpleKSubset(2, logits=l).rsample()
        >>> (b * torch.tensor([1.0, 0.0, 0.0, 0.0])).sum().backward()
        >>> [round(x, 4) for x in l.grad.tolist()]   # Cov(b_1, b_i): 1/4 and -1/12
        [0.25, -0.0833, -0.0833, -0.0833]
    """

    has_rsample = True

    def expand(self, batch_shape, _instance=None):
        return super().expand(batch_shape, self._get_checked_instance(SimpleKSubset, _instance))

    def rsample(self, sample_shape: torch.Size = _EMPTY, generator: torch.Generator | None = None) -> Tensor:
        return straight_through(self.sample(sample_shape, generator), self.mean)


# ----------------------------------------------------------------------------- perturb-and-MAP
NOISES = ("sog", "gumbel")


def sum_of_gamma_noise(shape: torch.Size, like: Tensor, k: int, terms: int = 10) -> Tensor:
    """Sum-of-Gamma noise (Niepert, Minervini, Franceschi 2021, arXiv 2106.01798, section 5):

    eps = (1/k) (sum_{s=1}^{S} Gamma(shape 1/k, rate s/k) - log S),

    S = ``terms``. The sum of k such i.i.d. variables tends to a Gumbel(0, 1) as S grows, so the
    top-k of (logits + eps) approximates a draw of the k-subset law (the paper's motivation).
    One independent draw per element, dtype/device of ``like`` (no ``generator``: torch's Gamma
    sampler takes none).
    """
    conc = torch.full(shape, 1.0 / k, dtype=like.dtype, device=like.device)
    unit = torch.distributions.Gamma(conc, torch.ones_like(conc), validate_args=False)
    total = torch.zeros(shape, dtype=like.dtype, device=like.device)
    for s in range(1, terms + 1):
        total = total + unit.sample() * (k / s)                  # Gamma(1/k, rate s/k)
    return (total - math.log(terms)) / k


class _PerturbAndMAP(torch.autograd.Function):
    """z = top-k(theta + eps) forward; I-MLE's finite difference (z - z') / lambda backward, with
    z' = top-k(theta - lambda dL/dz + eps) for the same eps (the PID target distribution)."""

    @staticmethod
    def forward(ctx, theta, noise, k, lam):
        z = topk_indicator(theta + noise, k)
        ctx.save_for_backward(theta, noise, z)
        ctx.k, ctx.lam = k, lam
        return z

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_z):
        theta, noise, z = ctx.saved_tensors
        z_target = topk_indicator(theta - ctx.lam * grad_z + noise, ctx.k)
        return (z - z_target) / ctx.lam, None, None, None


def imle_topk(theta: Tensor, noise: Tensor, k: int, lam: float) -> Tensor:
    """top-k(theta + noise) with I-MLE's backward; ``theta`` broadcasts against ``noise``."""
    return _PerturbAndMAP.apply(theta.expand(noise.shape), noise, k, float(lam))


class PerturbedTopK(Distribution):
    r"""Perturb-and-MAP k-subsets with I-MLE's gradient (Niepert, Minervini, Franceschi 2021,
    "Implicit MLE: Backpropagating Through Discrete Exponential Family Distributions",
    arXiv 2106.01798).

    Forward: z = top-k indicator of theta + tau * eps (the MAP state of the k-subset exponential
    family at perturbed logits), eps ~ Sum-of-Gamma(k, S) (``noise="sog"``, the paper's; see
    :func:`sum_of_gamma_noise`) or Gumbel(0, 1) (``noise="gumbel"``).

    Backward (``rsample``): the I-MLE finite difference with the perturbation-based implicit
    differentiation (PID) target theta' = theta - lambda dL/dz, for the same eps:

        grad_theta ~ (z - top-k(theta' + tau eps)) / lambda.

    lambda multiplies the upstream gradient as it arrives here (torch-imle's convention), so its
    useful size depends on how the loss is reduced; :class:`relaxcli.estimators.IMLEEstimator`
    applies it to each sample's own cost gradient instead. Biased (a finite-difference estimate
    of the gradient of a perturb-and-MAP surrogate).

    The law of z: with ``noise="gumbel"``, top-k(theta + tau G) = top-k(theta/tau + G) is exactly
    the Gumbel-top-k law of softmax(theta/tau) (k draws without replacement), so ``log_prob``,
    ``enumerate_log_prob`` and the KL are :class:`GumbelSoftmaxTopK`'s (k <= 12). With the
    Sum-of-Gamma noise the law of z has no closed form: those raise ``NotImplementedError``
    (it only approximates :class:`KSubset`).

    Args:
        k: subset size, 1 <= k < n.
        logits: theta, shape (..., n).
        temperature: tau > 0, the noise scale (1.0).
        noise: "sog" or "gumbel".
        lam: lambda > 0 of the finite difference (1.0, torch-imle's default; with it the division is a no-op).
        terms: S, the number of Gamma terms of the Sum-of-Gamma noise (10).

    Example:
        >>> import torch
        >>> d = PerturbedTopK(2, torch.zeros(5))
        >>> z = d.rsample((3,))
        >>> z.shape, z.sum(-1).tolist()
        (torch.Size([3, 5]), [2.0, 2.0, 2.0])
    """

    arg_constraints: ClassVar[dict[str, constraints.Constraint]] = {
        "logits": constraints.real_vector, "temperature": constraints.positive}
    has_rsample = True

    def __init__(self, k: int, logits, temperature=1.0, *, noise: str = "sog", lam: float = 1.0,
                 terms: int = 10, validate_args=None):
        logits, temperature = as_float_tensors(logits, temperature)
        if logits.dim() < 1:
            raise ValueError("Expected parameter logits to have at least one dimension, but found shape "
                             f"{tuple(logits.shape)}")
        num = logits.shape[-1]
        if isinstance(k, bool) or not isinstance(k, int) and not (isinstance(k, float) and k.is_integer()):
            raise ValueError(f"Expected parameter k to be an integer with 1 <= k < n = {num}, but found {k!r}")
        k = int(k)
        if not 1 <= k < num:
            raise ValueError(f"Expected parameter k to satisfy 1 <= k < n = {num}, but found k = {k}")
        if noise not in NOISES:
            raise ValueError(f"Expected parameter noise to be one of {NOISES}, but found {noise!r}")
        if not float(lam) > 0:
            raise ValueError(f"Expected parameter lambda to be > 0, but found {lam!r}")
        if int(terms) < 1:
            raise ValueError(f"Expected parameter terms to be a positive integer, but found {terms!r}")
        self.k, self.logits, self.temperature = k, logits, temperature
        self.noise, self.lam, self.terms = noise, float(lam), int(terms)
        batch_shape = torch.broadcast_shapes(logits.shape[:-1], temperature.shape)
        super().__init__(batch_shape, logits.shape[-1:], validate_args=validate_args)

    @constraints.dependent_property(is_discrete=True, event_dim=1)
    def support(self):
        return KHot(self.k)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(PerturbedTopK, _instance)
        batch_shape = torch.Size(batch_shape)
        new.k, new.noise, new.lam, new.terms = self.k, self.noise, self.lam, self.terms
        new.logits = self.logits.expand(batch_shape + self.event_shape)
        new.temperature = self.temperature
        super(PerturbedTopK, new).__init__(batch_shape, self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    def perturbation(self, sample_shape: torch.Size = _EMPTY, generator: torch.Generator | None = None) -> Tensor:
        """tau * eps, one draw per element of sample_shape + batch_shape + (n,) (no gradient)."""
        shape = self._extended_shape(sample_shape)
        like = self.logits.detach()
        if self.noise == "gumbel":
            eps = gumbel_noise(shape, like, generator)
        else:
            eps = sum_of_gamma_noise(shape, like, self.k, self.terms)
        return self.temperature.unsqueeze(-1).detach() * eps

    def rsample(self, sample_shape: torch.Size = _EMPTY, generator: torch.Generator | None = None) -> Tensor:
        return imle_topk(self.logits, self.perturbation(sample_shape, generator), self.k, self.lam)

    def sample(self, sample_shape: torch.Size = _EMPTY, generator: torch.Generator | None = None) -> Tensor:
        with torch.no_grad():
            return topk_indicator(self.logits + self.perturbation(sample_shape, generator), self.k)

    def exact_law(self) -> GumbelSoftmaxTopK:
        """The law of z for Gumbel noise: GumbelSoftmaxTopK(k, logits = theta / tau, hard)."""
        if self.noise != "gumbel":
            raise NotImplementedError(
                "PerturbedTopK with Sum-of-Gamma noise: the law of top-k(theta + eps) has no closed form "
                "(it approximates the k-subset law); use noise='gumbel' for an exact law")
        return GumbelSoftmaxTopK(self.k, 1.0, logits=self.logits / self.temperature.unsqueeze(-1),
                                 hard=True, validate_args=False)

    def log_prob(self, value: Tensor) -> Tensor:
        return self.exact_law().log_prob(value)

    @property
    def has_enumerate_support(self) -> bool:
        return self.noise == "gumbel"

    def enumerate_support(self, expand: bool = True) -> Tensor:
        return self.exact_law().enumerate_support(expand)

    def enumerate_log_prob(self) -> Tensor:
        return self.exact_law().enumerate_log_prob()
