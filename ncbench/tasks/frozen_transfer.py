"""`frozen_transfer`: a pretrained timm model (or a checkpoint) measured on a target data set, frozen.

No training. Preprocessing is timm's own evaluation transform for the model and its weights
(`ncbench.data.preprocessing`: input size, crop, mean/std, interpolation from `pretrained_cfg`,
overridable with `options.preprocess`). One streamed forward per split (`ncbench.transfer.
frozen_pass`) gives, on the target classes:

- per layer (blocks or stages, pooled; SPEC §5), the `layer` column naming it (`layer2.0`,
  `blocks.3`, `pre_logits`): `ncc_acc` (train means) on train and test, `cdnv`, `nc1`; the minimal
  NCC-depth at ε (`ncc_depth`, `ncc_depth_test`: the position of that layer, 0 = the first);
- at the penultimate layer (rows with an empty `layer`): every SPEC §2 collapse metric of each split;
- on the kept penultimate features (`max_train_per_class`, `max_test_per_class` per class, seeded):
  `probe_acc` (multinomial logistic regression, `ncbench.transfer.linear_probe`), `knn_acc`
  (train → test) and `knn_loo_acc` (leave-one-out on train), LogME, the three NCTI scores
  (`ncti_seli`, `ncti_ncc`, `ncti_vc`; the index itself needs a model set: `transfer_ranking`),
  and n-way k-shot episodes on the test split (`ncbench.fewshot`: NCC accuracy with 95% CI).

Weights are required: `--pretrained`, `--checkpoint`, or `--random-init` (`pretrained: random`) to
measure the seeded random initialisation on purpose; without any of them the task refuses to start.
A NaN headline value carries its own `status_reason` saying what to change (e.g. a test class with
fewer images than shots + queries), and `ncbench.plots.frozen_transfer` draws one figure per run.

The spec's `seed` is the measurement's: it offsets `subset_seed` (which images are kept) and the
few-shot episodes' seed (seed 0 keeps the options' own seeds), and seeds a random init; so the
seeds of a frozen entry measure how much its numbers move with the sampled target images and
episodes (a deterministic measurement, e.g. a probe on every kept image, has zero spread).

Estimators that a ranking uses see the target **train** split only (`logme`, `ncti_*`,
`knn_loo_acc`, `ncc_acc`, `nc1`, `cdnv`); the ground truth `probe_acc` is measured on **test**.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

import torch

from ncbench.models.layers import GRANULARITIES, TOKEN_POOLS
from ncbench.models.pretrained import RANDOM_INIT
from ncbench.tasks.base import Task, TaskMeta, TaskOutput, register_task, rows_from
from ncbench.tasks.options import Options, integer, integers, mapping, number, one_of

ESTIMATORS_ON_TRAIN = ("logme", "ncti_seli", "ncti_ncc", "ncti_vc", "knn_loo_acc", "ncc_acc", "nc1", "cdnv")


def weights_of(spec) -> dict:
    """`{"pretrained": tag or True/False or RANDOM_INIT, "checkpoint": path or None}` of a spec."""
    pre = spec.pretrained
    if isinstance(pre, str) and pre.lower() in ("true", "1", "yes"):
        pre = True
    if isinstance(pre, str) and pre.lower() in ("", "false", "0", "no"):
        pre = False
    return {"pretrained": pre, "checkpoint": spec.checkpoint}


def preprocess_overrides(value):
    """A mapping of overrides of timm's data config, keys among `ncbench.data.preprocessing.OVERRIDES`."""
    from ncbench.data.preprocessing import OVERRIDES

    mapping("a mapping of timm data-config overrides")(value)
    bad = sorted(set(value or {}) - set(OVERRIDES))
    if bad:
        raise ValueError(f"has unknown keys {bad}; known: {list(OVERRIDES)}")
    return value


