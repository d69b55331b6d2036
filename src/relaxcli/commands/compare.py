"""``relax compare``: many run directories in, one table (mean +/- std over seeds) and one figure out.

What it computes: the runs found under the given paths are filtered to the ``completed`` ones,
split into groups by the values of some config keys (default: those the command's report
declares), and for every group and metric it reports the sample mean, the sample standard
deviation (ddof = 1, over runs, i.e. usually over seeds), and how many runs had a number. A
metric that is ``null`` in a run (e.g. episodes to solve when the agent never solved the task) is
counted, never averaged as zero: the table says ``solved 3/5`` and the mean is over the three.

compare knows no command: what each one reports (metrics, labels, which direction is better,
how vectors become numbers, several rows per run, curves) is declared beside the command
(:mod:`relaxcli.report`) and looked up here by config.json's ``command``.

Example:
    >>> summary = run_compare(CompareOptions(run_dirs=["runs/sweep"]), Reporter())  # doctest: +SKIP
    >>> summary["groups"][0]["metrics"]["test_neg_elbo"]["mean"]                     # doctest: +SKIP
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
from relaxcli.commands import report_for
from relaxcli.errors import BadInput
from relaxcli.options import argument, option
from relaxcli.report import Curve, Metric, Report, fmt_value

# config.json keys that describe the machine, not the experiment (not offered for --group-by).
_META_KEYS = {"options", "argv", "platform", "python_version", "relaxcli_version", "torch_version",
              "start_time", "end_time", "hostname", "cwd", "git", "numpy_version",
              "gymnasium_version", "cuda_device", "slurm", "resumes", "tensorboard"}
# Settings that may differ between runs of one group: they change the draw or the machine, not the
# experiment (seed, device, threads, where the data or the output live). A report adds its own
# (e.g. the keys of its rows). Every other option that differs between runs splits them into
# groups (see differing_keys).
AVERAGED_OVER = {"seed", "device", "device_requested", "threads", "out", "data_dir", "video",
                 "run_dirs"}


@dataclass(frozen=True)
class CompareOptions:
    """Compare completed runs: mean +/- std over seeds per group, as a table, CSV, Markdown and curves."""

    run_dirs: list[str] = argument(metavar="RUN_DIR...", help=(
        "Run directories, parent folders or globs; every summary.json below them is read."))
    group_by: list[str] | None = option(None, "--group-by", show_default=False, help=(
        "Config keys to group by, comma-separated or repeated (any key of config.json or its "
        "options, e.g. method,tau). Default: the keys the compared command declares (e.g. dataset "
        "and method for VAE runs; problem, then each result's method and tau for gradient "
        "benchmarks), leaving out a key with one value in every run (method always stays)."))
    metrics: list[str] | None = option(None, "--metric", show_default=False, help=(
        "summary.json metrics to report, comma-separated or repeated. Default: the key metrics "
        "the compared command declares (e.g. test_neg_elbo, test_iw_nll, seconds_per_epoch for "
        "VAE runs; episodes_to_solve, steps_to_solve, eval_return_greedy, wall_seconds for "
        "policy-gradient runs)."))
    out: Path | None = option(None, "--out", show_default=False, help=(
        "Directory for comparison.csv, comparison.md, curves.png and summary.json (default "
        "runs/compare/<UTC time>). Must be new or empty unless --overwrite."))
    per_run_csv: bool = option(False, "--per-run-csv", help=(
        "Also write per_run.csv: one row per run (per run and result row for commands with several "
        "rows per run, e.g. one per method and temperature) with its "
        "group keys, the compared metrics, and config.json and summary.json flattened (config.*, "
        "options.*, summary.*), for pandas."))
    overwrite: bool = option(False, "--overwrite", help=(
        "Replace the contents of an existing, non-empty --out directory."))


@dataclass
class RunRecord:
    """One completed run: where it is, its config, its summary, and its comparison rows."""

    path: Path
    config: dict
    summary: dict
    rows: list[dict] = field(default_factory=list)  # one per unit of comparison
    group_keys: list[tuple] = field(default_factory=list)  # each row's group, as aggregated


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
    """A group-by value that can key a dict: lists as tuples, a mapping (e.g. settings per
    method) as its readable text ``"NAME: KEY=VALUE; ..."``, with its keys sorted."""
    if isinstance(v, list):
        return tuple(_hashable(x) for x in v)
    if isinstance(v, dict):
        return "; ".join(f"{k}: {_hashable(x)}" if isinstance(x, dict) else f"{k}={_hashable(x)}"
                         for k, x in sorted(v.items()))
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


# ----------------------------------------------------------------------------------- metrics
def _as_number(v: Any) -> float | None:
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, (int, float)) and math.isfinite(v):
        return float(v)
    return None


def _reduce(v: Any, how: str) -> float | None:
    """A vector as one number (its norm, sum or mean); a scalar passes through (norm: abs)."""
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


def metric_value(report: Report, row: dict, name: str) -> tuple[bool, float | None]:
    """(present, value) of metric ``name`` in a summary or row, as the report declares it: read
    from its ``source`` key, a vector reduced to one number (norm, sum or mean)."""
    m = report.metric(name)
    key = m.source or name
    if key not in row:
        return False, None
    v = row[key]
    if v is None:
        return True, None
    return True, _as_number(v) if m.reduce is None else _reduce(v, m.reduce)


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
    """Compact, readable numbers: 101.5, 12.34, 0.412, 1.2e-05, 150000; a whole number (a count,
    an epoch) without decimals: 20, not 20.00."""
    if x is None:
        return "-"
    a = abs(x)
    if a == 0:
        return "0"
    if a < 1e9 and float(x).is_integer():
        return str(int(x))
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


def fmt_cell(metric: Metric, s: dict) -> str:
    """``mean ± std``, plus ``solved k/N`` or ``k/N`` when some runs had no number."""
    core = "-" if s["n"] == 0 else fmt_mean_std(s["mean"], s["std"])
    total = s["n"] + s["null"] + s["missing"]
    if metric.solve and total > 1:
        m = s.get("median")
        med = ("not solved" if m is None else str(int(m)) if float(m).is_integer()
               else fmt_number(m))
        core += f" (solved {s['n']}/{total}, median {med})"
    elif s["n"] < total:
        if metric.solve:
            core += f" (solved {s['n']}/{total})"
        else:
            core += f" ({s['n']}/{total} with a value)"
    return core


# --------------------------------------------------------------------------------- curves
def _curve_of_run(curve: Curve, path: Path) -> tuple[list[float], list[float]] | None:
    """One run's learning curve from metrics.jsonl as the report's ``curve`` declares it: (x, y)
    over the records where both are numbers, smoothed by the command's own function; or None."""
    pts = []
    for r in runs.read_metrics(path):
        y = next((r[k] for k in curve.y if k in r), None)
        if _as_number(y) is not None and _as_number(r.get(curve.x)) is not None:
            pts.append((float(r[curve.x]), float(y)))
    if not pts:
        return None
    xs, ys = [x for x, _ in pts], [y for _, y in pts]
    if curve.smooth is not None:
        ys = [float(v) for v in curve.smooth(ys)]
    return xs, ys


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


