"""``relax grad-bench``: measured bias and variance of every gradient estimator against the exact gradient.

For a small problem whose gradient is known by enumeration, draw ``draws`` independent gradient
estimates at fixed logits theta and report, per method and temperature: the mean estimate, the
exact gradient, bias, variance (trace of the covariance), MSE = E||g - grad||^2,
SNR = ||mean|| / sqrt(trace variance), and the time per estimate.

Problems (theta are logits; the discrete law is Bernoulli(sigmoid(theta)) or Categorical):
  bernoulli-quadratic    E[(b - t)^2], b ~ Bern(sigmoid(theta)), theta = 0 (RELAX's toy, t = 0.45);
  bernoulli-multi        E[sum_i (b_i - p_i)^2], p = (0.6, 0.51, 0.48), theta = 0, 2^3 outcomes;
  categorical-quadratic  E[||b - c||^2] over one-hot b ~ Cat(softmax(theta)), K categories,
                         theta ~ N(0, 1) and c ~ U(0, 1)^K drawn from the seed.
Relaxed and straight-through methods see the cost of their relaxed sample (that is their bias).

Estimates are drawn as one batch: ``raw`` holds ``draws`` copies of theta, one row per
independent estimate, and the estimator's loss is a mean over rows, so ``draws * raw.grad[i]``
is estimate i. Estimators with state (moving-average or learned baselines, REBAR's eta and
temperature, RELAX's network) are first tuned for ``tune_steps`` steps at the fixed theta
(Adam on their variance objective), then frozen for the measurement.

``train=True`` instead optimises theta with each method (Adam, one estimate per step) and
records the exact loss and the variance of the estimator at the current theta (RELAX's toy
figure, Grathwohl et al. 2018, Figure 1).
"""

from __future__ import annotations

import csv
import io
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from itertools import product
from pathlib import Path

import torch
from torch import Tensor

from relaxcli import methods as registry
from relaxcli import plots
from relaxcli.errors import BadInput
from relaxcli.estimators import make_estimator
from relaxcli.runs import create_run, resolve_device, run_context, seed_everything, set_threads

PROBLEMS = ("bernoulli-quadratic", "categorical-quadratic", "bernoulli-multi")
MULTI_TARGETS = (0.6, 0.51, 0.48)
DEFAULT_TAUS = "0.05,0.1,0.2,0.5,1,2"
TUNE_BATCH = 64
CHUNK = 10_000  # estimates per batched call (bounds memory)
VARIANCE_DRAWS = 200  # estimates per variance point in --train mode


@dataclass
class Problem:
    """A benchmark problem: logits ``theta`` (param shape), per-sample cost and exact gradient."""

    name: str
    family: str
    theta: Tensor                      # param_shape: (D,) Bernoulli, (1, K) categorical
    cost: Callable[[Tensor], Tensor]   # (n, B, *param_shape) -> (n, B)
    outcomes: Tensor                   # every discrete value, (N, *param_shape)
    info: dict

    def expected_cost(self, theta: Tensor) -> Tensor:
        """Exact E[f(b)] by enumeration (differentiable in ``theta``)."""
        law = registry.discrete_law(theta, family=self.family)
        log_p = law.log_prob(self.outcomes).reshape(len(self.outcomes), -1).sum(-1)
        f = self.cost(self.outcomes.unsqueeze(1)).squeeze(1)
        return (log_p.exp() * f).sum()

    def exact_gradient(self, theta: Tensor | None = None) -> Tensor:
        th = (self.theta if theta is None else theta).detach().clone().requires_grad_(True)
        (g,) = torch.autograd.grad(self.expected_cost(th), th)
        return g

    def optimum(self) -> float:
        f = self.cost(self.outcomes.unsqueeze(1)).squeeze(1)
        return float(f.min())


