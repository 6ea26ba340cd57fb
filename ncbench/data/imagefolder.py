"""Your own images: `imagefolder:PATH`, torchvision's `ImageFolder` layout (one folder per class).

`PATH/train/<class>/*` and `PATH/test/<class>/*` give the splits as they are (the class folders of
both must match); otherwise `PATH/<class>/*` is split per class 80/20 with a fixed seed (0), as
the embedded sets are. Classes are sorted by folder name, labels 0..K-1.

`folder_source(PATH, split)` streams the files (`ncbench.data.streaming`); `load_dataset(
"imagefolder:PATH", split)` reads a small folder into memory as a uint8 `ImageDataset` (all images
must share one size; per-channel mean/std of the train split) for the training tasks, or streams
it as a `StreamedImageDataset` when it is larger than `NCBENCH_STREAM_BYTES` (see `load_imagefolder`).
"""
from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
import torch

from ncbench.data.dataset import ImageDataset
from ncbench.data.not_found import DatasetNotFoundError
from ncbench.data.splits import stratified_split
from ncbench.data.streaming import FolderImages, StreamedImageDataset, Subset, channel_stats

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


def stream_settings() -> tuple[int, int]:
    """(`NCBENCH_STREAM_BYTES`, `NCBENCH_STREAM_WORKERS`): a folder whose uint8 images would take more
    than the first (default 4 GiB) is streamed with the second's worker processes (default
    min(8, CPUs))."""
    budget = int(os.environ.get("NCBENCH_STREAM_BYTES", str(4 << 30)))
    workers = int(os.environ.get("NCBENCH_STREAM_WORKERS", str(min(8, os.cpu_count() or 1))))
    return budget, workers


def load_imagefolder(name: str, split: str, stream: bool | None = None,
                     workers: int | None = None) -> ImageDataset | StreamedImageDataset:
    """An image folder for the training tasks: read into memory (uint8), or, when `stream` (default:
    when its images would take more than `NCBENCH_STREAM_BYTES`), a `StreamedImageDataset` decoding
    them in `workers` DataLoader processes (same batches, same numbers, memory bounded by the batch)."""
    root = Path(name.split(":", 1)[1]).expanduser()
    src = folder_source(root, split)
    budget, default_workers = stream_settings()
    workers = default_workers if workers is None else workers
    if stream is None:
        stream = len(src) > 0 and len(src) * np.asarray(src.image(0)).nbytes > budget
    if stream:
        mean, std = channel_stats(folder_source(root, "train"), workers)
        return StreamedImageDataset(src, mean, std, name, split, {"source": "imagefolder", "streamed": True},
                                    workers=workers)
    images = _read(src, name)
    x = (images if split == "train" else _read(folder_source(root, "train"), name)).double() / 255.0
    mean = tuple(float(m) for m in x.mean((0, 2, 3)))
    std = tuple(max(float(s), 1e-6) for s in x.std((0, 2, 3)))
    return ImageDataset(images, src.targets, src.classes, mean, std, name, split, {"source": "imagefolder"})
