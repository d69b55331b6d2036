"""The one interface every gradient estimator follows (METHODS.md section 4).

An :class:`Estimator` turns the parameters ``raw`` of a discrete (or relaxed) latent and a
per-sample cost ``f`` into an :class:`Estimate`: a scalar surrogate ``loss`` whose *value* is the
Monte-Carlo mean cost and whose *gradient* is the estimator's gradient,

    loss.backward()  ->  raw (and everything upstream) gets the estimator's gradient of
                         mean_b E[f_b], and every parameter inside ``cost`` gets d/dpsi of the
                         mean cost at the sampled points.

Shapes: ``raw`` is ``(B, *param_shape)`` following the registry's convention (Bernoulli family:
``(B, D)`` logits; categorical: ``(B, V, K)`` logits); ``cost(z)`` receives
``z`` of shape ``(n, B, *latent_shape)`` and returns ``(n, B)``; ``loss`` is the mean over the
``n`` samples and the ``B`` batch rows, so the gradient on ``raw[i]`` is ``1/B`` times the
per-example estimate for row ``i``.

Two tricks keep value and gradient apart (both add exact zeros to the value):

* :func:`attach_gradient`: ``loss + <x, sg(g)> - sg(<x, sg(g)>)`` adds ``g`` to the gradient of
  ``x`` and nothing to the value (``s - s`` is exactly 0.0 for a finite ``s``).
* Estimators with their own parameters phi (learned baseline, REBAR's eta and temperature,
  RELAX's network) compute their variance-minimising gradient during ``forward`` with
  ``torch.autograd.grad(..., inputs=phi)`` and attach it to phi in the same way, so that the
  caller's single ``loss.backward()`` fills ``phi.grad`` too, and the gradient reaching ``raw``
  is exactly the estimator's (phi's attachment term does not involve ``raw``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

Cost = Callable[[Tensor], Tensor]


@dataclass
class Estimate:
    """What an estimator returns.

    Attributes:
        loss: scalar surrogate; its value is the Monte-Carlo mean cost, ``loss.backward()`` puts
            the estimator's gradient on ``raw`` (and upstream) and on the parameters in ``cost``.
        cost: ``(n_evaluations, B)`` per-sample costs at the discrete (or relaxed) samples the
            estimate averages, detached. ``n_evaluations`` is ``n_samples`` except for the
            antithetic ARM/DisARM estimators, which evaluate ``2 * n_samples`` (both members of
            each pair, each an exact sample of the discrete law).
    """

    loss: Tensor
    cost: Tensor


def attach_gradient(loss: Tensor, x: Tensor, grad: Tensor) -> Tensor:
    """``loss`` with the same value whose gradient w.r.t. ``x`` gains ``grad`` (detached).

    loss + <x, sg(grad)> - sg(<x, sg(grad)>): the added term is exactly zero in value.
    """
    s = (x * grad.detach()).sum()
    return loss + (s - s.detach())


def attach_parameter_gradients(loss: Tensor, params: Iterable[Tensor], grads: Iterable[Tensor | None]) -> Tensor:
    """Attach ``grads[i]`` to ``params[i]`` (skipping ``None``) with :func:`attach_gradient`."""
    for p, g in zip(params, grads):
        if g is not None:
            loss = attach_gradient(loss, p, g)
    return loss


def check_cost(values: Tensor, n: int, batch: int) -> Tensor:
    """Validate that ``cost`` returned the ``(n, B)`` tensor the interface promises."""
    if not isinstance(values, Tensor) or tuple(values.shape) != (n, batch):
        shape = tuple(values.shape) if isinstance(values, Tensor) else type(values).__name__
        raise ValueError(f"cost(z) must return a tensor of shape (n_samples, B) = {(n, batch)}, got {shape}")
    return values


def sum_event(log_prob: Tensor, n: int, batch: int) -> Tensor:
    """Sum a ``log_prob`` of shape ``(n, B, ...)`` over everything after the batch dimension."""
    return log_prob.reshape(n, batch, -1).sum(-1)


class Estimator(nn.Module):
    """Base class: ``forward(raw, cost, tau=None) -> Estimate`` (see the module docstring).

    Args:
        method: the registry record (:class:`relaxcli.methods.Method`) this estimator serves.
        n_samples: Monte-Carlo samples per batch row.
        family: the latent family ("bernoulli" or "categorical"); defaults to the method's.
    """

    #: families this estimator class can handle (None: any the method can build)
    families: tuple[str, ...] | None = None

    def __init__(self, method, n_samples: int = 1, family: str | None = None):
        super().__init__()
        if int(n_samples) < 1:
            raise ValueError(f"n_samples must be a positive integer, got {n_samples}")
        self.method = method
        self.n_samples = int(n_samples)
        self.family = family or method.family
        if self.families is not None and self.family not in self.families:
            raise ValueError(f"method {method.name!r} applies to {', '.join(self.families)} latents, "
                             f"not {self.family!r}")

    def forward(self, raw: Tensor, cost: Cost, tau: float | None = None) -> Estimate:  # pragma: no cover
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"method={self.method.name!r}, n_samples={self.n_samples}, family={self.family!r}"

    def _needs_raw_grad(self, raw: Tensor) -> bool:
        return torch.is_grad_enabled() and raw.requires_grad
