"""Every layer's collapse statistics of a backbone in one forward per split (SPEC §2, §5).

Each block (or stage) of `ncbench.models.layers.LayerFeatures` is pooled and streamed into its own
`CollapseStats` (then a `NearestCentrePass` around its train means): `ncc_acc`, `nc4` (against
`argmax(Wh+b)`), `cdnv` and `nc1` per layer. Shared by the `ncc_depth` task and the frozen-transfer
pass (`ncbench.transfer.frozen_pass`), so it lives in the training layer that owns feature passes.
"""
from __future__ import annotations

import torch

from ncbench.data.dataset import ImageDataset
from ncbench.metrics import CollapseStats
from ncbench.models.layers import LayerFeatures
from ncbench.training import distributed as dist
from ncbench.training.feature_pass import Replay, feature_pass, shard_rows

LAYER_METRICS = ("ncc_acc", "nc4", "cdnv", "nc1")


@torch.no_grad()
def layer_statistics(model, train: ImageDataset, test: ImageDataset | None, *, granularity: str = "blocks",
                     token_pool: str = "auto", batch_size: int = 512, with_prediction: bool = True,
                     device=None, on_batch=None) -> dict:
    """Per-layer collapse statistics of `model` (a `Backbone`) on `train` (and `test`).

    Returns `{"layers": [names], "kinds": [...], "dims": [...], "granularity", "token_pool",
    "train": {metric: [one value per layer]}, "test": {...}}` (plain Python, picklable).
    `with_prediction=False` leaves `nc4` NaN (no trained classifier to compare with).
    `"collapse"`: every SPEC §2 metric of the last layer (`pre_logits`) on each split (own means).
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
            out = {"layers": taps.names, "kinds": [layer.kind for layer in taps.layers],
                   "dims": [int(s.dim) for s in stats], "granularity": taps.granularity,
                   "token_pool": taps.token_pool}
            if dist.is_distributed():
                for c in second:
                    c.all_reduce()
            out["train"] = _collect(stats, second, second)
            out["collapse"] = {"train": stats[-1].compute(second[-1]).metrics}
            out["n"] = {"train": stats[0].n}
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
                out["test"] = _collect(tstats, None, ncc)
                out["collapse"]["test"] = {**tstats[-1].compute().metrics, "ncc_acc": ncc[-1].ncc_acc()}
                out["n"]["test"] = tstats[0].n
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
