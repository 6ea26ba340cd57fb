"""Train vs test collapse around the train class means (Hui, Belkin & Nakkiran 2022): NC1, Tr Σ_W and
CDNV per epoch on the train split and the three test assignments (true class, predicted class,
nearest train mean)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ncbench.plots.figures import log_axis_plot, save_figure, series, subplots

MEASURES = (("nc1", "NC1 = Tr(Σ_W Σ_B⁺)/K"), ("trace_sw", "Tr Σ_W"), ("cdnv", "CDNV"))


def plot(out, spec, out_dir: Path) -> list[Path]:
    rows = pd.DataFrame(out.rows)
    fig, axes = subplots(1, 3, figsize=(15, 4.5))
    for ax, (m, title) in zip(axes, MEASURES):
        x, _ = series(rows, "train", m)
        log_axis_plot(ax, x, {"train": series(rows, "train", m)[1],
                              "test strong (true class)": series(rows, "test_strong", m)[1],
                              "test weak (predicted class)": series(rows, "test_weak", m)[1],
                              "test weak (nearest train mean)": series(rows, "test_weak_ncc", m)[1]}, title, m)
    return [save_figure(fig, out_dir / "test_collapse.png", f"{spec.name}: train vs test collapse around the train class means")]
