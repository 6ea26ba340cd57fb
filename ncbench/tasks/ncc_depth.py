"""`ncc_depth`: minimal NCC-depth across the layers of a timm backbone (Galanti 2022; Ben-Shaul & Dekel
2022; SPEC §5).

For every block (or stage) ℓ, pooled as in `ncbench.models.layers`: `ncc_acc` on train and on test
(both with the train class means), `nc4` against the network's prediction `argmax(logits)` (train
means on both splits), `cdnv` and `nc1` (each split around its own means).
**Minimal NCC-depth** at ε = the smallest ℓ whose train NCC error `1 − ncc_acc` is ≤ ε (default
ε = 0.01); the same rule on the test errors gives the test depth; no qualifying layer → NaN.
A test NCC error ≤ ε is out of reach whenever the network's own test error exceeds ε, so the test
depth is also given against the last layer (`ncc_depth_test_matched`: the smallest ℓ whose test NCC
accuracy is ≥ (1 − ε) × the last layer's). Relative depths `ℓ / (L − 1)` (0: the first layer, 1: the
last of L) compare architectures of different depth (`ncc_depth_relative`, `…_matched_relative`).

Cost: one forward per split gives all layers (`LayerFeatures`); each layer's statistics are the
metric engine's streaming state (`CollapseStats`, then `NearestCentrePass` around its means), the
pooled train features are kept for pass two when they fit `FEATURE_CACHE_BYTES` (else the forward
runs again). The test split needs one pass: its own means only enter `cdnv`/`nc1`.

Imbalance (`options.imbalance_ratio` R, `imbalance_profile`, `n_majority`, `n`): the training runs on
`ncbench.data.imbalance.imbalanced_view` of the train split, the very run a `minority_collapse`
task with the same recipe trains for its learnable classifier (review §5 asks how imbalance changes
the minimal depth; `tasks/ncc_depth_imbalance_mnist5k.yaml` sweeps R).

Sources (`options.source`): `trajectory` (default) measures the shared `train_collapse` run through a
per-epoch probe, so the depth curve over training costs no retraining; `pretrained` measures the
backbone as built (timm pretrained weights, `checkpoint:`, or the random init) without training; its
head is untrained, so `nc4` is reported as missing.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import ClassVar

import pandas as pd

from ncbench.data.imbalance import PROFILES, imbalance_key
from ncbench.models.layers import GRANULARITIES, TOKEN_POOLS
from ncbench.tasks.base import TaskMeta, TaskOutput, register_task, rows_from
from ncbench.tasks.options import Options, integer, number, one_of
from ncbench.tasks.trajectory_task import TrainedOptions, TrajectoryTask
from ncbench.training.layer_statistics import LayerStatistics, layer_statistics
from ncbench.training.minimal_depth import depths, relative_depth


@dataclass(frozen=True)
class NCCDepthOptions(TrainedOptions):
    epsilon: float = 0.01
    granularity: str = "blocks"
    token_pool: str = "auto"
    source: str = "trajectory"
    batch_size: int = 512
    # train on an imbalanced view (review §5: how imbalance changes the depth)
    imbalance_ratio: float = 1.0
    imbalance_profile: str = "step"
    n_majority: int | None = None
    n: int | None = None
    CHECKS: ClassVar[dict] = {
        "epsilon": number(0, 1), "granularity": one_of(*GRANULARITIES), "token_pool": one_of(*TOKEN_POOLS),
        "source": one_of("trajectory", "pretrained", note="(the shared training run, or the backbone as built)"),
        "batch_size": integer(1), "imbalance_ratio": number(1), "imbalance_profile": one_of(*PROFILES),
        "n_majority": integer(1, optional=True), "n": integer(1, optional=True)}


@dataclass(frozen=True)
class NCCDepthMeta(TaskMeta):
    epsilon: float
    granularity: str              # the layers measured (`requested_granularity` resolved for the model)
    requested_granularity: str
    token_pool: str
    source: str                   # trajectory | pretrained
    layers: list[str]             # the layers' names, first to last


@register_task("ncc_depth")
class NCCDepth(TrajectoryTask):
    """Per-layer NCC accuracy, NC4, CDNV, NC1 and the minimal NCC-depth, per evaluated epoch."""

    OPTIONS: ClassVar[type[Options]] = NCCDepthOptions
    META: ClassVar[type[TaskMeta]] = NCCDepthMeta

    @property
    def probe_name(self) -> str:
        return f"ncc_depth/{self.options['granularity']}/{self.options['token_pool']}"

    def trajectory_config(self, **changes):
        o = self.options
        imbalance = imbalance_key(o["imbalance_profile"], o["imbalance_ratio"], o["n_majority"], o["n"])
        return super().trajectory_config(**({"imbalance": imbalance} | changes))

    def trajectories(self) -> list:
        return [] if self.options["source"] == "pretrained" else [self.trajectory_config()]

    def probes(self) -> dict:
        if self.options["source"] == "pretrained":
            return {}
        o = self.options

        def probe(model, train, test, epoch):   # a trajectory record stores plain data
            return layer_statistics(model, train, test, granularity=o["granularity"], token_pool=o["token_pool"],
                                    batch_size=o["batch_size"]).to_plain()
        return {self.probe_name: probe}

    # -- measuring ---------------------------------------------------------------------------
    def _pretrained(self) -> list[tuple[int, LayerStatistics]]:
        from ncbench.models.backbone import build_backbone
        from ncbench.training.trajectory import load_splits

        cfg = self.trajectory_config()
        train, test = load_splits(cfg)
        model = build_backbone(cfg.model, train.num_classes, train.in_chans, pretrained=cfg.pretrained, download=cfg.download,
                               checkpoint=cfg.checkpoint, **dict(cfg.model_kwargs)).to(cfg.device)
        o = self.options
        return [(0, layer_statistics(model, train, test, granularity=o["granularity"], token_pool=o["token_pool"],
                                     batch_size=o["batch_size"], with_prediction=False))]

    def _from_trajectory(self, ctx) -> list[tuple[int, LayerStatistics]]:
        rec, traj = self.read(ctx)
        per_epoch = [(e.epoch, LayerStatistics.from_plain(e.probes[self.probe_name])) for e in rec.epochs
                     if self.probe_name in e.probes]
        if per_epoch and per_epoch[-1][0] == rec.final().epoch:
            return per_epoch
        warnings.warn(f"{self.spec.name}: the cached training run has no per-layer probe; measuring the final "
                      "model only (no depth curve). Delete the run's cache to record the curve.", stacklevel=2)
        model = traj.load_final_model()
        train, test = traj.data()
        o = self.options
        return [(rec.final().epoch, layer_statistics(model, train, test, granularity=o["granularity"],
                                                     token_pool=o["token_pool"], batch_size=o["batch_size"]))]

    def run(self, ctx) -> TaskOutput:
        eps = float(self.options["epsilon"])
        measured = self._pretrained() if self.options["source"] == "pretrained" else self._from_trajectory(ctx)
        rows = []
        for epoch, st in measured:
            d = depths(st, eps)
            for split, s in (("train", st.train), ("test", st.test)):
                if s is None:
                    continue
                for i in range(len(st.layers)):
                    rows += rows_from(s.at(i), split=split, epoch=epoch, layer=i, n_samples=s.n)
                rows += rows_from({"ncc_depth": d[split]}, split=split, epoch=epoch, n_samples=s.n)
        epoch, st = measured[-1]
        d = depths(st, eps)
        summary = {"ncc_depth": d["train"], "ncc_depth_test": d.get("test", math.nan),
                   "test_ncc_acc_at_depth": d.get("test_ncc_acc_at_depth", math.nan),
                   "epsilon": eps, "n_layers": float(len(st.layers)),
                   "last_layer_train_ncc_acc": st.train.metrics["ncc_acc"][-1]}
        if st.test is not None:
            summary["last_layer_test_ncc_acc"] = st.test.metrics["ncc_acc"][-1]
            summary["ncc_depth_test_matched"] = d["test_matched"]
            summary["ncc_depth_test_matched_relative"] = relative_depth(d["test_matched"], len(st.layers))
        summary["ncc_depth_relative"] = relative_depth(d["train"], len(st.layers))
        rows += rows_from(summary, split="summary", epoch=epoch, n_samples=st.train.n)
        rows += self.baseline_rows()
        layers = pd.DataFrame({"index": range(len(st.layers)), "name": st.layers, "kind": st.kinds,
                               "dim": st.dims, "granularity": st.granularity, "token_pool": st.token_pool,
                               "epsilon": eps})
        meta = NCCDepthMeta(eps, st.granularity, self.options["granularity"], st.token_pool, self.options["source"],
                            list(st.layers))
        return TaskOutput(rows, tables={"layers": layers}, meta=meta)

