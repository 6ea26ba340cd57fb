"""Task kinds and their instances (after lm-evaluation-harness): a YAML spec declares, a kind measures.

A kind is a `Task` subclass registered with `@register_task("kind")`; an instance is a `TaskSpec`
loaded from `tasks/<name>.yaml`. A task yields tidy rows (SPEC §9: split, epoch, layer, metric,
value, n_samples); rows with `split="summary"` are its headline numbers (the leaderboard's).
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

from ncbench.registry import Registry

KIND_MODULES = ("cdnv_bound", "fewshot_transfer", "frozen_transfer", "heldout_collapse", "layer_peeled",
                "minority_collapse", "ncc_depth", "train_collapse", "transfer_ranking", "ufm")
"""The modules of `ncbench.tasks` that define task kinds (they import torch: loaded on first lookup)."""


def _import_kinds() -> None:
    import importlib

    for module in KIND_MODULES:
        importlib.import_module(f"ncbench.tasks.{module}")


TASK_KINDS: Registry[type[Task]] = Registry("task kind", loader=_import_kinds)


def register_task(kind: str):
    """Class decorator: register a task kind under `kind` (a duplicate name is an error)."""
    def decorator(cls: type[Task]) -> type[Task]:
        cls.kind = kind
        return TASK_KINDS.register(kind)(cls)
    return decorator


@dataclass
class TaskSpec:
    """A versioned task instance: what to measure, on which data and backbone, with which budget."""

    name: str
    kind: str
    version: int
    description: str = ""
    dataset: str = "mnist5k"
    model: str = "resnet18"
    pretrained: bool | str = False
    checkpoint: str | None = None
    seed: int = 0
    recipe: dict | str = field(default_factory=dict)
    options: dict = field(default_factory=dict)
    leaderboard: dict = field(default_factory=dict)
    tier: str = "cpu"
    data_dir: str | None = None
    download: bool = False
    device: str = "cpu"
    world_size: int = 1            # DDP processes (set by the CLI under torchrun); part of the identity
    min_train_accuracy: float | None = None   # below it a trained run is `failed` (ncbench.training.run_status)
    source: str = ""

    RUNTIME: ClassVar[tuple[str, ...]] = ("description", "leaderboard", "data_dir", "download", "source")

    @classmethod
    def from_dict(cls, d: dict, source: str = "") -> TaskSpec:
        known = {f.name for f in fields(cls)}
        missing = [k for k in ("name", "kind", "version") if k not in d]
        if missing:
            raise ValueError(f"task spec {source or d.get('name', '?')} lacks {', '.join(missing)}")
        unknown = sorted(set(d) - known)
        if unknown:
            import difflib
            hint = {u: difflib.get_close_matches(u, known, 1) for u in unknown}
            raise ValueError(f"task spec {source or d['name']}: unknown keys " + ", ".join(
                u + (f" (did you mean {h[0]}?)" if h else "") for u, h in hint.items()))
        return cls(**{**d, "source": source or d.get("source", "")})

    def to_dict(self) -> dict:
        return asdict(self)

    def config_hash(self) -> str:
        """Hash of everything that changes the numbers (not paths or descriptions; a checkpoint by the
        SHA-256 of its bytes, so a file replaced in place is another configuration)."""
        d = {k: v for k, v in self.to_dict().items() if k not in self.RUNTIME}
        if d["world_size"] == 1:   # one process: the hash of the specs before world size was recorded
            d.pop("world_size")
        if self.checkpoint and Path(self.checkpoint).expanduser().is_file():   # weights by content, not path
            from ncbench.training.cache_key import file_sha256

            d["checkpoint"] = "sha256:" + file_sha256(self.checkpoint)
        return hashlib.sha1(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:12]


@dataclass
class TaskOutput:
    rows: list[dict]
    tables: dict[str, Any] = field(default_factory=dict)   # extra long CSVs: name -> DataFrame
    meta: dict = field(default_factory=dict)


class Task:
    """Base of every task kind. Subclasses set `version_note` and implement `run`."""

    kind: ClassVar[str] = ""
    default_options: ClassVar[dict] = {}

    def __init__(self, spec: TaskSpec):
        self.spec = spec
        unknown = sorted(set(spec.options) - set(self.default_options))
        if unknown:
            raise ValueError(f"task '{spec.name}' ({self.kind}): unknown options {unknown}; "
                             f"known: {sorted(self.default_options)}")
        self.options = {**self.default_options, **spec.options}

    def trajectories(self) -> list:
        """Training runs this task reads (so a suite trains each one once)."""
        return []

    def probes(self) -> dict:
        """Per-epoch probes to attach to those trajectories: {name: probe}."""
        return {}

    def run(self, ctx: RunContext) -> TaskOutput:  # pragma: no cover - abstract
        raise NotImplementedError

    def plot(self, rows, out_dir: Path) -> list[Path]:
        """PNG files beside the CSVs; `rows` is the task's long DataFrame."""
        return []


@dataclass
class RunContext:
    """What a running task may use: its output folder, the shared trajectory cache, progress bars."""

    out_dir: Path
    cache_dir: Path
    progress: bool = True
    force: bool = False            # train again instead of reading cached trajectories
    probes: dict[str, dict] = field(default_factory=dict)      # trajectory key -> probes
    trained: list[dict] = field(default_factory=list)          # who trained what the current task read
    statuses: list = field(default_factory=list)               # RunStatus of each run the current task read
    min_train_accuracy: float | None = None                    # the current task's recipe minimum
    _records: dict[str, Any] = field(default_factory=dict)

    def trajectory(self, cfg, probes: dict | None = None):
        """Run (or reuse) the training trajectory `cfg`; returns (record, Trajectory)."""
        from ncbench.training.trajectory import Trajectory

        key = cfg.key()
        wanted = {**self.probes.get(key, {}), **(probes or {})}
        traj = Trajectory(cfg, self.cache_dir, self.progress)
        rec = self._records.get(key)
        if rec is None or any(p not in rec.final().probes for p in wanted):
            # under --force each trajectory is trained again once per invocation, then shared
            rec = traj.run(wanted, force=self.force and key not in self._records)
            self._records[key] = rec
        from ncbench.training.run_status import record_status

        status = record_status(rec, self.min_train_accuracy, label=f"{cfg.model} on {cfg.dataset}")
        self.statuses.append(status)
        self.trained.append({"trajectory": key, **rec.trained_by, "train_seconds": rec.seconds,
                             "status": status.status, "status_reason": status.reason})
        return rec, traj


def rows_from(metrics: dict[str, float], *, split: str, epoch: int | None = None, layer: str | int | None = None,
              n_samples: int | None = None, prefix: str = "", variant: str = "") -> Iterable[dict]:
    for name, value in metrics.items():
        yield {"split": split, "epoch": epoch, "layer": layer, "variant": variant, "metric": prefix + name,
               "value": value, "n_samples": n_samples}
