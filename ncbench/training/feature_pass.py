"""One eval-mode pass of a backbone over a data split (SPEC §1: eval mode, no augmentation).

`feature_pass` yields `(features, labels, logits)` batches of this rank's shard of a split (or of a
split that streams itself, `data.stream(batch_size)`), in order: inputs copied to the device
non-blocking, `channels_last` on CUDA, optionally under autocast (`amp`, e.g. `torch.bfloat16`),
outputs float32. `forward(x) -> (features, logits)` replaces `model.features` / `model.logits`
(e.g. the layer taps of `ncbench.models.layers.LayerFeatures`, whose features are a list). `Replay`
keeps one pass in preallocated buffers when the split fits `FEATURE_CACHE_BYTES` and replays it
batch for batch (else it runs the pass again): used by the evaluation, NCC-depth and
minority-collapse probes and the feature cache.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
from tqdm.auto import tqdm

from ncbench.training import distributed as dist

FEATURE_CACHE_BYTES = 1 << 30
"""Keep one pass's features in memory for pass two when they fit in this budget; else re-run the
forward pass (the metric engine itself never needs them)."""


def input_batches(data, device, batch_size: int, *, shard: bool = True,
                  desc: str = "") -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """`(x, y)` on `device` of this rank's shard of `data` (all of it with `shard=False`), in order;
    `x` in `channels_last` on CUDA. A split with `stream(batch_size)` streams itself."""
    device = torch.device(device)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if hasattr(data, "stream"):
        batches, total = data.stream(batch_size), None
    else:
        idx = torch.arange(len(data))
        chunks = list((dist.shard(idx) if shard else idx).split(batch_size))
        batches, total = data.batches(chunks), len(chunks)
    for x, y in tqdm(batches, total=total, desc=desc, leave=False, disable=not desc or not dist.is_main()):
        x = x.to(device, non_blocking=True)
        if device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        yield x, y.to(device)


def shard_rows(data) -> int:
    """Rows of `data` this rank's pass sees (a streamed split is not sharded)."""
    return len(data) if hasattr(data, "stream") else len(dist.shard(torch.arange(len(data))))


def _float(t):
    if t is None:
        return None
    return [p.float() for p in t] if isinstance(t, (list, tuple)) else t.float()


@torch.no_grad()
def feature_pass(model, data, device, batch_size: int = 512, *, forward: Callable | None = None,
                 logits: bool = True, amp: torch.dtype | None = None, shard: bool = True,
                 desc: str = "") -> Iterator[tuple]:
    """`(features, labels, logits)` per batch, float32, the model in eval mode (left so).

    `forward(x) -> (features, logits)` defaults to `(model.features(x), model.logits(h))`;
    `logits=False` yields None for them. `amp`: autocast dtype on the device (None: off)."""
    device = torch.device(device)
    model.eval()
    if forward is None:
        def forward(x):
            h = model.features(x)
            return h, model.logits(h) if logits else None
    autocast = (lambda: torch.autocast(device.type, dtype=amp)) if amp is not None else contextlib.nullcontext
    for x, y in input_batches(data, device, batch_size, shard=shard, desc=desc):
        with autocast():
            h, z = forward(x)
        yield _float(h), y, _float(z) if logits else None


class Replay:
    """Iterate a pass (`make()` -> iterator of tuples of tensors, lists of tensors or None) twice or
    more: the first complete iteration is kept, in one preallocated buffer per tensor (filled batch
    by batch, so many small blocks never fragment the heap), when `rows` rows fit `budget` bytes;
    later iterations replay it with the same batch boundaries. Too large: every iteration runs
    `make()` again."""

    def __init__(self, make: Callable[[], Iterator[tuple]], rows: int, budget: int | None = None):
        self.make, self.rows = make, rows
        self.budget = FEATURE_CACHE_BYTES if budget is None else budget
        self.fits = True
        self._bufs: list[torch.Tensor] | None = None
        self._layout = None                # per item: None, "tensor", or the length of a list of tensors
        self._sizes: list[int] = []
        self.complete = False

    @staticmethod
    def _parts(item) -> tuple[list[torch.Tensor], list]:
        parts, layout = [], []
        for t in item:
            if t is None:
                layout.append(None)
            elif isinstance(t, (list, tuple)):
                parts += list(t)
                layout.append(len(t))
            else:
                parts.append(t)
                layout.append("tensor")
        return parts, layout

    def _keep(self, item, pos: int) -> bool:
        parts, layout = self._parts(item)
        b = parts[0].shape[0] if parts else 0
        if self._bufs is None:
            width = sum(p[0].numel() * p.element_size() for p in parts) if b else 0
            if self.rows * width > self.budget:
                return False
            self._bufs = [p.new_empty((self.rows, *p.shape[1:])) for p in parts]
            self._layout = layout
        if pos + b > self.rows or layout != self._layout:
            return False
        for buf, p in zip(self._bufs, parts):
            buf[pos:pos + b].copy_(p)
        self._sizes.append(b)
        return True

    def _unpack(self, chunk: list[torch.Tensor]) -> tuple:
        out, i = [], 0
        for n in self._layout:
            if n is None:
                out.append(None)
            elif n == "tensor":
                out.append(chunk[i])
                i += 1
            else:
                out.append(chunk[i:i + n])
                i += n
        return tuple(out)

    def __iter__(self):
        if self.complete:
            pos = 0
            for b in self._sizes:
                yield self._unpack([buf[pos:pos + b] for buf in self._bufs])
                pos += b
            return
        keep, pos = self.fits, 0
        self._bufs, self._sizes = None, []
        for item in self.make():
            if keep:
                keep = self._keep(item, pos)
                pos += self._sizes[-1] if keep else 0
            yield item
        self.fits = keep
        self.complete = keep and self._bufs is not None
        if not keep:
            self._bufs, self._sizes = None, []
