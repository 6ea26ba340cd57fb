"""A streaming image source as a training-task data set: read into memory (uint8 `ImageDataset`),
or left on disk as a `StreamedImageDataset` when its decoded images would take more than
`NCBENCH_STREAM_BYTES` (the path of `imagefolder:` and `hf:` data sets alike).

Mean/std (per channel, [0, 1] units) are always those of the **train** split's images.
"""
from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
import torch

from ncbench.data.dataset import ImageDataset
from ncbench.data.streaming import StreamedImageDataset, channel_stats


def read_images(src, name: str) -> torch.Tensor:
    """Every image of a source as one uint8 `(N, C, H, W)` tensor (all must share one size)."""
    arrays = []
    for i in range(len(src)):
        a = np.asarray(src.image(i))
        arrays.append(a[None] if a.ndim == 2 else a.transpose(2, 0, 1))
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise ValueError(f"{name}: images of several sizes/channels {sorted(shapes)[:3]}: the in-memory path "
                         "needs one size; resize the images, or use a frozen_transfer task (streamed, "
                         "resized by the model's preprocessing)")
    if not arrays:
        raise ValueError(f"{name}: no images")
    # NCHW in memory: numpy >= 2.4 keeps the inputs' (transposed, NHWC) layout in np.stack, and a
    # conv over another layout rounds differently (the streamed path decodes contiguous NCHW)
    return torch.from_numpy(np.ascontiguousarray(np.stack(arrays)))


def stream_settings() -> tuple[int, int]:
    """(`NCBENCH_STREAM_BYTES`, `NCBENCH_STREAM_WORKERS`): a set whose uint8 images would take more
    than the first (default 4 GiB) is streamed with the second's worker processes (default
    min(8, CPUs))."""
    budget = int(os.environ.get("NCBENCH_STREAM_BYTES", str(4 << 30)))
    workers = int(os.environ.get("NCBENCH_STREAM_WORKERS", str(min(8, os.cpu_count() or 1))))
    return budget, workers


def load_source(name: str, split: str, source_of: Callable[[str], object], info: dict,
                stream: bool | None = None, workers: int | None = None) -> ImageDataset | StreamedImageDataset:
    """Split `split` of the source `source_of(split)`: in memory, or, when `stream` (default: when
    its images would take more than `NCBENCH_STREAM_BYTES`), a `StreamedImageDataset` decoding them
    in `workers` DataLoader processes (same batches, same numbers, memory bounded by the batch)."""
    src = source_of(split)
    budget, default_workers = stream_settings()
    workers = default_workers if workers is None else workers
    if stream is None:
        stream = len(src) > 0 and len(src) * np.asarray(src.image(0)).nbytes > budget
    if stream:
        mean, std = channel_stats(source_of("train"), workers)
        return StreamedImageDataset(src, mean, std, name, split, {**info, "streamed": True}, workers=workers)
    images = read_images(src, name)
    x = (images if split == "train" else read_images(source_of("train"), name)).double() / 255.0
    mean = tuple(float(m) for m in x.mean((0, 2, 3)))
    std = tuple(max(float(s), 1e-6) for s in x.std((0, 2, 3)))
    return ImageDataset(images, src.targets, src.classes, mean, std, name, split, dict(info))
