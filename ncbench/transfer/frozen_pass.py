"""One streamed pass of a frozen model over a target's train and test splits.

Every layer's collapse statistics come from `ncbench.training.layer_statistics` (one
forward per split gives all layers; the metric engine's streaming state, so memory is bounded by
the batch and the statistics). During the same forward, the penultimate (`pre_logits`) features
of a fixed, seeded, per-class subset (`keep_per_class`, None = all) are kept for the estimators
that need samples (linear probe, k-NN, LogME, NCTI, few-shot episodes): memory
`O(K · keep_per_class · d)`, whatever the data set size.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ncbench.training.layer_statistics import LayerStatistics, layer_statistics


def kept_indices(targets: torch.Tensor, per_class: int | None, seed: int = 0) -> torch.Tensor:
    """Sorted positions of at most `per_class` samples of each class (a seeded random choice)."""
    if per_class is None:
        return torch.arange(len(targets))
    gen = torch.Generator().manual_seed(int(seed))
    keep = []
    for c in torch.unique(targets):
        idx = torch.nonzero(targets == c).squeeze(1)
        keep.append(idx[torch.randperm(len(idx), generator=gen)[:int(per_class)]])
    return torch.sort(torch.cat(keep)).values if keep else torch.empty(0, dtype=torch.long)


class FeatureKeeper:
    """`on_batch` callback: copies the penultimate features of the chosen positions of each split."""

    def __init__(self, keep: dict[str, torch.Tensor]):
        self.keep = keep
        self.offset = {s: 0 for s in keep}
        self.parts: dict[str, list] = {s: [] for s in keep}

    def __call__(self, split: str, pooled: list[torch.Tensor], y: torch.Tensor) -> None:
        a = self.offset[split]
        b = a + len(y)
        idx = self.keep[split]
        sel = idx[(idx >= a) & (idx < b)] - a
        if len(sel):
            h = pooled[-1].detach()
            self.parts[split].append((h[sel.to(h.device)].float().cpu(), y.cpu()[sel]))
        self.offset[split] = b

    def features(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        parts = self.parts[split]
        if not parts:
            return torch.empty(0, 0), torch.empty(0, dtype=torch.long)
        return torch.cat([h for h, _ in parts]), torch.cat([y for _, y in parts])


@dataclass
class FrozenMeasurement:
    layers: LayerStatistics
    train_features: torch.Tensor      # kept pre-logits features (n_keep, d), float32, CPU
    train_labels: torch.Tensor
    test_features: torch.Tensor
    test_labels: torch.Tensor


def measure_frozen(model, train, test, *, batch_size: int = 256, granularity: str = "blocks",
                   token_pool: str = "auto", keep_per_class: int | None = None,
                   keep_test_per_class: int | None = None, seed: int = 0, device=None) -> FrozenMeasurement:
    """All layers' statistics on `train`/`test` (streamed splits or `ImageDataset`s) and the kept
    penultimate features, from one forward per split (a second over train only when its pooled
    features exceed the engine's cache budget, for the train NCC pass)."""
    keeper = FeatureKeeper({"train": kept_indices(train.targets, keep_per_class, seed),
                            "test": kept_indices(test.targets, keep_test_per_class, seed + 1)})
    stats = layer_statistics(model, train, test, granularity=granularity, token_pool=token_pool,
                             batch_size=batch_size, with_prediction=False, device=device, on_batch=keeper)
    (htr, ytr), (hte, yte) = keeper.features("train"), keeper.features("test")
    return FrozenMeasurement(stats, htr, ytr, hte, yte)