def differing_keys(report: Report, runs_ok: list[RunRecord], keys: list[str],
                   row_keys: list[str] = ()) -> list[str]:
    """Options (config.json "options") whose values differ between the runs, other than those
    in :data:`AVERAGED_OVER`, the report's ``averaged_over`` and the group keys already chosen:
    averaging runs with different budgets or settings (a 1-epoch and a 5-epoch run) would be a
    silent lie, so they group too."""
    skip = AVERAGED_OVER | report.averaged_over | set(keys) | set(row_keys)
    names: list[str] = []
    for r in runs_ok:
        for k in (r.config.get("options") or {}):
            if k not in skip and k not in names:
                names.append(k)
    missing = "<not set>"
    out: list[str] = []
    for k in names:
        # Differs inside some group of the keys chosen so far (a key that the group keys already
        # determine, like an estimator named inside its method, adds nothing).
        seen: dict[tuple, set] = {}
        for r in runs_ok:
            options = r.config.get("options") or {}
            group = (tuple(_hashable(_lookup(r, g)[1]) for g in keys)
                     + tuple(_hashable(options.get(g, missing)) for g in out))
            seen.setdefault(group, set()).add(_hashable(options.get(k, missing)))
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


@dataclass
class Comparison:
    """Everything one comparison found and computed, handed from step to step."""

    report: Report
    runs: list[RunRecord]
    skipped: list[dict]                 # [{path, reason}]
    found: int                          # run directories found (compared or skipped)
    keys: list[str] = field(default_factory=list)      # the runs' group keys
    row_keys: list[str] = field(default_factory=list)  # then the rows' own keys
    split_by: list[str] = field(default_factory=list)  # keys added because settings differ
    metrics: list[str] = field(default_factory=list)
    groups: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def command(self) -> str:
        return self.report.command

    @property
    def all_keys(self) -> list[str]:
        return self.keys + self.row_keys

    @property
    def rows(self) -> list[dict]:
        return [row for r in self.runs for row in r.rows]


