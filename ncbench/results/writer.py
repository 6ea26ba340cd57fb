"""Atomic writing of tidy long-format result CSVs (SPEC §9) and their config.json."""
from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Iterable
from pathlib import Path

from ncbench.results.schema import COLUMNS


def format_value(v) -> str:
    """Plain numbers only: floats as repr (round-trips), NaN/None as empty, ±inf as inf/-inf."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, float):
        return "" if math.isnan(v) else repr(v)
    return str(v)


def atomic_write_text(path: Path, text: str) -> None:
    """Write to a temporary file in the same folder, then rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


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


def write_long_csv(path: Path, rows: Iterable[dict], context: dict) -> Path:
    atomic_write_text(path, long_csv_text(rows, context))
    return path


def write_table_csv(path: Path, df) -> Path:
    """An extra long table (e.g. the per-pair CDNV matrix), atomically."""
    atomic_write_text(path, df.to_csv(index=False, float_format=None, na_rep=""))
    return path


def write_json(path: Path, obj) -> Path:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
    return path
