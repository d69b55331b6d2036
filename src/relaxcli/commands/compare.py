"""``relax compare``: many run directories in, one table (mean +/- std over seeds) and one figure out.

What it computes: the runs found under the given paths are filtered to the ``completed`` ones,
split into groups by the values of some config keys (default: the method), and for every group
and metric it reports the sample mean, the sample standard deviation (ddof = 1, over runs, i.e.
usually over seeds), and how many runs had a number. A metric that is ``null`` in a run (e.g.
``episodes_to_solve`` when the agent never solved the task) is counted, never averaged as zero:
the table says ``solved 3/5`` and the mean is over the three that solved.

grad-bench runs hold one row per (method, temperature) in ``summary["results"]``; each row is a
unit of comparison there, with vector quantities reduced to scalars: ``bias_norm`` = ||bias||_2,
``variance_trace`` = sum of per-coordinate variances, ``mse`` = sum over coordinates.

Example:
    >>> summary = run_compare(reporter=Reporter(), run_dirs=["runs/sweep"],            # doctest: +SKIP
    ...                       group_by=["method"], metrics=None, out=None)
    >>> summary["groups"][0]["metrics"]["test_neg_elbo"]["mean"]                         # doctest: +SKIP
    101.9
"""

from __future__ import annotations

import csv
import glob
import io
import json
import math
import statistics
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from relaxcli import runs
from relaxcli.errors import BadInput

# ----------------------------------------------------------------------- what each command reports
DEFAULT_METRICS: dict[str, list[str]] = {
    "train-vae": ["test_neg_elbo", "test_iw_nll", "test_kl", "test_active_vars", "seconds_per_epoch"],
    "reinforce": ["episodes_to_solve", "steps_to_solve", "eval_return_greedy", "wall_seconds"],
    "grad-bench": ["bias_norm", "variance_trace", "mse", "snr", "seconds_per_estimate"],
}
# Config keys a command's runs are grouped by when --group-by is not given (reinforce's method is
# "<estimator>-<baseline>"). A default key that no run has, or that takes one value in every run,
# is dropped, so the table shows only what differs (the method column always stays).
DEFAULT_GROUP_BY: dict[str, list[str]] = {
    "train-vae": ["dataset", "method"],
    "reinforce": ["env", "method"],
    "grad-bench": ["problem"],
}
LABELS = {
    "test_neg_elbo": "test -ELBO", "test_iw_nll": "IW bound on -log p(x)",
    "seconds_per_epoch": "s/epoch", "train_neg_elbo": "train -ELBO",
    "episodes_to_solve": "episodes to solve", "steps_to_solve": "steps to solve",
    "eval_return_greedy": "greedy return", "eval_return_stochastic": "stochastic return",
    "bias_norm": "‖bias‖", "variance_trace": "tr variance", "mse": "MSE", "snr": "SNR",
    "seconds_per_estimate": "s/estimate", "wall_seconds": "wall s",
    "train_cpu_seconds_per_epoch": "train CPU s/epoch",
    "test_kl": "KL (nats)", "test_recon": "reconstruction", "test_active_vars": "active vars",
    "test_mean_max_prob": "mean max q", "val_neg_elbo": "val -ELBO",
}
# Direction of "better", used only to mark the best group in bold.
LOWER_IS_BETTER = {"test_neg_elbo", "test_iw_nll", "seconds_per_epoch", "train_neg_elbo",
                   "episodes_to_solve", "steps_to_solve", "bias_norm", "variance_trace", "mse",
                   "seconds_per_estimate", "wall_seconds"}
HIGHER_IS_BETTER = {"eval_return_greedy", "eval_return_stochastic", "snr"}
# Metrics whose null means "did not happen": shown as "solved k/N".
SOLVE_METRICS = {"episodes_to_solve", "steps_to_solve"}
# grad-bench rows: per-result keys that identify a row, and how vectors become scalars.
GRADBENCH_ROW_KEYS = ("method", "tau")
_GB_ALIASES = {"bias_norm": ("bias", "norm"), "variance_trace": ("variance", "sum")}
_GB_REDUCE = {"bias": "norm", "mean": "norm", "exact_gradient": "norm", "variance": "sum",
              "mse": "sum", "snr": "mean"}
# config.json keys that describe the machine, not the experiment (not offered for --group-by).
_META_KEYS = {"options", "argv", "platform", "python_version", "relaxcli_version", "torch_version",
              "start_time"}
# Settings that may differ between runs of one group: they change the draw or the machine, not the
# experiment (seed, device, threads, where the data or the output live), or they are the rows of
# a grad-bench summary (its methods and temperatures) or derived from the seed (problem_info).
# Every other option that differs between runs splits them into groups (see differing_keys).
AVERAGED_OVER = {"seed", "device", "device_requested", "threads", "out", "data_dir", "video",
                 "run_dirs"}
