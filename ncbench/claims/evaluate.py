"""Evaluate claims on tidy results: per model, the per-seed statistic, its preconditions, interval, verdict.

Rows are SPEC §9 long rows; the columns read are `task, variant, metric, value, seed, split, epoch,
status` (and `layer`, `model`, `n_samples` when present). Rows are grouped by the `model` recorded in each
run, or named by the `model=` key of a variant (a spec sweeping architectures):
every claim gets one outcome per model, and a pooled one over the (model, seed) units of the models
whose preconditions held when there are several. Only rows whose `status` is `ok` (or empty: rows
written before the status column) count; the runs left out are named in the outcome. A claim whose
inputs are missing, ambiguous or non-finite gets verdict `inconclusive` and a reason, never an exception.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from ncbench.claims.claim import Claim
from ncbench.claims.intervals import claim_interval
from ncbench.claims.measure import Measure
from ncbench.claims.verdicts import INCONCLUSIVE, NOT_APPLICABLE, verdict
from ncbench.results.variants import parse_variant

REQUIRED = ("task", "variant", "metric", "value", "seed", "split", "epoch", "status")
OK = ("ok", "")
"""Statuses that count (empty: rows written before the status column)."""


class MissingInput(Exception):
    """A claim cannot be computed from these rows; the message is the reason written out."""


POOLED = "pooled"
"""The `model` of the outcome over the (model, seed) units of several models."""


@dataclass
class Outcome:
    """The evaluation of one claim on one model (or pooled): a `claims.csv` row, and per seed the
    `claims_detail.csv` rows (`per_seed` values; `checks`: {precondition name: {seed: (value, held)}})."""

    claim: Claim
    model: str = ""
    models: tuple = ()
    value: float = math.nan
    ci_low: float = math.nan
    ci_high: float = math.nan
    interval: str = ""
    n_seeds: int = 0
    verdict: str = INCONCLUSIVE
    reason: str = ""
    per_seed: dict = field(default_factory=dict)
    checks: dict = field(default_factory=dict)
    failed: list = field(default_factory=list)
    excluded: list = field(default_factory=list)
    points: dict = field(default_factory=dict)     # per seed: the points of its ρ (permutation interval)

    def preconditions_held(self) -> str:
        """'yes', 'no: <names>', 'unchecked' (a check could not be made) or '' (none declared)."""
        if not self.claim.preconditions:
            return ""
        if self.failed:
            return "no: " + ", ".join(dict.fromkeys(self.failed))
        if len(self.checks) < len(self.claim.preconditions):
            return "unchecked"
        return "yes"


def _same_value(a: str, b: str) -> bool:
    if a == b:
        return True
    try:
        return float(a) == float(b)
    except ValueError:
        return False


def variant_matches(text, wanted: dict[str, str], keys: set[str] | None = None) -> bool:
    """Whether the variant string `text` is the point `wanted` (numbers compared as numbers).

    With `keys`, the variant must have exactly those keys and agree with `wanted` on the ones it names.
    """
    try:
        got = parse_variant("" if text is None or (isinstance(text, float) and math.isnan(text)) else str(text))
    except ValueError:
        return False
    if set(got) != (set(wanted) if keys is None else keys):
        return False
    return all(_same_value(got[k], v) for k, v in wanted.items())


def prepare_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """Check the columns and normalise types (strings for names, floats for value, Int for seed/epoch)."""
    missing = [c for c in REQUIRED if c not in rows.columns]
    if missing:
        raise ValueError(f"results rows lack the column(s) {missing}: claims read the SPEC §9 long rows "
                         f"({', '.join(REQUIRED)})")
    df = rows.copy()
    if "layer" not in df.columns:
        df["layer"] = ""
    for c in ("task", "variant", "metric", "split", "status", "layer"):
        df[c] = df[c].astype(object).where(df[c].notna(), "").astype(str)
    df["value"] = pd.to_numeric(df["value"], errors="coerce").astype("float64")
    for c in ("seed", "epoch"):
        df[c] = pd.to_numeric(df[c], errors="coerce")
    if "status_reason" not in df.columns:
        df["status_reason"] = ""
    df["status_reason"] = df["status_reason"].astype(object).where(df["status_reason"].notna(), "").astype(str)
    if "model" not in df.columns:
        df["model"] = ""
    df["model"] = df["model"].astype(object).where(df["model"].notna(), "").astype(str)
    if "n_samples" in df.columns:
        df["n_samples"] = pd.to_numeric(df["n_samples"], errors="coerce").astype("float64")
    return _model_out_of_variant(df)


def _model_out_of_variant(df: pd.DataFrame) -> pd.DataFrame:
    """A `model=X` key of a variant (a spec sweeping architectures) is the row's model, not a sweep point:
    moved into the `model` column, so that a claim reads `ratio=10` of every architecture and gets a
    verdict per architecture and pooled."""
    has = df["variant"].str.contains("model=", regex=False)
    if not has.any():
        return df
    out = df.copy()
    for text in out.loc[has, "variant"].unique():
        try:
            parsed = parse_variant(text)
        except ValueError:
            continue
        if "model" not in parsed:
            continue
        model = parsed.pop("model")
        at = out["variant"] == text
        out.loc[at, "model"] = model
        out.loc[at, "variant"] = ",".join(f"{k}={v}" for k, v in parsed.items())
    return out


class Reader:
    """Picks each measure's rows out of the prepared results, recording runs that are not ok."""

    def __init__(self, rows: pd.DataFrame):
        self.rows = rows
        self.excluded: list[str] = []
        self.points: dict = {}
        """{seed: the number of points its Spearman ρ was computed over} (the permutation interval)."""

    def task_rows(self, m: Measure) -> pd.DataFrame:
        t = self.rows[self.rows["task"] == m.task]
        if t.empty:
            tasks = sorted(self.rows["task"].unique())
            raise MissingInput(f"no results of task '{m.task}' (tasks present: {', '.join(tasks) or 'none'})")
        return t

    def drop_not_ok(self, task: str, r: pd.DataFrame) -> pd.DataFrame:
        """`r` without the rows of runs not ok, which are named in `excluded`."""
        bad = r[~r["status"].isin(OK)]
        for (variant, seed, status, why), _ in bad.groupby(["variant", "seed", "status", "status_reason"],
                                                           dropna=False, sort=True):
            note = f"{task} [{variant or 'no variant'}] seed {_seed(seed)}: {status}" + (f" ({why})" if why else "")
            if note not in self.excluded:
                self.excluded.append(note)
        return r[r["status"].isin(OK)]

    def select(self, m: Measure, variant_rows=None) -> pd.DataFrame:
        """The ok rows of `m` (all epochs), before reducing to one value per seed."""
        t = self.task_rows(m) if variant_rows is None else variant_rows
        r = t[(t["metric"] == m.metric) & (t["layer"] == m.layer)]
        if variant_rows is None:
            wanted = parse_variant(m.variant)
            r = r[_mask(variant_matches(v, wanted) for v in r["variant"])]
        r = self.drop_not_ok(m.task, r)
        if r.empty:
            have = sorted(t.loc[(t["metric"] == m.metric) & t["status"].isin(OK), "variant"].unique())
            hint = (f"; variants with this metric: {', '.join(repr(v) for v in have)}" if have
                    else "; the task has no such metric" if m.metric not in set(t["metric"]) else "")
            raise MissingInput(f"no ok rows of {m.label()}{hint}")
        if m.split is not None:
            r = r[r["split"] == m.split]
        elif (r["split"] == "summary").any():
            r = r[r["split"] == "summary"]
        elif r["split"].nunique() > 1:
            raise MissingInput(f"{m.label()} is in several splits ({', '.join(sorted(r['split'].unique()))}): "
                               "name the split")
        if r.empty:
            raise MissingInput(f"no ok rows of {m.label()}")
        return r

    def per_seed(self, m: Measure, variant_rows=None) -> dict[int, float]:
        """One value per seed: the last epoch's row (several rows at that epoch: ambiguous)."""
        r = self.select(m, variant_rows)
        out = {}
        for seed, g in r.groupby("seed", dropna=False, sort=True):
            if g["epoch"].notna().any():
                g = g[g["epoch"] == g["epoch"].max()]
            if len(g) > 1:
                raise MissingInput(f"{m.label()}: {len(g)} rows for seed {_seed(seed)} at one epoch (duplicate "
                                   "runs in the folder, or a layer/split to name)")
            out[_seed(seed)] = float(g[m.column].iloc[0]) if m.column in g.columns else math.nan
        return out

    def sweep(self, m: Measure, key: str, points=()) -> dict[str, dict]:
        """{point: {seed: value}} of `m` over the points of the `key` sweep (the variant's other keys fixed
        to `m.variant`'s), or over the explicit variant `points` (keys beside `m.variant`'s)."""
        fixed = parse_variant(m.variant)
        t = self.task_rows(m)
        if points:
            out = {}
            for p in points:
                got = self.per_seed(replace(m, variant=",".join(x for x in (m.variant, p) if x)))
                out[p] = got
            return out
        keys = set(fixed) | {key}
        t = t[_mask(variant_matches(v, fixed, keys) for v in t["variant"])]
        t = self.drop_not_ok(m.task, t[t["metric"] == m.metric])
        return {p: self.per_seed(m, t[t["variant"] == p]) for p in sorted(t["variant"].unique())}

    def per_epoch(self, m: Measure) -> dict[int, pd.Series]:
        r = self.select(m)
        out = {}
        for seed, g in r.groupby("seed", dropna=False, sort=True):
            if g["epoch"].duplicated().any():
                raise MissingInput(f"{m.label()}: several rows per epoch for seed {_seed(seed)}")
            out[_seed(seed)] = g.set_index("epoch")["value"].sort_index()
        return out


