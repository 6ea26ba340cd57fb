"""`cdnv_bound`: class-distance normalised variance and generalisation (Galanti, György, Hutter 2021).

Review eq. (16): V_f(P_i,P_j) ≤ (V_f(D_i,D_j) + B)(1 + A)², B ∝ 1/‖μ_i^D−μ_j^D‖², A ∝ 1/‖μ_i^P−μ_j^P‖².
Per evaluated epoch: train CDNV (empirical), test CDNV (around test means; the population proxy),
their ratio, min/mean squared class-mean distances on both splits, and the generalisation gap.
The final epoch's per-pair CDNV matrices are saved as `cdnv_pairs.csv` (class_i, class_j, split, value).

The bound itself (`ncbench.metrics.cdnv_bounds.cdnv_population_bound`, with `options.delta`, default
0.05): from the final model's train features, per class pair, the bound on the population CDNV against
the measured test CDNV (around the test means), in `cdnv_bound_pairs.csv` (class_i, class_j, train_cdnv,
A, B, bound, test_cdnv, holds, tightness, vacuous), and in the summary `bound_holds_fraction`,
`bound_holds_fraction_nonvacuous`, `bound_vacuous_fraction`, `bound_tightness_median`,
`bound_cdnv_median`, `bound_delta`. These are new rows: the earlier rows are unchanged.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from ncbench.metrics.cdnv_bounds import class_moments, population_bound_table
from ncbench.tasks.base import TaskOutput, register_task, rows_from
from ncbench.tasks.options import Options, number
from ncbench.tasks.trajectory_task import TrainedOptions, TrajectoryTask


def pair_table(matrix, split: str) -> pd.DataFrame:
    if matrix is None:  # a diverged run has no CDNV matrix
        return pd.DataFrame(columns=["class_i", "class_j", "split", "value"])
    K = matrix.shape[0]
    i, j = np.triu_indices(K, 1)
    m = matrix.detach().cpu().numpy()
    return pd.DataFrame({"class_i": i, "class_j": j, "split": split, "value": m[i, j]})


@dataclass(frozen=True)
class CDNVBoundOptions(TrainedOptions):
    delta: float = 0.05   # failure probability of the population-CDNV bound
    CHECKS: ClassVar[dict] = {"delta": number(0, 1, closed="()")}


@register_task("cdnv_bound")
class CDNVBound(TrajectoryTask):
    OPTIONS: ClassVar[type[Options]] = CDNVBoundOptions

    def bound_rows(self, ctx, traj) -> tuple[dict[str, float], pd.DataFrame]:
        """The population-CDNV bound from the final model's train features (of `traj`, this task's
        training run) vs the test CDNV."""
        from ncbench.training.feature_cache import FeatureCache

        cache = FeatureCache(Path(ctx.cache_dir) / "features", ctx.root)
        model = traj.load_final_model()
        moments = []
        for split, data in zip((traj.cfg.train_split, traj.cfg.test_split), traj.data()):
            c = cache.features(model, data, model_name=self.spec.model, dataset=self.spec.dataset, split=split,
                               classes=traj.cfg.classes, device=self.spec.device)
            moments.append(class_moments(c.features, c.labels, data.num_classes))
        table, summary = population_bound_table(*moments, delta=float(self.options["delta"]))
        return summary, table

    def run(self, ctx) -> TaskOutput:
        rec, traj = self.read(ctx)
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
        bound, bound_pairs = self.bound_rows(ctx, traj)
        rows += rows_from(bound, split="summary", epoch=f.epoch, n_samples=f.train.n)
        rows += self.baseline_rows()
        return TaskOutput(rows, tables={"cdnv_pairs": pairs, "cdnv_bound_pairs": bound_pairs})
