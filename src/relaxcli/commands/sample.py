"""``relax sample METHOD``: draw samples from one registry method and show what they look like.

Reads top to bottom: parse and validate the parameters (bad input -> exit 2 before any file is
written), build the distribution through the registry (this runner never names a distribution
class), draw ``num_samples`` samples, compute per-coordinate statistics next to the closed forms
the distribution (or METHODS.md) gives, then save ``samples.pt``, ``stats.json``, the plots and
``summary.json``.

Parameters, per kind of method (see ``relax sample --help``):

* Bernoulli family (``raw`` = logits): ``--probs p1,p2,...`` or ``--logits``; one Bernoulli unit
  per value. For ``gaussian-bernoulli`` the registry maps the logits so that
  ``P(z > 1/2) = p``; ``--scale`` is the gate's noise scale.
* Categorical / subset family (``raw`` = logits of Categorical(softmax(raw))): ``--probs`` is
  one probability vector (summing to 1), ``--logits`` any real vector; ``--k`` for ``topk``.
* Methods whose parameters are not logits (``invertible-gaussian``, ``logistic-normal``): ``--loc``
  and ``--scale`` of the Gaussian (K - 1 numbers for IGR, K for the logistic normal).

Rows of a batch are separated by ``;`` (``--probs "0.2,0.4,0.4;0.3,0.5,0.2"``). With no
parameters, ``relax sample correlated-bernoulli`` reproduces METHODS.md's worked example.

Closed forms shown next to the empirical values (the "exact" columns), each exact for the
sampler at the chosen temperature, not only in a limit:

* whatever the distribution offers itself: ``mean``, ``variance``, ``prob_zero``, ``prob_one``,
  ``prob_nonzero``, ``marginal_probs()``, ``pairwise_joint_probs()`` (duck-typed);
* methods the registry marks ``rounds_to_discrete`` (binary Concrete:
  ``sigmoid((l + L)/tau) > 1/2`` iff ``l + L > 0``; hard concrete with symmetric stretch; the
  Gaussian gate by the registry's construction; Gumbel-max for the argmax of the Gumbel-softmax
  family): ``P(z > 1/2)`` or ``P(argmax z = k)`` are the discrete law's probabilities; the copula's
  marginals come from its own ``marginal_probs()`` (``U_k > 1 - pi_k``);
* top-k: inclusion probabilities of its discrete law (``inclusion_probs()``, exact enumeration of
  the C(K, k) subsets) when that enumeration is small (C(K, k) * K * rows <=
  :data:`MAX_ENUMERATION_VALUES`); otherwise they are not computed, and the empirical inclusion
  frequencies are reported as Monte-Carlo estimates with their standard errors
  (``p_included_se``; ``summary["inclusion_probs"]`` says which);
* the copula's pairwise ``P(m_i > 1/2, m_j > 1/2) = Phi_2(Phi^-1(pi_i), Phi^-1(pi_j); R_ij)``.

Each empirical probability gets a z-score ``(p_hat - p) / sqrt(p (1 - p) / n)``; the summary
reports the largest ``|z|`` so a user sees at a glance that the sampler is right.

Large inputs (memory bound): the samples are held in memory as float64, so a run keeps at most
:data:`MAX_SAMPLE_VALUES` = 20 million sample values (160 MB; with the statistics' temporaries
about 1.5 GB at most for the whole process, torch included: 1.4 GB measured for top-k with
K = 100000). Without ``-n`` the number of samples is lowered to fit (and the summary says so);
a ``-n`` that does not fit is refused (exit 2). Parameters too long for a command line come from
a file: ``--probs`` / ``--logits`` accept a ``.npy``, ``.pt`` (a tensor) or ``.csv`` file
(one row per line, or one value per line). The table on stderr shows at most
:data:`MAX_TABLE_ROWS` coordinates (stats.json has them all), and the plots at most
:data:`MAX_PLOT_CATEGORIES` categories (the most likely ones).
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from relaxcli import methods as registry
from relaxcli.commands._parse import (
    NUMBER_FILE_SUFFIXES,
    check_positive,
    check_probabilities,
    load_correlation,
    load_numbers,
    parse_number,
    parse_rows,
)
from relaxcli.console import Reporter
from relaxcli.distributions.subset import sequential_relaxation_warning
from relaxcli.errors import BadInput
from relaxcli.options import RunOptions, argument, option
from relaxcli.report import Metric, Report, declare_report
from relaxcli.runs import create_run, resolve_device, run_context, seed_everything, set_threads

# METHODS.md section 1, the copula's worked example (batch 2, event 3).
EXAMPLE_PI = [[0.2, 0.4, 0.4], [0.3, 0.5, 0.2]]
EXAMPLE_R = [[1.0, 0.5, 0.3], [0.5, 1.0, 0.7], [0.3, 0.7, 1.0]]
EXAMPLE_TAU = 0.1

DEFAULT_PROBS = {
    "bernoulli": [[0.2, 0.5, 0.8]],
    "categorical": [[0.2, 0.3, 0.5]],
    "simplex": [[0.2, 0.3, 0.5]],
    "subset": [[0.05, 0.1, 0.15, 0.3, 0.4]],
}
DEFAULT_LOC_CATEGORIES = 3  # loc/scale methods: K = 3 by default (so the simplex plot is drawn)

# float64 parameters: the closed forms and JSON files then show the numbers the user typed.
DTYPE = torch.float64
CHUNK = 50_000  # samples per draw: bounded memory, and the same RNG stream for any --num-samples
DEFAULT_NUM_SAMPLES = 10_000
MAX_SAMPLE_VALUES = 20_000_000      # samples x values per sample held in memory (float64: 160 MB)
MAX_ENUMERATION_VALUES = 20_000_000  # C(K, k) x K x rows for exact top-k inclusion probabilities
MAX_TABLE_ROWS = 30                 # coordinates shown in the table on stderr
MAX_PLOT_CATEGORIES = 40            # categories drawn in category_means.png / inclusion.png

# What `relax compare` reads from these runs (relaxcli.report): every numeric summary key.
REPORT = declare_report(Report(
    command="sample",
    metrics=(Metric("max_abs_z", label="largest |z|"), Metric("num_checks", label="checks"),
             Metric("all_finite", label="all finite")),
    default_metrics=None,
))


# ----------------------------------------------------------------------------- option support
def supports(method: registry.Method, option: str) -> bool:
    """Whether ``relax sample`` accepts ``option`` for ``method``."""
    if option in ("probs", "logits"):
        return method.from_logits
    if option == "loc":
        return not method.from_logits
    if option == "scale":
        return not method.from_logits or "scale" in method.settings
    if option == "tau":
        return method.has_temperature
    if option == "correlation":
        return method.takes_correlation
    return option in method.settings


def _require(method: registry.Method, option: str, flag: str) -> None:
    if not supports(method, option):
        ok = [m.name for m in registry.METHODS.values() if supports(m, option)]
        raise BadInput(f"{flag} does not apply to {method.name}; it is accepted by: "
                       f"{', '.join(ok) if ok else 'no method'}")


# ----------------------------------------------------------------------------- parameters
def read_rows(text: str, option: str) -> list[list[float]]:
    """``--probs`` / ``--logits`` text, or a ``.npy`` / ``.pt`` / ``.csv`` file of numbers (for
    parameter vectors too long for a command line), as rows of equal length."""
    if Path(str(text)).suffix.lower() not in NUMBER_FILE_SUFFIXES:
        return parse_rows(text, option)
    arr = load_numbers(text, option)
    if arr.ndim == 1:
        arr = arr[None]
    if arr.ndim != 2 or arr.size == 0:
        raise BadInput(f"{option}: {text!r} must hold a vector or a matrix (rows of a batch), got "
                       f"shape {tuple(arr.shape)}")
    if not np.isfinite(arr).all():
        raise BadInput(f"{option}: {text!r} holds non-finite numbers")
    return arr.tolist()


def resolve_parameters(method: registry.Method, probs: str | None, logits: str | None,
                       loc: str | None, scale: str | None, correlation: str | None,
                       k: int | None, tau: float | None, hard: bool) -> dict[str, Any]:
    """Validate every option for ``method`` and return the resolved values (raw, tau, options).

    Raises BadInput (exit 2) with one line for anything the user got wrong.
    """
    if probs is not None and logits is not None:
        raise BadInput("give either --probs or --logits, not both")
    for value, opt, flag in ((probs, "probs", "--probs"), (logits, "logits", "--logits"),
                             (loc, "loc", "--loc"), (scale, "scale", "--scale"),
                             (correlation, "correlation", "--correlation"), (k, "k", "--k"),
                             (tau, "tau", "--tau")):
        if value is not None:
            _require(method, opt, flag)
    if hard:
        _require(method, "hard", "--hard")
    if tau is not None:
        check_positive(tau, "--tau", "a positive temperature")
    resolved_tau = method.default_tau if tau is None else float(tau)

    options: dict[str, Any] = {}
    resolved: dict[str, Any] = {}
    is_copula = method.takes_correlation
    if method.from_logits:
        simplex = method.family in ("categorical", "subset", "simplex")
        if logits is not None:
            rows = read_rows(logits, "--logits")
            if simplex and len(rows[0]) < 2:
                raise BadInput("--logits: a categorical law needs at least 2 categories")
            raw = torch.tensor(rows, dtype=DTYPE)
            p = torch.softmax(raw, -1) if simplex else torch.sigmoid(raw)
        else:
            if probs is not None:
                rows = read_rows(probs, "--probs")
            elif is_copula:
                rows = EXAMPLE_PI
                if tau is None:
                    resolved_tau = EXAMPLE_TAU
            else:
                rows = DEFAULT_PROBS[method.family]
            check_probabilities(rows, "--probs", simplex)
            p = torch.tensor(rows, dtype=torch.float64)
            raw = (p.log() if simplex else torch.logit(p)).to(DTYPE)
            p = p.to(DTYPE)
        if len(rows) == 1:  # a single row is a plain parameter vector, not a batch of one
            raw, p = raw[0], p[0]
        resolved["probs"] = p
        resolved["logits"] = raw
    else:
        loc_rows = parse_rows(loc, "--loc") if loc is not None else [[0.0] * (
            method.params.size(DEFAULT_LOC_CATEGORIES) // 2)]
        n_loc = len(loc_rows[0])
        kcat = method.params.categories(2 * n_loc)
        scale_rows = parse_rows(scale, "--scale") if scale is not None else [[1.0]]
        s = torch.tensor(scale_rows, dtype=torch.float64)
        if bool((s <= method.params.offset).any()):
            raise BadInput(f"--scale must be positive (greater than {method.params.offset:g}), got "
                           f"{scale}")
        l_t = torch.tensor(loc_rows, dtype=torch.float64)
        try:
            s = torch.broadcast_to(s, l_t.shape) if s.numel() > 1 else s.expand_as(l_t)
        except RuntimeError:
            raise BadInput(f"--scale: give one number or {n_loc} (one per --loc entry)") from None
        raw = method.params.pack(l_t, s).to(DTYPE)
        if len(loc_rows) == 1:
            raw, l_t, s = raw[0], l_t[0], s[0]
        resolved.update(loc=l_t, scale=s, categories=kcat)

    if method.from_logits and scale is not None:  # the gate's noise scale (gaussian-bernoulli)
        sc = parse_number(scale, "--scale")
        options["scale"] = check_positive(sc, "--scale", "a positive noise scale")
    if k is not None or "k" in method.settings:
        kk = int(method.settings["k"] if k is None else k)
        n_cat = raw.shape[-1]
        if not 1 <= kk <= n_cat:
            raise BadInput(f"--k must be between 1 and the number of categories ({n_cat}), got {kk}")
        options["k"] = kk
    if hard:
        options["hard"] = True
    if is_copula:
        dim = raw.shape[-1]
        if correlation is not None:
            options["correlation"] = torch.tensor(load_correlation(correlation, dim),
                                                  dtype=raw.dtype)
        elif probs is None and logits is None:
            options["correlation"] = torch.tensor(EXAMPLE_R, dtype=raw.dtype)
        else:
            options["correlation"] = torch.eye(dim, dtype=raw.dtype)
    return {"raw": raw, "tau": resolved_tau, "options": options, **resolved}


def build_distribution(method: registry.Method, raw: torch.Tensor, tau, options: dict):
    """The registry's distribution (or, for score-function methods, its discrete law)."""
    try:
        if method.relaxed is not None:
            return method.build(raw, tau, **options)
        if method.discrete is not None:
            return method.discrete_law(raw, **options)
    except ValueError as e:  # the distribution's own parameter validation
        raise BadInput(f"{method.name}: {e}") from None
    raise BadInput(f"method {method.name!r} has neither a distribution nor a discrete law to sample")


