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
from dataclasses import dataclass

import torch

from relaxcli import methods as registry
from relaxcli import plots
from relaxcli.errors import BadInput
from relaxcli.estimators import make_estimator
from relaxcli.options import RunOptions, option
from relaxcli.problems import Problem, ProblemName, draw_estimates, make_problem, statistics, tune
from relaxcli.report import Metric, Report, Rows, declare_report, fmt_value
from relaxcli.runs import create_run, resolve_device, run_context, seed_everything, set_threads

DEFAULT_TAUS = "0.05,0.1,0.2,0.5,1,2"
VARIANCE_DRAWS = 200  # estimates per variance point in --train mode


# ------------------------------------------------------------ what `relax compare` reads (report)
def _compare_tau(options: dict, row: dict, key: str):
    """A result row's group value. A tau the bench did not sweep was learned by the method itself
    (REBAR/RELAX tune theirs), differs from seed to seed, and is grouped as "learned"."""
    v = row.get(key)
    swept = options.get("tau")
    if key == "tau" and isinstance(v, (int, float)) and isinstance(swept, list) and not any(
            isinstance(t, (int, float)) and math.isclose(v, t, rel_tol=1e-9) for t in swept):
        return "learned"
    return v


def _compare_figure(keys: list[str], groups: list[dict]) -> tuple[str, dict] | None:
    """Per problem (the non-row group keys): each method's ||bias|| and variance over runs against
    tau for tempered methods, one point for the others (plots.gradbench_problems); with the
    variance alone (--metric without bias_norm), variance against tau (plots.compare_curves)."""
    def value(g, m):
        s = g["metrics"].get(m)
        return (None, None) if s is None or s["mean"] is None else (s["mean"], s["std"] or 0.0)

    if not any(value(g, "variance_trace")[0] is not None for g in groups):
        return None
    has_bias = any(value(g, "bias_norm")[0] is not None for g in groups)
    problems: dict[str, tuple[dict, dict]] = {}
    for g in groups:
        var, var_sd = value(g, "variance_trace")
        if var is None:
            continue
        bias, bias_sd = value(g, "bias_norm")
        problem = ", ".join(fmt_value(g["key"][k]) for k in keys)
        sweeps, refs = problems.setdefault(problem, ({}, {}))
        method, tau = g["key"].get("method"), g["key"].get("tau")
        unbiased = method in registry.METHODS and registry.get_method(method).unbiased
        if isinstance(tau, (int, float)) and not isinstance(tau, bool):
            s = sweeps.setdefault(method, {"tau": [], "bias": [], "variance": [], "bias_std": [],
                                           "variance_std": []})
            for k, v in (("tau", float(tau)), ("bias", bias), ("variance", var),
                         ("bias_std", bias_sd), ("variance_std", var_sd)):
                s[k].append(v)
        else:  # no temperature, or one the method learned ("learned")
            refs[method] = {"bias": bias, "variance": var, "unbiased": unbiased, "tau": tau,
                            "bias_std": bias_sd, "variance_std": var_sd}
    if not has_bias:
        lines = {m: {"x": s["tau"], "mean": s["variance"], "std": s["variance_std"]}
                 for sw, _ in problems.values() for m, s in sw.items()}
        refs = {m: r["variance"] for _, rf in problems.values() for m, r in rf.items()}
        return "compare_curves", {
            "lines": lines, "references": refs, "xlabel": "temperature τ",
            "ylabel": "variance (trace) of the gradient estimate",
            "title": "grad-bench: variance against temperature", "logx": True, "logy": True,
            "better": "lower", "value_name": "at the largest τ"}
    for sweeps, _ in problems.values():
        for s in sweeps.values():  # points in the order of tau
            order = sorted(range(len(s["tau"])), key=lambda i: s["tau"][i])
            for k in s:
                s[k] = [s[k][i] for i in order]
    return "gradbench_problems", {
        "problems": problems,
        "title": "grad-bench: bias and variance of each gradient estimator, mean ± std over runs",
    }


