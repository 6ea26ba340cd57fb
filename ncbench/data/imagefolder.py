"""Your own images: `imagefolder:PATH`, torchvision's `ImageFolder` layout (one folder per class).

`PATH/train/<class>/*` and `PATH/test/<class>/*` give the splits as they are (the class folders of
both must match); otherwise `PATH/<class>/*` is split per class 80/20 with a fixed seed (0), as
the embedded sets are. Classes are sorted by folder name, labels 0..K-1.

`folder_source(PATH, split)` streams the files (`ncbench.data.streaming`); `load_dataset(
"imagefolder:PATH", split)` reads a small folder into memory as a uint8 `ImageDataset` (all images
must share one size; per-channel mean/std of the train split) for the training tasks, or streams
it as a `StreamedImageDataset` when it is larger than `NCBENCH_STREAM_BYTES` (`ncbench.data.materialise`).
"""
from __future__ import annotations

import functools
from pathlib import Path

import torch

from ncbench.data.dataset import ImageDataset
from ncbench.data.materialise import load_source
from ncbench.data.not_found import DatasetNotFoundError
from ncbench.data.splits import stratified_split
from ncbench.data.streaming import FolderImages, StreamedImageDataset, Subset

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


def load_imagefolder(name: str, split: str, stream: bool | None = None,
                     workers: int | None = None) -> ImageDataset | StreamedImageDataset:
    """An image folder for the training tasks: in memory (uint8), or streamed when large
    (`ncbench.data.materialise.load_source`)."""
    root = Path(name.split(":", 1)[1]).expanduser()
    return load_source(name, split, lambda s: folder_source(root, s), {"source": "imagefolder"}, stream, workers)
