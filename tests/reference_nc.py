"""Independent float64 reference for the SPEC §2–§3 collapse metrics (tests only).

Stores every feature and applies the SPEC definitions literally, in two passes, with numpy:
class means by explicit sums, Σ_W = (1/N) Σ_i (h_i−μ_{y_i})(h_i−μ_{y_i})ᵀ, Σ_B = (1/K) Σ_k m_k m_kᵀ,
Σ_B⁺ from `np.linalg.eigh(Σ_B)` (λ > tol·λ_max, at most min(K−1, d) pairs), CDNV from the
differences of the means, NCC from explicit distances ‖h − μ_k‖². Deliberately slow and simple; it
shares no code with `ncbench.metrics`.

Conventions mirrored from the engine's documented behaviour: classes without a sample are left out
(K is then the number of classes present); any non-finite feature makes every metric NaN.
"""
from __future__ import annotations

import numpy as np

METRICS = ("nc1", "nc1_quotient", "equinorm_h", "equinorm_w", "equiangular_h", "equiangular_w",
           "etf_error_h", "etf_error_w", "nc3", "nc4", "ncc_acc", "cdnv")
TIE_RTOL = 1e-9   # distance / logit gaps below this (relative) are counted as ties


def _f64(a):
    return None if a is None else np.asarray(a, dtype=np.float64)


def class_means(H: np.ndarray, y: np.ndarray, K: int) -> tuple[np.ndarray, np.ndarray]:
    """(counts (K,), means (K, d)) by explicit per-class sums; absent classes get a NaN mean."""
    counts = np.zeros(K, dtype=np.int64)
    means = np.full((K, H.shape[1]), np.nan)
    for k in range(K):
        rows = H[y == k]
        counts[k] = len(rows)
        if len(rows):
            means[k] = rows.sum(axis=0) / len(rows)
    return counts, means


def pinv_between(Mt: np.ndarray, tol: float) -> tuple[np.ndarray, np.ndarray]:
    """Σ_B = (1/K) Σ_k m_k m_kᵀ and its pseudo-inverse from eigh (kept eigenvalues returned too)."""
    K, d = Mt.shape
    sigma_b = sum(np.outer(m, m) for m in Mt) / K
    lam, vec = np.linalg.eigh(sigma_b)
    order = np.argsort(lam)[::-1]
    lam, vec = lam[order], vec[:, order]
    lam_max = lam[0]
    keep = lam > tol * lam_max if lam_max > 0 else np.zeros_like(lam, dtype=bool)
    keep[min(K - 1, d):] = False
    v, lk = vec[:, keep], lam[keep]
    return v @ np.diag(1.0 / lk) @ v.T, lk


def geometry(rows: np.ndarray) -> tuple[float, float, float]:
    """(equinorm, equiangular, etf_error) of the K rows."""
    K = rows.shape[0]
    norms = np.sqrt((rows ** 2).sum(axis=1))
    equinorm = norms.std(ddof=1) / norms.mean()
    terms = []
    for i in range(K):
        for j in range(K):
            if i != j:
                cos = rows[i] @ rows[j] / (norms[i] * norms[j])
                terms.append(abs(cos + 1.0 / (K - 1)))
    G = rows @ rows.T
    target = (np.eye(K) - np.ones((K, K)) / K) / np.sqrt(K - 1)
    etf = np.linalg.norm(G / np.linalg.norm(G) - target)
    return float(equinorm), float(np.mean(terms)), float(etf)


def sq_distances(H: np.ndarray, centres: np.ndarray, chunk: int = 512) -> np.ndarray:
    """‖h_i − c_k‖² from the differences (no Gram shortcut), in row chunks to bound memory."""
    out = np.empty((H.shape[0], centres.shape[0]))
    for s in range(0, H.shape[0], chunk):
        diff = H[s:s + chunk, None, :] - centres[None, :, :]
        out[s:s + chunk] = (diff * diff).sum(axis=2)
    return out