# ----------------------------------------------------------------------------- closed forms
def _accessor(dist, name: str):
    """``dist.name`` (property or zero-argument method) as a tensor, or None when absent/undefined."""
    try:
        v = getattr(dist, name, None)
        if callable(v):
            v = v()
    except (NotImplementedError, AttributeError, ValueError, TypeError):
        return None
    return v if isinstance(v, torch.Tensor) else None


def closed_forms(method: registry.Method, dist, raw: torch.Tensor, options: dict,
                 vector_event: bool, tau=None) -> dict[str, torch.Tensor]:
    """Exact values of the statistics the runner measures, shaped like one sample."""
    shape = dist.batch_shape + dist.event_shape
    out: dict[str, torch.Tensor] = {}

    def put(key, value):
        if value is not None:
            with contextlib.suppress(RuntimeError):  # a statistic of another shape is not compared
                out[key] = torch.broadcast_to(value.detach().double().cpu(), shape)

    is_hard = bool(getattr(dist, "hard", False)) or method.kind == "straight-through"
    # A soft relaxation's own `mean` may describe its discrete law (generalized Gumbel-softmax
    # documents E[X] = sum_k p_k v_k, the hard value's mean); that is not the mean of the soft
    # samples, so only Bernoulli-family or hard samplers' moments are compared.
    if is_hard or method.family == "bernoulli" or getattr(dist, "hard", None) is None:
        put("mean", _accessor(dist, "mean"))
        var = _accessor(dist, "variance")
        put("std", None if var is None else var.clamp(min=0).sqrt())
    for key in ("prob_zero", "prob_one", "prob_nonzero"):
        put(key, _accessor(dist, key))
    # Where the registry says rounding a sample is an exact draw of the discrete law, that law's
    # probabilities are the exact P(z > 1/2) (Bernoulli units) or P(argmax z = k) (vectors).
    rounded = (method.discrete_law(raw, **options).probs.detach()
               if method.rounds_to_discrete and method.discrete is not None else None)
    marg = _accessor(dist, "marginal_probs")
    if marg is not None:
        put("p_gt_half", marg)
    elif rounded is not None and not vector_event:
        put("p_gt_half", rounded)
    if vector_event and rounded is not None:
        law = rounded
        put("p_argmax", law)
        if is_hard:  # one-hot values: P(z_k = 1) and E[z_k] are the same law
            put("prob_one", law)
            put("mean", law)
    # Simplex laws built on a Gaussian (IGR, logistic normal): log(z_k / z_K) is Gaussian with a
    # known mean (METHODS.md sections 2-3); the last coordinate has no ratio (NaN, not shown).
    ratio_law = getattr(dist, "log_ratio_distribution", None)
    if vector_event and callable(ratio_law):
        try:
            lr_mean = ratio_law().mean.detach().double().cpu()
        except (NotImplementedError, AttributeError, ValueError):
            lr_mean = None
        if lr_mean is not None:
            pad = torch.full(lr_mean.shape[:-1] + (1,), float("nan"), dtype=torch.float64)
            put("log_ratio", torch.cat([lr_mean, pad], -1))
    incl = (_accessor(method.discrete_law(raw, **options), "inclusion_probs")
            if method.family == "subset" and method.discrete is not None and method.exact_sampler
            and inclusion_mode(raw, options)[0] == "exact" else None)
    if incl is not None:
        put("p_included", incl)
        if is_hard:  # the exact top-k indicator: E[z_i] = P(i in top-k)
            put("mean", incl)
    return out


