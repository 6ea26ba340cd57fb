"""What a claim (or a precondition) reads: one value per seed of a task's metric at a sweep point."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Measure:
    """One value per seed: the rows of `task` with this `metric`, `variant`, `layer` and `split`.

    `split=None` reads the `summary` rows when the metric has any, else the one split that holds it.
    `variant` is matched as key=value pairs in any order, numbers compared as numbers (`5e-4` = `0.0005`).
    """

    task: str
    metric: str
    variant: str = ""
    split: str | None = None
    layer: str = ""

    def label(self) -> str:
        where = ", ".join(x for x in (self.variant, f"split {self.split}" if self.split else "",
                                      f"layer {self.layer}" if self.layer else "") if x)
        return f"{self.task}: {self.metric}" + (f" [{where}]" if where else "")
