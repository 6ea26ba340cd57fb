"""Transferability estimators against independent references: LogME against the exact Gaussian
marginal likelihood maximised by scipy, NCTI against scikit-learn's PCA + LDA (the authors'
pipeline), k-NN against scikit-learn, the probe against a scipy-minimised objective, Kendall τ /
weighted τ against scipy.stats."""
from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.optimize as so
import scipy.stats as st
import torch

from ncbench.transfer.knn import knn_accuracy, knn_loo_accuracy, knn_predict
from ncbench.transfer.linear_probe import fit_probe, standardise
from ncbench.transfer.logme import _svd, log_evidence, logme, logme_column
from ncbench.transfer.ncti import ncti_components, ncti_total
from ncbench.transfer.rank_correlation import kendall_tau, weighted_tau


def blobs(n=60, d=6, K=3, sep=2.0, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % K
    F = rng.normal(size=(n, d)) + sep * np.eye(K, d)[y]
    return F, y


# -- LogME ------------------------------------------------------------------------------------
def gaussian_evidence(F, col, a, b):
    """log N(col; 0, FFᵀ/α + I/β) / n: the marginal likelihood, no SVD, no fixed point."""
    n = len(col)
    return st.multivariate_normal(np.zeros(n), F @ F.T / a + np.eye(n) / b).logpdf(col) / n


def test_log_evidence_equals_the_gaussian_marginal_likelihood():
    F, y = blobs(30, 5)
    col = (y == 1).astype(float)
    for a, b in [(0.5, 2.0), (10.0, 0.3), (1.0, 1.0)]:
        assert log_evidence(F, col, a, b) == pytest.approx(gaussian_evidence(F, col, a, b), rel=1e-10)


@pytest.mark.parametrize("n,d", [(40, 6), (12, 20)])     # n > D and n < D (rank-deficient FᵀF)
def test_logme_fixed_point_is_the_maximum_evidence(n, d):
    F, y = blobs(n, d)
    U, s = _svd(F)
    for k in range(3):
        col = (y == k).astype(float)
        L, a, b = logme_column(U, s ** 2, col, d)
        res = so.minimize(lambda p, c=col: -gaussian_evidence(F, c, *np.exp(p)), [0.0, 0.0], method="Nelder-Mead",
                          options={"xatol": 1e-10, "fatol": 1e-14, "maxiter": 4000})
        assert L == pytest.approx(-res.fun, rel=1e-8, abs=1e-10)
        assert a == pytest.approx(math.exp(res.x[0]), rel=1e-4)
        assert b == pytest.approx(math.exp(res.x[1]), rel=1e-4)


def test_logme_is_the_mean_over_classes_and_prefers_separable_features():
    F, y = blobs(60, 6, sep=4.0)
    U, s = _svd(F)
    per_class = [logme_column(U, s ** 2, (y == k).astype(float), 6)[0] for k in range(3)]
    assert logme(F, y) == pytest.approx(np.mean(per_class), rel=1e-12)
    noise, _ = blobs(60, 6, sep=0.0)
    assert logme(F, y) > logme(noise, y)
    assert math.isnan(logme(np.full((4, 2), np.nan), np.array([0, 1, 0, 1])))


# -- NCTI -------------------------------------------------------------------------------------
def ncti_reference(H, y, K):
    """The authors' pipeline with scikit-learn: PCA(64), shrinkage LDA (svd solver when the
    shrinkage underflows to 1e-10), nuclear norms of the centred projection and class posteriors."""
    from sklearn.decomposition import PCA
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    pca = PCA(n_components=min(64, *H.shape))
    X = pca.fit_transform(H)
    s = max(math.exp(-pca.explained_variance_[:32].sum()), 1e-10)
    lda = LinearDiscriminantAnalysis(solver="svd") if s == 1e-10 else LinearDiscriminantAnalysis(solver="eigen", shrinkage=s)
    Z = lda.fit_transform(X, y)
    p = lda.predict_proba(X)
    return {"ncti_seli": np.linalg.norm(Z - Z.mean(0), ord="nuc"), "ncti_ncc": p[np.arange(len(y)), y].mean(),
            "ncti_vc": math.log(sum(np.linalg.norm(p[y == c], ord="nuc") for c in range(K)))}


@pytest.mark.parametrize("scale", [0.3, 3.0])       # shrinkage > 1e-10 (eigen solver) and underflowed (svd)
@pytest.mark.parametrize("d", [80, 20])             # PCA to 64 components, and d < 64
def test_ncti_components_match_the_sklearn_pipeline(scale, d):
    rng = np.random.default_rng(1)
    K, n = 4, 300
    y = np.arange(n) % K
    H = scale * (0.3 * rng.normal(size=(n, d)) + 0.5 * np.eye(K, d)[y])
    ours, ref = ncti_components(H, y, K), ncti_reference(H, y, K)
    for k in ref:
        assert ours[k] == pytest.approx(ref[k], rel=1e-6), k


def test_ncti_total_min_max_normalises_over_the_model_set():
    comps = [{"ncti_seli": 1.0, "ncti_ncc": 0.5, "ncti_vc": 2.0},
             {"ncti_seli": 3.0, "ncti_ncc": 0.9, "ncti_vc": 1.0},
             {"ncti_seli": 2.0, "ncti_ncc": 0.7, "ncti_vc": 3.0}]
    # by hand: seli -> 0, 1, .5 ; ncc -> 0, 1, .5 ; vc -> .5, 0, 1
    assert ncti_total(comps) == pytest.approx([-0.5, 2.0, 0.0])


# -- k-NN and probe ---------------------------------------------------------------------------
@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_knn_matches_sklearn(metric):
    from sklearn.neighbors import KNeighborsClassifier

    F, y = blobs(200, 8, K=4, sep=1.0)
    tr, te = slice(0, 150), slice(150, 200)
    ref = KNeighborsClassifier(n_neighbors=7, metric=metric, algorithm="brute").fit(F[tr], y[tr]).predict(F[te])
    ours = knn_predict(torch.tensor(F[tr]), torch.tensor(y[tr]), torch.tensor(F[te]), k=7, metric=metric, chunk=16)
    assert (ours.numpy() == ref).all()
    assert knn_accuracy(torch.tensor(F[tr]), torch.tensor(y[tr]), torch.tensor(F[te]), torch.tensor(y[te]),
                        k=7, metric=metric) == pytest.approx((ref == y[te]).mean())


def test_knn_leave_one_out_excludes_the_sample_itself():
    from sklearn.neighbors import KNeighborsClassifier

    F, y = blobs(90, 5, K=3, sep=1.0)
    expected = np.mean([KNeighborsClassifier(n_neighbors=5, algorithm="brute")
                        .fit(np.delete(F, i, 0), np.delete(y, i)).predict(F[i:i + 1])[0] == y[i]
                        for i in range(len(y))])
    got = knn_loo_accuracy(torch.tensor(F), torch.tensor(y), k=5, metric="euclidean", chunk=32)
    assert got == pytest.approx(expected)


def test_probe_solves_the_documented_objective():
    F, y = blobs(120, 5, K=3, sep=1.0)
    X = standardise(F)[0]
    l2, n, K, d = 1e-2, len(y), 3, 5
    clf = fit_probe(X, y, l2=l2)

    def objective(p):
        W, b = p[:K * d].reshape(K, d), p[K * d:]
        z = X @ W.T + b
        return np.mean(np.logaddexp.reduce(z, axis=1) - z[np.arange(n), y]) + 0.5 * l2 * (W ** 2).sum()

    res = so.minimize(objective, np.zeros(K * d + K), method="BFGS", options={"gtol": 1e-10})
    W, b = res.x[:K * d].reshape(K, d), res.x[K * d:]
    ref = np.exp(X @ W.T + b)
    ref /= ref.sum(1, keepdims=True)
    assert np.abs(clf.predict_proba(X) - ref).max() < 1e-4


# -- rank correlation -------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(6))
def test_kendall_and_weighted_tau_match_scipy(seed):
    rng = np.random.default_rng(seed)
    n = [3, 5, 8, 11, 16, 25][seed]
    x = rng.normal(size=n)
    y = x + rng.normal(size=n)
    if seed % 2:                                        # with ties in both
        x, y = np.round(x), np.round(y)
    assert kendall_tau(x, y) == pytest.approx(st.kendalltau(x, y).statistic, abs=1e-12)
    assert weighted_tau(x, y) == pytest.approx(st.weightedtau(x, y).statistic, abs=1e-12)


def test_tau_degenerate_cases():
    assert kendall_tau([1, 2, 3], [3, 2, 1]) == -1.0
    assert weighted_tau([1, 2, 3], [1, 2, 3]) == pytest.approx(1.0)
    assert math.isnan(kendall_tau([1, 1, 1], [1, 2, 3]))
    assert math.isnan(weighted_tau([1.0], [2.0]))
    assert kendall_tau([1, 2, np.nan, 4], [1, 2, 3, 4]) == 1.0      # NaN pairs dropped
    with pytest.raises(ValueError, match="same length"):
        kendall_tau([1, 2], [1, 2, 3])


def test_ncti_ignores_dead_feature_dimensions():
    """Rank-deficient features (dead units appended) give the NCTI scores of the live ones,
    instead of a singular LDA covariance."""
    rng = np.random.default_rng(0)
    y = np.arange(200) % 4
    live = rng.normal(size=(200, 3)) + np.eye(4, 3)[y]
    padded = np.hstack([live, np.zeros((200, 97))])
    a, b = ncti_components(live, y, 4), ncti_components(padded, y, 4)
    for k in a:
        assert b[k] == pytest.approx(a[k], rel=1e-8), k
