"""Frozen-backbone features of a data split, computed once and reused by tasks that only read them.

A cached entry is the penultimate features `h = Backbone.features(x)` (SPEC §1: pooled pre-logits,
eval mode, no augmentation) of every sample of one split, in the split's order, with its labels. It is
keyed by what changes the numbers (`FeatureKey`): the model name, a fingerprint of its weights, the
data set, the split, the class subset and the layer. The weights fingerprint (`weights_fingerprint`)
is the SHA-1 of every `state_dict` entry of the feature extractor (name, dtype, shape, bytes; buffers
such as BatchNorm running statistics included; the classifier head is left out: it does not change
`h`), so a retrained or differently initialised backbone never reads another
one's features, whatever produced it (a trajectory, timm's pretrained weights, a checkpoint).

Entries live in `root/<digest>.pt` (a run uses `ctx.cache_dir / "features"`), written atomically
(temporary file, then `os.replace`), so a crash or a concurrent writer never leaves a torn file. An
entry whose labels do not match the data it is asked for (the data set changed on disk) is recomputed.
"""
from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from ncbench.data.dataset import ImageDataset
from ncbench.run_files import ReadError, UnsafePathError, load_torch, save_torch
from ncbench.training.feature_pass import feature_pass

PENULTIMATE = "penultimate"
"""The layer name of `Backbone.features(x)` (the only layer `FeatureCache.features` extracts itself)."""


def weights_fingerprint(model: nn.Module) -> str:
    """SHA-1 (16 hex digits) of `model.state_dict()`: every entry's name, dtype, shape and bytes."""
    h = hashlib.sha1()
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        if t.numel():
            h.update(t.view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class FeatureKey:
    """What a cached feature matrix depends on. `classes`: the original class indices kept (None: all)."""

    model: str
    weights: str
    dataset: str
    split: str
    classes: tuple[int, ...] | None = None
    layer: str = PENULTIMATE

    def digest(self) -> str:
        d = asdict(self)
        d["classes"] = None if self.classes is None else [int(c) for c in self.classes]
        return hashlib.sha1(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class CachedFeatures:
    """`features (N, d)` float32 on CPU, `labels (N,)`, the split's class names, and the key."""

    features: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    key: FeatureKey


@torch.no_grad()
def extract_features(model: nn.Module, data: ImageDataset, device: str | torch.device = "cpu",
                     batch_size: int = 512) -> torch.Tensor:
    """Penultimate features `(N, d)` (float32, CPU) of every sample of `data` in order, eval mode."""
    was_training = model.training
    try:
        out = [h.cpu() for h, _, _ in feature_pass(model, data, device, batch_size, logits=False, shard=False)]
    finally:
        model.train(was_training)
    if not out:
        raise ValueError(f"{data.name}/{data.split} has no samples: nothing to extract features from")
    return torch.cat(out)


class FeatureCache:
    """Features on disk under `root`, one file per `FeatureKey`; `hits`/`misses` count the requests."""

    def __init__(self, root: str | Path, within: str | Path | None = None):
        """Entries in `root`, which must lie inside `within` (the run folder; default `root`)."""
        self.root = Path(root)
        self.within = self.root if within is None else Path(within)
        self.hits = 0
        self.misses = 0

    def path(self, key: FeatureKey) -> Path:
        return self.root / f"{key.digest()}.pt"

    def load(self, key: FeatureKey) -> CachedFeatures | None:
        """The stored entry of `key`, or None (absent, unreadable, or stored under another key)."""
        p = self.path(key)
        if not p.is_file():
            return None
        try:
            d = load_torch(p, self.within)
        except (ReadError, UnsafePathError) as e:  # a torn, foreign or linked-out file is recomputed, never fatal
            warnings.warn(f"feature cache entry {p} is unreadable ({e}); recomputing", stacklevel=2)
            return None
        if not isinstance(d, dict) or d.get("key") != asdict(key):
            return None
        return CachedFeatures(d["features"], d["labels"], d["classes"], key)

    def get(self, key: FeatureKey, compute: Callable[[], tuple[torch.Tensor, torch.Tensor, Sequence[str]]],
            expect_labels: torch.Tensor | None = None) -> CachedFeatures:
        """The entry of `key`, computing `(features, labels, classes) = compute()` and storing it on a
        miss. With `expect_labels`, a stored entry with other labels is recomputed."""
        hit = self.load(key)
        if hit is not None and (expect_labels is None or torch.equal(hit.labels, expect_labels.cpu())):
            self.hits += 1
            return hit
        self.misses += 1
        features, labels, classes = compute()
        features = features.detach().to("cpu", torch.float32).contiguous()
        labels = torch.as_tensor(labels, dtype=torch.long).cpu()
        if features.ndim != 2 or len(features) != len(labels):
            raise ValueError(f"features must be (N, d) with one label per row, got {tuple(features.shape)} "
                             f"and {len(labels)} labels")
        save_torch({"key": asdict(key), "features": features, "labels": labels,
                    "classes": list(classes)}, self.path(key), self.within)
        return CachedFeatures(features, labels, list(classes), key)

    def features(self, model: nn.Module, data: ImageDataset, *, model_name: str, dataset: str, split: str,
                 classes: Sequence[int] | None = None, weights: str | None = None,
                 device: str | torch.device = "cpu", batch_size: int = 512) -> CachedFeatures:
        """Penultimate features of `model` on `data` (the split `split` of `dataset`, restricted to the
        original class indices `classes`), from the cache or computed once. `weights` overrides the
        weights fingerprint (e.g. a trajectory key); by default it is `weights_fingerprint` of
        `model.body` (a `Backbone`'s feature extractor: the head does not change `h`), else of `model`."""
        key = FeatureKey(model_name, weights or weights_fingerprint(getattr(model, "body", model)), dataset, split,
                         None if classes is None else tuple(int(c) for c in classes))
        return self.get(key, lambda: (extract_features(model, data, device, batch_size), data.targets,
                                      data.classes), expect_labels=data.targets)
