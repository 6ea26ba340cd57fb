"""Class-imbalanced views of a data set (SPEC §7; Fang et al. 2021, Cao et al. 2019).

Profiles, ratio `R = n_max / n_min >= 1`, `n` samples for the largest class, `K` classes:

- `step` (Fang et al. 2021): the first `K_maj` classes keep `n`, the other `K − K_maj` get `n // R`.
- `exp` (long tail, Cao et al. 2019): `n_k = floor(n · R^(−k/(K−1)))`, k = 0..K−1, evaluated as
  `int(n · (1/R)^(k/(K−1)))` like the CIFAR-LT code, so CIFAR-10-LT/100-LT get their published
  sizes (12,406 and 10,847 training images at R = 100).

Majority / minority classes: for `step` the `K_maj` full classes and the reduced ones; for `exp` the
first `K_maj` classes (largest) and the rest. `K_maj` (`n_majority`) defaults to `K // 2`.

Many / medium / few (`exp`, for long-tail reporting): Liu et al. 2019 use > 100 and < 20 training
images, thresholds that only fit CIFAR/ImageNet-LT sizes. ncbench splits relative to the data
instead: the classes ranked by count (largest first, ties by class index) cut into thirds, sizes as
`numpy.array_split` gives them (the first `K mod 3` groups one class larger; K = 10 → 4/3/3).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ncbench.data.dataset import ImageDataset

PROFILES = ("step", "exp")
GROUPS = ("many", "medium", "few")


def _check_common(profile: str, n: int, K: int, ratio: float) -> None:
    if profile not in PROFILES:
        raise ValueError(f"unknown imbalance profile {profile!r}: use 'step' or 'exp'")
    if K < 2:
        raise ValueError(f"an imbalance profile needs K >= 2 classes, got K={K}")
    if n < 1:
        raise ValueError(f"n (samples of the largest class) must be >= 1, got {n}")
    if not ratio >= 1 or not np.isfinite(ratio):
        raise ValueError(f"imbalance ratio R = n_max/n_min must be a finite number >= 1, got {ratio}")


def _majority_count(n_majority: int | None, K: int) -> int:
    k_maj = K // 2 if n_majority is None else int(n_majority)
    if not 1 <= k_maj <= K - 1:
        raise ValueError(f"n_majority (the number of majority classes) must lie in [1, {K - 1}] for "
                         f"K={K} classes, got {n_majority}")
    return k_maj


def class_counts(profile: str, n: int, K: int, ratio: float, n_majority: int | None = None) -> list[int]:
    """Samples per class `[n_0, …, n_{K−1}]` of profile `step` or `exp` (module docstring).

    `n_majority` is the number of majority classes `K_maj` (default `K // 2`); it shapes the `step`
    profile and, for `exp`, only the majority/minority split (checked here all the same). Raises if a
    class would get no sample (`R` too large for `n`).
    """
    _check_common(profile, n, K, ratio)
    k_maj = _majority_count(n_majority, K)
    if profile == "step":
        counts = [n] * k_maj + [int(n // ratio)] * (K - k_maj)
    else:
        counts = [int(n * (1.0 / ratio) ** (k / (K - 1))) for k in range(K)]
    if min(counts) < 1:
        raise ValueError(f"profile {profile!r} with n={n}, R={ratio} leaves a class with "
                         f"{min(counts)} samples: use a larger n or a smaller ratio (R <= n)")
    return counts


def count_groups(counts: Sequence[int]) -> dict[str, list[int]]:
    """Many / medium / few classes: thirds of the classes ranked by count (largest first, ties by index)."""
    counts = np.asarray(counts)
    order = np.lexsort((np.arange(len(counts)), -counts))
    return {g: sorted(int(c) for c in part) for g, part in zip(GROUPS, np.array_split(order, 3))}


def _check_classes(classes: Sequence[int], K: int, what: str) -> list[int]:
    out = [int(c) for c in classes]
    if len(set(out)) != len(out):
        raise ValueError(f"{what} has repeated classes: {out}")
    bad = [c for c in out if not 0 <= c < K]
    if bad:
        raise ValueError(f"{what} must be class indices in [0, {K - 1}], got {bad}")
    return out


def imbalanced_view(dataset: ImageDataset, profile: str, ratio: float, n_majority: int | None = None,
                    seed: int = 0, minority_classes: Sequence[int] | None = None, *,
                    n: int | None = None) -> ImageDataset:
    """A subsample of `dataset` with the class sizes of `class_counts(profile, n, K, ratio, n_majority)`.

    `n` (largest class size) defaults to the smallest class count of `dataset`, so every class can
    supply it. Class `k` keeps its first `n_k` samples in a random order fixed by `seed`; the kept
    rows stay in their original order and keep their labels. One seed gives nested views: the view at
    a larger R is a subset of the view at a smaller R.

    `minority_classes` (step only) picks which classes are reduced (default: the last `K − K_maj`);
    it sets `K_maj = K − len(minority_classes)`. `info` records `imbalance_profile`,
    `imbalance_ratio`, `imbalance_seed`, `class_counts` (list, per class index),
    `majority_classes`, `minority_classes` and, for `exp`, `many_classes` / `medium_classes` /
    `few_classes`.
    """
    K = dataset.num_classes
    available = dataset.class_counts()
    if n is None:
        if int(available.min()) == 0:
            empty = (available == 0).nonzero().flatten().tolist()
            raise ValueError(f"{dataset.name}/{dataset.split} has no sample of classes {empty}: drop them "
                             f"with class_subset first, or pass n explicitly")
        n = int(available.min())
    if minority_classes is not None:
        if profile != "step":
            raise ValueError("minority_classes applies to the 'step' profile; 'exp' ranks the classes "
                             "by index (class 0 the largest): relabel with class_subset to reorder")
        minority = sorted(_check_classes(minority_classes, K, "minority_classes"))
        if n_majority is not None and int(n_majority) != K - len(minority):
            raise ValueError(f"n_majority={n_majority} contradicts minority_classes ({len(minority)} of "
                             f"K={K} classes): give one of the two")
        n_majority = K - len(minority)
    counts = class_counts(profile, int(n), K, ratio, n_majority)   # validates n_majority
    k_maj = _majority_count(n_majority, K)
    if minority_classes is None:
        majority, minority = list(range(k_maj)), list(range(k_maj, K))
    else:
        majority = [k for k in range(K) if k not in set(minority)]
    per_class = torch.empty(K, dtype=torch.long)                  # requested count of each class index
    per_class[torch.tensor(majority + minority)] = torch.tensor(counts)
    short = (per_class > available).nonzero().flatten().tolist()
    if short:
        detail = ", ".join(f"class {k} ({dataset.classes[k]}): {int(available[k])} < {int(per_class[k])}"
                           for k in short)
        raise ValueError(f"{dataset.name}/{dataset.split} has too few samples for profile {profile!r} "
                         f"with n={n}, R={ratio}: {detail}; pass a smaller n")
    # a seeded random key per sample, sorted within class: rank < n_k keeps the sample
    g = torch.Generator().manual_seed(int(seed))
    keys = torch.rand(len(dataset), generator=g, dtype=torch.float64)
    targets = dataset.targets
    order = torch.argsort(keys)
    order = order[torch.argsort(targets[order], stable=True)]      # by class, random within class
    starts = torch.cumsum(available, 0) - available
    rank = torch.empty_like(order)
    rank[order] = torch.arange(len(order)) - starts[targets[order]]
    keep = (rank < per_class[targets]).nonzero().flatten()
    info = {"imbalance_profile": profile, "imbalance_ratio": float(ratio), "imbalance_seed": int(seed),
            "class_counts": per_class.tolist(), "majority_classes": majority,
            "minority_classes": sorted(minority)}
    if profile == "exp":
        info.update({f"{g_}_classes": cls for g_, cls in count_groups(per_class.tolist()).items()})
    return dataset.subset(keep, **info)


def imbalance_key(profile: str, ratio: float, n_majority: int | None = None,
                  n: int | None = None) -> tuple[tuple[str, object], ...] | None:
    """The `TrajectoryConfig.imbalance` of an `imbalanced_view`: None for R = 1 without `n` (the train
    split as it is, so the run is shared with every task training the same recipe on that split).
    At R = 1 both profiles keep `n` images of every class (the same images), so the key names `step`
    for either: the balanced run is trained once for a step and an exp sweep."""
    if float(ratio) == 1.0 and n is None:
        return None
    if float(ratio) == 1.0:
        profile = "step"
    key = [("profile", profile), ("ratio", float(ratio))]
    key += [(k, v) for k, v in (("n_majority", n_majority), ("n", n)) if v is not None]
    return tuple(key)


def class_subset(dataset: ImageDataset, classes: Sequence[int], relabel: bool = True) -> ImageDataset:
    """The samples of `classes` (original indices). With `relabel`, class `classes[j]` becomes label `j`
    and `.classes` follows that order; without, labels and class names are unchanged. `info` records
    `class_subset` (the original indices). Take class subsets before `imbalanced_view`: the view's
    `info` lists classes by the indices it was built with."""
    K = dataset.num_classes
    chosen = _check_classes(classes, K, "classes")
    if not chosen:
        raise ValueError("classes is empty: name at least one class index")
    chosen_t = torch.tensor(chosen)
    keep = torch.isin(dataset.targets, chosen_t).nonzero().flatten()
    if not relabel:
        return dataset.subset(keep, class_subset=chosen)
    mapping = torch.full((K,), -1, dtype=torch.long)
    mapping[chosen_t] = torch.arange(len(chosen))
    return dataset.subset(keep, classes=[dataset.classes[c] for c in chosen], relabel=mapping,
                          class_subset=chosen)
