"""A pair of torch Datasets as a data set (`ncbench.run(task, data=(train, test))`), named by content.

Each item is `(image, label)` with `image` a `(C, H, W)` tensor (or array) and `label` an integer.
Both splits are read once into memory. uint8 images stay uint8 and are normalised with the train
split's per-channel mean/std (as `imagefolder:` folders are); float images are taken as already
normalised (mean 0, std 1: ncbench applies no further transform). Class names come from the train
set's `classes` attribute when it has one of the right length, else `0..K-1` with `K = max label + 1`.

The pair enters a run as `tensors:<16 hex>`, the SHA-256 of both splits' images (dtype, shape,
bytes), labels and class names: the `dataset` column, part of the config hash and of the run's
folder name (`<task>@dataset=tensors-<16 hex>`). Registered pairs live in this process only.
"""
from __future__ import annotations

import hashlib

import numpy as np
import torch

from ncbench.data.dataset import ImageDataset

PREFIX = "tensors:"
SPLITS = ("train", "test")

_DATA: dict[str, dict[str, ImageDataset]] = {}


def _stack(data, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    try:
        n = len(data)
    except TypeError:
        raise ValueError(f"data: the {split} set has no len(): pass map-style torch Datasets (train, test)") from None
    if n == 0:
        raise ValueError(f"data: the {split} set is empty")
    images, labels = [], []
    for i in range(n):
        item = data[i]
        if not isinstance(item, (tuple, list)) or len(item) < 2:
            raise ValueError(f"data: item {i} of the {split} set is not an (image, label) pair")
        x = torch.as_tensor(np.asarray(item[0]) if not isinstance(item[0], torch.Tensor) else item[0])
        if x.ndim == 2:
            x = x[None]
        if x.ndim != 3:
            raise ValueError(f"data: image {i} of the {split} set has shape {tuple(x.shape)}; ncbench needs "
                             "(C, H, W) tensors (e.g. torchvision's ToTensor())")
        images.append(x)
        labels.append(int(item[1]))
    shapes = {tuple(x.shape) for x in images}
    if len(shapes) > 1:
        raise ValueError(f"data: the {split} set has images of several shapes {sorted(shapes)[:3]}: resize them "
                         "to one size")
    stacked = torch.stack(images)
    if stacked.dtype != torch.uint8:
        stacked = stacked.float()
    return stacked, torch.tensor(labels, dtype=torch.long)


def register_pair(train, test) -> str:
    """Read the (train, test) Datasets into memory; returns their `tensors:` name."""
    (xtr, ytr), (xte, yte) = _stack(train, "train"), _stack(test, "test")
    if xtr.shape[1:] != xte.shape[1:] or xtr.dtype != xte.dtype:
        raise ValueError(f"data: train images are {tuple(xtr.shape[1:])} {xtr.dtype} but test images "
                         f"{tuple(xte.shape[1:])} {xte.dtype}: both splits need one shape and dtype")
    if min(int(ytr.min()), int(yte.min())) < 0:
        raise ValueError("data: labels must be integers 0..K-1 (a negative label was found)")
    K = int(max(ytr.max(), yte.max())) + 1
    named = list(getattr(train, "classes", None) or [])
    classes = [str(c) for c in named] if len(named) >= K else [str(k) for k in range(K)]
    if xtr.dtype == torch.uint8:
        v = xtr.double() / 255.0
        mean = tuple(v.mean(dim=(0, 2, 3)).tolist())
        std = tuple(max(s, 1e-6) for s in v.std(dim=(0, 2, 3)).tolist())
    else:
        mean, std = (0.0,) * xtr.shape[1], (1.0,) * xtr.shape[1]
    h = hashlib.sha256("\0".join(classes).encode())
    for t in (xtr, ytr, xte, yte):
        h.update(f"{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    name = f"{PREFIX}{h.hexdigest()[:16]}"
    _DATA[name] = {split: ImageDataset(x, y, classes, mean, std, name, split, {"source": "in-memory"})
                   for split, x, y in (("train", xtr, ytr), ("test", xte, yte))}
    return name


def is_in_memory(name: str) -> bool:
    return isinstance(name, str) and name.startswith(PREFIX)


def load_pair_split(name: str, split: str) -> ImageDataset:
    """Split `split` of a registered pair (a view sharing its tensors)."""
    if name not in _DATA:
        raise ValueError(f"dataset '{name}' is a pair of in-memory Datasets that this process does not hold: "
                         "pass them again to ncbench.run(..., data=(train, test))")
    if split not in _DATA[name]:
        raise ValueError(f"dataset '{name}' has splits {list(SPLITS)}, not '{split}'")
    return _DATA[name][split].subset(torch.arange(len(_DATA[name][split])))