def make_problem(name: str, target: float, categories: int, seed: int, device: torch.device) -> Problem:
    dtype = torch.float32
    if name == "bernoulli-quadratic":
        t = torch.tensor([target], dtype=dtype, device=device)
        theta = torch.zeros(1, dtype=dtype, device=device)
        info = {"target": target}
    elif name == "bernoulli-multi":
        t = torch.tensor(MULTI_TARGETS, dtype=dtype, device=device)
        theta = torch.zeros(3, dtype=dtype, device=device)
        info = {"targets": list(MULTI_TARGETS)}
    else:
        gen = torch.Generator().manual_seed(seed)
        theta = torch.randn(1, categories, generator=gen).to(dtype=dtype, device=device)
        t = torch.rand(1, categories, generator=gen).to(dtype=dtype, device=device)
        outcomes = torch.eye(categories, dtype=dtype, device=device).unsqueeze(1)
        info = {"categories": categories, "cost_vector": t.flatten().tolist()}
        return Problem(name, "categorical", theta, lambda z: ((z - t) ** 2).sum((-2, -1)), outcomes, info)
    d = theta.numel()
    outcomes = torch.tensor(list(product([0.0, 1.0], repeat=d)), dtype=dtype, device=device)
    return Problem(name, "bernoulli", theta, lambda z: ((z - t) ** 2).sum(-1), outcomes, info)


# ----------------------------------------------------------------------------- method selection
def _compatible(method: registry.Method, problem: Problem) -> bool:
    """Can ``method`` run on ``problem``: right family, logits parameters, discrete-shaped samples."""
    if not method.supports(problem.family) or not method.from_logits or method.discrete is None:
        return False
    if method.builder is None:
        return method.estimator is not None
    raw = problem.theta.unsqueeze(0)
    try:
        d = method.build(raw, method.default_tau if method.default_tau is not None else 1.0)
    except NotImplementedError:
        return False
    law = method.discrete(raw, family=problem.family)
    return tuple(d.batch_shape + d.event_shape) == tuple(law.batch_shape + law.event_shape)


def applicable_methods(problem: Problem) -> list[registry.Method]:
    return [m for m in registry.METHODS.values() if _compatible(m, problem)]


def _has_temperature(method: registry.Method) -> bool:
    return method.builder is not None and method.default_tau is not None


def _n_samples(method: registry.Method) -> int:
    return 2 if method.options.get("baseline") == "leave-one-out" else 1


def _parse_taus(tau: str) -> list[float]:
    out = []
    for item in str(tau).replace(" ", "").split(","):
        try:
            x = float(item)
        except ValueError:
            raise BadInput(f"--tau: {item!r} is not a number; give a comma list such as 0.1,0.5,1") from None
        if not (math.isfinite(x) and x > 0):
            raise BadInput(f"--tau: every temperature must be > 0, got {item}")
        out.append(x)
    return out


def _select_methods(names: str | None, problem: Problem) -> list[registry.Method]:
    usable = applicable_methods(problem)
    if not names:
        if not usable:
            raise BadInput(f"no registered method applies to {problem.name}")
        return usable
    chosen = []
    for name in [n.strip() for n in names.split(",") if n.strip()]:
        m = registry.get_method(name)  # unknown -> BadInput with the closest match
        if m not in usable:
            raise BadInput(f"method {name!r} does not apply to {problem.name} ({problem.family} latents); "
                           f"choose from: {', '.join(x.name for x in usable)}")
        chosen.append(m)
    if not chosen:
        raise BadInput("--methods is empty; give a comma list of method names")
    return chosen


# ----------------------------------------------------------------------------- measuring
def _estimator(method, problem: Problem):
    kw = {}
    if method.builder is None:
        kw["family"] = problem.family
        if method.estimator is not None and "network" in method.options:
            kw["latent_size"] = problem.theta.numel()
    return make_estimator(method, n_samples=_n_samples(method), **kw).to(problem.theta.device)


def _batch(problem: Problem, rows: int) -> Tensor:
    return problem.theta.expand((rows,) + problem.theta.shape).clone().requires_grad_(True)


def draw_estimates(est, problem: Problem, draws: int, tau: float | None) -> tuple[Tensor, float]:
    """``draws`` independent estimates (draws, P) at theta and the seconds per estimate."""
    out, seconds = [], 0.0
    for start in range(0, draws, CHUNK):
        rows = min(CHUNK, draws - start)
        raw = _batch(problem, rows)
        t0 = time.perf_counter()
        est(raw, problem.cost, tau).loss.backward()
        seconds += time.perf_counter() - t0
        out.append(raw.grad.reshape(rows, -1) * rows)
    return torch.cat(out).double(), seconds / draws


def tune(est, problem: Problem, steps: int, lr: float = 0.01) -> None:
    """Fit an estimator's own parameters (variance objective) and state at the fixed theta."""
    params = [p for p in est.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr) if params else None
    est.train()
    for _ in range(steps):
        raw = _batch(problem, TUNE_BATCH)
        out = est(raw, problem.cost)
        if opt is not None:
            opt.zero_grad()
        out.loss.backward()
        if opt is not None:
            opt.step()
    est.eval()


def statistics(g: Tensor, exact: Tensor) -> dict:
    mean = g.mean(0)
    bias = mean - exact
    var = g.var(0) if len(g) > 1 else torch.zeros_like(mean)
    trace = float(var.sum())
    return {
        "mean": mean.tolist(), "bias": bias.tolist(), "variance": trace,
        "mse": float(((g - exact) ** 2).sum(1).mean()),
        "snr": float(mean.norm() / math.sqrt(trace)) if trace > 0 else None,
        # not in summary.json: the standard error of the bias, for the table
        "_bias_se": (var / len(g)).sqrt().tolist(),
    }


def _rows(methods, taus) -> list[tuple[registry.Method, float | None]]:
    rows = []
    for m in methods:
        if _has_temperature(m):
            rows.extend((m, t) for t in taus)
        else:
            rows.append((m, None))
    return rows


def _tau_label(tau) -> str:
    return "-" if tau is None else f"{tau:.3g}"


# ----------------------------------------------------------------------------- the runner
def run_grad_bench(*, reporter, problem: str = "bernoulli-quadratic", methods: str | None = None,
                   tau: str = DEFAULT_TAUS, draws: int = 10_000, target: float = 0.45,
                   categories: int = 5, seed: int = 0, train: bool = False, steps: int = 1000,
                   tune_steps: int = 2000, tune_lr: float = 0.1, lr: float = 0.01,
                   out: Path | None = None,
                   overwrite: bool = False, device: str = "auto", threads: int | None = None,
                   tensorboard: bool = False) -> dict:
    # ---- validate everything before the run directory exists
    if tensorboard and not train:
        raise BadInput("--tensorboard draws training curves: it needs --train")
    if problem not in PROBLEMS:
        raise BadInput(f"unknown problem {problem!r}; choose from {', '.join(PROBLEMS)}")
    if draws < 2:
        raise BadInput(f"--draws must be an integer >= 2, got {draws}")
    if not math.isfinite(target):
        raise BadInput(f"--target must be a finite number, got {target}")
    if categories < 2:
        raise BadInput(f"--categories must be >= 2, got {categories}")
    if tune_steps < 0:
        raise BadInput(f"--tune-steps must be >= 0, got {tune_steps}")
    if train and steps < 1:
        raise BadInput(f"--steps must be >= 1, got {steps}")
    if not (math.isfinite(lr) and lr > 0):
        raise BadInput(f"--lr must be > 0, got {lr}")
    if not (math.isfinite(tune_lr) and tune_lr > 0):
        raise BadInput(f"--tune-lr must be > 0, got {tune_lr}")
    taus = _parse_taus(tau)
    try:
        dev = resolve_device(device)
    except ValueError as e:
        raise BadInput(str(e)) from None
    threads = set_threads(threads)
    seed_everything(seed)
    prob = make_problem(problem, target, categories, seed, dev)
    chosen = _select_methods(methods, prob)

    options = {"problem": problem, "methods": [m.name for m in chosen], "tau": taus, "draws": draws,
               "target": target, "categories": categories, "train": train, "steps": steps,
               "tune_steps": tune_steps, "tune_lr": tune_lr, "lr": lr, "problem_info": prob.info,
               "n_samples": {m.name: _n_samples(m) for m in chosen}, "threads": threads}
    run = create_run("grad-bench", problem, options, out=out, overwrite=overwrite, seed=seed,
                     device=str(dev), tensorboard=tensorboard)
    with run_context(run):
        if train:
            summary = _train(run, reporter, prob, chosen, taus, steps, tune_steps, lr, seed)
        else:
            summary = _measure(run, reporter, prob, chosen, taus, draws, tune_steps, tune_lr, seed)
        summary = run.finish(summary)
    reporter.print(f"wrote {run.path}")
    return summary