def _mask(flags) -> np.ndarray:
    """A boolean row mask (a plain empty list would select no *columns*)."""
    return np.fromiter(flags, dtype=bool)


def _seed(s) -> int | str:
    return "none" if s is None or (isinstance(s, float) and math.isnan(s)) or s is pd.NA else int(s)


def _transform(claim: Claim, v: float) -> float:
    if claim.transform == "log10":
        return math.log10(v) if v > 0 else math.nan
    return v


def _finite(values: dict, what: str, claim: Claim) -> dict:
    keep = {s: v for s, v in values.items() if math.isfinite(v)}
    if not keep:
        extra = " (log10 needs values > 0)" if claim.transform == "log10" else ""
        raise MissingInput(f"{what}: no finite value over {len(values)} seed(s){extra}")
    return keep


def per_seed_statistic(claim: Claim, reader: Reader) -> dict:
    """The claim's statistic per seed (before the mean over seeds)."""
    def tf(d: dict) -> dict:
        return {s: _transform(claim, v) for s, v in d.items()}

    if claim.kind == "mean":
        return _finite(tf(reader.per_seed(claim.a)), claim.a.label(), claim)
    if claim.kind == "paired_difference":
        a = _finite(tf(reader.per_seed(claim.a)), claim.a.label(), claim)
        b = _finite(tf(reader.per_seed(claim.b)), claim.b.label(), claim)
        common = sorted(set(a) & set(b), key=str)
        if not common:
            raise MissingInput(f"no seed has both arms (seeds {sorted(a, key=str)} vs {sorted(b, key=str)})")
        return {s: a[s] - b[s] for s in common}
    if claim.kind == "epoch_change":
        out = {}
        for s, series in reader.per_epoch(claim.a).items():
            v = series.map(lambda x: _transform(claim, x))
            v = v[np.isfinite(v.to_numpy(dtype=float))]
            out[s] = float(v.iloc[-1] - v.iloc[0]) if len(v) >= 2 else math.nan
        return _finite(out, f"{claim.a.label()} (needs ≥ 2 finite epochs per seed)", claim)
    if claim.kind == "terminal_phase_fall":
        return _finite(_terminal_phase_fall(claim, reader), f"{claim.a.label()} (needs a terminal phase)", claim)
    if claim.kind == "late_slope_difference":
        return _finite(_late_slope_difference(claim, reader),
                       f"{claim.a.label()} (needs ≥ 3 evaluated epochs in the later half of the terminal phase)", claim)
    if claim.kind == "layer_spearman":
        return _finite(_layer_spearman(claim, reader), f"{claim.a.label()} (needs ≥ 3 blocks)", claim)
    if claim.points:
        return _points_spearman(claim, reader)
    return _spearman_per_seed(claim, reader)


