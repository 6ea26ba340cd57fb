"""Class-pair tables (one row per pair i < j, e.g. `cdnv_pairs.csv`) drawn as K×K heatmaps for the report.

A pair table has two class columns (`class_i`/`class_j` or `class_a`/`class_b`) and numeric value
columns; with a `split` column each split is its own matrix. The matrix is symmetric (V(i,j) = V(j,i)),
the diagonal empty. Small matrices are inline SVG (one `<rect>` per cell, its value in a `<title>`
tooltip); large ones a PNG made with matplotlib, inlined as a `data:` URI. No script, no network.
Colours: a viridis ramp, shared by the splits of one value column (train and test compare), on a
log10 scale when all values are positive and span ≥ 100×; non-finite cells (V = inf: two identical
class means) are drawn in red.
"""
from __future__ import annotations

import base64
import html
import io
import itertools
import math

import numpy as np
import pandas as pd

PAIR_COLUMNS = (("class_i", "class_j"), ("class_a", "class_b"))
PREFERRED_VALUES = ("value", "train_cdnv", "test_cdnv", "bound", "tightness")
MAX_HEATMAPS = 4
"""Value columns drawn per table (the preferred ones first); the table itself has them all."""
SVG_MAX_CLASSES = 48
"""Above this many classes a heatmap is a PNG (an SVG would hold K² rects)."""
VIRIDIS = ((0.0, (68, 1, 84)), (0.25, (59, 82, 139)), (0.5, (33, 145, 140)), (0.75, (94, 201, 98)),
           (1.0, (253, 231, 37)))
INF_COLOUR, EMPTY_COLOUR = "#d62728", "#f0f0f0"


def _e(x) -> str:
    return html.escape(str(x), quote=True)


def pair_columns(df: pd.DataFrame) -> tuple[str, str] | None:
    """The two class columns of a pair table, or None when `df` is not one."""
    return next((p for p in PAIR_COLUMNS if set(p) <= set(df.columns)), None)


def value_columns(df: pd.DataFrame) -> list[str]:
    """Numeric, non-boolean value columns to draw, the preferred ones first, at most `MAX_HEATMAPS`."""
    pair = pair_columns(df) or ()
    numeric = [c for c in df.columns if c not in pair and c != "split" and pd.api.types.is_numeric_dtype(df[c])
               and not pd.api.types.is_bool_dtype(df[c])]
    ordered = [c for c in PREFERRED_VALUES if c in numeric] + [c for c in numeric if c not in PREFERRED_VALUES]
    return ordered[:MAX_HEATMAPS]


def pair_matrix(df: pd.DataFrame, value: str) -> tuple[list, np.ndarray]:
    """(class labels, symmetric K×K matrix with NaN on the diagonal and for pairs not in the table)."""
    a, b = pair_columns(df)
    found = set(df[a]) | set(df[b])
    numeric = all(isinstance(x, (int, float, np.integer, np.floating)) for x in found)
    labels = sorted(found) if numeric else sorted(found, key=str)
    pos = {c: k for k, c in enumerate(labels)}
    m = np.full((len(labels), len(labels)), np.nan)
    i = df[a].map(pos).to_numpy()
    j = df[b].map(pos).to_numpy()
    v = pd.to_numeric(df[value], errors="coerce").to_numpy(dtype=float)
    m[i, j] = v
    m[j, i] = v
    return labels, m


def _range(matrices) -> tuple[float, float]:
    """The finite min and max over `matrices` (NaN, NaN when there is none)."""
    fin = np.concatenate([m[np.isfinite(m)] for m in matrices]) if matrices else np.array([])
    return (float(fin.min()), float(fin.max())) if fin.size else (math.nan, math.nan)


def _scale(m: np.ndarray, value_range=None) -> tuple[np.ndarray, bool, float, float]:
    """Positions in [0, 1] of the finite cells, whether log10 is used, and the colour range ends
    (`value_range`: shared by the heatmaps of one value column, so train and test compare)."""
    lo, hi = value_range if value_range is not None else _range([m])
    if not math.isfinite(lo):
        return np.full(m.shape, np.nan), False, math.nan, math.nan
    log = lo > 0 and hi / lo >= 100
    x = np.log10(np.where(np.isfinite(m) & (m > 0), m, np.nan)) if log else m
    a, b = (math.log10(lo), math.log10(hi)) if log else (lo, hi)
    with np.errstate(invalid="ignore"):
        t = (x - a) / (b - a) if b > a else np.where(np.isfinite(x), 0.5, np.nan)
    return t, log, lo, hi


def _colour(t: float) -> str:
    for (t0, c0), (t1, c1) in itertools.pairwise(VIRIDIS):
        if t <= t1:
            w = 0.0 if t1 == t0 else (t - t0) / (t1 - t0)
            r, g, b = (round(c0[k] + w * (c1[k] - c0[k])) for k in range(3))
            return f"#{r:02x}{g:02x}{b:02x}"
    return "#{:02x}{:02x}{:02x}".format(*VIRIDIS[-1][1])


