"""Every figure relaxcli draws: one function per picture, each returning a matplotlib Figure.

Runners save figures with ``Run.save_figure`` (atomic PNG) and then call :func:`close`.
The Agg backend is selected before pyplot is imported so that plotting works without a display
(servers, CI, sweeps).

Conventions shared by every figure (so that a reader learns them once):

- A registry method keeps one colour and one marker in every figure of the project: the i-th
  method of :data:`relaxcli.methods.METHODS` gets ``PALETTE[i]`` and ``MARKERS[i]``
  (:func:`method_style`). Other group labels (reinforce's ``reinforce-value``, ...) take the
  palette's colours that the figure's methods leave free (:func:`group_styles`). Two entries of
  one legend never share both colour and line style.
- Legends list the groups best first (or in the order the lines end, top to bottom) and give
  each group's final value, so the answer can be read off the legend alone.
- The spread over runs is a shaded band around the mean.
- An untrained starting point (train-vae's epoch 0) is not drawn: it would set the y-range and
  squash the trained curves into one bundle; its value is given in the caption instead.
- A value that is exactly zero on a log axis is drawn on the axis floor, whose tick reads "0".
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
from matplotlib import ticker

# ------------------------------------------------------------------------- styles
# 32 colours that stay apart on screen and in print (no pale ones): tab10, then darker and more
# saturated hues. Registry order decides which method gets which (see method_style); the
# registry holds 25 methods, so 7 are left for non-method groups before colours repeat.
PALETTE = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf", "#000075", "#b8860b", "#469990", "#800000", "#f032e6", "#000000",
    "#ff4500", "#3cb44b", "#4363d8", "#911eb4", "#9a6324", "#808000", "#42a5f5", "#a9a9a9",
    "#e6194b", "#008080", "#6a3d9a", "#b15928", "#1b9e77", "#7570b3", "#e7298a", "#66a61e",
)
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "*", "h", "p")
LINESTYLES = ("-", "--", ":", "-.", (0, (6, 1.5, 1, 1.5, 1, 1.5)), (0, (10, 2.5)),
              (0, (1, 1)), (0, (4, 1.5, 1, 1.5)))
REFERENCE_COLOR = "0.3"  # reference lines (thresholds, optima): grey, never a group colour


@dataclass(frozen=True)
class Style:
    """How one group is drawn: colour, marker and line style."""

    color: str
    marker: str
    linestyle: Any = "-"

    def kw(self) -> dict:
        return {"color": self.color, "marker": self.marker, "linestyle": self.linestyle}


def _registry_names() -> tuple[str, ...]:
    try:
        from relaxcli.methods import METHODS
    except ImportError:  # pragma: no cover - the registry is part of the package
        return ()
    return tuple(METHODS)


def method_style(name: str) -> Style | None:
    """The fixed style of registry method ``name`` (None for a name the registry does not know)."""
    names = _registry_names()
    if name not in names:
        return None
    i = names.index(name)
    return Style(PALETTE[i % len(PALETTE)], MARKERS[i % len(MARKERS)], "-")


def group_styles(labels, methods: dict | None = None) -> dict[str, Style]:
    """A style per label: the method's own style where ``methods[label]`` (default: the label
    itself) is a registry method, else a palette colour no method of this figure uses.

    A method that labels several groups (e.g. one per temperature) keeps its colour and gets a
    new line style per group, so no two labels share colour and line style.
    """
    methods = methods or {}
    out: dict[str, Style] = {}
    taken: set = set()  # (colour, line style) pairs in use
    pending = []
    for label in labels:
        base = method_style(methods.get(label) or label)
        if base is None:
            pending.append(label)
            continue
        ls = next((s for s in LINESTYLES if (base.color, s) not in taken), None)
        if ls is None:
            pending.append(label)
            continue
        out[label] = Style(base.color, base.marker, ls)
        taken.add((base.color, ls))
    colors_used = {c for c, _ in taken}
    candidates = [(j, ls) for ls in LINESTYLES for j in range(len(PALETTE))]
    for label in pending:
        for j, ls in candidates:
            c = PALETTE[j]
            if (c, ls) in taken or (ls == "-" and c in colors_used):
                continue
            out[label] = Style(c, MARKERS[j % len(MARKERS)], ls)
            taken.add((c, ls))
            colors_used.add(c)
            break
        else:  # more groups than colours x line styles: repeat (never happens below 192)
            k = len(out)
            out[label] = Style(PALETTE[k % len(PALETTE)], MARKERS[k % len(MARKERS)], "-")
    return {label: out[label] for label in labels}


def close(fig) -> None:
    """Free a figure's memory (pyplot keeps every open figure alive)."""
    plt.close(fig)


# ------------------------------------------------------------------------- shared helpers
def fmt_value(mean: float | None, std: float | None = None) -> str:
    """Compact ``mean ± std`` for legends: two significant digits of the spread."""
    if mean is None or not math.isfinite(mean):
        return "-"
    if std is None or not math.isfinite(std) or std <= 0:
        return f"{mean:.4g}"
    decimals = max(0, 1 - math.floor(math.log10(std)))
    if abs(mean) >= 1e5 or max(abs(mean), std) < 1e-3 or decimals > 5:
        return f"{mean:.3g} ± {std:.2g}"
    return f"{mean:.{decimals}f} ± {std:.{decimals}f}"


def log_floor(values) -> float:
    """Where zeros sit on a log axis: a power of ten at least half a decade below the smallest
    positive value (1 when there is none)."""
    pos = [float(v) for v in values if v is not None and math.isfinite(v) and v > 0]
    if not pos:
        return 1.0
    return 10.0 ** math.floor(math.log10(min(pos) / 3.0))


