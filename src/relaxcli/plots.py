"""Every figure relaxcli draws: one function per picture, each returning a matplotlib Figure.

Runners save figures with ``Run.save_figure`` (atomic PNG) and then call :func:`close`.
The Agg backend is selected before pyplot is imported so that plotting works without a display
(servers, CI, sweeps).
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402 - the backend must be chosen first


def close(fig) -> None:
    """Free a figure's memory (pyplot keeps every open figure alive)."""
    plt.close(fig)


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

    cols = max(1, int(math.ceil(math.sqrt(len(images)))))
    rows = int(math.ceil(len(images) / cols))
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
    fig, axes = plt.subplots(1, k, figsize=(4.6 * k, 4.4), squeeze=False)
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