def terminal_phase_start(series: pd.Series) -> float:
    """The first evaluated epoch whose train accuracy is 1 (NaN: never): the terminal phase's start."""
    hit = series[series >= 1.0]
    return float(hit.index[0]) if len(hit) else math.nan


def _terminal_phase_fall(claim: Claim, reader: Reader) -> dict:
    phase = reader.per_epoch(claim.phase)
    out = {}
    for s, series in reader.per_epoch(claim.a).items():
        t0 = terminal_phase_start(phase.get(s, pd.Series(dtype=float)))
        v = series.map(lambda x: _transform(claim, x))
        at = v[v.index >= t0] if math.isfinite(t0) else v.iloc[:0]
        out[s] = float(at.iloc[0] - v.iloc[-1]) if len(at) else math.nan
    return out


def slope(series: pd.Series) -> float:
    """Least-squares slope of `series` (finite values) over its index (epochs); NaN under 3 points."""
    v = series[np.isfinite(series.to_numpy(dtype=float))]
    if len(v) < 3:
        return math.nan
    x = v.index.to_numpy(dtype=float)
    return float(np.polyfit(x, v.to_numpy(dtype=float), 1)[0])


def _late_slope_difference(claim: Claim, reader: Reader) -> dict:
    phase = reader.per_epoch(claim.phase)
    a, b = reader.per_epoch(claim.a), reader.per_epoch(claim.b)
    out = {}
    for s in sorted(set(a) & set(b), key=str):
        t0 = terminal_phase_start(phase.get(s, pd.Series(dtype=float)))
        last = float(max(a[s].index.max(), b[s].index.max()))
        if not math.isfinite(t0):
            out[s] = math.nan
            continue
        start = t0 + (last - t0) / 2
        late = {k: v[s][v[s].index >= start].map(lambda x: _transform(claim, x)) for k, v in (("a", a), ("b", b))}
        out[s] = slope(late["a"]) - slope(late["b"])
    return out


