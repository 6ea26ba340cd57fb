"""Minimal NCC-depth of per-layer statistics (Galanti et al. 2022; Ben-Shaul & Dekel 2022; SPEC §5).

The smallest layer ℓ whose NCC error `1 − ncc_acc` is ≤ ε, on train and on test; the test depth
matched to the last layer (the smallest ℓ whose test NCC accuracy is ≥ (1 − ε) × the last layer's);
relative depths `ℓ / (L − 1)`. Read from a `LayerStatistics` by the `ncc_depth` and
`frozen_transfer` kinds, so it lives beside `layer_statistics`, not in either kind.
"""
from __future__ import annotations

import math

from ncbench.training.layer_statistics import LayerStatistics


def minimal_depth(errors, epsilon: float) -> float:
    """Smallest layer index whose NCC error is ≤ ε (NaN errors never qualify); NaN when none does."""
    for i, e in enumerate(errors):
        if e is not None and not math.isnan(e) and e <= epsilon:
            return float(i)
    return math.nan


def depths(stats: LayerStatistics, epsilon: float) -> dict[str, float]:
    """Minimal NCC-depth on train and test errors, and the test NCC accuracy at the train depth."""
    train_err = [1.0 - a for a in stats.train.metrics["ncc_acc"]]
    d = minimal_depth(train_err, epsilon)
    out = {"train": d}
    if stats.test is not None:
        acc = stats.test.metrics["ncc_acc"]
        out["test"] = minimal_depth([1.0 - a for a in acc], epsilon)
        out["test_ncc_acc_at_depth"] = math.nan if math.isnan(d) else acc[int(d)]
        out["test_matched"] = minimal_depth([acc[-1] * (1.0 - epsilon) - a for a in acc], 0.0)
    return out


def relative_depth(depth: float, n_layers: int) -> float:
    """`depth / (L − 1)`: 0 at the first layer, 1 at the last (NaN stays NaN; one layer: 0)."""
    return depth if math.isnan(depth) else (depth / (n_layers - 1) if n_layers > 1 else 0.0)
