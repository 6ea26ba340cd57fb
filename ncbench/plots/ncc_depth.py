"""Minimal NCC-depth (Galanti 2022; Ben-Shaul & Dekel 2022): NCC accuracy and CDNV per layer at the
final epoch, the first layer whose NCC error is at most ε, and that depth along training."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from ncbench.plots.figures import save_figure, subplots


def plot(out, spec, out_dir: Path) -> list[Path]:
    """One run, or a seed group averaged over its seeds (per-layer values, the depth along training
    and the final depth are means over the seeds; a depth curve has a gap where any seed has none)."""
    rows = pd.DataFrame(out.rows)
    if "variant" in rows:                     # the network's own rows, not its baselines
        rows = rows[rows.variant.fillna("").astype(str).eq("")]
    n_seeds = rows.seed.nunique() if "seed" in rows else 1
    summ = rows[rows.split == "summary"].groupby("metric", sort=False).value.mean()
    final_epoch = rows[rows.split == "summary"].epoch.iloc[0]
    per_layer = rows[(rows.epoch == final_epoch) & rows.layer.notna() & rows.split.isin(["train", "test"])]
    tab = per_layer.pivot_table(index="layer", columns=["split", "metric"], values="value", dropna=False)
    x = tab.index.to_numpy(dtype=float)
    layers = out.tables.get("layers")
    if layers is not None and "seed" in layers:   # a group's stacked tables: one seed's layer names
        layers = layers[layers.seed == layers.seed.iloc[0]]
    names = layers.name.tolist() if layers is not None and len(layers) == len(x) else [str(int(i)) for i in x]
    eps, depth = float(summ.get("epsilon", 0.01)), summ.get("ncc_depth", math.nan)
    curve = (rows[(rows.metric == "ncc_depth") & rows.split.isin(["train", "test"])]
             .groupby(["split", "epoch"], as_index=False).value.agg(lambda v: v.mean(skipna=False)))
    with_curve = curve.epoch.nunique() > 1
    fig, axes = subplots(1, 3 if with_curve else 2, figsize=(16 if with_curve else 11, 4.8))
    ax = axes[0]
    for split in ("train", "test"):
        if (split, "ncc_acc") in tab:
            ax.plot(x, tab[(split, "ncc_acc")], marker="o", ms=4, label=f"NCC accuracy ({split})")
    ax.axhline(1 - eps, color="grey", ls=":", label=f"1 − ε (ε = {eps:g})")
    ax.set_ylabel("nearest-class-centre accuracy (train means)")
    ax.set_title("NCC accuracy per layer")
    ax = axes[1]
    for split in ("train", "test"):
        if (split, "cdnv") in tab:
            y = tab[(split, "cdnv")].to_numpy(dtype=float)
            ok = np.isfinite(y) & (y > 0)
            ax.plot(x[ok], y[ok], marker="o", ms=4, label=f"CDNV ({split})")
    ax.set_yscale("log")
    ax.set_ylabel("CDNV")
    ax.set_title("class-distance normalised variance per layer")
    for ax in axes[:2]:
        if not math.isnan(depth):
            which = f"{int(depth)}" if float(depth).is_integer() else f"{depth:.2f}, mean of {n_seeds} seeds"
            ax.axvline(depth, color="red", ls="--",
                       label=f"minimal NCC-depth = {which} ({names[int(np.rint(depth))]})")
        else:
            ax.plot([], [], " ", label=f"no layer reaches NCC error ≤ {eps:g}")
        ax.set_xticks(x)
        ax.set_xticklabels(names, rotation=45, ha="right", fontsize=7)
        ax.set_xlabel("layer")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    if with_curve:
        ax = axes[2]
        for split in ("train", "test"):
            c = curve[curve.split == split].sort_values("epoch")
            label = split if c.value.notna().all() else f"{split} (gaps: no layer qualifies)"
            ax.plot(c.epoch, c.value, marker="o", ms=3, drawstyle="steps-post", label=label)
        ax.set_yticks(x)
        ax.set_yticklabels(names, fontsize=7)
        ax.set_ylim(-0.5, len(x) - 0.5)
        ax.set_xlabel("epoch")
        ax.set_title(f"minimal NCC-depth during training (ε = {eps:g})")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    seeds = f", mean over {n_seeds} seeds" if n_seeds > 1 else ""
    return [save_figure(fig, out_dir / "ncc_depth.png",
                        f"{spec.name}: {spec.model} on {spec.dataset}, epoch {int(final_epoch)}{seeds}")]
