"""The interval of a claim's statistic over seeds, fitted to the statistic.

- `t`: `x̄ ± t_{0.975, n−1}·s/√n` (`ncbench.metrics.confidence.mean_ci`), clipped to the statistic's
  bounds (a fraction stays in [0, 1]);
- `fisher_z`: for correlations: the t-interval of `z = atanh ρ` mapped back with `tanh`, so it stays
  inside (−1, 1) (Fisher 1921); the value is the mean ρ;
- `permutation`: for a mean Spearman ρ over few points (5 losses, 5 blocks): `ρ̄ ± c`, clipped to
  [−1, 1], where `c` is the exact critical value of the permutation null of `ρ̄` (every seed's points in
  each of their `m!` orders, independently; ties ignored): the smallest attainable null value with
  `P(ρ̄_null > c) ≤ 2.5%`, widened by 1e-9 so that the interval lies above 0 exactly when the one-sided
  exact permutation test rejects at 2.5% (and below 0 when the other side does). A t or Fisher-z interval
  over three seeds of a discrete, bounded ρ is neither exact nor bounded (issue 28);
- `sign`: the exact, distribution-free interval of the median, `[x_(k), x_(n+1−k)]` with the largest
  `k` whose coverage `1 − 2·P(Bin(n, ½) ≤ k − 1)` is ≥ 95% (needs n ≥ 6 seeds), stated with the
  one-sided sign-test p-value `P(Bin(n, ½) ≥ m)` for the `m` seeds on the claimed side.

Seeds that all give the same value get the sign test instead of a zero-width t-interval (or, for a rule
on a single value, `min_seeds = 1`, are decided on that value, as one seed would be).
"""
from __future__ import annotations

import itertools
import math
from collections import Counter
from dataclasses import dataclass
from functools import cache

import numpy as np
from scipy.stats import binom
from scipy.stats import t as student_t

from ncbench.metrics.confidence import mean_ci

LEVEL = 0.95
RHO_CLIP = 1.0 - 1e-9
"""|ρ| = 1 has an infinite Fisher z; it is read as ±(1 − 1e-9)."""


@dataclass(frozen=True)
class Interval:
    """`value` with `[low, high]` (NaN: none); `decided`: whether a verdict may rest on it; `text`
    names the method (and for the sign test, the test's statement)."""

    value: float
    low: float
    high: float
    text: str
    decided: bool


def sign_statement(values, null: float, direction: str) -> tuple[int, float]:
    """(seeds strictly on the claimed side of `null`, one-sided exact sign-test p = P(Bin(n, ½) ≥ m))."""
    v = np.asarray(values, dtype=float)
    m = int((v > null).sum() if direction == ">" else (v < null).sum())
    return m, float(binom.sf(m - 1, len(v), 0.5))


