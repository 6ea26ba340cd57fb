"""A fixed per-class train/test split of a labelled set (the embedded sets and image folders without one)."""
from __future__ import annotations

import numpy as np

TRAIN_FRACTION = 0.8
SPLIT_SEED = 0


def stratified_split(labels: np.ndarray, train_fraction: float = TRAIN_FRACTION,
                     seed: int = SPLIT_SEED) -> dict[str, np.ndarray]:
    """Indices of a per-class `train_fraction` / rest split, fixed by `seed` (sorted)."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for k in np.unique(labels):
        idx = np.flatnonzero(labels == k)
        idx = idx[rng.permutation(len(idx))]
        cut = round(train_fraction * len(idx))
        train.append(idx[:cut])
        test.append(idx[cut:])
    return {"train": np.sort(np.concatenate(train)), "test": np.sort(np.concatenate(test))}
