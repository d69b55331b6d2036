"""REBAR (Tucker et al. 2017, arXiv 1703.07370) and RELAX (Grathwohl et al. 2018, arXiv 1711.00123).

Both are score-function estimators with a control variate c built from the Concrete relaxation
and the conditional sample z_tilde ~ p(z | b) (:mod:`relaxcli.estimators.conditional`):

    g = [f(b) - c(z_tilde)] * grad log p(b) + grad c(z) - grad c(z_tilde),
    b = H(z),  z = reparameterised sample,  z_tilde = conditional reparameterised sample,

which is unbiased for d/draw E[f(b)] for *any* differentiable c (E[grad c(z)] is the score term
of c plus E[grad c(z_tilde)]). ``grad`` is w.r.t. ``raw``; b's score uses the exact law
``method.discrete_law(raw)``.

REBAR:  c(z) = eta * f(sigma_lambda(z)),
RELAX:  c(z) = eta * f(sigma_lambda(z)) + r_rho(sigma_lambda(z)),  r_rho a small MLP,
with sigma_lambda(z) = sigmoid(z / lambda) (Bernoulli) or softmax(z / lambda) (categorical).
eta, log lambda (and rho) are ``nn.Parameter`` s the caller adds to its optimizer.

Variance step. While the module is in training mode, ``forward`` computes the per-example
estimates g_i (rows of ``raw``) with ``torch.autograd.grad(..., create_graph=True)``, the
variance proxy V = mean_i ||g_i||^2 (the mean gradient does not depend on phi because g is
unbiased, so dV/dphi = d Var/dphi; Grathwohl et al. 2018 eq. 5), and dV/dphi by a second
``torch.autograd.grad`` w.r.t. phi only. Those gradients are attached to phi through exactly
zero-valued terms ``<phi, sg(dV/dphi)> - sg(...)`` of the returned loss, so the caller's one
``loss.backward()`` writes dV/dphi into phi.grad, while ``raw`` receives exactly g (the
attachment of g to ``raw`` is a separate zero-valued term, and phi's terms do not involve raw).
In eval mode (``estimator.eval()``) phi is frozen and no second-order graph is built.

``tau`` passed to ``forward`` overrides the learned temperature for that call (no temperature
gradient then); ``tau=None`` uses exp(log_temperature).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from relaxcli.estimators.base import (
    Cost,
    Estimate,
    Estimator,
    attach_gradient,
    attach_parameter_gradients,
    check_cost,
    sum_event,
)
from relaxcli.estimators.conditional import bernoulli_relaxed_pair, categorical_relaxed_pair


def relax_gradient(inputs: Tensor, log_prob: Tensor, f: Tensor, c_z: Tensor, c_z_tilde: Tensor,
                   create_graph: bool = False) -> Tensor:
    """RELAX at given samples (Grathwohl et al. 2018, eq. 6; REBAR when c = eta f(sigma(z))):

        g = sum_s [ (f_s - c(z~_s)) d log p(b_s)/d inputs + d c(z_s)/d inputs - d c(z~_s)/d inputs ].

    ``log_prob`` = log p(b_s) of the samples b_s = H(z_s); ``c_z`` = c(z_s) and ``c_z_tilde`` =
    c(z~_s) with z~_s ~ p(z | b_s), all functions of ``inputs`` (and of the control variate's
    parameters phi). The score weight f - c(z~) is a constant for d/d inputs but stays a function
    of phi: with ``create_graph=True`` the returned g is differentiable in phi, which
    :func:`variance_gradient` needs. As in :func:`reinforce_gradient`, f may be a cost or a
    reward, and row i of the result is row i's estimate when rows are independent.

    Example:
        >>> from relaxcli.estimators.conditional import categorical_relaxed_pair
        >>> logits = torch.zeros(4, 3, requires_grad=True)
        >>> b, z, zt = categorical_relaxed_pair(logits)
        >>> log_p = (torch.log_softmax(logits, -1) * b).sum(-1)
        >>> c = lambda z: torch.softmax(z, -1)[..., 0]          # any differentiable c(z)
        >>> relax_gradient(logits, log_p, b[:, 0], c(z), c(zt)).shape
        torch.Size([4, 3])
    """
    weight = (f.detach() - c_z_tilde).expand_as(log_prob)
    grad, = torch.autograd.grad([log_prob, c_z - c_z_tilde], [inputs],
                                grad_outputs=[weight, torch.ones_like(c_z)],
                                create_graph=create_graph, retain_graph=True, allow_unused=True)
    return torch.zeros_like(inputs) if grad is None else grad


def variance_gradient(estimate: Tensor | list[Tensor], phi: list[Tensor], rows: int = 1) -> tuple[Tensor, list]:
    """(V, dV/dphi) for V = |g|^2 / rows, the control variate's variance objective.

    ``estimate`` (a tensor or a list of them, e.g. one per policy parameter) must come from
    :func:`relax_gradient` with ``create_graph=True``. Because g is unbiased for every phi, its
    mean does not depend on phi and dV/dphi = d Var(g)/dphi (Grathwohl et al. 2018, eq. 5).
    ``rows``: the number of independent estimates summed in ``estimate`` when V should be their
    mean squared norm. Entries of the gradient list are None for parameters g does not involve.
    """
    parts = estimate if isinstance(estimate, (list, tuple)) else [estimate]
    variance = sum((g ** 2).sum() for g in parts) / rows
    return variance, list(torch.autograd.grad(variance, phi, allow_unused=True, retain_graph=True))


class ControlVariateNet(nn.Module):
    """r_rho(y): MLP from the flattened relaxed sample y (n, B, *latent) to (n, B).

    ``latent_size`` = number of entries of one latent (D, or V*K); None builds the first layer
    lazily on the first call (then run one forward before creating the optimizer).
    """

    def __init__(self, latent_size: int | None = None, hidden: int = 32):
        super().__init__()
        first = nn.LazyLinear(hidden) if latent_size is None else nn.Linear(latent_size, hidden)
        self.net = nn.Sequential(first, nn.Tanh(), nn.Linear(hidden, 1))
        # start at r = 0 so RELAX begins as REBAR and only learns what helps
        nn.init.zeros_(self.net[2].weight)
        nn.init.zeros_(self.net[2].bias)

    def forward(self, y: Tensor) -> Tensor:
        n, batch = y.shape[:2]
        return self.net(y.reshape(n, batch, -1)).squeeze(-1)


class ContextControlVariate(ControlVariateNet):
    """c_phi(z, x) = r_rho([x, softmax(z / tau)]): RELAX's learned control variate for a categorical
    z given a context x (the state, in ``relax reinforce``), with its own temperature
    tau = exp(log_tau), learned with rho (Grathwohl et al. 2018, section 3.3 and the RL experiments).
    Starts at c = 0 (zero output layer), so RELAX begins as REINFORCE.

    Example:
        >>> cv = ContextControlVariate(n_classes=3, context_size=4, hidden=8)
        >>> cv(torch.randn(5, 3), torch.randn(5, 4)).shape
        torch.Size([5])
    """

    def __init__(self, n_classes: int, context_size: int, hidden: int = 32):
        super().__init__(context_size + n_classes, hidden)
        self.log_tau = nn.Parameter(torch.zeros(()))

    def forward(self, z: Tensor, context: Tensor) -> Tensor:
        relaxed = torch.softmax(z / self.log_tau.exp(), dim=-1)
        return self.net(torch.cat([context, relaxed], dim=-1)).squeeze(-1)


class RebarEstimator(Estimator):
    """REBAR; RELAX when ``network=True`` (see the module docstring).

    Options: ``family`` (bernoulli | categorical), ``tau0`` initial temperature (0.5),
    ``eta0`` initial control-variate scale (1.0), ``learn_tau`` (True), ``network`` (RELAX's MLP),
    ``latent_size`` and ``hidden`` for that MLP.
    """

    families = ("bernoulli", "categorical")

    def __init__(self, method, n_samples: int = 1, family: str | None = None, tau0: float = 0.5,
                 eta0: float = 1.0, learn_tau: bool = True, network: bool | None = None,
                 latent_size: int | None = None, hidden: int = 32):
        super().__init__(method, n_samples, family)
        if not tau0 > 0:
            raise ValueError(f"tau0 must be > 0, got {tau0}")
        network = bool(network)
        self.eta = nn.Parameter(torch.tensor(float(eta0)))
        self.log_temperature = nn.Parameter(torch.tensor(math.log(tau0)), requires_grad=learn_tau)
        self.net = ControlVariateNet(latent_size, hidden) if network else None

    @property
    def temperature(self) -> float:
        return float(self.log_temperature.detach().exp())

    def _relax(self, z: Tensor, lam: Tensor) -> Tensor:
        if self.family == "bernoulli":
            return torch.sigmoid(z / lam)
        return torch.softmax(z / lam, dim=-1)

    def _network(self, y: Tensor) -> Tensor:
        """r_rho(y) in y's dtype and device, whatever those of rho (a lazy first layer is built
        in its own dtype first)."""
        params = dict(self.net.named_parameters())
        if any(isinstance(p, nn.parameter.UninitializedParameter) for p in params.values()):
            with torch.no_grad():
                self.net(y[:1, :1].detach().to(torch.get_default_dtype()))
            params = dict(self.net.named_parameters())
        if all(p.dtype == y.dtype and p.device == y.device for p in params.values()):
            return self.net(y)
        cast = {name: p.to(y) for name, p in params.items()}
        return torch.func.functional_call(self.net, cast, (y,))

    def forward(self, raw: Tensor, cost: Cost, tau: float | None = None) -> Estimate:
        n, batch = self.n_samples, raw.shape[0]
        pair = bernoulli_relaxed_pair if self.family == "bernoulli" else categorical_relaxed_pair
        b, z, z_tilde = pair(raw, sample_shape=(n,))
        # The estimator's own parameters stay where the optimizer holds them; the computation
        # follows raw's dtype and device (differentiable casts carry their gradients back).
        lam = (self.log_temperature.to(raw).exp() if tau is None
               else torch.as_tensor(tau, dtype=raw.dtype, device=raw.device))
        if not bool(lam > 0):
            raise ValueError(f"temperature must be > 0, got {float(lam)}")
        eta = self.eta.to(raw)
        y, y_tilde = self._relax(z, lam), self._relax(z_tilde, lam)
        # one cost call for f(b), f(sigma(z)), f(sigma(z_tilde)): fewer Python round trips
        f_all = check_cost(cost(torch.cat([b, y, y_tilde])), 3 * n, batch)
        f_b, f_y, f_yt = f_all[:n], f_all[n:2 * n], f_all[2 * n:]
        c_z, c_zt = eta * f_y, eta * f_yt
        if self.net is not None:
            c_z = c_z + self._network(y)
            c_zt = c_zt + self._network(y_tilde)
        loss = f_b.mean()
        if not self._needs_raw_grad(raw):
            return Estimate(loss=loss, cost=f_b.detach())

        phi = [p for p in self.parameters() if p.requires_grad] if self.training else []
        log_prob = sum_event(self.method.discrete_law(raw, self.family).log_prob(b), n, batch)
        g_rows = relax_gradient(raw, log_prob, f_b, c_z, c_zt, create_graph=bool(phi)) / n  # shape of raw
        loss = attach_gradient(loss, raw, g_rows / batch)
        if phi:  # mean_i |g_i|^2 over the rows i of raw
            _, grads = variance_gradient(g_rows, phi, rows=batch)
            loss = attach_parameter_gradients(loss, phi, grads)
        return Estimate(loss=loss, cost=f_b.detach())