def run_compare(options: CompareOptions, reporter) -> dict:
    """Compare the completed runs under ``options.run_dirs``: write comparison.csv/.md,
    curves.png (when there is something to draw), per_run.csv (when asked) and summary.json."""
    c = collect_runs(options.run_dirs)
    expand_rows(c)
    choose_keys(c, _parse_list(options.group_by))
    choose_metrics(c, _parse_list(options.metrics))
    aggregate(c)
    c.notes = _notes(c)
    figure = group_figure(c)
    summary = write_outputs(c, options, figure)
    _report(reporter, c, summary)
    return summary


def collect_runs(run_dirs: list[str]) -> Comparison:
    """The completed runs under ``run_dirs`` (all of one command) with that command's report."""
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
    return Comparison(report_for(next(iter(commands))), runs_ok, skipped, found)


def expand_rows(c: Comparison) -> None:
    """Each run's units of comparison: its summary, or the rows its report declares (a run
    without that list is skipped, with the reason)."""
    decl = c.report.rows
    for r in list(c.runs):
        if decl is None:
            r.rows = [r.summary]
        elif isinstance(r.summary.get(decl.field), list):
            r.rows = [row for row in r.summary[decl.field] if isinstance(row, dict)]
        else:
            c.skipped.append({"path": str(r.path), "reason": f"summary.json has no "
                              f"{decl.field!r} list ({c.command} shape)"})
            c.runs.remove(r)
    if not c.runs:
        raise BadInput(f"no completed runs to compare; {_skip_line(c.skipped, c.found)}")


def choose_keys(c: Comparison, user_keys: list[str]) -> None:
    """The group keys: the user's (each must exist somewhere) or the report's defaults that vary
    ("method" always stays, as the name of each row), then every setting that differs between
    runs, then the keys of the rows."""
    c.row_keys = list(c.report.rows.keys) if c.report.rows else []
    keys = [k for k in (user_keys or c.report.group_by) if k not in c.row_keys]
    if user_keys:
        absent = [k for k in keys if not any(_lookup(r, k)[0] for r in c.runs)]
        if absent:
            avail = sorted({k for r in c.runs for k in r.config if k not in _META_KEYS}
                           | {k for r in c.runs for k in (r.config.get("options") or {})})
            raise BadInput(f"--group-by {', '.join(absent)}: no such key in any run's config.json "
                           f"or options; available: {', '.join(avail)}")
    else:  # a default key with one value in all runs would only add a constant column
        keys = [k for k in keys if k == "method"
                or len({_hashable(_lookup(r, k)[1]) for r in c.runs}) > 1]
    c.split_by = differing_keys(c.report, c.runs, keys, c.row_keys)
    c.keys = keys + c.split_by


def choose_metrics(c: Comparison, user_metrics: list[str]) -> None:
    """The metrics: the user's (each must be a number somewhere), or the report's defaults that
    these summaries hold (no declared defaults: every numeric summary key but the seed)."""
    rows = c.rows
    if user_metrics:
        absent = [m for m in user_metrics
                  if not any(metric_value(c.report, row, m)[0] for row in rows)]
        if absent:
            avail = sorted({k for row in rows for k, v in row.items()
                            if _as_number(v) is not None or isinstance(v, list)}
                           | {m.name for m in c.report.metrics if m.source})
            raise BadInput(f"--metric {', '.join(absent)}: not in any {c.command} summary.json "
                           f"here; available: {', '.join(avail) or 'none'}")
        not_numbers = [m for m in user_metrics
                       if not any(metric_value(c.report, row, m)[1] is not None for row in rows)
                       and any(row.get(m) is not None for row in rows)]
        if not_numbers:
            raise BadInput(f"--metric {', '.join(not_numbers)}: not a number in these summaries "
                           "(only numeric metrics can be averaged)")
        c.metrics = user_metrics
        return
    defaults = c.report.default_metrics
    if defaults is None:
        defaults = sorted({k for row in rows for k, v in row.items()
                           if _as_number(v) is not None and k != "seed"})
    c.metrics = [m for m in defaults if any(metric_value(c.report, row, m)[0] for row in rows)]
    if not c.metrics:
        raise BadInput(f"none of the usual {c.command} metrics ({', '.join(defaults) or '-'}) "
                       "is in these summaries; choose some with --metric")