def sign_interval(values, null: float, direction: str, level: float = LEVEL) -> Interval:
    """The exact interval of the median (order statistics) and the sign test (module docstring)."""
    v = np.sort(np.asarray(values, dtype=float))
    n = len(v)
    k = max((k for k in range(1, n // 2 + 1) if 1 - 2 * binom.cdf(k - 1, n, 0.5) >= level), default=0)
    m, p = sign_statement(v, null, direction)
    side = {">": "above", "<": "below"}.get(direction, "away from")
    text = f"sign test: {m} of {n} seeds {side} {null:g}, one-sided exact p = {p:.3g}"
    if k == 0:
        return Interval(float(np.median(v)), math.nan, math.nan,
                        text + f"; an exact {level:.0%} interval of the median needs ≥ 6 seeds", False)
    cover = 1 - 2 * binom.cdf(k - 1, n, 0.5)
    return Interval(float(np.median(v)), float(v[k - 1]), float(v[n - k]),
                    text + f"; exact interval of the median (coverage {cover:.3f})", True)


def fisher_z_interval(values, level: float = LEVEL) -> Interval:
    """Mean ρ with `tanh(z̄ ± t·s_z/√n)`, `z = atanh ρ` (module docstring)."""
    r = np.asarray(values, dtype=float)
    z = np.arctanh(np.clip(r, -RHO_CLIP, RHO_CLIP))
    n = len(z)
    half = student_t.ppf((1 + level) / 2, n - 1) * z.std(ddof=1) / math.sqrt(n)
    return Interval(float(r.mean()), float(np.tanh(z.mean() - half)), float(np.tanh(z.mean() + half)),
                    f"{level:.0%} Fisher-z interval of ρ", True)


MAX_PERMUTATION_POINTS = 8
"""Most points per seed whose m! orders are enumerated (8! = 40,320)."""


@cache
def spearman_null(m: int) -> tuple[tuple[float, float], ...]:
    """The exact null distribution of Spearman ρ over `m` untied points: ((ρ, probability), …) over the
    m! orders, ρ = 1 − 6·Σd²/(m(m² − 1))."""
    if not 2 <= m <= MAX_PERMUTATION_POINTS:
        raise ValueError(f"the exact permutation null needs 2 to {MAX_PERMUTATION_POINTS} points, got {m}")
    counts = Counter(sum((i - j) ** 2 for i, j in enumerate(p)) for p in itertools.permutations(range(m)))
    total = math.factorial(m)
    return tuple((1 - 6 * s / (m * (m * m - 1)), c / total) for s, c in sorted(counts.items()))


def mean_rho_null(points) -> dict[float, float]:
    """{mean ρ: probability} under the permutation null, each unit with its own number of `points`."""
    dist = {0.0: 1.0}
    for m in points:
        nxt: dict[float, float] = {}
        for total, p in dist.items():
            for rho, q in spearman_null(int(m)):
                key = round(total + rho, 10)
                nxt[key] = nxt.get(key, 0.0) + p * q
        dist = nxt
    n = len(points)
    return {round(k / n, 10): v for k, v in dist.items()}


def permutation_critical_value(points, level: float = LEVEL) -> float:
    """The smallest attainable null mean ρ `c` with `P(ρ̄_null > c) ≤ (1 − level)/2` (module docstring)."""
    alpha = (1 - level) / 2
    dist = sorted(mean_rho_null(points).items())
    above = 0.0
    c = dist[-1][0]
    for value, p in reversed(dist):
        if above > alpha + 1e-12:
            break
        c = value
        above += p
    return c


def permutation_interval(values, points, level: float = LEVEL) -> Interval:
    """Mean ρ ± the exact permutation critical value (module docstring), clipped to [−1, 1]."""
    r = np.asarray(values, dtype=float)
    c = permutation_critical_value(points, level) + 1e-9
    m = sorted({int(x) for x in points})
    return Interval(float(r.mean()), max(-1.0, float(r.mean()) - c), min(1.0, float(r.mean()) + c),
                    f"exact permutation interval of the mean ρ (± {c:.3g}: {len(r)} seed(s) of "
                    f"{'/'.join(map(str, m))} points, each in all its orders)", True)


def clipped_t_interval(values, bounds=None, level: float = LEVEL) -> Interval:
    """Student-t interval of the mean, clipped to `bounds` (the statistic's range) when given."""
    ci = mean_ci(list(values), level=level)
    lo, hi = ci.low, ci.high
    text = f"{level:.0%} Student-t interval"
    if bounds is not None and (lo < bounds[0] or hi > bounds[1]):
        lo, hi = max(lo, bounds[0]), min(hi, bounds[1])
        text += f", clipped to [{bounds[0]:g}, {bounds[1]:g}]"
    return Interval(ci.mean, lo, hi, text, True)


def claim_interval(claim, values, points=None) -> Interval:
    """The interval that fits `claim`'s statistic (`Claim.interval_method`) over the per-seed `values`
    (`points`: per value, the number of points its ρ was computed over, for the permutation interval)."""
    v = [float(x) for x in values]
    if claim.interval_method == "permutation":
        if points is None or len(points) != len(v):
            return Interval(float(np.mean(v)), math.nan, math.nan, "permutation interval: the points per seed "
                            "are unknown", False)
        return permutation_interval(v, points)
    if len(v) == 1:
        return Interval(v[0], math.nan, math.nan, "one value (no interval)", claim.seeds_needed == 1)
    method = claim.interval_method
    if max(v) == min(v) and claim.seeds_needed == 1:    # a rule on a single value: every seed gives it
        return Interval(v[0], math.nan, math.nan, f"all {len(v)} seeds give {v[0]:.6g}: decided on that value", True)
    if method == "sign" or max(v) == min(v):
        return sign_interval(v, claim.null_value, claim.direction)
    if method == "fisher_z":
        return fisher_z_interval(v)
    return clipped_t_interval(v, claim.statistic_bounds)
