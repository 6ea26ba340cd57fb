"""Names that say one thing (issue 24): a task kind, its module and its figure share one name, and
"aggregation" means the over-seed means only (the YAML `aggregate:` comparisons are
`ncbench.results.comparisons`)."""
from __future__ import annotations

import importlib.util
import inspect

from ncbench.tasks import KIND_MODULES, TASK_KINDS


def test_each_kind_lives_in_the_module_of_its_name_and_draws_in_the_plot_of_its_name():
    kinds = {name: TASK_KINDS.get(name) for name in TASK_KINDS.names()}
    kinds = {k: c for k, c in kinds.items() if c.__module__.startswith("ncbench.")}   # not tests' own kinds
    assert sorted(KIND_MODULES) == sorted(kinds)
    for kind, cls in kinds.items():
        assert cls.__module__ == f"ncbench.tasks.{kind}", (kind, cls.__module__)
        assert importlib.util.find_spec(f"ncbench.plots.{kind}") is not None, kind


def test_aggregation_is_over_seeds_and_comparisons_are_their_own_module():
    from ncbench.results import aggregation, comparisons
    from ncbench.specs.groups import Comparison

    def public_functions(module):
        return {n for n, f in inspect.getmembers(module, inspect.isfunction)
                if f.__module__ == module.__name__ and not n.startswith("_")}

    assert public_functions(aggregation) == {"over_seeds"}
    assert public_functions(comparisons) == {"comparison_rows"}
    assert inspect.signature(comparisons.comparison_rows).parameters["derived"].annotation == "list[Comparison]"
    assert Comparison.__doc__.startswith("A per-seed comparison")
