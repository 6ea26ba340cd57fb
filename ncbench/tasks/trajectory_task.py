"""Tasks that read a training trajectory of a timm backbone (shared, trained once per config).

Options every such kind takes: `model_kwargs` (passed to `timm.create_model`, e.g. a ViT with
`{img_size: 28, patch_size: 4}`; `--model-kwargs` on the command line) and `labels` (`true`, or
`random`: the train labels permuted once, seeded by the run's seed and balanced per class,
`ncbench.data.random_labels`; the test split keeps its true labels — review §4.1.1), and
`baselines` (default true: the same headline measurements on raw pixels and on the seeded random
initialisation, `ncbench.baselines.measure`, as summary rows with variant `baseline=raw_pixels` /
`baseline=random_init`), and `n` (default null: the train split as it is; an integer: a balanced
subsample of `n` train images per class, the R = 1 view of `ncbench.data.imbalance.imbalanced_view`,
e.g. a smaller set that a network fits with random labels; `minority_collapse` and `ncc_depth` read
`n` as the size of the largest class of their imbalanced view, the same images at R = 1).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import ClassVar

from ncbench.tasks.base import Task
from ncbench.tasks.options import Options, boolean, integer, mapping
from ncbench.training.recipe import Recipe
from ncbench.training.trajectory import Trajectory, TrajectoryConfig, TrajectoryRecord

LABELS = ("true", "random")


def labels_option(value) -> str:
    """`true` (YAML's boolean too) or `random`."""
    value = "true" if value is True else value
    if value not in LABELS:
        raise ValueError("must be true or random")
    return value


@dataclass(frozen=True)
class TrainedOptions(Options):
    """What every kind reading a training run takes."""

    model_kwargs: dict = field(default_factory=dict)
    labels: str = "true"
    baselines: bool = True
    n: int | None = None      # train images per class (of the largest class under an imbalance); None: all
    CHECKS: ClassVar[dict] = {"model_kwargs": mapping("a mapping of timm.create_model keywords"),
                              "labels": labels_option, "baselines": boolean, "n": integer(1, optional=True)}


class TrajectoryTask(Task):
    """Builds its `TrajectoryConfig` from the spec: data set, model, recipe, seed, device."""

    OPTIONS: ClassVar[type[Options]] = TrainedOptions

    def trajectory_config(self, **changes) -> TrajectoryConfig:
        s = self.spec
        recipe = Recipe.from_dict(s.recipe)
        fields = {"dataset": s.dataset, "model": s.model, "recipe": recipe, "seed": s.seed,
                  "pretrained": s.pretrained, "checkpoint": s.checkpoint, "data_dir": s.data_dir,
                  "device": s.device, "download": s.download, "world_size": s.world_size,
                  "model_kwargs": tuple(sorted(dict(self.options["model_kwargs"] or {}).items())),
                  "random_labels": self.options["labels"] == "random"}
        if self.options["n"] is not None:   # a balanced subsample: the R = 1 view (trained once, shared)
            from ncbench.data.imbalance import imbalance_key

            fields["imbalance"] = imbalance_key("step", 1.0, None, self.options["n"])
        fields.update(changes)
        return TrajectoryConfig(**fields)
    def baseline_rows(self, cfg: TrajectoryConfig | None = None) -> list[dict]:
        """Summary rows of `ncbench.baselines.measure` on this run's splits (none with `baselines: false`).
        Computed once per training configuration and process: the tasks that share a run share them."""
        if not self.options["baselines"]:
            return []
        from ncbench.tasks.base import rows_from

        cfg = cfg or self.trajectory_config()
        n_train, per_baseline = _baselines(cfg)
        return [row for name, values in per_baseline.items()
                for row in rows_from(values, split="summary", n_samples=n_train, variant=f"baseline={name}")]

    def trajectories(self) -> list[TrajectoryConfig]:
        return [self.trajectory_config()]

    def record(self, ctx) -> TrajectoryRecord:
        """This task's training run (trained once per run, `TaskContext.trajectory`)."""
        return self.read(ctx)[0]

    def read(self, ctx) -> tuple[TrajectoryRecord, Trajectory]:
        """This task's training run and its `Trajectory` (final model, data), both returned: a kind
        keeps no state between its steps."""
        return ctx.trajectory(self.trajectory_config(), self.probes())


@functools.lru_cache(maxsize=8)
def _baselines(cfg: TrajectoryConfig) -> tuple[int, dict[str, dict[str, float]]]:
    """(train split size, {baseline: metrics}) on the splits of `cfg` (the data, class subset,
    imbalance and labels of its training run; `ncbench.baselines.measure`)."""
    from ncbench.baselines.measure import BASELINES, baseline_features, collapse_baseline
    from ncbench.training.trajectory import load_splits

    train, test = load_splits(cfg)
    K = train.num_classes
    out = {}
    for name in BASELINES:
        tr, te = (baseline_features(name, d, cfg.model, cfg.seed, K, dict(cfg.model_kwargs)) for d in (train, test))
        out[name] = collapse_baseline(tr, te, K)
    return len(train), out
