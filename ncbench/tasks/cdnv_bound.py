"""`cdnv_bound`: class-distance normalised variance and generalisation (Galanti, György, Hutter 2021).

Review eq. (16): V_f(P_i,P_j) ≤ (V_f(D_i,D_j) + B)(1 + A)², B ∝ 1/‖μ_i^D−μ_j^D‖², A ∝ 1/‖μ_i^P−μ_j^P‖².
Per evaluated epoch: train CDNV (empirical), test CDNV (around test means; the population proxy),
their ratio, min/mean squared class-mean distances on both splits, and the generalisation gap.
The final epoch's per-pair CDNV matrices are saved as `cdnv_pairs.csv` (class_i, class_j, split, value).

The bound itself (`ncbench.metrics.cdnv_bounds.cdnv_population_bound`, with `options.delta`, default
0.05): from the final model's train features, per class pair, the bound on the population CDNV against
the measured test CDNV (around the test means). The train features are not a fresh sample of a network
fitted on them (the bound's independence assumption fails); `options.bound_sample: heldout_halves`
computes it where the assumption holds: from one half of each test class (`heldout_halves`) against the
CDNV of the other half. `options.bound_random_init: true` adds the same bound on the features of the
seeded random initialisation (summary rows with variant `baseline=random_init`). Per pair in
`cdnv_bound_pairs.csv` (class_i, class_j, train_cdnv (the sample the bound is computed from),
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

from ncbench.metrics.cdnv_bounds import (
    ClassMoments,
    class_moments,
    heldout_halves,
    population_bound_table,
)
from ncbench.tasks.base import TaskOutput, register_task, rows_from
from ncbench.tasks.options import Options, boolean, number, one_of
from ncbench.tasks.trajectory_task import TrainedOptions, TrajectoryTask


def pair_table(matrix, split: str) -> pd.DataFrame:
    if matrix is None:  # a diverged run has no CDNV matrix
        return pd.DataFrame(columns=["class_i", "class_j", "split", "value"])
    K = matrix.shape[0]
    i, j = np.triu_indices(K, 1)
    m = matrix.detach().cpu().numpy()
    return pd.DataFrame({"class_i": i, "class_j": j, "split": split, "value": m[i, j]})


BOUND_SAMPLES = ("train", "heldout_halves")


@dataclass(frozen=True)
class CDNVBoundOptions(TrainedOptions):
    delta: float = 0.05                # failure probability of the population-CDNV bound
    bound_sample: str = "train"        # train | heldout_halves: which sample the bound is computed from
    bound_random_init: bool = False    # also the bound on the seeded random initialisation's features
    CHECKS: ClassVar[dict] = {"delta": number(0, 1, closed="()"), "bound_sample": one_of(*BOUND_SAMPLES),
                              "bound_random_init": boolean}


def bound_samples(train: tuple | None, test: tuple, num_classes: int, sample: str
                  ) -> tuple[ClassMoments, ClassMoments]:
    """(moments the bound is computed from, moments it is checked against) of `(features, labels)`
    pairs: the train split against the test split, or (`heldout_halves`) one half of each test class
    against the other half (the train split is not read: None will do)."""
    if sample == "train":
        return class_moments(*train, num_classes), class_moments(*test, num_classes)
    features, labels = test
    first, second = heldout_halves(labels)
    return (class_moments(features[first], labels[first], num_classes),
            class_moments(features[second], labels[second], num_classes))


@register_task("cdnv_bound")
class CDNVBound(TrajectoryTask):
    OPTIONS: ClassVar[type[Options]] = CDNVBoundOptions

    def bound_rows(self, ctx, traj, epoch: int, n_train: int) -> tuple[list[dict], pd.DataFrame]:
        """Summary rows of the population-CDNV bound of the final model (of `traj`, this task's training
        run) on `options.bound_sample`, its per-pair table, and with `bound_random_init` the same
        summary on the random initialisation's features (variant `baseline=random_init`)."""
        from ncbench.training.feature_cache import FeatureCache

        o = self.options
        cache = FeatureCache(Path(ctx.cache_dir) / "features", ctx.root)
        model = traj.load_final_model()
        data = traj.data()
        K = data[0].num_classes
        # the splits the bound reads: the held-out halves need no pass over the train split
        read = (0, 1) if o["bound_sample"] == "train" else (1,)

        def trained(i):
            c = cache.features(model, data[i], model_name=self.spec.model, dataset=self.spec.dataset,
                               split=(traj.cfg.train_split, traj.cfg.test_split)[i], classes=traj.cfg.classes,
                               device=self.spec.device)
            return c.features, c.labels

        feats = [trained(i) if i in read else None for i in (0, 1)]
        sample, check = bound_samples(*feats, K, o["bound_sample"])
        table, summary = population_bound_table(sample, check, delta=float(o["delta"]))
        n = n_train if o["bound_sample"] == "train" else int(sample.count.sum())
        rows = list(rows_from(summary, split="summary", epoch=epoch, n_samples=n))
        if o["bound_random_init"]:
            from ncbench.baselines.random_init import random_init_features

            cfg = traj.cfg
            init = [random_init_features(cfg.model, data[i], cfg.seed, num_classes=K, **dict(cfg.model_kwargs))
                    if i in read else None for i in (0, 1)]
            _, init_summary = population_bound_table(*bound_samples(*init, K, o["bound_sample"]),
                                                     delta=float(o["delta"]))
            rows += rows_from(init_summary, split="summary", n_samples=n, variant="baseline=random_init")
        return rows, table

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
        bound, bound_pairs = self.bound_rows(ctx, traj, f.epoch, f.train.n)
        rows += bound
        rows += self.baseline_rows()
        return TaskOutput(rows, tables={"cdnv_pairs": pairs, "cdnv_bound_pairs": bound_pairs})
