"""Did a training run do what its recipe set out to do? `ok`, `diverged` or `failed` (SPEC §9).

- `diverged`: the training loss became non-finite (NaN or ±inf) at some epoch;
- `failed`: the final (un-augmented) train accuracy stayed near chance, below
  `1/K + NEAR_CHANCE·(1 − 1/K)`; or, when the spec sets `min_train_accuracy`, below that level instead
  (higher: a recipe meant to reach the terminal phase that did not fit its training data; 0: a spec
  whose weak runs are the point, e.g. a representation trained for one epoch, keeps them all);
- `ok` otherwise.

A task that reads several runs takes the worst status (`diverged` > `failed` > `ok`), with every
reason. Leaderboards list runs that are not `ok` apart and never rank them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from ncbench.core.status import SEVERITY

NEAR_CHANCE = 0.25
"""Fraction of the way from chance (1/K) to 100% train accuracy below which a run counts as failed."""



@dataclass(frozen=True)
class RunStatus:
    status: str = "ok"
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def status_of(fit_losses, final_train_accuracy: float, num_classes: int,
              min_train_accuracy: float | None = None, label: str = "") -> RunStatus:
    """The status of one run from its per-epoch training losses and its final train accuracy."""
    where = f"{label}: " if label else ""
    for epoch, loss in fit_losses:
        if not math.isfinite(loss):
            return RunStatus("diverged", f"{where}training loss became {loss} at epoch {epoch}")
    chance = 1.0 / num_classes
    near = chance + NEAR_CHANCE * (1.0 - chance)
    acc = float(final_train_accuracy)
    if not math.isfinite(acc) or (min_train_accuracy is None and acc < near):
        return RunStatus("failed", f"{where}final train accuracy {acc:.3g} stayed near chance ({chance:.3g}; "
                                   f"a run must pass {near:.3g})")
    if min_train_accuracy is not None and acc < min_train_accuracy:
        return RunStatus("failed", f"{where}final train accuracy {acc:.3g} is below the recipe's minimum "
                                   f"{min_train_accuracy:g}: the run did not fit its training data")
    return RunStatus()


def record_status(record, min_train_accuracy: float | None = None, label: str = "") -> RunStatus:
    """`status_of` for a `TrajectoryRecord` (its fit losses per evaluated epoch, its final train pass)."""
    losses = [(r.epoch, r.fit_loss) for r in record.epochs]
    final = record.final()
    return status_of(losses, final.train.accuracy, len(record.class_counts), min_train_accuracy, label)


def worst(statuses) -> RunStatus:
    """The most severe status of several runs, with the reasons of all runs that are not ok."""
    statuses = list(statuses)
    if not statuses:
        return RunStatus()
    top = max(statuses, key=lambda s: SEVERITY[s.status])
    reasons = [s.reason for s in statuses if not s.ok]
    return RunStatus(top.status, "; ".join(dict.fromkeys(reasons)))