@dataclass(frozen=True)
class FrozenTransferOptions(Options):
    classes: list | None = None          # target class subset (label ids), relabelled 0..n-1
    train_split: str = "train"
    test_split: str = "test"
    preprocess: dict = field(default_factory=dict)   # overrides of timm's data config (input_size, crop_pct, mean, ...)
    in_chans: int | None = None          # default: the channels of preprocess.input_size, else 3
    model_kwargs: dict = field(default_factory=dict)  # passed to timm.create_model (e.g. pretrained_cfg_overlay)
    batch_size: int = 256
    workers: int = 0
    pin_memory: bool | None = None
    granularity: str = "blocks"
    token_pool: str = "auto"
    epsilon: float = 0.01
    max_train_per_class: int = 500
    max_test_per_class: int = 500
    subset_seed: int = 0
    knn_k: int = 10
    knn_metric: str = "cosine"
    probe_l2: float = 1e-3
    fewshot: dict = field(default_factory=lambda: {"n_way": 5, "shots": [1, 5], "queries": 15, "episodes": 600,
                                                   "seed": 0})
    CHECKS: ClassVar[dict] = {
        "classes": integers(0, optional=True), "preprocess": preprocess_overrides,
        "in_chans": integer(1, optional=True), "model_kwargs": mapping("a mapping of timm.create_model keywords"),
        "batch_size": integer(1), "workers": integer(0), "granularity": one_of(*GRANULARITIES),
        "token_pool": one_of(*TOKEN_POOLS), "epsilon": number(0, 1), "max_train_per_class": integer(1),
        "max_test_per_class": integer(1), "subset_seed": integer(0), "knn_k": integer(1),
        "probe_l2": number(0, closed="()"), "fewshot": mapping()}


@dataclass(frozen=True)
class Preprocessing(TaskMeta):
    """timm's resolved evaluation config the images went through (`ncbench.data.preprocessing.data_config`)."""
    input_size: list[int]
    interpolation: str
    mean: list[float]
    std: list[float]
    crop_pct: float
    crop_mode: str


@dataclass(frozen=True)
class FrozenTransferMeta(TaskMeta):
    data_config: Preprocessing
    layers: list[str]
    granularity: str
    num_classes: int
    classes: list[str]            # the target's class names
    weights: str                  # the pretrained tag, or "random init"
    data: dict[str, str]          # what an `hf:` source read (`dataset_info`: columns, splits); {} for the others


