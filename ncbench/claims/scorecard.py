"""The claims scorecard of a run folder: `claims.csv`, `claims_detail.csv` and a Markdown table.

`claims.csv` has exactly `SCORECARD_COLUMNS`: one row per (claim, model), plus a `pooled` row per claim
when the results hold several models; the effect size with its interval and the interval's method,
the threshold and whose it is (`threshold_source`: paper / ncbench), the preconditions and whether
they held, the verdict, why, and the rule applied. `claims_detail.csv` (`DETAIL_COLUMNS`) holds the
per-(claim, model, seed) values and each precondition's value and whether it held, so that every
verdict can be checked by hand from the results.
"""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from ncbench.claims.evaluate import Outcome, evaluate_claims
from ncbench.claims.task_map import TaskMap
from ncbench.claims.verdicts import INCONCLUSIVE, NOT_APPLICABLE, VERDICTS
from ncbench.results.load import read_long_csv, typed_results
from ncbench.results.writer import atomic_write_text
from ncbench.run_files import read_json

SCORECARD_COLUMNS = ("claim_id", "claim", "source", "evidence", "model", "architectures", "statistic", "value",
                     "ci_low", "ci_high", "interval", "n_seeds", "threshold", "threshold_source", "preconditions",
                     "preconditions_held", "verdict", "reason", "rule", "inputs", "excluded_runs")
DETAIL_COLUMNS = ("claim_id", "model", "seed", "value", "preconditions", "preconditions_held", "used")
CATALOG_COLUMNS = ("claim_id", "claim", "source", "evidence", "statistic", "direction", "threshold_source",
                   "preconditions", "rule")
SCORECARD_NAME, DETAIL_NAME, MARKDOWN_NAME = "claims.csv", "claims_detail.csv", "claims.md"


def catalog_table(claims=None) -> pd.DataFrame:
    """The declared claims: `claim_id, claim, source, statistic, direction, rule`."""
    from ncbench.claims.catalog import CLAIMS

    return pd.DataFrame([{"claim_id": c.claim_id, "claim": c.claim, "source": c.source, "evidence": c.evidence,
                          "statistic": c.statistic_text(), "direction": c.direction_text(),
                          "threshold_source": c.threshold_source, "preconditions": _preconditions_text(c),
                          "rule": c.rule_text()}
                         for c in (CLAIMS if claims is None else claims)], columns=list(CATALOG_COLUMNS))


def catalog_markdown(claims=None) -> str:
    """The declared claims as the Markdown table of docs/claims.md ("The catalog"; `python -m
    ncbench.claims --list --markdown`): claim, paper, statistic, threshold and whose, preconditions."""
    lines = ["| claim | paper | statistic | threshold (whose) | preconditions (ncbench's levels) |", "|---|---|---|---|---|"]
    for r in catalog_table(claims).to_dict("records"):
        theory = " *(theory check)*" if r["evidence"] == "theory" else ""
        whose = "ncbench's" if r["threshold_source"] == "ncbench" else "the paper's"
        cells = [f"`{r['claim_id']}`{theory}", r["source"], r["statistic"], f"{r['direction']} ({whose})",
                 r["preconditions"] or "none"]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def _preconditions_text(claim) -> str:
    return "; ".join(f"{p.name}: {p.rule_text()}" for p in claim.preconditions)


def read_run_rows(run_dir: str | Path) -> tuple[pd.DataFrame, list[str]]:
    """Every readable `results.csv` under `run_dir` (not under `_trajectories`, `_jobs` or a group's
    `_members`, whose rows the group's own file holds), and the problems of the others (a file with
    another header, or non-numbers, is skipped and named)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run folder '{run_dir}' not found")
    frames, problems = [], []
    for f in sorted(run_dir.rglob("results.csv")):
        if any(part.startswith("_") for part in f.relative_to(run_dir).parts[:-1]):
            continue
        try:
            frames.append(typed_results(read_long_csv(f, run_dir), str(f)))
        except (OSError, ValueError) as e:
            problems.append(f"{f.relative_to(run_dir)} skipped: {e}")
    if not frames:
        return pd.DataFrame(columns=["task", "variant", "metric", "value", "seed", "split", "epoch",
                                     "status"]), problems
    return pd.concat([fr.astype({c: str for c in fr.columns if str(fr[c].dtype) == "category"})
                      for fr in frames], ignore_index=True), problems


def _num(v: float):
    return "" if v is None or not math.isfinite(v) else float(v)


def _seed_text(s) -> str:
    return f"{s[0]}/{s[1]}" if isinstance(s, tuple) else str(s)


def _unit(o: Outcome, s) -> tuple[str, object]:
    """(model, seed) of a per-seed key (pooled outcomes key by (model, seed))."""
    return (s[0], s[1]) if isinstance(s, tuple) else (o.model, s)


def scorecard_tables(outcomes: list[Outcome], problems=()) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(`claims.csv` frame, `claims_detail.csv` frame) of evaluated claims."""
    card, detail = [], []
    note = "; ".join(problems)
    for o in outcomes:
        c = o.claim
        reason = o.reason + (f" (results {note})" if note and o.verdict == INCONCLUSIVE else "")
        card.append({"claim_id": c.claim_id, "claim": c.claim, "source": c.source, "evidence": c.evidence,
                     "model": o.model, "architectures": " ".join(o.models), "statistic": c.statistic_text(),
                     "value": _num(o.value), "ci_low": _num(o.ci_low), "ci_high": _num(o.ci_high),
                     "interval": o.interval, "n_seeds": o.n_seeds, "threshold": c.direction_text(),
                     "threshold_source": c.threshold_source, "preconditions": _preconditions_text(c),
                     "preconditions_held": o.preconditions_held(), "verdict": o.verdict, "reason": reason,
                     "rule": c.rule_text(), "inputs": " | ".join(m.label() for m in c.measures()),
                     "excluded_runs": "; ".join(o.excluded)})
        if o.model == "pooled":
            continue        # its units are the per-model rows
        for s, v in o.per_seed.items():
            checks = {name: got[s] for name, got in o.checks.items() if s in got}
            held = all(h for _, h in checks.values())
            model, seed = _unit(o, s)
            detail.append({"claim_id": c.claim_id, "model": model, "seed": _seed_text(seed), "value": _num(v),
                           "preconditions": "; ".join(f"{n}: {val:.4g} ({'held' if h else 'failed'})"
                                                      for n, (val, h) in checks.items()),
                           "preconditions_held": ("yes" if held else "no") if checks else "",
                           "used": "no" if o.verdict == NOT_APPLICABLE else "yes"})
    return pd.DataFrame(card, columns=list(SCORECARD_COLUMNS)), pd.DataFrame(detail, columns=list(DETAIL_COLUMNS))


