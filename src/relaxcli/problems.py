"""Small problems whose gradient is known exactly by enumeration, and how to measure an estimator
on them (``relax grad-bench`` and the tests use this public API).

A :class:`Problem` has logits ``theta`` of a discrete law (Bernoulli(sigmoid(theta)),
Categorical(softmax(theta)) or the exactly-k subset law), a per-sample cost ``f`` and the list
of every discrete outcome, so that ``E[f(b)]`` and its gradient are exact sums:

  bernoulli-quadratic    E[(b - t)^2], b ~ Bern(sigmoid(theta)), theta = 0 (RELAX's toy, t = 0.45);
  bernoulli-multi        E[sum_i (b_i - p_i)^2], p = (0.6, 0.51, 0.48), theta = 0, 2^3 outcomes;
  categorical-quadratic  E[||b - c||^2] over one-hot b ~ Cat(softmax(theta)), K categories,
                         theta ~ N(0, 1) and c ~ U(0, 1)^K drawn from the seed;
  simplex-quadratic      the same with c ~ Dirichlet(1) on the simplex (Paulus et al. 2021's toy);
  ksubset-quadratic      E[<w, b> - <v, b>^2] over the C(K, 2) 2-subsets b ~ KSubset(2, theta)
                         (the exactly-k law), theta, w ~ N(0, 1), v ~ N(0, 1/4) from the seed.

Estimates are drawn as one batch: :meth:`Problem.batch` holds ``rows`` copies of theta, one row
per independent estimate, and an estimator's loss is a mean over rows, so ``rows * raw.grad[i]``
is estimate i (:func:`draw_estimates`).

Example:
    >>> import torch
    >>> p = make_problem("bernoulli-quadratic")
    >>> p.exact_gradient()  # d/dtheta [sigma (1 - t)^2 + (1 - sigma) t^2] at theta = 0, t = 0.45
    tensor([0.0250])
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from itertools import combinations, product

import torch
from torch import Tensor
from torch.distributions import Bernoulli, OneHotCategorical

from relaxcli.distributions import KSubset
from relaxcli.options import Choice


class ProblemName(Choice):
    """The problems :func:`make_problem` builds."""

    BERNOULLI_QUADRATIC = "bernoulli-quadratic"
    CATEGORICAL_QUADRATIC = "categorical-quadratic"
    BERNOULLI_MULTI = "bernoulli-multi"
    KSUBSET_QUADRATIC = "ksubset-quadratic"
    SIMPLEX_QUADRATIC = "simplex-quadratic"


PROBLEMS = tuple(p.value for p in ProblemName)
MULTI_TARGETS = (0.6, 0.51, 0.48)
#: k of ksubset-quadratic: the default ``k`` setting of the registered subset methods (grad-bench
#: builds every method with its default settings, and a k-hot sample must match the problem's k)
KSUBSET_K = 2
CHUNK = 10_000  # estimates per batched call (bounds memory)
TUNE_BATCH = 64


@dataclass
class Problem:
    """A benchmark problem: logits ``theta`` (param shape), per-sample cost and exact gradient."""

    name: str
    family: str
    theta: Tensor                      # param_shape: (D,) Bernoulli, (1, K) categorical
    cost: Callable[[Tensor], Tensor]   # (n, B, *param_shape) -> (n, B)
    outcomes: Tensor                   # every discrete value, (N, *param_shape)
    info: dict

    def law(self, theta: Tensor):
        """The discrete law of logits ``theta`` (subset problems: the exactly-k subset law,
        ``info["k"]`` ones)."""
        if self.family == "subset":
            return KSubset(self.info["k"], logits=theta)
        return Bernoulli(logits=theta) if self.family == "bernoulli" else OneHotCategorical(logits=theta)

    def expected_cost(self, theta: Tensor) -> Tensor:
        """Exact E[f(b)] by enumeration (differentiable in ``theta``)."""
        log_p = self.law(theta).log_prob(self.outcomes).reshape(len(self.outcomes), -1).sum(-1)
        f = self.cost(self.outcomes.unsqueeze(1)).squeeze(1)
        return (log_p.exp() * f).sum()

    def exact_gradient(self, theta: Tensor | None = None) -> Tensor:
        th = (self.theta if theta is None else theta).detach().clone().requires_grad_(True)
        (g,) = torch.autograd.grad(self.expected_cost(th), th)
        return g

    def optimum(self) -> float:
        """The smallest cost over the outcomes (what a converged optimiser reaches)."""
        f = self.cost(self.outcomes.unsqueeze(1)).squeeze(1)
        return float(f.min())

    def at(self, theta: Tensor) -> Problem:
        """The same problem at other logits."""
        return replace(self, theta=theta)

    def batch(self, rows: int) -> Tensor:
        """``rows`` copies of theta, a leaf that receives the estimates as its gradient."""
        return self.theta.expand((rows,) + self.theta.shape).clone().requires_grad_(True)


def make_problem(name: str, target: float = 0.45, categories: int = 5, seed: int = 0,
                 device: torch.device | str = "cpu") -> Problem:
    """The problem ``name`` (one of :data:`PROBLEMS`) in float32 on ``device``."""
    if name not in PROBLEMS:
        raise ValueError(f"unknown problem {name!r}; choose from {', '.join(PROBLEMS)}")
    dtype = torch.float32
    if name == "ksubset-quadratic":
        return ksubset_quadratic(categories, KSUBSET_K, seed, dtype, device)
    if name == "simplex-quadratic":
        return simplex_quadratic(categories, seed, dtype, device)
    if name == "categorical-quadratic":
        gen = torch.Generator().manual_seed(seed)
        theta = torch.randn(1, categories, generator=gen).to(dtype=dtype, device=device)
        c = torch.rand(1, categories, generator=gen).to(dtype=dtype, device=device)
        outcomes = torch.eye(categories, dtype=dtype, device=device).unsqueeze(1)
        info = {"categories": categories, "cost_vector": c.flatten().tolist()}
        return Problem(name, "categorical", theta, lambda z: ((z - c) ** 2).sum((-2, -1)), outcomes, info)
    if name == "bernoulli-quadratic":
        t = torch.tensor([target], dtype=dtype, device=device)
        info = {"target": target}
    else:
        t = torch.tensor(MULTI_TARGETS, dtype=dtype, device=device)
        info = {"targets": list(MULTI_TARGETS)}
    theta = torch.zeros(t.numel(), dtype=dtype, device=device)
    outcomes = torch.tensor(list(product([0.0, 1.0], repeat=t.numel())), dtype=dtype, device=device)
    return Problem(name, "bernoulli", theta, lambda z: ((z - t) ** 2).sum(-1), outcomes, info)


def ksubset_quadratic(n: int = 5, k: int = KSUBSET_K, seed: int = 0, dtype=torch.float32,
                      device: torch.device | str = "cpu") -> Problem:
    """E[<w, b> - <v, b>^2] over the C(n, k) k-subsets b ~ KSubset(k, theta) (Ahmed et al. 2023's
    exactly-k law), exact by enumeration; theta, w ~ N(0, 1) and v ~ N(0, 1/4) from the seed.

    theta is (1, n): one subset variable, shaped like the categorical problems' (1, K). Its
    gradient is that of the k-subset law; methods on another subset law (``topk``: k draws without
    replacement) are measured against the law this problem defines, so their "bias" includes the
    difference of the laws.

    Example:
        >>> p = ksubset_quadratic(4, 2)
        >>> tuple(p.outcomes.shape), p.exact_gradient().shape
        ((6, 1, 4), torch.Size([1, 4]))
    """
    if not 1 <= k < n:
        raise ValueError(f"ksubset-quadratic needs 1 <= k < n, got k = {k}, n = {n}")
    gen = torch.Generator().manual_seed(seed)
    theta = torch.randn(1, n, generator=gen)
    w = torch.randn(n, generator=gen)
    v = 0.5 * torch.randn(n, generator=gen)
    hot = torch.zeros(math.comb(n, k), n)
    for row, comb in enumerate(combinations(range(n), k)):
        hot[row, list(comb)] = 1.0
    theta, w, v, hot = (t.to(dtype=dtype, device=device) for t in (theta, w, v, hot))
    info = {"n": n, "k": k, "w": w.tolist(), "v": v.tolist()}
    return Problem("ksubset-quadratic", "subset", theta,
                   lambda z: (z * w).sum((-2, -1)) - (z * v).sum((-2, -1)) ** 2, hot.unsqueeze(1), info)


def simplex_quadratic(categories: int = 5, seed: int = 0, dtype=torch.float32,
                      device: torch.device | str = "cpu") -> Problem:
    """E[||D - c||^2] over one-hot D ~ Cat(softmax(theta)), c a point of the simplex: the toy
    quadratic of Paulus, Maddison, Krause 2021 (arXiv 2010.04838), whose gradient estimators they
    compare by log10 of the trace of the covariance (:func:`log10_trace_covariance`). Their
    constants are not reproduced here: theta ~ N(0, 1) and c ~ Dirichlet(1, ..., 1) from the seed.
    (categorical-quadratic's c is a point of the cube [0, 1]^K instead.)

    Example:
        >>> p = simplex_quadratic(3)
        >>> round(sum(p.info["c"]), 6), p.family
        (1.0, 'categorical')
    """
    gen = torch.Generator().manual_seed(seed)
    theta = torch.randn(1, categories, generator=gen)
    e = -torch.log(torch.rand(1, categories, generator=gen, dtype=torch.float64))  # Exp(1)^K
    c = e / e.sum()                                                   # / sum: Dirichlet(1)
    theta, c = theta.to(dtype=dtype, device=device), c.to(dtype=dtype, device=device)
    outcomes = torch.eye(categories, dtype=dtype, device=device).unsqueeze(1)
    info = {"categories": categories, "c": c.flatten().tolist()}
    return Problem("simplex-quadratic", "categorical", theta, lambda z: ((z - c) ** 2).sum((-2, -1)),
                   outcomes, info)


def log10_trace_covariance(g: Tensor) -> float:
    """log10 of the trace of the covariance of estimates ``g`` (draws, P), as Paulus et al. report."""
    return math.log10(float(g.var(0).sum()))


def draw_estimates(est, problem: Problem, draws: int, tau: float | None) -> tuple[Tensor, float]:
    """``draws`` independent estimates (draws, P) at theta (float64) and the seconds per estimate."""
    out, seconds = [], 0.0
    for start in range(0, draws, CHUNK):
        rows = min(CHUNK, draws - start)
        raw = problem.batch(rows)
        t0 = time.perf_counter()
        est(raw, problem.cost, tau).loss.backward()
        seconds += time.perf_counter() - t0
        out.append(raw.grad.reshape(rows, -1) * rows)
    return torch.cat(out).double(), seconds / draws


def tune(est, problem: Problem, steps: int, lr: float = 0.01) -> None:
    """Fit an estimator's own parameters (its variance objective) and state at the fixed theta."""
    params = [p for p in est.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr) if params else None
    est.train()
    for _ in range(steps):
        out = est(problem.batch(TUNE_BATCH), problem.cost)
        if opt is not None:
            opt.zero_grad()
        out.loss.backward()
        if opt is not None:
            opt.step()
    est.eval()


def statistics(g: Tensor, exact: Tensor) -> dict:
    """Mean, bias, variance (trace of the covariance), MSE and SNR of estimates ``g`` (draws, P),
    and ``_bias_se``, the per-coordinate standard error of the bias (for tables, not summaries)."""
    mean = g.mean(0)
    bias = mean - exact
    var = g.var(0) if len(g) > 1 else torch.zeros_like(mean)
    trace = float(var.sum())
    return {
        "mean": mean.tolist(), "bias": bias.tolist(), "variance": trace,
        "mse": float(((g - exact) ** 2).sum(1).mean()),
        "snr": float(mean.norm() / math.sqrt(trace)) if trace > 0 else None,
        "_bias_se": (var / len(g)).sqrt().tolist(),
    }
