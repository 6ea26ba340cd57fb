"""Where boards live and how they change: validated reads of `<task>.csv`, merge of a submission
(never dropping rows or fields), a file lock around read-modify-write, and atomic replace of every
file written (CSVs and the README rendered from them)."""
from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import pandas as pd

from ncbench.core.status import STATUSES
from ncbench.leaderboard.formulas import is_formula
from ncbench.leaderboard.schema import (
    ENTRY,
    FIXED,
    LOCK_NAME,
    MACHINE,
    PROVENANCE,
    README,
    ROW,
    RUN,
    STATUS,
    LeaderboardError,
    leaderboards_dir,
    metric_columns,
)
from ncbench.leaderboard.submit import Entry, SubmissionRefused, SubmitResult, collect_entries
from ncbench.results.names import check_name
from ncbench.results.writer import ResultsWriteError, atomic_write_text, ensure_dir
from ncbench.run_files import ReadError, UnsafePathError, read_text

_INT = re.compile(r"^-?\d+$")
MIGRATE_HINT = "migrate it with `python scripts/migrate_leaderboards.py DIR`"


def read_table(path: Path, task: str | None = None) -> pd.DataFrame:
    """A board CSV as strings, validated; LeaderboardError (never overwritten) if it is not valid."""
    path = Path(path)
    task = task or path.stem
    try:
        text = read_text(path)
        header = next(csv.reader(io.StringIO(text)))
        df = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except (ReadError, UnsafePathError, csv.Error, pd.errors.ParserError, pd.errors.EmptyDataError, StopIteration) as e:
        raise LeaderboardError(path, f"not a readable CSV ({type(e).__name__}: {str(e).strip()[:200]})") from None
    dup = sorted({c for c in header if header.count(c) > 1})
    if dup:
        raise LeaderboardError(path, f"repeated columns {dup}")
    if "variant" not in df.columns and "status" not in df.columns and "seed" in df.columns:
        raise LeaderboardError(path, f"it is in the wide format of before variants and status; {MIGRATE_HINT}")
    missing = [c for c in FIXED if c not in df.columns]
    if missing:
        raise LeaderboardError(path, f"columns {missing} are missing")
    line = lambda i: f"line {int(i) + 2}"  # the header is line 1
    wrong_task = df.index[df["task"] != task]
    if len(wrong_task):
        raise LeaderboardError(path, f"{line(wrong_task[0])} is for task '{df['task'].iloc[wrong_task[0]]}', "
                                     f"not '{task}'")
    for c in ("task_version", "seed"):
        bad = df.index[~df[c].str.match(_INT)]
        if len(bad):
            raise LeaderboardError(path, f"{line(bad[0])}: {c} {df[c].iloc[bad[0]]!r} is not an integer")
    for c in ("model", "dataset", "run_id"):
        bad = df.index[df[c].str.strip() == ""]
        if len(bad):
            raise LeaderboardError(path, f"{line(bad[0])}: {c} is empty")
    bad = df.index[~df["status"].isin(STATUSES)]
    if len(bad):
        raise LeaderboardError(path, f"{line(bad[0])}: status {df['status'].iloc[bad[0]]!r} is not one of "
                                     f"{list(STATUSES)}")
    for c in (c for c in df.columns if c not in metric_columns(df.columns)):
        bad = df.index[df[c].map(is_formula)]
        if len(bad):
            raise LeaderboardError(path, f"{line(bad[0])}: column '{c}' holds {df[c].iloc[bad[0]]!r}, which a "
                                         f"spreadsheet would run as a formula (text starting with = + - @)")
    for c in metric_columns(df.columns):
        num = pd.to_numeric(df[c].mask(df[c] == ""), errors="coerce")
        bad = df.index[num.isna() & (df[c] != "") & (df[c].str.lower() != "nan")]
        if len(bad):
            raise LeaderboardError(path, f"{line(bad[0])}: column '{c}' holds {df[c].iloc[bad[0]]!r}, not a plain "
                                         f"number (no thousands separators or text)")
    dups = df.index[df.duplicated(list(ROW), keep=False)]
    if len(dups):
        raise LeaderboardError(path, f"lines {[int(i) + 2 for i in dups]} repeat one entry "
                                     f"({', '.join(ROW)})")
    return df