def aggregate(c: Comparison) -> None:
    """Per group: its runs, and per metric the stats of the numbers, how many were null or
    missing, and the median (a solve metric's with the never-solved runs ranked last)."""
    key_value = c.report.rows.key_value if c.report.rows else None
    groups: dict[tuple, dict] = {}
    for r in c.runs:
        base = tuple(_hashable(_lookup(r, k)[1]) for k in c.keys)
        options = r.config.get("options") or {}
        for row in r.rows:
            gk = base + tuple(_hashable(key_value(options, row, k) if key_value else row.get(k))
                              for k in c.row_keys)
            g = groups.setdefault(gk, {"runs": [], "values": {m: [] for m in c.metrics},
                                       "null": Counter(), "missing": Counter()})
            g["runs"].append(str(r.path))
            r.group_keys.append(gk)
            for m in c.metrics:
                has, v = metric_value(c.report, row, m)
                if not has:
                    g["missing"][m] += 1
                elif v is None:
                    g["null"][m] += 1
                else:
                    g["values"][m].append(v)
    for gk in sorted(groups, key=_sort_key):
        g = groups[gk]
        mstats = {}
        for m in c.metrics:
            values, null = g["values"][m], g["null"][m]
            s = stats(values)
            s.update(n=len(values), null=null, missing=g["missing"][m], values=values,
                     median=median(values, null if c.report.metric(m).solve else 0))
            mstats[m] = s
        key = dict(zip(c.all_keys, [list(v) if isinstance(v, tuple) else v for v in gk]))
        c.groups.append({"key": key, "n": len(g["runs"]), "runs": g["runs"], "metrics": mstats})


def _notes(c: Comparison) -> list[str]:
    notes = []
    if c.split_by:
        notes.append(f"also grouped by {', '.join(c.split_by)}: these settings differ between the "
                     "runs, and runs with different settings are not averaged together")
    if c.skipped:
        notes.append(_skip_line(c.skipped, c.found))
    n_rows = len(c.rows)
    for m in c.metrics:
        k = sum(g["metrics"][m]["missing"] for g in c.groups)
        if k:
            notes.append(f"{m} is missing from {k} of {n_rows} summaries")
    return notes


def write_outputs(c: Comparison, options: CompareOptions, figure: tuple[str, dict] | None) -> dict:
    """The compare run directory: comparison.csv/.md, curves.png, per_run.csv, summary.json."""
    inputs = [Path(r.path) for r in c.runs] + [Path(s["path"]) for s in c.skipped]
    out = None if options.out is None else Path(options.out)
    _refuse_out_over_inputs(out, inputs, options.run_dirs)
    config = {"run_dirs": list(options.run_dirs), "group_by": c.all_keys, "metrics": c.metrics}
    if options.per_run_csv:
        config["per_run_csv"] = True
    run = runs.create_run("compare", None, config, out=out, overwrite=options.overwrite,
                          inputs=inputs)
    with runs.run_context(run):
        summary = {
            "command": c.command, "group_by": c.all_keys, "metrics": c.metrics,
            "runs_found": c.found, "runs_used": len(c.runs), "skipped": c.skipped,
            "notes": c.notes, "groups": c.groups, "out": str(run.path),
        }
        runs.atomic_write_text(run.file("comparison.csv"), _csv(c))
        runs.atomic_write_text(run.file("comparison.md"), _markdown(c, summary))
        files = ["comparison.csv", "comparison.md"]
        if figure:
            from relaxcli import plots

            draw, kwargs = figure
            fig = getattr(plots, draw)(**kwargs)
            run.save_figure(fig, "curves.png", dpi=120, bbox_inches="tight")
            plots.close(fig)
            files.append("curves.png")
        else:
            c.notes.append(f"no learning curves in these {c.command} runs; curves.png not written")
        if options.per_run_csv:
            runs.atomic_write_text(run.file("per_run.csv"), per_run_csv(c))
            files.append("per_run.csv")
        summary["files"] = files + ["summary.json"]
        return run.finish(summary)