AVERAGED_OVER_BY_COMMAND = {"grad-bench": {"methods", "tau", "problem_info", "n_samples"}}
REINFORCE_WINDOW = 100  # episodes in the moving average (the Acrobot/Gym "solved" convention)


@dataclass
class RunRecord:
    """One completed run: where it is, its config, its summary, and its comparison rows."""

    path: Path
    config: dict
    summary: dict
    rows: list[dict] = field(default_factory=list)  # one per unit of comparison


# ------------------------------------------------------------------------------- finding runs
def _expand(arg: str) -> list[Path]:
    """A path, or a glob pattern (``runs/*/seed-*``, ``**`` allowed), into existing paths."""
    if any(ch in arg for ch in "*?["):
        hits = sorted(glob.glob(arg, recursive=True))
        if not hits:
            raise BadInput(f"the pattern {arg!r} matches nothing")
        return [Path(h) for h in hits]
    p = Path(arg)
    if not p.exists():
        raise BadInput(f"{arg!r} does not exist (give run directories, parent folders or globs)")
    return [p]


def _is_run_dir(p: Path) -> bool:
    return any((p / name).is_file() for name in ("summary.json", "config.json", "status"))


def find_run_dirs(paths: list[str]) -> list[Path]:
    """Every run directory at or below ``paths``: a folder holding summary.json, config.json or status.

    Runs without summary.json are found too (through config.json/status) so that a failed or
    interrupted run can be reported as skipped rather than silently missed.
    """
    found: dict[Path, None] = {}
    for arg in paths:
        for p in _expand(arg):
            if p.is_file():
                p = p.parent  # e.g. runs/x/summary.json given directly
            if _is_run_dir(p):
                found[p.resolve()] = None
            for name in ("summary.json", "config.json", "status"):
                for hit in sorted(p.rglob(name)):
                    if hit.is_file():
                        found[hit.parent.resolve()] = None
    return sorted(found)


def _read_json(path: Path) -> tuple[Any, str | None]:
    """(object, None) or (None, one-line reason it could not be read)."""
    try:
        return json.loads(path.read_text(encoding="utf-8")), None
    except FileNotFoundError:
        return None, f"no {path.name}"
    except json.JSONDecodeError as e:
        return None, f"{path.name} is not valid JSON (line {e.lineno}: {e.msg})"
    except (OSError, UnicodeDecodeError) as e:
        return None, f"{path.name} is unreadable ({getattr(e, 'strerror', None) or e})"


def load_run(path: Path) -> tuple[RunRecord | None, str | None]:
    """A completed run, or (None, the reason it is skipped)."""
    config, err = _read_json(path / "config.json")
    if err:
        return None, err
    if not isinstance(config, dict) or "command" not in config:
        return None, "config.json has no 'command' (not a relax run)"
    try:
        status = runs.read_status(path)
    except (OSError, UnicodeDecodeError, IndexError):
        status = "unreadable"
    if status is None:
        return None, "no status file"
    if status != "completed":
        return None, f"status {status}"
    summary, err = _read_json(path / "summary.json")
    if err:
        return None, err
    if not isinstance(summary, dict):
        return None, "summary.json is not a JSON object"
    return RunRecord(path, config, summary), None


# ---------------------------------------------------------------------------------- grouping
def _lookup(run: RunRecord, key: str) -> tuple[bool, Any]:
    """A group-by key from config.json, then config['options'], then summary.json.

    ``options.tau`` and ``summary.problem`` name the place explicitly.
    """
    places = {"config": run.config, "options": run.config.get("options") or {},
              "summary": run.summary}
    if "." in key and key.split(".", 1)[0] in places:
        where, name = key.split(".", 1)
        d = places[where]
        return (name in d), d.get(name)
    for d in (run.config, places["options"], run.summary):
        if isinstance(d, dict) and key in d:
            return True, d[key]
    return False, None


def _hashable(v: Any) -> Any:
    if isinstance(v, list):
        return tuple(_hashable(x) for x in v)
    if isinstance(v, dict):
        return tuple(sorted((k, _hashable(x)) for k, x in v.items()))
    return v


def _sort_key(values: tuple) -> tuple:
    """Natural order: numbers numerically, None last, everything else as text."""
    out = []
    for v in values:
        if v is None:
            out.append((2, 0.0, ""))
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out.append((0, float(v), ""))
        else:
            out.append((1, 0.0, str(v)))
    return tuple(out)


def fmt_value(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        return ",".join(fmt_value(x) for x in v)
    return str(v)


# ----------------------------------------------------------------------------------- metrics
def _as_number(v: Any) -> float | None:
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, (int, float)) and math.isfinite(v):
        return float(v)
    return None


