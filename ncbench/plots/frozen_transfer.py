"""A frozen model on a target: per-layer NCC accuracy (train means) and CDNV against depth, with the
minimal NCC-depth marked (SPEC §5), beside the accuracies a user compares (linear probe, k-NN,
nearest class centre, n-way few-shot episodes) and chance. A seed group shows means over its seeds
(± the Student-t 95% interval; a single run's few-shot bars carry their episode interval)."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from ncbench.plots.figures import save_figure, subplots

ACCURACIES = (("probe_acc", "linear probe (test)"), ("knn_acc", "k-NN (test)"), ("knn_loo_acc", "k-NN leave-one-out (train)"),
              ("ncc_acc", "NCC (train)"), ("test_ncc_acc", "NCC (test, train means)"),
              ("fewshot_ncc_acc_1shot", "few-shot NCC, 1 shot"), ("fewshot_ncc_acc_5shot", "few-shot NCC, 5 shots"))


def _weights(spec) -> str:
    if getattr(spec, "checkpoint", None):
        return f"checkpoint {Path(spec.checkpoint).name}"
    pre = getattr(spec, "pretrained", None)
    return "random init" if pre == "random" else f"pretrained={pre}" if pre else "no weights"


def _per_layer(rows: pd.DataFrame) -> tuple[list[str], pd.DataFrame]:
    """Layer names in network order (first appearance) and the per-layer values, means over seeds."""
    d = rows[rows.split.isin(["train", "test"]) & rows.layer.notna() & (rows.layer.astype(str) != "")].copy()
    d["layer"] = d.layer.astype(str)
    names = list(dict.fromkeys(d.layer))
    tab = d.groupby(["split", "metric", "layer"], sort=False).value.mean().unstack("layer")
    return names, tab.reindex(columns=names)


def _accuracies(summary: pd.DataFrame) -> pd.DataFrame:
    """metric, label, mean, error (seed interval for a group, else the episode interval or 0), reason."""
    from ncbench.metrics.confidence import mean_ci

    recs = []
    for metric, label in ACCURACIES:
        v = summary[summary.metric == metric]
        if v.empty:
            continue
        vals = v.value.to_numpy(dtype=float)
        finite = vals[np.isfinite(vals)]
        if finite.size == 0:
            reason = next((str(r) for r in v.get("status_reason", pd.Series(dtype=str)) if isinstance(r, str) and r), "")
            recs.append({"metric": metric, "label": label, "mean": math.nan, "error": 0.0, "reason": reason})
            continue
        if len(vals) > 1:
            ci = mean_ci(finite)
            err = ci.half_width if finite.size > 1 else 0.0
        else:
            ci95 = summary[summary.metric == metric + "_ci95"].value.to_numpy(dtype=float)
            err = float(ci95[0]) if ci95.size and np.isfinite(ci95[0]) else 0.0
        recs.append({"metric": metric, "label": label, "mean": float(finite.mean()), "error": err, "reason": ""})
    return pd.DataFrame(recs, columns=["metric", "label", "mean", "error", "reason"])


def plot(out, spec, out_dir: Path) -> list[Path]:
    rows = pd.DataFrame(out.rows)
    if "variant" in rows:
        rows = rows[rows.variant.fillna("").astype(str).eq("")]
    n_seeds = rows.seed.nunique() if "seed" in rows else 1
    summary = rows[rows.split == "summary"]
    summ = summary.groupby("metric", sort=False).value.mean()
    names, tab = _per_layer(rows)
    x = np.arange(len(names))
    eps, depth = float(summ.get("epsilon", 0.01)), summ.get("ncc_depth", math.nan)
    fig, axes = subplots(1, 3, figsize=(17, 5))
    for ax, metric, title, log in ((axes[0], "ncc_acc", "NCC accuracy per layer (train means)", False),
                                   (axes[1], "cdnv", "CDNV per layer", True)):
        for split in ("train", "test"):
            if (split, metric) in tab.index:
                y = tab.loc[(split, metric)].to_numpy(dtype=float)
                ok = np.isfinite(y) & ((y > 0) if log else True)
                ax.plot(x[ok], y[ok], marker="o", ms=4, label=f"{split}")
        if metric == "ncc_acc":
            ax.axhline(1 - eps, color="grey", ls=":", label=f"1 − ε (ε = {eps:g})")
            ax.set_ylabel("nearest-class-centre accuracy")
        else:
            ax.set_yscale("log")
            ax.set_ylabel("CDNV (lower = more collapsed)")
        if not math.isnan(depth) and names:
            at = int(np.clip(np.rint(depth), 0, len(names) - 1))
            mean = "" if float(depth).is_integer() else f", mean of {n_seeds} seeds"
            ax.axvline(depth, color="red", ls="--", label=f"minimal NCC-depth: {names[at]}{mean}")
        else:
            ax.plot([], [], " ", label=f"no layer reaches NCC error ≤ {eps:g}")
        ax.set_xticks(x)
        ax.set_xticklabels(names, rotation=45, ha="right", fontsize=7)
        ax.set_xlabel("layer (input → output)")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    ax = axes[2]
    acc = _accuracies(summary)
    y = np.arange(len(acc))
    ax.barh(y, acc["mean"].fillna(0.0), xerr=acc["error"], color=[f"C{i}" for i in range(len(acc))], capsize=3)
    for i, r in enumerate(acc.itertuples()):
        text = f"{r.mean:.3f}" if math.isfinite(r.mean) else "NaN: " + (r.reason[:70] + "…" if len(r.reason) > 70 else r.reason)
        ax.text(0.01 if not math.isfinite(r.mean) else min(r.mean + r.error, 1.0) + 0.01, i, text, va="center",
                fontsize=7)
    classes = out.meta.num_classes
    if classes:
        ax.axvline(1 / classes, color="grey", ls=":", label=f"chance over {classes} classes")
        ax.legend(fontsize=7, loc="lower right")
    ax.set_yticks(y)
    ax.set_yticklabels(acc["label"], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.25)
    ax.set_xlabel("accuracy" + (f" (mean ± 95% CI over {n_seeds} seeds)" if n_seeds > 1 else " (few-shot: ± 95% CI)"))
    ax.set_title("transfer accuracies")
    ax.grid(True, axis="x", alpha=0.3)
    seeds = f", {n_seeds} seeds" if n_seeds > 1 else ""
    return [save_figure(fig, out_dir / "frozen_transfer.png",
                        f"{spec.name}: {spec.model} ({_weights(spec)}) on {spec.dataset}{seeds}")]
