"""Task kinds, one module each (`KIND_MODULES`), registered by `@register_task`. The kind modules import
torch, so they are imported on the first lookup of `TASK_KINDS`: reading and listing specs stays light."""
from ncbench.tasks.base import (
    KIND_MODULES,
    TASK_KINDS,
    NoMeta,
    Task,
    TaskMeta,
    TaskOutput,
    TaskSpec,
    register_task,
)
from ncbench.tasks.context import TaskContext, TrajectoryStore

__all__ = [
    "KIND_MODULES",
    "TASK_KINDS",
    "NoMeta",
    "Task",
    "TaskContext",
    "TaskMeta",
    "TaskOutput",
    "TaskSpec",
    "TrajectoryStore",
    "register_task",
]