class _ZeroAtFloor(ticker.LogFormatterSciNotation):
    """Log tick labels, except the floor's, which reads "0" (zeros are drawn there)."""

    def __init__(self, floor: float):
        super().__init__()
        self.floor = floor

    def __call__(self, x, pos=None):
        if math.isclose(x, self.floor, rel_tol=1e-6):
            return "0"
        return super().__call__(x, pos)


def mark_zero_floor(ax, floor: float, axis: str = "y") -> None:
    """Make ``floor`` the lower limit of a log ``axis``, label its tick "0" and draw break marks
    beside it: values that are exactly zero are drawn on it."""
    if axis == "y":
        hi = ax.get_ylim()[1]
        ax.set_ylim(floor, max(hi, floor * 10))
        target = ax.yaxis
    else:
        hi = ax.get_xlim()[1]
        ax.set_xlim(floor, max(hi, floor * 10))
        target = ax.xaxis
    ticks = [t for t in target.get_majorticklocs() if t > floor * 1.5]
    target.set_major_locator(ticker.FixedLocator([floor] + ticks))
    target.set_major_formatter(_ZeroAtFloor(floor))
    target.set_minor_formatter(ticker.NullFormatter())
    # a break mark between "0" and the first decade: the axis is not continuous there
    kw = {"transform": ax.transAxes, "color": "black", "clip_on": False, "lw": 1}
    if axis == "y":
        for dy in (0.035, 0.055):
            ax.plot([-0.012, 0.012], [dy - 0.01, dy + 0.01], **kw)
    else:
        for dx in (0.035, 0.055):
            ax.plot([dx - 0.01, dx + 0.01], [-0.012, 0.012], **kw)


def _draw_zero(ax, x, y, style: Style, label: str, axis: str = "y") -> None:
    """A marker for an exact zero on the floor of a log axis (gid "zero:<label>")."""
    (pt,) = ax.plot([x], [y], linestyle="none", marker=style.marker, color=style.color, ms=7,
                    markerfacecolor="white", markeredgewidth=1.5, clip_on=False, zorder=5)
    pt.set_gid(f"zero:{label}")


def _integer_ticks(ax, xs) -> None:
    if xs and all(float(x).is_integer() for x in xs):
        if min(xs) == max(xs):  # one epoch: one tick, centred
            ax.xaxis.set_major_locator(ticker.FixedLocator([min(xs)]))
            ax.set_xlim(min(xs) - 0.5, max(xs) + 0.5)
        else:
            ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))


