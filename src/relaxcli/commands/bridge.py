"""``relax bridge``: the Laplace bridge demo (Hobbhahn, Kristiadi, Hennig 2022, arXiv 2003.01227).

Reads top to bottom: parse alpha (or draw it from the seed), map Dir(alpha) to its logistic-normal
approximation ``softmax(N(mu, diag(Sigma)))`` and that back to a Dirichlet(alpha') with
:mod:`relaxcli.bridge`, then measure how close they are:

* moments per coordinate: exact for both Dirichlets (mean alpha_k/alpha_0, variance
  alpha_k(alpha_0 - alpha_k)/(alpha_0^2(alpha_0 + 1))); Monte Carlo for the logistic normal, with
  standard errors (mean: std/sqrt(n); variance: std of the squared deviations / sqrt(n));
* KL(Dir || LN) and KL(LN || Dir) by Monte Carlo with exact log densities on both sides, with
  standard errors; KL(Dir || Dir') exactly (0 up to rounding: the round trip is exact);
* for K = 3: heatmaps of the three densities on the 2-simplex with one colour scale.

Float64 throughout: logistic-normal samples can sit very close to the simplex's edges, where
float32 log densities lose every digit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.distributions import Dirichlet, kl_divergence

from relaxcli import bridge as lb
from relaxcli.commands._parse import parse_rows
from relaxcli.console import Reporter
from relaxcli.errors import BadInput
from relaxcli.options import RunOptions, option
from relaxcli.report import Metric, Report, declare_report
from relaxcli.runs import create_run, resolve_device, run_context, seed_everything, set_threads

DEFAULT_ALPHA = [2.0, 5.0, 9.0]
RANDOM_RANGE = (0.5, 20.0)  # --random: alpha_k log-uniform in this range
DTYPE = torch.float64
CHUNK = 200_000
DEFAULT_RANDOM_DIM = 3

# What `relax compare` reads from these runs (relaxcli.report): every numeric summary key.
REPORT = declare_report(Report(
    command="bridge",
    metrics=(Metric("round_trip_max_abs_error", label="round-trip max |Δα|", better="lower"),),
    default_metrics=None,
))


def parse_alpha(alpha: str | None, random: bool, dim: int | None) -> list[float] | None:
    """The user's alpha (validated), the default, or None when it is to be drawn at random."""
    if alpha is not None and random:
        raise BadInput("give either --alpha or --random, not both")
    if dim is not None and not random:
        raise BadInput("--dim sets the number of categories of --random; without --random the "
                       "categories are those of --alpha (default 2,5,9): add --random, or give "
                       "--alpha with as many numbers as categories")
    if random:
        dim = DEFAULT_RANDOM_DIM if dim is None else dim
        if dim < 2:
            raise BadInput(f"--dim must be at least 2 categories, got {dim}")
        return None
    if alpha is None:
        return list(DEFAULT_ALPHA)
    rows = parse_rows(alpha, "--alpha")
    if len(rows) != 1:
        raise BadInput("--alpha takes one comma list (a single Dirichlet), not ';'-separated rows")
    values = rows[0]
    if len(values) < 2:
        raise BadInput(f"--alpha needs at least 2 categories, got {len(values)}")
    for a in values:
        if not a > 0:
            raise BadInput(f"--alpha: {a:g} is not a valid concentration; every alpha_k must be > 0")
    return values


def dirichlet_moments(alpha: torch.Tensor) -> dict:
    a0 = alpha.sum(-1, keepdim=True)
    return {"mean": alpha / a0, "variance": alpha * (a0 - alpha) / (a0**2 * (a0 + 1))}


def monte_carlo_moments(dist, n: int) -> dict:
    """Per-coordinate mean and variance of ``dist`` from ``n`` samples, with standard errors."""
    chunks = []
    done = 0
    while done < n:
        size = min(CHUNK, n - done)
        with torch.no_grad():
            chunks.append(dist.sample((size,)))
        done += size
    z = torch.cat(chunks, 0)
    mean = z.mean(0)
    dev2 = (z - mean) ** 2
    var = z.var(0)
    return {"mean": mean, "mean_se": z.std(0) / math.sqrt(n), "variance": var,
            "variance_se": dev2.std(0) / math.sqrt(n), "num_samples": n}