def verdict_counts(card: pd.DataFrame) -> str:
    """'3 reproduced, 1 contradicted, …' over the rows of `card` (every verdict of the vocabulary)."""
    counts = card["verdict"].value_counts()
    return ", ".join(f"{counts.get(v, 0)} {v}" for v in VERDICTS)


def run_task_map(run_dir: str | Path, suite: str | None = None) -> TaskMap | None:
    """The `scorecard_tasks` of `suite`, default of the suite recorded in RUN_DIR/suite.json when it is a
    shipped suite; None when that suite declares no map."""
    from ncbench.specs import suite_names, suite_settings

    if suite is None:
        path = Path(run_dir) / "suite.json"
        suite = read_json(path).get("suite") if path.is_file() else None
        if suite not in suite_names():
            return None
    return suite_settings(suite).get("scorecard_tasks")


def write_scorecard(run_dir: str | Path, out_dir: str | Path | None = None, claims=None,
                    unavailable: dict | None = None, markdown: bool = False,
                    task_map: TaskMap | None = None) -> tuple[Path, Path]:
    """Evaluate the claims on the results under `run_dir`; write `claims.csv` and `claims_detail.csv`
    (default into `run_dir`; with `markdown`, `claims.md` too). Returns the two CSV paths.

    `unavailable`: {task: why it cannot run on this setup} (`ncbench claims --model`): their claims are
    not applicable. Run names carrying a setup (`train_collapse_mnist5k@recipe=…`) count as their task.
    `task_map`: the suite's `scorecard_tasks` (`ncbench.claims.task_map`): its tasks' rows read as the
    catalog tasks they play, the claims of the others not applicable ("not measured by suite S")."""
    rows, problems = read_run_rows(run_dir)
    rows["task"] = rows["task"].astype(str).str.split("@").str[0]
    if task_map is not None:
        rows = task_map.apply(rows)
        unavailable = {**task_map.unmeasured(claims), **task_map.catalog_names(unavailable or {})}
    card, detail = scorecard_tables(evaluate_claims(rows, claims, unavailable), problems)
    out_dir = Path(out_dir) if out_dir else Path(run_dir)
    paths = out_dir / SCORECARD_NAME, out_dir / DETAIL_NAME
    for path, df in zip(paths, (card, detail)):
        atomic_write_text(path, df.to_csv(index=False, lineterminator="\n"))
    if markdown:
        atomic_write_text(out_dir / MARKDOWN_NAME, scorecard_markdown(card))
    return paths


def _cell(x) -> str:
    return str(x).replace("|", "\\|").replace("\n", " ")


def _fmt(v) -> str:
    try:
        v = float(v)
    except (TypeError, ValueError):
        return ""
    return "" if not math.isfinite(v) else f"{v:.3g}"


def scorecard_markdown(card: pd.DataFrame, detail: pd.DataFrame | None = None) -> str:
    """The scorecard as a Markdown table (for `leaderboards/README.md`): claim, model, value [interval],
    seeds, threshold (and whose), preconditions held, verdict with its reason and rule. `detail` is
    accepted for older callers and not needed (the card carries the rule)."""
    head = "| claim | model | statistic | value [interval] | seeds | threshold | preconditions held | verdict |"
    lines = [head, "|" + "---|" * 8]
    for r in card.to_dict("records"):
        ci = f" [{_fmt(r.get('ci_low'))}, {_fmt(r.get('ci_high'))}]" if _fmt(r.get("ci_low")) else ""
        whose = " (ncbench's)" if r.get("threshold_source") == "ncbench" else ""
        theory = " *theory check*" if r.get("evidence") == "theory" else ""
        why = f"<br>{r['reason']}" if r.get("reason") and r.get("verdict") != "reproduced" else ""
        cells = [f"**{r['claim_id']}**: {r['claim']} ({r['source']}){theory}", r.get("model") or "",
                 r["statistic"], f"{_fmt(r['value'])}{ci}", r["n_seeds"], f"{r.get('threshold', '')}{whose}",
                 r.get("preconditions_held") or "none declared", f"**{r['verdict']}**{why}"]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"
