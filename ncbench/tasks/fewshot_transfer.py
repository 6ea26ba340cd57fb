"""`fewshot_transfer`: few-shot transfer from collapsed features (Galanti et al. 2022; SPEC §6).

A backbone is trained on the *source* classes into the terminal phase (a shared `TrajectoryConfig`
with `classes=` the source subset, relabelled 0..S−1, on `source_split`, measured on
`source_test_split`), or taken as is (`backbone: pretrained`: timm's pretrained weights, the spec's
`checkpoint:`, or the seeded random init). Its frozen penultimate features of the disjoint *target*
classes are extracted once per backbone (`ncbench.training.feature_cache`, under
`ctx.cache_dir / "features"`), and n-way k-shot episodes with q queries per class are scored with the
nearest-class-centre rule (prototypes = support means) and optionally a logistic-regression probe
(`ncbench.fewshot.evaluate_episodes`). Episodes come from `ncbench.fewshot.sample_episodes`, or from
learn2learn's `Taskset` with `sampler: learn2learn`; they are drawn once per shot count from the target
labels with `episode_seed`, so every backbone of a sweep is scored on the very same episodes (a paired
comparison).

Reported per backbone: mean episode accuracy and its 95% half-width `1.96·std/√E` (SPEC §6), the
source-train `nc1`/`cdnv` (the trajectory's final train evaluation), the target `cdnv`/`nc1` over all
target images (SPEC §2), the mean episode CDNV, and the Spearman ρ across episodes between episode CDNV
and episode error (Galanti et al.: the few-shot error grows with the CDNV of the new classes).

Source classes: `source_classes: S` trains on the first `S` classes of the source set (None: all
of it). The review's thought model (§4.1.2: more source classes transfer better) is a group declared
in YAML, `sweep: {source_classes: [2, 3, 5]}` (`ncbench.specs.groups`): one run per S, all scored on
the same target episodes, with the paired gains declared beside it (`aggregate:`). Target classes
are fixed by the whole source set, never by `S`, and must share no class name with it (checked:
targets are never trained on).

Data: the source set is `source_set` (class indices of `source_split`; default all of them); the
targets are `target_classes` of `target_split` (default: every class whose name is not a source class).
`target_split` may list several splits (concatenated). On `mnist5k` (`tasks/fewshot_mnist5k.yaml`) the
source digits 0–4 train on split `train` and are measured on `test`; the targets are digits 5–9 from
*both* splits (all 2,500 images: no image of a target digit is ever used by the training, which only
sees the source digits). On `cifar-fs` / `mini-imagenet` the source is the 64-class `train/fit` split
(measured on `train/holdout`), the targets the 20 classes of `test`.

Rows (SPEC §9; `layer` is always empty: these are penultimate features; in a group the `variant`
column names the run, e.g. `source_classes=5`):

- `split="source_train"`: `accuracy`, `nc1`, `cdnv`, `nc1_quotient` (source train split);
  `split="source_test"`: `accuracy` (held-out images of the source classes);
- `split="target"`: `ncc_acc_5shot`, `ncc_acc_5shot_ci95`, `probe_acc_5shot(_ci95)`,
  `episode_cdnv_5shot`, `spearman_cdnv_error_5shot(_pvalue)` (per shot count), the measured mean
  episode error `ncc_error_5shot` beside its CDNV bound `ncc_error_bound_5shot`
  (`ncbench.metrics.cdnv_bounds.fewshot_error_bound`, target-class moments from all target images),
  `..._capped_5shot` (min(1, bound): what the claims and boards read), `..._ratio_5shot` (bound /
  measured) and `..._vacuous_5shot` (1.0 when the bound is ≥ 1), and the
  target collapse `cdnv`, `nc1` over all target images; with `linear_probe: true`,
  `linear_probe_acc` (fitted on the first target split's images, tested on the others' images);
- `epoch` is the final epoch of the source training (0 for a pretrained backbone); `n_samples` is
  the number of episodes for episode metrics, of images otherwise;
- `split="summary"`: the headline: `ncc_acc_5shot(_ci95)`, `probe_acc_5shot(_ci95)`,
  `spearman_cdnv_error_5shot(_pvalue)` per shot count; `source_nc1`, `source_cdnv`,
  `source_train_accuracy`, `source_test_accuracy`, `terminal_phase_epoch`, `target_cdnv`,
  `target_nc1`, `target_linear_probe_acc` (with `linear_probe`), `source_classes`, `chance` = 1/n.

A pandas user: `df[(df.split == "summary") & (df.metric == "ncc_acc_5shot")]` and the
`source_classes` parsed from `variant` (`ncbench.results.variants.parse_variant`) give the curve;
`per_shot.csv` has the same numbers wide (one row per shot count) and `episodes.csv` the per-episode
values.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import pandas as pd
import torch

from ncbench.data import load_dataset
from ncbench.data.dataset import ImageDataset
from ncbench.provenance.threads import torch_threads
from ncbench.tasks.base import TaskMeta, TaskOutput, register_task, rows_from
from ncbench.tasks.options import Options, as_list, boolean, integer, integers, one_of
from ncbench.tasks.trajectory_task import TrainedOptions, TrajectoryTask
from ncbench.training.trajectory import TrajectoryConfig

BACKBONES = ("trajectory", "pretrained")
SAMPLERS = ("ncbench", "learn2learn")
SOURCE_METRICS = ("nc1", "cdnv", "nc1_quotient")


def _concat(parts: list[ImageDataset], split: str) -> ImageDataset:
    if len(parts) == 1:
        return parts[0]
    first = parts[0]
    if any(p.classes != first.classes for p in parts):
        raise ValueError(f"target splits {split} have different class lists: they cannot be pooled")
    return ImageDataset(torch.cat([p.images for p in parts]), torch.cat([p.targets for p in parts]),
                        first.classes, first.mean, first.std, first.name, split, dict(first.info))


def _per_shot(values: dict, k: int) -> dict:
    """`values` with the `_{k}shot` tag dropped from its names, other shot counts' entries left out."""
    out = {}
    for m, v in values.items():
        if re.search(rf"_{k}shot(_|$)", m):
            out[re.sub(rf"_{k}shot", "", m)] = v
        elif not re.search(r"_\d+shot(_|$)", m):
            out[m] = v
    return out