def _markevery(n: int, i: int):
    """Markers on every point of short curves; about ten, staggered per group, on long ones."""
    if n <= 15:
        return None
    step = max(1, n // 10)
    return (i * max(1, step // 7) % step, step)


def _caption(fig, notes) -> None:
    """Notes under the axes, wrapped to the figure's width (kept inside by constrained layout)."""
    import textwrap

    width = max(40, int(fig.get_figwidth() * 15))  # characters of 8 pt text per line
    notes = [textwrap.fill(n, width) for n in notes if n]
    if notes:
        fig.supxlabel("\n".join(notes), fontsize=8, ha="left", x=0.01, color="0.2")


def _legend_label(label: str, note: str | None) -> str:
    return f"{label}: {note}" if note else label


# ------------------------------------------------------------------------- relax compare
def compare_curves(lines: dict, xlabel: str, ylabel: str, title: str,
                   references: dict | None = None, logx: bool = False, logy: bool = False, *,
                   methods: dict | None = None, facets: dict | None = None,
                   better: str | None = None, order: list | None = None,
                   legend_notes: dict | None = None, untrained_x: float | None = None,
                   notes: list | None = None, value_name: str = "final",
                   legend_title: str | None = None):
    """One line per group: the mean over runs with a shaded band of +/- one sample std.

    ``lines`` maps a label to ``{"x", "mean", "std"}`` lists, optionally ``"n"`` (runs behind
    each point) and ``"runs"`` (each run's ``(x, y)``): where fewer than all of a group's runs
    reach, the mean of those left would jump as runs stop, so the runs are drawn one by one
    there, thin (without ``"runs"``: the mean, thin); the band only where all runs are.
    ``references`` maps a label to a constant drawn as a grey dashed line with its label (e.g.
    a solve threshold). ``methods`` maps a label to its registry method (for
    its colour). ``facets`` maps a label to a panel name: one panel each, sharing both axes.

    The legend lists the groups in ``order``, else by their final value, best first
    (``better`` "lower" or "higher"), else in the order the lines end, top to bottom; each entry
    reads ``label: legend_notes[label]`` (default: the final mean ± std). ``untrained_x`` (e.g.
    epoch 0) is left out of the axes, so the y-range is the trained part's; its values are
    named in the caption, with ``notes``.
    """
    import numpy as np

    data, untrained, singles = {}, [], {}
    for label, c in lines.items():
        x = np.asarray(c["x"], float)
        m = np.asarray(c["mean"], float)
        s = np.asarray(c.get("std") or [0.0] * len(m), float)
        n = np.asarray(c.get("n") or [1] * len(m), float)
        keep = np.ones(len(x), bool) if untrained_x is None else ~np.isclose(x, untrained_x)
        untrained += [v for v in m[~keep] if math.isfinite(v)]
        data[label] = (x[keep], m[keep], np.nan_to_num(s[keep]), n[keep])
        singles[label] = []
        for rx, ry in c.get("runs") or []:
            rx, ry = np.asarray(rx, float), np.asarray(ry, float)
            k = np.ones(len(rx), bool) if untrained_x is None else ~np.isclose(rx, untrained_x)
            singles[label].append((rx[k], ry[k]))
    styles = group_styles(list(lines), methods)
    final = {lab: (d[1][-1] if len(d[1]) else math.nan) for lab, d in data.items()}
    final_std = {lab: (d[2][-1] if len(d[2]) else math.nan) for lab, d in data.items()}
    if order:
        ranked = [lab for lab in order if lab in data] + [lab for lab in data if lab not in order]
    else:
        sign = 1.0 if better == "lower" else -1.0
        ranked = sorted(data, key=lambda lab: (math.isnan(final[lab]), sign * final[lab]
                                               if not math.isnan(final[lab]) else 0.0))
    notes_for = legend_notes if legend_notes is not None else {
        lab: f"{value_name} {fmt_value(final[lab], final_std[lab])}" for lab in data}

    panel_of = {lab: (facets or {}).get(lab, "") for lab in data}
    panels = list(dict.fromkeys(panel_of[lab] for lab in data)) if facets else [""]
    ncols = 1 if len(panels) <= 3 else 2  # panels stacked: wide enough for the legends
    nrows = math.ceil(len(panels) / ncols)
    per_panel = {p: [lab for lab in ranked if panel_of[lab] == p or not facets] for p in panels}
    longest = max(len(v) for v in per_panel.values())
    if facets:
        height = max(3.0, 0.2 * longest + 1.2) * nrows + 0.8
        fig, axes = plt.subplots(nrows, ncols, figsize=(9.5 * ncols, height), sharex=True,
                                 sharey=True, squeeze=False, layout="constrained")
    else:
        fig, axes = plt.subplots(1, 1, figsize=(9.5, max(4.6, 0.24 * longest + 1.2)),
                                 squeeze=False, layout="constrained")
    flat = [ax for row in axes for ax in row]

    all_y = [v for d in data.values() for v in d[1]] + list((references or {}).values())
    floor = log_floor(all_y) if logy else None
    zeros_drawn = False
    for ax, panel in zip(flat, panels):
        for i, lab in enumerate(per_panel[panel]):
            x, m, s, n = data[lab]
            st = styles[lab]
            if len(x) == 0:
                continue
            full = n >= n.max()
            # the first point that fewer runs reach (runs that start late: all bold)
            cut = len(x) if full.all() or not full[0] else int(np.argmin(full))
            mm = np.where(m > 0, m, np.nan) if logy else m
            ax.plot(x[:cut], mm[:cut], color=st.color, linestyle=st.linestyle, lw=1.8,
                    marker=st.marker, ms=4.5, markevery=_markevery(len(x), i),
                    label=_legend_label(lab, notes_for.get(lab)))
            if cut < len(x) and singles[lab]:  # past the first run's end: the runs one by one
                x0 = x[max(0, cut - 1)]
                for rx, ry in singles[lab]:
                    part = rx >= x0
                    if part.sum() >= 1:
                        ry_ = np.where(ry > 0, ry, np.nan) if logy else ry
                        ax.plot(rx[part], ry_[part], color=st.color, linestyle=st.linestyle,
                                lw=0.8, alpha=0.7)
                        ax.plot(rx[part][-1:], ry_[part][-1:], color=st.color, marker="|",
                                ms=8, mew=1.5, linestyle="none")
            elif cut < len(x):  # fewer runs from here on: the mean of those left, thin
                ax.plot(x[max(0, cut - 1):], mm[max(0, cut - 1):], color=st.color,
                        linestyle=st.linestyle, lw=0.8, alpha=0.6)
            band = (s > 0) & (n >= 2) & full
            if band.any():
                lo, hi = m - s, m + s
                if logy:  # a band below zero cannot be drawn on a log axis: clip it at the floor
                    lo = np.maximum(lo, floor)
                ax.fill_between(x, lo, hi, where=band, color=st.color, alpha=0.15, linewidth=0,
                                interpolate=True)
            if logy:
                for xz in x[m <= 0]:
                    _draw_zero(ax, xz, floor, st, lab)
                    zeros_drawn = True
        for label, y in (references or {}).items():
            yy = floor if (logy and not y > 0) else y
            ax.axhline(yy, color=REFERENCE_COLOR, linestyle="--", linewidth=1, zorder=1)
            ax.annotate(f"{label}" + (" = 0" if logy and not y > 0 else ""), (0.995, yy),
                        xycoords=("axes fraction", "data"), ha="right", va="bottom", fontsize=8,
                        color=REFERENCE_COLOR)
            zeros_drawn |= bool(logy and not y > 0)
        if facets:
            ax.set_title(panel, fontsize=10)
        ax.grid(alpha=0.3, which="major")
        if logx:
            ax.set_xscale("log")
        if logy:
            ax.set_yscale("log")
    for ax in flat[len(panels):]:
        ax.axis("off")
    if facets and len(ranked) > 1:  # the overall best, faint, in the panels it is not in
        best = ranked[0]
        x, m = data[best][0], data[best][1]
        for ax, panel in zip(flat, panels):
            if panel_of[best] != panel and len(x):
                ax.plot(x, np.where(m > 0, m, np.nan) if logy else m, color="0.55", lw=1.2,
                        linestyle=(0, (1, 1.5)), zorder=1, label=f"best overall: {best}")
    xs_all = [float(v) for d in data.values() for v in d[0]]
    for k, ax in enumerate(flat[:len(panels)]):
        if not logx:
            _integer_ticks(ax, xs_all)
        if not facets or k >= len(panels) - ncols:  # shared x: the label under the last row
            ax.set_xlabel(xlabel)
    for row in axes:
        row[0].set_ylabel(ylabel)
    if not logy:  # y-limits from the lines, not the bands (mean ± std can leave the range
        # a return or a loss can take); a band past them is cut off
        ys = [v for d in data.values() for v in d[1]] + list((references or {}).values())
        ys += [v for runs in singles.values() for _, ry in runs for v in ry]
        ys = [v for v in ys if math.isfinite(v)]
        if ys and max(ys) > min(ys):
            pad = 0.06 * (max(ys) - min(ys))
            flat[0].set_ylim(min(ys) - pad, max(ys) + pad)  # shared y: every panel
    if logy and zeros_drawn:
        mark_zero_floor(flat[0], floor)  # shared y axis: one call sets every panel

    how = legend_title or ("best first" if better or order else "in the order the lines end")
    for ax, _panel in zip(flat, panels):
        handles, labels = ax.get_legend_handles_labels()
        if not handles:
            continue
        ax.legend(handles, labels, fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5),
                  title=how, title_fontsize=8)
    fig.suptitle(title)
    caption = list(notes or [])
    if untrained:
        caption.insert(0, f"Untrained start ({xlabel} {untrained_x:g}, not drawn so that the "
                          f"y-axis shows the trained range): {min(untrained):.4g}"
                          + (f" to {max(untrained):.4g}" if max(untrained) > min(untrained) else "")
                          + ".")
    partial = [lab for lab, d in data.items() if len(d[3]) and (d[3] < d[3].max()).any()]
    if any(singles[lab] for lab in partial):
        caption.append("Bold line and band: all of a group's runs. Past the point where the "
                       "group's first run stopped, its runs are drawn one by one (thin lines, "
                       "a tick where each ends).")
    elif partial:
        caption.append("Thin line: only some of the group's runs reach that far (the others "
                       "stopped earlier); the band is drawn where all of them do.")
    caption.append("Band: ± one sample std over runs.")
    _caption(fig, caption)
    return fig
# ------------------------------------------------------------------------- relax sample
def _grid(n: int, max_cols: int = 4):
    cols = min(n, max_cols)
    rows = (n + cols - 1) // cols
    return rows, cols


def value_histogram(values, labels: list[str], atoms=(0.0, 1.0), exact_atoms: dict | None = None,
                    title: str = "", bins: int = 40, max_panels: int = 12):
    """Histogram per coordinate of samples ``values`` (n, C), with point masses drawn as bars.

    Values strictly between the atoms are shown as a probability-per-bin histogram; each atom
    (e.g. the exact zeros and ones of a hard-concrete gate) is drawn as a separate wide bar whose
    height is its empirical probability, so mixed laws (atoms plus density) read correctly.
    ``exact_atoms`` maps an atom to per-coordinate closed-form probabilities, drawn as black
    ticks on top of the bars.
    """
    import numpy as np

    values = np.asarray(values, dtype=float)
    n, c = values.shape
    shown = min(c, max_panels)
    rows, cols = _grid(shown)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.9 * rows), squeeze=False)
    atoms = [float(a) for a in (atoms or ())]
    lo = min([values.min()] + atoms)
    hi = max([values.max()] + atoms)
    width = (hi - lo) / bins if hi > lo else 1.0
    for j in range(rows * cols):
        ax = axes[j // cols][j % cols]
        if j >= shown:
            ax.axis("off")
            continue
        v = values[:, j]
        at_atom = np.zeros(n, dtype=bool)
        for a in atoms:
            at_atom |= v == a
        inner = v[~at_atom]
        if inner.size:
            w = np.full(inner.size, 1.0 / n)
            ax.hist(inner, bins=bins, range=(lo, hi), weights=w, color="C0", alpha=0.8,
                    label="P(bin)")
        for i, a in enumerate(atoms):
            mass = float(np.mean(v == a))
            if mass > 0:
                ax.bar([a], [mass], width=2.5 * width, color="C3", alpha=0.85,
                       label="P(z = atom)" if i == 0 else None)
            ex = (exact_atoms or {}).get(a)
            if ex is not None:
                ax.plot([a - 1.5 * width, a + 1.5 * width], [ex[j], ex[j]], color="black", lw=2,
                        label="closed form" if i == 0 else None)
        ax.set_title(labels[j], fontsize=9)
        ax.set_xlabel("z")
        ax.grid(alpha=0.3)
        if j == 0:
            ax.legend(fontsize=7)
    if title:
        fig.suptitle(title + (f" (first {shown} of {c} coordinates)" if shown < c else ""))
    fig.tight_layout()
    return fig


def category_means(means, exact=None, labels: list[str] | None = None, ylabel: str = "mean",
                   exact_label: str = "closed form", title: str = "",
                   categories: list[int] | None = None):
    """Grouped bar chart of per-category means ``means`` (B, K), closed forms as black ticks.

    ``categories``: the category numbers of the K columns when they are a selection (x labels)."""
    import numpy as np

    means = np.atleast_2d(np.asarray(means, dtype=float))
    b, k = means.shape
    fig, ax = plt.subplots(figsize=(max(5.0, 0.6 * k * b + 2), 3.8))
    width = 0.8 / b
    x = np.arange(k)
    for i in range(b):
        pos = x - 0.4 + width * (i + 0.5)
        ax.bar(pos, means[i], width=width * 0.95, label=(labels[i] if labels else None))
        if exact is not None:
            ex = np.atleast_2d(np.asarray(exact, dtype=float))[i]
            ax.scatter(pos, ex, marker="_", s=300, color="black", zorder=3,
                       label=exact_label if i == 0 else None)
    ax.set_xticks(x)
    ax.set_xticklabels([str(i) for i in (range(k) if categories is None else categories)],
                       rotation=90 if k > 20 else 0, fontsize=8 if k > 20 else None)
    ax.set_xlabel("category")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3, axis="y")
    if labels or exact is not None:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _simplex_xy(p):
    """Barycentric points (n, 3) -> Cartesian coordinates in the equilateral triangle."""
    import numpy as np

    p = np.asarray(p, dtype=float)
    x = p[:, 1] + 0.5 * p[:, 2]
    y = (np.sqrt(3) / 2) * p[:, 2]
    return x, y


