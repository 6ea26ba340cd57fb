"""Atomic writing of tidy long-format result CSVs (SPEC §9) and their config.json."""
from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable
from pathlib import Path

from ncbench.results.schema import COLUMNS
from ncbench.run_files import WriteError, ensure_dir, remove_stale_temporaries, replace_text

__all__ = ["ResultsWriteError", "atomic_write_text", "ensure_dir", "remove_stale_temporaries", "write_json",
           "write_long_csv", "write_table_csv"]


def format_value(v) -> str:
    """Plain numbers only: floats as repr (round-trips), NaN/None as empty, ±inf as inf/-inf."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, float):
        return "" if math.isnan(v) else repr(v)
    return str(v)


ResultsWriteError = WriteError
"""A results file that could not be written (`ncbench.run_files.WriteError`): one line naming the file,
the OS reason and the fix."""


def atomic_write_text(path: Path, text: str, root: Path | None = None) -> None:
    """Write to a temporary file in the same folder, then rename: readers never see half a file.

    Any OS failure (full disk, read-only or missing folder) removes the temporary file and raises
    `ResultsWriteError`; the previous content of `path`, if any, is left as it was. With `root`, the
    file must lie inside that folder (the run folder) after resolving links (`ncbench.run_files`).
    """
    replace_text(path, text, root)


def long_csv_text(rows: Iterable[dict], context: dict) -> str:
    """Rows (task-supplied keys) completed with the run context, in `COLUMNS` order."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(COLUMNS)
    for r in rows:
        full = {**context, **r}
        value = full.get("value")
        full["value"] = float(value) if value is not None else math.nan
        w.writerow([format_value(full.get(c)) for c in COLUMNS])
    return buf.getvalue()


def write_long_csv(path: Path, rows: Iterable[dict], context: dict, root: Path | None = None) -> Path:
    atomic_write_text(path, long_csv_text(rows, context), root)
    return path


def write_table_csv(path: Path, df, root: Path | None = None) -> Path:
    """An extra long table (e.g. the per-pair CDNV matrix), atomically."""
    atomic_write_text(path, df.to_csv(index=False, float_format=None, na_rep=""), root)
    return path


def write_json(path: Path, obj, root: Path | None = None) -> Path:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n", root)
    return path