def _argmin_with_ties(d2: np.ndarray) -> tuple[np.ndarray, int]:
    """Row argmin and the number of rows whose best two values are within TIE_RTOL (ambiguous)."""
    arg = d2.argmin(axis=1)
    if d2.shape[1] < 2:
        return arg, 0
    part = np.sort(d2, axis=1)[:, :2]
    scale = np.abs(part).max(axis=1) + 1e-300
    return arg, int(((part[:, 1] - part[:, 0]) <= TIE_RTOL * scale).sum())


def predictions(H, K, W=None, b=None, logits=None) -> tuple[np.ndarray | None, int]:
    """Network prediction argmax(logits) or argmax(W h + b) over all K classes, with tie count."""
    if logits is not None:
        z = _f64(logits)
    elif W is not None:
        z = H @ _f64(W).T + (0.0 if b is None else _f64(b))
    else:
        return None, 0
    arg, ties = _argmin_with_ties(-z)
    return arg, ties


def cdnv_matrix(var: np.ndarray, means: np.ndarray) -> np.ndarray:
    """V(i,j) = (σ_i² + σ_j²) / (2‖μ_i − μ_j‖²), diagonal 0, inf for coincident means."""
    K = len(var)
    V = np.zeros((K, K))
    for i in range(K):
        for j in range(K):
            if i != j:
                d2 = ((means[i] - means[j]) ** 2).sum()
                V[i, j] = np.inf if d2 == 0 else (var[i] + var[j]) / (2.0 * d2)
    return V


def min_relative_sq_distance(Mt: np.ndarray) -> float:
    """min over pairs of ‖m_i − m_j‖² / (‖m_i‖² + ‖m_j‖²): ~1e-30 means "equal up to rounding"."""
    K = len(Mt)
    rel = [((Mt[i] - Mt[j]) ** 2).sum() / ((Mt[i] ** 2).sum() + (Mt[j] ** 2).sum() + 1e-300)
           for i in range(K) for j in range(i + 1, K)]
    return float(min(rel))


def collapse_reference(H, y, K: int, W=None, b=None, logits=None, *, global_mean: str = "class",
                       tol: float = 1e-10) -> dict:
    """All SPEC §2 metrics plus extras (`trace_sw`, `trace_sb`, `coincident_pairs`, `ncc_ties`,
    `pred_ties`, `cdnv_matrix`, `present`, `cond_kept`, `min_d2_rel`)."""
    H, y = _f64(H), np.asarray(y, dtype=np.int64)
    nan = {m: np.nan for m in METRICS}
    if not np.isfinite(H).all():
        return nan
    counts, means = class_means(H, y, K)
    present = counts > 0
    Kp = int(present.sum())
    if Kp < 2:
        return nan
    mu, n = means[present], counts[present]
    N = n.sum()
    mu_g = mu.mean(axis=0) if global_mean == "class" else H.sum(axis=0) / N
    Mt = mu - mu_g
    D = H - means[y]
    sigma_w = sum(np.outer(r, r) for r in D) / N if len(D) < 2000 else D.T @ D / N
    sb_pinv, lam_kept = pinv_between(Mt, tol)
    out = {"nc1": float(np.trace(sigma_w @ sb_pinv)) / Kp}
    out["sigma_b_condition"] = float(lam_kept.max() / lam_kept.min()) if len(lam_kept) else np.inf
    tr_sw, tr_sb = float(np.trace(sigma_w)), float((Mt ** 2).sum()) / Kp
    out["nc1_quotient"] = tr_sw / tr_sb if tr_sb > 0 else np.inf
    out["equinorm_h"], out["equiangular_h"], out["etf_error_h"] = geometry(Mt)
    if W is not None:
        Wp = _f64(W)[present]
        out["equinorm_w"], out["equiangular_w"], out["etf_error_w"] = geometry(Wp)
        out["nc3"] = float(((Wp / np.linalg.norm(Wp) - Mt / np.linalg.norm(Mt)) ** 2).sum())
    else:
        out.update(equinorm_w=np.nan, equiangular_w=np.nan, etf_error_w=np.nan, nc3=np.nan)
    cls = np.flatnonzero(present)
    arg, ncc_ties = _argmin_with_ties(sq_distances(H, mu))
    ncc = cls[arg]
    out["ncc_acc"] = float((ncc == y).mean())
    pred, pred_ties = predictions(H, K, W, b, logits)
    out["nc4"] = np.nan if pred is None else float((pred != ncc).mean())
    var = np.array([((H[y == k] - means[k]) ** 2).sum() / counts[k] for k in cls])
    V = cdnv_matrix(var, mu)
    iu = np.triu_indices(Kp, 1)
    out["cdnv"] = float(V[iu].mean())
    out.update(trace_sw=tr_sw, trace_sb=tr_sb, coincident_pairs=int(np.isinf(V[iu]).sum()),
               ncc_ties=ncc_ties, pred_ties=pred_ties, cdnv_matrix=V, present=present,
               cond_kept=float(lam_kept.max() / lam_kept.min()) if len(lam_kept) else 1.0,
               min_d2_rel=min_relative_sq_distance(Mt))
    return out