def _layer_spearman(claim: Claim, reader: Reader) -> dict:
    t = reader.task_rows(claim.a)
    wanted = parse_variant(claim.a.variant)
    r = t[(t["metric"] == claim.a.metric) & (t["layer"] != "")]
    r = r[_mask(variant_matches(v, wanted) for v in r["variant"])]
    if claim.a.split is not None:
        r = r[r["split"] == claim.a.split]
    r = reader.drop_not_ok(claim.a.task, r)
    if r.empty:
        raise MissingInput(f"no ok per-block rows of {claim.a.label()}")
    out = {}
    for seed, g in r.groupby("seed", dropna=False, sort=True):
        g = g[g["epoch"] == g["epoch"].max()] if g["epoch"].notna().any() else g
        layer = pd.to_numeric(g["layer"], errors="coerce").to_numpy(dtype=float)
        y = np.array([_transform(claim, v) for v in g["value"]], dtype=float)
        ok = np.isfinite(layer) & np.isfinite(y)
        if len(set(layer[ok])) != ok.sum():
            raise MissingInput(f"{claim.a.label()}: several rows per block for seed {_seed(seed)}")
        reader.points[_seed(seed)] = int(ok.sum())
        out[_seed(seed)] = float(spearmanr(layer[ok], y[ok]).statistic) if ok.sum() >= 3 else math.nan
    return out


def _points_spearman(claim: Claim, reader: Reader) -> dict:
    """Spearman ρ per seed across the claim's explicit variant points (x: `x_metric`)."""
    ys = reader.sweep(claim.a, "", claim.points)
    xs = reader.sweep(replace(claim.a, metric=claim.x_metric), "", claim.points)
    return _rho_per_seed(claim, reader, list(claim.points), ys, xs, "points " + ", ".join(claim.points))


