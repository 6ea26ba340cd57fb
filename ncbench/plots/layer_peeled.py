"""The layer-peeled minority-collapse curve (Fang et al. 2021, Fig. 3): minority classifier cosine
against R, one line per feature budget E_H (every member of a group; seed 0 when several)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd


def plot(out, spec, out_dir: Path) -> list[Path]:
    curve = out.tables.get("curve")
    if curve is None or curve.empty:
        return []
    if "seed" in curve:
        curve = curve[curve.seed == curve.seed.min()]
    K = out.meta.num_classes
    return [plot_minority_collapse(curve, K, Path(out_dir) / "minority_collapse.png")]


def plot_minority_collapse(curve: pd.DataFrame, num_classes: int, path: str | Path) -> Path:
    """Minority cosine against R (log x), one line per E_H, reference lines at −1/(K−1) (balanced
    simplex) and 1 (collapse). `curve` is `minority_collapse_curve`'s frame; returns the PNG path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    missing = {"E_H", "ratio", "minority_cosine"} - set(curve.columns)
    if missing:
        raise ValueError(f"curve lacks columns {sorted(missing)}: pass minority_collapse_curve(...)'s frame")
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(5.5, 4.0))
    for e_h, grp in curve.sort_values("ratio").groupby("E_H"):
        ax.plot(grp["ratio"], grp["minority_cosine"], marker="o", ms=3, label=f"$E_H$ = {e_h:g}")
    ax.axhline(-1.0 / (num_classes - 1), color="grey", ls="--", lw=1, label="$-1/(K-1)$")
    ax.axhline(1.0, color="black", ls=":", lw=1, label="collapse")
    ax.set_xscale("log")
    ax.set_xlabel("imbalance ratio $R$")
    ax.set_ylabel("mean cosine of minority classifiers")
    ax.set_title(f"Layer-peeled model, K = {num_classes}")
    ax.legend(fontsize=8)
    from ncbench.plots.figures import save_figure

    return save_figure(fig, path, dpi=120)
