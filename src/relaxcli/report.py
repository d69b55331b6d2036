"""What a command reports, declared next to the command: ``relax compare`` reads only this.

Each command module ends its constants with one ``declare_report(Report(...))``: the metrics its
summary.json holds (label, which direction is better, how a vector becomes one number, whether a
``null`` means "never happened"), the ones shown by default, the config keys it is grouped by and
those averaged over, how a summary splits into several rows (grad-bench: one per method and
temperature), and its learning curve (which metrics.jsonl key against which, smoothed how) or a
figure of its own. ``relax compare`` looks the declaration up by config.json's ``command`` and
knows no command by name; a command without one is compared on every numeric summary key.

Example:
    >>> _ = declare_report(Report(command="toy", metrics=(
    ...     Metric("loss", label="final loss", better="lower"),), default_metrics=("loss",)))
    >>> REPORTS["toy"].metric("loss").label
    'final loss'
    >>> del REPORTS["toy"]
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

Better = Literal["lower", "higher"]
Reduce = Literal["norm", "sum", "mean"]


@dataclass(frozen=True)
class Metric:
    """One summary.json number (or vector, see ``reduce``) that runs are compared on.

    ``source`` is the summary (or row) key it is read from when it differs from ``name``
    (grad-bench's ``bias_norm`` is ||bias||_2 of the row's ``bias``). ``reduce`` turns a vector into
    one number: ``norm`` = ||v||_2 (and |x| for a scalar), ``sum``, ``mean``; None takes only
    scalars. ``solve``: ``null`` means "never got there" (e.g. episodes to solve): the table
    says ``solved k/N`` and ranks by the median with those runs last.
    """

    name: str
    label: str | None = None
    better: Better | None = None
    reduce: Reduce | None = None
    source: str | None = None
    solve: bool = False


@dataclass(frozen=True, kw_only=True)
class Rows:
    """A summary that holds several units of comparison: ``summary[field]`` is a list of dicts,
    each named by ``keys`` (grouped on beside the run's own keys). ``key_value(options, row, key)``
    gives a row's group value when it is not simply ``row[key]`` (None: ``row.get(key)``)."""

    field: str
    keys: tuple[str, ...]
    key_value: Callable[[dict, dict, str], Any] | None = None


@dataclass(frozen=True, kw_only=True)
class Curve:
    """A learning curve per run from metrics.jsonl: ``y`` (the first of ``y`` present in a record)
    against ``x``, over the records that have both as numbers, optionally ``smooth``-ed (a function
    of the list of y values, e.g. the command's own moving average). compare draws the mean over
    each group's runs with a +/- std band; the legend gives ``legend_metric``'s table cell, best
    first, and the figure is split by the registry's kind of method when ``facet_by_kind``.
    ``reference``: a summary key whose single common value is drawn as a horizontal line
    labelled ``reference_label.format(value)``."""

    x: str
    y: tuple[str, ...]
    smooth: Callable[[list[float]], list[float]] | None = None
    xlabel: str
    ylabel: str
    title: str
    better: Better | None = None
    legend_metric: str | None = None
    legend_title: str | None = None
    facet_by_kind: bool = False
    untrained_x: float | None = None
    reference: str | None = None
    reference_label: str = "{:g}"


@dataclass(frozen=True, kw_only=True)
class Report:
    """What ``command`` reports and how its runs are compared (see the module docstring).

    ``default_metrics`` None: every numeric summary key. ``averaged_over``: option keys that may
    differ between the runs of one group besides the seed and the machine (e.g. the rows' own
    keys). ``default_reduce``: how a metric that is not declared becomes a number (None: scalars
    only). ``figure(keys, groups)``: a figure of the command's own instead of ``curve``, returning
    (the relaxcli.plots function name, its keyword arguments) or None. ``table_note``: a sentence
    under the Markdown table.
    """

    command: str
    metrics: tuple[Metric, ...] = ()
    default_metrics: tuple[str, ...] | None = None
    group_by: tuple[str, ...] = ("method",)
    averaged_over: frozenset[str] = field(default_factory=frozenset)
    rows: Rows | None = None
    default_reduce: Reduce | None = None
    curve: Curve | None = None
    figure: Callable[[list[str], list[dict]], tuple[str, dict] | None] | None = None
    table_note: str = ""

    def metric(self, name: str) -> Metric:
        """The declared metric ``name``, or an undeclared one read as ``default_reduce`` says."""
        for m in self.metrics:
            if m.name == name:
                return m
        return Metric(name, reduce=self.default_reduce)

    def label(self, name: str) -> str:
        return self.metric(name).label or name


def fmt_value(v: Any) -> str:
    """A group key's value as table text: None as "-", floats short, lists comma-joined."""
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        return ",".join(fmt_value(x) for x in v)
    return str(v)


REPORTS: dict[str, Report] = {}


def declare_report(report: Report) -> Report:
    """Register ``report`` under its command name (once per command)."""
    if report.command in REPORTS and REPORTS[report.command] is not report:
        raise ValueError(f"the report of {report.command!r} is declared twice")
    REPORTS[report.command] = report
    return report
