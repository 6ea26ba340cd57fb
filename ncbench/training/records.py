"""The record of a training run: one `EpochRecord` per evaluated epoch (fit loss and accuracy, the
train/test metric passes, probes) and the `TrajectoryRecord` that holds them (plain data: stored as
JSON + safetensors by `ncbench.training.record_store`)."""
from __future__ import annotations

from dataclasses import dataclass, field

from ncbench.training.evaluation import SplitEval


@dataclass
class EpochRecord:
    epoch: int
    lr: float
    fit_loss: float          # running loss/accuracy of the (possibly augmented) training steps
    fit_accuracy: float
    train: SplitEval
    test: SplitEval | None
    probes: dict = field(default_factory=dict)


@dataclass
class TrajectoryRecord:
    config: dict
    epochs: list[EpochRecord]
    class_counts: list[int]
    seconds: float = 0.0
    trained_by: dict = field(default_factory=dict)   # who trained: versions, git hash, time, world size

    @property
    def terminal_phase_epoch(self) -> int | None:
        """The sustained terminal phase (Papyan et al. 2020): the first evaluated epoch from which the
        train accuracy (un-augmented metric pass) is 100% at every later evaluated epoch to the end;
        None when the last evaluated epoch is below 100% (`terminal_phase_reached` is then False)."""
        start = None
        for r in self.epochs:
            if r.train.accuracy >= 1.0:
                start = r.epoch if start is None else start
            else:
                start = None
        return start

    @property
    def terminal_phase_reached(self) -> bool:
        """Whether the run ends in a sustained terminal phase (`terminal_phase_epoch` is not None)."""
        return self.terminal_phase_epoch is not None

    @property
    def first_perfect_train_epoch(self) -> int | None:
        """The first evaluated epoch with 100% train accuracy, even if accuracy later dips below it
        (what `terminal_phase_epoch` meant before it became the sustained one)."""
        return next((r.epoch for r in self.epochs if r.train.accuracy >= 1.0), None)

    def final(self) -> EpochRecord:
        return self.epochs[-1]
