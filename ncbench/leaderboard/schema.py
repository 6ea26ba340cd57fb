"""What a leaderboard holds: its CSV columns, what identifies an entry, and the YAML `leaderboard:`
section of a task parsed into a typed `BoardSpec`.

A board CSV (`leaderboards/<task>.csv`) has one row per **run** × **variant**: the entry identity
(`ENTRY`: task, task version, model, weights, data set: everything that defines the measurement
except the seed; the protocol is fixed by the task version, since `submit` refuses any other), then
`seed`, `variant` (the sweep point, `ncbench.results.variants`; empty: no sweep), the run's `status`
and `status_reason` (`ncbench.training.run_status`), one column per metric (plain names from the
task kind's vocabulary), then provenance. A board column is a (metric, variant) pair taken from the
data, never parsed out of a name.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ncbench.core.board import BoardMetric, board_metric, metric_items
from ncbench.provenance.machine import BOARD_FIELDS

ENTRY = ("task", "task_version", "model", "pretrained", "dataset")
"""An entry: what its seeds share (`pretrained`: tag, `true`, `sha256:<16 hex>` or empty = scratch)."""

RUN = ENTRY + ("seed",)
"""One run of an entry (one training per seed; a sweep's members share it)."""

ROW = RUN + ("variant",)
"""One CSV row: a run at one sweep point."""

STATUS = ("status", "status_reason")

PROVENANCE = ("ncbench_version", "torch_version", "timm_version", "device", "precision", "git_hash",
              "date", "run_id", "config_hash")

FIXED = ROW + STATUS + PROVENANCE
"""Every column a board must have that is not a metric."""

MACHINE = BOARD_FIELDS
"""Optional provenance columns after `PROVENANCE`: the CPU model, ATen's CPU capability and the thread
count of the run (`ncbench.provenance.machine`); empty or absent for rows submitted before they were recorded."""

TIERS = {"cpu": "embedded CPU", "gpu": "GPU protocol", "frozen": "frozen transfer"}
LOCK_NAME = ".lock"
README = "README.md"


class LeaderboardError(ValueError):
    """A leaderboard CSV that is not valid; it is never overwritten."""

    def __init__(self, path: Path, problem: str):
        super().__init__(f"{path} is not a valid leaderboard: {problem}. It was left untouched: fix it by hand "
                         f"or restore it (`git checkout -- {path}`), then retry")


def metric_columns(columns) -> list[str]:
    """The metric columns of a board CSV, in file order."""
    return [c for c in columns if c not in FIXED and c not in MACHINE]


@dataclass(frozen=True)
class Column:
    """One board column: a metric at one sweep point (variant "" = not swept)."""

    metric: str
    variant: str = ""

    def header(self) -> str:
        """`minority_accuracy (ratio=10,classifier=learnable)`, or the bare metric when not swept."""
        return f"{self.metric} ({self.variant})" if self.variant else self.metric


@dataclass(frozen=True)
class MetricSpec(BoardMetric):
    """A declared board metric: its direction and role (from `ncbench.core.metrics` unless the board
    overrides them), and optionally which variants get a column."""

    @property
    def arrow(self) -> str:
        return "↑" if self.higher_is_better else "↓"


@dataclass(frozen=True)
class BoardSpec:
    """The `leaderboard:` section of a task spec.

    ```yaml
    leaderboard:
      primary: {metric: minority_accuracy, variant: "ratio=10,classifier=learnable"}
      metrics:
        - minority_accuracy
        - nc1: {variants: ["ratio=10,classifier=learnable"]}
    ```
    Each metric's direction and default role come from the registry (`ncbench.core.metrics`); an item
    `{name: {role: ..., higher_is_better: ...}}` overrides them for this board (`ncbench.core.board`).
    `primary` ranks the board and must be a `target` (what the task exists to predict: an accuracy, a
    transfer score, a minority accuracy); `descriptor` metrics (collapse values) are shown, never
    ranked. `variant` of the primary defaults to "" (no sweep); `variants` of a metric default to
    every variant present in the data.
    """

    primary: Column
    metrics: dict[str, MetricSpec] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, section, where: str = "leaderboard") -> BoardSpec | None:
        """Parse a YAML section (None or {} -> None: the task has no board); ValueError naming the key."""
        if not section:
            return None
        if not isinstance(section, dict):
            raise ValueError(f"{where}: expected a mapping with 'primary' and 'metrics', "  # noqa: TRY004 - user input
                             f"got {section!r}")
        unknown = sorted(set(section) - {"primary", "metrics"})
        if unknown:
            raise ValueError(f"{where}: unknown keys {unknown} (allowed: primary, metrics)")
        raw_metrics = section.get("metrics")
        if not isinstance(raw_metrics, (dict, list)) or not raw_metrics:
            raise ValueError(f"{where}.metrics: list at least one metric name (e.g. [nc1, ncc_acc])")
        metrics = {name: _metric(name, d, f"{where}.metrics.{name}")
                   for name, d in metric_items(raw_metrics, f"{where}.metrics")}
        p = section.get("primary")
        if not isinstance(p, dict) or not isinstance(p.get("metric"), str) or set(p) - {"metric", "variant"}:
            raise ValueError(f"{where}.primary: expected {{metric: NAME, variant: \"key=value,...\"}} "
                             f"(variant optional), got {p!r}")
        primary = Column(p["metric"], str(p.get("variant") or ""))
        if primary.metric not in metrics:
            import difflib

            close = difflib.get_close_matches(primary.metric, list(metrics), n=3)
            hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
            raise ValueError(f"{where}.primary: metric '{primary.metric}' is not declared under metrics{hint}; "
                             f"declared: {list(metrics)}")
        m = metrics[primary.metric]
        if m.role != "target":
            raise ValueError(f"{where}.primary: '{primary.metric}' is a {m.role}; a board ranks by a target "
                             f"(what the task exists to predict), declare one with role: target")
        if m.variants is not None and primary.variant not in m.variants:
            raise ValueError(f"{where}.primary: variant '{primary.variant}' is not among the variants "
                             f"{list(m.variants)} declared for '{primary.metric}'")
        return cls(primary, metrics)

    @property
    def direction(self) -> str:
        return "higher" if self.metrics[self.primary.metric].higher_is_better else "lower"