# One comparison row per (method, tau) result; vectors become numbers: ||bias||_2, the trace of
# the covariance (sum of per-coordinate variances), MSE summed over coordinates, the mean SNR.
REPORT = declare_report(Report(
    command="grad-bench",
    metrics=(
        Metric("bias_norm", label="‖bias‖", better="lower", source="bias", reduce="norm"),
        Metric("variance_trace", label="tr variance", better="lower", source="variance",
               reduce="sum"),
        Metric("mse", label="MSE", better="lower", reduce="sum"),
        Metric("snr", label="SNR", better="higher", reduce="mean"),
        Metric("seconds_per_estimate", label="s/estimate", better="lower", reduce="norm"),
        Metric("variance", reduce="sum"),
    ),
    default_metrics=("bias_norm", "variance_trace", "mse", "snr", "seconds_per_estimate"),
    group_by=("problem",),
    # the rows' methods and temperatures, the seed-drawn problem_info, the budget of draws
    averaged_over=frozenset({"methods", "tau", "problem_info", "n_samples"}),
    rows=Rows(field="results", keys=("method", "tau"), key_value=_compare_tau),
    default_reduce="norm",  # bias, mean, exact_gradient: the Euclidean norm
    figure=_compare_figure,
    table_note="‖bias‖ is the Euclidean norm of the bias vector, tr variance the sum of "
               "per-coordinate variances.",
))


# ----------------------------------------------------------------------------- method selection
def _compatible(method: registry.Method, problem: Problem) -> bool:
    """Can ``method`` run on ``problem``: right family, logits parameters, samples in the space
    of the discrete law (the problem's cost is a function of such points), and the same
    discrete law as the problem's, whose exact gradient is the reference (the Gumbel top-k set
    law is not the exactly-k law of ksubset-quadratic, though both are laws of 2-subsets)."""
    if not (method.supports(problem.family) and method.from_logits and method.discrete is not None
            and method.sample_in_law_space):
        return False
    theta = problem.theta.unsqueeze(0)
    return type(method.discrete_law(theta, problem.family)) is type(problem.law(theta))


def applicable_methods(problem: Problem) -> list[registry.Method]:
    return [m for m in registry.METHODS.values() if _compatible(m, problem)]


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
def _estimator(method, problem: Problem, settings: dict):
    kw = {"latent_size": problem.theta.numel()} if method.needs_latent_size else {}
    return make_estimator(method, n_samples=method.min_samples, family=problem.family,
                          **kw, **settings.get(method.name, {})).to(problem.theta.device)


def _parse_settings(items: list[str] | None, chosen, problem: Problem) -> dict[str, dict]:
    """--setting for the chosen methods ({method: {key: value}}), each tried on the problem's
    logits; a method whose settings move its discrete law off the problem's outcomes (a subset
    size other than the problem's k) is bad input, since the exact gradient would not be its."""
    settings = registry.parse_method_settings(chosen, items, categories=problem.theta.shape[-1],
                                              family=problem.family)
    theta = problem.theta.unsqueeze(0)
    for m in chosen:
        if m.name not in settings:
            continue
        law = m.discrete_law(theta, problem.family, **settings[m.name])
        try:
            log_p = law.log_prob(problem.outcomes).reshape(len(problem.outcomes), -1).sum(-1)
            mass = float(log_p.exp().sum())
        except (ValueError, RuntimeError):
            mass = math.nan
        if not math.isclose(mass, 1.0, rel_tol=1e-4):
            given = " ".join(f"{k}={registry.format_setting(v)}" for k, v in settings[m.name].items())
            fixed = f" ({problem.name} has k={problem.info['k']})" if "k" in problem.info else ""
            raise BadInput(f"--setting {given}: {m.name}'s discrete law is then not {problem.name}'s, "
                           f"whose exact gradient grad-bench compares with{fixed}")
    return settings


