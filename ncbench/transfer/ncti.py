"""NCTI, the neural-collapse transferability index (Wang, Luo, Zheng, Huang, Baktashmotlagh,
"How Far Pre-trained Models Are from Neural Collapse on the Target Dataset Informs their
Transferability", ICCV 2023, §3).

Per model m on the target training features `H (n, d)` with labels `y`:

- the features are first reduced by PCA to `p = min(64, n, d)` components and projected by a
  shrinkage LDA (shared covariance `Σ = (1−s)Σ_W + s·tr(Σ_W)/p·I`, `s = max(exp(−Σ of the top 32
  PCA variances), 1e-10)`), as in the authors' public code;
- **S_seli** (SELI geometry): the nuclear norm `‖Z − z̄‖_*` of the centred LDA projection `Z`
  (its K−1 discriminant coordinates): the larger, the closer to a full-rank simplex-like geometry;
- **S_ncc** (nearest-centre classifier): `(1/n) Σ_i p(y_i | h_i)` with the Gaussian posterior
  `log p(c|h) = −½(h−μ_c)ᵀΣ⁻¹(h−μ_c) + log π_c + const` (softmax over classes);
- **S_vc** (within-class variability): `log Σ_c ‖P_c‖_*`, `P_c` the posterior rows of class c
  (the paper's class-wise nuclear norm, in its code's log form); larger = less collapsed.

Across a set of models the index is `S_total = S̄_seli + S̄_ncc − S̄_vc` with each score min-max
normalised over the models (`ncti_total`): a per-model number exists only relative to a model set.
"""
from __future__ import annotations

import math

import numpy as np

PCA_COMPONENTS = 64
SHRINKAGE_COMPONENTS = 32
MIN_SHRINKAGE = 1e-10


def pca_reduce(H: np.ndarray, p: int) -> tuple[np.ndarray, np.ndarray]:
    """Centred PCA scores `(n, p)` and the component variances (ddof=1, as scikit-learn's PCA).

    Components with a singular value below `1e-7` of the largest are dropped (rank-deficient
    features, e.g. dead units: the LDA covariance would be singular); scikit-learn keeps them."""
    X = H - H.mean(0)
    _, s, vt = np.linalg.svd(X, full_matrices=False)
    p = min(p, int((s > s.max(initial=0.0) * 1e-7).sum()))
    return X @ vt[:p].T, s[:p] ** 2 / max(len(H) - 1, 1)


def shrinkage_lda(X: np.ndarray, y: np.ndarray, K: int, shrinkage: float):
    """`(Z, posterior)`: LDA projection `(n, min(K−1, p))` and class posteriors `(n, K)`.

    Σ_W = Σ_c π_c Cov_c (biased), shrunk to `(1−s)Σ_W + s·tr(Σ_W)/p·I`; the directions solve
    `Σ_B' v = λ Σ v` with `Σ_B' = St(shrunk) − Σ` (scikit-learn's `eigen` solver), normalised
    `vᵀΣv = 1`, ordered by λ.
    """
    n, p = X.shape
    counts = np.bincount(y, minlength=K).astype(np.float64)
    priors = counts / n
    means = np.stack([X[y == c].mean(0) for c in range(K)])
    Xc = X - means[y]
    sw = (Xc.T @ Xc) / n              # = Σ_c π_c Cov_c with biased class covariances

    def shrink(C):
        return (1 - shrinkage) * C + shrinkage * np.trace(C) / p * np.eye(p)

    sigma = shrink(sw)
    Xt = X - X.mean(0)
    st = shrink(Xt.T @ Xt / n)
    # generalized symmetric eigenproblem via the Cholesky factor of Σ
    L = np.linalg.cholesky(sigma)
    Li = np.linalg.inv(L)
    lam, W = np.linalg.eigh(Li @ (st - sigma) @ Li.T)
    V = Li.T @ W[:, np.argsort(lam)[::-1]]
    Z = X @ V[:, :min(K - 1, p)]
    coef = means @ V @ V.T                               # = means Σ⁻¹
    intercept = -0.5 * np.einsum("kp,kp->k", means, coef) + np.log(priors)
    scores = X @ coef.T + intercept
    scores -= scores.max(1, keepdims=True)
    post = np.exp(scores)
    post /= post.sum(1, keepdims=True)
    return Z, post


def ncti_components(features, labels, num_classes: int | None = None) -> dict[str, float]:
    """`{"ncti_seli", "ncti_ncc", "ncti_vc"}` of one model's target features (see the module)."""
    H = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels).astype(np.int64)
    K = int(num_classes or y.max() + 1)
    nan = {"ncti_seli": math.nan, "ncti_ncc": math.nan, "ncti_vc": math.nan}
    if not np.isfinite(H).all() or len(np.unique(y)) < 2:
        return nan
    if np.bincount(y, minlength=K).min() == 0:
        raise ValueError("NCTI needs at least one sample of every class")
    X, var = pca_reduce(H, PCA_COMPONENTS)
    s = max(math.exp(-float(var[:SHRINKAGE_COMPONENTS].sum())), MIN_SHRINKAGE)
    Z, post = shrinkage_lda(X, y, K, s)
    seli = float(np.linalg.norm(Z - Z.mean(0), ord="nuc"))
    ncc = float(post[np.arange(len(y)), y].mean())
    vc = math.log(sum(float(np.linalg.norm(post[y == c], ord="nuc")) for c in range(K)))
    return {"ncti_seli": seli, "ncti_ncc": ncc, "ncti_vc": vc}


def ncti_total(components: list[dict[str, float]]) -> list[float]:
    """`S̄_seli + S̄_ncc − S̄_vc` per model, each score min-max normalised over the model set
    (a constant score contributes 0)."""
    def norm(key):
        v = np.array([c[key] for c in components], dtype=np.float64)
        span = np.nanmax(v) - np.nanmin(v) if len(v) else 0.0
        return np.zeros_like(v) if not span > 0 else (v - np.nanmin(v)) / span

    return list(norm("ncti_seli") + norm("ncti_ncc") - norm("ncti_vc"))