def _simplex_frame(ax) -> None:
    import numpy as np

    ax.plot([0, 1, 0.5, 0], [0, 0, np.sqrt(3) / 2, 0], color="black", lw=1)
    ax.text(0.0, -0.06, "z1=1", ha="center", va="top", fontsize=8)
    ax.text(1.0, -0.06, "z2=1", ha="center", va="top", fontsize=8)
    ax.text(0.5, np.sqrt(3) / 2 + 0.03, "z3=1", ha="center", fontsize=8)
    ax.set_aspect("equal")
    ax.axis("off")


def simplex_scatter(points, title: str = "", max_points: int = 5000):
    """Samples on the 2-simplex (n, 3) as a translucent scatter in the triangle."""
    import numpy as np

    points = np.asarray(points, dtype=float)[:max_points]
    fig, ax = plt.subplots(figsize=(4.8, 4.4))
    x, y = _simplex_xy(points)
    ax.scatter(x, y, s=3, alpha=0.25, color="C0", linewidths=0)
    _simplex_frame(ax)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def topk_inclusion(freq, exact=None, k: int | None = None, title: str = "",
                   categories: list[int] | None = None):
    """Inclusion frequencies P(i in top-k) per category (B, K) with exact values as ticks."""
    return category_means(freq, exact, ylabel="P(category in the top-k)",
                          exact_label="exact (enumeration)",
                          title=title or (f"top-{k} inclusion frequencies" if k else ""),
                          categories=categories)


