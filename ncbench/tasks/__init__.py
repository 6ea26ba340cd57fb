"""Task kinds, one module each, registered by `@register_task`: importing this package registers all."""
from ncbench.tasks.base import TASK_KINDS, RunContext, Task, TaskOutput, TaskSpec, register_task
from ncbench.tasks import train_collapse  # noqa: F401
from ncbench.tasks import heldout_collapse  # noqa: F401
from ncbench.tasks import cdnv_bound  # noqa: F401
from ncbench.tasks import ncc_depth  # noqa: F401
from ncbench.tasks import minority_collapse  # noqa: F401
from ncbench.tasks import ufm  # noqa: F401
from ncbench.tasks import layer_peeled  # noqa: F401
from ncbench.tasks import fewshot_transfer  # noqa: F401

__all__ = ["TASK_KINDS", "RunContext", "Task", "TaskOutput", "TaskSpec", "register_task"]
