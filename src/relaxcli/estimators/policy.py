"""Policy gradients of a categorical policy: at the actions taken, or through a learned critic.

In reinforcement learning the cost f(b) (the return) is known only at the actions the agent
took, so the :class:`~relaxcli.estimators.base.Estimator` interface, which draws b itself and
calls ``cost(b)``, does not apply to the return. Three ways around it:

* :func:`categorical_policy_gradient` takes the actions, the noise that drew them and their
  advantages, and computes the same closed forms as the Estimator modules
  (:func:`~relaxcli.estimators.score.reinforce_gradient`,
  :func:`~relaxcli.estimators.rebar.relax_gradient`): one REINFORCE and one RELAX.
* :func:`muprop_policy_gradient`: MuProp (Gu et al. 2016) at the actions taken, with the
  first-order Taylor expansion of a learned critic Q(s, a) as its control variate (what Q-Prop,
  Gu et al. 2017, does for continuous actions). Unbiased for the true return whatever Q is.
* :func:`critic_policy_gradient`: any Estimator (a pathwise one: Gumbel-Softmax, its
  straight-through variants, ReinMax, Gumbel-Rao) applied to the differentiable cost -Q(s, z), as
  MADDPG (Lowe et al. 2017) trains discrete-action policies. It estimates the gradient of
  E_pi[Q], so its bias is the estimator's plus the critic's error.

Example:
    >>> import torch
    >>> logits = torch.zeros(2, 3, requires_grad=True)
    >>> categorical_policy_gradient(logits, torch.tensor([0, 2]), torch.tensor([1.0, -1.0]))[1]
    tensor([ 0.3333,  0.3333, -0.6667])
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from relaxcli.estimators.base import Estimator
from relaxcli.estimators.conditional import categorical_conditional
from relaxcli.estimators.rebar import relax_gradient
from relaxcli.estimators.score import reinforce_gradient


class PolicyEstimator(str, Enum):
    """Estimators of a policy gradient at given actions (``relax reinforce --estimator``)."""

    REINFORCE = "reinforce"
    RELAX = "relax"
    MUPROP = "muprop"


def categorical_policy_gradient(logits: Tensor, actions: Tensor, advantages: Tensor,
                                control_variate: nn.Module | None = None, context: Tensor | None = None,
                                noise: Tensor | None = None) -> Tensor:
    """d/d logits of sum_t E_{a ~ softmax(logits_t)}[A_t] at the actions taken, one row per step.

    logits ``[T, K]`` (a function of the policy's parameters), actions ``[T]``, advantages ``[T]``.

    * ``control_variate`` None: REINFORCE, row t = A_t d log pi(a_t) / d logits_t.
    * else RELAX with c_phi(z, s) = ``control_variate(z, context)``: z_t = log pi(.|s_t) + G_t is
      rebuilt from the Gumbel ``noise`` G_t ``[T, K]`` that chose a_t = argmax z_t (the log-probs
      are normalised, see :mod:`relaxcli.estimators.conditional`), and z~_t ~ p(z | a_t) is drawn
      here with fresh noise (independent of z_t given a_t, so drawing it after the rollout is
      exact). The result keeps its graph to phi, for
      :func:`~relaxcli.estimators.rebar.variance_gradient`.
    """
    log_p = torch.log_softmax(logits, -1)
    log_p_a = log_p.gather(-1, actions.unsqueeze(-1)).squeeze(-1)
    if control_variate is None:
        return reinforce_gradient(logits, log_p_a, advantages)
    z = log_p + noise
    z_tilde = categorical_conditional(logits, F.one_hot(actions, log_p.shape[-1]).to(log_p.dtype))
    return relax_gradient(logits, log_p_a, advantages, control_variate(z, context),
                          control_variate(z_tilde, context), create_graph=True)


Critic = Callable[[Tensor], Tensor]


def muprop_policy_gradient(logits: Tensor, actions: Tensor, returns: Tensor, critic: Critic) -> Tensor:
    """MuProp at the actions taken, one row per step: d/d logits_t of E_{a ~ softmax(logits_t)}[R_t].

    With ``critic(z)`` = Q(s_t, z) for points z ``[T, K]`` of the simplex (differentiable in z),
    mu_t = sg(softmax(logits_t)), q_t = Q(s_t, mu_t) and slope_t = dQ/dz at mu_t, the control
    variate is the Taylor expansion h_t(a) = q_t + slope_t . (onehot(a) - mu_t), linear in the
    one-hot action, so E[h_t(a) grad log pi(a)] = slope_t . grad softmax(logits_t) exactly:

        row t = (R_t - h_t(a_t)) d log pi(a_t) / d logits_t + d/d logits_t [slope_t . softmax(logits_t)].

    Unbiased for any Q (Gu, Levine, Sutskever, Mnih 2016, arXiv 1511.05176, eq. 5; Q-Prop, Gu et
    al. 2017, arXiv 1611.02247, is the same construction with an off-policy critic); the closer
    h is to R, the lower the variance. ``returns`` ``[T]`` are constants.

    Example:
        >>> logits = torch.zeros(1, 2, requires_grad=True)
        >>> muprop_policy_gradient(logits, torch.tensor([0]), torch.tensor([1.0]), lambda z: z[:, 0])
        tensor([[ 0.2500, -0.2500]])
    """
    log_p = torch.log_softmax(logits, -1)
    log_p_a = log_p.gather(-1, actions.unsqueeze(-1)).squeeze(-1)
    mu = log_p.detach().exp().requires_grad_(True)
    with torch.enable_grad():
        q = critic(mu)
        slope, = torch.autograd.grad(q.sum(), mu)
    onehot = F.one_hot(actions, log_p.shape[-1]).to(log_p.dtype)
    h = q.detach() + (slope * (onehot - mu.detach())).sum(-1)
    analytic, = torch.autograd.grad((slope * log_p.exp()).sum(), logits, retain_graph=True)
    return reinforce_gradient(logits, log_p_a, returns, h) + analytic


def critic_policy_gradient(estimator: Estimator, logits: Tensor, critic: Critic,
                           tau: float | None = None) -> Tensor:
    """``estimator``'s estimate of d/d logits_t E_{z ~ its law(logits_t)}[Q(s_t, z)], one row per step.

    ``critic(z)`` maps points ``[n, T, K]`` (one-hot or relaxed) to Q values ``[n, T]``. The
    estimator sees ``raw = logits[:, None, :]`` (T examples of one categorical variable) and the
    cost -Q; its gradient on raw row t is -(1/T) times its estimate for step t, hence the factor.

    Example (the relaxed Gumbel-Softmax of a critic linear in z: E[z] is not softmax(logits)
    at tau > 0, so the estimate is biased, but it points the right way):
        >>> from relaxcli.methods import get_method                     # doctest: +SKIP
        >>> m = get_method("gumbel-softmax"); est = m.estimator(m)      # doctest: +SKIP
        >>> critic_policy_gradient(est, torch.zeros(1, 2), lambda z: z[..., 0], tau=1.0)  # doctest: +SKIP
    """
    raw = logits.detach()[:, None, :].requires_grad_(True)
    with torch.enable_grad():
        estimate = estimator(raw, lambda z: -critic(z[..., 0, :]), tau)
        grad, = torch.autograd.grad(estimate.loss, raw)
    return -raw.shape[0] * grad[:, 0, :]


__all__ = ["Critic", "PolicyEstimator", "categorical_policy_gradient", "critic_policy_gradient",
           "muprop_policy_gradient"]
