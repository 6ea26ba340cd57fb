"""What a claim (or a precondition) reads: one value per seed of a task's metric at a sweep point."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Measure:
    """One value per seed: the rows of `task` with this `metric`, `variant`, `layer` and `split`.

    `split=None` reads the `summary` rows when the metric has any, else the one split that holds it.
    `variant` is matched as key=value pairs in any order, numbers compared as numbers (`5e-4` = `0.0005`);
    a `model=` key of the rows is the model of the outcome, not part of the point. `column` is the column
    read: `value`, or `n_samples` (the images the row was measured on).
    """

    task: str
    metric: str
    variant: str = ""
    split: str | None = None
    layer: str = ""
    column: str = "value"

    def label(self) -> str:
        where = ", ".join(x for x in (self.variant, f"split {self.split}" if self.split else "",
                                      f"layer {self.layer}" if self.layer else "") if x)
        what = self.metric if self.column == "value" else f"{self.metric} ({self.column})"
        return f"{self.task}: {what}" + (f" [{where}]" if where else "")