def _reduce(v: Any, how: str) -> float | None:
    """A grad-bench vector quantity as one number (norm, sum or mean); scalars pass through."""
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return abs(float(v)) if how == "norm" else float(v)
    if isinstance(v, list) and v and all(_as_number(x) is not None for x in v):
        xs = [float(x) for x in v]
        if how == "norm":
            return math.sqrt(sum(x * x for x in xs))
        if how == "sum":
            return sum(xs)
        return sum(xs) / len(xs)
    return None


def _gradbench_rows(summary: dict) -> list[dict] | None:
    """The result rows of a grad-bench summary, or None when it has no ``results`` list."""
    results = summary.get("results")
    if not isinstance(results, list):
        return None
    return [r for r in results if isinstance(r, dict)]


def _row_key(run: RunRecord, row: dict, key: str) -> Any:
    """A grad-bench row's method or tau. A tau the bench did not sweep was learned by the method
    itself (REBAR/RELAX tune theirs), differs from seed to seed, and is grouped as "learned"."""
    v = row.get(key)
    if key == "tau" and isinstance(v, (int, float)):
        swept = (run.config.get("options") or {}).get("tau")
        if isinstance(swept, list) and not any(
                isinstance(t, (int, float)) and math.isclose(v, t, rel_tol=1e-9) for t in swept):
            return "learned"
    return v


def _gradbench_value(row: dict, metric: str) -> tuple[bool, Any]:
    """(present, value) of ``metric`` for one grad-bench result row."""
    key, how = _GB_ALIASES.get(metric, (metric, _GB_REDUCE.get(metric, "norm")))
    if key not in row:
        return False, None
    v = row[key]
    if v is None:
        return True, None
    return True, _reduce(v, how)


def _plain_value(summary: dict, metric: str) -> tuple[bool, Any]:
    if metric not in summary:
        return False, None
    v = summary[metric]
    if v is None:
        return True, None
    return True, _as_number(v)


def stats(values: list[float]) -> dict:
    """Sample mean, sample std (ddof=1; None for one value), min, max of ``values``."""
    n = len(values)
    if n == 0:
        return {"mean": None, "std": None, "min": None, "max": None}
    mean = sum(values) / n
    # (x - m) * (x - m), not ** 2: a huge value then gives inf instead of an OverflowError
    std = math.sqrt(sum((x - mean) * (x - mean) for x in values) / (n - 1)) if n >= 2 else None
    return {"mean": mean, "std": std, "min": min(values), "max": max(values)}


