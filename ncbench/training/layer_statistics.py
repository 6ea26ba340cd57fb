"""Every layer's collapse statistics of a backbone in one forward per split (SPEC §2, §5).

Each block (or stage) of `ncbench.models.layers.LayerFeatures` is pooled and streamed into its own
`CollapseStats` (then a `NearestCentrePass` around its train means): `ncc_acc`, `nc4` (against
`argmax(Wh+b)`), `cdnv` and `nc1` per layer. Shared by the `ncc_depth` task and the frozen-transfer
pass (`ncbench.transfer.frozen_pass`), so it lives in the training layer that owns feature passes.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from ncbench.data.dataset import ImageDataset
from ncbench.metrics import CollapseStats
from ncbench.models.layers import LayerFeatures
from ncbench.training import distributed as dist
from ncbench.training.feature_pass import Replay, feature_pass, shard_rows

LAYER_METRICS = ("ncc_acc", "nc4", "cdnv", "nc1")
"""The statistics measured at every layer (`SplitLayers.metrics`' keys, in this order)."""


@dataclass(frozen=True)
class SplitLayers:
    """One split's statistics: `metrics[m][i]` for each of `LAYER_METRICS` at layer i, every SPEC §2
    metric of the last layer (`collapse`, around the split's own means) and the split's image count."""
    metrics: dict[str, list[float]]
    collapse: dict[str, float]
    n: int

    def at(self, i: int) -> dict[str, float]:
        """`LAYER_METRICS` at layer `i`."""
        return {m: self.metrics[m][i] for m in LAYER_METRICS}


@dataclass(frozen=True)
class LayerStatistics:
    """What `layer_statistics` measured: the layers (names, kinds, pooled dims, how they were chosen and
    pooled) and per split their statistics (`test` None when no test split was given). Plain data,
    picklable; `to_plain`/`from_plain` give the nested-dict form a trajectory record stores."""
    layers: list[str]
    kinds: list[str]
    dims: list[int]
    granularity: str
    token_pool: str
    train: SplitLayers
    test: SplitLayers | None = None

    def to_plain(self) -> dict:
        return asdict(self)

    @classmethod
    def from_plain(cls, plain: dict) -> LayerStatistics:
        splits = {s: None if plain.get(s) is None else SplitLayers(**plain[s]) for s in ("train", "test")}
        return cls(**{**plain, **splits})


@torch.no_grad()
def layer_statistics(model, train: ImageDataset, test: ImageDataset | None, *, granularity: str = "blocks",
                     token_pool: str = "auto", batch_size: int = 512, with_prediction: bool = True,
                     device=None, on_batch=None) -> LayerStatistics:
    """Per-layer collapse statistics of `model` (a `Backbone`) on `train` (and `test`): `LAYER_METRICS`
    per layer and split, every SPEC §2 metric of the last layer (`pre_logits`) on each split (own means).
    `with_prediction=False` leaves `nc4` NaN (no trained classifier to compare with).
    `on_batch(split, pooled, y)` sees each batch of the first pass of each split (e.g. to keep the
    penultimate features): one forward serves every layer and the caller.
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    K = len(train.classes)
    try:
        with LayerFeatures(model, granularity, token_pool) as taps:
            L = len(taps.layers)

            def pooled_and_logits(x):
                pooled, _, logits = taps(x)
                return pooled, logits

            def forward(data):
                return feature_pass(model, data, device, batch_size, forward=pooled_and_logits,
                                    logits=with_prediction)

            stats = [CollapseStats(K, device=device) for _ in range(L)]
            cache = Replay(lambda: forward(train), shard_rows(train))   # kept for pass two if it fits
            for pooled, y, z in cache:
                for s, p in zip(stats, pooled):
                    s.update(p, y)
                if on_batch is not None:
                    on_batch("train", pooled, y)
            if dist.is_distributed():
                for s in stats:
                    s.all_reduce()
            second = [s.second_pass() for s in stats]
            for pooled, y, z in cache:
                for c, p in zip(second, pooled):
                    c.update(p, y, z)
            del cache
            if dist.is_distributed():
                for c in second:
                    c.all_reduce()
            train_stats = SplitLayers(_collect(stats, second, second), stats[-1].compute(second[-1]).metrics,
                                      stats[0].n)
            test_stats = None
            if test is not None:
                tstats = [CollapseStats(K, s.dim, device) for s in stats]
                ncc = [s.second_pass() for s in stats]       # around the train means
                for pooled, y, z in forward(test):
                    for s, c, p in zip(tstats, ncc, pooled):
                        s.update(p, y)
                        c.update(p, y, z)
                    if on_batch is not None:
                        on_batch("test", pooled, y)
                if dist.is_distributed():
                    for s, c in zip(tstats, ncc):
                        s.all_reduce()
                        c.all_reduce()
                test_stats = SplitLayers(_collect(tstats, None, ncc),
                                         {**tstats[-1].compute().metrics, "ncc_acc": ncc[-1].ncc_acc()}, tstats[0].n)
            out = LayerStatistics(list(taps.names), [layer.kind for layer in taps.layers],
                                  [int(s.dim) for s in stats], taps.granularity, taps.token_pool, train_stats,
                                  test_stats)
    finally:
        model.train(was_training)
    return out


def _collect(stats, second, ncc) -> dict[str, list[float]]:
    """`cdnv`, `nc1` from each layer's own state; `ncc_acc`, `nc4` from the nearest-centre passes."""
    cols = {m: [] for m in LAYER_METRICS}
    for i, s in enumerate(stats):
        m = s.compute(second[i] if second is not None else None).metrics
        cols["cdnv"].append(m["cdnv"])
        cols["nc1"].append(m["nc1"])
        cols["ncc_acc"].append(ncc[i].ncc_acc())
        cols["nc4"].append(ncc[i].nc4())
    return cols