@register_task("frozen_transfer")
class FrozenTransfer(Task):
    """Collapse, NCC-depth, probe, k-NN, few-shot, LogME and NCTI scores of a frozen model on a target."""

    MEASURES_RANDOM_INIT: ClassVar[bool] = True     # `--random-init` is meaningful here (and required without weights)

    OPTIONS: ClassVar[type[Options]] = FrozenTransferOptions
    META: ClassVar[type[TaskMeta]] = FrozenTransferMeta

    def __init__(self, spec):
        super().__init__(spec)
        o = self.options
        from ncbench.models.in_memory import is_in_memory

        w = weights_of(spec)
        if not w["pretrained"] and not w["checkpoint"] and not is_in_memory(spec.model):   # a module has its own
            raise ValueError(f"task '{spec.name}': no weights to measure (no --pretrained, no --checkpoint), so "
                             f"{spec.model} would be measured at its random initialisation: pass --pretrained TAG "
                             f"(true: timm's default) or --checkpoint FILE, or --random-init to measure the random "
                             f"initialisation on purpose (its rows then say pretrained={RANDOM_INIT})")
        if w["pretrained"] and w["pretrained"] != RANDOM_INIT and not w["checkpoint"]:   # fail fast, before any data is read
            from ncbench.models.pretrained import resolve_weights

            overlay = dict(o["model_kwargs"]).get("pretrained_cfg_overlay")
            resolve_weights(spec.model, w["pretrained"], spec.download, overlay)

    # -- building --------------------------------------------------------------------------
    def build_model(self, num_classes: int = 2):
        """The frozen backbone (a random init is seeded by the spec's seed); its head is unused."""
        from ncbench.models.backbone import build_backbone
        from ncbench.training.seeding import seed_everything

        o, w = self.options, weights_of(self.spec)
        size = (o["preprocess"] or {}).get("input_size")
        in_chans = int(o["in_chans"] or (size[0] if size else 3))
        seed_everything(self.spec.seed)
        pretrained = False if w["pretrained"] == RANDOM_INIT else w["pretrained"] or False
        model = build_backbone(self.spec.model, num_classes, in_chans, pretrained=pretrained,
                               checkpoint=w["checkpoint"], download=self.spec.download, **dict(o["model_kwargs"]))
        return model.to(self.spec.device).eval(), in_chans

    def splits(self, body, in_chans: int):
        """The target's streamed train and test splits with the model's preprocessing."""
        from ncbench.data.preprocessing import data_config, eval_transform, image_mode
        from ncbench.data.registry import image_source
        from ncbench.data.streaming import StreamedSplit, class_subset

        o, s = self.options, self.spec
        cfg = data_config(body, o["preprocess"])
        if cfg["input_size"][0] != in_chans:
            raise ValueError(f"task '{s.name}': the model takes {in_chans} input channels but the preprocessing "
                             f"input_size is {cfg['input_size']}: set options.preprocess.input_size, mean and std")
        transform, mode = eval_transform(cfg), image_mode(cfg)
        out = []
        for split in (o["train_split"], o["test_split"]):
            src = image_source(s.dataset, split, s.data_dir, s.download)
            if o["classes"] is not None:
                src = class_subset(src, [int(c) for c in o["classes"]])
            out.append(StreamedSplit(src, transform, mode, int(o["workers"]), o["pin_memory"]))
        return out[0], out[1], cfg

    # -- measuring -------------------------------------------------------------------------
    def measure(self) -> tuple[list[dict], FrozenTransferMeta]:
        from ncbench.data.registry import dataset_info
        from ncbench.training.minimal_depth import depths
        from ncbench.transfer.frozen_pass import measure_frozen

        o = self.options
        model, in_chans = self.build_model()
        train, test, cfg = self.splits(model.body, in_chans)
        K = len(train.classes)
        m = measure_frozen(model, train, test, batch_size=int(o["batch_size"]), granularity=o["granularity"],
                           token_pool=o["token_pool"], keep_per_class=o["max_train_per_class"],
                           keep_test_per_class=o["max_test_per_class"],
                           seed=int(o["subset_seed"]) + int(self.spec.seed),
                           device=self.spec.device)
        st = m.layers
        rows: list[dict] = []
        eps = float(o["epsilon"])
        d = depths(st, eps)
        for split, s in (("train", st.train), ("test", st.test)):
            for i in range(len(st.layers)):
                rows += rows_from({k: v for k, v in s.at(i).items() if k != "nc4"}, split=split,
                                  layer=st.layers[i], n_samples=s.n)
            rows += rows_from(s.collapse, split=split, n_samples=s.n)
        summary = {"probe_acc": math.nan, "knn_acc": math.nan, "knn_loo_acc": math.nan, "logme": math.nan}
        estimates, why = self.estimates(m, K)
        summary.update(estimates)
        tr, te = st.train.collapse, st.test.collapse
        summary.update({"ncc_acc": tr["ncc_acc"], "test_ncc_acc": te["ncc_acc"], "nc1": tr["nc1"], "cdnv": tr["cdnv"],
                        "test_nc1": te["nc1"], "test_cdnv": te["cdnv"],
                        "ncc_depth": d["train"], "ncc_depth_test": d["test"], "epsilon": eps,
                        "n_layers": float(len(st.layers)), "feature_dim": float(st.dims[-1]),
                        "n_train": float(st.train.n), "n_test": float(st.test.n),
                        "n_train_kept": float(len(m.train_labels)), "n_test_kept": float(len(m.test_labels))})
        for k, v in collapse_reasons(summary, {"train": st.train.n, "test": st.test.n}, K, eps).items():
            why.setdefault(k, v)
        rows += [{**r, "status_reason": nan_reason(r["metric"], why)} if math.isnan(r["value"]) else r
                 for r in rows_from(summary, split="summary", n_samples=st.train.n)]
        meta = FrozenTransferMeta(Preprocessing(**{k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()}),
                                  list(st.layers), st.granularity, K, list(train.classes),
                                  str(model.pretrained or "random init"),
                                  dataset_info(self.spec.dataset, self.spec.download))
        return rows, meta

    def estimates(self, m, K: int) -> tuple[dict[str, float], dict[str, str]]:
        """Probe, k-NN, LogME, NCTI and few-shot numbers on the kept penultimate features, and why
        some are NaN ({metric or metric prefix: what to change})."""
        from ncbench.fewshot.episodes import sample_episodes
        from ncbench.fewshot.evaluate import evaluate_episodes
        from ncbench.transfer.knn import knn_accuracy, knn_loo_accuracy
        from ncbench.transfer.linear_probe import probe_accuracy
        from ncbench.transfer.logme import logme
        from ncbench.transfer.ncti import ncti_components

        o = self.options
        htr, ytr, hte, yte = m.train_features, m.train_labels, m.test_features, m.test_labels
        out: dict[str, float] = {}
        if len(htr) == 0 or len(hte) == 0:
            return {}, {"": "no image of the target was kept (an empty train or test split after options.classes): "
                            "check --dataset and options.classes"}
        if not bool(torch.isfinite(htr).all() and torch.isfinite(hte).all()):
            return {}, {"": "the model's penultimate features are not finite (NaN/inf) on some target images: check "
                            "the weights and options.preprocess (mean, std, input_size)"}
        k = min(int(o["knn_k"]), len(htr) - 1)
        out["probe_acc"] = probe_accuracy(htr.numpy(), ytr.numpy(), hte.numpy(), yte.numpy(), l2=float(o["probe_l2"]))
        out["knn_acc"] = knn_accuracy(htr, ytr, hte, yte, k=k, metric=o["knn_metric"], num_classes=K)
        out["knn_loo_acc"] = knn_loo_accuracy(htr, ytr, k=k, metric=o["knn_metric"], num_classes=K)
        out["logme"] = logme(htr.numpy(), ytr.numpy(), K)
        out.update(ncti_components(htr.numpy(), ytr.numpy(), K))
        fs = dict(o["fewshot"] or {})
        n_way, queries = min(int(fs.get("n_way", 5)), K), int(fs.get("queries", 15))
        why = {}
        for shot in fs.get("shots", []):
            key = f"fewshot_ncc_acc_{int(shot)}shot"
            try:
                ep = sample_episodes(yte, n_way, int(shot), queries, int(fs.get("episodes", 600)),
                                     int(fs.get("seed", 0)) + int(self.spec.seed))
            except ValueError as e:                  # a class too small for k + q samples, or K < 2
                out[key] = out[key + "_ci95"] = math.nan
                why[key] = why[key + "_ci95"] = fewshot_reason(yte, n_way, int(shot), queries, str(e))
                continue
            res = evaluate_episodes(hte, ep).summary()
            out[key], out[key + "_ci95"] = res["fewshot_ncc_acc"], res["fewshot_ncc_acc_ci95"]
        return out, why

    def run(self, ctx) -> TaskOutput:
        rows, meta = self.measure()
        return TaskOutput(rows, meta=meta)


