"""CDNV and generalisation (Galanti, György & Hutter 2022): train and test CDNV beside the test error,
and the separation of the class means, per epoch."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ncbench.plots.figures import log_axis_plot, save_figure, series, subplots


def plot(out, spec, out_dir: Path) -> list[Path]:
    rows = pd.DataFrame(out.rows)
    fig, axes = subplots(1, 2, figsize=(11, 4.5))
    x, _ = series(rows, "train", "cdnv")
    log_axis_plot(axes[0], x, {"train CDNV": series(rows, "train", "cdnv")[1], "test CDNV": series(rows, "test", "cdnv")[1],
                               "test error": series(rows, "test", "error")[1]}, "CDNV and test error", "value")
    log_axis_plot(axes[1], x, {"train min ‖μi−μj‖²": series(rows, "train", "min_sq_mean_distance")[1],
                               "test min ‖μi−μj‖²": series(rows, "test", "min_sq_mean_distance")[1]},
                  "class-mean separation", "squared distance")
    return [save_figure(fig, out_dir / "cdnv.png", f"{spec.name}: CDNV bound quantities")]
