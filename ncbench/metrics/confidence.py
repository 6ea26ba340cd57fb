"""Confidence intervals over seeds: Student t for a mean and for a paired difference.

- `mean_ci`: `x̄ ± t_{(1+level)/2, n−1} · s/√n` with `s` the sample standard deviation (ddof = 1):
  the interval for the mean of a handful of seeds (3–10), where the normal `1.96` would be too narrow
  (t_{0.975, 2} = 4.30). Episode-level intervals of few-shot accuracy (600 episodes) keep SPEC §6's
  `1.96·std/√E` (`ncbench.fewshot.mean_ci95`).
- `paired_difference_ci`: the same interval on the per-seed differences `a_s − b_s` (the paired t
  test, `scipy.stats.ttest_rel`), with its t statistic and two-sided p-value: the comparison a task
  exists to make (fixed ETF vs learnable classifier at the same R and seed; S = 5 vs S = 2 source
  classes), where the seed-to-seed spread shared by both arms cancels.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from ncbench.core.intervals import t_interval

NAN_POLICIES = ("raise", "omit")


@dataclass(frozen=True)
class MeanCI:
    """Mean of `n` values with its Student-t interval `[low, high] = mean ± half_width` at `level`
    (`half_width` NaN for n = 1: one seed has no spread)."""

    mean: float
    half_width: float
    low: float
    high: float
    std: float
    n: int
    level: float


@dataclass(frozen=True)
class PairedCI(MeanCI):
    """`MeanCI` of the paired differences `a − b`, with the paired t statistic and two-sided p-value."""

    t_statistic: float = math.nan
    p_value: float = math.nan


def _values(values, nan_policy: str, what: str) -> np.ndarray:
    if nan_policy not in NAN_POLICIES:
        raise ValueError(f"nan_policy must be one of {NAN_POLICIES}, got {nan_policy!r}")
    v = np.asarray(values, dtype=np.float64).ravel()
    bad = ~np.isfinite(v)
    if bad.any():
        if nan_policy == "raise":
            raise ValueError(f"{what} has {int(bad.sum())} non-finite value(s) of {v.size}: drop the failed "
                             "runs first or pass nan_policy='omit'")
        v = v[~bad]
    if v.size == 0:
        raise ValueError(f"{what} has no finite value: cannot take a mean")
    return v


def _check_level(level: float) -> float:
    if not 0.0 < float(level) < 1.0:
        raise ValueError(f"level must be in (0, 1) (e.g. 0.95), got {level!r}")
    return float(level)


def mean_ci(values, level: float = 0.95, nan_policy: str = "raise") -> MeanCI:
    """Student-t interval for the mean of `values` (one per seed). `nan_policy="omit"` drops NaN/inf."""
    level = _check_level(level)
    v = _values(values, nan_policy, "values")
    mean, std, half = t_interval(v, level)
    return MeanCI(mean, half, mean - half, mean + half, std, int(v.size), level)


def paired_difference_ci(a, b, level: float = 0.95, nan_policy: str = "raise") -> PairedCI:
    """Interval for the mean of `a − b`, where `a[s]` and `b[s]` come from the same seed `s`.

    `nan_policy="omit"` drops the seeds where either arm is NaN/inf (a failed run loses its pair).
    The p-value is the two-sided paired t test (`scipy.stats.ttest_rel`); with zero spread it is 0 for
    a non-zero difference and NaN for none.
    """
    level = _check_level(level)
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"paired values need one value per seed in each arm: got {a.size} and {b.size}")
    d = _values(a - b, nan_policy, "paired differences")
    mean, std, half = t_interval(d, level)
    if d.size < 2:
        t_stat, p = math.nan, math.nan
    elif std == 0.0:
        t_stat = math.copysign(math.inf, mean) if mean != 0 else math.nan
        p = 0.0 if mean != 0 else math.nan
    else:
        t_stat = mean / (std / math.sqrt(d.size))
        p = float(2.0 * stats.t.sf(abs(t_stat), d.size - 1))
    return PairedCI(mean, half, mean - half, mean + half, std, int(d.size), level, float(t_stat), p)
