"""The tidy `results.csv` of a measurement made inside someone's own training (SPEC §9).

Rows from `Measurement.rows()` completed with the run's provenance (package versions, git hash,
device, time) into the `ncbench.results.schema` columns, written atomically, so that
`ncbench.results.load_results` reads them with every ncbench task's results.
"""
from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable
from pathlib import Path

from ncbench.provenance.record import provenance
from ncbench.results.writer import write_long_csv

INTEGRATION_TASK = "track"
"""`task` column of rows measured by the integrations (no ncbench task spec: `task_version` empty)."""


def run_context(*, run_id: str | None = None, task: str = INTEGRATION_TASK, model: str = "", dataset: str = "",
                pretrained: str = "", seed: int | None = None, device: str = "cpu",
                precision: str = "fp32") -> dict:
    """The columns every row of one run shares."""
    prov = provenance(device)
    if run_id is None:
        stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S")
        run_id = f"{task}-{stamp}"
    return {**prov, "run_id": run_id, "task": task, "task_version": None, "model": model,
            "pretrained": pretrained, "dataset": dataset, "seed": seed, "precision": precision,
            "config_hash": ""}


def write_results(path: str | Path, rows: Iterable[dict], context: dict) -> Path:
    """`path` (a `.csv` file, or a folder that gets `results.csv`) holding `rows`; returns the file."""
    path = Path(path)
    if path.suffix != ".csv":
        path = path / "results.csv"
    return write_long_csv(path, list(rows), context)