def _kl(p, q, n: int) -> dict:
    """A Monte-Carlo KL with its standard error and, when it is not a clean positive number, a
    note saying what it means (a KL is never negative: a negative estimate is noise)."""
    est, se = lb.kl_monte_carlo(p, q, num_samples=n)
    est, se = float(est), float(se)
    rec = {"estimate": est, "se": se, "num_samples": n, "note": None}
    if not (math.isfinite(est) and math.isfinite(se)):
        rec["note"] = ("not estimable: the log-density ratio is not finite at some samples "
                       "(extreme alpha); no KL is reported")
    elif est < 0:
        rec["note"] = (f"the estimate {est:.3g} +/- {se:.2g} is negative, which a KL never is: it "
                       "is Monte-Carlo noise around a KL close to 0" if est > -3 * se else
                       f"the estimate {est:.3g} +/- {se:.2g} is negative beyond 3 standard errors, "
                       "which a KL never is: the log-density ratio is too heavy-tailed here "
                       "(extreme alpha) for this estimate to mean anything; try a larger -n")
    return rec


def kl_text(name: str, rec: dict) -> str:
    """``KL(..) = 0.0123 +/- 0.0004``, or what a non-finite / negative estimate means."""
    if not (math.isfinite(rec["estimate"]) and math.isfinite(rec["se"])):
        return f"{name}: not estimable by Monte Carlo here (non-finite log-density ratio)"
    if rec["estimate"] < 0:
        return (f"{name}: indistinguishable from 0 (Monte-Carlo estimate {rec['estimate']:.3g} "
                f"+/- {rec['se']:.2g} is noise; a KL is never negative)"
                if rec["estimate"] > -3 * rec["se"] else
                f"{name}: unreliable (Monte-Carlo estimate {rec['estimate']:.3g} +/- "
                f"{rec['se']:.2g} is negative; the log-ratio is too heavy-tailed, try a larger -n)")
    return f"{name} = {rec['estimate']:.4f} +/- {rec['se']:.4f} (Monte Carlo)"


def bridge_plots(run, dirichlet, logistic_normal, back, title: str) -> list[str]:
    from relaxcli import plots

    points, triangles = plots.simplex_lattice(120)
    x = torch.as_tensor(points, dtype=DTYPE, device=dirichlet.concentration.device)
    dens = {}
    for name, d in (("Dirichlet(alpha)", dirichlet), ("logistic normal approximation", logistic_normal),
                    ("Dirichlet back-approximation", back)):
        with torch.no_grad():
            dens[name] = d.log_prob(x).exp().cpu().numpy()
    # One colour scale for all three; the 99.5th percentile keeps an unbounded corner
    # (alpha_k < 1) from washing out the rest of the picture.
    import numpy as np

    vmax = float(max(np.percentile(v[np.isfinite(v)], 99.5) for v in dens.values()))
    files = []
    for (name, v), fname in zip(dens.items(), ("dirichlet.png", "logistic_normal.png",
                                               "dirichlet_back.png")):
        fig = plots.simplex_heatmap(points, triangles, v, vmax, title=name)
        files.append(run.save_figure(fig, fname).name)
        plots.close(fig)
    fig = plots.simplex_heatmaps(points, triangles, dens, vmax, title=title)
    files.append(run.save_figure(fig, "bridge.png").name)
    plots.close(fig)
    return files


@dataclass(kw_only=True)
class BridgeOptions(RunOptions):
    """Laplace bridge: Dir(alpha) -> logistic normal (mu, Sigma) -> Dirichlet (alpha').

    Writes summary.json (mu, Sigma, alpha', moments of each, Monte Carlo KL estimates with
    standard errors) and, for K = 3, simplex heatmaps on one colour scale: dirichlet.png,
    logistic_normal.png, dirichlet_back.png and bridge.png (all three).
    """

    alpha: str | None = option(None, "--alpha", show_default=False, help=(
        "Dirichlet concentration, a comma list of K >= 2 positive numbers (default 2,5,9)."))
    random: bool = option(False, "--random", help=(
        "Draw alpha at random from --seed instead (log-uniform in [0.5, 20]), with --dim categories."))
    dim: int | None = option(None, "--dim", show_default=False, help=(
        "Number of categories K for --random (default 3); refused without --random (--alpha fixes K then)."))
    num_samples: int = option(100_000, "--num-samples", "-n", help=(
        "Monte Carlo samples for the moments and KL estimates."))