def read_tables(lb_dir: Path) -> dict[str, pd.DataFrame]:
    """Every `<task>.csv` of a leaderboards folder, validated."""
    return {p.stem: read_table(p) for p in board_files(lb_dir)}


def table_text(df: pd.DataFrame) -> str:
    cols = list(ROW + STATUS) + metric_columns(df.columns) + list(PROVENANCE) + [c for c in MACHINE if c in df]
    return df[cols].fillna("").to_csv(index=False, lineterminator="\n")


def typed_table(df: pd.DataFrame) -> pd.DataFrame:
    """String board -> metrics float64, seed/task_version Int64, date UTC, the rest categorical."""
    out = df.copy()
    for c in metric_columns(df.columns):
        out[c] = pd.to_numeric(df[c].mask(df[c] == ""), errors="coerce").astype("float64")
    for c in ("task_version", "seed"):
        out[c] = pd.to_numeric(df[c]).astype("Int64")
    out["date"] = pd.to_datetime(df["date"].mask(df["date"] == ""), utc=True, format="ISO8601")
    for c in FIXED + tuple(c for c in MACHINE if c in df):
        if c not in ("task_version", "seed", "date"):
            out[c] = df[c].astype("category")
    return out


def merge(table: pd.DataFrame | None, entry: Entry, replace: bool) -> tuple[pd.DataFrame, str]:
    """Add the rows of `entry` (or, with `replace`, update the rows they duplicate: fields a new row
    lacks are kept, and so are rows of the old run at variants the new one does not have)."""
    new = pd.DataFrame(entry.rows, dtype=str)
    if table is None or table.empty:
        return (new if table is None else pd.concat([table, new], ignore_index=True)).fillna(""), "added"
    keys = table[list(ROW)].apply(tuple, axis=1)
    hits = {tuple(r[c] for c in ROW): keys.index[keys == tuple(r[c] for c in ROW)] for r in entry.rows}
    taken = [k for k, idx in hits.items() if len(idx)]
    if taken and not replace:
        old = table.loc[hits[taken[0]][0]]
        raise SubmissionRefused([(f"{entry.describe()}: already on the leaderboard (run {old['run_id']}, "
                                  f"{old['date']}); pass --replace to overwrite it")])
    for c in new.columns:
        if c not in table.columns:
            table = table.assign(**{c: ""})
    table = table.copy()
    fresh = []
    for r in entry.rows:
        idx = hits[tuple(r[c] for c in ROW)]
        if len(idx):
            for c, v in r.items():
                table.loc[idx[0], c] = v
        else:
            fresh.append(r)
    if fresh:
        table = pd.concat([table, pd.DataFrame(fresh, dtype=str)], ignore_index=True)
    return table.fillna(""), "replaced" if taken else "added"


def _lock(lb_dir: Path, timeout: float):
    from filelock import FileLock

    return FileLock(str(lb_dir / LOCK_NAME), timeout=timeout)


def _write_all(lb_dir: Path, tables: dict[str, pd.DataFrame], changed: list[str]) -> list[Path]:
    texts = {t: table_text(tables[t]) for t in changed}
    readme = readme_text(lb_dir, tables)                               # rendered before anything is written
    written = []
    for t, text in texts.items():
        atomic_write_text(lb_dir / f"{t}.csv", text)
        written.append(lb_dir / f"{t}.csv")
    atomic_write_text(lb_dir / README, readme)
    return written + [lb_dir / README]


