"""What the runner hands a kind: one frozen `TaskContext` per task (its folder, the run's shared
`TrajectoryStore`, its recipe minimum, the log of what it read), built fresh for every task, so no
state passes from one task to the next.

The store is the one thing tasks share on purpose: each training run (trajectory, by cache key) is
trained once per run and process and read by every task that needs it (`ncbench.runner.suite`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class TrajectoryStore:
    """The run's training runs: the cache folder, the probes every task asked for (so each run
    trains once with all of them), and the records read so far in this process."""

    def __init__(self, cache_dir: Path, root: Path, *, progress: bool = True, force: bool = False):
        self.cache_dir = Path(cache_dir)
        self.root = Path(root)        # the run folder nothing may leave (ncbench.run_files)
        self.progress = progress
        self.force = force            # train again (once per invocation) instead of reading the cache
        self.probes: dict[str, dict] = {}          # trajectory key -> probes
        self._records: dict[str, Any] = {}

    def read(self, cfg, probes: dict | None = None):
        """Run (or reuse) the training trajectory `cfg`; returns (record, Trajectory)."""
        from ncbench.training.trajectory import Trajectory

        key = cfg.key()
        wanted = {**self.probes.get(key, {}), **(probes or {})}
        traj = Trajectory(cfg, self.cache_dir, self.progress, root=self.root)
        rec = self._records.get(key)
        if rec is None or any(p not in rec.final().probes for p in wanted):
            # under --force each trajectory is trained again once per invocation, then shared
            rec = traj.run(wanted, force=self.force and key not in self._records)
            self._records[key] = rec
        return rec, traj


@dataclass(frozen=True)
class TrainingRead:
    """One training run a task read: who trained it, and whether it did what its recipe meant."""

    trained: dict           # {"trajectory": key, trained_by..., "train_seconds", "status", "status_reason"}
    status: Any             # ncbench.training.run_status.RunStatus


@dataclass(frozen=True)
class TaskContext:
    """What a running task may use: its output folder, the shared training runs, its recipe minimum.
    Frozen: the runner builds one per task; `reads` collects what this task's `trajectory` calls read."""

    out_dir: Path
    store: TrajectoryStore
    min_train_accuracy: float | None = None
    reads: list[TrainingRead] = field(default_factory=list)

    @property
    def cache_dir(self) -> Path:
        return self.store.cache_dir

    @property
    def root(self) -> Path:
        return self.store.root

    @property
    def progress(self) -> bool:
        return self.store.progress

    def trajectory(self, cfg, probes: dict | None = None):
        """Run (or reuse) the training trajectory `cfg`; returns (record, Trajectory), and records its
        status against this task's recipe minimum (`ncbench.training.run_status.record_status`)."""
        from ncbench.training.run_status import record_status

        rec, traj = self.store.read(cfg, probes)
        status = record_status(rec, self.min_train_accuracy, label=f"{cfg.model} on {cfg.dataset}")
        self.reads.append(TrainingRead({"trajectory": cfg.key(), **rec.trained_by, "train_seconds": rec.seconds,
                                        "status": status.status, "status_reason": status.reason}, status))
        return rec, traj
