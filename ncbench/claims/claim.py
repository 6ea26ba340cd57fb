"""A claim of the literature as data: what it reads from tidy results, the statistic, the verdict rule.

A `Claim` names its inputs as `Measure`s (task, metric, variant, split, layer: one value per seed in
the new vocabulary of `ncbench.results.variants`) and one statistic `kind`:

- `mean`: the mean over seeds of one measure;
- `paired_difference`: the mean over seeds of `a_s − b_s`, paired by seed;
- `epoch_change`: per seed, the last minus the first finite per-epoch value of one measure, then the mean;
- `spearman`: per seed, Spearman ρ across the points of a sweep (`sweep_key`, or the explicit variant
  `points`, e.g. trained / random-init / raw-pixel representations) between `x` (the sweep value itself,
  or another metric) and the measure, then the mean over seeds;
- `terminal_phase_fall`: per seed, the measure at the first evaluated epoch of the terminal phase (the
  first with `phase` = 1, train accuracy) minus at the last epoch (with `log10`: the log of the fall);
- `late_slope_difference`: per seed, the least-squares slope over epochs of `a` minus that of `b` over
  the later half of the terminal phase (epochs ≥ t₀ + (T − t₀)/2; ≥ 3 evaluated epochs), e.g. of log10
  strong test NC1 against log10 train NC1 (Hui et al. 2022: test collapse stalls);
- `layer_spearman`: per seed, Spearman ρ between the block index (`layer`) and the measure at the last
  epoch, over every block the task reports (He & Su 2022: collapse progresses with depth).

Its interval fits the statistic (`ncbench.claims.intervals`): Student-t (clipped to the statistic's
`bounds`), Fisher z for a correlation, or the exact sign-test interval of the median. The verdict
(`ncbench.claims.verdicts`) compares the interval with `threshold` in `direction` (`>`, `<`, or
`within` ± `tolerance`) and with `null`, the paper's no-effect value: *reproduced*, *contradicted*,
*weaker than claimed*, *inconclusive*, or *not applicable* when one of its `preconditions` failed.
`threshold_source` says whose threshold it is: the paper's, or ncbench's own. `rule_text` writes the
rule the code applies.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from ncbench.claims.measure import Measure
from ncbench.claims.preconditions import Precondition

KINDS = ("mean", "paired_difference", "epoch_change", "spearman", "terminal_phase_fall", "late_slope_difference",
         "layer_spearman")
RHO_KINDS = ("spearman", "layer_spearman")
DIRECTIONS = (">", "<", "within")
TRANSFORMS = ("identity", "log10")
INTERVALS = ("auto", "t", "fisher_z", "sign", "permutation")
THRESHOLD_SOURCES = ("paper", "ncbench")
EVIDENCE = ("empirical", "theory")
LEVEL = 0.95
SIGN_MIN_SEEDS = 6
"""Fewest seeds whose exact sign-test interval of the median, [min, max], covers ≥ 95%: 1 − 2·0.5⁶ ≈ 0.97."""


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
    b: Measure | None = None           # paired_difference, late_slope_difference: the measure subtracted
    transform: str = "identity"        # applied to every per-seed input value before the statistic
    tolerance: float | None = None     # direction "within": |statistic − threshold| ≤ tolerance
    sweep_key: str | None = None       # spearman: the variant key swept (other keys fixed to a.variant's)
    x_metric: str | None = None        # spearman: x is this metric of the same task (default: the sweep value)
    points: tuple[str, ...] = ()       # spearman: the variant points (keys beside a.variant's) instead of a sweep
    phase: Measure | None = None       # terminal_phase_fall, late_slope_difference: per-epoch train accuracy
    points_expected: int | None = None  # permutation interval: points per seed (rule_feasibility)
    min_seeds: int | None = None       # default 1 for `mean`, 2 otherwise (6 for the sign test)
    null: float | None = None          # the paper's no-effect value (default: the threshold)
    threshold_source: str = "paper"    # whose threshold: "paper", or "ncbench" (its own choice)
    interval: str = "auto"             # "t", "fisher_z", "sign", "permutation"; auto: fisher_z for spearman,
    #                                    permutation for layer_spearman, else t
    bounds: tuple[float, float] | None = None   # the statistic's range (default (−1, 1) for fisher_z)
    seed_sd: float | None = None       # ncbench's expected seed-to-seed s.d. of the statistic (rule_feasibility)
    preconditions: tuple[Precondition, ...] = ()
    evidence: str = "empirical"        # "theory": a check of a theory's optimum, not an empirical reproduction

    def __post_init__(self):
        def bad(what: str):
            raise ValueError(f"claim '{self.claim_id}': {what}")

        if self.kind not in KINDS:
            bad(f"kind {self.kind!r} is not one of {KINDS}")
        if self.direction not in DIRECTIONS:
            bad(f"direction {self.direction!r} is not one of {DIRECTIONS}")
        if self.transform not in TRANSFORMS:
            bad(f"transform {self.transform!r} is not one of {TRANSFORMS}")
        if (self.kind in ("paired_difference", "late_slope_difference")) != (self.b is not None):
            bad("a paired_difference or late_slope_difference needs the second arm b (the measure subtracted), and only they have one")
        if self.kind == "spearman" and (self.sweep_key is None) == (not self.points):
            bad("a spearman claim needs sweep_key or points (one of them)")
        if self.kind != "spearman" and (self.sweep_key is not None or self.points):
            bad("only a spearman claim has sweep_key or points")
        if self.points and not self.x_metric:
            bad("a spearman claim over explicit points needs x_metric")
        if (self.kind in ("terminal_phase_fall", "late_slope_difference")) != (self.phase is not None):
            bad("terminal_phase_fall and late_slope_difference need the phase measure (train accuracy), and "
                "only they have one")
        if self.interval == "permutation" and self.kind not in RHO_KINDS:
            bad("the permutation interval is for a Spearman ρ (spearman, layer_spearman)")
        if self.direction == "within" and not (self.tolerance is not None and self.tolerance > 0):
            bad("direction 'within' needs a tolerance > 0")
        if not math.isfinite(self.threshold):
            bad("threshold must be a finite number")
        if self.min_seeds is not None and self.min_seeds < 1:
            bad("min_seeds must be ≥ 1")
        if self.interval not in INTERVALS:
            bad(f"interval {self.interval!r} is not one of {INTERVALS}")
        if self.threshold_source not in THRESHOLD_SOURCES:
            bad(f"threshold_source {self.threshold_source!r} is not one of {THRESHOLD_SOURCES}")
        if self.evidence not in EVIDENCE:
            bad(f"evidence {self.evidence!r} is not one of {EVIDENCE}")
        if self.null is not None:
            if self.direction == "within":
                bad("a 'within' claim has no null (the band is the claim)")
            if self.null != self.threshold and self.threshold_source != "ncbench":
                bad("a threshold beyond the paper's null is ncbench's: set threshold_source='ncbench'")
            if (self.null > self.threshold) if self.direction == ">" else (self.null < self.threshold):
                bad(f"null {self.null:g} must lie on the other side of threshold {self.threshold:g} from "
                    f"direction {self.direction!r}")
        lo, hi = self.statistic_bounds or (-math.inf, math.inf)
        if not lo < hi:
            bad(f"bounds {self.bounds} must be (low, high) with low < high")
        names = [p.name for p in self.preconditions]
        if len(set(names)) != len(names):
            bad(f"precondition names must be unique, got {names}")

    @property
    def null_value(self) -> float:
        """The paper's no-effect value: the interval wholly beyond it, away from `direction`, contradicts."""
        return self.threshold if self.null is None else self.null

    @property
    def interval_method(self) -> str:
        if self.interval != "auto":
            return self.interval
        return {"spearman": "fisher_z", "layer_spearman": "permutation"}.get(self.kind, "t")

    @property
    def statistic_bounds(self) -> tuple[float, float] | None:
        if self.bounds is not None:
            return tuple(self.bounds)
        return (-1.0, 1.0) if self.interval_method in ("fisher_z", "permutation") else None

    def tasks(self) -> list[str]:
        """Every task the claim reads, its preconditions' included."""
        return list(dict.fromkeys([m.task for m in self.measures()]
                                  + [m.task for p in self.preconditions for m in p.measures()]))

    @property
    def seeds_needed(self) -> int:
        if self.min_seeds is not None:
            return self.min_seeds
        if self.interval_method == "sign":
            return SIGN_MIN_SEEDS
        return 1 if self.kind == "mean" else 2

    def measures(self) -> list[Measure]:
        return [m for m in (self.a, self.b, self.phase) if m is not None]

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
        if self.kind == "terminal_phase_fall":
            return (f"mean over seeds of {f(self.a)} at the terminal phase's first epoch minus at the last epoch "
                    f"({self.a.label()}; terminal phase: first epoch with {self.phase.label()} = 1)")
        if self.kind == "late_slope_difference":
            return (f"mean over seeds of the slope per epoch of {f(self.a)} minus that of {f(self.b)} over the later "
                    f"half of the terminal phase ({self.a.label()} vs {self.b.label()})")
        if self.kind == "layer_spearman":
            return (f"mean over seeds of Spearman ρ between the block index and {f(self.a)} at the last epoch "
                    f"({self.a.label()}, every block)")
        x = f"{self.x_metric}" if self.x_metric else f"the {self.sweep_key} value"
        over = f"the {self.sweep_key} sweep" if self.sweep_key else "the points " + ", ".join(self.points)
        return f"mean over seeds of Spearman ρ across {over} between {x} and {f(self.a)} ({self.a.label()})"

    def direction_text(self) -> str:
        t = f"{self.threshold:g}"
        return f"within {self.tolerance:g} of {t}" if self.direction == "within" else f"{self.direction} {t}"

    def rule_text(self) -> str:
        """The verdict rule, exactly as `ncbench.claims.verdicts.verdict` applies it."""
        t, z = f"{self.threshold:g}", f"{self.null_value:g}"
        ci = {"t": f"the {LEVEL:.0%} Student-t CI over seeds", "fisher_z": f"the {LEVEL:.0%} Fisher-z CI of ρ over seeds",
              "sign": f"the exact sign-test CI (≥ {LEVEL:.0%}) of the median over seeds",
              "permutation": f"the exact {LEVEL:.0%} permutation interval of the mean ρ"}[self.interval_method]
        if self.direction == "within":
            lo, hi = self.threshold - self.tolerance, self.threshold + self.tolerance
            text = (f"reproduced if {ci} lies inside [{lo:g}, {hi:g}]; contradicted if it lies wholly outside it")
        else:
            side, other = ("above", "at or below") if self.direction == ">" else ("below", "at or above")
            text = f"reproduced if {ci} lies {side} {t}; contradicted if it lies {other} {z}"
            if self.null_value != self.threshold:
                text += f"; weaker than claimed if it lies {side} {z} but {other} {t}"
        whose = "ncbench's" if self.threshold_source == "ncbench" else "the paper's"
        text += f"; otherwise inconclusive (threshold: {whose})"
        if self.preconditions:
            text += "; not applicable if a precondition fails in a seed (" + ", ".join(
                p.name for p in self.preconditions) + ")"
        n = self.seeds_needed
        return text + (" (one seed: its value decides)" if n == 1 else f"; fewer than {n} seeds: inconclusive")