# ------------------------------------------------------------------------- relax reinforce
def reinforce_curve(returns, moving_avg, threshold=None, title: str = "", window: int = 100):
    """Episode returns (faint), their ``window``-episode moving average and the solve threshold.

    The episode where the moving average over a full window first reaches the threshold (the
    runner's "solved") is marked and named.
    """
    import numpy as np

    fig, ax = plt.subplots(figsize=(7.5, 4.5), layout="constrained")
    x = np.arange(1, len(returns) + 1)
    ma = np.asarray(moving_avg, float)
    ax.plot(x, returns, linewidth=0.7, alpha=0.35, color=PALETTE[7], label="episode return")
    ax.plot(x, ma, linewidth=2, color=PALETTE[0], label=f"{window}-episode moving average")
    if threshold is not None:
        ax.axhline(threshold, color=REFERENCE_COLOR, linestyle="--", linewidth=1,
                   label=f"solve threshold {threshold:g}")
        hit = np.nonzero((np.arange(len(ma)) >= window - 1) & (ma >= threshold))[0]
        if hit.size:
            e = int(hit[0]) + 1
            ax.plot([e], [ma[hit[0]]], marker="*", ms=13, color=PALETTE[3], linestyle="none",
                    label=f"solved at episode {e}", zorder=5)
    if len(ma):
        ax.annotate(f"{ma[-1]:.4g}", (x[-1], ma[-1]), xytext=(4, 0), textcoords="offset points",
                    va="center", fontsize=8, color=PALETTE[0])
    ax.set_xlabel("episode")
    ax.set_ylabel("return")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return fig



def episode_gif(frames, fps: int = 30) -> bytes:
    """An animated GIF (bytes) of RGB frames (H, W, 3 uint8 arrays), e.g. one evaluation episode."""
    import io

    from PIL import Image

    images = [Image.fromarray(f) for f in frames]
    buf = io.BytesIO()
    images[0].save(buf, format="GIF", save_all=True, append_images=images[1:],
                   duration=max(1, round(1000 / fps)), loop=0)
    return buf.getvalue()


# ------------------------------------------------------------------------- relax train-vae
def _image_grid(ax, images, rows: int, cols: int) -> None:
    """Tile ``images`` (N, H, W) in [0, 1] row by row into one grey picture on ``ax``."""
    import numpy as np

    imgs = np.asarray(images, float)
    n, h, w = imgs.shape
    grid = np.full((rows * (h + 1) - 1, cols * (w + 1) - 1), 0.5)  # grey separators
    for i in range(min(n, rows * cols)):
        r, c = divmod(i, cols)
        grid[r * (h + 1): r * (h + 1) + h, c * (w + 1): c * (w + 1) + w] = imgs[i]
    ax.imshow(grid, cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
    ax.set_axis_off()


def vae_reconstructions(originals, reconstructions, title: str = "test images (top) and reconstructions (bottom)"):
    """Test images in the top row, the decoder's mean p(x|z), z ~ q(z|x), below each one."""
    import numpy as np

    both = np.concatenate([np.asarray(originals, float), np.asarray(reconstructions, float)])
    cols = len(originals)
    fig, ax = plt.subplots(figsize=(cols * 0.8, 1.9))
    _image_grid(ax, both, 2, cols)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def vae_samples(images, title: str = "decoder means of prior samples"):
    """Decodes of latents drawn from the prior, on a square grid."""
    import math

    cols = max(1, math.ceil(math.sqrt(len(images))))
    rows = math.ceil(len(images) / cols)
    fig, ax = plt.subplots(figsize=(cols * 0.6, rows * 0.6 + 0.3))
    _image_grid(ax, images, rows, cols)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def vae_curves(epochs, train, test, title: str = "train-vae", untrained: float | None = None):
    """Train and test negative ELBO (nats per image) against the epoch, trained epochs only.

    The untrained model's test -ELBO (``untrained``, epoch 0) is named in the caption, not drawn:
    hundreds of nats above the rest, it would flatten every trained epoch into one line. The
    last value of each curve is written at its end, so one epoch reads as two labelled points.
    """
    fig, ax = plt.subplots(figsize=(6.4, 4.2), layout="constrained")
    series = (("train -ELBO (training objective)", train, PALETTE[1], "s", "--"),
              ("test -ELBO (evaluation model)", test, PALETTE[0], "o", "-"))
    for label, ys, color, marker, ls in series:
        pts = [(e, y) for e, y in zip(epochs, ys) if y is not None and math.isfinite(y)]
        if not pts:
            continue
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=marker, ms=5, color=color,
                linestyle=ls, markevery=_markevery(len(pts), 0), label=f"{label}: {pts[-1][1]:.2f}")
        ax.annotate(f"{pts[-1][1]:.2f}", pts[-1], xytext=(6, 0), textcoords="offset points",
                    va="center", fontsize=8, color=color)
    ax.margins(x=0.12 if len(epochs) <= 5 else 0.06)  # room for the end labels
    _integer_ticks(ax, [float(e) for e in epochs])
    ax.set_xlabel("epoch")
    ax.set_ylabel("nats per image")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    if untrained is not None:
        _caption(fig, [(f"Untrained model (epoch 0): test -ELBO {untrained:.2f}, not drawn so "
                        "that the y-axis shows the trained epochs.")])
    return fig