def linear_probe_split(features: torch.Tensor, labels: torch.Tensor, n_first: int, l2: float) -> float:
    """Linear-probe accuracy (`ncbench.transfer.linear_probe`) fitted on rows `[:n_first]`, tested on
    the rest."""
    from ncbench.transfer.linear_probe import probe_accuracy

    x, y = features.double().cpu().numpy(), labels.cpu().numpy()
    if not 0 < n_first < len(y):
        raise ValueError(f"linear probe: {n_first} fitting rows of {len(y)}: both parts must be non-empty")
    return probe_accuracy(x[:n_first], y[:n_first], x[n_first:], y[n_first:], l2=l2)
def split_names(value):
    """A split name or a non-empty list of them (pooled)."""
    if not as_list(value) or not all(isinstance(v, str) for v in as_list(value)):
        raise ValueError("must be a split name or a list of them")
    return value
@dataclass(frozen=True)
class FewShotOptions(TrainedOptions):
    backbone: str = "trajectory"       # trajectory (train on the source classes) | pretrained (as is)
    source_set: list | None = None     # class indices of source_split forming the source set; None: all
    source_classes: int | None = None  # train on the first S classes of the source set; None: all of it
    target_classes: list | None = None  # class indices of target_split; None: all not named like a source class
    source_split: str = "train"
    source_test_split: str = "test"
    target_split: str | list = "test"  # a split or a list of splits (pooled)
    n_way: int = 5
    shots: list = field(default_factory=lambda: [1, 5])
    queries: int = 15
    episodes: int = 600
    episode_seed: int = 0
    sampler: str = "ncbench"           # ncbench (vectorised) | learn2learn (its Taskset)
    probe: bool = False                # also a logistic-regression probe per episode
    probe_l2: float = 1e-3
    probe_steps: int = 300
    linear_probe: bool = False         # Kornblith et al. 2021: a probe fitted on the first target split
    linear_probe_l2: float = 1e-3
    batch_size: int = 512
    CHECKS: ClassVar[dict] = {
        "backbone": one_of(*BACKBONES), "sampler": one_of(*SAMPLERS), "shots": integers(1),
        "n_way": integer(2), "queries": integer(1), "episodes": integer(1), "source_set": integers(0, optional=True),
        "source_classes": integer(2, optional=True), "target_classes": integers(0, optional=True), "target_split": split_names, "probe": boolean, "linear_probe": boolean,
        "probe_steps": integer(1), "batch_size": integer(1)}


