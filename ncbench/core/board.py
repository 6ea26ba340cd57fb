"""The metrics of a board block (`leaderboard.metrics` of a task spec), resolved against the registry.

A block lists metric names; each takes `higher_is_better` and its default role from its declaration in
`ncbench.core.metrics`. An item may be a one-key mapping that adds `variants` (which sweep points get a
column) or overrides a fact for this board (`role: target`, `higher_is_better: ...`):

```yaml
metrics:
  - minority_accuracy: {variants: ["ratio=10,classifier=learnable"]}
  - nc1
```
The mapping form of older specs and recorded `spec.json` files (`{nc1: {higher_is_better: false,
role: descriptor}}`) reads the same way.
"""
from __future__ import annotations

from dataclasses import dataclass

from ncbench.core.metrics import ROLES, metric

KEYS = ("higher_is_better", "role", "variants")


@dataclass(frozen=True)
class BoardMetric:
    """A metric as one board shows it: its direction, its role, and optionally which variants get a column."""

    name: str
    higher_is_better: bool
    role: str
    variants: tuple[str, ...] | None = None


def metric_items(section_metrics, where: str) -> list[tuple[str, dict]]:
    """(name, overrides) of each item of a `metrics:` list (or mapping), in order; ValueError naming `where`."""
    if isinstance(section_metrics, dict):
        items = [(name, {} if d is None else d) for name, d in section_metrics.items()]
    elif isinstance(section_metrics, list):
        items = []
        for i, item in enumerate(section_metrics):
            if isinstance(item, str):
                items.append((item, {}))
            elif isinstance(item, dict) and len(item) == 1:
                (name, d), = item.items()
                items.append((name, {} if d is None else d))
            else:
                raise ValueError(f"{where}[{i}]: a metric name or {{name: {{variants: [...]}}}}, got {item!r}")
    else:
        raise ValueError(f"{where}: a list of metric names, got {section_metrics!r}")   # noqa: TRY004 - user input
    names = [name for name, _ in items]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"{where}: {twice} listed more than once: list each metric once")
    for name, d in items:
        if not isinstance(name, str) or not isinstance(d, dict) or set(d) - set(KEYS):
            raise ValueError(f"{where}.{name}: expected {{variants: [...], role: target|descriptor, "
                             f"higher_is_better: true|false}} (each optional), got {d!r}")
    return items


def metric_names(section_metrics) -> list[str]:
    """The names a `metrics:` block lists (either form), [] for anything unreadable."""
    try:
        return [name for name, _ in metric_items(section_metrics, "metrics")]
    except ValueError:
        return []


def board_metric(name: str, overrides: dict, where: str) -> BoardMetric:
    """One board metric: the registry's facts of `name`, then this board's overrides."""
    try:
        declared = metric(name)
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None
    higher = overrides.get("higher_is_better", declared.higher_is_better)
    if not isinstance(higher, bool):
        raise ValueError(f"{where}.higher_is_better: true or false, got {higher!r}"  # noqa: TRY004 - user input
                         + ("" if "higher_is_better" in overrides else
                            f" (the registry declares no direction for {name!r}: set it on the board)"))
    role = overrides.get("role", declared.role)
    if role not in ROLES:
        raise ValueError(f"{where}.role: one of {list(ROLES)}, got {role!r}")
    variants = overrides.get("variants")
    if variants is not None:
        if not isinstance(variants, list) or not all(isinstance(v, str) for v in variants):
            raise ValueError(f"{where}.variants: a list of variant strings, got {variants!r}")
        variants = tuple(variants)
    return BoardMetric(name, higher, role, variants)