def _metric(name: str, d: dict, where: str) -> MetricSpec:
    from ncbench.results.names import check_name

    if any(ch in str(name) for ch in "/=["):
        raise ValueError(f"{where}: a metric name holds no '/', '=' or '[' (a sweep point goes in its variant)")
    check_name(f"{where}: metric", name)
    m = board_metric(name, d, where)
    return MetricSpec(m.name, m.higher_is_better, m.role, m.variants)


# --------------------------------------------------------------------------- where boards and specs live

def leaderboards_dir(explicit: str | Path | None = None) -> Path:
    """`explicit`, else $NCBENCH_LEADERBOARDS, else the checkout's `leaderboards/` folder."""
    if explicit:
        return Path(explicit).expanduser()
    env = os.environ.get("NCBENCH_LEADERBOARDS")
    if env:
        return Path(env).expanduser()
    root = Path(__file__).resolve().parent.parent.parent   # the checkout holding the ncbench package
    if (root / "pyproject.toml").is_file() and (root / "leaderboards").is_dir():
        return root / "leaderboards"
    raise FileNotFoundError("no leaderboards folder: ncbench is not running from a checkout; pass "
                            "--leaderboards DIR or set NCBENCH_LEADERBOARDS")


def current_spec(task: str):
    """The registry's spec of `task` (ValueError if the task is not shipped in tasks/)."""
    from ncbench.registry import UnknownNameError
    from ncbench.specs import load_task

    try:
        return load_task(task)
    except (UnknownNameError, FileNotFoundError) as e:
        raise ValueError(f"task '{task}' is not in the registry (tasks/*.yaml): {e}") from None


@dataclass(frozen=True)
class TaskBoard:
    """What the registry says about a task's board now: its spec section, version and tier
    (all empty when the task left the registry)."""

    spec: BoardSpec | None
    version: int | None
    tier: str


def task_board(task: str) -> TaskBoard:
    try:
        spec = current_spec(task)
    except ValueError:
        return TaskBoard(None, None, "")
    return TaskBoard(BoardSpec.from_dict(spec.leaderboard, f"tasks/{task}.yaml leaderboard"), spec.version,
                     spec.tier)