def heatmap_svg(labels: list, m: np.ndarray, title: str, value_range=None) -> str:
    """An inline `<svg>` of the matrix: cells with value tooltips, class labels, a colour legend."""
    k = len(labels)
    cell = max(8, min(28, 360 // max(k, 1)))
    pad = 34
    t, log, lo, hi = _scale(m, value_range)
    w = pad + k * cell + 90
    h = pad + k * cell + 10
    out = [(f'<svg class="heatmap" role="img" width="{w}" height="{h}" viewBox="0 0 {w} {h}" '
            f'aria-label="{_e(title)}"><title>{_e(title)}</title>')]
    show = k <= 30
    for r in range(k):
        if show:
            out.append(f'<text x="{pad - 4}" y="{pad + r * cell + cell * 0.7:.1f}" text-anchor="end" '
                       f'font-size="{min(11, cell - 1)}">{_e(labels[r])}</text>')
            out.append(f'<text x="{pad + r * cell + cell / 2:.1f}" y="{pad - 6}" text-anchor="middle" '
                       f'font-size="{min(11, cell - 1)}">{_e(labels[r])}</text>')
        for c in range(k):
            v = m[r, c]
            if r == c or (np.isnan(v) and not np.isinf(v)):
                fill, tip = EMPTY_COLOUR, "" if r == c else f"{labels[r]}, {labels[c]}: missing"
            elif not np.isfinite(v):
                fill, tip = INF_COLOUR, f"{labels[r]}, {labels[c]}: {v}"
            else:
                fill, tip = _colour(float(t[r, c])), f"{labels[r]}, {labels[c]}: {v:.4g}"
            tip_el = f"<title>{_e(tip)}</title>" if tip else ""
            out.append(f'<rect x="{pad + c * cell}" y="{pad + r * cell}" width="{cell}" height="{cell}" '
                       f'fill="{fill}">{tip_el}</rect>')
    # legend: a vertical ramp with the range ends
    lx, ly, lh = pad + k * cell + 12, pad, max(k * cell, 60)
    steps = 24
    for s in range(steps):
        out.append(f'<rect x="{lx}" y="{ly + (steps - 1 - s) * lh / steps:.1f}" width="12" '
                   f'height="{lh / steps + 0.5:.1f}" fill="{_colour(s / (steps - 1))}"></rect>')
    fmt = (lambda v: "" if not math.isfinite(v) else f"{v:.3g}")
    out.append(f'<text x="{lx + 16}" y="{ly + 9}" font-size="10">{_e(fmt(hi))}</text>')
    out.append(f'<text x="{lx + 16}" y="{ly + lh}" font-size="10">{_e(fmt(lo))}</text>')
    if log:
        out.append(f'<text x="{lx + 16}" y="{ly + lh / 2:.1f}" font-size="10">log</text>')
    out.append("</svg>")
    return "".join(out)


def heatmap_png_uri(labels: list, m: np.ndarray, title: str, value_range=None) -> str:
    """A `data:image/png;base64,…` URI of the matrix drawn with matplotlib (for large K)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm, Normalize

    lo, hi = value_range if value_range is not None else _range([m])
    log = math.isfinite(lo) and lo > 0 and hi / lo >= 100
    norm = (LogNorm if log else Normalize)(vmin=lo, vmax=hi) if math.isfinite(lo) else None
    fig, ax = plt.subplots(figsize=(5.5, 4.5), dpi=80)
    im = ax.imshow(np.where(np.isfinite(m), m, np.nan), cmap="viridis", norm=norm, interpolation="nearest")
    fig.colorbar(im, ax=ax)
    ax.set_title(title, fontsize=9)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def pair_heatmaps(df: pd.DataFrame, name: str) -> list[str]:
    """HTML `<figure>`s, one per (split, value column) of the pair table `df` (empty if not one)."""
    if pair_columns(df) is None or df.empty:
        return []
    groups = list(df.groupby("split", sort=False)) if "split" in df.columns else [("", df)]
    figures = []
    for value in value_columns(df):
        mats = [(split, *pair_matrix(part, value)) for split, part in groups]
        shared = _range([m for _, _, m in mats])
        for split, labels, m in mats:
            title = f"{name}: {value}" + (f" ({split})" if split else "") + f", {len(labels)} classes"
            if len(labels) <= SVG_MAX_CLASSES:
                art = heatmap_svg(labels, m, title, shared)
            else:
                art = f'<img src="{heatmap_png_uri(labels, m, title, shared)}" alt="{_e(title)}">'
            figures.append(f'<figure class="heatmap">{art}<figcaption>{_e(title)}</figcaption></figure>')
    return figures
