"""Does a rerun agree with a board entry? Per (metric, variant): |rerun − submitted| ≤ tolerance with

    tolerance = max(atol + rtol·|submitted|,  t_{0.975, n−1}·s/√n)

the metric's declared tolerance (`ncbench.core.metrics`, or `--atol/--rtol`), or, when larger,
the half-width of the 95% interval over the entry's **other** `ok` seeds (leave-one-out: n ≥ 2 seeds
besides the one checked, s their sample std). A rerun that moves by less than the entry's
seed-to-seed uncertainty cannot change any conclusion drawn from the board; the row checked never
widens its own tolerance (a forged seed cannot make `verify` agree with it), and an entry with fewer
than two other seeds keeps the declared tolerance. A submitted or rerun value that is infinite, or a
tolerance that is not finite, never agrees.
"""
from __future__ import annotations

import math

import pandas as pd

from ncbench.core.metrics import metric
from ncbench.leaderboard.schema import Column

COMPARISON_COLUMNS = ("metric", "variant", "submitted", "rerun", "abs_diff", "atol", "rtol", "seed_half_width",
                      "n_seeds", "tolerance", "agrees")


def check_tolerance(name: str, value: float | None) -> float | None:
    """None (use each metric's declared tolerance) or a finite number >= 0; else ValueError."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0 (or left out to use each metric's declared "
                         f"tolerance), got {value!r}")
    return float(value)


def _num(v) -> float:
    try:
        return float(v) if v not in (None, "") else math.nan
    except (TypeError, ValueError):
        return math.nan


def compare(submitted: dict, rerun: dict, columns: list[Column], rtol: float | None = None,
            atol: float | None = None, spread: dict | None = None) -> pd.DataFrame:
    """Per column: submitted, rerun, |difference|, tolerance (see the module docstring), agrees
    (NaN = NaN). `submitted` / `rerun` map a Column (or a bare metric name, variant "") to a value;
    `spread` maps a Column to (half_width, n_seeds) of the entry's other seeds (leave-one-out)."""
    rtol, atol = check_tolerance("rtol", rtol), check_tolerance("atol", atol)
    spread = spread or {}
    get = lambda d, c: d.get(c, d.get(c.metric) if not c.variant else None)
    recs = []
    for c in columns:
        c = c if isinstance(c, Column) else Column(c)
        a, b = _num(get(submitted, c)), _num(get(rerun, c))
        decl = metric(c.metric)
        m_atol = decl.scale.atol if atol is None else atol
        m_rtol = decl.scale.rtol if rtol is None else rtol
        half, n = spread.get(c, (math.nan, 0))
        tol = m_atol + m_rtol * abs(a)
        if n >= 2 and math.isfinite(half):
            tol = max(tol, half)
        if math.isnan(a) or math.isnan(b):
            ok = math.isnan(a) and math.isnan(b)           # not measured on both sides
        else:
            ok = math.isfinite(a) and math.isfinite(b) and math.isfinite(tol) and abs(a - b) <= tol
        recs.append({"metric": c.metric, "variant": c.variant, "submitted": a, "rerun": b, "abs_diff": abs(a - b),
                     "atol": m_atol, "rtol": m_rtol, "seed_half_width": half, "n_seeds": n, "tolerance": tol,
                     "agrees": bool(ok)})
    return pd.DataFrame(recs, columns=list(COMPARISON_COLUMNS))


WHERE = (("device", "device"), ("cpu_capability", "CPU capability"), ("threads", "thread count"))
"""Board columns that say where a row was measured (`ncbench.provenance.machine`): values are bit-identical only
when all of them match (docs/reproducibility.md)."""


def machine_note(board_row: dict, rerun_row: dict) -> str | None:
    """One line when the rerun was measured elsewhere than the board row (another device, CPU capability
    or thread count), or when the board row does not say where; None when both say the same place."""
    def get(row, c):
        v = row.get(c)
        return "" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)

    differ = [(label, get(board_row, c), get(rerun_row, c) or "unrecorded") for c, label in WHERE
              if get(board_row, c) and get(board_row, c) != get(rerun_row, c)]
    if differ:
        return (f"the board row was measured on another {' and '.join(label for label, _, _ in differ)} ("
                + "; ".join(f"{label} {a} there, {b} here" for label, a, b in differ)
                + "): expect agreement within the tolerances, not bit-identical values (docs/reproducibility.md)")
    unknown = [label for c, label in WHERE if not get(board_row, c)]
    if unknown:
        return (f"the board row does not record its {' or '.join(unknown)} (submitted before ncbench recorded "
                f"them): values are bit-identical only on the same device, CPU capability and threads "
                f"(docs/reproducibility.md)")
    return None
