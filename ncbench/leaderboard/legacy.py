"""Boards of the wide format before variants (one row per seed, sweep points spelled inside column
names) rewritten to the current one. The only code that reads a sweep point out of a name, and
only out of those old headers:

- `R{r}/{classifier}/{metric}` -> `metric` at `ratio={r},classifier={classifier}`;
- `S{s}/{metric}` -> `metric` at `source_classes={s}`; the unprefixed few-shot headline numbers
  were the largest-S run's, so they go to that variant (the cross-sweep `sweep_*` ones to "");
- `{metric}_E_H={e}` -> `metric` at `E_H={e}`.

Each migrated row gets the status `ncbench.training.run_status.status_of` gives its recorded final
train accuracy (`R.../train_accuracy`, `source_train_accuracy`), `ok` where the old board recorded
none (it held no losses either, so divergence cannot be seen after the fact).
"""
from __future__ import annotations

import math
import re

import pandas as pd

from ncbench.leaderboard.schema import PROVENANCE, ROW, STATUS
from ncbench.results.variants import format_variant

OLD_IDENTITY = ("task", "task_version", "model", "pretrained", "dataset", "seed")
_RATIO = re.compile(r"^R(?P<r>\d+(?:\.\d+)?)/(?P<clf>[A-Za-z_]+)/(?P<m>[A-Za-z0-9_]+)$")
_SOURCE = re.compile(r"^S(?P<s>\d+)/(?P<m>[A-Za-z0-9_]+)$")
_EH = re.compile(r"^(?P<m>[A-Za-z0-9_]+?)_E_H=(?P<e>[0-9.]+)$")
TRAIN_ACCURACY = ("train_accuracy", "source_train_accuracy")


def legacy_column(name: str, top_source: int | None = None) -> tuple[str, str]:
    """(metric, variant) of an old wide-board column name."""
    if m := _RATIO.match(name):
        return m["m"], format_variant({"ratio": m["r"], "classifier": m["clf"]})
    if m := _SOURCE.match(name):
        return m["m"], format_variant({"source_classes": int(m["s"])})
    if m := _EH.match(name):
        return m["m"], format_variant({"E_H": m["e"]})
    if top_source is not None and not name.startswith("sweep_"):
        return name, format_variant({"source_classes": top_source})
    return name, ""


def is_legacy(df: pd.DataFrame) -> bool:
    return "variant" not in df.columns and "status" not in df.columns


def migrate_table(old: pd.DataFrame, num_classes: int | None = None) -> pd.DataFrame:
    """An old wide board (strings) as current board rows (strings). `num_classes`: K of the runs'
    training set, for the near-chance rule; a `source_classes=S` variant trained on S classes."""
    from ncbench.training.run_status import status_of

    metric_cols = [c for c in old.columns if c not in OLD_IDENTITY + PROVENANCE]
    sources = [int(m["s"]) for c in metric_cols if (m := _SOURCE.match(c))]
    top = max(sources) if sources else None
    mapping = {c: legacy_column(c, top) for c in metric_cols}
    rows = []
    for _, r in old.iterrows():
        points: dict[str, dict] = {}
        for c, (metric, variant) in mapping.items():
            if r[c] == "":
                continue
            p = points.setdefault(variant, {})
            if metric in p and _SOURCE.match(c) is None:
                continue                      # an unprefixed copy of the headline: the prefixed one wins
            p[metric] = r[c]
        for variant, values in points.items():
            k = num_classes
            if variant.startswith("source_classes="):
                k = int(variant.split("=", 1)[1])
            acc = next((float(values[a]) for a in TRAIN_ACCURACY if a in values), None)
            st = status_of([], acc, k) if acc is not None and k else None
            rows.append({**{c: r[c] for c in OLD_IDENTITY}, "variant": variant,
                         "status": st.status if st else "ok", "status_reason": st.reason if st else "",
                         **values, **{c: r[c] for c in PROVENANCE}})
    out = pd.DataFrame(rows, dtype=str).fillna("")
    metrics = list(dict.fromkeys(m for m, _ in mapping.values()))
    return out[list(ROW + STATUS) + [m for m in metrics if m in out.columns] + list(PROVENANCE)]


def check_same_values(old: pd.DataFrame, new: pd.DataFrame) -> list[str]:
    """Every old cell is in the new board at its (metric, variant) (and nothing else differs)."""
    problems = []
    metric_cols = [c for c in old.columns if c not in OLD_IDENTITY + PROVENANCE]
    sources = [int(m["s"]) for c in metric_cols if (m := _SOURCE.match(c))]
    top = max(sources) if sources else None
    for _, r in old.iterrows():
        mine = new[(new["model"] == r["model"]) & (new["pretrained"] == r["pretrained"]) & (new["seed"] == r["seed"])]
        for c in metric_cols:
            if r[c] == "":
                continue
            metric, variant = legacy_column(c, top)
            got = mine.loc[mine["variant"] == variant, metric].tolist()
            a = float(r[c])
            if len(got) != 1 or not (float(got[0]) == a or (math.isnan(a) and math.isnan(float(got[0])))):
                problems.append(f"{r['model']} {c}: old {r[c]}, new {got}")
    return problems