# ------------------------------------------------------------------------- relax bridge
def simplex_lattice(resolution: int = 120):
    """Interior barycentric points of the 2-simplex on a triangular lattice, and its triangles.

    Returns ``(points (M, 3), triangles (T, 3))``; boundary points are left out because
    densities such as Dirichlet(alpha < 1) or the logistic normal's are undefined there.
    """
    import numpy as np

    n = resolution
    index, pts = {}, []
    for i in range(1, n):
        for j in range(1, n - i):
            index[(i, j)] = len(pts)
            pts.append((i / n, j / n, (n - i - j) / n))
    tris = []
    for (i, j), a in index.items():
        b, c, d = index.get((i + 1, j)), index.get((i, j + 1)), index.get((i + 1, j - 1))
        if b is not None and c is not None:
            tris.append((a, b, c))
        if b is not None and d is not None:
            tris.append((a, d, b))
    return np.asarray(pts), np.asarray(tris)


def _simplex_density_axes(ax, points, triangles, density, vmax: float, title: str):
    import matplotlib.tri as mtri

    x, y = _simplex_xy(points)
    tri = mtri.Triangulation(x, y, triangles)
    m = ax.tripcolor(tri, density, shading="gouraud", cmap="viridis", vmin=0.0, vmax=vmax)
    _simplex_frame(ax)
    ax.set_title(title, fontsize=10)
    return m


def simplex_heatmap(points, triangles, density, vmax: float, title: str = ""):
    """One density on the 2-simplex as a heatmap, colour scale [0, vmax] (shared across figures)."""
    fig, ax = plt.subplots(figsize=(5.0, 4.4))
    m = _simplex_density_axes(ax, points, triangles, density, vmax, title)
    fig.colorbar(m, ax=ax, shrink=0.8, label="density")
    fig.tight_layout()
    return fig


def simplex_heatmaps(points, triangles, densities: dict, vmax: float, title: str = ""):
    """Several densities on the 2-simplex side by side with one colour scale and one colour bar."""
    k = len(densities)
    fig, axes = plt.subplots(1, k, figsize=(4.4 * k + 1.0, 4.2), squeeze=False, layout="constrained")
    m = None
    for ax, (name, dens) in zip(axes[0], densities.items()):
        m = _simplex_density_axes(ax, points, triangles, dens, vmax, name)
    if m is not None:
        fig.colorbar(m, ax=list(axes[0]), shrink=0.8, label="density")
    if title:
        fig.suptitle(title)
    return fig


# ------------------------------------------------------------------------- relax grad-bench
def _ref_name(name: str, r: dict) -> str:
    """A method without a swept temperature; a temperature it learned itself is named."""
    tau = r.get("tau")
    if isinstance(tau, (int, float)) and not isinstance(tau, bool):
        return f"{name} (learned τ {tau:.3g})"
    if tau == "learned":
        return f"{name} (learned τ)"
    return name


def _best_mse(s: dict) -> tuple[float, Any]:
    """(lowest ||bias||^2 + variance, the temperature where it is) of a swept method."""
    best = (math.inf, None)
    for t, b, v in zip(s["tau"], s["bias"], s["variance"]):
        if b is not None and v is not None and b * b + v < best[0]:
            best = (b * b + v, t)
    return best