def run_bridge(options: BridgeOptions, reporter: Reporter | None = None) -> dict:
    """Laplace bridge Dir(alpha) -> LN(mu, Sigma) -> Dir(alpha'); returns the summary dict."""
    o, reporter = options, reporter or Reporter(quiet=True)
    values = parse_alpha(o.alpha, o.random, o.dim)  # everything checked before the run exists
    if o.num_samples < 2:
        raise BadInput(f"--num-samples must be at least 2 (for standard errors), got {o.num_samples}")
    dev = resolve_device(o.device)
    threads = set_threads(o.threads)
    seed_everything(o.seed)
    values = values if values is not None else random_alpha(o.dim)
    dirichlet = Dirichlet(torch.tensor(values, dtype=DTYPE, device=dev))
    logistic_normal = lb.laplace_bridge(dirichlet)
    back = lb.laplace_bridge(logistic_normal)
    config = {"alpha": values, "random": o.random, "dim": len(values), "num_samples": o.num_samples,
              "seed": o.seed, "device_requested": o.device, "device": str(dev), "threads": threads}
    run = create_run("bridge", None, config, out=o.out, overwrite=o.overwrite, seed=o.seed,
                     device=str(dev))
    with run_context(run):
        summary = measure(dirichlet, logistic_normal, back, o.num_samples, o.seed)
        summary.update(pictures(run, reporter, dirichlet, logistic_normal, back, values))
        reporter.table(_table(summary))
        kl = summary["kl"]
        reporter.print(kl_text("KL(Dir || LN)", kl["dirichlet_to_logistic_normal"]) + "; "
                       + kl_text("KL(LN || Dir)", kl["logistic_normal_to_dirichlet"])
                       + f"; {o.num_samples} samples; round trip alpha -> (mu, Sigma) -> alpha' max "
                       f"error {summary['round_trip_max_abs_error']:.2e}", highlight=False)
        summary = run.finish(summary)
        reporter.print(f"wrote {run.path}", highlight=False)
    return summary


def random_alpha(dim: int | None) -> list[float]:
    """--random: alpha_k log-uniform in RANDOM_RANGE, drawn from the seeded global generator."""
    lo, hi = math.log(RANDOM_RANGE[0]), math.log(RANDOM_RANGE[1])
    n_cat = DEFAULT_RANDOM_DIM if dim is None else dim
    return [round(math.exp(lo + (hi - lo) * u), 3) for u in torch.rand(n_cat).tolist()]


def measure(dirichlet, logistic_normal, back, num_samples: int, seed: int) -> dict:
    """Moments of the three laws and the KLs between them (Monte Carlo with standard errors)."""
    a, alpha_back = dirichlet.concentration, back.concentration
    scale = logistic_normal.scale
    return {
        "alpha": a, "K": a.shape[-1], "mu": logistic_normal.loc,
        "Sigma": torch.diag_embed(scale**2), "scale": scale, "alpha_back": alpha_back,
        "round_trip_max_abs_error": float((alpha_back - a).abs().max()),
        "moments": {
            "dirichlet": dirichlet_moments(a),
            "logistic_normal": monte_carlo_moments(logistic_normal, num_samples),
            "dirichlet_back": dirichlet_moments(alpha_back),
        },
        "kl": {
            "dirichlet_to_logistic_normal": _kl(dirichlet, logistic_normal, num_samples),
            "logistic_normal_to_dirichlet": _kl(logistic_normal, dirichlet, num_samples),
            "dirichlet_to_dirichlet_back_exact": float(kl_divergence(dirichlet, back)),
        },
        "seed": seed,
    }


def pictures(run, reporter, dirichlet, logistic_normal, back, values) -> dict:
    """The simplex heatmaps (K = 3 only; otherwise a note saying so)."""
    if len(values) == 3:
        title = "alpha = (" + ", ".join(f"{v:g}" for v in values) + ")"
        return {"files": bridge_plots(run, dirichlet, logistic_normal, back, title=title)}
    note = f"plots are drawn only for K = 3 categories (here K = {len(values)}); numbers only"
    reporter.note(note)
    return {"files": [], "plots_skipped": note}


def _table(summary: dict):
    from rich import box
    from rich.table import Table

    t = Table(title=f"Laplace bridge, K = {summary['K']} (LN moments by Monte Carlo)",
              box=box.SIMPLE_HEAD, padding=(0, 1))
    # Narrow headers so the table fits 80 columns; "LN" values are Monte Carlo estimates.
    for col in ("k", "alpha", "mu", "Sigma_kk", "alpha'", "E Dir", "E LN", "Var Dir", "Var LN"):
        t.add_column(col, justify="right", no_wrap=True)
    mom = summary["moments"]
    for i in range(summary["K"]):
        t.add_row(str(i), f"{float(summary['alpha'][i]):.4g}", f"{float(summary['mu'][i]):.4f}",
                  f"{float(summary['scale'][i]) ** 2:.4f}", f"{float(summary['alpha_back'][i]):.4g}",
                  f"{float(mom['dirichlet']['mean'][i]):.4f}",
                  f"{float(mom['logistic_normal']['mean'][i]):.4f}",
                  f"{float(mom['dirichlet']['variance'][i]):.4f}",
                  f"{float(mom['logistic_normal']['variance'][i]):.4f}")
    return t
