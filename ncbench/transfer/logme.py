"""LogME (You, Liu, Wang, Long, ICML 2021): the maximum log evidence of a Bayesian linear model.

For features `F (n, D)` and a target column `y (n,)` (one-hot column of each class), the model
`y = Fw + ε`, `w ~ N(0, α⁻¹I)`, `ε ~ N(0, β⁻¹I)` has the log evidence (the paper's Eq. 2)

    L(α, β) = n/2 log β + D/2 log α − n/2 log 2π − β/2 ‖Fm − y‖² − α/2 mᵀm − 1/2 log|A|,
    A = αI + βFᵀF,   m = βA⁻¹Fᵀy.

LogME maximises `L/n` over (α, β) with the paper's fixed-point updates (Algorithm 1):
`γ = Σ_i βσ_i/(α + βσ_i)`, `α ← γ / mᵀm`, `β ← (n − γ) / ‖Fm − y‖²`, on the eigenvalues `σ_i` of
`FᵀF` (one SVD of `F` shared by all classes), and averages over the K classes. ncbench iterates
to a relative change of α/β below `tol` (default 1e-8, at most `max_iter`) instead of the paper's
fixed 11 iterations with a 1e-2 stop, so the value is the maximiser's, not the early stop's.
"""
from __future__ import annotations

import math

import numpy as np


def _svd(F: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`(U, s)` of the thin SVD of `F`, singular values above a rank tolerance only."""
    U, s, _ = np.linalg.svd(F, full_matrices=False)
    keep = s > s.max(initial=0.0) * max(F.shape) * np.finfo(np.float64).eps
    return U[:, keep], s[keep]


def log_evidence(F: np.ndarray, y: np.ndarray, alpha: float, beta: float) -> float:
    """`L(α, β) / n` (Eq. 2), from the SVD: `‖Fm − y‖²` and `mᵀm` in the singular basis."""
    F, y = np.asarray(F, np.float64), np.asarray(y, np.float64)
    n, D = F.shape
    U, s = _svd(F)
    return _evidence_svd(U.T @ y, float(y @ y), s ** 2, n, D, alpha, beta)[0]


def _evidence_svd(x, yy, sigma, n, D, alpha, beta):
    # m = V diag(β s_i / (α + β σ_i)) x; Fm − y has the components −α/(α+βσ_i) x_i in span(U)
    # plus the part of y outside span(U): ‖y‖² − ‖x‖².
    shrink = alpha + beta * sigma
    m2 = float((beta ** 2 * sigma * x ** 2 / shrink ** 2).sum())
    res2 = float(((alpha / shrink) ** 2 * x ** 2).sum() + max(yy - float((x ** 2).sum()), 0.0))
    logdet = float(np.log(shrink).sum()) + (D - len(sigma)) * math.log(alpha)
    L = (n / 2 * math.log(beta) + D / 2 * math.log(alpha) - n / 2 * math.log(2 * math.pi)
         - beta / 2 * res2 - alpha / 2 * m2 - logdet / 2)
    return L / n, m2, res2


def logme_column(U: np.ndarray, sigma: np.ndarray, y: np.ndarray, D: int, *, tol: float = 1e-8,
                 max_iter: int = 1000) -> tuple[float, float, float]:
    """`(max L/n, α, β)` for one target column by the fixed-point updates of Algorithm 1."""
    n = len(y)
    x, yy = U.T @ y, float(y @ y)
    alpha, beta = 1.0, 1.0
    for _ in range(max_iter):
        _, m2, res2 = _evidence_svd(x, yy, sigma, n, D, alpha, beta)
        gamma = float((beta * sigma / (alpha + beta * sigma)).sum())
        new_alpha = gamma / max(m2, 1e-300)
        new_beta = (n - gamma) / max(res2, 1e-300)
        done = abs(new_alpha / new_beta - alpha / beta) <= tol * (alpha / beta)
        alpha, beta = new_alpha, new_beta
        if done:
            break
    return _evidence_svd(x, yy, sigma, n, D, alpha, beta)[0], alpha, beta


def logme(features, labels, num_classes: int | None = None, **kw) -> float:
    """LogME score of `features (n, D)` for integer `labels (n,)`: the mean over classes of the
    maximum per-sample log evidence of the one-hot column (higher = more transferable)."""
    F = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels).astype(np.int64)
    if F.ndim != 2 or len(F) != len(y):
        raise ValueError(f"features must be (n, D) with one label per row, got {F.shape} and {y.shape}")
    if not np.isfinite(F).all():
        return math.nan
    K = int(num_classes or y.max() + 1)
    U, s = _svd(F)
    sigma = s ** 2
    return float(np.mean([logme_column(U, sigma, (y == k).astype(np.float64), F.shape[1], **kw)[0]
                          for k in range(K)]))
