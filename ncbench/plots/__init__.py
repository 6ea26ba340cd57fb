"""Figures, one module per task kind (`ncbench.plots.<kind>`, a `plot(out, spec, out_dir)` function),
fed the kind's `TaskOutput` (rows as written, with their `variant` and `seed`; the tables; the meta):
a figure never re-reads a CSV, and a group's figure sees every member's rows.
"""
from __future__ import annotations

import importlib
from pathlib import Path


def plot_task(kind: str, out, spec, out_dir: Path) -> list[Path]:
    """The figures of a `kind` run (none when the kind has no plot module)."""
    try:
        module = importlib.import_module(f"ncbench.plots.{kind}")
    except ModuleNotFoundError as e:
        if e.name != f"ncbench.plots.{kind}":
            raise
        return []
    return list(module.plot(out, spec, Path(out_dir)))
