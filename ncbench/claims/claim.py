"""A claim of the literature as data: what it reads from tidy results, the statistic, the verdict rule.

A `Claim` names its inputs as `Measure`s (task, metric, variant, split, layer: one value per seed in
the new vocabulary of `ncbench.results.variants`) and one statistic `kind`:

- `mean`: the mean over seeds of one measure (Student-t 95% CI, `ncbench.metrics.confidence.mean_ci`);
- `paired_difference`: the mean over seeds of `a_s − b_s`, paired by seed (`paired_difference_ci`);
- `epoch_change`: per seed, the last minus the first finite per-epoch value of one measure, then the mean;
- `spearman`: per seed, Spearman ρ across the points of a sweep (`sweep_key`) between `x` (the sweep
  value itself, or another metric) and the measure, then the mean over seeds.

The verdict compares the interval with `threshold` in `direction` (`>`, `<`, or `within` ± `tolerance`):
reproduced when the whole CI lies on the claimed side, not reproduced when it lies wholly on the other
side (touching the threshold counts as the other side), inconclusive otherwise. Below `min_seeds`
per-seed statistics the verdict is inconclusive; `min_seeds = 1` (the default of `mean`, a threshold on
a single value) lets one seed decide on its value. `rule_text` writes the rule that the code applies.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

KINDS = ("mean", "paired_difference", "epoch_change", "spearman")
DIRECTIONS = (">", "<", "within")
TRANSFORMS = ("identity", "log10")
VERDICTS = ("reproduced", "not reproduced", "inconclusive")
LEVEL = 0.95


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


@dataclass(frozen=True)
class Claim:
    """A claim, its inputs and its verdict rule (see the module docstring)."""

    claim_id: str
    claim: str
    source: str
    kind: str
    a: Measure
    direction: str
    threshold: float = 0.0
    b: Measure | None = None           # paired_difference: the arm subtracted
    transform: str = "identity"        # applied to every per-seed input value before the statistic
    tolerance: float | None = None     # direction "within": |statistic − threshold| ≤ tolerance
    sweep_key: str | None = None       # spearman: the variant key swept (other keys fixed to a.variant's)
    x_metric: str | None = None        # spearman: x is this metric of the same task (default: the sweep value)
    min_seeds: int | None = None       # default 1 for `mean`, 2 otherwise

    def __post_init__(self):
        def bad(what: str):
            raise ValueError(f"claim '{self.claim_id}': {what}")

        if self.kind not in KINDS:
            bad(f"kind {self.kind!r} is not one of {KINDS}")
        if self.direction not in DIRECTIONS:
            bad(f"direction {self.direction!r} is not one of {DIRECTIONS}")
        if self.transform not in TRANSFORMS:
            bad(f"transform {self.transform!r} is not one of {TRANSFORMS}")
        if (self.kind == "paired_difference") != (self.b is not None):
            bad("a paired_difference needs the second arm b, and only it has one")
        if (self.kind == "spearman") != (self.sweep_key is not None):
            bad("a spearman claim needs sweep_key, and only it has one")
        if self.direction == "within" and not (self.tolerance is not None and self.tolerance > 0):
            bad("direction 'within' needs a tolerance > 0")
        if not math.isfinite(self.threshold):
            bad("threshold must be a finite number")
        if self.min_seeds is not None and self.min_seeds < 1:
            bad("min_seeds must be ≥ 1")

    @property
    def seeds_needed(self) -> int:
        return self.min_seeds if self.min_seeds is not None else (1 if self.kind == "mean" else 2)

    def measures(self) -> list[Measure]:
        return [m for m in (self.a, self.b) if m is not None]

    def statistic_text(self) -> str:
        """What the `value` column holds, in words."""
        def f(m: Measure) -> str:
            return f"log10({m.metric})" if self.transform == "log10" else m.metric

        if self.kind == "mean":
            return f"mean over seeds of {f(self.a)} ({self.a.label()})"
        if self.kind == "paired_difference":
            return (f"mean over seeds of the paired difference {f(self.a)} − {f(self.b)} "
                    f"({self.a.label()} minus {self.b.label()})")
        if self.kind == "epoch_change":
            return (f"mean over seeds of the change of {f(self.a)} from its first to its last finite epoch "
                    f"({self.a.label()})")
        x = f"{self.x_metric}" if self.x_metric else f"the {self.sweep_key} value"
        return (f"mean over seeds of Spearman ρ across the {self.sweep_key} sweep between {x} and {f(self.a)} "
                f"({self.a.label()})")

    def direction_text(self) -> str:
        t = f"{self.threshold:g}"
        return f"within {self.tolerance:g} of {t}" if self.direction == "within" else f"{self.direction} {t}"

    def rule_text(self) -> str:
        """The verdict rule, exactly as `ncbench.claims.evaluate.verdict` applies it."""
        t = f"{self.threshold:g}"
        if self.direction == "within":
            yes = f"lies inside [{self.threshold - self.tolerance:g}, {self.threshold + self.tolerance:g}]"
            no = "lies wholly outside it"
        else:
            side, other = ("above", "at or below") if self.direction == ">" else ("below", "at or above")
            yes, no = f"lies {side} {t}", f"lies {other} {t}"
        ci = f"the {LEVEL:.0%} Student-t CI over seeds"
        n = self.seeds_needed
        single = (" (one seed: its value decides)" if n == 1 else
                  f"; fewer than {n} seeds: inconclusive")
        return f"reproduced if {ci} {yes}; not reproduced if it {no}; otherwise inconclusive{single}"