def submit(run_dirs: list[str | Path] | str | Path, leaderboards: str | Path | None = None, *,
           replace: bool = False, dry_run: bool = False, lock_timeout: float = 120.0,
           dataset_name: str | None = None) -> SubmitResult:
    """Validate the runs' task rows and merge them into the leaderboards (all or nothing); a run on
    local data goes on a board only under `dataset_name` (`public_names`)."""
    if isinstance(run_dirs, (str, Path)):
        run_dirs = [run_dirs]
    entries, notes = collect_entries([Path(r) for r in run_dirs], dataset_name)
    lb_dir = ensure_dir(leaderboards_dir(leaderboards))
    result = SubmitResult(notes=notes)
    from filelock import Timeout

    try:
        with _lock(lb_dir, lock_timeout):
            tables = read_tables(lb_dir)
            if stale_readme(lb_dir, tables):
                if not dry_run:
                    atomic_write_text(lb_dir / README, readme_text(lb_dir, tables))
                result.notes.append(f"{lb_dir / README} did not match the board CSVs (a submission stopped between "
                                    f"the two writes, or a hand edit): {'would rebuild' if dry_run else 'rebuilt'} it")
            reasons = []
            for e in entries:
                try:
                    check_name("task name", e.task)
                except ValueError as err:
                    reasons.append(str(err))
                    continue
                try:
                    tables[e.task], action = merge(tables.get(e.task), e, replace)
                except SubmissionRefused as r:
                    reasons += r.reasons
                    continue
                (result.added if action == "added" else result.replaced).append(e)
            if reasons:
                raise SubmissionRefused(reasons)
            if not dry_run:
                result.written = _write_all(lb_dir, tables, sorted({e.task for e in entries}))
    except Timeout:
        raise ValueError(f"{lb_dir / LOCK_NAME} stayed locked for {lock_timeout:.0f} s by another submission; "
                         f"retry, or delete the lock file if no submission is running") from None
    except ResultsWriteError:
        raise
    except OSError as e:   # the lock file itself (a read-only folder)
        raise ResultsWriteError(lb_dir / LOCK_NAME, e) from None
    return result


NOT_BOARDS = ("claims.csv", "claims_detail.csv")
"""CSVs beside the boards that are not boards: the committed claims scorecard (`ncbench.claims`)."""


def board_files(lb_dir: str | Path) -> list[Path]:
    """The task boards of a leaderboards folder (`<task>.csv`), the scorecard files aside."""
    return [p for p in sorted(Path(lb_dir).glob("*.csv")) if p.name not in NOT_BOARDS]


CLAIMS_MARKDOWN = "claims.md"
"""The rendered claims scorecard beside the boards; README.md embeds it as its first section."""


def claims_markdown(lb_dir: Path) -> str | None:
    path = Path(lb_dir) / CLAIMS_MARKDOWN
    return read_text(path) if path.is_file() else None


def readme_text(lb_dir: Path, tables: dict[str, pd.DataFrame]) -> str:
    """What README.md must hold for these boards (and the claims scorecard beside them)."""
    from ncbench.leaderboard.render import render_readme

    return render_readme(tables, claims_markdown(lb_dir))


def stale_readme(lb_dir: Path, tables: dict[str, pd.DataFrame]) -> bool:
    """README.md disagrees with the board CSVs (it is written after them, so a kill in between, or a
    hand edit, leaves it behind); False for an empty folder without one."""
    path = Path(lb_dir) / README
    if not path.is_file():
        return bool(tables)
    try:
        return read_text(path, lb_dir) != readme_text(lb_dir, tables)
    except (UnicodeDecodeError, ReadError, UnsafePathError):
        return True


