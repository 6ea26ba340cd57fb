"""The sustained terminal phase: the first evaluated epoch after which train accuracy stays at 100%."""
from __future__ import annotations

from ncbench.training.evaluation import SplitEval
from ncbench.training.trajectory import EpochRecord, TrajectoryRecord


def record(accuracies: list[float], every: int = 2) -> TrajectoryRecord:
    epochs = [EpochRecord(every * (i + 1), 0.1, 0.5, a, SplitEval(0.5, a, 10, {"nc1": 1.0}, {}), None)
              for i, a in enumerate(accuracies)]
    return TrajectoryRecord({}, epochs, [5, 5])


def test_dip_after_first_perfect_epoch_moves_the_sustained_one():
    rec = record([0.8, 1.0, 1.0, 0.99, 1.0, 1.0])            # epochs 2, 4, 6, 8, 10, 12
    assert rec.first_perfect_train_epoch == 4                 # the old definition
    assert rec.terminal_phase_epoch == 10                     # 100% from epoch 10 to the end
    assert rec.terminal_phase_reached


def test_never_sustained_or_never_reached_is_none_and_flagged():
    dips_at_end = record([0.9, 1.0, 1.0, 0.98])
    assert dips_at_end.first_perfect_train_epoch == 4
    assert dips_at_end.terminal_phase_epoch is None and not dips_at_end.terminal_phase_reached
    never = record([0.5, 0.7, 0.9])
    assert never.first_perfect_train_epoch is None and never.terminal_phase_epoch is None
    assert not never.terminal_phase_reached


def test_no_dip_both_definitions_agree():
    rec = record([0.9, 1.0, 1.0, 1.0])
    assert rec.terminal_phase_epoch == rec.first_perfect_train_epoch == 4
