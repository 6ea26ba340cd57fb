"""`test_collapse`: does train collapse carry over to unseen data? (Hui, Belkin, Nakkiran 2022; SPEC §3)

Per evaluated epoch of the shared training trajectory: train `nc1`, `trace_sw`, `cdnv`, and the
same around the train means on the test split: strong (true class), weak (predicted class) and
weak-NCC (nearest train mean), with their test/train ratios. Weak-NCC `trace_sw` can never exceed
the strong one (the nearest mean can only shorten a point's distance); for the predicted class or
for `nc1` this is expected but not guaranteed, so the task reports how often it holds.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ncbench.tasks.base import TaskMeta, TaskOutput, register_task, rows_from
from ncbench.tasks.options import Options
from ncbench.tasks.trajectory_task import TrainedOptions, TrajectoryTask

MODES = {"test_strong": "strong", "test_weak": "weak", "test_weak_ncc": "weak_ncc"}
MEASURES = ("nc1", "trace_sw", "cdnv")


def _ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


@dataclass(frozen=True)
class TestCollapseMeta(TaskMeta):
    __test__ = False  # facts of a kind, not a pytest class
    terminal_phase_epoch: int | None     # first epoch of the sustained terminal phase (None: never reached)


@register_task("test_collapse")
class TestCollapse(TrajectoryTask):
    __test__ = False  # a task kind, not a pytest class
    META: ClassVar[type[TaskMeta]] = TestCollapseMeta
    OPTIONS: ClassVar[type[Options]] = TrainedOptions   # the family's options, none of its own

    def run(self, ctx) -> TaskOutput:
        rec = self.record(ctx)
        rows = []
        holds = {(m, mode): [] for m in ("nc1", "trace_sw") for mode in ("weak", "weak_ncc")}
        for e in rec.epochs:
            tr, te = e.train, e.test
            train = {"nc1": tr.collapse["nc1"], "trace_sw": tr.diagnostics.get("trace_sigma_w", float("nan")), "cdnv": tr.collapse["cdnv"]}
            rows += rows_from({**train, "accuracy": tr.accuracy}, split="train", epoch=e.epoch, n_samples=tr.n)
            rows += rows_from({"accuracy": te.accuracy}, split="test", epoch=e.epoch, n_samples=te.n)
            for split, mode in MODES.items():
                vals = {m: te.extra[f"{mode}_{m}"] for m in MEASURES}
                vals.update({f"{m}_ratio": _ratio(vals[m], train[m]) for m in MEASURES})
                rows += rows_from(vals, split=split, epoch=e.epoch, n_samples=te.n)
            for (m, mode), seq in holds.items():
                seq.append(te.extra[f"{mode}_{m}"] <= te.extra[f"strong_{m}"])
        f = rec.final()
        ex = f.test.extra
        summary = {"train_nc1": f.train.collapse["nc1"], "strong_nc1": ex["strong_nc1"], "weak_nc1": ex["weak_nc1"],
                   "weak_ncc_nc1": ex["weak_ncc_nc1"],
                   "strong_nc1_ratio": _ratio(ex["strong_nc1"], f.train.collapse["nc1"]),
                   "weak_nc1_ratio": _ratio(ex["weak_nc1"], f.train.collapse["nc1"]),
                   "test_accuracy": f.test.accuracy}
        first = next((e for e in rec.epochs if e.epoch == rec.terminal_phase_epoch), rec.epochs[0])
        summary["train_nc1_fall"] = _ratio(first.train.collapse["nc1"], f.train.collapse["nc1"])
        summary["strong_nc1_fall"] = _ratio(first.test.extra["strong_nc1"], ex["strong_nc1"])
        for (m, mode), seq in holds.items():
            summary[f"{mode}_le_strong_{m}_fraction"] = float(np.mean(seq))
        rows += rows_from(summary, split="summary", epoch=f.epoch, n_samples=f.test.n)
        rows += self.baseline_rows()
        return TaskOutput(rows, meta=TestCollapseMeta(rec.terminal_phase_epoch))
