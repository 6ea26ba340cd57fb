"""Metric passes over un-augmented splits: every sample exactly once, features streamed into the
metric engine (`CollapseStats` pass one, then the nearest-centre pass two around its means)."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ncbench.data.dataset import ImageDataset
from ncbench.metrics import CollapseStats, HeldoutStats
from ncbench.metrics.statistic import Totals
from ncbench.models.backbone import Backbone
from ncbench.training import distributed as dist
from ncbench.training.feature_pass import Replay, feature_pass, shard_rows


def feature_batches(model: Backbone, data: ImageDataset, device, batch_size: int = 512,
                    desc: str = "") -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """(features, labels, logits) of this rank's shard of `data`, in eval mode, no augmentation."""
    return feature_pass(model, data, device, batch_size, desc=desc)


def replayable_features(model, data, device, batch_size=512, desc="") -> Replay:
    """A feature pass to iterate twice: from memory when it fits `FEATURE_CACHE_BYTES`, else recomputed."""
    return Replay(lambda: feature_batches(model, data, device, batch_size, desc=desc), shard_rows(data))


@dataclass
class SplitEval:
    """One split's numbers at one checkpoint."""

    loss: float
    accuracy: float
    n: int
    collapse: dict[str, float]                 # SPEC §2 metrics around this split's own means
    diagnostics: dict[str, float]
    cdnv_matrix: torch.Tensor | None = None
    extra: dict[str, float] = field(default_factory=dict)


def evaluate(model: Backbone, train: ImageDataset, test: ImageDataset | None, device,
             batch_size: int = 512, global_mean: str = "class",
             progress: bool = True) -> tuple[SplitEval, SplitEval | None]:
    """Train-split collapse, and on the test split: its own collapse, strong/weak test collapse
    around the train means (SPEC §3) and the NCC accuracy with train means."""
    W, b = model.classifier()
    K = len(train.classes)
    stats = CollapseStats(K, model.num_features, device)
    sums = Totals(device, loss=0.0, correct=0, seen=0)
    passes = replayable_features(model, train, device, batch_size, desc="features: train" if progress else "")
    for h, y, z in passes:
        stats.update(h, y)
        add_predictions(sums, z, y)
    if dist.is_distributed():
        stats.all_reduce()
    if stats.n == 0:  # every feature non-finite (a diverged run): NaN metrics with the reason, no crash
        return diverged(stats, sums, test)
    second = stats.second_pass(W, b)
    for h, y, z in passes:
        second.update(h, y, z)
    if dist.is_distributed():
        second.all_reduce()
        sums.all_reduce()
    res = stats.compute(second, W, b, global_mean=global_mean, cdnv_matrix=True)
    train_eval = SplitEval(sums.loss / sums.seen, sums.correct / sums.seen, int(sums.seen), res.metrics,
                           res.diagnostics, res.cdnv_matrix)
    if test is None:
        return train_eval, None
    tstats = CollapseStats(K, model.num_features, device)
    held = {a: HeldoutStats(stats, a, W, b) for a in ("label", "prediction", "ncc")}
    ncc_train_means = stats.second_pass(W, b)
    tsums = Totals(device, loss=0.0, correct=0, seen=0)
    tpasses = replayable_features(model, test, device, batch_size, desc="features: test" if progress else "")
    for h, y, z in tpasses:
        tstats.update(h, y)
        for hs in held.values():
            hs.update(h, y, z)
        ncc_train_means.update(h, y, z)
        add_predictions(tsums, z, y)
    if dist.is_distributed():
        for s in (tstats, ncc_train_means, *held.values(), tsums):
            s.all_reduce()
    tsecond = tstats.second_pass(W, b)
    for h, y, z in tpasses:
        tsecond.update(h, y, z)
    if dist.is_distributed():
        tsecond.all_reduce()
    tres = tstats.compute(tsecond, W, b, global_mean=global_mean, cdnv_matrix=True)
    extra = {"ncc_acc_train_means": ncc_train_means.ncc_acc(), "nc4_train_means": ncc_train_means.nc4()}
    for a, hs in held.items():
        mode = {"label": "strong", "prediction": "weak", "ncc": "weak_ncc"}[a]
        extra.update({f"{mode}_{k}": v for k, v in hs.compute(global_mean=global_mean).items()})
    test_eval = SplitEval(tsums.loss / tsums.seen, tsums.correct / tsums.seen, int(tsums.seen), tres.metrics,
                          tres.diagnostics, tres.cdnv_matrix, extra)
    return train_eval, test_eval


HELDOUT_KEYS = tuple(f"{mode}_{m}" for mode in ("strong", "weak", "weak_ncc") for m in ("nc1", "trace_sw", "cdnv"))


def add_predictions(totals: Totals, logits: torch.Tensor, labels: torch.Tensor) -> None:
    """Fold a batch's summed cross-entropy, correct predictions and size into `totals`."""
    totals.update(loss=float(F.cross_entropy(logits, labels, reduction="sum")),
                  correct=int((logits.argmax(1) == labels).sum()), seen=len(labels))


def diverged(stats: CollapseStats, sums: Totals, test: ImageDataset | None) -> tuple[SplitEval, SplitEval | None]:
    """The evaluation of a run whose features are all non-finite: every metric NaN, reasons kept."""
    if dist.is_distributed():
        sums.all_reduce()
    res = stats.compute()
    nan = float("nan")
    train_eval = SplitEval(nan, sums.correct / max(sums.seen, 1), int(sums.seen), res.metrics,
                           {**res.diagnostics, "reasons": "; ".join(res.reasons)})
    if test is None:
        return train_eval, None
    extra = dict.fromkeys(("ncc_acc_train_means", "nc4_train_means", *HELDOUT_KEYS), nan)
    return train_eval, SplitEval(nan, nan, len(test), dict.fromkeys(res.metrics, nan), {}, None, extra)
