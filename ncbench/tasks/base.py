"""Task kinds and their instances (after lm-evaluation-harness): a YAML spec declares, a kind measures.

A kind is a `Task` subclass registered with `@register_task("kind")`; an instance is a `TaskSpec`
loaded from `tasks/<name>.yaml`. A task yields tidy rows (SPEC §9: split, epoch, layer, metric,
value, n_samples); rows with `split="summary"` are its headline numbers (the leaderboard's).
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

from ncbench.registry import Registry
from ncbench.specs.task_spec import TaskSpec

KIND_MODULES = ("cdnv_bound", "fewshot_transfer", "frozen_transfer", "test_collapse", "layer_peeled",
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
class TaskOutput:
    rows: list[dict]
    tables: dict[str, Any] = field(default_factory=dict)   # extra long CSVs: name -> DataFrame
    meta: dict = field(default_factory=dict)


class Task:
    """Base of every task kind. Subclasses set `version_note` and implement `run`."""

    kind: ClassVar[str] = ""
    default_options: ClassVar[dict] = {}
    MOVED: ClassVar[dict] = {}     # a list option that became a sweep -> the scalar option it sweeps
    COMMON_OPTIONS: ClassVar[dict] = {}   # options a family of kinds shares (e.g. every trained backbone's)

    @classmethod
    def known_options(cls) -> dict:
        """Every option of the kind with its default: the family's, then the kind's own."""
        return {**cls.COMMON_OPTIONS, **cls.default_options}

    MODEL_FREE: ClassVar[tuple[str, str] | None] = None
    """(dataset, model) that a kind without data or backbone records, whatever the spec says (e.g. the
    theory tasks: `("ufm", "none")`); such a kind also runs on the CPU."""

    def __init__(self, spec: TaskSpec):
        if self.MODEL_FREE is not None:   # a copy: the caller's spec is never changed
            spec = replace(spec, dataset=self.MODEL_FREE[0], model=self.MODEL_FREE[1], pretrained=False,
                           checkpoint=None, device="cpu")
        self.spec = spec
        moved = sorted(set(spec.options) & set(self.MOVED))
        if moved:
            k = moved[0]
            raise ValueError(f"task '{spec.name}' ({self.kind}): options.{k} became a sweep: declare "
                             f"`sweep: {{{self.MOVED[k]}: {list(spec.options[k])!r}}}` at the top of the spec "
                             f"(one run per value; ncbench.specs.groups)")
        known = self.known_options()
        unknown = sorted(set(spec.options) - set(known))
        if unknown:
            import difflib

            hints = [u + (f" (did you mean {close[0]}?)" if (close := difflib.get_close_matches(
                u, list(known), 1)) else "") for u in unknown]
            raise ValueError(f"task '{spec.name}' ({self.kind}): unknown options {', '.join(hints)}; "
                             f"known: {sorted(known)}")
        self.options = {**known, **spec.options}

    def scalar_option(self, key: str):
        """`options[key]`, which names one value: a list there is a sweep written the old way."""
        value = self.options[key]
        if isinstance(value, (list, tuple)):
            raise ValueError(  # noqa: TRY004 - a user input error: exit 2
                f"task '{self.spec.name}' ({self.kind}): options.{key} takes one value; a list became a sweep: "
                f"declare `sweep: {{{key}: {list(value)!r}}}` at the top of the spec (one run per value; "
                f"ncbench.specs.groups)")
        return value

    def trajectories(self) -> list:
        """Training runs this task reads (so a suite trains each one once)."""
        return []

    def probes(self) -> dict:
        """Per-epoch probes to attach to those trajectories: {name: probe}."""
        return {}

    def run(self, ctx: RunContext) -> TaskOutput:  # pragma: no cover - abstract
        raise NotImplementedError



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
    root: Path | None = None       # the run folder nothing may leave (ncbench.run_files); default out_dir

    def __post_init__(self):
        if self.root is None:
            self.root = Path(self.out_dir)

    def trajectory(self, cfg, probes: dict | None = None):
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
