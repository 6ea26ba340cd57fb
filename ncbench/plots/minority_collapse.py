"""Minority collapse across the imbalance ratio R, one curve per classifier (Fang et al. 2021, Fig. 2):
the mean pairwise cosine of the minority classifier rows and of the minority centred train means
(−1/(K−1) for a simplex ETF, 1 for collapse), and minority test accuracy; mean over seeds ± 95% CI."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ncbench.plots.figures import save_figure, seed_band, subplots, sweep_frame

CLASSIFIERS = ("learnable", "etf", "etf_dr")
PANELS = (("minority_classifier_cosine", "minority classifier rows"),
          ("minority_feature_cosine", "minority centred train means"),
          ("minority_accuracy", "minority test accuracy"))


def plot(out, spec, out_dir: Path) -> list[Path]:
    from matplotlib.ticker import NullFormatter

    rows = pd.DataFrame(out.rows)
    df = sweep_frame(rows[rows.split == "summary"], {"ratio": float, "classifier": str},
                     defaults={"ratio": spec.options.get("ratio"), "classifier": spec.options.get("classifier")})
    if df.empty:
        return []
    K = out.meta.num_classes
    fig, axes = subplots(1, 3, figsize=(14, 4.3))
    ratios = sorted(set(df.ratio))
    for ax, (metric, title) in zip(axes, PANELS):
        d = df[df.metric == metric]
        for clf in [c for c in CLASSIFIERS if c in set(d.classifier)]:
            seed_band(ax, d[d.classifier == clf], "ratio", label=clf)
        if metric != "minority_accuracy":
            if K:
                ax.axhline(-1 / (K - 1), color="grey", ls="--", lw=1, label="−1/(K−1) (simplex ETF)")
            ax.set_ylabel("mean pairwise cosine (1 = collapse)")
        else:
            ax.set_ylabel("accuracy")
        ax.set_xscale("log")
        ax.set_xticks(ratios, [f"{r:g}" for r in ratios])
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("imbalance ratio R")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    seeds = df.seed.nunique()
    return [save_figure(fig, out_dir / "minority_collapse.png",
                        f"{spec.name}: {spec.model} on {spec.dataset}, {spec.options.get('profile', 'step')} imbalance"
                        f" (final epoch{'' if seeds < 2 else f'; mean ± 95% CI over {seeds} seeds'})")]
