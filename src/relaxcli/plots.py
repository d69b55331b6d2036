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
    grid = np.ones((rows * (h + 1) - 1, cols * (w + 1) - 1))
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
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig
