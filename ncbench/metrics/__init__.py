"""The neural-collapse metric engine (SPEC §2–§3): one streaming implementation for every task."""
from __future__ import annotations

import math

import torch

from ncbench.metrics.collapse import (
    SPEC_METRICS,
    CollapseMetrics,
    CollapseResult,
    CollapseStats,
    NearestCentrePass,
    check_batch,
    simplex_geometry,
)
from ncbench.metrics.heldout import HeldoutStats, test_collapse
from ncbench.metrics.minority import ClassGroupStats, imbalance_accuracies, minority_cosine
from ncbench.metrics.statistic import Reduction, Statistic, Totals


def _num_classes(labels: torch.Tensor, weight, logits, num_classes: int | None) -> int:
    """K from `num_classes`, else `weight` rows, else `logits` columns, else `labels.max() + 1`;
    every source given must agree (ValueError naming them)."""
    sources = {}
    if num_classes is not None:
        if isinstance(num_classes, bool) or not isinstance(num_classes, int):
            raise ValueError(f"num_classes must be an int, got {num_classes!r}")
        sources["num_classes"] = num_classes
    if weight is not None:
        if not isinstance(weight, torch.Tensor) or weight.ndim != 2:
            raise ValueError(f"weight must be a 2-D (num_classes, d) tensor, got "
                             f"{tuple(weight.shape) if isinstance(weight, torch.Tensor) else type(weight).__name__}")
        sources["weight.shape[0]"] = int(weight.shape[0])
    if logits is not None:
        if not isinstance(logits, torch.Tensor) or logits.ndim != 2:
            raise ValueError(f"logits must be a 2-D (N, num_classes) tensor, got "
                             f"{tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__}")
        sources["logits.shape[1]"] = int(logits.shape[1])
    if len(set(sources.values())) > 1:
        raise ValueError("the number of classes disagrees: " + ", ".join(f"{k} = {v}" for k, v in sources.items()))
    if sources:
        return next(iter(sources.values()))
    if labels.numel() == 0:
        raise ValueError("cannot infer num_classes from empty labels: pass num_classes=")
    return int(labels.max()) + 1


def _check_values(features: torch.Tensor, weight, pinv_tol) -> None:
    """Inputs that no metric can mean anything for: complex numbers, no feature dimension, a pinv
    tolerance that is not a finite number in [0, 1)."""
    for name, t in (("features", features), ("weight", weight)):
        if t is not None and t.is_complex():
            raise ValueError(f"{name} {'are' if name == 'features' else 'is'} complex ({t.dtype}): collapse metrics are defined on real features; "
                             f"pass .real, .abs() or a real embedding of them")
    if features.dim() == 2 and features.shape[1] == 0:
        raise ValueError(f"features have no dimension (shape {tuple(features.shape)}): need d >= 1 feature columns")
    if isinstance(pinv_tol, bool) or not isinstance(pinv_tol, (int, float)) or not 0.0 <= pinv_tol < 1.0:
        raise ValueError(f"pinv_tol must be a number in [0, 1) (eigenvalues of Σ_B above tol·λ_max are kept), "
                         f"got {pinv_tol!r}")


#: Largest (and smallest) feature magnitude used as is: beyond 2^±400 (~1e±120) the squared norms of a
#: batch overflow (underflow) float64.
SAFE_MAGNITUDE = 2.0 ** 400


def _rescaled(features: torch.Tensor, bias):
    """Features of magnitude beyond `SAFE_MAGNITUDE` (or below its inverse) times the power of two
    2^-e that brings the largest to [0.5, 1): exact in floating point, and every SPEC §2 metric is
    invariant under h -> s·h (ratios of traces, cosines, normalised Gram matrices, nearest centres; the
    bias scaled alike keeps argmax(W h + b)). Other inputs unchanged (no copy)."""
    if not features.is_floating_point() or features.numel() == 0:
        return features, bias
    lo, hi = (float(v) for v in torch.aminmax(features))   # one reduction, no copy of the features
    top = max(-lo, hi)
    if not (math.isfinite(lo) and math.isfinite(hi)):  # a non-finite value: the metrics are NaN with that reason
        return features, bias
    if top == 0.0 or 1.0 / SAFE_MAGNITUDE <= top <= SAFE_MAGNITUDE:
        return features, bias
    scale = 2.0 ** -math.frexp(top)[1]
    features = features.to(torch.float64) * scale
    return features, None if bias is None else bias.to(torch.float64) * scale


def collapse_metrics(features: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor | None = None,
                     bias: torch.Tensor | None = None, num_classes: int | None = None, *,
                     global_mean: str = "class", pinv_tol: float = 1e-10, logits: torch.Tensor | None = None,
                     batch_size: int = 8192) -> CollapseMetrics:
    """SPEC §2 metrics of features `(N, d)` with labels `(N,)`; `weight (K, d)`, `bias (K,)` the classifier.

    `num_classes` defaults to `weight.shape[0]`, else `logits.shape[1]`, else `labels.max() + 1` (all
    that are given must agree). Streams `batch_size` rows at a time through `CollapseStats` (two
    passes), so memory stays O(K·d + d²). Returns a `CollapseMetrics`: a plain dict of the metrics
    whose `.reasons` say why a value is NaN or inf and `.diagnostics` give the counts behind them.
    Any mismatch of shapes (rows of features, labels and logits; columns of weight, bias, logits) is
    a ValueError naming the argument and the shapes.
    """
    not_tensors = [n for n, t in (("features", features), ("labels", labels)) if not isinstance(t, torch.Tensor)]
    if not_tensors:
        raise ValueError(f"{' and '.join(not_tensors)} must be torch.Tensor(s), got "
                         f"{type(features).__name__}, {type(labels).__name__}")
    if bias is not None and weight is None and logits is None:
        raise ValueError("bias given without weight: the prediction argmax(W h + b) needs weight=")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    _check_values(features, weight, pinv_tol)
    num_classes = _num_classes(labels, weight, logits, num_classes)
    check_batch(features, labels, num_classes, None, logits)   # whole input: rows, label range, logits
    features, bias = _rescaled(features, bias)
    if weight is not None and weight.shape[1] != features.shape[1]:
        raise ValueError(f"weight must be (num_classes, d) = ({num_classes}, {features.shape[1]}): features "
                         f"{tuple(features.shape)}, weight {tuple(weight.shape)}")
    stats = CollapseStats(num_classes, features.shape[1], features.device)
    for s in range(0, len(labels), batch_size):
        stats.update(features[s:s + batch_size], labels[s:s + batch_size])
    if stats.n == 0:
        return stats.compute().as_metrics()
    second = stats.second_pass(weight, bias)
    for s in range(0, len(labels), batch_size):
        second.update(features[s:s + batch_size], labels[s:s + batch_size],
                      None if logits is None else logits[s:s + batch_size])
    return stats.compute(second, weight, bias, global_mean=global_mean, pinv_tol=pinv_tol).as_metrics()


__all__ = ["SPEC_METRICS", "ClassGroupStats", "CollapseMetrics", "CollapseResult", "CollapseStats", "HeldoutStats",
           "NearestCentrePass", "Reduction", "Statistic", "Totals", "collapse_metrics", "imbalance_accuracies", "minority_cosine", "simplex_geometry",
           "test_collapse"]
