"""Streaming image data: a `DataLoader` over decoded images, for sets that do not fit in memory.

An image source (`TensorImages` over an in-memory uint8 `ImageDataset`, `FolderImages` over image
files) yields PIL images and knows its labels without decoding; `TransformedImages` applies a
transform (timm's evaluation transform, `ncbench.data.preprocessing`); `StreamedSplit` batches it
through a `DataLoader` with worker processes and pinned memory. Nothing holds more than
`batch_size × (workers + prefetch)` decoded images, whatever the data set size.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch


class TensorImages:
    """PIL views of the uint8 `(N, C, H, W)` images of an `ImageDataset` (no copy of the set)."""

    def __init__(self, data):
        if data.images.dtype != torch.uint8:
            raise ValueError(f"{data.name}/{data.split}: streaming needs uint8 images, got {data.images.dtype}")
        self.data, self.classes = data, list(data.classes)
        self.targets = data.targets.clone()
        self.name = f"{data.name}/{data.split}"

    def __len__(self) -> int:
        return len(self.targets)

    def image(self, i: int):
        from PIL import Image

        a = self.data.images[i].numpy()
        return Image.fromarray(a[0] if a.shape[0] == 1 else np.ascontiguousarray(a.transpose(1, 2, 0)))


class FolderImages:
    """Image files with labels: `samples` a list of `(path, label)`, `classes` the label names."""

    def __init__(self, samples: list[tuple[str, int]], classes: list[str], name: str = ""):
        self.samples, self.classes, self.name = samples, list(classes), name
        self.targets = torch.tensor([y for _, y in samples], dtype=torch.long)

    def __len__(self) -> int:
        return len(self.samples)

    def image(self, i: int):
        from PIL import Image

        with Image.open(self.samples[i][0]) as im:
            return im.copy()           # decoded, and the file closed


class Subset:
    """Rows `idx` of a source, labels relabelled through `relabel[old] = new`."""

    def __init__(self, source, idx, relabel: torch.Tensor | None = None, classes: list[str] | None = None):
        self.source, self.idx = source, torch.as_tensor(idx, dtype=torch.long)
        t = source.targets[self.idx]
        self.targets = relabel[t] if relabel is not None else t
        self.classes = classes or source.classes
        self.name = source.name

    def __len__(self) -> int:
        return len(self.idx)

    def image(self, i: int):
        return self.source.image(int(self.idx[i]))


def class_subset(source, classes: list[int]):
    """The samples of `classes` (original label ids), relabelled 0..len(classes)-1 in that order."""
    n = len(source.classes)
    bad = [c for c in classes if not 0 <= int(c) < n]
    if bad or len(set(classes)) != len(classes):
        raise ValueError(f"{source.name}: classes {classes} must be distinct label ids in 0..{n - 1}")
    relabel = torch.full((n,), -1, dtype=torch.long)
    relabel[torch.tensor(classes)] = torch.arange(len(classes))
    idx = torch.nonzero(relabel[source.targets] >= 0).squeeze(1)
    return Subset(source, idx, relabel, [source.classes[c] for c in classes])


class TransformedImages(torch.utils.data.Dataset):
    """`(transform(image converted to mode), label)` for every sample of a source."""

    def __init__(self, source, transform: Callable, mode: str):
        self.source, self.transform, self.mode = source, transform, mode

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int):
        im = self.source.image(i)
        if im.mode != self.mode:
            im = im.convert(self.mode)
        return self.transform(im), int(self.source.targets[i])


@dataclass
class StreamedSplit:
    """A split read in order through a `DataLoader`: `stream(batch_size)` yields `(x, y)` batches.

    `workers` decoding processes (0: in this process), `pin_memory` for faster host-to-GPU copies
    (default: when CUDA is available).
    """

    source: object
    transform: Callable
    mode: str
    workers: int = 0
    pin_memory: bool | None = None
    info: dict = field(default_factory=dict)

    @property
    def classes(self) -> list[str]:
        return self.source.classes

    @property
    def targets(self) -> torch.Tensor:
        return self.source.targets

    def __len__(self) -> int:
        return len(self.source)

    def stream(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        pin = torch.cuda.is_available() if self.pin_memory is None else self.pin_memory
        loader = torch.utils.data.DataLoader(
            TransformedImages(self.source, self.transform, self.mode), batch_size=batch_size,
            shuffle=False, num_workers=self.workers, pin_memory=pin,
            persistent_workers=False, prefetch_factor=2 if self.workers else None)
        yield from loader


def folder_root(name: str) -> Path | None:
    """`PATH` of a data set named `imagefolder:PATH` (None for other names)."""
    if not name.startswith("imagefolder:"):
        return None
    return Path(name.split(":", 1)[1]).expanduser()
