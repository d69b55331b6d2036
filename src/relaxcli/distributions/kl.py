"""Exact KL divergences of the discrete (hard) laws, registered with torch's ``kl_divergence``.

Registered when ``relaxcli.distributions`` is imported (the simplex KLs live in
:mod:`relaxcli.distributions.simplex`):

- straight-through Bernoulli || Bernoulli (torch's), both ways, and || itself;
- ReinMax (Bernoulli: || Bernoulli; categorical: || OneHotCategorical) and Gumbel-Rao likewise;
- hard Gumbel-Softmax || OneHotCategorical (torch's), both ways, and || itself; the decoupled
  ST-GS's forward law Categorical(softmax(logits / tau_f)) likewise;
- hard top-k || hard top-k (same K and k), by the enumeration of the C(K, k) subsets;
- k-subset || k-subset (same n and k; SIMPLE's law too), exactly in O(nk) through the marginals.

A soft (relaxed) law against a discrete one has no finite KL (their supports differ); those raise
``NotImplementedError`` saying so, as torch does for pairs it does not know.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.distributions import Bernoulli, OneHotCategorical
from torch.distributions.kl import register_kl
from torch.nn.functional import logsigmoid

from relaxcli.distributions.bernoulli import ReinMaxBernoulli, StraightThroughBernoulli
from relaxcli.distributions.categorical import (
    DecoupledStraightThroughGumbelSoftmax,
    GumbelRao,
    GumbelSoftmax,
    ReinMaxCategorical,
)
from relaxcli.distributions.subset import GumbelSoftmaxTopK, KSubset

__all__ = ["bernoulli_kl"]


def bernoulli_kl(p_logits: Tensor, q_logits: Tensor) -> Tensor:
    """KL(Bernoulli(sigma(a)) || Bernoulli(sigma(b))) in log space (finite for finite logits).

    torch's own (Bernoulli, Bernoulli) KL is infinite wherever q's probs round to 0 or 1 in float32
    (a logit above ~16.6 already gives probs == 1), even though the true KL is finite."""
    p_logits, q_logits = torch.broadcast_tensors(p_logits, q_logits)
    p = torch.sigmoid(p_logits)
    return (p * (logsigmoid(p_logits) - logsigmoid(q_logits))
            + (1 - p) * (logsigmoid(-p_logits) - logsigmoid(-q_logits)))


@register_kl(StraightThroughBernoulli, Bernoulli)
@register_kl(Bernoulli, StraightThroughBernoulli)
@register_kl(StraightThroughBernoulli, StraightThroughBernoulli)
@register_kl(ReinMaxBernoulli, Bernoulli)
@register_kl(Bernoulli, ReinMaxBernoulli)
@register_kl(ReinMaxBernoulli, ReinMaxBernoulli)
def _kl_st_bernoulli(p, q) -> Tensor:
    """The straight-through Bernoulli's (and ReinMax's) forward law is Bernoulli(p): the Bernoulli KL."""
    return bernoulli_kl(p.logits, q.logits)


def _categorical_log_probs(d) -> Tensor:
    """Normalised log-probabilities of the one-hot law ``d`` samples (refusing soft laws)."""
    if isinstance(d, GumbelSoftmax):
        if not d.hard:
            raise NotImplementedError(
                "KL between a soft GumbelSoftmax (a density on the simplex) and a law on one-hot "
                "vectors is not finite; use hard=True for the categorical law")
        return d.logits
    if isinstance(d, DecoupledStraightThroughGumbelSoftmax):
        return d.forward_logits
    return torch.log_softmax(d.logits, -1)  # OneHotCategorical


def _categorical_kl(p, q) -> Tensor:
    lp, lq = torch.broadcast_tensors(_categorical_log_probs(p), _categorical_log_probs(q))
    return (lp.exp() * (lp - lq)).sum(-1)


for _p, _q in [(GumbelSoftmax, OneHotCategorical), (OneHotCategorical, GumbelSoftmax),
               (GumbelSoftmax, GumbelSoftmax),
               (DecoupledStraightThroughGumbelSoftmax, OneHotCategorical),
               (OneHotCategorical, DecoupledStraightThroughGumbelSoftmax),
               (DecoupledStraightThroughGumbelSoftmax, DecoupledStraightThroughGumbelSoftmax),
               (GumbelSoftmax, DecoupledStraightThroughGumbelSoftmax),
               (DecoupledStraightThroughGumbelSoftmax, GumbelSoftmax)]:
    register_kl(_p, _q)(_categorical_kl)

# ReinMax and Gumbel-Rao sample Categorical(softmax(logits)) forward (normalised .logits)
for _cls in (ReinMaxCategorical, GumbelRao):
    for _p, _q in [(_cls, OneHotCategorical), (OneHotCategorical, _cls), (_cls, _cls)]:
        register_kl(_p, _q)(_categorical_kl)


@register_kl(GumbelSoftmaxTopK, GumbelSoftmaxTopK)
def _kl_topk_topk(p: GumbelSoftmaxTopK, q: GumbelSoftmaxTopK) -> Tensor:
    """sum_S p(S) (log p(S) - log q(S)) over the C(K, k) subsets (hard laws, same K and k)."""
    if not (p.hard and q.hard):
        raise NotImplementedError("KL between soft top-k laws has no closed form (their relaxed "
                                  "k-hot vectors have no density); use hard=True for the subset laws")
    if p.k != q.k or p.num_categories != q.num_categories:
        raise ValueError(f"KL between k-subset laws of different sizes: k = {p.k} of K = "
                         f"{p.num_categories} and k = {q.k} of K = {q.num_categories}")
    lp, lq = torch.broadcast_tensors(p.enumerate_log_prob(), q.enumerate_log_prob())
    return (lp.exp() * (lp - lq)).sum(0)


@register_kl(KSubset, KSubset)
def _kl_ksubset_ksubset(q: KSubset, p: KSubset) -> Tensor:
    """KL(q || p) = E_q[<l_q - l_p, b>] - log Z_q + log Z_p = <mu_q, l_q - l_p> - log Z_q + log Z_p.

    log q(b) - log p(b) is linear in b, so its expectation needs only q's marginals mu_q (exact,
    forward-backward): O(nk), no enumeration (Ahmed et al. 2023 compute their exact ELBO this way).
    Both laws' logits are shifted by their own k-th largest inside the DP, and the shifts enter
    as k (c_p - c_q) - <mu_q, c_p - c_q> = 0 in exact arithmetic: left out, so no large terms cancel.
    """
    if q.k != p.k or q.num_items != p.num_items:
        raise ValueError(f"KL between k-subset laws of different sizes: k = {q.k} of n = {q.num_items} "
                         f"and k = {p.k} of n = {p.num_items}")
    mu = q.mean
    diff = q._centred - p._centred
    return (mu * diff).sum(-1) - q._table[..., q.k, -1] + p._table[..., p.k, -1]
