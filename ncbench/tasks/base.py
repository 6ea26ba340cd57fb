"""Task kinds and their instances (after lm-evaluation-harness): a YAML spec declares, a kind measures.

A kind is a `Task` subclass registered with `@register_task("kind")`; an instance is a `TaskSpec`
loaded from `tasks/<name>.yaml`. A task yields tidy rows (SPEC §9: split, epoch, layer, metric,
value, n_samples); rows with `split="summary"` are its headline numbers (the leaderboard's).
"""
from __future__ import annotations

import dataclasses
import typing
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

from ncbench.registry import Registry
from ncbench.specs.task_spec import TaskSpec
from ncbench.tasks.context import TaskContext
from ncbench.tasks.options import Options, untyped
from ncbench.training.run_status import RunStatus

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


@dataclass(frozen=True)
class TaskMeta:
    """Base of a kind's typed facts about a run (`Task.META`, declared beside the kind): what its figures
    read (e.g. `num_classes`) and what `config.json` records under "meta" (`to_dict`, field order = key
    order). Fields are JSON values (lists, not tuples), or `TaskMeta`s, or lists of them, so that
    `from_dict(to_dict())` gives the same facts back (a skipped task's are read from its config.json)."""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict, where: str = "config.json") -> TaskMeta:
        """The facts recorded by `to_dict` (nested `TaskMeta`s rebuilt); other keys: ValueError, one line."""
        names = [f.name for f in dataclasses.fields(cls)]
        if not isinstance(data, dict) or sorted(data) != sorted(names):
            got = f"keys {sorted(data)}" if isinstance(data, dict) else f"a {type(data).__name__}"
            raise ValueError(f"{where}: 'meta' has {got} but a {cls.__name__} records keys {sorted(names)} "
                             "(written by another ncbench version: run the task again with --force)")
        hints = typing.get_type_hints(cls)
        return cls(**{n: _typed(hints[n], data[n], f"{where} meta.{n}") for n in names})


def _typed(hint, value, where: str):
    """`value` read back as `hint` says: a `TaskMeta` (or a list of them) from its dict, the rest as is."""
    if isinstance(hint, type) and issubclass(hint, TaskMeta):
        return hint.from_dict(value, where)
    if typing.get_origin(hint) is list:
        (item,) = typing.get_args(hint) or (Any,)
        if isinstance(item, type) and issubclass(item, TaskMeta):
            return [item.from_dict(v, where) for v in value]
    return value


@dataclass(frozen=True)
class NoMeta(TaskMeta):
    """A kind that records no facts beyond its rows and tables (config.json's "meta": {})."""


@dataclass
class TaskOutput:
    """What a kind returns to the runner: its tidy rows, extra tables, its typed facts (`meta`, the kind's
    `Task.META`), the status of its own measurement (`worst`-ed with the runs it read) and the precision
    its numbers were computed in (the rows' `precision` column). A group's output also carries each
    member's facts (`members`, in member order; `meta` is the first member's)."""

    rows: list[dict]
    tables: dict[str, Any] = field(default_factory=dict)   # extra long CSVs: name -> DataFrame
    meta: TaskMeta = field(default_factory=NoMeta)
    status: RunStatus = field(default_factory=RunStatus)
    precision: str = "fp32"
    members: tuple[TaskMeta, ...] = ()

    def __post_init__(self):
        if not isinstance(self.meta, TaskMeta):
            raise TypeError(f"TaskOutput.meta must be the kind's TaskMeta dataclass, got {type(self.meta).__name__}")
        recorded = getattr(self.meta, "precision", self.precision)
        if recorded != self.precision:
            raise ValueError(f"TaskOutput.precision is {self.precision!r} but its meta records {recorded!r}")


class Task:
    """Base of every task kind. Subclasses declare `OPTIONS` (a frozen dataclass, `ncbench.tasks.options`)
    and implement `run(ctx)`: it reads only its `TaskContext` and returns a `TaskOutput` (a spec's
    `version`, in its YAML, says when its numbers last changed)."""

    kind: ClassVar[str] = ""
    OPTIONS: ClassVar[type[Options] | None] = None
    """The kind's typed options (`ncbench.tasks.options`); a kind without one may give `default_options`."""
    default_options: ClassVar[dict] = {}

    @classmethod
    def options_class(cls) -> type[Options]:
        """The kind's options dataclass (unchecked fields from `default_options` when it declares none)."""
        if cls.OPTIONS is None or ("default_options" in vars(cls) and "OPTIONS" not in vars(cls)):
            family = next((k.OPTIONS for k in cls.__mro__[1:] if vars(k).get("OPTIONS")), Options)
            cls.OPTIONS = untyped(cls.kind or cls.__name__, cls.default_options, family)
        return cls.OPTIONS

    @classmethod
    def known_options(cls) -> dict:
        """Every option of the kind with its default."""
        return cls.options_class().defaults()

    META: ClassVar[type[TaskMeta]] = NoMeta
    """The kind's typed facts (`TaskOutput.meta`): a frozen `TaskMeta` dataclass declared beside it."""

    HAS_PLOT: ClassVar[bool] = True
    """The kind draws figures (`ncbench/plots/<kind>.py`); False: it says it has none."""

    MODEL_FREE: ClassVar[tuple[str, str] | None] = None
    """(dataset, model) that a kind without data or backbone records, whatever the spec says (e.g. the
    theory tasks: `("ufm", "none")`); such a kind also runs on the CPU."""

    def __init__(self, spec: TaskSpec):
        if self.MODEL_FREE is not None:   # a copy: the caller's spec is never changed
            spec = replace(spec, dataset=self.MODEL_FREE[0], model=self.MODEL_FREE[1], pretrained=False,
                           checkpoint=None, device="cpu")
        self.spec = spec
        self.typed = self.options_class().from_dict(dict(spec.options), f"task '{spec.name}' ({self.kind})")
        self.options = self.typed.to_dict()   # the kind's working view; spec.options stays as written

    def trajectories(self) -> list:
        """Training runs this task reads (so a suite trains each one once)."""
        return []

    def probes(self) -> dict:
        """Per-epoch probes to attach to those trajectories: {name: probe}."""
        return {}

    def run(self, ctx: TaskContext) -> TaskOutput:  # pragma: no cover - abstract
        raise NotImplementedError



def rows_from(metrics: dict[str, float], *, split: str, epoch: int | None = None, layer: str | int | None = None,
              n_samples: int | None = None, prefix: str = "", variant: str = "") -> Iterable[dict]:
    for name, value in metrics.items():
        yield {"split": split, "epoch": epoch, "layer": layer, "variant": variant, "metric": prefix + name,
               "value": value, "n_samples": n_samples}
