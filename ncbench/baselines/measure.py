"""The headline measurements of a run on baseline features (review: is the collapse, or the
accuracy, more than what the input or an untrained network already gives?).

For each baseline of `BASELINES` (raw pixels, the seeded random initialisation of the run's
architecture), on the run's own train and test splits (class subset, imbalance, random labels
applied as in training):

- `nc1`, `cdnv`, `ncc_acc`: SPEC §2 on the train split around its means (the same names as a
  trained run's final train metrics);
- `test_ncc_acc`: nearest-class-centre accuracy on the test split with the *train* class means;
- `test_nc1`, `test_cdnv`: SPEC §2 on the test split around its own means.
"""
from __future__ import annotations

import torch

from ncbench.baselines.random_init import random_init_features
from ncbench.baselines.raw_pixels import raw_pixel_features

BASELINES = ("raw_pixels", "random_init")


def baseline_features(baseline: str, data, model: str, seed: int, num_classes: int,
                      model_kwargs: dict | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """`(features, labels)` of a split under `baseline`."""
    if baseline == "raw_pixels":
        return raw_pixel_features(data)
    if baseline == "random_init":
        return random_init_features(model, data, seed, num_classes=num_classes, **dict(model_kwargs or {}))
    raise ValueError(f"unknown baseline {baseline!r}: one of {BASELINES}")


def nearest_mean_accuracy(train_features, train_labels, features, labels, num_classes: int) -> float:
    """Accuracy of `argmin_k ‖h − μ_k‖` with `μ_k` the train class means (float64; absent classes never win)."""
    tf = train_features.double()
    sums = torch.zeros(num_classes, tf.shape[1], dtype=torch.float64).index_add_(0, train_labels, tf)
    counts = torch.bincount(train_labels, minlength=num_classes).double()
    means = sums / counts.clamp_min(1).unsqueeze(1)
    d = torch.cdist(features.double(), means)
    d[:, counts == 0] = torch.inf
    return float((d.argmin(1) == labels).double().mean())


def collapse_baseline(train: tuple, test: tuple, num_classes: int) -> dict[str, float]:
    """The module docstring's metrics of one baseline's `(features, labels)` on train and test."""
    from ncbench.metrics import collapse_metrics

    (hf, hy), (tf, ty) = train, test
    m = collapse_metrics(hf.double(), hy, num_classes=num_classes)
    t = collapse_metrics(tf.double(), ty, num_classes=num_classes)
    return {"nc1": m["nc1"], "cdnv": m["cdnv"], "ncc_acc": m["ncc_acc"],
            "test_ncc_acc": nearest_mean_accuracy(hf, hy, tf, ty, num_classes),
            "test_nc1": t["nc1"], "test_cdnv": t["cdnv"]}
