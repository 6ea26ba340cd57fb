"""`train_collapse`: NC1–NC4 on the train split after every evaluated epoch (Papyan et al. 2020).

Records the epoch where train accuracy first reaches 100% (entry into the terminal phase of
training) and how far `nc1` falls after it.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import ClassVar

from ncbench.metrics import SPEC_METRICS
from ncbench.plotting import log_axis_plot, save_figure, subplots
from ncbench.tasks.base import TaskOutput, register_task, rows_from
from ncbench.tasks.trained_backbone import TrajectoryTask


@register_task("train_collapse")
class TrainCollapse(TrajectoryTask):
    default_options: ClassVar[dict] = {}

    def run(self, ctx) -> TaskOutput:
        rec = self.record(ctx)
        rows = []
        for e in rec.epochs:
            tr, te = e.train, e.test
            rows += rows_from({**tr.collapse, "accuracy": tr.accuracy, "loss": tr.loss,
                               "trace_sigma_w": tr.diagnostics.get("trace_sigma_w"),
                               "trace_sigma_b": tr.diagnostics.get("trace_sigma_b")},
                              split="train", epoch=e.epoch, n_samples=tr.n)
            rows += rows_from({"accuracy": te.accuracy, "loss": te.loss, "ncc_acc": te.extra["ncc_acc_train_means"],
                               "nc4": te.extra["nc4_train_means"]}, split="test", epoch=e.epoch, n_samples=te.n)
            rows += rows_from({"loss": e.fit_loss, "accuracy": e.fit_accuracy, "lr": e.lr},
                              split="fit", epoch=e.epoch, n_samples=tr.n)
        final = rec.final()
        tpe = rec.terminal_phase_epoch
        nc1_at_tpe = next((e.train.collapse["nc1"] for e in rec.epochs if e.epoch == tpe), math.nan)
        summary = {m: final.train.collapse[m] for m in SPEC_METRICS}
        summary.update(train_accuracy=final.train.accuracy, test_accuracy=final.test.accuracy,
                       terminal_phase_epoch=float(tpe) if tpe else math.nan,
                       terminal_phase_fraction=(final.epoch - tpe + 1) / final.epoch if tpe else 0.0,
                       nc1_drop_in_terminal_phase=nc1_at_tpe / final.train.collapse["nc1"] if tpe else math.nan)
        rows += rows_from(summary, split="summary", epoch=final.epoch, n_samples=final.train.n)
        return TaskOutput(rows, meta={"class_counts": rec.class_counts, "precision": rec.config["recipe"]["precision"]})

    def plot(self, rows, out_dir: Path) -> list[Path]:

        tr = rows[rows.split == "train"].pivot_table(index="epoch", columns="metric", values="value", dropna=False)
        te = rows[rows.split == "test"].pivot_table(index="epoch", columns="metric", values="value", dropna=False)
        fig, axes = subplots(2, 2, figsize=(10, 7))
        x = tr.index
        log_axis_plot(axes[0, 0], x, {"nc1": tr["nc1"], "nc1_quotient": tr["nc1_quotient"], "cdnv": tr["cdnv"]},
                      "NC1: within-class variability", "value")
        log_axis_plot(axes[0, 1], x, {"equinorm_h": tr["equinorm_h"], "equinorm_w": tr["equinorm_w"],
                                      "equiangular_h": tr["equiangular_h"], "equiangular_w": tr["equiangular_w"]},
                      "NC2: convergence to a simplex ETF", "value")
        log_axis_plot(axes[1, 0], x, {"nc3": tr["nc3"], "etf_error_h": tr["etf_error_h"], "etf_error_w": tr["etf_error_w"]},
                      "NC3: self-duality; NC2: ETF errors", "value")
        log_axis_plot(axes[1, 1], x, {"nc4 (train)": tr["nc4"], "nc4 (test)": te["nc4"],
                                      "train error": 1 - tr["accuracy"], "test error": 1 - te["accuracy"]},
                      "NC4: nearest class centre vs network", "fraction")
        return [save_figure(fig, out_dir / "collapse.png", f"{self.spec.name}: {self.spec.model} on {self.spec.dataset}")]