def refresh_readme(leaderboards: str | Path | None = None, lock_timeout: float = 120.0) -> Path | None:
    """Rebuild README.md when it is stale (`stale_readme`); the path when rebuilt, else None."""
    lb_dir = leaderboards_dir(leaderboards)
    if not lb_dir.is_dir() or not stale_readme(lb_dir, read_tables(lb_dir)):
        return None
    from filelock import Timeout

    try:
        with _lock(lb_dir, lock_timeout):
            tables = read_tables(lb_dir)
            if not stale_readme(lb_dir, tables):
                return None
            atomic_write_text(lb_dir / README, readme_text(lb_dir, tables))
    except Timeout:
        raise ValueError(f"{lb_dir / LOCK_NAME} stayed locked for {lock_timeout:.0f} s by a submission; retry") from None
    except ResultsWriteError:
        raise
    except OSError as e:
        raise ResultsWriteError(lb_dir / LOCK_NAME, e) from None
    return lb_dir / README


def write_readme(leaderboards: str | Path | None = None) -> Path:
    """Re-render README.md from the CSVs (after a hand edit or a task version bump)."""
    from ncbench.leaderboard.render import render_readme

    lb_dir = ensure_dir(leaderboards_dir(leaderboards))
    try:
        with _lock(lb_dir, 120.0):
            tables = read_tables(lb_dir)
            atomic_write_text(lb_dir / README, render_readme(tables, claims_markdown(lb_dir)))
    except ResultsWriteError:
        raise
    except OSError as e:
        raise ResultsWriteError(lb_dir / LOCK_NAME, e) from None
    return lb_dir / README


def board_path(task: str, leaderboards: str | Path | None = None) -> Path:
    """`<leaderboards>/<task>.csv`; FileNotFoundError listing the boards there when it is absent."""
    lb_dir = leaderboards_dir(leaderboards)
    path = lb_dir / f"{task}.csv"
    if not path.is_file():
        have = sorted(p.stem for p in board_files(lb_dir))
        raise FileNotFoundError(f"no leaderboard for task '{task}' in {lb_dir} (leaderboards: {have or 'none yet'})")
    return path


def rows_like(table: pd.DataFrame, row: dict, keys=ENTRY) -> pd.DataFrame:
    """The rows of `table` that share `row`'s values of `keys` (ENTRY: every seed and variant of its
    entry; RUN: every variant of its run)."""
    mask = pd.Series(True, index=table.index)
    for c in keys:
        mask &= table[c].astype(str) == str(row[c])
    return table[mask]


def find_rows(ref: str, leaderboards: str | Path | None = None) -> list[tuple[str, int, dict]]:
    """Runs named by `TASK:N` (the run of CSV row N), `TASK:RUN_ID` or a bare RUN_ID: one
    (task, first row number, that row) per run (entry × seed)."""
    if not ref.isascii() or not ref.isprintable() or not ref.strip():
        raise ValueError(f"row {ref!r} is not a row id: use TASK:ROW with ASCII digits (row numbers from "
                         f"`ncbench leaderboard TASK`), TASK:RUN_ID or a run id")
    tables = read_tables(leaderboards_dir(leaderboards))
    task, _, sel = ref.rpartition(":")
    if task:
        if task not in tables:
            raise ValueError(f"no leaderboard for task '{task}' (have {sorted(tables) or 'none'})")
        df = tables[task]
        if sel.isdigit():
            if int(sel) >= len(df):
                raise ValueError(f"{task} has rows 0..{len(df) - 1}, not {sel} (see `ncbench leaderboard {task}`)")
            hits = [(task, int(sel), df.iloc[int(sel)].to_dict())]
        else:
            hits = [(task, int(i), df.loc[i].to_dict()) for i in df.index[df["run_id"] == sel]]
    else:
        hits = [(t, int(i), df.loc[i].to_dict()) for t, df in tables.items() for i in df.index[df["run_id"] == sel]]
    if not hits:
        raise ValueError(f"no leaderboard row matches '{ref}': use TASK:ROW (row numbers from "
                         f"`ncbench leaderboard TASK`) or a run id")
    seen, runs = set(), []
    for task, i, row in hits:
        key = (task, *(row[c] for c in RUN))
        if key not in seen:
            seen.add(key)
            runs.append((task, i, row))
    return runs

