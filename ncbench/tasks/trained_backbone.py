"""Tasks that read a training trajectory of a timm backbone (shared, trained once per config)."""
from __future__ import annotations

from ncbench.tasks.base import Task
from ncbench.training.recipe import Recipe
from ncbench.training.trajectory import TrajectoryConfig, TrajectoryRecord


class TrajectoryTask(Task):
    """Builds its `TrajectoryConfig` from the spec: data set, model, recipe, seed, device."""

    def trajectory_config(self, **changes) -> TrajectoryConfig:
        s = self.spec
        recipe = Recipe.from_dict(s.recipe)
        fields = {"dataset": s.dataset, "model": s.model, "recipe": recipe, "seed": s.seed,
                  "pretrained": s.pretrained, "checkpoint": s.checkpoint, "data_dir": s.data_dir,
                  "device": s.device, "download": s.download, "world_size": s.world_size}
        fields.update(changes)
        return TrajectoryConfig(**fields)

    def trajectories(self) -> list[TrajectoryConfig]:
        return [self.trajectory_config()]

    def record(self, ctx) -> TrajectoryRecord:
        rec, self._trajectory = ctx.trajectory(self.trajectory_config(), self.probes())
        return rec

