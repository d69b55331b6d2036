"""Policy gradients at given samples: REINFORCE or RELAX for a categorical policy.

In reinforcement learning the cost f(b) (the return) is known only at the actions the agent
took, so the :class:`~relaxcli.estimators.base.Estimator` interface, which draws b itself and
calls ``cost(b)``, does not apply. :func:`categorical_policy_gradient` takes the actions, the
noise that drew them and their advantages, and computes the same closed forms as the Estimator
modules (:func:`~relaxcli.estimators.score.reinforce_gradient`,
:func:`~relaxcli.estimators.rebar.relax_gradient`), so there is one REINFORCE and one RELAX.

Example:
    >>> import torch
    >>> logits = torch.zeros(2, 3, requires_grad=True)
    >>> categorical_policy_gradient(logits, torch.tensor([0, 2]), torch.tensor([1.0, -1.0]))[1]
    tensor([ 0.3333,  0.3333, -0.6667])
"""

from __future__ import annotations

from enum import Enum

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from relaxcli.estimators.conditional import categorical_conditional
from relaxcli.estimators.rebar import relax_gradient
from relaxcli.estimators.score import reinforce_gradient


class PolicyEstimator(str, Enum):
    """Estimators of a policy gradient at given actions (``relax reinforce --estimator``)."""

    REINFORCE = "reinforce"
    RELAX = "relax"


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


__all__ = ["PolicyEstimator", "categorical_policy_gradient"]
