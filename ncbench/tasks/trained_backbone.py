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
        fields = dict(dataset=s.dataset, model=s.model, recipe=recipe, seed=s.seed, pretrained=s.pretrained,
                      checkpoint=s.checkpoint, data_dir=s.data_dir, device=s.device)
        fields.update(changes)
        return TrajectoryConfig(**fields)

    def trajectories(self) -> list[TrajectoryConfig]:
        return [self.trajectory_config()]

    def record(self, ctx) -> TrajectoryRecord:
        rec, self._trajectory = ctx.trajectory(self.trajectory_config(), self.probes())
        return rec


def log_axis_plot(ax, x, ys: dict, title: str, ylabel: str) -> None:
    """Curves on a log y-axis (non-positive values dropped), with a legend."""
    import numpy as np

    for label, y in ys.items():
        y = np.asarray(y, dtype=float)
        ok = np.isfinite(y) & (y > 0)
        ax.plot(np.asarray(x)[ok], y[ok], marker="o", ms=3, label=label)
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
