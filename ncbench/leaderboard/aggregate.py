"""Seeds aggregated per entry: for each (metric, variant) column, the mean over the entry's `ok`
seeds with its 95% Student-t interval `x̄ ± t_{0.975, n−1}·s/√n` (s: sample std, ddof = 1; one seed:
no interval, `ncbench.core.intervals`, the one `ncbench.metrics.confidence.mean_ci` uses), and the
worst status of the runs behind it (`ncbench.core.status`).

An entry (`schema.ENTRY`: model, weights, data set, task version) is **ranked** only when every run
of it is `ok`; otherwise it is listed apart with its reasons. Columns come from the data: each
declared metric at every variant present in the board (or only the variants it declares).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from ncbench.core.intervals import t_interval
from ncbench.core.status import severity
from ncbench.leaderboard.schema import ENTRY, BoardSpec, Column, metric_columns

LEVEL = 0.95

AGGREGATE_COLUMNS = (*ENTRY, "metric", "variant", "role", "higher_is_better", "mean", "std", "half_width",
                     "ci_low", "ci_high", "n_seeds", "status", "status_reason")
"""Columns of `Leaderboard.entries` (one row per entry × (metric, variant))."""


def present_variants(table: pd.DataFrame, metric: str) -> list[str]:
    """Variants at which `metric` has a value in some row (string table), in order of first appearance."""
    if metric not in table.columns:
        return []
    has = table[table[metric].astype(str) != ""]
    return sorted(dict.fromkeys(has["variant"].astype(str)), key=variant_order)


def variant_order(variant: str) -> tuple:
    """Sort key: the values of a variant in order, numbers numerically (`ratio=2` before `ratio=10`)."""
    from ncbench.results.variants import parse_variant

    key = []
    for name, value in parse_variant(variant).items():
        try:
            key.append((name, 0, float(value), ""))
        except ValueError:
            key.append((name, 1, 0.0, value))
    return tuple(key)


def board_columns(table: pd.DataFrame, board: BoardSpec | None) -> list[Column]:
    """The (metric, variant) columns of a board: primary first, then targets, then descriptors, each
    at the variants present (or declared); without a spec every metric at every variant present."""
    if board is None:
        return [Column(m, v) for m in metric_columns(table.columns) for v in present_variants(table, m)]
    cols = [board.primary]
    for role in ("target", "descriptor"):
        for m in (d for d in board.metrics.values() if d.role == role):
            variants = list(m.variants) if m.variants is not None else present_variants(table, m.name)
            cols += [Column(m.name, v) for v in variants if Column(m.name, v) != board.primary]
    return cols


def worst_status(statuses) -> str:
    statuses = [s for s in statuses if s]
    return max(statuses, key=severity) if statuses else "ok"


@dataclass(frozen=True)
class Cell:
    """One (entry, column): mean ± half_width over `n` ok seeds, and the worst status behind it."""

    mean: float
    std: float
    half_width: float
    n: int
    status: str
    reason: str

    def text(self, n_entry: int) -> str:
        if self.status != "ok":
            return self.status
        if self.n == 0 or math.isnan(self.mean):
            return "—"
        s = f"{self.mean:.4g}" if self.n < 2 or math.isnan(self.half_width) else interval_text(self.mean, self.half_width)
        return s if self.n == n_entry else f"{s} (n={self.n})"


SIGNIFICANT = 4
"""Significant digits of a shown mean; its interval is rounded to the same decimal place."""


def interval_text(mean: float, half_width: float) -> str:
    """`mean ± half_width` rounded to the mean's precision: the mean to 4 significant digits, the
    half-width to 2, never finer than the mean's last digit (`0.7166 ± 3.4e-16` reads `0.7166 ± 0`:
    seeds that agree to rounding error have a zero-width interval; a non-zero half-width below the
    last digit reads `± <0.0001`)."""
    shown = f"{mean:.{SIGNIFICANT}g}"
    if not math.isfinite(mean) or not math.isfinite(half_width):
        return f"{shown} ± {half_width:.2g}"
    if half_width <= 1e-12 * abs(mean) or half_width == 0:
        return f"{shown} ± 0"
    last = math.floor(math.log10(abs(mean))) - (SIGNIFICANT - 1) if mean else math.floor(math.log10(half_width)) - 1
    rounded = round(float(f"{half_width:.2g}"), -last)
    if rounded == 0:
        return f"{shown} ± <{10.0 ** last:g}"
    return f"{shown} ± {rounded:.2g}"


def cell(rows: pd.DataFrame, col: Column) -> Cell:
    """Aggregate the rows (string board rows of one entry) at one column."""
    at = rows[(rows["variant"].astype(str) == col.variant)]
    if col.metric in at.columns:
        at = at[at[col.metric].astype(str) != ""]
    else:
        at = at.iloc[0:0]
    status = worst_status(at["status"].astype(str))
    reasons = [r for r in dict.fromkeys(at.loc[at["status"] != "ok", "status_reason"].astype(str)) if r]
    ok = at[at["status"] == "ok"]
    values = pd.to_numeric(ok[col.metric], errors="coerce") if len(ok) else pd.Series([], dtype=float)
    values = values[values.map(math.isfinite)] if len(values) else values
    if len(values) == 0:
        return Cell(math.nan, math.nan, math.nan, 0, status, "; ".join(reasons))
    mean, std, half = t_interval(values.to_numpy(dtype=float), LEVEL)
    return Cell(mean, std, half, len(values), status, "; ".join(reasons))


def entry_status(rows: pd.DataFrame) -> tuple[str, str]:
    """(worst status of an entry's runs, their reasons labelled by seed and variant)."""
    bad = rows[rows["status"] != "ok"]
    reasons = []
    for _, r in bad.iterrows():
        where = f"seed {r['seed']}" + (f", {r['variant']}" if r["variant"] else "")
        reasons.append(f"{where}: {r['status']}" + (f" ({r['status_reason']})" if r["status_reason"] else ""))
    return worst_status(rows["status"].astype(str)), "; ".join(reasons)


def group_entries(table: pd.DataFrame):
    """(entry key, its rows) in sorted key order."""
    return table.groupby(list(ENTRY), sort=True, observed=True, dropna=False)


def aggregate(table: pd.DataFrame, board: BoardSpec | None) -> pd.DataFrame:
    """Long frame of `AGGREGATE_COLUMNS`: each entry × (metric, variant) column of the board."""
    cols = board_columns(table, board)
    recs = []
    for key, rows in group_entries(table):
        for col in cols:
            c = cell(rows, col)
            decl = board.metrics.get(col.metric) if board else None
            recs.append({**dict(zip(ENTRY, key)), "metric": col.metric, "variant": col.variant,
                         "role": decl.role if decl else "", "higher_is_better": decl.higher_is_better if decl else None,
                         "mean": c.mean, "std": c.std, "half_width": c.half_width, "ci_low": c.mean - c.half_width,
                         "ci_high": c.mean + c.half_width, "n_seeds": c.n, "status": c.status,
                         "status_reason": c.reason})
    out = pd.DataFrame(recs, columns=list(AGGREGATE_COLUMNS))
    out["task_version"] = pd.to_numeric(out["task_version"]).astype("Int64")
    out["n_seeds"] = out["n_seeds"].astype("int64")
    return out