@dataclass(frozen=True)
class FeatureCacheCounts(TaskMeta):
    hits: int                 # target features read from the feature cache
    misses: int               # target features computed


@dataclass(frozen=True)
class FewShotMeta(TaskMeta):
    target_classes: list[int]
    target_splits: list[str]
    source_classes: int | None    # S of the last backbone (None: a pretrained backbone, nothing trained)
    sampler: str
    shots: list[int]
    n_way: int
    feature_cache: FeatureCacheCounts
    chance: float             # 1 / n_way


@register_task("fewshot_transfer")
class FewShotTransfer(TrajectoryTask):
    """n-way k-shot NCC (and probe) accuracy on unseen classes, per number of source classes."""

    OPTIONS: ClassVar[type[Options]] = FewShotOptions
    META: ClassVar[type[TaskMeta]] = FewShotMeta

    def __init__(self, spec):
        super().__init__(spec)
        self._loaded: dict[str, ImageDataset] = {}   # splits loaded by this instance (`_load`), declared here
        o = self.options
        name = f"task '{spec.name}'"
        self.shots = sorted(as_list(o["shots"]))
        self.source_set = None if o["source_set"] is None else as_list(o["source_set"])
        self.S = S = o["source_classes"]
        if S is not None and self.source_set is not None and S > len(self.source_set):
            raise ValueError(f"{name}: options.source_classes is {S} but source_set has "
                             f"{len(self.source_set)} classes")
        if S is not None and o["backbone"] == "pretrained":
            raise ValueError(f"{name}: options.source_classes chooses what to train on; with backbone: "
                             "pretrained nothing is trained: drop it")
        if self.source_set is not None and len(self.source_set) < 2:
            raise ValueError(f"{name}: options.source_set needs at least 2 classes to train on")
        self.target_splits = as_list(o["target_split"])
        if o["linear_probe"] and len(self.target_splits) < 2:
            raise ValueError(f"{name}: options.linear_probe fits on the first target split and tests on the "
                             f"others: give options.target_split two splits (e.g. [train, test]), not "
                             f"{o['target_split']!r}")

    # -- the trainings ---------------------------------------------------------------------------
    def _classes(self, S: int | None) -> tuple[int, ...] | None:
        """Class indices of the source split trained on for `S` source classes (None: the whole set)."""
        if S is None:
            return None if self.source_set is None else tuple(self.source_set)
        base = self.source_set if self.source_set is not None else range(S)
        return tuple(int(c) for c in list(base)[:S])

    def trajectory_config(self, S: int | None = None, **changes) -> TrajectoryConfig:
        o = self.options
        return super().trajectory_config(**({"classes": self._classes(S), "train_split": o["source_split"],
                                             "test_split": o["source_test_split"]} | changes))

    def trajectories(self) -> list[TrajectoryConfig]:
        if self.options["backbone"] == "pretrained":
            return []
        return [self.trajectory_config(self.S)]

    # -- data ------------------------------------------------------------------------------------
    def _load(self, split: str) -> ImageDataset:
        """A split of the spec's data set, loaded once per task instance."""
        if split not in self._loaded:
            s = self.spec
            self._loaded[split] = load_dataset(s.dataset, split, s.data_dir, s.download)
        return self._loaded[split]

    def _source_names(self) -> list[str]:
        src = self._load(self.options["source_split"])
        idx = self.source_set if self.source_set is not None else range(src.num_classes)
        bad = [c for c in idx if not 0 <= c < src.num_classes]
        if bad:
            raise ValueError(f"task '{self.spec.name}': source_set classes {bad} are not in "
                             f"{self.spec.dataset}/{self.options['source_split']} (0..{src.num_classes - 1})")
        return [src.classes[c] for c in idx]

    def target_data(self) -> tuple[list[ImageDataset], list[int]]:
        """The target split(s) restricted to the target classes (original labels), and those classes."""
        from ncbench.data.imbalance import class_subset

        source = set(self._source_names())
        splits = [self._load(sp) for sp in self.target_splits]
        names = splits[0].classes
        if self.options["target_classes"] is None:
            targets = [k for k, n in enumerate(names) if n not in source]
        else:
            targets = as_list(self.options["target_classes"])
        seen = sorted({names[k] for k in targets if 0 <= k < len(names)} & source)
        if seen:
            raise ValueError(f"task '{self.spec.name}': target classes {seen} are source classes: few-shot "
                             "transfer needs targets never trained on; change target_classes or source_set")
        if len(targets) < self.options["n_way"]:
            raise ValueError(f"task '{self.spec.name}': {self.options['n_way']}-way episodes need at least "
                             f"{self.options['n_way']} target classes, {self.spec.dataset}/"
                             f"{'+'.join(self.target_splits)} has {len(targets)} outside the source set")
        return [class_subset(d, targets, relabel=False) for d in splits], targets

    def _features(self, cache, model, parts: list[ImageDataset], classes, model_name: str) -> tuple:
        feats, labels = [], []
        for split, d in zip(self.target_splits, parts):
            c = cache.features(model, d, model_name=model_name, dataset=self.spec.dataset, split=split,
                               classes=classes, device=self.spec.device, batch_size=self.options["batch_size"])
            feats.append(c.features)
            labels.append(c.labels)
        return torch.cat(feats), torch.cat(labels)

    # -- episodes --------------------------------------------------------------------------------
    def episodes(self, labels: torch.Tensor) -> dict:
        """One episode set per shot count, drawn from the target labels with `episode_seed`."""
        o = self.options
        if o["sampler"] == "learn2learn":
            from ncbench.fewshot.learn2learn_sampler import sample_episodes_learn2learn as sample
        else:
            from ncbench.fewshot import sample_episodes as sample
        return {k: sample(labels, n_way=o["n_way"], k_shot=k, n_query=o["queries"], episodes=o["episodes"],
                          seed=o["episode_seed"]) for k in self.shots}

    def _score(self, features, labels, episodes, epoch: int, n_first: int = 0) -> tuple[list, dict, list]:
        """Target rows of one backbone, its per-shot summary, and its per-episode table rows. With
        `linear_probe`, also `linear_probe_acc`: the target images of the first target split (its
        `n_first` rows) fit the probe, the others test it (Kornblith et al. 2021, "Why do better loss
        functions lead to less transferable features?": linear-probe transfer accuracy)."""
        from ncbench.fewshot import evaluate_episodes
        from ncbench.metrics import collapse_metrics
        from ncbench.metrics.cdnv_bounds import fewshot_bound_metrics

        o = self.options
        rows, summary, per_episode = [], {}, []
        for k, ep in episodes.items():
            res = evaluate_episodes(features, ep, probe=bool(o["probe"]), probe_l2=float(o["probe_l2"]),
                                    probe_steps=int(o["probe_steps"]))
            s = res.summary()
            vals = {f"ncc_acc_{k}shot": s["fewshot_ncc_acc"], f"ncc_acc_{k}shot_ci95": s["fewshot_ncc_acc_ci95"],
                    f"episode_cdnv_{k}shot": s["target_cdnv"],
                    f"spearman_cdnv_error_{k}shot": s["spearman_cdnv_error"],
                    f"spearman_cdnv_error_{k}shot_pvalue": s["spearman_cdnv_error_pvalue"]}
            if res.probe_acc is not None:
                vals[f"probe_acc_{k}shot"] = s["fewshot_probe_acc"]
                vals[f"probe_acc_{k}shot_ci95"] = s["fewshot_probe_acc_ci95"]
            vals.update(fewshot_bound_metrics(features, labels, k, o["n_way"], 1.0 - s["fewshot_ncc_acc"]))
            summary.update(vals)
            rows += rows_from(vals, split="target", epoch=epoch, n_samples=ep.num_episodes)
            table = {"k_shot": k, "episode": range(ep.num_episodes),
                     "ncc_acc": res.ncc_acc.numpy(), "cdnv": res.cdnv.numpy()}
            if res.probe_acc is not None:
                table["probe_acc"] = res.probe_acc.numpy()
            per_episode.append(pd.DataFrame(table))
        _, dense = torch.unique(labels, return_inverse=True)
        tc = collapse_metrics(features.double(), dense, num_classes=int(dense.max()) + 1)
        target = {"cdnv": tc["cdnv"], "nc1": tc["nc1"]}
        if o["linear_probe"]:
            target["linear_probe_acc"] = linear_probe_split(features, dense, n_first, float(o["linear_probe_l2"]))
        summary.update({f"target_{m}": v for m, v in target.items()})
        rows += rows_from(target, split="target", epoch=epoch, n_samples=len(labels))
        return rows, summary, per_episode

    # -- the task ----------------------------------------------------------------------------------
    def _backbones(self, ctx, cache):
        """Yield the backbone's `(S or None, epoch, model, source rows, source summary)` (training times
        are provenance: config.json's `training`)."""
        if self.options["backbone"] == "pretrained":
            yield self._pretrained(cache)
            return
        rec, traj = ctx.trajectory(self.trajectory_config(self.S), self.probes())
        f = rec.final()
        n_src = len(rec.class_counts)
        tr = {**{m: f.train.collapse[m] for m in SOURCE_METRICS}, "accuracy": f.train.accuracy}
        rows = list(rows_from(tr, split="source_train", epoch=f.epoch, n_samples=f.train.n))
        summ = {"source_nc1": tr["nc1"], "source_cdnv": tr["cdnv"], "source_train_accuracy": f.train.accuracy,
                "terminal_phase_epoch": float(rec.terminal_phase_epoch or math.nan)}
        if f.test is not None:
            rows += rows_from({"accuracy": f.test.accuracy}, split="source_test", epoch=f.epoch, n_samples=f.test.n)
            summ["source_test_accuracy"] = f.test.accuracy
        model = traj.build_model(n_src, self._load(self.target_splits[0]).in_chans)
        model.load_state_dict(traj.final_state_dict())
        yield n_src, f.epoch, model.to(self.spec.device).eval(), rows, summ

    def _pretrained(self, cache):
        """The backbone as built (timm pretrained weights, `checkpoint:`, or the seeded random init) and
        the SPEC §2 `nc1`/`cdnv` of its features on the source set (no classifier: its head is untrained)."""
        from ncbench.data.imbalance import class_subset
        from ncbench.metrics import collapse_metrics
        from ncbench.models.backbone import build_backbone
        from ncbench.training.seeding import seed_everything

        cfg = self.trajectory_config()
        src = self._load(cfg.train_split)
        if cfg.classes is not None:
            src = class_subset(src, list(cfg.classes))
        seed_everything(cfg.seed)
        model = build_backbone(cfg.model, src.num_classes, src.in_chans, pretrained=cfg.pretrained, download=cfg.download,
                               checkpoint=cfg.checkpoint, head_seed=cfg.seed).to(cfg.device).eval()
        c = cache.features(model, src, model_name=cfg.model, dataset=self.spec.dataset, split=cfg.train_split,
                           classes=cfg.classes, device=cfg.device, batch_size=self.options["batch_size"])
        m = collapse_metrics(c.features.double(), c.labels, num_classes=src.num_classes)
        src_m = {k: m[k] for k in SOURCE_METRICS}
        rows = list(rows_from(src_m, split="source_train", epoch=0, n_samples=len(c.labels)))
        summ = {"source_nc1": m["nc1"], "source_cdnv": m["cdnv"]}
        return None, 0, model, rows, summ

    def run(self, ctx) -> TaskOutput:
        from ncbench.training.feature_cache import FeatureCache

        cache = FeatureCache(Path(ctx.cache_dir) / "features", ctx.root)
        parts, target_classes = self.target_data()
        labels = torch.cat([p.targets for p in parts])
        episodes = self.episodes(labels)
        rows, tables, points = [], [], []
        for S, epoch, model, src_rows, src_summ in self._backbones(ctx, cache):
            feats, flabels = self._features(cache, model, parts, target_classes, self.spec.model)
            if not torch.equal(flabels, labels):
                raise RuntimeError("target features and episode labels disagree (feature cache out of date?)")
            with torch_threads(1 if feats.device.type == "cpu" else None):
                trows, tsumm, per_ep = self._score(feats, labels, episodes, epoch, len(parts[0]))
            rows += src_rows + trows
            for t in per_ep:
                t.insert(0, "source_classes", S)
            tables += per_ep
            points.append((S, epoch, {**src_summ, **tsumm}))
            del model
        rows += self._summary(points[-1])
        rows += self._baseline_rows(parts, labels, episodes)
        per_shot = pd.DataFrame([{"source_classes": S, "epoch": e, "k_shot": k, **_per_shot(p, k)}
                                 for S, e, p in points for k in self.shots])
        meta = FewShotMeta(list(target_classes), list(self.target_splits), points[-1][0], self.options["sampler"],
                           list(self.shots), self.options["n_way"], FeatureCacheCounts(cache.hits, cache.misses),
                           1 / self.options["n_way"])
        return TaskOutput(rows, tables={"per_shot": per_shot, "episodes": pd.concat(tables, ignore_index=True)},
                          meta=meta)

    def _baseline_rows(self, parts: list[ImageDataset], labels: torch.Tensor, episodes: dict) -> list[dict]:
        """The same episodes scored on raw pixels and on the seeded random initialisation of the
        architecture (`ncbench.baselines`): target rows and the headline accuracies, variant `baseline=…`."""
        if not self.options["baselines"]:
            return []
        from ncbench.baselines.measure import BASELINES, baseline_features

        cfg = self.trajectory_config(self.S)
        rows = []
        for name in BASELINES:
            got = [baseline_features(name, p, cfg.model, cfg.seed, p.num_classes, dict(cfg.model_kwargs)) for p in parts]
            feats = torch.cat([f for f, _ in got])
            if not torch.equal(torch.cat([y for _, y in got]), labels):
                raise RuntimeError("baseline features and episode labels disagree")
            with torch_threads(1):
                trows, summ, _ = self._score(feats, labels, episodes, 0, len(parts[0]))
            variant = f"baseline={name}"
            rows += [{**r, "epoch": None, "variant": variant} for r in trows]
            head = {m: v for m, v in summ.items() if m.startswith(("ncc_acc_", "target_"))}
            rows += rows_from(head, split="summary", variant=variant)
        return rows

    def _summary(self, point: tuple) -> list[dict]:
        """The headline of the backbone (shot-count metrics first)."""
        S, epoch, head = point
        out = {k: v for k, v in head.items() if not k.startswith("episode_cdnv")}
        out = {m: out[m] for m in sorted(out, key=lambda m: ("shot" not in m, m))}
        out.update(source_classes=float(S) if S is not None else math.nan, chance=1.0 / self.options["n_way"])
        return list(rows_from(out, split="summary", epoch=epoch))
