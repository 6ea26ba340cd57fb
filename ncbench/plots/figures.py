"""Matplotlib (Agg, no display) building blocks of the figures: axes, log-scale curves, sweeps over seeds, saving."""
from __future__ import annotations

from pathlib import Path


def subplots(*args, **kwargs):
    """`plt.subplots` on the file-only Agg backend."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(*args, **kwargs)


def save_figure(fig, path: Path, title: str | None = None, dpi: int = 110) -> Path:
    """Title, tight layout, write the PNG (atomically, `ncbench.run_files`: a link named like it is
    replaced, never written through), free the figure."""
    import io

    import matplotlib.pyplot as plt

    from ncbench.run_files import replace_bytes

    if title:
        fig.suptitle(title)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, dpi=dpi, format=Path(path).suffix.lstrip(".") or "png")
    plt.close(fig)
    return replace_bytes(path, buf.getvalue())


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


def sweep_frame(rows, axes: dict, defaults: dict | None = None):
    """`rows` with one column per sweep axis parsed from `variant` (typed by `axes`: name -> type); a
    run outside a sweep takes `defaults` (its own options)."""
    from ncbench.results.variants import parse_variant

    points = [parse_variant(v) for v in rows.variant.fillna("")]
    out = rows.copy()
    for axis, kind in axes.items():
        fallback = (defaults or {}).get(axis)
        vals = [p.get(axis, fallback) for p in points]
        if any(v is None for v in vals):
            return rows.iloc[0:0].assign(**{a: [] for a in axes})
        out[axis] = [kind(v) for v in vals]
    return out


def seed_band(ax, d, x: str, label: str, y: str = "value", **style):
    """Mean of `y` over seeds against `x`, with the Student-t 95% interval as error bars when there are
    several seeds (`ncbench.metrics.confidence.mean_ci`)."""
    import numpy as np

    from ncbench.metrics.confidence import mean_ci

    xs, means, half = [], [], []
    for xv, g in d.groupby(x, sort=True):
        vals = np.asarray(g[y], dtype=float)
        vals = vals[np.isfinite(vals)]
        if not vals.size:
            continue
        ci = mean_ci(vals)
        xs.append(xv)
        means.append(ci.mean)
        half.append(ci.half_width if vals.size > 1 else 0.0)
    ax.errorbar(xs, means, yerr=half if any(h > 0 for h in half) else None, marker="o", ms=4, capsize=3,
                label=label, **style)
