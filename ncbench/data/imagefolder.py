"""Your own images: `imagefolder:PATH`, torchvision's `ImageFolder` layout (one folder per class).

`PATH/train/<class>/*` and `PATH/test/<class>/*` give the splits as they are (the class folders of
both must match); otherwise `PATH/<class>/*` is split per class 80/20 with a fixed seed (0), as
the embedded sets are. Classes are sorted by folder name, labels 0..K-1.

`folder_source(PATH, split)` streams the files (`ncbench.data.streaming`); `load_dataset(
"imagefolder:PATH", split)` reads a small folder into memory as a uint8 `ImageDataset` (all images
must share one size; per-channel mean/std of the train split) for the training tasks.
"""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch

from ncbench.data.dataset import ImageDataset
from ncbench.data.embedded import stratified_split
from ncbench.data.registry import DatasetNotFoundError
from ncbench.data.streaming import FolderImages, Subset

SPLITS = ("train", "test")


@functools.lru_cache(maxsize=16)
def _scan(root: str) -> tuple[list[tuple[str, int]], list[str]]:
    from torchvision.datasets import ImageFolder

    try:
        f = ImageFolder(root, loader=lambda p: p)   # scan only: no image is decoded
    except (FileNotFoundError, RuntimeError) as e:
        raise DatasetNotFoundError(f"imagefolder:{root}: {e}. Expected one sub-folder per class with image "
                                   "files (or train/ and test/ each holding them)") from None
    return list(f.samples), list(f.classes)


def folder_source(root: str | Path, split: str):
    """The `split` of the image folder `root` as a streaming source (labels known, nothing decoded)."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetNotFoundError(f"imagefolder:{root}: no such folder. Give the folder holding one "
                                   "sub-folder per class (or train/ and test/)")
    if split not in SPLITS:
        raise ValueError(f"imagefolder:{root} has splits {list(SPLITS)}, not '{split}'")
    name = f"imagefolder:{root}"
    if all((root / s).is_dir() for s in SPLITS):
        samples, classes = _scan(str(root / split))
        _, other_classes = _scan(str(root / (SPLITS[1] if split == SPLITS[0] else SPLITS[0])))
        if classes != other_classes:
            raise ValueError(f"{name}: train/ and test/ have different class folders "
                             f"({sorted(set(classes) ^ set(other_classes))[:5]} in one only)")
        return FolderImages(samples, classes, f"{name}/{split}")
    samples, classes = _scan(str(root))
    src = FolderImages(samples, classes, name)
    idx = stratified_split(src.targets.numpy())[split]
    return Subset(src, torch.from_numpy(idx))


def _read(src, name: str) -> torch.Tensor:
    arrays = []
    for i in range(len(src)):
        a = np.asarray(src.image(i))
        arrays.append(a[None] if a.ndim == 2 else a.transpose(2, 0, 1))
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise ValueError(f"{name}: images of several sizes/channels {sorted(shapes)[:3]}: the in-memory path "
                         "needs one size; resize the folder, or use a frozen_transfer task (streamed, "
                         "resized by the model's preprocessing)")
    if not arrays:
        raise ValueError(f"{name}: no images")
    return torch.from_numpy(np.stack(arrays))


def load_imagefolder(name: str, split: str) -> ImageDataset:
    """A small image folder read into memory (uint8), for the training tasks."""
    root = Path(name.split(":", 1)[1]).expanduser()
    src = folder_source(root, split)
    images = _read(src, name)
    x = (images if split == "train" else _read(folder_source(root, "train"), name)).double() / 255.0
    mean = tuple(float(m) for m in x.mean((0, 2, 3)))
    std = tuple(max(float(s), 1e-6) for s in x.std((0, 2, 3)))
    return ImageDataset(images, src.targets, src.classes, mean, std, name, split, {"source": "imagefolder"})