def _rho_per_seed(claim: Claim, reader: Reader, points: list, ys: dict, xs: dict, what: str) -> dict:
    seeds = sorted(set.intersection(*(set(ys[p]) & set(xs[p]) for p in points)), key=str)
    if not seeds:
        raise MissingInput(f"no seed has every one of the {what}")
    out = {}
    for s in seeds:
        x = np.array([xs[p][s] for p in points])
        y = np.array([_transform(claim, ys[p][s]) for p in points])
        ok = np.isfinite(x) & np.isfinite(y)
        reader.points[s] = int(ok.sum())
        out[s] = float(spearmanr(x[ok], y[ok]).statistic) if ok.sum() >= 3 else math.nan
    return _finite(out, f"Spearman ρ over the {what} (≥ 3 finite points per seed)", claim)


def _spearman_per_seed(claim: Claim, reader: Reader) -> dict:
    fixed = parse_variant(claim.a.variant)
    keys = set(fixed) | {claim.sweep_key}
    t = reader.task_rows(claim.a)
    t = t[_mask(variant_matches(v, fixed, keys) for v in t["variant"])]
    t = reader.drop_not_ok(claim.a.task, t[t["metric"].isin({claim.a.metric, claim.x_metric})])
    points = sorted(t["variant"].unique())
    if len(points) < 3:
        raise MissingInput(f"{claim.a.task}: {len(points)} point(s) of the {claim.sweep_key} sweep "
                           f"({', '.join(points) or 'none'}); Spearman ρ needs ≥ 3")
    ys, xs = {}, {}
    for p in points:
        rows = t[t["variant"] == p]
        ys[p] = reader.per_seed(claim.a, rows)
        if claim.x_metric:
            xs[p] = reader.per_seed(Measure(claim.a.task, claim.x_metric, p, claim.a.split, claim.a.layer), rows)
        else:
            raw = parse_variant(p)[claim.sweep_key]
            try:
                xv = float(raw)
            except ValueError as e:
                raise MissingInput(f"{claim.sweep_key}={raw} is not a number: name x_metric") from e
            xs[p] = {s: xv for s in ys[p]}
    return _rho_per_seed(claim, reader, points, ys, xs, f"points of the {claim.sweep_key} sweep")


def _decide(out: Outcome, values: dict) -> Outcome:
    """Interval and verdict of `values` (per seed or per (model, seed)) into `out`."""
    claim = out.claim
    out.per_seed, out.n_seeds = values, len(values)
    points = [out.points.get(s) for s in values]
    iv = claim_interval(claim, list(values.values()), points if None not in points else None)
    out.value, out.ci_low, out.ci_high, out.interval = iv.value, iv.low, iv.high, iv.text
    if out.failed:
        return out          # not applicable: the value and interval are shown, no verdict rests on them
    if len(values) < claim.seeds_needed:
        out.reason = f"{len(values)} seed(s): the rule needs ≥ {claim.seeds_needed} for an interval"
        if claim.interval_method == "sign" or iv.text.startswith("sign"):
            out.reason += f" ({iv.text})"
    elif not iv.decided:
        out.reason = iv.text
    elif math.isnan(iv.low):
        out.verdict = verdict(claim, iv.value, iv.value)
        out.reason = "one seed: decided on its value (no interval)" if len(values) == 1 else iv.text
        if out.verdict == INCONCLUSIVE and iv.value == claim.null_value:
            out.reason = (f"every seed ties at the null {claim.null_value:g}: no evidence for either direction "
                          f"at the statistic's resolution ({iv.text})")
    else:
        out.verdict = verdict(claim, iv.low, iv.high)
    return out


def _check_preconditions(out: Outcome, reader: Reader, seeds) -> None:
    """Each precondition on each seed of `seeds` (None: the seeds it has); a failure makes `out` not
    applicable."""
    problems = []
    for p in out.claim.preconditions:
        try:
            got = p.check(reader)
        except MissingInput as e:
            problems.append(f"precondition {p.name} cannot be checked: {e}")
            continue
        got = got if seeds is None else {s: got.get(s, (math.nan, False)) for s in seeds}
        out.checks[p.name] = got
        bad = [s for s, (_, held) in got.items() if not held]
        if bad:
            out.failed.append(p.name)
            vals = ", ".join(f"seed {s}: {got[s][0]:.3g}" for s in bad)
            problems.append(f"precondition {p.name} failed ({p.text}; needs {p.rule_text()}; {vals})")
    if out.failed:
        out.verdict = NOT_APPLICABLE
    out.reason = "; ".join(problems)


