"""Seed-level confidence intervals (ncbench.metrics.confidence) against scipy.stats."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from ncbench.metrics.confidence import mean_ci, paired_difference_ci


@pytest.mark.parametrize("n", [2, 3, 5, 10])
@pytest.mark.parametrize("level", [0.9, 0.95, 0.99])
def test_mean_ci_is_scipys_student_t_interval(n, level):
    rng = np.random.default_rng(n)
    v = rng.normal(0.7, 0.05, n)
    ci = mean_ci(v, level)
    low, high = stats.t.interval(level, n - 1, loc=v.mean(), scale=stats.sem(v))
    assert (ci.low, ci.high) == pytest.approx((low, high), rel=1e-12, abs=1e-15)
    assert ci.half_width == pytest.approx(stats.t.ppf((1 + level) / 2, n - 1) * v.std(ddof=1) / math.sqrt(n))
    assert ci.n == n and ci.mean == pytest.approx(v.mean())


def test_three_seeds_use_t_not_the_normal_quantile():
    ci = mean_ci([1.0, 2.0, 3.0])
    assert ci.half_width == pytest.approx(4.302652729911275 * 1.0 / math.sqrt(3))  # t_{0.975, 2}


@pytest.mark.parametrize("n", [2, 3, 6])
def test_paired_difference_matches_ttest_rel(n):
    rng = np.random.default_rng(10 + n)
    seed_effect = rng.normal(0, 1.0, n)                    # shared by both arms: cancels when paired
    a = 0.8 + seed_effect + rng.normal(0, 0.02, n)
    b = 0.7 + seed_effect + rng.normal(0, 0.02, n)
    r = paired_difference_ci(a, b)
    ref = stats.ttest_rel(a, b)
    ref_ci = ref.confidence_interval(0.95)
    assert r.t_statistic == pytest.approx(ref.statistic, rel=1e-10)
    assert r.p_value == pytest.approx(ref.pvalue, rel=1e-8)
    assert (r.low, r.high) == pytest.approx((ref_ci.low, ref_ci.high), rel=1e-10)
    unpaired = mean_ci(a).half_width + mean_ci(b).half_width
    assert r.half_width < unpaired                         # pairing removes the seed-to-seed spread


def test_degenerate_inputs_are_explicit():
    one = mean_ci([0.5])
    assert one.mean == 0.5 and math.isnan(one.half_width) and math.isnan(one.low)
    assert paired_difference_ci([1.0, 2.0], [0.0, 1.0]).p_value == 0.0      # constant non-zero difference
    assert math.isnan(paired_difference_ci([1.0, 2.0], [1.0, 2.0]).p_value)
    with pytest.raises(ValueError, match="non-finite"):
        mean_ci([0.5, float("nan")])
    assert mean_ci([0.5, float("nan"), 0.7], nan_policy="omit").n == 2
    r = paired_difference_ci([1.0, float("nan"), 3.0, 4.0], [0.5, 1.0, 2.0, 3.8], nan_policy="omit")
    assert r.n == 3 and r.p_value == pytest.approx(stats.ttest_rel([1.0, 3.0, 4.0], [0.5, 2.0, 3.8]).pvalue)
    with pytest.raises(ValueError, match="one value per seed"):
        paired_difference_ci([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="level"):
        mean_ci([1.0, 2.0], level=95)
    with pytest.raises(ValueError, match="no finite value"):
        mean_ci([])
