"""The neural-collapse metric engine (SPEC §2–§3): one streaming implementation for every task."""
from __future__ import annotations

import torch

from ncbench.metrics.collapse import (
    SPEC_METRICS,
    CollapseResult,
    CollapseStats,
    NearestCentrePass,
    simplex_geometry,
)
from ncbench.metrics.heldout import HeldoutStats, test_collapse
from ncbench.metrics.minority import imbalance_accuracies, minority_cosine


def collapse_metrics(features: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor | None = None,
                     bias: torch.Tensor | None = None, num_classes: int | None = None, *,
                     global_mean: str = "class", pinv_tol: float = 1e-10, logits: torch.Tensor | None = None,
                     batch_size: int = 8192) -> dict[str, float]:
    """SPEC §2 metrics of features `(N, d)` with labels `(N,)`; `weight (K, d)`, `bias (K,)` the classifier.

    `num_classes` defaults to `weight.shape[0]`, else `labels.max() + 1`. Streams `batch_size` rows at a
    time through `CollapseStats` (two passes), so memory stays O(K·d + d²).
    """
    if num_classes is None:
        num_classes = weight.shape[0] if weight is not None else int(labels.max()) + 1
    stats = CollapseStats(num_classes, features.shape[1] if features.ndim == 2 else None, features.device)
    for s in range(0, len(labels), batch_size):
        stats.update(features[s:s + batch_size], labels[s:s + batch_size])
    if stats.n == 0:
        return stats.compute().metrics
    second = stats.second_pass(weight, bias)
    for s in range(0, len(labels), batch_size):
        second.update(features[s:s + batch_size], labels[s:s + batch_size],
                      None if logits is None else logits[s:s + batch_size])
    return stats.compute(second, weight, bias, global_mean=global_mean, pinv_tol=pinv_tol).metrics


__all__ = ["SPEC_METRICS", "CollapseResult", "CollapseStats", "HeldoutStats", "NearestCentrePass",
           "collapse_metrics", "imbalance_accuracies", "minority_cosine", "simplex_geometry",
           "test_collapse"]
