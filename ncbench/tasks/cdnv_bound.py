"""`cdnv_bound`: class-distance normalised variance and generalisation (Galanti, György, Hutter 2021).

Review eq. (16): V_f(P_i,P_j) ≤ (V_f(D_i,D_j) + B)(1 + A)², B ∝ 1/‖μ_i^D−μ_j^D‖², A ∝ 1/‖μ_i^P−μ_j^P‖².
Per evaluated epoch: train CDNV (empirical), test CDNV (around test means; the population proxy),
their ratio, min/mean squared class-mean distances on both splits, and the generalisation gap.
The final epoch's per-pair CDNV matrices are saved as `cdnv_pairs.csv` (class_i, class_j, split, value).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from ncbench.plotting import log_axis_plot, save_figure, series, subplots
from ncbench.tasks.base import TaskOutput, register_task, rows_from
from ncbench.tasks.trained_backbone import TrajectoryTask


def pair_table(matrix, split: str) -> pd.DataFrame:
    if matrix is None:  # a diverged run has no CDNV matrix
        return pd.DataFrame(columns=["class_i", "class_j", "split", "value"])
    K = matrix.shape[0]
    i, j = np.triu_indices(K, 1)
    m = matrix.detach().cpu().numpy()
    return pd.DataFrame({"class_i": i, "class_j": j, "split": split, "value": m[i, j]})


@register_task("cdnv_bound")
class CDNVBound(TrajectoryTask):
    default_options: dict = {}

    def run(self, ctx) -> TaskOutput:
        rec = self.record(ctx)
        rows, test_cdnv, test_err = [], [], []
        for e in rec.epochs:
            tr, te = e.train, e.test
            for split, ev in (("train", tr), ("test", te)):
                rows += rows_from({"cdnv": ev.collapse["cdnv"], "error": 1 - ev.accuracy,
                                   "min_sq_mean_distance": ev.diagnostics.get("min_sq_mean_distance", np.nan),
                                   "mean_sq_mean_distance": ev.diagnostics.get("mean_sq_mean_distance", np.nan)},
                                  split=split, epoch=e.epoch, n_samples=ev.n)
            rows += rows_from({"cdnv_ratio": te.collapse["cdnv"] / tr.collapse["cdnv"],
                               "generalization_gap": tr.accuracy - te.accuracy},
                              split="test_vs_train", epoch=e.epoch, n_samples=te.n)
            test_cdnv.append(te.collapse["cdnv"])
            test_err.append(1 - te.accuracy)
        f = rec.final()
        rho = spearmanr(test_cdnv, test_err).statistic if len(test_cdnv) > 2 else float("nan")
        rows += rows_from({"train_cdnv": f.train.collapse["cdnv"], "test_cdnv": f.test.collapse["cdnv"],
                           "cdnv_ratio": f.test.collapse["cdnv"] / f.train.collapse["cdnv"],
                           "test_error": 1 - f.test.accuracy,
                           "spearman_test_cdnv_test_error": float(rho)},
                          split="summary", epoch=f.epoch, n_samples=f.test.n)
        pairs = pd.concat([pair_table(f.train.cdnv_matrix, "train"), pair_table(f.test.cdnv_matrix, "test")],
                          ignore_index=True)
        return TaskOutput(rows, tables={"cdnv_pairs": pairs})

    def plot(self, rows, out_dir: Path) -> list[Path]:

        fig, axes = subplots(1, 2, figsize=(11, 4.5))
        x, _ = series(rows, "train", "cdnv")
        log_axis_plot(axes[0], x, {"train CDNV": series(rows, "train", "cdnv")[1], "test CDNV": series(rows, "test", "cdnv")[1],
                                   "test error": series(rows, "test", "error")[1]}, "CDNV and test error", "value")
        log_axis_plot(axes[1], x, {"train min ‖μi−μj‖²": series(rows, "train", "min_sq_mean_distance")[1],
                                   "test min ‖μi−μj‖²": series(rows, "test", "min_sq_mean_distance")[1]},
                      "class-mean separation", "squared distance")
        return [save_figure(fig, out_dir / "cdnv.png", f"{self.spec.name}: CDNV bound quantities")]