def heldout_reference(H_train, y_train, K: int, H_test, y_test, assign: str = "label", W=None, b=None,
                      logits=None, *, global_mean: str = "class", tol: float = 1e-10) -> dict:
    """SPEC §3 test collapse around the train means: `nc1`, `trace_sw`, `cdnv` (+ `ties`, `min_d2_rel`).

    `assign`: "label" (strong), "prediction" (argmax of logits or W h + b), "ncc" (nearest train
    mean). CDNV averages the pairs of train classes that both have test points attached.
    """
    Htr, ytr = _f64(H_train), np.asarray(y_train, dtype=np.int64)
    Hte, yte = _f64(H_test), np.asarray(y_test, dtype=np.int64)
    nan = {"nc1": np.nan, "trace_sw": np.nan, "cdnv": np.nan, "ties": 0}
    if not np.isfinite(Hte).all() or len(Hte) == 0:
        return nan
    counts, means = class_means(Htr, ytr, K)
    present = counts > 0
    Kp = int(present.sum())
    cls = np.flatnonzero(present)
    mu = means[present]
    mu_g = mu.mean(axis=0) if global_mean == "class" else Htr.sum(axis=0) / counts.sum()
    Mt = mu - mu_g
    ties = 0
    if assign == "label":
        a = yte
    elif assign == "ncc":
        arg, ties = _argmin_with_ties(sq_distances(Hte, mu))
        a = cls[arg]
    elif assign == "prediction":
        a, ties = predictions(Hte, K, W, b, logits)
    else:
        raise ValueError(assign)
    if not present[a].all():
        raise ValueError("reference: a test point is attached to a class without train samples")
    D = Hte - means[a]
    N = len(Hte)
    sigma_w = sum(np.outer(r, r) for r in D) / N
    sb_pinv, _ = pinv_between(Mt, tol)
    nc1 = float(np.trace(sigma_w @ sb_pinv)) / Kp
    var = np.full(Kp, np.nan)
    for i, k in enumerate(cls):
        rows = D[a == k]
        if len(rows):
            var[i] = (rows ** 2).sum() / len(rows)
    V = cdnv_matrix(var, mu)
    iu = np.triu_indices(Kp, 1)
    pairs = V[iu]
    pairs = pairs[~np.isnan(pairs)]
    return {"nc1": nc1, "trace_sw": float(np.trace(sigma_w)),
            "cdnv": float(pairs.mean()) if len(pairs) else np.nan, "ties": ties,
            "min_d2_rel": min_relative_sq_distance(Mt)}
