"""A group's declared comparisons (the spec's `aggregate:` entries, `ncbench.specs.groups.Comparison`),
computed per seed along one sweep axis from the members' summary rows: one summary row per seed and
per value of the rest of the variant (the other sweep axes, and a row's own sub-variant such as
`baseline=…`), a paired difference `value(a) − value(b)` or Spearman's ρ along the axis. Their mean
over seeds is `ncbench.results.aggregation.over_seeds`, like every other summary metric.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ncbench.results.variants import format_variant, parse_variant
from ncbench.specs.groups import Comparison
from ncbench.training.run_status import RunStatus, worst


def _level(axis: str, value) -> str:
    return format_variant({axis: value}).split("=", 1)[1]


def _statuses(rows: pd.DataFrame) -> RunStatus:
    return worst(RunStatus(s or "ok", r or "") for s, r in zip(rows.status, rows.status_reason))


def comparison_rows(summary: pd.DataFrame, derived: list[Comparison]) -> list[dict]:
    """Rows of the declared comparisons from the members' summary rows (columns `variant`, `seed`,
    `metric`, `value`, `epoch`, `status`, `status_reason`)."""
    out: list[dict] = []
    if summary.empty:
        return out
    points = summary.assign(_point=[parse_variant(v) for v in summary.variant])
    for d in derived:
        rows = points[points.metric == d.of]
        # every other part of the variant: the other sweep axes and a row's own sub-variant (e.g.
        # `baseline=raw_pixels`), so a comparison never mixes a network's rows with its baselines'
        keys = [tuple((a, v) for a, v in p.items() if a != d.axis) for p in rows._point]
        rows = rows.assign(_others=keys, _level=[p.get(d.axis, "") for p in rows._point])
        for (seed, other), g in rows.groupby(["seed", "_others"], sort=False):
            value = _compare(d, g)
            epochs = set(g.epoch.dropna())
            status = _statuses(g)
            out.append({"split": "summary", "epoch": epochs.pop() if len(epochs) == 1 else None, "layer": None,
                        "variant": format_variant(dict(other)), "metric": d.name, "value": value,
                        "n_samples": None, "seed": seed, "status": status.status, "status_reason": status.reason})
    return out


def _compare(d: Comparison, g: pd.DataFrame) -> float:
    if d.kind == "difference":
        a, b = (_level(d.axis, v) for v in d.levels)
        va, vb = g.value[g._level == a], g.value[g._level == b]
        return float(va.iloc[0]) - float(vb.iloc[0]) if len(va) and len(vb) else math.nan
    from scipy.stats import spearmanr

    xs = np.array([float(x) for x in g._level], dtype=float)
    ys = np.array(g.value, dtype=float)
    if len(xs) < 3 or not np.isfinite(ys).all() or np.ptp(ys) == 0:
        return math.nan
    return float(spearmanr(xs, ys).statistic)
