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