def _measure(run, reporter, prob: Problem, chosen, taus, draws, tune_steps, tune_lr, seed) -> dict:
    exact = prob.exact_gradient().double().flatten()
    rows = _rows(chosen, taus)
    results, tuned = [], []
    with reporter.progress("grad-bench", total=len(rows)) as bar:
        for i, (m, t) in enumerate(rows):
            torch.manual_seed(seed * 1009 + i)
            est = _estimator(m, prob)
            if any(True for _ in est.parameters()) or any(True for _ in est.buffers()):
                tune(est, prob, tune_steps, tune_lr)
                if any(True for _ in est.parameters()):
                    tuned.append(m.name)
            if t is None and getattr(est, "log_temperature", None) is not None:
                t_used, t_report = None, float(est.log_temperature.detach().exp())  # learned temperature
            else:
                t_used, t_report = t, t
            g, sec = draw_estimates(est, prob, draws, t_used)
            stats = statistics(g, exact)
            row = {"method": m.name, "tau": t_report, "unbiased": m.unbiased, **stats,
                   "seconds_per_estimate": sec, "draws": draws}
            results.append(row)
            run.log_metrics({k: v for k, v in row.items() if not k.startswith("_")})
            bar.advance(1, info=f"{m.name} tau={_tau_label(t_report)}")

    _table(reporter, prob, exact, results, tuned, tune_steps)
    _write_csv(run, results)
    sweeps, refs = _sweep_series(results, chosen)
    fig = plots.gradbench_tau_sweep(sweeps, refs, title=f"grad-bench {prob.name}")
    run.save_figure(fig, "bias_variance_vs_tau.png", dpi=110)
    plots.close(fig)
    return {"problem": prob.name, "parameters": prob.theta.flatten().tolist(),
            "exact_gradient": exact.tolist(),
            "results": [{k: v for k, v in r.items() if not k.startswith("_")} for r in results]}


def _sweep_series(results, chosen):
    """Per relaxed method: tau -> (||bias||, variance); unbiased/untempered ones as references."""
    temp = {m.name for m in chosen if _has_temperature(m)}
    sweeps: dict[str, dict] = {}
    refs: dict[str, dict] = {}
    for r in results:
        bias = math.sqrt(sum(b * b for b in r["bias"]))
        if r["method"] in temp:
            s = sweeps.setdefault(r["method"], {"tau": [], "bias": [], "variance": []})
            s["tau"].append(r["tau"])
            s["bias"].append(bias)
            s["variance"].append(r["variance"])
        else:
            refs[r["method"]] = {"bias": bias, "variance": r["variance"], "unbiased": r["unbiased"],
                                 "tau": r["tau"]}  # a temperature REBAR/RELAX learned, or None
    return sweeps, refs


def _table(reporter, prob, exact, results, tuned, tune_steps) -> None:
    from rich.table import Table

    caption = "bias/SE: largest |bias_i| / standard error over coordinates (> 4: clearly biased)."
    if tuned:
        caption += (f" Tuned for {tune_steps} steps at fixed theta, then frozen: "
                    f"{', '.join(sorted(set(tuned)))} (rebar/relax tau = learned temperature).")
    table = Table(title=f"grad-bench {prob.name}: exact gradient "
                        f"{', '.join(f'{x:.5g}' for x in exact.tolist())}", caption=caption)
    for col in ("method", "tau", "unbiased", "mean", "bias", "bias/SE", "variance", "MSE", "SNR", "us/estimate"):
        table.add_column(col, justify="left" if col == "method" else "right")
    for r in results:
        ratio = max((abs(b) / se if se > 0 else (0.0 if b == 0 else math.inf))
                    for b, se in zip(r["bias"], r["_bias_se"]))
        table.add_row(r["method"], _tau_label(r["tau"]), "yes" if r["unbiased"] else "no",
                      ", ".join(f"{x:.4g}" for x in r["mean"]), ", ".join(f"{x:.2e}" for x in r["bias"]),
                      f"{ratio:.1f}", f"{r['variance']:.3e}", f"{r['mse']:.3e}",
                      "-" if r["snr"] is None else f"{r['snr']:.3g}", f"{1e6 * r['seconds_per_estimate']:.2f}")
    reporter.table(table)


