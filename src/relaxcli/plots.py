"""Every figure relaxcli draws: one function per picture, each returning a matplotlib Figure.

Runners save figures with ``Run.save_figure`` (atomic PNG) and then call :func:`close`.
The Agg backend is selected before pyplot is imported so that plotting works without a display
(servers, CI, sweeps).
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt


def close(fig) -> None:
    """Free a figure's memory (pyplot keeps every open figure alive)."""
    plt.close(fig)


# ------------------------------------------------------------------------- relax compare
def compare_curves(lines: dict, xlabel: str, ylabel: str, title: str,
                   references: dict | None = None, logx: bool = False, logy: bool = False):
    """One line per group: the mean over runs with a shaded band of +/- one sample std.

    ``lines`` maps a label to ``{"x": [...], "mean": [...], "std": [...]}``; ``references``
    maps a label to a constant drawn as a dashed horizontal line (e.g. the variance of an
    unbiased estimator that has no temperature, in grad-bench's variance-against-tau picture).
    """
    import numpy as np

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, c in lines.items():
        x, m = np.asarray(c["x"], float), np.asarray(c["mean"], float)
        s = np.asarray(c.get("std") or [0.0] * len(m), float)
        (line,) = ax.plot(x, m, marker="o" if len(x) <= 12 else None, ms=3, label=label)
        if np.any(s > 0):
            lo = m - s
            if logy:  # a band below zero cannot be drawn on a log axis; clip it
                lo = np.maximum(lo, m * 1e-3)
            ax.fill_between(x, lo, m + s, color=line.get_color(), alpha=0.2, linewidth=0)
    colors = plt.rcParams["axes.prop_cycle"].by_key().get("color", ["C0"])
    for i, (label, y) in enumerate((references or {}).items()):
        if logy and not y > 0:  # e.g. an exact estimator's zero variance: say it, cannot draw it
            ax.plot([], [], " ", label=f"{label}: {y:g}")
            continue
        ax.axhline(y, linestyle="--", linewidth=1, label=label,
                   color=colors[(len(lines) + i) % len(colors)])
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    # Outside the axes: with a dozen methods an inside legend hides the lines.
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
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
    """Episode returns (faint), their ``window``-episode moving average and the solve threshold."""
    import numpy as np

    fig, ax = plt.subplots(figsize=(7, 4.5))
    x = np.arange(1, len(returns) + 1)
    ax.plot(x, returns, linewidth=0.7, alpha=0.35, label="episode return")
    ax.plot(x, moving_avg, linewidth=2, label=f"{window}-episode moving average")
    if threshold is not None:
        ax.axhline(threshold, color="k", linestyle="--", linewidth=1, label=f"threshold {threshold:g}")
    ax.set_xlabel("episode")
    ax.set_ylabel("return")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
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
    """Train and test negative ELBO (nats per image) against the epoch."""
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(epochs, train, marker="o", ms=3, label="train -ELBO (training objective)")
    ax.plot(epochs, test, marker="s", ms=3, label="test -ELBO (evaluation model)")
    if untrained is not None:
        ax.axhline(untrained, linestyle="--", linewidth=1, color="gray", label="untrained model (test)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("nats per image")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
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
def gradbench_tau_sweep(sweeps: dict, references: dict, title: str = "grad-bench"):
    """Two panels against temperature: ||bias|| and variance (trace), both on log scales.

    ``sweeps`` maps a relaxed method to ``{"tau": [...], "bias": [...], "variance": [...]}``;
    ``references`` maps a method without temperature (the unbiased estimators, straight-through
    without tau) to ``{"bias", "variance", "unbiased"}``, drawn as horizontal lines (dashed when
    unbiased: their ||bias|| is Monte-Carlo noise, a floor the biased curves should clear).
    """
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.3))
    colors = plt.rcParams["axes.prop_cycle"].by_key().get("color", ["C0"])
    for ax, key, ylabel in ((axes[0], "bias", "||bias||"), (axes[1], "variance", "variance (trace)")):
        for i, (name, s) in enumerate(sweeps.items()):
            ys = [max(y, 1e-300) for y in s[key]]
            ax.plot(s["tau"], ys, marker="o", ms=3, color=colors[i % len(colors)], label=name)
        for j, (name, r) in enumerate(references.items()):
            if r[key] is not None and r[key] > 0:
                ax.axhline(r[key], linestyle="--" if r["unbiased"] else ":", linewidth=1,
                           color=colors[(len(sweeps) + j) % len(colors)],
                           label=name + (" (unbiased)" if r["unbiased"] else ""))
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("temperature tau")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3, which="both")
    axes[0].set_title("bias against temperature")
    axes[1].set_title("variance against temperature")
    handles, labels = axes[1].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, fontsize=7, loc="center right")
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0, 0.8 if handles else 1, 1))
    return fig


def gradbench_training(curves: dict, optimum: float | None = None, title: str = "grad-bench --train"):
    """RELAX's toy figure: exact loss and log10 gradient variance against the optimisation step.

    ``curves`` maps a label to ``{"step": [...], "loss": [...], "log10_variance": [...]}``.
    """
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.3))
    for label, c in curves.items():
        axes[0].plot(c["step"], c["loss"], label=label)
        pts = [(s, v) for s, v in zip(c["step"], c["log10_variance"]) if v is not None]
        if pts:
            axes[1].plot([p[0] for p in pts], [p[1] for p in pts], label=label)
    if optimum is not None:
        axes[0].axhline(optimum, color="black", linestyle="--", linewidth=1, label="optimum")
    axes[0].set_xlabel("step")
    axes[0].set_ylabel("exact loss E[f(b)]")
    axes[1].set_xlabel("step")
    axes[1].set_ylabel("log10 variance of the gradient estimate")
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return fig