def inclusion_mode(raw: torch.Tensor, options: dict) -> tuple[str, str]:
    """("exact", how) when the C(K, k) subsets fit the enumeration's memory bound, else
    ("monte-carlo", why): the inclusion frequencies of the samples, with standard errors."""
    n_cat, k = int(raw.shape[-1]), int(options.get("k", 2))
    rows = max(1, raw.numel() // max(1, n_cat))
    count = math.comb(n_cat, k)
    if count * n_cat * rows <= MAX_ENUMERATION_VALUES:
        return "exact", f"exact, by enumeration of the C({n_cat}, {k}) = {count} subsets"
    return "monte-carlo", (f"Monte-Carlo estimates with standard errors (the exact values need "
                           f"all C({n_cat}, {k}) = {count:.3g} subsets, more than the enumeration's "
                           f"memory bound of {MAX_ENUMERATION_VALUES:.0e} values)")


def pairwise_closed_form(dist) -> torch.Tensor | None:
    """P(m_i > 1/2, m_j > 1/2) for a copula method: (batch..., D, D), or None.

    The distribution owns the formula (``pairwise_joint_probs``); the runner only reads it.
    """
    acc = _accessor(dist, "pairwise_joint_probs")
    return None if acc is None else acc.detach().double().cpu()


# ----------------------------------------------------------------------------- statistics
def _z(emp: float, exact: float, n: int, std: float | None = None) -> float | None:
    """z-score of an empirical probability (or of a mean, when ``std`` is given)."""
    se = (std if std is not None else math.sqrt(max(exact * (1 - exact), 0.0))) / math.sqrt(n)
    if se <= 0:
        return 0.0 if abs(emp - exact) < 1e-12 else None
    return (emp - exact) / se


def coordinate_stats(samples: torch.Tensor, method: registry.Method, dist, exact: dict,
                     options: dict, vector_event: bool) -> list[dict]:
    """One record per coordinate of a sample: empirical values, closed forms and z-scores."""
    n = samples.shape[0]
    x = samples.double()
    emp: dict[str, torch.Tensor] = {"mean": x.mean(0), "std": x.std(0)}
    if method.family == "bernoulli" or not vector_event:
        emp["prob_zero"] = (x == 0).double().mean(0)
        emp["prob_one"] = (x == 1).double().mean(0)
        if "prob_nonzero" in exact:
            emp["prob_nonzero"] = (x != 0).double().mean(0)
        if "p_gt_half" in exact:
            emp["p_gt_half"] = (x > 0.5).double().mean(0)
    else:
        kcat = x.shape[-1]
        emp["p_argmax"] = torch.nn.functional.one_hot(x.argmax(-1), kcat).double().mean(0)
        if bool(((x == 0) | (x == 1)).all()):
            emp["prob_one"] = (x == 1).double().mean(0)
        if method.family == "subset" and "k" in options:
            top = x.topk(options["k"], dim=-1).indices
            emp["p_included"] = torch.zeros_like(x).scatter_(-1, top, 1.0).mean(0)
            del emp["p_argmax"]
        if "log_ratio" in exact:
            logx = x.clamp_min(torch.finfo(x.dtype).tiny).log()
            ratio = logx - logx[..., -1:]
            ratio[..., -1] = float("nan")
            emp["log_ratio"] = ratio.mean(0)
            ratio_std = ratio.std(0)
    shape = x.shape[1:]
    records = []
    for idx in itertools.product(*[range(s) for s in shape]):
        rec: dict[str, Any] = {"index": list(idx)}
        std_here = float(emp["std"][idx])
        for key, val in emp.items():
            e = float(val[idx])
            if math.isnan(e):  # e.g. the log-ratio of the reference coordinate itself
                continue
            rec[key] = e
            if key in exact:
                ex = float(exact[key][idx])
                rec[f"{key}_exact"] = ex
                if key == "mean":
                    rec["mean_z"] = _z(e, ex, n, std=std_here)
                elif key == "log_ratio":
                    rec["log_ratio_z"] = _z(e, ex, n, std=float(ratio_std[idx]))
                elif key != "std":
                    rec[f"{key}_z"] = _z(e, ex, n)
            elif key == "p_included":  # no exact value: the estimate's own standard error
                rec["p_included_se"] = math.sqrt(max(e * (1 - e), 0.0) / n)
        records.append(rec)
    return records


def pairwise_stats(samples: torch.Tensor, exact: torch.Tensor | None) -> list[dict]:
    """Empirical P(m_i > 1/2, m_j > 1/2) for every pair i < j of every batch row."""
    if exact is None or samples.dim() < 2:
        return []
    n = samples.shape[0]
    above = (samples > 0.5).double()
    d = above.shape[-1]
    batch_shape = above.shape[1:-1]
    out = []
    for b in itertools.product(*[range(s) for s in batch_shape]):
        ab = above[(slice(None),) + b]
        for i in range(d):
            for j in range(i + 1, d):
                e = float((ab[:, i] * ab[:, j]).mean())
                ex = float(exact[b + (i, j)])
                out.append({"batch": list(b), "i": i, "j": j, "p_both_gt_half": e,
                            "p_both_gt_half_exact": ex, "z": _z(e, ex, n)})
    return out


# ----------------------------------------------------------------------------- output
STAT_LABELS = {
    "mean": "mean", "std": "std", "prob_zero": "P(z=0)", "prob_one": "P(z=1)",
    "prob_nonzero": "P(z!=0)", "p_gt_half": "P(z>1/2)", "p_argmax": "P(argmax=k)",
    "p_included": "P(in top-k)", "log_ratio": "E log(z_k/z_K)",
}


def stats_table(records: list[dict], title: str):
    from rich import box
    from rich.table import Table

    keys = [k for k in STAT_LABELS if any(k in r for r in records)]
    if "prob_zero" in keys and "prob_nonzero" in keys:  # 1 - P(z=0): kept in stats.json only
        keys.remove("prob_nonzero")
    table = Table(title=title, box=box.SIMPLE_HEAD, padding=(0, 1))
    table.add_column("coord", no_wrap=True)
    cols = []
    for key in keys:
        table.add_column(STAT_LABELS[key], justify="right")
        cols.append((key, False))
        if any(f"{key}_exact" in r for r in records):
            table.add_column("exact", justify="right", style="cyan")
            cols.append((key, True))
    for r in records[:MAX_TABLE_ROWS]:
        cells = [",".join(map(str, r["index"]))]
        for key, is_exact in cols:
            v = r.get(f"{key}_exact" if is_exact else key)
            cells.append("-" if v is None else f"{v:.3f}")
        table.add_row(*cells)
    if len(records) > MAX_TABLE_ROWS:
        table.caption = (f"the first {MAX_TABLE_ROWS} of {len(records)} coordinates; stats.json "
                         "has them all")
    return table


def _max_abs_z(records: list[dict], pairwise: list[dict]) -> tuple[float | None, int]:
    zs = [abs(v) for r in records for k, v in r.items() if k.endswith("_z") and v is not None]
    zs += [abs(p["z"]) for p in pairwise if p["z"] is not None]
    return (max(zs) if zs else None), len(zs)


def _labels(records: list[dict]) -> list[str]:
    return ["z[" + ",".join(map(str, r["index"])) + "]" for r in records]


def make_plots(run, method, samples: torch.Tensor, records: list[dict], exact: dict,
               options: dict, vector_event: bool, dist, tau) -> list[str]:
    from relaxcli import plots

    files = []
    title = f"{method.name}" + (f", tau={tau:g}" if tau is not None else "")
    x = samples.double().cpu()
    n = x.shape[0]
    if not vector_event or method.family == "bernoulli":
        flat = x.reshape(n, -1).numpy()
        atoms: list[float] = [0.0, 1.0]
        values = _accessor(dist, "values")  # a numeric support (generalized Gumbel-softmax)
        if method.family != "bernoulli" and values is not None:
            atoms = [float(v) for v in values.reshape(-1).tolist()][:50]
        exact_atoms = {}
        if "prob_zero" in exact:
            exact_atoms[0.0] = exact["prob_zero"].reshape(-1).tolist()
        if "prob_one" in exact:
            exact_atoms[1.0] = exact["prob_one"].reshape(-1).tolist()
        fig = plots.value_histogram(flat, _labels(records), atoms=atoms, exact_atoms=exact_atoms,
                                    title=title)
        files.append(run.save_figure(fig, "histogram.png").name)
        plots.close(fig)
        return files
    kcat = x.shape[-1]
    per_batch = x.reshape(n, -1, kcat)
    means = per_batch.mean(0).numpy()
    ex_mean = exact.get("mean")
    # Many categories: draw the MAX_PLOT_CATEGORIES most likely ones (of row 0), so the picture
    # keeps a readable size whatever K is.
    show = np.arange(kcat)
    if kcat > MAX_PLOT_CATEGORIES:
        ref = exact.get("p_included", exact.get("p_argmax", ex_mean))
        ref = means[0] if ref is None else ref.reshape(-1, kcat)[0].numpy()
        show = np.sort(np.argsort(-np.asarray(ref), kind="stable")[:MAX_PLOT_CATEGORIES])
        title += f" ({len(show)} most likely of {kcat} categories)"
    fig = plots.category_means(means[:, show], None if ex_mean is None
                               else ex_mean.reshape(-1, kcat).numpy()[:, show],
                               labels=[f"row {b}" for b in range(means.shape[0])] if means.shape[0] > 1
                               else None, ylabel="mean of z_k", title=title,
                               categories=show.tolist() if kcat > MAX_PLOT_CATEGORIES else None)
    files.append(run.save_figure(fig, "category_means.png").name)
    plots.close(fig)
    if method.family == "subset" and "k" in options:
        top = x.topk(options["k"], dim=-1).indices
        freq = torch.zeros_like(x).scatter_(-1, top, 1.0).mean(0).reshape(-1, kcat).numpy()
        ex = exact.get("p_included")
        fig = plots.topk_inclusion(freq[:, show], None if ex is None
                                   else ex.reshape(-1, kcat).numpy()[:, show],
                                   k=options["k"], title=title + f", k={options['k']}",
                                   categories=show.tolist() if kcat > MAX_PLOT_CATEGORIES else None)
        files.append(run.save_figure(fig, "inclusion.png").name)
        plots.close(fig)
    elif kcat == 3:
        fig = plots.simplex_scatter(per_batch[:, 0].numpy(), title=title + (
            " (batch row 0)" if per_batch.shape[1] > 1 else ""))
        files.append(run.save_figure(fig, "simplex.png").name)
        plots.close(fig)
    return files


# ----------------------------------------------------------------------------- the runner
def _fit_memory(num_samples: int | None, per_sample: int) -> tuple[int, str | None]:
    """The number of samples within MAX_SAMPLE_VALUES: the default lowered to fit (with the
    line that says so), a given -n that does not fit refused (exit 2)."""
    fit = MAX_SAMPLE_VALUES // max(1, per_sample)
    if num_samples is None:
        if fit >= DEFAULT_NUM_SAMPLES:
            return DEFAULT_NUM_SAMPLES, None
        if fit < 2:
            raise BadInput(f"one sample has {per_sample} values; two of them exceed the memory "
                           f"bound of {MAX_SAMPLE_VALUES:.0e} sample values of relax sample")
        return fit, (f"-n lowered from {DEFAULT_NUM_SAMPLES} to {fit}: {per_sample} values per "
                     f"sample, and relax sample keeps at most {MAX_SAMPLE_VALUES:.0e} values in "
                     "memory")
    if num_samples > fit:
        raise BadInput(f"-n {num_samples} samples of {per_sample} values each exceed the memory "
                       f"bound of {MAX_SAMPLE_VALUES:.0e} sample values; use -n {max(fit, 2)} or "
                       "fewer" if fit >= 2 else f"one sample has {per_sample} values: too many")
    return num_samples, None


@dataclass(kw_only=True)
class SampleOptions(RunOptions):
    """Draw samples from one method; show per-coordinate statistics next to their closed forms.

    Writes samples.pt, stats.json, summary.json and plots (histogram.png for Bernoulli-family
    methods; category_means.png, plus simplex.png for 3 categories or inclusion.png for subsets).
    Score-function estimators (reinforce, arm, ...) have no relaxed distribution: their discrete
    law is sampled.
    """

    method: str = argument(help="Registry method name (see `relax list`).")
    tau: float | None = option(None, "--tau", show_default=False, help=(
        "Temperature (> 0). Default: the method's default_tau from `relax list` (0.1 for the "
        "correlated-bernoulli example). Refused for methods without a temperature."))
    probs: str | None = option(None, "--probs", show_default=False, help=(
        "Comma list of probabilities strictly inside (0, 1), or a .npy/.pt/.csv file of them (for "
        "long vectors); ';' separates rows of a batch. Bernoulli family: one Bernoulli(p) unit per "
        "value (gaussian-bernoulli: P(z > 1/2) = p), default 0.2,0.5,0.8; correlated-bernoulli "
        "default: METHODS.md's example 0.2,0.4,0.4;0.3,0.5,0.2. Categorical family: one "
        "probability vector summing to 1, default 0.2,0.3,0.5; subset family default "
        "0.05,0.1,0.15,0.3,0.4."))
    logits: str | None = option(None, "--logits", show_default=False, help=(
        "Comma list of logits instead of --probs (Bernoulli: p = sigmoid(l); categorical: "
        "p = softmax(l)), or a .npy/.pt/.csv file of them."))
    k: int | None = option(None, "--k", show_default=False, help=(
        "Subset methods: subset size, 1 <= k <= number of categories (default 2)."))
    correlation: str | None = option(None, "--correlation", show_default=False, help=(
        "Methods that take a correlation (correlated-bernoulli): a number rho (equal off-diagonal "
        "correlation, -1/(D-1) < rho < 1) or a path to a D x D .npy/.pt/.csv correlation matrix "
        "(symmetric, unit diagonal, positive definite). Default: METHODS.md's R with the default "
        "--probs, else the identity."))
    scale: str | None = option(None, "--scale", show_default=False, help=(
        "gaussian-bernoulli: the gate's noise scale (> 0, default 0.5). invertible-gaussian / "
        "logistic-normal: the Gaussian's scale, one number or one per --loc entry (default 1)."))
    loc: str | None = option(None, "--loc", show_default=False, help=(
        "invertible-gaussian / logistic-normal: the Gaussian's location, K-1 numbers for "
        "invertible-gaussian and K for logistic-normal (default zeros, K = 3)."))
    num_samples: int | None = option(None, "--num-samples", "-n", show_default=False, help=(
        "Number of samples to draw (>= 2; default 10000, lowered to fit the memory bound of 20 "
        "million sample values when one sample is large)."))
    hard: bool = option(False, "--hard", help=(
        "Hard (discrete) forward values for methods with a soft/hard switch (`relax list --json`: "
        "the methods whose settings hold 'hard')."))
    tau_forward: float | None = option(None, "--tau-forward", show_default=False, help=(
        "decoupled-st-gumbel-softmax's forward temperature (> 0; default 1): the forward one-hot "
        "is drawn from Categorical(softmax(logits / tau_forward)); --tau is the backward one."))
    settings: list[str] | None = option(None, "--setting", show_default=False, metavar="KEY=VALUE", help=(
        "A setting of the method, KEY=VALUE, repeatable (e.g. --setting terms=5 --setting "
        "lambda=10), typed like its default (integer, number, word, true/false); checked on the "
        "distribution before anything is written. --k, --hard, --tau-forward and "
        "gaussian-bernoulli's --scale set the same keys: given both ways, the two values must "
        "agree. Settings (defaults): " + registry.settings_overview() + "."))


# --setting keys that have an option of their own here (a tensor one can only be set there)
DEDICATED = {"k": "--k", "hard": "--hard", "tau_forward": "--tau-forward", "scale": "--scale",
             "correlation": "--correlation"}


def with_dedicated(method: registry.Method, o: SampleOptions, given: dict) -> tuple[SampleOptions, dict]:
    """The options with each --setting whose key has an option of its own (--k, --hard,
    --tau-forward, a setting --scale) moved onto that option, and the other settings. The rule:
    one key, one value; both ways with two values is bad input (exit 2)."""
    rest = dict(given)
    changes: dict[str, Any] = {}
    for key in ("k", "hard", "tau_forward", "scale"):
        if key not in rest:
            continue
        value = rest.pop(key)
        typed = getattr(o, key)
        if key == "hard":
            typed = True if o.hard else None
        elif key == "scale" and typed is not None:
            typed = parse_number(typed, "--scale")
        if typed is not None and typed != value:
            flag = DEDICATED[key] + ("" if key == "hard" else f" {registry.format_setting(typed)}")
            raise BadInput(f"{flag} and --setting {key}={registry.format_setting(value)} "
                           "disagree; give one of them")
        changes[key] = registry.format_setting(value) if key == "scale" else value
    return dataclasses.replace(o, **changes), rest


@dataclass
class Draw:
    """What one sample run draws from: the record, its distribution and the resolved inputs."""

    method: registry.Method
    dist: Any
    raw: torch.Tensor
    params: dict          # resolve_parameters' output (raw, tau, options, probs/logits/loc/scale)
    settings: dict        # the distribution's settings, on the device
    tau: float | None
    vector_event: bool
    num_samples: int
    notes: dict           # inclusion mode, lowered sample count, warnings


def run_sample(options: SampleOptions, reporter: Reporter | None = None) -> dict:
    """Draw ``num_samples`` samples of the method; write samples.pt, stats.json, plots, summary.

    Returns the summary dict (also written to summary.json).
    """
    o, reporter = options, reporter or Reporter(quiet=True)
    draw = prepare(o, reporter)  # everything the user typed is checked before the run exists
    m = draw.method
    config = {
        "method": m.name, "family": m.family, "tau": draw.tau, "num_samples": draw.num_samples,
        "hard": o.hard, "raw": draw.params["raw"], "probs": draw.params.get("probs"),
        "logits": draw.params.get("logits"), "loc": draw.params.get("loc"),
        "scale": draw.params.get("scale"), "builder_options": draw.params["options"],
        "seed": o.seed, "device_requested": o.device, "device": str(draw.raw.device),
        "warnings": draw.notes["warnings"], "threads": torch.get_num_threads(),
        "settings": draw.notes["settings"],  # what --setting (and --k, --hard...) gave
    }
    inputs = [v for v in (o.correlation, o.probs, o.logits) if v is not None and Path(v).exists()]
    run = create_run("sample", m.name, config, out=o.out, overwrite=o.overwrite, seed=o.seed,
                     device=str(draw.raw.device), inputs=inputs)
    with run_context(run):
        samples = draw_samples(draw, reporter)
        run.save_torch("samples.pt", {"samples": samples, "method": m.name, "tau": draw.tau,
                                      "raw": draw.params["raw"], "options": draw.params["options"],
                                      "seed": o.seed})
        stats, records, exact = evaluate(draw, samples, o)
        run.write_json("stats.json", stats)
        files = ["samples.pt", "stats.json", *make_plots(
            run, m, samples, records, exact, draw.settings, draw.vector_event, draw.dist, draw.tau)]
        reporter.table(stats_table(records, f"relax sample {m.name}: {draw.num_samples} samples"
                                   + (f", tau={draw.tau:g}" if draw.tau is not None else "")
                                   + "".join(f", {key}={registry.format_setting(v)}"
                                             for key, v in draw.notes["settings"].items())))
        if stats["max_abs_z"] is not None:
            reporter.print(f"largest |z| of {stats['num_checks']} empirical-vs-exact checks: "
                           f"{stats['max_abs_z']:.2f} (|z| < 4 is what a correct sampler gives)",
                           highlight=False)
        summary = run.finish({**stats, "files": files})
        reporter.print(f"wrote {run.path}", highlight=False)
    return summary


def prepare(o: SampleOptions, reporter: Reporter) -> Draw:
    """Validate the options, resolve the parameters and build the distribution (seeded)."""
    m = registry.get_method(o.method)
    if o.num_samples is not None and o.num_samples < 2:
        raise BadInput(f"--num-samples must be at least 2 (to estimate a std), got {o.num_samples}")
    given = registry.parse_settings(m, o.settings, dedicated=DEDICATED)
    o, extra = with_dedicated(m, o, given)
    params = resolve_parameters(m, o.probs, o.logits, o.loc, o.scale, o.correlation, o.k, o.tau, o.hard)
    params["options"].update(extra)
    if o.tau_forward is not None:
        _require(m, "tau_forward", "--tau-forward")
        params["options"]["tau_forward"] = check_positive(o.tau_forward, "--tau-forward",
                                                          "a positive forward temperature")
    dev = resolve_device(o.device)
    set_threads(o.threads)
    raw = params["raw"].to(dev)
    settings = {key: (v.to(dev) if isinstance(v, torch.Tensor) else v)
                for key, v in params["options"].items()}
    tau = params["tau"] if m.relaxed is not None else None
    seed_everything(o.seed)
    dist = build_distribution(m, raw, tau, settings)
    num_samples, lowered = _fit_memory(o.num_samples, math.prod(dist.batch_shape + dist.event_shape))
    incl = inclusion_mode(raw, settings) if m.family == "subset" and "k" in settings else None
    warnings = []
    if not o.hard and {**m.settings, **settings}.get("relaxation") == "sequential":  # top-k's
        line = sequential_relaxation_warning(float(tau), int(settings["k"]))
        if line:  # soft samples of a relaxation that over-counts here: say so, keep the run
            warnings.append(line)
    for note in [lowered, incl and incl[0] != "exact" and f"top-k inclusion probabilities: {incl[1]}",
                 *warnings, m.relaxed is None and f"{m.name} is a score-function estimator: "
                 "these are samples of its discrete law",
                 not m.exact_sampler and f"{m.name}'s samples only approximate its discrete law: "
                 "no closed-form check applies to them"]:
        if note:
            reporter.note(note)
    return Draw(m, dist, raw, params, settings, tau, len(dist.event_shape) > 0 and m.family != "bernoulli",
                num_samples, {"inclusion": incl, "lowered": lowered, "warnings": warnings,
                              "settings": given})


def draw_samples(draw: Draw, reporter: Reporter) -> torch.Tensor:
    """``num_samples`` samples in chunks (bounded memory, the same stream for any count)."""
    chunks, done = [], 0
    with reporter.progress(f"sampling {draw.method.name}", total=draw.num_samples) as bar:
        while done < draw.num_samples:
            size = min(CHUNK, draw.num_samples - done)
            with torch.no_grad():
                chunks.append(draw.dist.sample((size,)).detach().cpu())
            done += size
            bar.advance(size)
    return torch.cat(chunks, 0)


def evaluate(draw: Draw, samples: torch.Tensor, o: SampleOptions) -> tuple[dict, list, dict]:
    """Per-coordinate and pairwise statistics against their closed forms (stats.json)."""
    m = draw.method
    exact = closed_forms(m, draw.dist, draw.raw, draw.settings, draw.vector_event, draw.tau)
    records = coordinate_stats(samples, m, draw.dist, exact, draw.settings, draw.vector_event)
    pairs = pairwise_stats(samples, pairwise_closed_form(draw.dist))
    max_z, n_checks = _max_abs_z(records, pairs)
    stats = {
        "method": m.name, "family": m.family, "tau": draw.tau, "hard": o.hard,
        "num_samples": draw.num_samples, "seed": o.seed,
        "batch_shape": list(draw.dist.batch_shape), "event_shape": list(draw.dist.event_shape),
        "all_finite": bool(torch.isfinite(samples).all()), "coordinates": records, "pairwise": pairs,
        "max_abs_z": max_z, "num_checks": n_checks, "warnings": draw.notes["warnings"],
        # the settings the distribution was built with (defaults, then what was given)
        "settings": {**registry.settable(m), **{key: v for key, v in draw.settings.items()
                                                if key in registry.settable(m)}},
    }
    if draw.notes["inclusion"] is not None:
        stats["inclusion_probs"], stats["inclusion_probs_note"] = draw.notes["inclusion"]
    if draw.notes["lowered"]:
        stats["num_samples_note"] = draw.notes["lowered"]
    return stats, records, exact
