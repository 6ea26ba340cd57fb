"""Transferability estimators against the ground truth over a model zoo (Wang et al. 2023): one scatter
per estimator, titled with its Kendall τ and weighted τ_w."""
from __future__ import annotations

import math
from pathlib import Path
from statistics import fmean

import pandas as pd

from ncbench.plots.figures import save_figure, subplots
from ncbench.transfer.rank_correlation import LOWER_IS_BETTER


def plot(out, spec, out_dir: Path) -> list[Path]:
    """One run: its zoo per estimator, models annotated. A seed group (the scores table has a `seed`
    column, one zoo per seed): every seed's zoo in its own colour, models annotated for the first,
    titled with the mean τ / τ_w over the seeds and the per-seed τ."""
    rows = pd.DataFrame(out.rows)
    scores = out.tables["scores"]
    summ = rows[rows.split == "summary"]
    gt = out.meta.ground_truth
    ests = list(dict.fromkeys(scores.estimator))
    seeds = sorted(scores.seed.unique()) if "seed" in scores else [None]
    cols = min(3, len(ests))
    nrows = -(-len(ests) // cols)
    fig, axes = subplots(nrows, cols, figsize=(4.6 * cols, 3.8 * nrows), squeeze=False)
    for ax, est in zip(axes.flat, ests):
        for i, seed in enumerate(seeds):
            d = scores[scores.estimator == est]
            d = d if seed is None else d[d.seed == seed]
            ax.scatter(d.value, d[gt], s=28, label=None if seed is None else f"seed {seed}")
            if i == 0:
                for _, r in d.iterrows():
                    ax.annotate(r.model, (r.value, r[gt]), fontsize=7, xytext=(3, 3),
                                textcoords="offset points")
        flip = " (lower = predicted better)" if est in LOWER_IS_BETTER else ""
        ax.set_xlabel(est + flip)
        ax.set_ylabel(gt)
        ax.set_title(_title(summ, est, len(seeds)), fontsize=9)
        ax.grid(True, alpha=0.3)
        if len(seeds) > 1:
            ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(ests):]:
        ax.set_visible(False)
    zoo = len(scores.model.unique())
    what = f"{zoo} models" + (f", {len(seeds)} seeds" if len(seeds) > 1 else "")
    return [save_figure(fig, out_dir / "ranking.png", f"{spec.name}: {what} on {out.meta.target}")]


def _title(summ: pd.DataFrame, est: str, n_seeds: int) -> str:
    """`est: τ = …, τ_w = …`; over seeds the means, then the per-seed τ."""
    def values(metric: str) -> list[float]:
        return [float(v) for v in summ.loc[summ.metric == metric, "value"]] or [math.nan]

    tau, tau_w = values(f"kendall_tau_{est}"), values(f"weighted_tau_{est}")
    head = f"{est}: τ = {fmean(tau):.2f}, τ_w = {fmean(tau_w):.2f}"
    return head if n_seeds == 1 else f"{head} (mean; τ per seed {', '.join(f'{t:.2f}' for t in tau)})"
