"""Small problems whose gradient is known exactly by enumeration, and how to measure an estimator
on them (``relax grad-bench`` and the tests use this public API).

A :class:`Problem` has logits ``theta`` of a discrete law (Bernoulli(sigmoid(theta)) or
Categorical(softmax(theta))), a per-sample cost ``f`` and the list of every discrete outcome, so
that ``E[f(b)]`` and its gradient are exact sums:

  bernoulli-quadratic    E[(b - t)^2], b ~ Bern(sigmoid(theta)), theta = 0 (RELAX's toy, t = 0.45);
  bernoulli-multi        E[sum_i (b_i - p_i)^2], p = (0.6, 0.51, 0.48), theta = 0, 2^3 outcomes;
  categorical-quadratic  E[||b - c||^2] over one-hot b ~ Cat(softmax(theta)), K categories,
                         theta ~ N(0, 1) and c ~ U(0, 1)^K drawn from the seed.

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
from enum import Enum
from itertools import product

import torch
from torch import Tensor
from torch.distributions import Bernoulli, OneHotCategorical


class ProblemName(str, Enum):
    """The problems :func:`make_problem` builds."""

    BERNOULLI_QUADRATIC = "bernoulli-quadratic"
    CATEGORICAL_QUADRATIC = "categorical-quadratic"
    BERNOULLI_MULTI = "bernoulli-multi"

    def __str__(self) -> str:
        return self.value


PROBLEMS = tuple(p.value for p in ProblemName)
MULTI_TARGETS = (0.6, 0.51, 0.48)
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
        """The discrete law of logits ``theta``."""
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
