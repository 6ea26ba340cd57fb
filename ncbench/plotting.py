"""Matplotlib (Agg, no display) helpers shared by the task plots: figures, log-scale curves, saving."""
from __future__ import annotations

from pathlib import Path


def subplots(*args, **kwargs):
    """`plt.subplots` on the file-only Agg backend."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(*args, **kwargs)


def save_figure(fig, path: Path, title: str | None = None, dpi: int = 110) -> Path:
    """Title, tight layout, write the PNG, free the figure."""
    import matplotlib.pyplot as plt

    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return Path(path)


def log_axis_plot(ax, x, ys: dict, title: str, ylabel: str, xlabel: str = "epoch") -> None:
    """Curves on a log y-axis (non-positive and non-finite values dropped), with a legend."""
    import numpy as np

    for label, y in ys.items():
        y = np.asarray(y, dtype=float)
        ok = np.isfinite(y) & (y > 0)
        ax.plot(np.asarray(x)[ok], y[ok], marker="o", ms=3, label=label)
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)


def series(rows, split: str, metric: str):
    """(epoch, value) arrays of one metric of one split of a long results frame, by epoch."""
    d = rows[(rows.split == split) & (rows.metric == metric)].sort_values("epoch")
    return d.epoch.to_numpy(), d.value.to_numpy()
