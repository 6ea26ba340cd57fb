"""Reading tidy long-format results (SPEC §9) into one typed pandas DataFrame for analysis.

`load_results("results/**")` finds every `results.csv` under the given files, folders or glob
patterns and returns one long frame: `value` float64, integer columns as nullable `Int64`,
`started_at` as UTC datetimes, the rest categorical (categories unioned across files).
"""
from __future__ import annotations

import glob
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from ncbench.results.schema import COLUMNS, MEMBERS_FOLDER
from ncbench.run_files import open_text

INTEGER_COLUMNS = ("task_version", "epoch", "seed", "n_samples")
"""Nullable integers (`Int64`): empty in the CSV is <NA>."""

FLOAT_COLUMNS = ("value",)

DATETIME_COLUMNS = ("started_at",)

CATEGORICAL_COLUMNS = tuple(c for c in COLUMNS if c not in INTEGER_COLUMNS + FLOAT_COLUMNS + DATETIME_COLUMNS)
"""Everything else (run_id, task, model, pretrained, dataset, split, layer, metric, versions, ...).
Empty strings stay empty strings, so `pretrained == ""` (trained from scratch) survives groupby."""


def _expand(paths_or_globs) -> list[Path]:
    if isinstance(paths_or_globs, (str, Path)):
        paths_or_globs = [paths_or_globs]
    files: list[Path] = []
    for item in paths_or_globs:
        item = Path(item).expanduser()
        matches = [Path(m) for m in sorted(glob.glob(str(item), recursive=True))] if glob.has_magic(str(item)) \
            else ([item] if item.exists() else [])
        if not matches:
            raise FileNotFoundError(f"no results match '{item}': pass a results.csv, a run folder or a glob "
                                    f"such as 'results/**/results.csv'")
        for m in matches:
            if m.is_dir():
                files.extend(sorted(m.rglob("results.csv")))
            elif m.name.endswith(".csv"):
                files.append(m)
    seen, unique = set(), []
    for f in files:
        key = f.resolve()
        if key not in seen and "_trajectories" not in f.parts and MEMBERS_FOLDER not in f.parts:
            seen.add(key)
            unique.append(f)
    if not unique:
        raise FileNotFoundError(f"no results.csv under {list(map(str, paths_or_globs))}")
    return unique


def read_long_csv(path: str | Path, root: str | Path | None = None) -> pd.DataFrame:
    """One results CSV as strings, after checking its header is exactly the SPEC §9 schema; a regular
    file (inside `root`, the run folder, if given), never a FIFO or a link out (`ncbench.run_files`)."""
    path = Path(path)
    with open_text(path, root) as f:
        df = pd.read_csv(f, dtype=str, keep_default_na=False)
    if list(df.columns) != list(COLUMNS):
        missing = [c for c in COLUMNS if c not in df.columns]
        extra = [c for c in df.columns if c not in COLUMNS]
        raise ValueError(f"{path}: columns differ from the results schema (SPEC §9): missing {missing}, "
                         f"unexpected {extra}" + ("" if missing or extra else ", wrong order"))
    return df


def typed_results(raw: pd.DataFrame, source: str = "results") -> pd.DataFrame:
    """String long rows -> typed frame (see the module docstring); unparsable numbers raise."""
    df = raw.copy()
    for c in FLOAT_COLUMNS + INTEGER_COLUMNS:
        num = pd.to_numeric(df[c].mask(df[c] == ""), errors="coerce")
        bad = num.isna() & (df[c] != "") & (df[c].str.lower() != "nan")
        if bad.any():
            i = int(bad.to_numpy().nonzero()[0][0])
            raise ValueError(f"{source}: column '{c}' holds non-numbers, e.g. {df[c].iloc[i]!r} "
                             f"(row {i}); numbers must be plain floats (SPEC §9)")
        df[c] = num.astype("float64") if c in FLOAT_COLUMNS else num.astype("Int64")
    for c in DATETIME_COLUMNS:
        df[c] = pd.to_datetime(df[c].mask(df[c] == ""), utc=True, format="ISO8601")
    for c in CATEGORICAL_COLUMNS:
        df[c] = df[c].astype("category")
    return df


def load_results(paths_or_globs: str | Path | Iterable[str | Path]) -> pd.DataFrame:
    """Every long-format `results.csv` under files, run folders or glob patterns, as one typed frame.

    >>> df = load_results("results/")                     # every run below results/
    >>> df[(df.split == "summary") & (df.metric == "nc1")]
    """
    files = _expand(paths_or_globs)
    raw = pd.concat([read_long_csv(f) for f in files], ignore_index=True)
    return typed_results(raw, source=", ".join(map(str, files[:3])) + (" ..." if len(files) > 3 else ""))
