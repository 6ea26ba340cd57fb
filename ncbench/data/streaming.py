"""Streaming image data: a `DataLoader` over decoded images, for sets that do not fit in memory.

An image source (`TensorImages` over an in-memory uint8 `ImageDataset`, `FolderImages` over image
files) yields PIL images and knows its labels without decoding; `TransformedImages` applies a
transform (timm's evaluation transform, `ncbench.data.preprocessing`); `StreamedSplit` batches it
through a `DataLoader` with worker processes and pinned memory. Nothing holds more than
`batch_size × (workers + prefetch)` decoded images, whatever the data set size.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

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


class _RawImages(torch.utils.data.Dataset):
    """`(uint8 (C, H, W) image, label)` of a source, decoded as it is (no resize)."""

    def __init__(self, source):
        self.source = source

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int):
        a = np.asarray(self.source.image(int(i)))
        a = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
        return torch.from_numpy(np.ascontiguousarray(a)), int(self.source.targets[i])


class _Normalise:
    """Collate uint8 images and normalise them exactly as `ImageDataset.batch` does (in the worker)."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor):
        self.mean, self.std = mean, std

    def __call__(self, items):
        shapes = {tuple(im.shape) for im, _ in items}
        if len(shapes) > 1:
            raise ValueError(f"streamed images of several sizes/channels {sorted(shapes)[:3]}: training "
                             "needs one size; resize the folder")
        x = torch.stack([im for im, _ in items]).float()
        return (x - self.mean) / self.std, torch.tensor([y for _, y in items], dtype=torch.long)


class StreamedImageDataset:
    """A training-task data set whose images stay on disk: `ImageDataset`'s interface (`len`,
    `targets`, `classes`, `num_classes`, `in_chans`, `class_counts`, `subset`, `batch`, `batches`),
    decoded by `workers` `DataLoader` processes (pinned memory on CUDA) whose `batch_sampler` is the
    caller's list of index batches, so epoch order, augmentation and DDP shards are the in-memory
    path's, and the numbers bit-identical to it (same uint8 pixels, same float ops). At most
    `batch × (1 + workers × prefetch)` decoded images exist at once.

    Images must share one size (uint8, the source's native size); mean/std are in [0, 1] units.
    """

    def __init__(self, source, mean, std, name: str = "", split: str = "", info: dict | None = None,
                 workers: int = 0, prefetch: int = 2, pin_memory: bool | None = None):
        self.source, self.mean, self.std = source, tuple(mean), tuple(std)
        self.name, self.split, self.info = name, split, dict(info or {})
        self.workers, self.prefetch, self.pin_memory = workers, prefetch, pin_memory
        self.classes = list(source.classes)
        self.targets = torch.as_tensor(source.targets, dtype=torch.long)
        first = _RawImages(source)[0][0] if len(source) else torch.zeros(len(self.mean), 1, 1, dtype=torch.uint8)
        self.shape = tuple(first.shape)
        c = self.shape[0]
        self._norm = _Normalise(torch.tensor(self.mean, dtype=torch.float32).view(1, c, 1, 1) * 255.0,
                                torch.tensor(self.std, dtype=torch.float32).view(1, c, 1, 1) * 255.0)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def in_chans(self) -> int:
        return int(self.shape[0])

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.shape[1]), int(self.shape[2])

    def __len__(self) -> int:
        return len(self.targets)

    def class_counts(self) -> torch.Tensor:
        return torch.bincount(self.targets, minlength=self.num_classes)

    def batches(self, index_batches: list[torch.Tensor]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """`(x, y)` for each index tensor in turn, normalised, decoded `workers` batches ahead."""
        sampler = [b.tolist() for b in index_batches]
        if not sampler:
            return
        pin = torch.cuda.is_available() if self.pin_memory is None else self.pin_memory
        yield from torch.utils.data.DataLoader(
            _RawImages(self.source), batch_sampler=sampler, collate_fn=self._norm,
            num_workers=self.workers, pin_memory=pin, persistent_workers=False,
            prefetch_factor=self.prefetch if self.workers else None)

    def batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._norm([_RawImages(self.source)[int(i)] for i in idx])

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x, y = self.batch(torch.tensor([i]))
        return x[0], int(y[0])

    def subset(self, idx: torch.Tensor, *, classes: list[str] | None = None,
               relabel: torch.Tensor | None = None, **info) -> StreamedImageDataset:
        """Rows `idx` (optionally relabelled through `relabel[old] = new`), still streamed."""
        return StreamedImageDataset(Subset(self.source, idx, relabel, classes), self.mean, self.std, self.name,
                                    self.split, {**self.info, **info}, self.workers, self.prefetch,
                                    self.pin_memory)


def channel_stats(source, workers: int = 0, batch_size: int = 256) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (unbiased) std in [0, 1] units of a source's images, streamed: float64
    sums, so equal to the in-memory statistics to ~1e-12, not bit for bit."""
    s = q = None
    n = 0
    loader = torch.utils.data.DataLoader(_RawImages(source), batch_size=batch_size, num_workers=workers,
                                         collate_fn=_stack)
    for x in loader:
        x = x.double() / 255.0
        s = x.sum((0, 2, 3)) if s is None else s + x.sum((0, 2, 3))
        q = (x * x).sum((0, 2, 3)) if q is None else q + (x * x).sum((0, 2, 3))
        n += x.shape[0] * x.shape[2] * x.shape[3]
    if s is None:
        raise ValueError(f"{source.name}: no images")
    mean = s / n
    std = ((q - n * mean * mean) / max(n - 1, 1)).clamp_min(0).sqrt()
    return tuple(float(m) for m in mean), tuple(max(float(v), 1e-6) for v in std)


def _stack(items: Sequence) -> torch.Tensor:
    return torch.stack([im for im, _ in items])