def median(values: list[float], never: int = 0) -> float | None:
    """The median of ``values``; with ``never`` > 0 runs that never got there (e.g. never solved)
    ranked after every value, so failures pull the median up honestly instead of vanishing.

    With an even count the lower middle value is taken (a run's actual number, never an average
    with "never"); None when that middle run is one that never got there.
    """
    ranked = sorted(values) + [math.inf] * never
    if not ranked:
        return None
    mid = ranked[(len(ranked) - 1) // 2] if never else statistics.median(ranked)
    return None if math.isinf(mid) else mid


def fmt_number(x: float | None) -> str:
    """Compact, readable numbers: 101.5, 12.34, 0.412, 1.2e-05, 150000."""
    if x is None:
        return "-"
    a = abs(x)
    if a == 0:
        return "0"
    if 1e5 <= a < 1e9:
        return f"{x:.0f}"
    if a >= 1e9 or a < 1e-3:
        return f"{x:.3g}"
    if a >= 100:
        return f"{x:.1f}"
    if a >= 10:
        return f"{x:.2f}"
    return f"{x:.3g}"


def fmt_mean_std(mean: float, std: float | None) -> str:
    """``mean ± std`` with both to the same decimals: two significant digits of the std."""
    if std is None:
        return fmt_number(mean)
    if std == 0:
        return f"{fmt_number(mean)} ± 0"
    if not (math.isfinite(std) and math.isfinite(mean)):
        return f"{fmt_number(mean)} ± {fmt_number(std)}"
    if abs(mean) >= 1e6 or max(abs(mean), std) < 1e-3:
        return f"{mean:.3g} ± {std:.2g}"
    decimals = max(0, 1 - math.floor(math.log10(std)))
    if decimals > 6:  # a spread far below the mean's size: fixed decimals would print 0.000000
        return f"{mean:.4g} ± {std:.1g}"
    return f"{mean:.{decimals}f} ± {std:.{decimals}f}"


def fmt_cell(metric: str, s: dict) -> str:
    """``mean ± std``, plus ``solved k/N`` or ``k/N`` when some runs had no number."""
    if s["n"] == 0:
        core = "-"
    else:
        core = fmt_mean_std(s["mean"], s["std"])
    total = s["n"] + s["null"] + s["missing"]
    if metric in SOLVE_METRICS and total > 1:
        m = s.get("median")
        med = ("not solved" if m is None else str(int(m)) if float(m).is_integer()
               else fmt_number(m))
        core += f" (solved {s['n']}/{total}, median {med})"
    elif s["n"] < total:
        if metric in SOLVE_METRICS:
            core += f" (solved {s['n']}/{total})"
        else:
            core += f" ({s['n']}/{total} with a value)"
    return core


# --------------------------------------------------------------------------------- curves
def _curve_of_run(command: str, path: Path) -> tuple[list[float], list[float]] | None:
    """The learning curve of one run from metrics.jsonl: (x, y) or None.

    train-vae: test -ELBO per epoch. reinforce: the 100-episode moving average of the return.
    """
    records = runs.read_metrics(path)
    if command == "train-vae":
        pts = [(r["epoch"], r["test_neg_elbo"]) for r in records
               if _as_number(r.get("epoch")) is not None
               and _as_number(r.get("test_neg_elbo")) is not None]
        if not pts:
            return None
        return [float(x) for x, _ in pts], [float(y) for _, y in pts]
    if command == "reinforce":
        rets = []
        for r in records:
            y = next((r[k] for k in ("return", "episode_return") if k in r), None)
            if _as_number(y) is not None and "episode" in r:
                rets.append(float(y))
        if not rets:
            return None
        xs, ys, acc = [], [], 0.0
        for i, y in enumerate(rets):
            acc += y
            if i >= REINFORCE_WINDOW:
                acc -= rets[i - REINFORCE_WINDOW]
            xs.append(float(i + 1))
            ys.append(acc / min(i + 1, REINFORCE_WINDOW))
        return xs, ys
    return None


def mean_band(curves: list[tuple[list[float], list[float]]]) -> dict:
    """Pointwise mean and sample std over runs at each x (runs may have different lengths)."""
    by_x: dict[float, list[float]] = {}
    for xs, ys in curves:
        for x, y in zip(xs, ys):
            by_x.setdefault(x, []).append(y)
    xs = sorted(by_x)
    out = {"x": xs, "mean": [], "std": [], "n": []}
    for x in xs:
        s = stats(by_x[x])
        out["mean"].append(s["mean"])
        out["std"].append(s["std"] if s["std"] is not None else 0.0)
        out["n"].append(len(by_x[x]))
    return out


def differing_keys(command: str, runs_ok: list[RunRecord], keys: list[str]) -> list[str]:
    """Options (config.json "options") whose values differ between the runs, other than those
    in :data:`AVERAGED_OVER` and the group keys already chosen: averaging runs with different
    budgets or settings (a 1-epoch and a 5-epoch run) would be a silent lie, so they group too."""
    skip = AVERAGED_OVER | AVERAGED_OVER_BY_COMMAND.get(command, set()) | set(keys)
    names: list[str] = []
    for r in runs_ok:
        for k in (r.config.get("options") or {}):
            if k not in skip and k not in names:
                names.append(k)
    missing = "<not set>"
    out: list[str] = []
    for k in names:
        # Differs inside some group of the keys chosen so far (a key that the group keys already
        # determine, like reinforce's estimator inside its method, adds nothing).
        seen: dict[tuple, set] = {}
        for r in runs_ok:
            group = tuple(_hashable(_lookup(r, g)[1]) for g in keys if g not in GRADBENCH_ROW_KEYS
                          or command != "grad-bench") + tuple(
                _hashable((r.config.get("options") or {}).get(g, missing)) for g in out)
            seen.setdefault(group, set()).add(_hashable((r.config.get("options") or {}).get(k, missing)))
        if any(len(v) > 1 for v in seen.values()):
            out.append(k)
    return out


def _refuse_out_over_inputs(out: Path | None, run_paths: list[Path], args: list[str]) -> None:
    """--out may not be, contain, or lie inside a compared run, nor be or contain an argument:
    --overwrite would delete what is compared, or write into a run."""
    if out is None:
        return
    for d in run_paths:
        if runs._is_within(out, d) or runs._is_within(d, out):
            where = "is" if out.resolve() == d.resolve() else (
                "lies inside" if runs._is_within(out, d) else "contains")
            raise BadInput(f"--out {str(out)!r} {where} the compared run {str(d)!r}; choose an "
                           "--out outside the runs you compare (e.g. SWEEP/compare)")
    for a in args:
        if not any(ch in a for ch in "*?[") and runs._is_within(Path(a), out):
            raise BadInput(f"--out {str(out)!r} contains the compared folder {a!r}; choose an "
                           "--out outside the runs you compare (e.g. SWEEP/compare)")


# ---------------------------------------------------------------------------------- runner
def _parse_list(items: list[str] | None) -> list[str]:
    out: list[str] = []
    for item in items or []:
        out += [s.strip() for s in item.split(",") if s.strip()]
    return out


def collect(run_dirs: list[str]) -> tuple[list[RunRecord], list[dict], int]:
    """(completed runs, skipped [{path, reason}], number of run directories found)."""
    dirs = find_run_dirs(run_dirs)
    loaded, skipped, found = [], [], 0
    for d in dirs:
        config, _ = _read_json(d / "config.json")
        if isinstance(config, dict) and config.get("command") == "compare":
            continue  # an earlier comparison's own output, not a run to compare
        found += 1
        run, reason = load_run(d)
        if run is None:
            skipped.append({"path": str(d), "reason": reason})
        else:
            loaded.append(run)
    return loaded, skipped, found


def _skip_line(skipped: list[dict], found: int) -> str:
    counts = Counter(s["reason"] for s in skipped)
    parts = ", ".join(f"{n} {r}" for r, n in counts.most_common())
    return f"skipped {len(skipped)} of {found} runs: {parts}"


def run_compare(reporter, run_dirs: list[str], group_by: list[str] | None = None,
                metrics: list[str] | None = None, out: Path | None = None,
                overwrite: bool = False) -> dict:
    """Compare the completed runs under ``run_dirs``; write comparison.csv/.md, curves.png, summary.json."""
    if not run_dirs:
        raise BadInput("give at least one run directory, parent folder or glob")
    runs_ok, skipped, found = collect(run_dirs)
    if found == 0:
        raise BadInput(f"no run directories (summary.json/config.json) found under "
                       f"{', '.join(run_dirs)}")
    if not runs_ok:
        raise BadInput(f"no completed runs to compare; {_skip_line(skipped, found)}")

    commands = Counter(r.config["command"] for r in runs_ok)
    if len(commands) > 1:
        listing = ", ".join(f"{c}: {n}" for c, n in sorted(commands.items()))
        raise BadInput(f"the runs come from different commands ({listing}); compare one command "
                       "at a time by giving only that command's run directories")
    command = next(iter(commands))

    # Rows: one per run, or one per (run, method, tau) result for grad-bench.
    for r in list(runs_ok):
        if command == "grad-bench":
            rows = _gradbench_rows(r.summary)
            if rows is None:
                skipped.append({"path": str(r.path),
                                "reason": "summary.json has no 'results' list (grad-bench shape)"})
                runs_ok.remove(r)
            else:
                r.rows = rows
        else:
            r.rows = [r.summary]
    if not runs_ok:
        raise BadInput(f"no completed runs to compare; {_skip_line(skipped, found)}")

    # Group keys.
    user_keys = _parse_list(group_by)
    keys = user_keys or list(DEFAULT_GROUP_BY.get(command, ["method"]))
    if command == "grad-bench":
        keys = [k for k in keys if k not in GRADBENCH_ROW_KEYS]
    present = {k: sum(_lookup(r, k)[0] for r in runs_ok) for k in keys}
    if user_keys:
        absent = [k for k in keys if present[k] == 0]
        if absent:
            avail = sorted({k for r in runs_ok for k in r.config if k not in _META_KEYS}
                           | {k for r in runs_ok for k in (r.config.get("options") or {})})
            raise BadInput(f"--group-by {', '.join(absent)}: no such key in any run's config.json "
                           f"or options; available: {', '.join(avail)}")
    else:
        # Default keys that no run has, or with one value in all runs, would only add a constant
        # column; "method" is kept as the name of each row.
        keys = [k for k in keys if k == "method" and command != "grad-bench"
                or len({_hashable(_lookup(r, k)[1]) for r in runs_ok}) > 1]
    # Settings that differ between runs are never averaged together: they group too.
    split_by = differing_keys(command, runs_ok, keys + (list(GRADBENCH_ROW_KEYS)
                                                        if command == "grad-bench" else []))
    keys = keys + split_by
    row_keys = list(GRADBENCH_ROW_KEYS) if command == "grad-bench" else []

    # Metrics.
    value_of = _gradbench_value if command == "grad-bench" else _plain_value
    all_rows = [row for r in runs_ok for row in r.rows]
    user_metrics = _parse_list(metrics)
    if user_metrics:
        absent = [m for m in user_metrics if not any(value_of(row, m)[0] for row in all_rows)]
        if absent:
            avail = sorted({k for row in all_rows for k, v in row.items()
                            if _as_number(v) is not None or isinstance(v, list)}
                           | (set(_GB_ALIASES) if command == "grad-bench" else set()))
            raise BadInput(f"--metric {', '.join(absent)}: not in any {command} summary.json here; "
                           f"available: {', '.join(avail) or 'none'}")
        not_numbers = [m for m in user_metrics
                       if not any(value_of(row, m)[1] is not None for row in all_rows)
                       and any(row.get(m) is not None for row in all_rows)]
        if not_numbers:
            raise BadInput(f"--metric {', '.join(not_numbers)}: not a number in these summaries "
                           "(only numeric metrics can be averaged)")
        metric_names = user_metrics
    else:
        defaults = DEFAULT_METRICS.get(command)
        if defaults is None:  # a command without a known list: every numeric summary key
            defaults = sorted({k for row in all_rows for k, v in row.items()
                               if _as_number(v) is not None and k not in ("seed",)})
        metric_names = [m for m in defaults if any(value_of(row, m)[0] for row in all_rows)]
        if not metric_names:
            raise BadInput(f"none of the usual {command} metrics ({', '.join(defaults) or '-'}) is "
                           "in these summaries; choose some with --metric")

    # Build groups.
    groups: dict[tuple, dict] = {}
    for r in runs_ok:
        base = tuple(_hashable(_lookup(r, k)[1]) for k in keys)
        for row in r.rows:
            gk = base + tuple(_hashable(_row_key(r, row, k)) for k in row_keys)
            g = groups.setdefault(gk, {"runs": [], "values": {m: [] for m in metric_names},
                                       "null": Counter(), "missing": Counter()})
            g["runs"].append(str(r.path))
            for m in metric_names:
                has, v = value_of(row, m)
                if not has:
                    g["missing"][m] += 1
                elif v is None:
                    g["null"][m] += 1
                else:
                    g["values"][m].append(v)
    all_keys = keys + row_keys
    group_list = []
    for gk in sorted(groups, key=_sort_key):
        g = groups[gk]
        mstats = {}
        for m in metric_names:
            s = stats(g["values"][m])
            s.update(n=len(g["values"][m]), null=g["null"][m], missing=g["missing"][m],
                     values=g["values"][m],
                     median=median(g["values"][m], g["null"][m] if m in SOLVE_METRICS else 0))
            mstats[m] = s
        group_list.append({"key": dict(zip(all_keys, [list(v) if isinstance(v, tuple) else v
                                                      for v in gk])),
                           "n": len(g["runs"]), "runs": g["runs"], "metrics": mstats})

    notes = []
    if split_by:
        notes.append(f"also grouped by {', '.join(split_by)}: these settings differ between the "
                     "runs, and runs with different settings are not averaged together")
    if skipped:
        notes.append(_skip_line(skipped, found))
    missing_total = {m: sum(g["metrics"][m]["missing"] for g in group_list) for m in metric_names}
    for m, k in missing_total.items():
        if k:
            notes.append(f"{m} is missing from {k} of {len(all_rows)} summaries")

    # Curves (per group, mean with a +/- std band over runs).
    curves = _group_curves(command, runs_ok, keys, groups, group_list)

    _refuse_out_over_inputs(None if out is None else Path(out),
                            [Path(r.path) for r in runs_ok] + [Path(s["path"]) for s in skipped],
                            run_dirs)
    run = runs.create_run("compare", None, {
        "run_dirs": list(run_dirs), "group_by": all_keys, "metrics": metric_names},
        out=out, overwrite=overwrite,
        inputs=[Path(r.path) for r in runs_ok] + [Path(s["path"]) for s in skipped])
    with runs.run_context(run):
        summary = {
            "command": command, "group_by": all_keys, "metrics": metric_names,
            "runs_found": found, "runs_used": len(runs_ok), "skipped": skipped,
            "notes": notes, "groups": group_list, "out": str(run.path),
        }
        headers, table_rows, best = _table(all_keys, metric_names, group_list)
        runs.atomic_write_text(run.file("comparison.csv"), _csv(all_keys, metric_names, group_list))
        runs.atomic_write_text(run.file("comparison.md"),
                               _markdown(command, headers, table_rows, best, summary))
        files = ["comparison.csv", "comparison.md"]
        if curves:
            from relaxcli import plots

            draw, kwargs = curves
            fig = getattr(plots, draw)(**kwargs)
            run.save_figure(fig, "curves.png", dpi=120, bbox_inches="tight")
            plots.close(fig)
            files.append("curves.png")
        else:
            notes.append(f"no learning curves in these {command} runs; curves.png not written")
        summary["files"] = files + ["summary.json"]
        summary = run.finish(summary)

    _report(reporter, command, headers, table_rows, best, summary)
    return summary


def _group_curves(command, runs_ok, keys, groups, group_list) -> tuple[str, dict] | None:
    """(the plots function, its arguments) for curves.png, or None when there is nothing to draw.

    train-vae and reinforce: per group the mean learning curve with a ± std band over runs, the
    legend best first with the table's numbers. grad-bench: per problem, bias and variance
    against temperature and variance against bias (plots.gradbench_problems).
    """
    labels = [", ".join(fmt_value(v) for v in g["key"].values()) or command for g in group_list]
    if command == "grad-bench":
        return _gradbench_curves(keys, group_list)
    per_group, methods, notes_for, score = {}, {}, {}, {}
    for gk, g, label in zip(sorted(groups, key=_sort_key), group_list, labels):
        base = gk[:len(keys)]
        cs = [c for r in runs_ok
              if tuple(_hashable(_lookup(r, k)[1]) for k in keys) == base
              and (c := _curve_of_run(command, r.path)) is not None]
        if not cs:
            continue
        name = f"{label} (n={len(cs)})"
        per_group[name] = {**mean_band(cs), "runs": cs}
        methods[name] = g["key"].get("method")
        notes_for[name], score[name] = _legend_entry(command, g)
    if not per_group:
        return None
    have_scores = all(v is not None for v in score.values())
    order = sorted(per_group, key=lambda n: score[n]) if have_scores else None
    legend_notes = notes_for if all(notes_for.values()) else None
    if command == "train-vae":
        facets = _kind_facets(methods)
        if facets:  # panels in the registry's order of kinds
            from relaxcli.methods import KINDS

            per_group = dict(sorted(per_group.items(),
                                    key=lambda kv: KINDS.index(facets[kv[0]].split()[0])))
        return "compare_curves", {
            "lines": per_group, "xlabel": "epoch", "ylabel": "test -ELBO (nats)",
            "title": "train-vae: test -ELBO per epoch, mean ± std over runs (lower is better)",
            "methods": methods, "facets": facets, "better": "lower", "order": order,
            "legend_notes": legend_notes, "untrained_x": 0.0,
            "legend_title": "final test -ELBO, best first" if legend_notes else None}
    thresholds = {r.summary.get("reward_threshold") for r in runs_ok}
    refs = {}
    if len(thresholds) == 1 and _as_number(next(iter(thresholds))) is not None:
        t = float(next(iter(thresholds)))
        refs[f"solve threshold {t:g}"] = t
    return "compare_curves", {
        "lines": per_group, "xlabel": "episode",
        "ylabel": f"return, {REINFORCE_WINDOW}-episode moving average",
        "title": "reinforce: return, mean ± std over runs (higher is better)",
        "references": refs, "methods": methods, "better": "higher", "order": order,
        "legend_notes": legend_notes,
        "legend_title": "fewest episodes to solve first" if order else None}


def _legend_entry(command: str, g: dict) -> tuple[str | None, float | None]:
    """(the group's number for the curves' legend, a sort key: lower is better)."""
    ms = g["metrics"]
    if command == "train-vae":
        s = ms.get("test_neg_elbo")
        if s is None or s["mean"] is None:
            return None, None
        return fmt_mean_std(s["mean"], s["std"]), s["mean"]
    s = ms.get("episodes_to_solve")
    if s is None:
        return None, None
    total = s["n"] + s["null"] + s["missing"]
    med = s.get("median")
    text = f"solved {s['n']}/{total}, median " + ("not solved" if med is None else f"{med:g}")
    # rank by the median with unsolved runs last, then by how many solved
    return text, (_median_score(s), -s["n"])


def _kind_facets(methods: dict) -> dict | None:
    """One panel per kind of method (relaxed, straight-through, score-function) when more than
    eight groups of registry methods of several kinds share the figure; else None."""
    from relaxcli.methods import METHODS

    if len(methods) <= 8 or not all(m in METHODS for m in methods.values()):
        return None
    kinds = {label: METHODS[m].kind for label, m in methods.items()}
    if len(set(kinds.values())) < 2:
        return None
    return {label: f"{kind} methods" for label, kind in kinds.items()}


def _gradbench_curves(keys, group_list) -> tuple[str, dict] | None:
    """Per problem (the non-method group keys): each method's ||bias|| and variance over seeds,
    against tau for tempered methods, as one point for the others."""
    from relaxcli.methods import METHODS

    def value(g, m):
        s = g["metrics"].get(m)
        return (None, None) if s is None or s["mean"] is None else (s["mean"], s["std"] or 0.0)

    if not any(value(g, "variance_trace")[0] is not None for g in group_list):
        return None
    has_bias = any(value(g, "bias_norm")[0] is not None for g in group_list)
    problems: dict[str, tuple[dict, dict]] = {}
    for g in group_list:
        var, var_sd = value(g, "variance_trace")
        if var is None:
            continue
        bias, bias_sd = value(g, "bias_norm")
        problem = ", ".join(fmt_value(g["key"][k]) for k in keys)
        sweeps, refs = problems.setdefault(problem, ({}, {}))
        method, tau = g["key"].get("method"), g["key"].get("tau")
        unbiased = method in METHODS and METHODS[method].unbiased
        if isinstance(tau, (int, float)) and not isinstance(tau, bool):
            s = sweeps.setdefault(method, {"tau": [], "bias": [], "variance": [], "bias_std": [],
                                           "variance_std": []})
            for k, v in (("tau", float(tau)), ("bias", bias), ("variance", var),
                         ("bias_std", bias_sd), ("variance_std", var_sd)):
                s[k].append(v)
        else:  # no temperature, or one the method learned ("learned")
            refs[method] = {"bias": bias, "variance": var, "unbiased": unbiased, "tau": tau,
                            "bias_std": bias_sd, "variance_std": var_sd}
    if not has_bias:  # the variance alone (--metric without bias_norm): curves against tau
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


def _table(keys, metric_names, group_list):
    """Headers, text rows, and which (row, metric) cells hold the best mean."""
    headers = list(keys) + ["n"] + [LABELS.get(m, m) for m in metric_names]
    rows = [[fmt_value(g["key"][k]) for k in keys] + [str(g["n"])]
            + [fmt_cell(m, g["metrics"][m]) for m in metric_names] for g in group_list]
    best = set()
    if len(group_list) > 1:
        for j, m in enumerate(metric_names):
            if m in SOLVE_METRICS:
                # the mean over the runs that solved would crown a group where most runs never
                # did: rank by the median with unsolved runs last (never-solved medians lose)
                means = [(_median_score(g["metrics"][m]), i) for i, g in enumerate(group_list)
                         if g["metrics"][m]["mean"] is not None]
                means = [(x, i) for x, i in means if math.isfinite(x)]
            else:
                means = [(g["metrics"][m]["mean"], i) for i, g in enumerate(group_list)
                         if g["metrics"][m]["mean"] is not None]
            if not means or m not in LOWER_IS_BETTER | HIGHER_IS_BETTER:
                continue
            pick = min(means)[0] if m in LOWER_IS_BETTER else max(means)[0]
            winners = [i for mean, i in means if math.isclose(mean, pick, rel_tol=1e-12)]
            if len(winners) < len(group_list):  # a tie of everyone marks nobody
                best.update((i, j) for i in winners)
    return headers, rows, best


def _median_score(record: dict) -> float:
    """A solve metric's median with never-solved runs ranked last (inf when that is the median)."""
    return math.inf if record.get("median") is None else record["median"]


def _csv(keys, metric_names, group_list) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    cols = list(keys) + ["n"]
    for m in metric_names:
        cols += [f"{m}_mean", f"{m}_std", f"{m}_n", f"{m}_null", f"{m}_missing", f"{m}_min",
                 f"{m}_max", f"{m}_median"]
    w.writerow(cols)
    for g in group_list:
        row = [fmt_value(g["key"][k]) if g["key"][k] is not None else "" for k in keys]
        row.append(g["n"])
        for m in metric_names:
            s = g["metrics"][m]
            row += ["" if s[f] is None else repr(float(s[f])) if f not in ("n", "null", "missing")
                    else s[f] for f in ("mean", "std", "n", "null", "missing", "min", "max",
                                        "median")]
        w.writerow(row)
    return buf.getvalue()


def _md_escape(s: str) -> str:
    return s.replace("|", "\\|")


def _markdown(command, headers, rows, best, summary) -> str:
    nkeys = len(headers) - len(summary["metrics"])  # group columns and n; then metrics
    align = ["---"] * nkeys + ["---:"] * len(summary["metrics"])
    lines = ["| " + " | ".join(_md_escape(h) for h in headers) + " |",
             "|" + "|".join(align) + "|"]
    for i, row in enumerate(rows):
        cells = [_md_escape(c) for c in row]
        for j in range(len(summary["metrics"])):
            if (i, j) in best:
                cells[nkeys + j] = f"**{cells[nkeys + j]}**"
        lines.append("| " + " | ".join(cells) + " |")
    foot = (f"\n`relax {command}`: {summary['runs_used']} completed runs; mean ± sample std over "
            "runs (n = runs per group); best in bold"
            + (" (for episodes/steps to solve: the lowest median, unsolved runs ranked last)."
               if SOLVE_METRICS & set(summary["metrics"]) else "."))
    if command == "grad-bench":
        foot += " ‖bias‖ is the Euclidean norm of the bias vector, tr variance the sum of " \
                "per-coordinate variances."
    return "\n".join(lines) + "\n" + foot + "\n" + "".join(f"\n_{n}_\n" for n in summary["notes"])


def _report(reporter, command, headers, rows, best, summary) -> None:
    from rich.table import Table

    table = Table(title=f"relax compare: {command}, {summary['runs_used']} runs, "
                  f"{len(rows)} groups (mean ± std over runs)")
    nkeys = len(headers) - len(summary["metrics"])
    for i, h in enumerate(headers):
        table.add_column(h, justify="left" if i < nkeys else "right")
    for i, row in enumerate(rows):
        cells = list(row)
        for j in range(len(summary["metrics"])):
            if (i, j) in best:
                cells[nkeys + j] = f"[bold]{cells[nkeys + j]}[/bold]"
        table.add_row(*cells)
    reporter.table(table)
    for note in summary["notes"]:
        _note(reporter, f"note: {note}")
    _note(reporter, f"wrote {summary['out']}/ ({', '.join(summary['files'])})")


def _note(reporter, line: str) -> None:
    """A plain line the user must see (shown off a terminal too, unless --quiet)."""
    note = getattr(reporter, "note", None)
    if note is not None:
        note(line)
    else:
        reporter.print(line, markup=False)
