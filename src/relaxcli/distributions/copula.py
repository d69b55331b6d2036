"""Correlated relaxed Bernoulli gates through a Gaussian copula (METHODS.md section 1).

Lee, Imrie, van der Schaar, "Self-Supervision Enhanced Feature Selection with Correlated Gates",
ICLR 2022. The D gates of one event share a Gaussian copula with correlation matrix R; each
gate is a binary Concrete relaxation of Bernoulli(pi_k) driven by the copula's uniform U_k
instead of an independent one.

Also here: :func:`bivariate_normal_cdf`, used for the tau -> 0 closed-form pairwise joint
probabilities that ``relax sample`` prints next to the empirical ones.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import Tensor
from torch.distributions import constraints
from torch.distributions.distribution import Distribution
from torch.distributions.utils import lazy_property

from relaxcli.distributions._numerics import (
    clamped_logit,
    log1m_sigmoid,
    log_sigmoid,
    logit_ndtr,
    ndtri_sigmoid,
)
from relaxcli.distributions.bernoulli import _BinaryMixin  # lazy probs/logits, shared by the family

_EMPTY = torch.Size()  # default sample_shape (a module singleton, not a call)

__all__ = ["CorrelatedRelaxedBernoulli", "LogitCorrelatedRelaxedBernoulli", "bivariate_normal_cdf"]


# ----------------------------------------------------------------------------- numerics


_GL_CACHE: dict[int, tuple[Tensor, Tensor]] = {}


def _gauss_legendre(n: int) -> tuple[Tensor, Tensor]:
    """Gauss-Legendre nodes and weights on [-1, 1] (float64, Golub-Welsch eigen-decomposition)."""
    if n not in _GL_CACHE:
        k = torch.arange(1, n, dtype=torch.float64)
        off = k / torch.sqrt(4.0 * k * k - 1.0)
        jacobi = torch.diag(off, 1) + torch.diag(off, -1)
        nodes, vecs = torch.linalg.eigh(jacobi)
        _GL_CACHE[n] = (nodes, 2.0 * vecs[0] ** 2)
    return _GL_CACHE[n]


def bivariate_normal_cdf(h: Tensor, k: Tensor, r: Tensor, n: int = 64) -> Tensor:
    r"""Phi_2(h, k; r) = P(X <= h, Y <= k) for standard normals with correlation r (elementwise).

    Plackett's identity dPhi_2/dr = phi_2 integrated from 0 to r, with s = sin(theta)
    (Drezner & Wesolowsky 1990)::

        Phi_2(h, k; r) = Phi(h) Phi(k)
                         + 1/(2 pi) int_0^{asin r} exp(-(h^2 - 2 h k sin t + k^2) / (2 cos^2 t)) dt

    The substitution removes the 1/sqrt(1 - s^2) singularity; ``n``-point Gauss-Legendre, in
    float64, accurate to ~1e-10 for |r| <= 0.99 (tested against scipy). Infinite h, k are
    allowed. Result has the broadcast shape and the dtype of ``h``.

    Example:
        >>> import torch
        >>> round(float(bivariate_normal_cdf(torch.tensor(0.), torch.tensor(0.), torch.tensor(0.5))), 6)
        0.333333
    """
    out_dtype = h.dtype if h.dtype.is_floating_point else torch.get_default_dtype()
    h, k, r = (torch.as_tensor(t, dtype=torch.float64, device=h.device) for t in (h, k, r))
    h, k, r = torch.broadcast_tensors(h, k, r)
    base = torch.special.ndtr(h) * torch.special.ndtr(k)
    # Phi(+-40) is 0 or 1 in float64; clamping keeps inf - inf out of the exponent.
    h, k = h.clamp(-40.0, 40.0), k.clamp(-40.0, 40.0)
    nodes, weights = _gauss_legendre(n)
    nodes, weights = nodes.to(h.device), weights.to(h.device)
    half = 0.5 * torch.asin(r.clamp(-1.0, 1.0))
    theta = half.unsqueeze(-1) * (nodes + 1.0)  # map [-1, 1] -> [0, asin r]
    s, c2 = torch.sin(theta), torch.cos(theta) ** 2
    hh, kk = h.unsqueeze(-1), k.unsqueeze(-1)
    f = torch.exp(-(hh * hh - 2.0 * hh * kk * s + kk * kk) / (2.0 * c2))
    integral = half * (weights * f).sum(-1)
    return (base + integral / (2.0 * math.pi)).clamp(0.0, 1.0).to(out_dtype)


# ----------------------------------------------------------------------------- validation
class _CorrelationMatrix(constraints.Constraint):
    """Symmetric, unit diagonal, positive definite (up to a dtype-dependent tolerance)."""

    event_dim = 2

    def check(self, value: Tensor) -> Tensor:
        tol = _tolerance(value)
        sym = ((value - value.mT).abs() <= tol).all(-1).all(-1)
        unit = ((torch.diagonal(value, dim1=-2, dim2=-1) - 1.0).abs() <= tol).all(-1)
        pd = torch.linalg.cholesky_ex(value)[1] == 0
        return sym & unit & pd


def _tolerance(x: Tensor) -> float:
    return max(1e3 * torch.finfo(x.dtype).eps, 1e-6)


def _validated_scale_tril(correlation: Tensor | None, scale_tril: Tensor | None, d: int) -> Tensor:
    """Cholesky factor of the correlation matrix, with a ValueError saying what is wrong."""
    if (correlation is None) == (scale_tril is None):
        raise ValueError("Either `correlation` or `scale_tril` must be specified, but not both.")
    name = "correlation" if scale_tril is None else "scale_tril"
    given = correlation if scale_tril is None else scale_tril
    m = given.detach()  # the checks below read values only
    if m.dim() < 2 or m.shape[-1] != m.shape[-2] or m.shape[-1] != d:
        raise ValueError(f"Expected parameter {name} to be a {d}x{d} matrix (D = the last dimension "
                         f"of probs/logits), but found shape {tuple(m.shape)}")
    if not bool(torch.isfinite(m).all()):
        raise ValueError(f"Expected parameter {name} to be finite, but found non-finite entries")
    tol = _tolerance(m)
    if scale_tril is not None:
        lower = torch.tril(m)
        diag = torch.diagonal(m, dim1=-2, dim2=-1)
        rows = torch.linalg.vector_norm(m, dim=-1)
        if not (bool((m == lower).all()) and bool((diag > 0).all())
                and bool(((rows - 1.0).abs() <= tol).all())):
            raise ValueError("Expected parameter scale_tril to satisfy the constraint CorrCholesky "
                             "(lower triangular, positive diagonal, rows of unit norm, so that "
                             "scale_tril @ scale_tril.T is a correlation matrix)")
        return given
    asym = float((m - m.mT).abs().max())
    if asym > tol:
        raise ValueError(f"Expected parameter correlation to be symmetric, but "
                         f"max |R - R^T| = {asym:.3g}")
    off = float((torch.diagonal(m, dim1=-2, dim2=-1) - 1.0).abs().max())
    if off > tol:
        raise ValueError(f"Expected parameter correlation to have a unit diagonal (a correlation, "
                         f"not a covariance, matrix), but max |R_kk - 1| = {off:.3g}")
    chol, info = torch.linalg.cholesky_ex(given)  # differentiable in the correlation
    if bool((info != 0).any()):
        raise ValueError("Expected parameter correlation to be positive definite, but its Cholesky "
                         "factorisation failed (an eigenvalue is <= 0, e.g. |R_ij| = 1 or an "
                         "inconsistent set of correlations)")
    return chol


def _unbroadcast(m: Tensor | None) -> Tensor | None:
    """``m`` with every broadcast (stride-0) batch dimension narrowed to size 1.

    A correlation matrix handed in already expanded over a batch (e.g. ``R.expand(B, D, D)``) is
    one matrix: it is validated and factorised once, not B times.
    """
    if m is None:
        return None
    for dim in range(m.dim() - 2):
        if m.stride(dim) == 0 and m.shape[dim] > 1:
            m = m.narrow(dim, 0, 1)
    return m


def _tril_matvec(tril: Tensor, x: Tensor) -> Tensor:
    """L x over the last dimension of ``x``; one matrix product when L is a single D x D matrix."""
    if tril.dim() == 2:
        return x @ tril.mT  # (L x)^T = x^T L^T for every row at once: one GEMM
    return (tril @ x.unsqueeze(-1)).squeeze(-1)


def _tril_solve(tril: Tensor, z: Tensor) -> Tensor:
    """L^{-1} z over the last dimension of ``z`` (L lower triangular), batched by broadcasting."""
    if tril.dim() == 2:
        # rows y with L y = z  <=>  Y L^T = Z: one triangular solve for all rows
        flat = z.reshape(-1, z.shape[-1])
        y = torch.linalg.solve_triangular(tril.mT, flat, upper=True, left=False)
        return y.reshape(z.shape)
    return torch.linalg.solve_triangular(tril, z.unsqueeze(-1), upper=False).squeeze(-1)


def _common_dtype_device(*values):
    tensors = [v for v in values if isinstance(v, Tensor)]
    dtype = None
    for t in tensors:
        if t.dtype.is_floating_point:
            dtype = t.dtype if dtype is None else torch.promote_types(dtype, t.dtype)
    return dtype or torch.get_default_dtype(), (tensors[0].device if tensors else None)


# ----------------------------------------------------------------------------- the distributions
class _CopulaGates(_BinaryMixin, Distribution):
    """Parameters, validation, expansion and the exact logit-space density shared by
    :class:`CorrelatedRelaxedBernoulli` (values m in (0, 1)^D) and
    :class:`LogitCorrelatedRelaxedBernoulli` (values x = logit m in R^D)."""

    arg_constraints: ClassVar[dict[str, constraints.Constraint]] = {
        "temperature": constraints.positive,  # elementwise: a scalar tau is accepted
        "probs": constraints.independent(constraints.unit_interval, 1),
        "logits": constraints.independent(constraints.real, 1),
        "correlation": _CorrelationMatrix(),
        "scale_tril": constraints.corr_cholesky,
    }
    has_rsample = True

    @classmethod
    def infer_shapes(cls, temperature=(), probs=None, logits=None, correlation=None, scale_tril=None):
        """(batch_shape, event_shape) from the argument shapes: probs/logits (..., D) broadcast
        with temperature; correlation/scale_tril (..., D, D); event (D,)."""
        param = torch.Size(probs if probs is not None else logits)
        gates = torch.broadcast_shapes(torch.Size(temperature), param)
        matrix = correlation if correlation is not None else scale_tril
        matrix_batch = torch.Size(matrix)[:-2] if matrix is not None else torch.Size()
        return torch.broadcast_shapes(gates[:-1], matrix_batch), gates[-1:]

    def __init__(self, temperature, probs=None, logits=None, *, correlation=None, scale_tril=None,
                 validate_args=None):
        if (probs is None) == (logits is None):
            raise ValueError("Either `probs` or `logits` must be specified, but not both.")
        param = probs if probs is not None else logits
        dtype, device = _common_dtype_device(temperature, param, correlation, scale_tril)

        def t(x):
            return None if x is None else torch.as_tensor(x, dtype=dtype, device=device)

        param, tau = t(param), t(temperature)
        if param.dim() < 1:
            raise ValueError("Expected parameter probs/logits to have a last dimension D (the "
                             "number of gates), but found a scalar")
        try:
            tau, param = torch.broadcast_tensors(tau, param)
        except RuntimeError:
            raise ValueError(f"temperature of shape {tuple(tau.shape)} does not broadcast against "
                             f"probs/logits of shape {tuple(param.shape)}") from None
        d = param.shape[-1]
        corr, tril = t(correlation), t(scale_tril)
        given = corr if corr is not None else tril
        matrix_batch = given.shape[:-2] if given is not None else torch.Size()
        corr, tril = _unbroadcast(corr), _unbroadcast(tril)
        # Validated and factorised once, at the matrix's own shape (one D x D matrix for a shared
        # R): never per batch element. The batch-shaped `correlation` / `scale_tril` attributes
        # are lazy broadcast views of these, so Distribution.__init__ does not re-check them per
        # batch element either (_validated_scale_tril always runs, whatever validate_args says).
        self._tril = _validated_scale_tril(corr, tril, d)
        self._corr = corr
        batch_shape = torch.broadcast_shapes(param.shape[:-1], matrix_batch)
        event = torch.Size((d,))
        self.temperature = tau.expand(batch_shape + event)
        if probs is not None:
            self.probs = param.expand(batch_shape + event)
        else:
            self.logits = param.expand(batch_shape + event)
        super().__init__(batch_shape, event, validate_args=validate_args)

    @lazy_property
    def scale_tril(self) -> Tensor:
        """Cholesky factor L of R, shape batch_shape + (D, D) (a broadcast view)."""
        return self._tril.expand(self.batch_shape + self.event_shape * 2)

    @lazy_property
    def correlation(self) -> Tensor:
        """The correlation matrix R = L L^T, shape batch_shape + (D, D) (a broadcast view)."""
        r = self._corr if self._corr is not None else self._tril @ self._tril.mT
        return r.expand(self.batch_shape + self.event_shape * 2)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(type(self), _instance)
        batch_shape = torch.Size(batch_shape)
        vec = batch_shape + self.event_shape
        new.temperature = self.temperature.expand(vec)
        for name in ("probs", "logits"):
            if name in self.__dict__:
                setattr(new, name, getattr(self, name).expand(vec))
        # the unbatched factor is shared: expanding never copies, re-checks or re-factorises R
        new._tril, new._corr = self._tril, self._corr
        Distribution.__init__(new, batch_shape, self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    def _logit_sample(self, sample_shape, generator=None) -> Tensor:
        """x = (logit Phi(v) + logits)/tau, v = L eps ~ N(0, R), independent per row."""
        shape = self._extended_shape(sample_shape)
        logits = self.logits
        eps = torch.randn(shape, dtype=logits.dtype, device=logits.device, generator=generator)
        v = _tril_matvec(self._tril, eps)
        return (logit_ndtr(v) + logits) / self.temperature

    def _logit_log_density(self, x: Tensor) -> Tensor:
        """Exact log density of x = logit m: u_k = sigma(w_k), w = tau x - logits, z = Phi^-1(u),

        log p(x) = -1/2 log|R| - 1/2 z^T (R^-1 - I) z + sum_k [log tau + log u_k + log(1 - u_k)].
        """
        logits, tau = self.logits, self.temperature
        w = tau * x - logits  # logit u
        z = ndtri_sigmoid(w)
        y = _tril_solve(self._tril, z)
        half_log_det = torch.log(torch.diagonal(self._tril, dim1=-2, dim2=-1)).sum(-1)
        log_copula = -half_log_det - 0.5 * (y.pow(2).sum(-1) - z.pow(2).sum(-1))
        return log_copula + (torch.log(tau) + log_sigmoid(w) + log1m_sigmoid(w)).sum(-1)

    def _as(self, cls):
        """The same parameters (no re-validation, no re-factorisation) as a ``cls`` instance."""
        new = cls.__new__(cls)
        new.__dict__.update({k: v for k, v in self.__dict__.items()
                             if k in ("temperature", "probs", "logits", "_tril", "_corr")})
        Distribution.__init__(new, self.batch_shape, self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    def marginal_probs(self) -> Tensor:
        """P(m_k = 1) as tau -> 0: pi_k (shape batch_shape + (D,))."""
        return self.probs

    def pairwise_joint_probs(self) -> Tensor:
        """P(m_i = 1, m_j = 1) as tau -> 0 = Phi_2(Phi^{-1}(pi_i), Phi^{-1}(pi_j); R_ij).

        Shape batch_shape + (D, D); the diagonal is pi. (The Gaussian copula is radially
        symmetric, so the upper-tail event {U_i > 1 - pi_i} has the lower-tail probability.)
        """
        p = self.probs.to(torch.float64)
        h = torch.special.ndtri(p)
        joint = bivariate_normal_cdf(h.unsqueeze(-1), h.unsqueeze(-2), self.correlation.to(torch.float64))
        joint = torch.diagonal_scatter(joint, p, dim1=-2, dim2=-1)
        return joint.to(self.probs.dtype)


class CorrelatedRelaxedBernoulli(_CopulaGates):
    r"""Gaussian-copula relaxed Bernoulli gates (Lee, Imrie, van der Schaar, ICLR 2022).

    With L the Cholesky factor of the D x D correlation matrix R::

        v = L eps ~ N(0, R);  U_k = Phi(v_k);  m_k = sigma((logit U_k + logit pi_k) / tau)

    logit Phi(v) is computed as log Phi(v) - log Phi(-v) (stable in both tails). As tau -> 0,
    m_k -> 1{U_k > 1 - pi_k}: the marginals are Bernoulli(pi_k) (:meth:`marginal_probs`) and
    P(m_i = 1, m_j = 1) = Phi_2(Phi^{-1}(pi_i), Phi^{-1}(pi_j); R_ij) (:meth:`pairwise_joint_probs`).

    Exact ``log_prob`` by change of variables, u_k = sigma(tau logit m_k - logit pi_k),
    z_k = Phi^{-1}(u_k)::

        log p(m) = -1/2 log|R| - 1/2 z^T (R^{-1} - I) z
                   + sum_k [log tau + log u_k + log(1 - u_k) - log m_k - log(1 - m_k)]

    Shapes: probs/logits (..., D) give event_shape (D,); ``correlation`` (or its Cholesky factor
    ``scale_tril``) is (..., D, D); both broadcast into batch_shape. ``temperature`` broadcasts
    against probs/logits (a per-batch temperature needs a trailing singleton dimension).
    ``correlation`` must be symmetric with unit diagonal and positive definite (ValueError
    otherwise, whatever ``validate_args`` says).

    ``log_prob`` is a function of the value alone. In float32 a gate rounds to exactly 0 or 1
    once |logit m| > ~17 (about half the gates at tau = 0.1); such a value is evaluated at the
    nearest interior float, which is not the point that was drawn. Where exact densities of
    samples are needed (Monte-Carlo KL, importance weights), sample and evaluate in logit space:
    :meth:`logit_space` gives :class:`LogitCorrelatedRelaxedBernoulli` with the same parameters,
    whose samples x = logit m and densities are exact in float32 (log q(m) - log p(m) =
    log q(x) - log p(x): the Jacobian cancels).

    Example (the seed's worked example, batch 2, event 3):
        >>> import torch
        >>> R = torch.tensor([[1.0, 0.5, 0.3], [0.5, 1.0, 0.7], [0.3, 0.7, 1.0]])
        >>> d = CorrelatedRelaxedBernoulli(0.1, probs=torch.tensor([[0.2, 0.4, 0.4], [0.3, 0.5, 0.2]]), correlation=R)
        >>> m = d.rsample((5,))
        >>> m.shape, d.log_prob(m).shape, d.pairwise_joint_probs().shape
        (torch.Size([5, 2, 3]), torch.Size([5, 2]), torch.Size([2, 3, 3]))
    """

    support = constraints.independent(constraints.unit_interval, 1)

    def rsample(self, sample_shape: torch.Size = _EMPTY, generator: torch.Generator | None = None) -> Tensor:
        return torch.sigmoid(self._logit_sample(sample_shape, generator))

    def log_prob(self, value: Tensor) -> Tensor:
        if self._validate_args:
            self._validate_sample(value)
        value = torch.as_tensor(value, dtype=self.logits.dtype, device=self.logits.device)
        x = clamped_logit(value)
        # density of x, minus log |dm/dx| = log m + log(1 - m)
        return self._logit_log_density(x) - (log_sigmoid(x) + log1m_sigmoid(x)).sum(-1)

    def logit_space(self) -> LogitCorrelatedRelaxedBernoulli:
        """The law of logit m with the same parameters (exact float32 densities)."""
        return self._as(LogitCorrelatedRelaxedBernoulli)


class LogitCorrelatedRelaxedBernoulli(_CopulaGates):
    r"""The correlated gates in logit space: x_k = (logit Phi(v_k) + logit pi_k) / tau, so that
    sigmoid(x) ~ :class:`CorrelatedRelaxedBernoulli` with the same arguments.

    Same constructor and parameters. Samples are finite reals that keep every digit where the
    gates themselves would round to 0 or 1, and ``log_prob`` is the exact density of x (no
    Jacobian of the sigmoid), so it is exact in float32 at every sample::

        log p(x) = -1/2 log|R| - 1/2 z^T (R^{-1} - I) z + sum_k [log tau + log u_k + log(1 - u_k)],
        u_k = sigma(tau x_k - logit pi_k),  z_k = Phi^{-1}(u_k).

    With R = I it is the product of :class:`LogitRelaxedBernoulli` laws.

    Example:
        >>> import torch
        >>> d = LogitCorrelatedRelaxedBernoulli(0.1, logits=torch.zeros(3), correlation=torch.eye(3))
        >>> x = d.rsample((4,))
        >>> x.shape, d.log_prob(x).shape
        (torch.Size([4, 3]), torch.Size([4]))
    """

    support = constraints.independent(constraints.real, 1)

    def rsample(self, sample_shape: torch.Size = _EMPTY, generator: torch.Generator | None = None) -> Tensor:
        return self._logit_sample(sample_shape, generator)

    def log_prob(self, value: Tensor) -> Tensor:
        if self._validate_args:
            self._validate_sample(value)
        value = torch.as_tensor(value, dtype=self.logits.dtype, device=self.logits.device)
        return self._logit_log_density(value)

    @property
    def mean(self) -> Tensor:
        """logits / tau: logit Phi(v_k) is a standard logistic variable (mean 0) for every k."""
        return self.logits / self.temperature

    @property
    def variance(self) -> Tensor:
        """pi^2 / (3 tau^2): the marginals are those of LogitRelaxedBernoulli."""
        return (math.pi ** 2 / 3.0) / self.temperature.pow(2)

    def entropy(self) -> Tensor:
        """sum_k (2 - log tau_k) + 1/2 log|R|: the marginals' (logistic) entropies minus the
        Gaussian copula's mutual information, -1/2 log|R|."""
        half_log_det = torch.log(torch.diagonal(self._tril, dim1=-2, dim2=-1)).sum(-1)
        return (2.0 - torch.log(self.temperature)).sum(-1) + half_log_det

    def relaxed(self) -> CorrelatedRelaxedBernoulli:
        """The law of sigmoid(x): the gates in (0, 1)."""
        return self._as(CorrelatedRelaxedBernoulli)

