"""Linear-probe accuracy: multinomial logistic regression on frozen features.

Features are standardised with the training split's per-dimension mean and std (constant
dimensions left at 0), then `min_W,b  mean_i CE(W h_i + b, y_i) + ½·l2·‖W‖²` is solved by
scikit-learn's `LogisticRegression(solver="lbfgs")` (multinomial loss, standard L2, `C = 1/(l2·n)`,
to gradient tolerance 1e-6, at most `max_iter` iterations). The objective is strictly convex, so
the accuracy does not depend on the solver beyond its tolerance.
"""
from __future__ import annotations

import warnings

import numpy as np


def standardise(train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    mu, sd = train.mean(0), train.std(0)
    sd = np.where(sd > 0, sd, 1.0)
    return [(x - mu) / sd for x in (train, *others)]


def fit_probe(train, train_labels, *, l2: float = 1e-3, max_iter: int = 1000):
    """The fitted scikit-learn estimator on standardised `train` features (and the scaler inputs)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    X = np.asarray(train, dtype=np.float64)
    if l2 <= 0:
        raise ValueError(f"the probe's l2 penalty must be > 0, got {l2}")
    clf = LogisticRegression(C=1.0 / (l2 * len(X)), solver="lbfgs", max_iter=max_iter, tol=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, np.asarray(train_labels))
    return clf


def probe_accuracy(train, train_labels, test, test_labels, **kw) -> float:
    """Test accuracy of the probe fitted on `train` (standardised with the train statistics)."""
    tr, te = standardise(np.asarray(train, np.float64), np.asarray(test, np.float64))
    clf = fit_probe(tr, train_labels, **kw)
    return float((clf.predict(te) == np.asarray(test_labels)).mean())
