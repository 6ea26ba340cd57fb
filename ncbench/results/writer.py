"""Atomic writing of tidy long-format result CSVs (SPEC §9) and their config.json."""
from __future__ import annotations

import csv
import errno
import io
import json
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import ClassVar

from ncbench.atomic_files import replacing
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


class ResultsWriteError(OSError):
    """A results file that could not be written: one line naming the file, the OS reason and the fix."""

    HINTS: ClassVar[dict[int, str]] = {
        errno.ENOSPC: "the disk is full: free space or write to another disk",
        errno.EDQUOT: "the disk quota is exceeded: free space or write to another disk",
        errno.EROFS: "the file system is read-only: write to a writable folder",
        errno.EACCES: "permission denied: write to a folder you may write to",
        errno.EPERM: "permission denied: write to a folder you may write to",
        errno.ENOTDIR: "a part of the path is a regular file, not a folder: choose another folder",
        errno.EEXIST: "a part of the path is a regular file, not a folder: choose another folder",
        errno.EISDIR: "the path is a folder, not a file: choose a file name",
    }

    def __init__(self, path: Path, error: OSError):
        super().__init__(error.errno, error.strerror or str(error), str(path))
        self.path = Path(path)
        self.hint = self.HINTS.get(error.errno, "check the path and retry")

    def __str__(self) -> str:
        return f"cannot write {self.path}: {self.strerror}; {self.hint}"


def ensure_dir(path: Path) -> Path:
    """`mkdir -p` whose failure is a `ResultsWriteError` (e.g. a regular file in the way)."""
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ResultsWriteError(path, e) from None
    return Path(path)


def atomic_write_text(path: Path, text: str) -> None:
    """Write to a temporary file in the same folder, then rename: readers never see half a file.

    Any OS failure (full disk, read-only or missing folder) removes the temporary file and raises
    `ResultsWriteError`; the previous content of `path`, if any, is left as it was.
    """
    path = Path(path)
    ensure_dir(path.parent)
    try:
        with replacing(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:   # `replacing` removed the temporary file
        raise ResultsWriteError(path, e) from None


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Delete `.NAME.tmp<pid>-<thread>` files that an interrupted writer left in `folder` (call under its lock)."""
    gone = []
    for p in Path(folder).glob(".*.tmp*"):
        try:
            p.unlink()
            gone.append(p)
        except OSError:
            pass
    return gone


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