def group_figure(c: Comparison) -> tuple[str, dict] | None:
    """(the plots function, its arguments) for curves.png, or None when there is nothing to draw.

    A report with a figure of its own draws it from the groups. With a declared curve: per group
    the mean learning curve with a ± std band over runs, the legend best first with the table's
    number for the curve's legend metric, in panels by kind of method when declared.
    """
    if c.report.figure is not None:
        return c.report.figure(c.keys, c.groups)
    curve = c.report.curve
    if curve is None:
        return None
    by_path = {str(r.path): r for r in c.runs}
    lines, methods, notes_for, score = {}, {}, {}, {}
    for g in c.groups:
        cs = [xy for p in dict.fromkeys(g["runs"])
              if (xy := _curve_of_run(curve, by_path[p].path)) is not None]
        if not cs:
            continue
        label = ", ".join(fmt_value(v) for v in g["key"].values()) or c.command
        name = f"{label} (n={len(cs)})"
        lines[name] = {**mean_band(cs), "runs": cs}
        methods[name] = g["key"].get("method")
        notes_for[name], score[name] = _legend_entry(c.report, curve.legend_metric, g)
    if not lines:
        return None
    order = sorted(lines, key=lambda n: score[n]) if all(
        v is not None for v in score.values()) else None
    facets = _kind_facets(methods) if curve.facet_by_kind else None
    if facets:  # panels in the registry's order of kinds
        from relaxcli.methods import KINDS

        lines = dict(sorted(lines.items(), key=lambda kv: KINDS.index(facets[kv[0]].split()[0])))
    return "compare_curves", {
        "lines": lines, "xlabel": curve.xlabel, "ylabel": curve.ylabel, "title": curve.title,
        "references": _references(curve, c.runs), "methods": methods, "facets": facets,
        "better": curve.better, "order": order,
        "legend_notes": notes_for if all(notes_for.values()) else None,
        "untrained_x": curve.untrained_x, "legend_title": curve.legend_title if order else None}


def _references(curve: Curve, runs_ok: list[RunRecord]) -> dict:
    """The curve's reference line: the summary value of ``curve.reference`` when all runs agree."""
    if curve.reference is None:
        return {}
    values = {_hashable(r.summary.get(curve.reference)) for r in runs_ok}
    if len(values) != 1 or _as_number(next(iter(values))) is None:
        return {}
    t = float(next(iter(values)))
    return {curve.reference_label.format(t): t}


def _legend_entry(report: Report, name: str | None, g: dict) -> tuple[str | None, Any]:
    """(the group's number for the curves' legend, a sort key: lower ranks first)."""
    s = g["metrics"].get(name) if name else None
    if s is None:
        return None, None
    if report.metric(name).solve:
        total = s["n"] + s["null"] + s["missing"]
        med = s.get("median")
        text = f"solved {s['n']}/{total}, median " + ("not solved" if med is None else f"{med:g}")
        # rank by the median with unsolved runs last, then by how many solved
        return text, (_median_score(s), -s["n"])
    if s["mean"] is None:
        return None, None
    better_first = -s["mean"] if report.metric(name).better == "higher" else s["mean"]
    return fmt_mean_std(s["mean"], s["std"]), better_first


def _kind_facets(methods: dict) -> dict | None:
    """One panel per kind of method (the registry record's ``kind``) when more than eight groups
    of registry methods of several kinds share the figure; else None."""
    from relaxcli.methods import METHODS, get_method

    if len(methods) <= 8 or not all(isinstance(m, str) and m in METHODS
                                    for m in methods.values()):
        return None
    kinds = {label: get_method(m).kind for label, m in methods.items()}
    if len(set(kinds.values())) < 2:
        return None
    return {label: f"{kind} methods" for label, kind in kinds.items()}


