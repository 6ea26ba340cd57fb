"""The claims scorecard of a run folder: `claims.csv`, `claims_detail.csv` and a Markdown table.

`claims.csv` has exactly `SCORECARD_COLUMNS`; `claims_detail.csv` (`DETAIL_COLUMNS`) says per claim why
its verdict is what it is (missing inputs, one seed, runs left out as not ok), the rule applied and the
per-seed values, so that every verdict can be checked by hand from the results.
"""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from ncbench.claims.evaluate import Outcome, evaluate_claims
from ncbench.results.load import read_long_csv, typed_results
from ncbench.results.writer import atomic_write_text

SCORECARD_COLUMNS = ("claim_id", "claim", "source", "statistic", "value", "ci_low", "ci_high", "n_seeds",
                     "verdict")
DETAIL_COLUMNS = ("claim_id", "verdict", "reason", "rule", "direction", "inputs", "per_seed", "excluded_runs")
CATALOG_COLUMNS = ("claim_id", "claim", "source", "statistic", "direction", "rule")
SCORECARD_NAME, DETAIL_NAME = "claims.csv", "claims_detail.csv"


def catalog_table(claims=None) -> pd.DataFrame:
    """The declared claims: `claim_id, claim, source, statistic, direction, rule`."""
    from ncbench.claims.catalog import CLAIMS

    return pd.DataFrame([{"claim_id": c.claim_id, "claim": c.claim, "source": c.source,
                          "statistic": c.statistic_text(), "direction": c.direction_text(), "rule": c.rule_text()}
                         for c in (CLAIMS if claims is None else claims)], columns=list(CATALOG_COLUMNS))


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


def scorecard_tables(outcomes: list[Outcome], problems=()) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(`claims.csv` frame, `claims_detail.csv` frame) of evaluated claims."""
    card, detail = [], []
    note = "; ".join(problems)
    for o in outcomes:
        c = o.claim
        card.append({"claim_id": c.claim_id, "claim": c.claim, "source": c.source, "statistic": c.statistic_text(),
                     "value": _num(o.value), "ci_low": _num(o.ci_low), "ci_high": _num(o.ci_high),
                     "n_seeds": o.n_seeds, "verdict": o.verdict})
        reason = o.reason + (f" (results {note})" if note and o.verdict == "inconclusive" else "")
        detail.append({"claim_id": c.claim_id, "verdict": o.verdict, "reason": reason, "rule": c.rule_text(),
                       "direction": c.direction_text(), "inputs": " | ".join(m.label() for m in c.measures()),
                       "per_seed": "; ".join(f"seed {s}: {v:.6g}" for s, v in o.per_seed.items()),
                       "excluded_runs": "; ".join(o.excluded)})
    return pd.DataFrame(card, columns=list(SCORECARD_COLUMNS)), pd.DataFrame(detail, columns=list(DETAIL_COLUMNS))


def write_scorecard(run_dir: str | Path, out_dir: str | Path | None = None, claims=None) -> tuple[Path, Path]:
    """Evaluate the claims on the results under `run_dir`; write `claims.csv` and `claims_detail.csv`
    (default into `run_dir`). Returns both paths."""
    rows, problems = read_run_rows(run_dir)
    card, detail = scorecard_tables(evaluate_claims(rows, claims), problems)
    out_dir = Path(out_dir) if out_dir else Path(run_dir)
    paths = out_dir / SCORECARD_NAME, out_dir / DETAIL_NAME
    for path, df in zip(paths, (card, detail)):
        atomic_write_text(path, df.to_csv(index=False, lineterminator="\n"))
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
    """The scorecard as a Markdown table (for `leaderboards/README.md`): claim, value [95% CI], seeds,
    verdict, and the verdict rule next to it (from `detail`, when given)."""
    rules = dict(zip(detail["claim_id"], detail["rule"])) if detail is not None else {}
    head = "| claim | statistic | value [95% CI] | seeds | verdict |" + (" rule |" if rules else "")
    lines = [head, "|" + "---|" * (6 if rules else 5)]
    for r in card.itertuples(index=False):
        ci = f" [{_fmt(r.ci_low)}, {_fmt(r.ci_high)}]" if _fmt(r.ci_low) else ""
        cells = [f"**{r.claim_id}**: {r.claim} ({r.source})", r.statistic, f"{_fmt(r.value)}{ci}", r.n_seeds,
                 f"**{r.verdict}**"] + ([rules.get(r.claim_id, "")] if rules else [])
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"