def _gradbench_block(ax_bv, ax_b, ax_v, sweeps: dict, refs: dict, styles: dict,
                     problem: str) -> None:
    """One problem: variance against ||bias|| (big), ||bias|| and variance against tau."""
    import numpy as np
    from matplotlib.lines import Line2D

    def num(v):
        return np.nan if v is None else float(v)

    # The unbiased estimators' measured ||bias|| is Monte-Carlo noise: it is drawn as one grey
    # band (the level a biased estimator has to clear to be told apart), and their points sit on
    # the zero-bias line. The bias axes' floor comes from the biased estimators only.
    noise = [r["bias"] for r in refs.values() if r.get("unbiased") and r["bias"] is not None]
    biased = ([b for sw in sweeps.values() for b in sw["bias"]]
              + [r["bias"] for r in refs.values() if not r.get("unbiased")])
    variances = ([v for sw in sweeps.values() for v in sw["variance"]]
                 + [r["variance"] for r in refs.values()])
    fb = log_floor(biased + ([max(noise)] if noise else []))
    fv = log_floor(variances)
    zero = {"b": False, "v": False}

    def on_floor(v, floor, key):
        if v is None or not v > 0:
            zero[key] = True
            return floor
        return float(v)

    if noise and max(noise) > fb:
        ax_b.axhspan(fb, max(noise), color="0.88", zorder=0, lw=0)
        ax_bv.axvspan(fb, max(noise), color="0.88", zorder=0, lw=0)
        ax_bv.annotate("Monte-Carlo noise\nof the bias estimate", (max(noise), 0.99),
                       xycoords=("data", "axes fraction"), va="top", ha="right", fontsize=7,
                       color="0.35")
        ax_b.annotate("grey: the unbiased estimators' measured ‖bias‖ (Monte-Carlo noise)",
                      (0.01, 0.015), xycoords="axes fraction", va="bottom", ha="left",
                      fontsize=7, color="0.35")
    entries = []  # (MSE, legend text, style)
    names = _registry_names()
    annotated = min(sweeps, key=lambda n: names.index(n) if n in names else len(names),
                    default=None)
    for name, sw in sweeps.items():
        st = styles[name]
        tau = np.asarray(sw["tau"], float)
        b = np.asarray([num(v) for v in sw["bias"]])
        v = np.asarray([num(x) for x in sw["variance"]])
        for ax, y, key, floor, sd in ((ax_b, b, "b", fb, sw.get("bias_std")),
                                      (ax_v, v, "v", fv, sw.get("variance_std"))):
            ax.plot(tau, np.where(y > 0, y, np.nan), marker=st.marker, color=st.color,
                    linestyle=st.linestyle, ms=5, lw=1.6)
            if sd is not None:  # a band where it stays above zero (a log axis has no room below)
                sd = np.nan_to_num(np.asarray([num(x) for x in sd]))
                ok = (sd > 0) & (y - sd > 0)
                if ok.any():
                    ax.fill_between(tau, y - sd, y + sd, where=ok, color=st.color, alpha=0.15,
                                    lw=0)
            for t in tau[y == 0]:
                _draw_zero(ax, t, floor, st, name)
                zero[key] = True
        bx = np.array([on_floor(x, fb, "b") for x in b])
        vy = np.array([on_floor(x, fv, "v") for x in v])
        ax_bv.plot(bx, vy, marker=st.marker, color=st.color, linestyle=st.linestyle, ms=6, lw=1.3)
        if name == annotated:  # one curve's temperatures show which way tau runs
            for k in range(len(tau)):
                ax_bv.annotate(f"τ {tau[k]:g}", (bx[k], vy[k]), xytext=(-6, 0),
                               textcoords="offset points", fontsize=7, color=st.color,
                               va="center", ha="right")
        mse, t_best = _best_mse(sw)
        entries.append((mse, f"{name}: MSE {mse:.2g} (at τ {t_best:g})", st))
    for name, r in refs.items():
        st = styles[name]
        label = _ref_name(name, r)
        b, v = r["bias"], r["variance"]
        hollow = {"markerfacecolor": "white"} if not (v is not None and v > 0) else {}
        if not r.get("unbiased") and b is not None:
            ax_b.axhline(on_floor(b, fb, "b"), color=st.color, linestyle="--", lw=1.2)
            ax_b.plot([1.0], [on_floor(b, fb, "b")], transform=ax_b.get_yaxis_transform(),
                      marker=st.marker, color=st.color, ms=6, clip_on=False)
        if v is not None:
            ax_v.axhline(on_floor(v, fv, "v"), color=st.color, linestyle="--", lw=1.2)
            ax_v.plot([1.0], [on_floor(v, fv, "v")], transform=ax_v.get_yaxis_transform(),
                      marker=st.marker, color=st.color, ms=6, clip_on=False, **hollow)
        bx = fb if r.get("unbiased") else on_floor(b, fb, "b")
        vy = on_floor(v, fv, "v")
        (pt,) = ax_bv.plot([bx], [vy], marker=st.marker, color=st.color, ms=8, linestyle="none",
                           clip_on=False, zorder=5, **hollow)
        if hollow:
            pt.set_gid(f"zero:{name}")
        ax_bv.annotate(label, (bx, vy), xytext=(7, 8 if hollow else 0), textcoords="offset points",
                       fontsize=7.5, color=st.color, va="center")
        mse = (b or 0.0) ** 2 + (v or 0.0)
        entries.append((mse, f"{label}: MSE {mse:.2g}", st))

    if not sweeps:  # no method with a temperature: the τ panels hold only the dashed levels
        ax_b.set_xlim(0.05, 2.0)
        ax_b.annotate("no method with a temperature", (0.5, 0.5), xycoords="axes fraction",
                      ha="center", fontsize=8, color="0.35")
    for ax in (ax_b, ax_v, ax_bv):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.grid(alpha=0.3, which="major")
    ax_v.set_xlabel("temperature τ")
    ax_b.set_ylabel("‖bias‖")
    ax_v.set_ylabel("variance (trace)")
    ax_bv.set_xlabel("‖bias‖ (the unbiased estimators on the 0 line)")
    ax_bv.set_ylabel("variance (trace)")
    ax_bv.margins(x=0.15, y=0.08)
    if zero["b"] or (noise and min(noise) <= 0):
        mark_zero_floor(ax_b, fb)
    if zero["v"]:
        mark_zero_floor(ax_v, fv)
        mark_zero_floor(ax_bv, fv)
    mark_zero_floor(ax_bv, fb, axis="x")
    ax_bv.axvline(fb, color="0.6", lw=1, zorder=0)
    suffix = f": {problem}" if problem else ""
    ax_bv.set_title("variance against bias, one point per temperature" + suffix, fontsize=10)
    ax_b.set_title("bias against temperature" + suffix, fontsize=10)
    ax_v.set_title("variance against temperature" + suffix, fontsize=10)
    entries.sort(key=lambda e: e[0])
    handles = [Line2D([], [], color=st.color, marker=st.marker, linestyle=st.linestyle, ms=5)
               for _, _, st in entries]
    ax_b.legend(handles, [e[1] for e in entries], fontsize=7.5, loc="upper left",
                bbox_to_anchor=(1.03, 1.0), title="lowest MSE = ‖bias‖² + variance first",
                title_fontsize=7.5)