def evaluate_claim(claim: Claim, rows: pd.DataFrame, model: str = "") -> Outcome:
    """One claim on prepared rows (`prepare_rows`) of one model; never raises for missing or bad inputs."""
    reader = Reader(rows)
    out = Outcome(claim, model=model, models=(model,) if model else ())
    out.points = reader.points
    try:
        values = per_seed_statistic(claim, reader)
    except MissingInput as e:
        _check_preconditions(out, reader, None)     # a failed precondition often explains the missing input
        out.reason = "; ".join(x for x in ((out.reason if out.failed else ""), str(e)) if x)
        out.checks = out.checks if out.failed else {}
        out.excluded = reader.excluded
        if reader.excluded:
            out.reason += f"; left out as not ok: {'; '.join(reader.excluded)}"
        return out
    _check_preconditions(out, reader, list(values))
    checked = out.reason
    _decide(out, values)
    if out.preconditions_held() == "unchecked":
        out.verdict = INCONCLUSIVE      # whether the paper's statement applies here is unknown
    out.reason = "; ".join(x for x in (checked, out.reason if out.reason != checked else "") if x)
    out.excluded = reader.excluded
    if reader.excluded:
        out.reason = "; ".join(x for x in (out.reason, f"left out as not ok: {'; '.join(reader.excluded)}") if x)
    return out


def pooled_outcome(claim: Claim, per_model: list[Outcome]) -> Outcome:
    """The claim over the (model, seed) units of every model whose statistic exists and whose
    preconditions held (models not applicable or without inputs are named and left out)."""
    used = [o for o in per_model if o.per_seed and not o.failed and o.verdict != NOT_APPLICABLE]
    out = Outcome(claim, model=POOLED, models=tuple(o.model for o in used))
    left = [f"{o.model} ({o.verdict})" for o in per_model if o not in used]
    if not used:
        out.verdict = NOT_APPLICABLE if any(o.failed for o in per_model) else INCONCLUSIVE
        out.reason = "no model with inputs and its preconditions held" + (f": {', '.join(left)}" if left else "")
        return out
    values = {(o.model, s): v for o in used for s, v in o.per_seed.items()}
    out.points = {(o.model, s): m for o in used for s, m in o.points.items()}
    out.checks = {name: {(o.model, s): hv for o in used for s, hv in o.checks.get(name, {}).items()}
                  for name in (p.name for p in claim.preconditions)}
    _decide(out, values)
    if left:
        out.reason = "; ".join(x for x in (out.reason, f"left out: {', '.join(left)}") if x)
    return out


def evaluate_claims(rows: pd.DataFrame, claims=None, unavailable: dict | None = None) -> list[Outcome]:
    """Every claim (default `ncbench.claims.catalog.CLAIMS`) on the long rows `rows`: one outcome per
    model of the claim's tasks, then a pooled one when there are several models. A claim reading a
    task of `unavailable` ({task: why it cannot run on this setup}) is not applicable, with that reason."""
    from ncbench.claims.catalog import CLAIMS

    claims = CLAIMS if claims is None else tuple(claims)
    ids = [c.claim_id for c in claims]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise ValueError(f"claim ids must be unique: {dup} appear more than once")
    rows = prepare_rows(rows)
    out, unavailable = [], unavailable or {}
    for c in claims:
        cannot = [f"task {t} cannot run on this setup: {unavailable[t]}" for t in c.tasks() if t in unavailable]
        if cannot:
            out.append(Outcome(c, verdict=NOT_APPLICABLE, reason="; ".join(cannot)))
            continue
        mine = rows[rows["task"].isin(c.tasks())]
        models = sorted(mine["model"].unique()) or [""]
        per_model = [evaluate_claim(c, rows[rows["model"] == m] if len(models) > 1 else rows, m) for m in models]
        out += per_model
        if len(per_model) > 1:
            out.append(pooled_outcome(c, per_model))
    return out
