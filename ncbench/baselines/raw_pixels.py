"""The raw-pixel baseline: a split's features are its flattened input tensors, `h_i = vec(x_i)`.

`x_i` is exactly what the model would be fed: an in-memory `ImageDataset` normalises as
`(x − mean)/std` per channel (`ImageDataset.batch`); a streamed split (`StreamedSplit`) applies its
preprocessing transform (resize, crop, normalise). A nearest-class-centre rule on these features is
the "no representation" reference every learned feature map should beat.
"""
from __future__ import annotations

from collections.abc import Iterator

import torch


def split_batches(data, batch_size: int = 512) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """`(x, y)` batches of a split in order: an `ImageDataset` (or `StreamedImageDataset`) by index
    batches, a split that streams itself by `data.stream(batch_size)`."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    if hasattr(data, "stream"):
        yield from data.stream(batch_size)
        return
    yield from data.batches(list(torch.arange(len(data)).split(batch_size)))


def raw_pixel_features(data, batch_size: int = 512, dtype: torch.dtype = torch.float32
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """`(features (N, C·H·W), labels (N,))`: every sample's model input, flattened, in `dtype`."""
    xs, ys = [], []
    for x, y in split_batches(data, batch_size):
        xs.append(x.flatten(1).to(dtype))
        ys.append(torch.as_tensor(y, dtype=torch.long))
    if not sum(len(y) for y in ys):
        raise ValueError(f"{getattr(data, 'name', 'the split')} has no samples: no raw-pixel features")
    return torch.cat(xs), torch.cat(ys)
