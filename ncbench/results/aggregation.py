"""Over the seeds of a group (`ncbench.specs.groups`): every summary metric's mean with its Student-t
95% interval (`ncbench.metrics.confidence`), the rows of a group's `aggregate.csv`.

`over_seeds`: per (split, variant, metric) of the summary rows, the mean over the seeds whose run is
`ok`, its sample std, `mean ± t_{0.975, n−1}·s/√n`, and how many seeds were left out as not ok. A
comparison's rows (`ncbench.results.comparisons`) are per-seed differences, so their interval is the
paired one.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ncbench.metrics.confidence import mean_ci

AGGREGATE_COLUMNS = ("task", "split", "variant", "metric", "n_seeds", "mean", "std", "ci_low", "ci_high",
                     "seeds", "n_not_ok")
"""Columns of a group's `aggregate.csv`."""


def over_seeds(summary: pd.DataFrame, task: str) -> pd.DataFrame:
    """Each summary metric of a group over its seeds (see the module docstring)."""
    out = []
    for (split, variant, metric), g in summary.groupby(["split", "variant", "metric"], sort=False):
        ok = g[g.status.isin(["ok", ""])]
        vals = np.array(ok.value, dtype=float)
        finite = vals[np.isfinite(vals)]
        if finite.size:
            ci = mean_ci(finite)
            stats = (ci.n, ci.mean, ci.std, ci.low, ci.high)
        else:
            stats = (0, math.nan, math.nan, math.nan, math.nan)
        out.append((task, split, variant, metric, *stats, " ".join(str(s) for s in ok.seed),
                    int(len(g) - len(ok))))
    return pd.DataFrame(out, columns=list(AGGREGATE_COLUMNS))
