"""Leaderboards: one CSV per task built from the long results of submitted runs (SPEC §9).

- `schema`: board columns, entry identity, the YAML `leaderboard:` section (`BoardSpec`);
- `submit`: the checks that turn a finished task folder into board rows;
- `store`: folders, the file lock, merge and atomic writes;
- `aggregate`: seeds to mean ± 95% t interval per entry, status per entry and cell;
- `render`: standings as Markdown (leaderboards/README.md) and terminal tables;
- `agreement`: the tolerance a rerun must meet (`ncbench verify`, which reruns tasks, is CLI);
- `formulas`: text cells a spreadsheet would run (refused); `public_names`: no local paths on a board;
- `terminal`: what `ncbench leaderboard` prints (fits the terminal width; csv / json / markdown).

`load_leaderboard(task)` returns a `Leaderboard`: `.runs`, the per-seed rows as in the CSV (one per
run × variant, metrics float64), and `.entries`, the aggregate (one row per entry × (metric, variant):
mean, std, half_width, ci_low, ci_high, n_seeds, status). After RobustBench's model zoo and
lm-evaluation-harness's versioned tasks. This package never imports torch, tasks or the suite runner.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ncbench.leaderboard.aggregate import aggregate as aggregate_entries
from ncbench.leaderboard.agreement import compare
from ncbench.leaderboard.render import markdown_cell, render_readme, standings, terminal_table
from ncbench.leaderboard.schema import (
    ENTRY,
    FIXED,
    LOCK_NAME,
    PROVENANCE,
    ROW,
    RUN,
    STATUS,
    BoardSpec,
    Column,
    LeaderboardError,
    current_spec,
    leaderboards_dir,
    metric_columns,
    task_board,
)
from ncbench.leaderboard.store import (
    board_path,
    find_rows,
    read_table,
    read_tables,
    submit,
    typed_table,
    write_readme,
)
from ncbench.leaderboard.submit import Entry, SubmissionRefused, SubmitResult


@dataclass
class Leaderboard:
    """One task's board: `runs` (per-seed rows, typed) and `entries` (seeds aggregated)."""

    task: str
    runs: pd.DataFrame
    entries: pd.DataFrame


def load_leaderboard(task: str, leaderboards: str | Path | None = None, *, current_only: bool = False) -> Leaderboard:
    """The board of `task`. `runs`: metrics float64, seed/task_version Int64, date UTC, the rest
    categorical; `entries`: `aggregate.AGGREGATE_COLUMNS`. `current_only`: the registry's version only."""
    df = read_table(board_path(task, leaderboards), task)
    if current_only:
        df = df[df["task_version"] == str(current_spec(task).version)].reset_index(drop=True)
    return Leaderboard(task, typed_table(df), aggregate_entries(df, task_board(task).spec))


__all__ = ["ENTRY", "FIXED", "LOCK_NAME", "PROVENANCE", "ROW", "RUN", "STATUS", "BoardSpec", "Column", "Entry",
           "Leaderboard", "LeaderboardError", "SubmissionRefused", "SubmitResult", "compare", "find_rows",
           "leaderboards_dir", "load_leaderboard", "markdown_cell", "metric_columns", "read_table", "read_tables",
           "render_readme", "standings", "submit", "terminal_table", "typed_table", "write_readme"]
