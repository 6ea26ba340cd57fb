"""Few-shot transfer against the number of source classes S (review §4.1.2): episode accuracy of the
NCC rule and the logistic probe per shot count (± the 95% episode interval, or over seeds when there
are several), and the collapse of the source and target classes."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ncbench.plots.figures import save_figure, seed_band, subplots, sweep_frame


def plot(out, spec, out_dir: Path) -> list[Path]:
    rows = pd.DataFrame(out.rows)
    d = sweep_frame(rows[rows.split.isin(["target", "source_train"])], {"source_classes": int},
                    defaults={"source_classes": out.meta.source_classes})
    if d.empty:   # a pretrained backbone: nothing trained on S classes
        return []
    seeds = d.seed.nunique()
    shots = out.meta.shots or sorted({int(m.split("_")[2][:-4]) for m in d.metric
                                             if m.startswith("ncc_acc_") and m.endswith("shot")})
    n_way = out.meta.n_way
    x = sorted(set(d.source_classes))
    fig, axes = subplots(1, 2, figsize=(12, 4.6))
    ax = axes[0]
    for i, k in enumerate(shots):
        for kind, style in (("ncc", "-"), ("probe", "--")):
            acc = d[(d.split == "target") & (d.metric == f"{kind}_acc_{k}shot")]
            if acc.empty:
                continue
            label = f"{k}-shot {'NCC' if kind == 'ncc' else 'logistic probe'}"
            marker = "o" if kind == "ncc" else "s"
            if seeds > 1:
                seed_band(ax, acc, "source_classes", label=label, color=f"C{i}", ls=style)
                continue
            ci = d[(d.split == "target") & (d.metric == f"{kind}_acc_{k}shot_ci95")].set_index("source_classes")
            acc = acc.set_index("source_classes").sort_index()
            ax.errorbar(acc.index, acc.value, yerr=ci.value.reindex(acc.index), color=f"C{i}", marker=marker,
                        ms=4, capsize=3, ls=style, label=label)
    ax.axhline(1 / n_way, color="grey", ls=":", label="chance")
    ax.set_xlabel("number of source classes S")
    ax.set_ylabel("episode accuracy (mean ± 95% CI" + (f" over {seeds} seeds)" if seeds > 1 else ")"))
    ax.set_title(f"{n_way}-way few-shot accuracy on unseen classes")
    ax.set_xticks(x)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    ax = axes[1]
    for split, metric, label in (("source_train", "nc1", "source train NC1"),
                                 ("source_train", "cdnv", "source train CDNV"),
                                 ("target", "cdnv", "target CDNV (all target images)")):
        v = d[(d.split == split) & (d.metric == metric)]
        if len(v):
            seed_band(ax, v, "source_classes", label=label)
    ax.set_yscale("log")
    ax.set_xlabel("number of source classes S")
    ax.set_title("collapse of the source and target classes")
    ax.set_xticks(x)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return [save_figure(fig, out_dir / "fewshot_transfer.png", f"{spec.name}: {spec.model} on {spec.dataset}")]
