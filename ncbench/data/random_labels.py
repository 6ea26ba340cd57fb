"""Randomly relabelled training data (Zhang et al. 2017; review §4.1.1; Zhu et al. 2021; Galanti 2022).

The labels of a split are permuted once, `y'_i = y_{π(i)}` for a permutation π drawn from
`torch.Generator().manual_seed(seed)`: a pure function of the seed and the split size, so the same
seed gives the same labels on every machine and every resume. A permutation of the label vector keeps
every class's count (the view is exactly as balanced, or imbalanced, as its source) while breaking
the link between an image and its class: a network can still fit (memorise) the train split, and its
train features can still collapse, but nothing it learns can carry to the test split, whose labels
are left as they are.
"""
from __future__ import annotations

import torch

from ncbench.data.dataset import ImageDataset

#: Offset mixed into the seed, so the permutation is not the epoch-0 shuffle of the same seed.
SEED_OFFSET = 0x5EED_1AB


def random_label_permutation(n: int, seed: int) -> torch.Tensor:
    """The permutation π of `range(n)` that `random_labels` applies (`y'_i = y_{π(i)}`)."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"random-label seed must be an integer >= 0, got {seed!r}")
    g = torch.Generator().manual_seed(seed + SEED_OFFSET)
    return torch.randperm(int(n), generator=g)


def random_labels(dataset: ImageDataset, seed: int) -> ImageDataset:
    """The same images with labels permuted once (module docstring): a view sharing `images` (no
    copy); `info["random_labels_seed"]` records the seed. Class counts are unchanged."""
    in_memory = isinstance(dataset, ImageDataset)
    if not in_memory:
        raise ValueError(f"random labels need an in-memory ImageDataset, got {type(dataset).__name__} "
                         "(a streamed set: load the split into memory or drop random_labels)")
    perm = random_label_permutation(len(dataset), seed)
    return ImageDataset(dataset.images, dataset.targets[perm], dataset.classes, dataset.mean, dataset.std,
                        dataset.name, dataset.split, {**dataset.info, "random_labels_seed": int(seed)})