def fewshot_reason(test_labels: torch.Tensor, n_way: int, shot: int, queries: int, error: str) -> str:
    """Why an n-way k-shot score is NaN, and what to change (SPEC §6: episodes on the test split)."""
    counts = torch.bincount(test_labels.long()) if len(test_labels) else torch.zeros(0, dtype=torch.long)
    counts = counts[counts > 0]
    if n_way < 2 or len(counts) < n_way:
        return (f"{n_way}-way episodes need at least 2 classes with test images, the target has {len(counts)}: "
                f"measure a target with more classes")
    small = int(counts.min())
    return (f"the test split keeps {small} images in its smallest class, fewer than {shot} shot + {queries} queries "
            f"= {shot + queries}: lower options.fewshot.queries (or shots), raise options.max_test_per_class, or "
            f"give the target more test images per class ({error.split(';')[0]})")


def collapse_reasons(summary: dict[str, float], n: dict, K: int, eps: float) -> dict[str, str]:
    """Why the collapse and depth headline numbers are NaN, and what to change."""
    why = {}
    if K < 2:
        why[""] = f"the target has {K} class: collapse, probe and few-shot numbers need at least 2; check options.classes"
    for depth, split in (("ncc_depth", "train"), ("ncc_depth_test", "test")):
        why[depth] = (f"no layer reaches {split} NCC error <= epsilon = {eps:g} (SPEC §5: missing, never the last "
                      f"layer): see the per-layer ncc_acc rows, or raise options.epsilon")
    for m, split in (("ncc_acc", "train"), ("nc1", "train"), ("cdnv", "train"), ("test_ncc_acc", "test"),
                     ("test_nc1", "test"), ("test_cdnv", "test")):
        if math.isnan(summary.get(m, 0.0)):
            why.setdefault(m, f"{m} is undefined on the {split} split ({n.get(split, 0)} images, {K} classes): it needs "
                              f"at least 2 classes with images and finite features; check --dataset, options.classes "
                              f"and the weights")
    return why


def nan_reason(metric: str, why: dict[str, str]) -> str:
    """The reason recorded for `metric` (its own, else the run-wide one under ""), never empty."""
    return why.get(metric) or why.get("") or (f"{metric} is NaN: the estimator is undefined on these features "
                                              f"(e.g. too few kept images per class); raise options.max_train_per_class "
                                              f"or measure more images")
