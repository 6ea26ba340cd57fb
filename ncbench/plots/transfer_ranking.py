"""Transferability estimators against the ground truth over a model zoo (Wang et al. 2023): one scatter
per estimator, titled with its Kendall τ and weighted τ_w."""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from ncbench.plots.figures import save_figure, subplots
from ncbench.transfer.rank_correlation import LOWER_IS_BETTER


def plot(out, spec, out_dir: Path) -> list[Path]:
    rows = pd.DataFrame(out.rows)
    scores = out.tables["scores"]
    summ = rows[rows.split == "summary"].set_index("metric").value
    gt = out.meta["ground_truth"]
    ests = list(dict.fromkeys(scores.estimator))
    cols = min(3, len(ests))
    nrows = -(-len(ests) // cols)
    fig, axes = subplots(nrows, cols, figsize=(4.6 * cols, 3.8 * nrows), squeeze=False)
    for ax, est in zip(axes.flat, ests):
        d = scores[scores.estimator == est]
        ax.scatter(d.value, d[gt], s=28)
        for _, r in d.iterrows():
            ax.annotate(r.model, (r.value, r[gt]), fontsize=7, xytext=(3, 3), textcoords="offset points")
        flip = " (lower = predicted better)" if est in LOWER_IS_BETTER else ""
        ax.set_xlabel(est + flip)
        ax.set_ylabel(gt)
        ax.set_title(f"{est}: τ = {summ.get(f'kendall_tau_{est}', math.nan):.2f}, "
                     f"τ_w = {summ.get(f'weighted_tau_{est}', math.nan):.2f}", fontsize=9)
        ax.grid(True, alpha=0.3)
    for ax in list(axes.flat)[len(ests):]:
        ax.set_visible(False)
    return [save_figure(fig, out_dir / "ranking.png",
                        f"{spec.name}: {len(scores.model.unique())} models on {out.meta['target']}")]
