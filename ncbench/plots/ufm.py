"""The unconstrained-features model against the gradient-descent step (log y, symlog x, step 0 kept):
NC1, NC2, NC3 and the optimisation (with the strong-collapse residuals of Mixon et al. for MSE)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ncbench.plots.figures import log_axis_plot, save_figure, subplots


def plot(out, spec, out_dir: Path) -> list[Path]:
    rows = pd.DataFrame(out.rows)
    tr = rows[rows.split == "train"].pivot_table(index="epoch", columns="metric", values="value", dropna=False)
    c = out.meta.config       # the kind's UFMSetup

    def cols(*names):
        return {n: tr[n] for n in names if n in tr}

    panels = [
        (cols("nc1", "nc1_quotient", "cdnv"), "NC1: within-class variability"),
        (cols("equinorm_h", "equinorm_w", "equiangular_h", "equiangular_w"), "NC2: convergence to a simplex ETF"),
        (cols("nc3", "etf_error_h", "etf_error_w"), "NC3: self-duality"),
        (cols("loss", "grad_norm", "snc1", "snc2", "snc3"),
         "loss, gradient norm, strong collapse (Mixon et al.)" if c.loss == "mse" else "loss and gradient norm"),
    ]
    fig, axes = subplots(2, 2, figsize=(10, 7))
    positive = tr.index[tr.index > 0]
    for ax, (ys, title) in zip(axes.flat, panels):
        log_axis_plot(ax, tr.index, ys, title, "value")
        ax.set_xscale("symlog", linthresh=float(positive.min()) if len(positive) else 1.0)
        ax.set_xlim(0, max(float(tr.index.max()), 1.0) * 1.2)
        ax.set_xlabel("gradient-descent step")
    title = (f"{spec.name}: UFM, {c.loss.upper()}, K={c.num_classes}, N={sum(c.class_counts)}, d={c.dim}, "
             f"λ_W={c.lambda_w:g}, λ_H={c.lambda_h:g}, init {c.init_scale:g}")
    return [save_figure(fig, out_dir / "collapse.png", title)]
