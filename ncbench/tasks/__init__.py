"""Task kinds, one module each, registered by `@register_task`: importing this package registers all."""
from ncbench.tasks import (
    cdnv_bound,  # noqa: F401
    fewshot_transfer,  # noqa: F401
    frozen_transfer,  # noqa: F401
    heldout_collapse,  # noqa: F401
    layer_peeled,  # noqa: F401
    minority_collapse,  # noqa: F401
    ncc_depth,  # noqa: F401
    train_collapse,  # noqa: F401
    transfer_ranking,  # noqa: F401
    ufm,  # noqa: F401
)
from ncbench.tasks.base import TASK_KINDS, RunContext, Task, TaskOutput, TaskSpec, register_task

__all__ = ["TASK_KINDS", "RunContext", "Task", "TaskOutput", "TaskSpec", "register_task"]
