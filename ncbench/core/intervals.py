"""The Student-t interval for the mean of a few seeds, once, torch-free (numpy and scipy only).

`x̄ ± t_{(1+level)/2, n−1} · s/√n`, `s` the sample standard deviation (ddof = 1); for n < 2 the std
and the half-width are NaN (one seed has no spread). Used by `ncbench.metrics.confidence` (mean and
paired-difference intervals of a task) and `ncbench.leaderboard.aggregate` (board cells).
"""
from __future__ import annotations

import math

import numpy as np
from scipy import stats


def t_interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """(mean, sample std, Student-t half-width) of the float64 array `values` (finite, non-empty)."""
    mean = float(values.mean())
    if values.size < 2:
        return mean, math.nan, math.nan
    std = float(values.std(ddof=1))
    return mean, std, float(stats.t.ppf(0.5 + level / 2.0, values.size - 1)) * std / math.sqrt(values.size)