CSV_FIELDS = ("method", "tau", "unbiased", "mean", "bias", "variance", "mse", "snr", "seconds_per_estimate", "draws")


def _write_csv(run, results) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_FIELDS)
    for r in results:
        w.writerow([";".join(f"{x:.8g}" for x in r[k]) if isinstance(r[k], list)
                    else ("" if r[k] is None else r[k]) for k in CSV_FIELDS])
    from relaxcli.runs import atomic_write_text

    atomic_write_text(run.file("results.csv"), buf.getvalue())


# ----------------------------------------------------------------------------- --train
def _train(run, reporter, prob: Problem, chosen, taus, steps, tune_steps, lr, seed) -> dict:
    rows = _rows(chosen, taus)
    every = max(1, steps // 50)
    curves: dict[str, dict] = {}
    methods_of: dict[str, str] = {}  # curve label -> method (its colour in the figure)
    results = []
    with reporter.progress("grad-bench --train", total=len(rows) * steps) as bar:
        for i, (m, t) in enumerate(rows):
            torch.manual_seed(seed * 1009 + i)
            label = m.name if t is None else f"{m.name} tau={t:g}"
            est = _estimator(m, prob)
            theta = prob.theta.detach().clone().requires_grad_(True)
            opt = torch.optim.Adam([theta] + [p for p in est.parameters() if p.requires_grad], lr=lr)
            curve = {"step": [], "loss": [], "log10_variance": []}
            for step in range(steps + 1):
                if step % every == 0 or step == steps:
                    view = Problem(prob.name, prob.family, theta.detach(), prob.cost, prob.outcomes, prob.info)
                    with torch.no_grad():
                        loss = float(prob.expected_cost(theta))
                    est.eval()
                    g, _ = draw_estimates(est, view, VARIANCE_DRAWS, t)
                    est.train()
                    var = float(g.var(0).sum())
                    curve["step"].append(step)
                    curve["loss"].append(loss)
                    curve["log10_variance"].append(math.log10(var) if var > 0 else None)
                    run.log_metrics({"method": m.name, "tau": t, "step": step, "loss": loss, "variance": var},
                                    series=f"tau={_tau_label(t)}")
                if step == steps:
                    break
                out = est(theta.unsqueeze(0), prob.cost, t)
                opt.zero_grad()
                out.loss.backward()
                opt.step()
                bar.advance(1, info=label)
            curves[label] = curve
            methods_of[label] = m.name
            results.append({"method": m.name, "tau": t, "unbiased": m.unbiased,
                            "final_loss": curve["loss"][-1], "optimal_loss": prob.optimum(),
                            "final_parameters": theta.detach().flatten().tolist(),
                            "final_log10_variance": curve["log10_variance"][-1], "steps": steps})
    from rich.table import Table

    table = Table(title=f"grad-bench --train {prob.name}: {steps} Adam steps (lr {lr:g}), one estimate per step")
    for col in ("method", "tau", "final loss", "optimum", "final theta", "log10 variance"):
        table.add_column(col)
    for r in results:
        table.add_row(r["method"], _tau_label(r["tau"]), f"{r['final_loss']:.5f}", f"{r['optimal_loss']:.5f}",
                      ", ".join(f"{x:.3g}" for x in r["final_parameters"]),
                      "-" if r["final_log10_variance"] is None else f"{r['final_log10_variance']:.2f}")
    reporter.table(table)
    fig = plots.gradbench_training(curves, optimum=prob.optimum(), title=f"grad-bench --train {prob.name}",
                                   methods=methods_of)
    run.save_figure(fig, "training.png", dpi=110)
    plots.close(fig)
    return {"problem": prob.name, "parameters": prob.theta.flatten().tolist(),
            "exact_gradient": prob.exact_gradient().flatten().tolist(), "results": results}
