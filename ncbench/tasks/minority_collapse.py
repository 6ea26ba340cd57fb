"""`minority_collapse`: class imbalance, minority collapse and fixed simplex-ETF classifiers (SPEC §7).

One training at an imbalance ratio `ratio` (R = n_max / n_min) with a classifier `classifier`, on an
imbalanced view of the train split (`ncbench.data.imbalance.imbalanced_view`, profile `step` with
`n_majority` full classes, or `exp`); the test split stays balanced. The R × classifier grid is a
group declared in YAML (`sweep: {ratio: [1, 10, 100], classifier: [learnable, etf, etf_dr]}`,
`ncbench.specs.groups`), each point one run. Classifiers (Fang et al. 2021; Yang et al. 2022):

- `learnable`: linear classifier with bias, cross-entropy;
- `etf`: fixed simplex-ETF classifier (`FixedETFHead`), cross-entropy;
- `etf_dr`: fixed simplex-ETF classifier, dot-regression loss.

Per evaluated epoch, a probe records test accuracy overall / on majority / on minority classes (and
many / medium / few for `exp`) and minority collapse: the mean pairwise cosine of the minority
classifier rows and of the minority centred class means `μ_k − μ_G`
(`ncbench.metrics.minority_cosine`), with train means (the imbalanced set) and test means. The SPEC §2
metrics of the imbalanced train set come from the trajectory's evaluation, with
`global_mean="class"` (`μ_G` = mean of class means, not weighted by the skewed counts); the probe
also gives the train cosine around the sample mean (`…_sample_mean`) for comparison.

Which features: for an ETF head with a projection (`d < K`) the probe measures the projected
features `head.project(h)` against the exact ETF `head.weight`; the SPEC §2 metrics of the shared
evaluation use the raw features with `Backbone.classifier()` (`W A`). With `d >= K` (every shipped
spec) the two coincide.

Sharing: R = 1 with the default `n` trains on the train split as it is (checked to be balanced), so
the learnable R = 1 run is the very trajectory of a `train_collapse` task with the same data and
recipe (`fang2021` equals `papyan2020`: `train_collapse_cifar10` and the step spec share it).

Rows: plain metric names (`minority_accuracy`); in a group the `variant` column names the point
(`ratio=10,classifier=etf`). Headline (`split="summary"`): final minority / majority / overall test
accuracy and the minority classifier and feature-mean cosines. `runs.csv` lists the run's class counts.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from functools import partial
from typing import ClassVar

import pandas as pd
import torch

from ncbench.data.imbalance import GROUPS, PROFILES, imbalance_key
from ncbench.metrics.minority import ClassGroupStats, group_accuracies, minority_cosine
from ncbench.tasks.base import TaskMeta, TaskOutput, register_task, rows_from
from ncbench.tasks.options import Options, integer, number, one_of
from ncbench.tasks.trajectory_task import TrainedOptions, TrajectoryTask
from ncbench.training import distributed as dist
from ncbench.training.evaluation import feature_batches
from ncbench.training.trajectory import TrajectoryConfig, load_splits

VARIANTS: dict[str, tuple[str, str]] = {          # classifier -> (head, loss)
    "learnable": ("linear", "ce"),
    "etf": ("etf", "ce"),
    "etf_dr": ("etf_dr", "dot_regression"),
}
GLOBAL_MEAN = "class"
HEADLINE = ("minority_accuracy", "majority_accuracy", "accuracy", "minority_classifier_cosine",
            "minority_feature_cosine")
def _classifier_rows(model) -> torch.Tensor:
    """Classifier rows in the space the probe measures: the exact ETF for a `FixedETFHead`."""
    head = model.head
    if hasattr(head, "project"):
        return head.weight.detach()
    return model.classifier()[0]


@torch.no_grad()
def _split_stats(model, data, K: int, device) -> ClassGroupStats:
    """Per-class feature sums, counts and the confusion matrix of `data` (`ClassGroupStats`), summed
    over ranks. Features are `head.project(h)` when the head has a projection."""
    project = getattr(model.head, "project", None)
    stats = ClassGroupStats(K, _classifier_rows(model).shape[1], device)
    for h, y, z in feature_batches(model, data, device, 512):
        stats.update(project(h) if project is not None else h, y, z)
    if dist.is_distributed():
        stats.all_reduce()
    return stats


def confusion_accuracies(confusion: torch.Tensor, minority: list[int], groups: dict | None) -> dict[str, float]:
    """`imbalance_accuracies` from a confusion matrix (rows: labels, columns: predictions)."""
    return group_accuracies(confusion.diagonal(), confusion.sum(1), minority, groups)


def minority_probe(model, train, test, epoch: int, n_majority: int | None = None) -> dict:
    """Per-epoch minority-collapse measurements (the task's probe).

    Minority classes come from `train.info` (an `imbalanced_view`); on a split without that record
    (the balanced R = 1 run, trained on the split as it is) they are the last `K − n_majority`
    classes, `n_majority` defaulting to `K // 2` as in `imbalanced_view`.
    """
    info = train.info
    K = train.num_classes
    if "minority_classes" in info:
        minority = list(info["minority_classes"])
    else:
        k_maj = K // 2 if n_majority is None else int(n_majority)
        if not 1 <= k_maj <= K - 2:
            raise ValueError(f"minority_probe: n_majority={n_majority} leaves {K - k_maj} minority "
                             f"classes of K={K}; minority collapse needs at least 2")
        minority = list(range(k_maj, K))
    groups = {g: info[f"{g}_classes"] for g in GROUPS if f"{g}_classes" in info} or None
    device = next(iter(model.parameters())).device
    W = _classifier_rows(model)
    out = {"minority_classifier_cosine": minority_cosine(W, minority)}
    tr = _split_stats(model, train, K, device).compute(minority, groups)
    out["train_minority_feature_cosine"] = tr.pop("minority_feature_cosine")
    out["train_minority_feature_cosine_sample_mean"] = tr.pop("minority_feature_cosine_sample_mean")
    out.update({f"train_{k}": v for k, v in tr.items()})
    te = _split_stats(model, test, K, device).compute(minority, groups)
    out["test_minority_feature_cosine"] = te.pop("minority_feature_cosine")
    out.update({f"test_{k}": v for k, v in te.items() if k != "minority_feature_cosine_sample_mean"})
    return out


@dataclass(frozen=True)
class MinorityCollapseOptions(TrainedOptions):
    profile: str = "step"               # step | exp
    ratio: float = 10                   # imbalance ratio R = n_max / n_min
    classifier: str = "learnable"       # learnable | etf | etf_dr
    n_majority: int | None = None       # majority classes K_maj (default K // 2)
    n: int | None = None                # samples of the largest class (default: smallest train class)
    MOVED: ClassVar[dict] = {"ratios": "ratio", "variants": "classifier"}
    CHECKS: ClassVar[dict] = {"profile": one_of(*PROFILES), "ratio": number(1, note="(R = n_max / n_min)"),
                              "classifier": one_of(*VARIANTS), "n_majority": integer(1, optional=True),
                              "n": integer(1, optional=True)}


@dataclass(frozen=True)
class MinorityRun(TaskMeta):
    """The run a `minority_collapse` task measured (`runs.csv` without its class counts)."""
    ratio: float
    classifier: str
    head: str
    loss: str
    profile: str
    n_train: int
    trajectory: str           # the training run's cache key


@dataclass(frozen=True)
class MinorityCollapseMeta(TaskMeta):
    global_mean: str          # how μ_G is taken (GLOBAL_MEAN)
    num_classes: int
    etf_cosine: float         # −1/(K − 1), the simplex ETF's
    precision: str
    runs: list[MinorityRun]


@register_task("minority_collapse")
class MinorityCollapse(TrajectoryTask):
    OPTIONS: ClassVar[type[Options]] = MinorityCollapseOptions
    META: ClassVar[type[TaskMeta]] = MinorityCollapseMeta

    # -- the runs ---------------------------------------------------------------------------------
    @property
    def probe_name(self) -> str:
        """`minority`, or `minority@K_maj` with `n_majority` set (it shapes the R = 1 probe)."""
        k = self.options["n_majority"]
        return "minority" if k is None else f"minority@{k}"

    def config_for(self, ratio: float, variant: str) -> TrajectoryConfig:
        """The training of (R, classifier). R = 1 with the default `n` is the train split as it is
        (`imbalance=None`), so that run is shared with any other task training the same recipe on
        the same data (e.g. `train_collapse_cifar10` and the learnable R = 1 run of Fang's protocol);
        `run` checks that the split was balanced."""
        head, loss = VARIANTS[variant]
        base = self.trajectory_config()
        o = self.options
        imbalance = imbalance_key(o["profile"], ratio, o["n_majority"], o["n"])
        return replace(base, head=head, recipe=replace(base.recipe, loss=loss), imbalance=imbalance)

    def trajectories(self) -> list[TrajectoryConfig]:
        return [self.config_for(float(self.options["ratio"]), self.options["classifier"])]

    def probes(self) -> dict:
        return {self.probe_name: partial(minority_probe, n_majority=self.options["n_majority"])}

    def _check_balanced(self) -> None:
        """R = 1 without `n` trains on the train split as it is: it must be balanced."""
        plain = [c for c in self.trajectories() if c.imbalance is None]
        if not plain:
            return
        counts = load_splits(plain[0])[0].class_counts().tolist()
        if len(set(counts)) != 1:
            raise ValueError(f"task '{self.spec.name}': R = 1 trains on the train split as it is, but "
                             f"its class counts differ ({counts}): set options.n (e.g. {min(counts)}) "
                             f"to train R = 1 on a balanced subsample")

    # -- rows ---------------------------------------------------------------------------------------
    def run(self, ctx) -> TaskOutput:
        rows = []
        self._check_balanced()
        ratio, variant = float(self.options["ratio"]), self.options["classifier"]
        cfg = self.config_for(ratio, variant)
        rec, _ = ctx.trajectory(cfg, self.probes())
        for e in rec.epochs:
            p, tr, te = e.probes[self.probe_name], e.train, e.test
            train_vals = {**tr.collapse, "accuracy": tr.accuracy, "loss": tr.loss,
                          "minority_classifier_cosine": p["minority_classifier_cosine"]}
            train_vals.update({k[len("train_"):]: v for k, v in p.items() if k.startswith("train_")})
            rows += rows_from(train_vals, split="train", epoch=e.epoch, n_samples=tr.n)
            test_vals = {"loss": te.loss}
            test_vals.update({k[len("test_"):]: v for k, v in p.items() if k.startswith("test_")})
            rows += rows_from(test_vals, split="test", epoch=e.epoch, n_samples=te.n)
        f = rec.final()
        p = f.probes[self.probe_name]
        summary = {"minority_accuracy": p["test_minority_accuracy"],
                   "majority_accuracy": p["test_majority_accuracy"], "accuracy": p["test_accuracy"],
                   "minority_classifier_cosine": p["minority_classifier_cosine"],
                   "minority_feature_cosine": p["train_minority_feature_cosine"],
                   "test_minority_feature_cosine": p["test_minority_feature_cosine"],
                   "train_accuracy": f.train.accuracy, "nc1": f.train.collapse["nc1"]}
        summary.update({f"{g}_accuracy": p[f"test_{g}_accuracy"] for g in GROUPS if f"test_{g}_accuracy" in p})
        rows += rows_from(summary, split="summary", epoch=f.epoch, n_samples=f.test.n)
        rows += self.baseline_rows(cfg)
        counts = rec.class_counts
        K = len(counts)
        run = {"ratio": ratio, "classifier": variant, "head": cfg.head, "loss": cfg.recipe.loss,
               "profile": self.options["profile"], "n_train": sum(counts), "class_counts": " ".join(map(str, counts)),
               "trajectory": cfg.key()}
        meta = MinorityCollapseMeta(GLOBAL_MEAN, K, -1.0 / (K - 1), self.trajectory_config().recipe.precision,
                                    [MinorityRun(**{k: v for k, v in run.items() if k != "class_counts"})])
        return TaskOutput(rows, tables={"runs": pd.DataFrame([run])}, meta=meta, precision=meta.precision)
