"""`train_collapse`: NC1–NC4 on the train split after every evaluated epoch (Papyan et al. 2020).

Records the epoch where train accuracy first reaches 100% (entry into the terminal phase of
training) and how far `nc1` falls after it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from ncbench.metrics import SPEC_METRICS
from ncbench.tasks.base import TaskMeta, TaskOutput, register_task, rows_from
from ncbench.tasks.options import Options
from ncbench.tasks.trajectory_task import TrainedOptions, TrajectoryTask
from ncbench.training.trainer import global_batches


@dataclass(frozen=True)
class TrainCollapseMeta(TaskMeta):
    class_counts: list[int]     # train images per class of the run
    precision: str              # the recipe's


@register_task("train_collapse")
class TrainCollapse(TrajectoryTask):
    OPTIONS: ClassVar[type[Options]] = TrainedOptions   # the family's options, none of its own
    META: ClassVar[type[TaskMeta]] = TrainCollapseMeta

    def _decay_budget(self, n_train: int, tpe: int | None) -> float:
        """`Recipe.decay_budget` of the optimizer steps after epoch `tpe` (the terminal phase's start),
        with the trainer's steps per epoch (`global_batches` of `n_train` images); NaN without one."""
        if not tpe:
            return math.nan
        cfg = self.trajectory_config()
        steps = len(global_batches(torch.arange(n_train), cfg.recipe.batch_size, cfg.world_size))
        return cfg.recipe.decay_budget(steps, tpe)

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
                       nc1_drop_in_terminal_phase=nc1_at_tpe / final.train.collapse["nc1"] if tpe else math.nan,
                       terminal_phase_decay_budget=self._decay_budget(sum(rec.class_counts), tpe))
        summary.update(terminal_phase_reached=float(rec.terminal_phase_reached),
                       first_perfect_train_epoch=float(rec.first_perfect_train_epoch or math.nan))
        rows += rows_from(summary, split="summary", epoch=final.epoch, n_samples=final.train.n)
        rows += self.baseline_rows()
        meta = TrainCollapseMeta(list(rec.class_counts), rec.config["recipe"]["precision"])
        return TaskOutput(rows, meta=meta, precision=meta.precision)