# ---------------------------------------------------------------------------------- outputs
def per_run_csv(c: Comparison) -> str:
    """One row per run (per run and row when the report splits a summary into rows), for pandas:
    the group keys, the run's path, the compared metrics (the numbers the table averages), then
    config.json (``config.*``, its options as ``options.*``) and summary.json (``summary.*``; a
    row's own fields as ``<field>.*``) flattened, nested keys joined by dots, lists as JSON.

    ``pandas.read_csv("per_run.csv").groupby(keys)[metric].agg(["mean", "std"])`` gives back
    comparison.csv's means and standard deviations.
    """
    field_name = c.report.rows.field if c.report.rows else None
    records = []
    for r in c.runs:
        base = {**_flat("config", {k: v for k, v in r.config.items() if k != "options"}),
                **_flat("options", r.config.get("options") or {}),
                **_flat("summary", {k: v for k, v in r.summary.items() if k != field_name})}
        for row, gk in zip(r.rows, r.group_keys):
            rec = {"run": str(r.path), **dict(zip(c.all_keys, gk))}
            rec.update({m: metric_value(c.report, row, m)[1] for m in c.metrics})
            rec.update(base)
            if field_name:
                rec.update(_flat(field_name, row))
            records.append(rec)
    columns = list(dict.fromkeys(["run", *c.all_keys, *c.metrics,
                                  *(k for rec in records for k in rec)]))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n", restval="")
    w.writeheader()
    for rec in records:
        w.writerow({k: _csv_cell(v) for k, v in rec.items()})
    return buf.getvalue()


def _flat(prefix: str, d: dict) -> dict:
    """``{"a": {"b": 1}}`` -> ``{"prefix.a.b": 1}``."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(f"{prefix}.{k}", v))
        else:
            out[f"{prefix}.{k}"] = v
    return out


def _csv_cell(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return json.dumps(v)
    return v


def _table(c: Comparison):
    """Headers, text rows, and which (row, metric) cells hold the best mean."""
    metrics = [c.report.metric(m) for m in c.metrics]
    headers = list(c.all_keys) + ["n"] + [m.label or m.name for m in metrics]
    rows = [[fmt_value(g["key"][k]) for k in c.all_keys] + [str(g["n"])]
            + [fmt_cell(m, g["metrics"][m.name]) for m in metrics] for g in c.groups]
    best = set()
    if len(c.groups) > 1:
        for j, m in enumerate(metrics):
            if m.better is None:
                continue
            cells = [(g["metrics"][m.name], i) for i, g in enumerate(c.groups)
                     if g["metrics"][m.name]["mean"] is not None]
            if m.solve:
                # the mean over the runs that solved would crown a group where most runs never
                # did: rank by the median with unsolved runs last (never-solved medians lose)
                means = [(_median_score(s), i) for s, i in cells]
                means = [(x, i) for x, i in means if math.isfinite(x)]
            else:
                means = [(s["mean"], i) for s, i in cells]
            if not means:
                continue
            pick = min(means)[0] if m.better == "lower" else max(means)[0]
            winners = [i for mean, i in means if math.isclose(mean, pick, rel_tol=1e-12)]
            if len(winners) < len(c.groups):  # a tie of everyone marks nobody
                best.update((i, j) for i in winners)
    return headers, rows, best


def _median_score(record: dict) -> float:
    """A solve metric's median with never-solved runs ranked last (inf when that is the median)."""
    return math.inf if record.get("median") is None else record["median"]


def _csv(c: Comparison) -> str:
    keys, metric_names, group_list = c.all_keys, c.metrics, c.groups
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


def _markdown(c: Comparison, summary: dict) -> str:
    headers, rows, best = _table(c)
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
    foot = (f"\n`relax {c.command}`: {summary['runs_used']} completed runs; mean ± sample std over "
            "runs (n = runs per group); best in bold"
            + (" (for episodes/steps to solve: the lowest median, unsolved runs ranked last)."
               if any(c.report.metric(m).solve for m in c.metrics) else "."))
    if c.report.table_note:
        foot += " " + c.report.table_note
    return "\n".join(lines) + "\n" + foot + "\n" + "".join(f"\n_{n}_\n" for n in summary["notes"])


def _report(reporter, c: Comparison, summary: dict) -> None:
    from rich.table import Table

    headers, rows, best = _table(c)
    table = Table(title=f"relax compare: {c.command}, {summary['runs_used']} runs, "
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