def gradbench_problems(problems: dict, title: str = "grad-bench", notes: list | None = None):
    """:func:`gradbench_tau_sweep` for several problems, one block of three panels each.

    ``problems`` maps a problem name to ``(sweeps, references)``.
    """
    names = list(dict.fromkeys(n for sw, rf in problems.values() for n in [*sw, *rf]))
    methods = {}
    for sw, rf in problems.values():
        for n, d in [*sw.items(), *rf.items()]:
            methods.setdefault(n, d.get("method", n))
    styles = group_styles(names, methods)
    k = len(problems)
    fig = plt.figure(figsize=(13.5, 6.6 * k + 0.6), layout="constrained")
    gs = fig.add_gridspec(2 * k, 2, width_ratios=(1.15, 1))
    for i, (problem, (sw, rf)) in enumerate(problems.items()):
        ax_bv = fig.add_subplot(gs[2 * i:2 * i + 2, 0])
        ax_b = fig.add_subplot(gs[2 * i, 1])
        ax_v = fig.add_subplot(gs[2 * i + 1, 1], sharex=ax_b)
        ax_b.tick_params(labelbottom=False)
        _gradbench_block(ax_bv, ax_b, ax_v, sw, rf, styles, problem if k > 1 else "")
    fig.suptitle(title)
    _caption(fig, list(notes or []) + [
        ("Left: each estimator's variance against its bias; methods with a temperature are "
         "curves, one point per τ; the unbiased ones sit on the zero-bias line. Right: the same "
         "against τ; dashed lines (marker at the right edge) are methods without a temperature."),
        "A value of exactly zero on a log axis is drawn on the axis floor, labelled 0."])
    return fig


def gradbench_tau_sweep(sweeps: dict, references: dict, title: str = "grad-bench",
                        notes: list | None = None):
    """Variance against ||bias|| (the picture of the estimator papers), and ||bias|| and
    variance (trace) against temperature, all on log scales.

    ``sweeps`` maps a method with a temperature to ``{"tau", "bias", "variance"}`` lists
    (optional ``"bias_std"``, ``"variance_std"``: a band); ``references`` maps a method without
    a swept temperature (the unbiased estimators, straight-through, ...) to ``{"bias",
    "variance", "unbiased"}`` (optional ``"tau"``: a temperature it learned): one point in the
    variance-against-bias panel, where the unbiased ones sit on the zero-bias line, and a dashed
    line in the temperature panels. The unbiased estimators' measured ||bias|| (pure Monte-Carlo
    noise) is one grey band in the bias panel. The legend lists the methods by their lowest
    MSE = ||bias||^2 + variance.
    """
    return gradbench_problems({"": (sweeps, references)}, title=title, notes=notes)


def gradbench_training(curves: dict, optimum: float | None = None, title: str = "grad-bench --train",
                       methods: dict | None = None):
    """RELAX's toy figure: exact loss and gradient variance (log scale) against the step.

    ``curves`` maps a label ("<method>" or "<method> tau=<t>") to ``{"step", "loss",
    "log10_variance"}`` (None for a variance of exactly zero, drawn on the axis floor).
    """
    import numpy as np

    methods = methods or {lab: lab.split(" tau=")[0] for lab in curves}
    styles = group_styles(list(curves), methods)
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.6), layout="constrained")
    variances = {lab: [0.0 if v is None else 10.0 ** v for v in c["log10_variance"]]
                 for lab, c in curves.items()}
    floor = log_floor([v for vs in variances.values() for v in vs])
    zeros = False
    final = {lab: c["loss"][-1] if c["loss"] else math.inf for lab, c in curves.items()}
    for i, lab in enumerate(sorted(curves, key=lambda k: final[k])):
        c, st = curves[lab], styles[lab]
        every = _markevery(len(c["step"]), i)
        axes[0].plot(c["step"], c["loss"], color=st.color, linestyle=st.linestyle,
                     marker=st.marker, ms=4, markevery=every,
                     label=f"{lab}: final {final[lab]:.5g}")
        v = np.asarray(variances[lab], float)
        axes[1].plot(c["step"], np.where(v > 0, v, np.nan), color=st.color,
                     linestyle=st.linestyle, marker=st.marker, ms=4, markevery=every)
        if (v == 0).any():  # exact estimator: a line on the floor
            steps = np.asarray(c["step"], float)
            (ln,) = axes[1].plot(steps[v == 0], np.full(int((v == 0).sum()), floor),
                                 color=st.color, linestyle=st.linestyle, lw=2.5, clip_on=False,
                                 marker=st.marker, ms=6, markerfacecolor="white",
                                 markevery=_markevery(int((v == 0).sum()), i), zorder=5)
            ln.set_gid(f"zero:{lab}")
            zeros = True
    if optimum is not None:
        axes[0].axhline(optimum, color=REFERENCE_COLOR, linestyle="--", linewidth=1)
        axes[0].annotate(f"optimum {optimum:.5g}", (0.995, optimum),
                         xycoords=("axes fraction", "data"), ha="right", va="bottom", fontsize=8,
                         color=REFERENCE_COLOR)
    axes[0].set_xlabel("step")
    axes[0].set_ylabel("exact loss E[f(b)]")
    axes[1].set_xlabel("step")
    axes[1].set_ylabel("variance of the gradient estimate")
    axes[1].set_yscale("log")
    if zeros:
        mark_zero_floor(axes[1], floor)
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[1].legend(*axes[0].get_legend_handles_labels(), fontsize=7, loc="center left",
                   bbox_to_anchor=(1.02, 0.5), title="lowest final loss first", title_fontsize=7.5)
    fig.suptitle(title)
    return fig
