"""Task specs, suites and groups as data (torch-free): `TaskSpec`, the YAML files of `tasks/`, and
the expansion of a group (`seeds:` / `sweep:`) into its member runs."""
from ncbench.specs.groups import (
    Comparison,
    comparisons_of,
    group_hash,
    is_group,
    member_label,
    members,
)
from ncbench.specs.loading import (
    available,
    load_suite,
    load_task,
    resolve,
    spec_dir,
    suite_names,
    suite_settings,
    task_names,
)
from ncbench.specs.task_spec import TaskSpec

__all__ = ["Comparison", "TaskSpec", "available", "comparisons_of", "group_hash", "is_group", "load_suite", "load_task", "member_label",
           "members", "resolve", "spec_dir", "suite_names", "suite_settings", "task_names"]