def _settings_label(settings: dict, name: str) -> str:
    return " ".join(f"{k}={registry.format_setting(v)}" for k, v in settings.get(name, {}).items())






def _rows(methods, taus) -> list[tuple[registry.Method, float | None]]:
    rows = []
    for m in methods:
        if m.has_temperature:
            rows.extend((m, t) for t in taus)
        else:
            rows.append((m, None))
    return rows


def _tau_label(tau) -> str:
    return "-" if tau is None else f"{tau:.3g}"


# ----------------------------------------------------------------------------- the runner
@dataclass(kw_only=True)
class GradBenchOptions(RunOptions):
    """Bias, variance, MSE, SNR and speed of every gradient estimator against the exact gradient.

    Writes summary.json, results.csv and bias_variance_vs_tau.png (training.png with --train).
    """

    problem: ProblemName = option(ProblemName.BERNOULLI_QUADRATIC, "--problem", help=(
        "bernoulli-quadratic (E[(b - t)^2], RELAX's toy), categorical-quadratic (K categories, "
        "random cost vector from --seed) or bernoulli-multi (sum_i (b_i - p_i)^2, p = 0.6, 0.51, "
        "0.48). Exact gradients by enumeration."))
    methods: str | None = option(None, "--methods", show_default=False, help=(
        "Comma list of registry methods (see 'relax list'); default: every method that applies "
        "to the problem's family."))
    tau: str = option(DEFAULT_TAUS, "--tau", help=(
        "Comma list of temperatures (> 0) swept for methods with a temperature; methods that "
        "learn theirs (REBAR, RELAX) use the learned one."))
    draws: int = option(10_000, "--draws", help="Independent gradient estimates per method and temperature (>= 2).")
    target: float = option(0.45, "--target", help=(
        "t in bernoulli-quadratic's (b - t)^2 (0.45 and 0.499 are RELAX's)."))
    categories: int = option(5, "--categories", help="K for categorical-quadratic (>= 2).")
    tune_steps: int = option(2000, "--tune-steps", help=(
        "Adam steps that fit estimators' own parameters (baselines, REBAR's eta and temperature, "
        "RELAX's network) at the fixed theta before they are frozen."))
    tune_lr: float = option(0.1, "--tune-lr", help=(
        "Adam learning rate of that tuning (REBAR's best eta and temperature on the toy problem "
        "are in the hundreds, so a slow rate never reaches them)."))
    train: bool = option(False, "--train", help=(
        "Instead of measuring at fixed theta, optimise theta with each method for --steps steps "
        "and plot the loss and gradient variance (RELAX's toy figure)."))
    steps: int = option(1000, "--steps", help="Optimisation steps in --train mode.")
    lr: float = option(0.01, "--lr", help=(
        "Adam learning rate of theta and the estimators' parameters in --train mode."))
    tensorboard: bool = option(False, "--tensorboard", help=(
        "With --train: also write TensorBoard event files of the training curves beside "
        "metrics.jsonl (pip install tensorboard); `tensorboard --logdir runs` shows them."))
    settings: list[str] | None = option(None, "--setting", show_default=False, metavar="KEY=VALUE", help=(
        "A method setting KEY=VALUE, repeatable, typed like its default (integer, number, word, "
        "true/false): it applies to every chosen method that takes KEY (at least one must); "
        "METHOD:KEY=VALUE sets one method's only (and wins over KEY=VALUE). E.g. --methods "
        "gumbel-rao --setting M=100. Recorded in config.json's settings. Settings (defaults): "
        + registry.settings_overview() + "."))


