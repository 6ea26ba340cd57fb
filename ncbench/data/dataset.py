"""The labelled image data set every task consumes: tensors in memory, normalised on access."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import torch


@dataclass
class ImageDataset(torch.utils.data.Dataset):
    """Images `uint8 (N, C, H, W)` or float, integer labels `(N,)`, per-channel mean/std in [0, 1] units.

    Indexing returns a normalised float32 image and its label; `batch(idx)` does the same for an
    index tensor at once (the fast path the trainer and the feature passes use).
    """

    images: torch.Tensor
    targets: torch.Tensor
    classes: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    name: str = ""
    split: str = ""
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.images.ndim != 4:
            raise ValueError(f"{self.name}/{self.split}: images must be (N, C, H, W), got {tuple(self.images.shape)}")
        self.targets = torch.as_tensor(self.targets, dtype=torch.long)
        if len(self.images) != len(self.targets):
            raise ValueError(f"{self.name}/{self.split}: {len(self.images)} images but {len(self.targets)} labels")
        c = self.images.shape[1]
        scale = 255.0 if self.images.dtype == torch.uint8 else 1.0
        self._mean = torch.tensor(self.mean, dtype=torch.float32).view(1, c, 1, 1) * scale
        self._std = torch.tensor(self.std, dtype=torch.float32).view(1, c, 1, 1) * scale

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def in_chans(self) -> int:
        return int(self.images.shape[1])

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.images.shape[2]), int(self.images.shape[3])

    def __len__(self) -> int:
        return len(self.targets)

    def batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.images[idx].float()
        return (x - self._mean) / self._std, self.targets[idx]

    def batches(self, index_batches: list[torch.Tensor]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """`batch(idx)` for each index tensor in turn (a streamed set decodes them in workers)."""
        for idx in index_batches:
            yield self.batch(idx)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x, y = self.batch(torch.tensor([i]))
        return x[0], int(y[0])

    def subset(self, idx: torch.Tensor, *, classes: list[str] | None = None,
               relabel: torch.Tensor | None = None, **info) -> ImageDataset:
        """Rows `idx` (optionally relabelled through the map `relabel[old] = new`)."""
        idx = torch.as_tensor(idx, dtype=torch.long)
        targets = self.targets[idx]
        if relabel is not None:
            targets = relabel[targets]
        return ImageDataset(self.images[idx], targets, classes or self.classes, self.mean, self.std,
                            self.name, self.split, {**self.info, **info})

    def class_counts(self) -> torch.Tensor:
        return torch.bincount(self.targets, minlength=self.num_classes)
