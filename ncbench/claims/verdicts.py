"""The verdict vocabulary and its rule, and whether a claim's rule can pass and can fail at all.

Verdicts (issue 28): *reproduced* (the interval lies on the claimed side of the threshold),
*contradicted* (it lies on the other side of the paper's null; a single value exactly at the null, every
seed tied there, is not the other side: inconclusive), *weaker than claimed* (right
direction, ncbench's own threshold not met: the interval lies between the null and the threshold),
*inconclusive* (none of these, or too few seeds), *not applicable* (a precondition of the paper's
statement failed; the reason names it).
"""
from __future__ import annotations

import math

from scipy.stats import t as student_t

from ncbench.claims.intervals import permutation_critical_value
from ncbench.core.verdicts import (
    CONTRADICTED,
    INCONCLUSIVE,
    NOT_APPLICABLE,
    REPRODUCED,
    VERDICTS,
    WEAKER,
)

__all__ = ["CONTRADICTED", "INCONCLUSIVE", "NOT_APPLICABLE", "REPRODUCED", "VERDICTS", "WEAKER",
           "rule_feasibility", "verdict"]


def verdict(claim, low: float, high: float) -> str:
    """The rule of `Claim.rule_text` on an interval `[low, high]` (a single value: low = high)."""
    t, z = claim.threshold, claim.null_value
    if claim.direction == "within":
        if t - claim.tolerance <= low and high <= t + claim.tolerance:
            return REPRODUCED
        return CONTRADICTED if high < t - claim.tolerance or low > t + claim.tolerance else INCONCLUSIVE
    if claim.direction == "<":       # mirror onto ">"
        low, high, t, z = -high, -low, -t, -z
    if low > t:
        return REPRODUCED
    if high <= z and low < z:
        return CONTRADICTED
    if z != t and low > z and high <= t:
        return WEAKER
    return INCONCLUSIVE


def rule_feasibility(claim, n_seeds: int) -> tuple[bool, bool, str]:
    """(can pass, can fail, why) of `claim`'s rule with `n_seeds` seeds per model.

    Below `seeds_needed` (the sign test: 6) no verdict can be reached. A `within` band can pass only
    if it is wider than the t half-width `t_{0.975, n−1}·seed_sd/√n` at ncbench's expected seed spread
    `seed_sd` (which such a claim must declare). A threshold at or beyond the statistic's bounds cannot
    be passed (e.g. ρ > 1); a null at or beyond them cannot be contradicted. A permutation interval
    `ρ̄ ± c` (`points_expected` points per seed) can pass only if `±1 ∓ c` clears the threshold: over 3
    points in one seed `c` = 1, and ρ = 1 still cannot pass."""
    if n_seeds < claim.seeds_needed:
        return False, False, f"{n_seeds} seed(s): the rule needs ≥ {claim.seeds_needed}"
    lo, hi = claim.statistic_bounds or (-math.inf, math.inf)
    if claim.interval_method == "permutation" and claim.direction != "within":
        if claim.points_expected is None:
            return False, False, "a permutation interval needs points_expected (the points per seed) to judge it"
        c = permutation_critical_value([claim.points_expected] * n_seeds) + 1e-9
        lo, hi = -1.0 + c, 1.0 - c     # the interval's low can reach at most 1 − c, its high at least −1 + c
    if claim.direction == "within":
        if claim.seed_sd is None:
            return False, True, "a 'within' band needs the expected seed spread seed_sd to judge its width"
        half = (student_t.ppf(0.975, n_seeds - 1) * claim.seed_sd / math.sqrt(n_seeds)) if n_seeds > 1 else 0.0
        if half >= claim.tolerance:
            return False, True, (f"the ±{claim.tolerance:g} band is narrower than the t half-width {half:.3g} "
                                 f"at seed_sd {claim.seed_sd:g} with {n_seeds} seeds")
        band_lo, band_hi = claim.threshold - claim.tolerance, claim.threshold + claim.tolerance
        return True, band_lo > lo or band_hi < hi, f"band half-width {claim.tolerance:g} > t half-width {half:.3g}"
    t, z = claim.threshold, claim.null_value
    can_pass = t < hi if claim.direction == ">" else t > lo
    can_fail = z > lo if claim.direction == ">" else z < hi
    why = [] if can_pass else [f"threshold {t:g} is at the bound of the statistic's range [{lo:g}, {hi:g}]"]
    why += [] if can_fail else [f"null {z:g} lies outside the statistic's range [{lo:g}, {hi:g}]"]
    return can_pass, can_fail, "; ".join(why) or "can pass and can fail"