def run_grad_bench(options: GradBenchOptions, reporter) -> dict:
    """Measure (or, with --train, optimise with) every chosen estimator on one exact problem."""
    o = options
    taus = _validate(o)  # everything checked before the run directory exists
    try:
        dev = resolve_device(o.device)
    except ValueError as e:
        raise BadInput(str(e)) from None
    threads = set_threads(o.threads)
    seed_everything(o.seed)
    prob = make_problem(str(o.problem), o.target, o.categories, o.seed, dev)
    chosen = _select_methods(o.methods, prob)
    settings = _parse_settings(o.settings, chosen, prob)
    config = {"problem": str(o.problem), "methods": [m.name for m in chosen], "tau": taus,
              "draws": o.draws, "target": o.target, "categories": o.categories, "train": o.train,
              "steps": o.steps, "tune_steps": o.tune_steps, "tune_lr": o.tune_lr, "lr": o.lr,
              "problem_info": prob.info, "n_samples": {m.name: m.min_samples for m in chosen},
              "threads": threads, "settings": settings}
    run = create_run("grad-bench", str(o.problem), config, out=o.out, overwrite=o.overwrite,
                     seed=o.seed, device=str(dev), tensorboard=o.tensorboard)
    with run_context(run):
        if o.train:
            summary = _train(run, reporter, prob, chosen, settings, taus, o.steps, o.tune_steps,
                             o.lr, o.seed)
        else:
            summary = _measure(run, reporter, prob, chosen, settings, taus, o.draws, o.tune_steps,
                               o.tune_lr, o.seed)
        summary = run.finish(summary)
    reporter.print(f"wrote {run.path}")
    return summary


def _validate(o: GradBenchOptions) -> list[float]:
    """One clear line (exit 2) for any unusable option; the temperatures to sweep."""
    checks = [
        (o.draws >= 2, f"--draws must be an integer >= 2, got {o.draws}"),
        (o.categories >= 2, f"--categories must be >= 2, got {o.categories}"),
        (o.tune_steps >= 0, f"--tune-steps must be >= 0, got {o.tune_steps}"),
        (not o.train or o.steps >= 1, f"--steps must be >= 1, got {o.steps}"),
        (o.lr > 0, f"--lr must be > 0, got {o.lr}"),
        (o.tune_lr > 0, f"--tune-lr must be > 0, got {o.tune_lr}"),
        (o.train or not o.tensorboard, "--tensorboard draws training curves: it needs --train"),
    ]
    for ok, message in checks:
        if not ok:
            raise BadInput(message)
    return _parse_taus(o.tau)


def _measure(run, reporter, prob: Problem, chosen, settings, taus, draws, tune_steps, tune_lr,
             seed) -> dict:
    exact = prob.exact_gradient().double().flatten()
    rows = _rows(chosen, taus)
    results, tuned = [], []
    with reporter.progress("grad-bench", total=len(rows)) as bar:
        for i, (m, t) in enumerate(rows):
            torch.manual_seed(seed * 1009 + i)
            est = _estimator(m, prob, settings)
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
                   "seconds_per_estimate": sec, "draws": draws,
                   "settings": settings.get(m.name, {})}
            results.append(row)
            run.log_metrics({k: v for k, v in row.items() if not k.startswith("_")})
            bar.advance(1, info=f"{m.name} tau={_tau_label(t_report)}")

    _table(reporter, prob, exact, results, tuned, tune_steps, settings)
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
    temp = {m.name for m in chosen if m.has_temperature}
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


def _table(reporter, prob, exact, results, tuned, tune_steps, settings) -> None:
    from rich.table import Table

    caption = "bias/SE: largest |bias_i| / standard error over coordinates (> 4: clearly biased)."
    if tuned:
        caption += (f" Tuned for {tune_steps} steps at fixed theta, then frozen: "
                    f"{', '.join(sorted(set(tuned)))} (a tau shown for a method without one is the "
                    "temperature it learned).")
    table = Table(title=f"grad-bench {prob.name}: exact gradient "
                        f"{', '.join(f'{x:.5g}' for x in exact.tolist())}", caption=caption)
    for col in ("method", "tau", "unbiased", "mean", "bias", "bias/SE", "variance", "MSE", "SNR", "us/estimate"):
        table.add_column(col, justify="left" if col == "method" else "right")
    for r in results:
        ratio = max((abs(b) / se if se > 0 else (0.0 if b == 0 else math.inf))
                    for b, se in zip(r["bias"], r["_bias_se"]))
        label = " ".join(filter(None, (r["method"], _settings_label(settings, r["method"]))))
        table.add_row(label, _tau_label(r["tau"]), "yes" if r["unbiased"] else "no",
                      ", ".join(f"{x:.4g}" for x in r["mean"]), ", ".join(f"{x:.2e}" for x in r["bias"]),
                      f"{ratio:.1f}", f"{r['variance']:.3e}", f"{r['mse']:.3e}",
                      "-" if r["snr"] is None else f"{r['snr']:.3g}", f"{1e6 * r['seconds_per_estimate']:.2f}")
    reporter.table(table)


