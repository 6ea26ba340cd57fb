"""Rank correlation between transferability scores and measured transfer accuracies.

- `kendall_tau`: Kendall's τ-b, `(C − D) / √((P − T_x)(P − T_y))` over the P pairs (C concordant,
  D discordant, T_x / T_y pairs tied in x / y).
- `weighted_tau`: Vigna's weighted τ_w (WWW 2015), the measure transferability papers report
  (NCTI, SFDA): each pair (i, j) weighs `w(r_i) + w(r_j)` with the hyperbolic weigher `w(r) =
  1/(r + 1)` and `r` the rank by decreasing importance (rank 0 = best score), and
  `τ_w = Σ w_ij sgn(Δx)sgn(Δy) / √(Σ w_ij [Δx≠0] · Σ w_ij [Δy≠0])`; like scipy's default
  (`rank=True`) it averages the values ranked by x and ranked by y. Ranks of tied elements follow
  a lexicographic order on (key, other coordinate), both descending, as scipy does.

O(n²) over pairs, vectorised; n is a number of models.
"""
from __future__ import annotations

import math

import numpy as np

LOWER_IS_BETTER = ("nc1", "cdnv", "test_nc1", "test_cdnv", "ncc_depth")
"""Estimators where a lower score predicts better transfer (their sign is flipped before ranking)."""


def _arrays(x, y) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(x, dtype=np.float64).ravel(), np.asarray(y, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same length, got {x.size} and {y.size}")
    keep = np.isfinite(x) & np.isfinite(y)
    return x[keep], y[keep]


def kendall_tau(x, y) -> float:
    """Kendall τ-b; NaN when fewer than two finite pairs or either side is constant."""
    x, y = _arrays(x, y)
    iu = np.triu_indices(len(x), 1)
    dx, dy = np.sign(x[:, None] - x[None, :])[iu], np.sign(y[:, None] - y[None, :])[iu]
    denom = math.sqrt(float(np.count_nonzero(dx)) * float(np.count_nonzero(dy)))
    return float((dx * dy).sum() / denom) if denom > 0 else math.nan


def _importance_rank(key: np.ndarray, other: np.ndarray) -> np.ndarray:
    """Rank 0 for the largest (key, other), lexicographically, then 1, 2, ..."""
    order = np.lexsort((-other, -key))
    rank = np.empty(len(key), dtype=np.float64)
    rank[order] = np.arange(len(key))
    return rank


def _weighted(x: np.ndarray, y: np.ndarray, rank: np.ndarray) -> float:
    w = 1.0 / (rank + 1.0)
    iu = np.triu_indices(len(x), 1)
    wij = (w[:, None] + w[None, :])[iu]
    dx, dy = np.sign(x[:, None] - x[None, :])[iu], np.sign(y[:, None] - y[None, :])[iu]
    denom = math.sqrt(float((wij * (dx != 0)).sum()) * float((wij * (dy != 0)).sum()))
    return float((wij * dx * dy).sum() / denom) if denom > 0 else math.nan


def weighted_tau(x, y) -> float:
    """Vigna's weighted τ_w with the additive hyperbolic weigher, averaged over both rankings."""
    x, y = _arrays(x, y)
    if len(x) < 2:
        return math.nan
    return 0.5 * (_weighted(x, y, _importance_rank(x, y)) + _weighted(x, y, _importance_rank(y, x)))
