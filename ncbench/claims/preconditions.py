"""Preconditions: when a paper's statement applies, checked per seed (and model) on the tidy results.

A `Precondition` compares one per-seed value with a `level` (`>=`, `<=`, `>`, `<`). The value is
`statistic` of its `measure`:

- `value`: the measure itself (e.g. `terminal_phase_fraction ≥ 1/3`, minority `train_accuracy ≥ 0.9`);
- `relative_lr_at_terminal_phase`: `lr(t₀) / max_t lr(t)`, the fit-split learning rate at the
  terminal-phase epoch `t₀` (`terminal_phase_epoch` of the same task and variant) over the peak learning
  rate; 0 when the terminal phase is never reached (the weights must still move when it starts);
- `abs_difference`: `|measure − other|` per seed (e.g. the source images of two arms: equal when a
  comparison holds the number of images fixed);
- `sweep_range`: `max − min` of the measure over the points of the `sweep_key` sweep per seed (e.g. the
  source test accuracy over five losses: losses matched on accuracy, Kornblith et al. 2021).

A precondition that fails in a seed makes the claim *not applicable* for that model (Papyan et al.'s
statements are about the terminal phase of a training that reaches it early at a learning rate that
still moves the weights; Yang et al.'s about minority classes that are fitted).
"""
from __future__ import annotations

import math
import operator
from dataclasses import dataclass

from ncbench.claims.measure import Measure

OPS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt}
STATISTICS = ("value", "relative_lr_at_terminal_phase", "abs_difference", "sweep_range")


@dataclass(frozen=True)
class Precondition:
    """`statistic(measure) op level` must hold in every seed; `source` says whose `level` it is."""

    name: str
    text: str
    measure: Measure
    op: str
    level: float
    statistic: str = "value"
    source: str = "ncbench"
    other: Measure | None = None        # abs_difference: the measure subtracted
    sweep_key: str | None = None        # sweep_range: the variant key swept

    def __post_init__(self):
        if self.op not in OPS:
            raise ValueError(f"precondition '{self.name}': op {self.op!r} is not one of {tuple(OPS)}")
        if self.statistic not in STATISTICS:
            raise ValueError(f"precondition '{self.name}': statistic {self.statistic!r} is not one of {STATISTICS}")
        if self.source not in ("paper", "ncbench"):
            raise ValueError(f"precondition '{self.name}': source must be 'paper' or 'ncbench', got {self.source!r}")
        if (self.statistic == "abs_difference") != (self.other is not None):
            raise ValueError(f"precondition '{self.name}': abs_difference needs the measure `other`, and only it")
        if (self.statistic == "sweep_range") != (self.sweep_key is not None):
            raise ValueError(f"precondition '{self.name}': sweep_range needs `sweep_key`, and only it")

    def measures(self) -> list[Measure]:
        return [m for m in (self.measure, self.other) if m is not None]

    def rule_text(self) -> str:
        what = {"relative_lr_at_terminal_phase": f"lr at the terminal phase / peak lr ({self.measure.task})",
                "abs_difference": f"|{self.measure.label()} − {self.other.label() if self.other else ''}|",
                "sweep_range": f"max − min over the {self.sweep_key} sweep of {self.measure.label()}",
                }.get(self.statistic, self.measure.label())
        return f"{what} {self.op} {self.level:.3g}" + (" (ncbench's level)" if self.source == "ncbench" else "")

    def holds(self, value: float) -> bool:
        return math.isfinite(value) and bool(OPS[self.op](value, self.level))

    def values(self, reader) -> dict:
        """{seed: value} from an `ncbench.claims.evaluate.Reader` (raises its `MissingInput`)."""
        if self.statistic == "value":
            return reader.per_seed(self.measure)
        if self.statistic == "abs_difference":
            a, b = reader.per_seed(self.measure), reader.per_seed(self.other)
            return {s: abs(a[s] - b[s]) for s in a if s in b}
        if self.statistic == "sweep_range":
            sweep = reader.sweep(self.measure, self.sweep_key)
            seeds = set.intersection(*(set(v) for v in sweep.values()))
            return {s: max(v[s] for v in sweep.values()) - min(v[s] for v in sweep.values()) for s in sorted(seeds)}
        start = reader.per_seed(Measure(self.measure.task, "terminal_phase_epoch", self.measure.variant))
        lr = reader.per_epoch(Measure(self.measure.task, "lr", self.measure.variant, split="fit"))
        out = {}
        for seed, series in lr.items():
            t0, peak = start.get(seed, math.nan), float(series.max())
            out[seed] = (float(series.get(t0, math.nan)) / peak if math.isfinite(t0) and peak > 0
                         else 0.0 if not math.isfinite(t0) else math.nan)
        return out

    def check(self, reader) -> dict:
        """{seed: (value, held)}."""
        return {s: (v, self.holds(v)) for s, v in self.values(reader).items()}
