"""Integrity of a finished task folder: config.json records, for each results file, its row count
and sha256 (`record_files`, written by the suite); `integrity_problems` recomputes them, and `run`
(skip), `submit` and `report` trust a folder only when they match. A truncated or edited file,
or a folder from an ncbench that did not record them, is never taken as finished."""
from __future__ import annotations

import csv
import os
from pathlib import Path

from ncbench.provenance.digests import file_sha256
from ncbench.results.names import NAME
from ncbench.run_files import UnsafePathError, open_text, read_json


def csv_rows(path: Path, root: Path | None = None) -> int:
    """Data rows of a CSV (records after the header, as csv.reader counts them); the file must be a
    regular file inside `root` (`ncbench.run_files`)."""
    with open_text(path, root) as f:
        return max(sum(1 for _ in csv.reader(f)) - 1, 0)


def record_files(task_dir: Path, names: list[str]) -> dict[str, dict]:
    """{file name: {"rows": data rows, "sha256": hex}} of the CSVs `names` in `task_dir`, as written."""
    return {n: {"rows": csv_rows(Path(task_dir) / n), "sha256": file_sha256(Path(task_dir) / n)} for n in names}


def integrity_problems(task_dir: Path, cfg: dict | None = None, root: Path | None = None) -> list[str]:
    """What is wrong with the results files of `task_dir` against its config.json (empty: all intact);
    a file that is a link out of `root` (default `task_dir`), a FIFO or a device is a problem."""
    task_dir = Path(task_dir)
    root = task_dir if root is None else root
    if cfg is None:
        try:
            cfg = read_json(task_dir / "config.json", root)
        except FileNotFoundError:
            return ["no config.json"]
        except (OSError, ValueError) as e:
            return [f"config.json is unreadable ({type(e).__name__}: {e})"]
    files = cfg.get("files") if isinstance(cfg, dict) else None
    if not isinstance(files, dict) or "results.csv" not in files:
        return [("config.json records no row count and sha256 of results.csv (written by an older ncbench or "
                 "by hand): rerun the task")]
    problems = []
    for name, rec in sorted(files.items()):
        path = task_dir / name
        if not (isinstance(name, str) and NAME.fullmatch(name)) or not isinstance(rec, dict):
            problems.append(f"config.json lists an invalid results file entry {name!r}")
        elif not os.path.lexists(path):
            problems.append(f"{name} is missing")
        else:
            try:
                rows, sha = csv_rows(path, root), file_sha256(path, root)
            except UnsafePathError as e:     # a link out of the run folder, a FIFO, a device
                problems.append(str(e))
                continue
            except (OSError, ValueError, csv.Error) as e:
                problems.append(f"{name} is unreadable ({type(e).__name__}: {e})")
                continue
            if rows != rec.get("rows"):
                problems.append(f"{name} has {rows} rows, config.json records {rec.get('rows')}: it was truncated or "
                                f"edited after the run")
            elif sha != rec.get("sha256"):
                problems.append(f"{name} differs from the file the run wrote (sha256 {sha[:12]}, config.json "
                                f"records {str(rec.get('sha256'))[:12]}): it was edited or damaged")
    return problems