CSV_FIELDS = ("method", "settings", "tau", "unbiased", "mean", "bias", "variance", "mse", "snr",
              "seconds_per_estimate", "draws")


def _csv_cell(value) -> str:
    """A result field as CSV text: vectors joined by ';', a method's --setting values as
    ``KEY=VALUE`` joined by ';' (empty: the defaults), None as empty."""
    if isinstance(value, dict):
        return ";".join(f"{k}={registry.format_setting(v)}" for k, v in value.items())
    if isinstance(value, list):
        return ";".join(f"{x:.8g}" for x in value)
    return "" if value is None else value


def _write_csv(run, results) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_FIELDS)
    for r in results:
        w.writerow([_csv_cell(r.get(k)) for k in CSV_FIELDS])
    from relaxcli.runs import atomic_write_text

    atomic_write_text(run.file("results.csv"), buf.getvalue())


# ----------------------------------------------------------------------------- --train
def _train(run, reporter, prob: Problem, chosen, settings, taus, steps, tune_steps, lr,
           seed) -> dict:
    rows = _rows(chosen, taus)
    every = max(1, steps // 50)
    curves: dict[str, dict] = {}
    methods_of: dict[str, str] = {}  # curve label -> method (its colour in the figure)
    results = []
    with reporter.progress("grad-bench --train", total=len(rows) * steps) as bar:
        for i, (m, t) in enumerate(rows):
            torch.manual_seed(seed * 1009 + i)
            label = m.name if t is None else f"{m.name} tau={t:g}"
            est = _estimator(m, prob, settings)
            theta = prob.theta.detach().clone().requires_grad_(True)
            opt = torch.optim.Adam([theta] + [p for p in est.parameters() if p.requires_grad], lr=lr)
            curve = {"step": [], "loss": [], "log10_variance": []}
            for step in range(steps + 1):
                if step % every == 0 or step == steps:
                    view = prob.at(theta.detach())
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
                            "final_log10_variance": curve["log10_variance"][-1], "steps": steps,
                            "settings": settings.get(m.name, {})})
    from rich.table import Table

    table = Table(title=f"grad-bench --train {prob.name}: {steps} Adam steps (lr {lr:g}), one estimate per step")
    for col in ("method", "tau", "final loss", "optimum", "final theta", "log10 variance"):
        table.add_column(col)
    for r in results:
        table.add_row(" ".join(filter(None, (r["method"], _settings_label(settings, r["method"])))),
                      _tau_label(r["tau"]), f"{r['final_loss']:.5f}", f"{r['optimal_loss']:.5f}",
                      ", ".join(f"{x:.3g}" for x in r["final_parameters"]),
                      "-" if r["final_log10_variance"] is None else f"{r['final_log10_variance']:.2f}")
    reporter.table(table)
    fig = plots.gradbench_training(curves, optimum=prob.optimum(), title=f"grad-bench --train {prob.name}",
                                   methods=methods_of)
    run.save_figure(fig, "training.png", dpi=110)
    plots.close(fig)
    return {"problem": prob.name, "parameters": prob.theta.flatten().tolist(),
            "exact_gradient": prob.exact_gradient().flatten().tolist(), "results": results}
