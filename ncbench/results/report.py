"""An offline HTML report of one run: an overview first, then one section per task.

The overview holds the claims scorecard (`claims.csv` in the run folder, `ncbench.claims`), one headline
figure per task (its first PNG, else a small table of its headline metrics) and the failures: tasks
that failed or whose files are damaged, and runs whose `status` is not `ok`, with `status_reason`.
Each task section: description, headline metrics (with `variant`; mean ± 95% Student-t CI over seeds
when there are several; runs not ok are left out), plots, class-pair tables (`cdnv_pairs.csv`,
`cdnv_bound_pairs.csv`) as heatmaps (`ncbench.results.pair_heatmap`), and behind collapsible
`<details>` the spec, provenance, per-epoch tables, other rows and extra tables. One page, inline CSS,
no scripts or network; the PNGs are linked by paths relative to the page, so keep the page inside (or
beside) the run folder.
"""
from __future__ import annotations

import html
import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pandas as pd

from ncbench.core.board import board_metric, metric_items
from ncbench.metrics.confidence import mean_ci
from ncbench.results.integrity import integrity_problems
from ncbench.results.pair_heatmap import pair_columns, pair_heatmaps
from ncbench.results.writer import atomic_write_text
from ncbench.run_files import open_text, read_json

MAX_TABLE_ROWS = 60
"""Longer extra tables are cut here (the CSV beside the page has them all)."""
MAX_EPOCH_ROWS = 400
"""Per-epoch tables are cut here."""
OVERVIEW_ROWS = 8
"""Headline rows of a task without a plot in the overview."""
MARKERS = ("results.csv", "config.json", "error.json")
TEXT_COLUMNS = ("task", "variant", "split", "layer", "metric", "status", "status_reason")
OK = ("ok", "")

CSS = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:76em;color:#222;line-height:1.4;padding:0 1em}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.5em 0 1em;font-size:.85em}
th,td{border:1px solid #ddd;padding:.2em .5em;text-align:right;vertical-align:top}th{background:#f4f4f4}
td:first-child,th:first-child,th.text{text-align:left}td.text{text-align:left;max-width:32em}
img{max-width:100%;border:1px solid #eee}.failed{color:#a00}.note{color:#666;font-size:.85em}
nav{display:flex;flex-wrap:wrap;gap:.3em 1em}
details{margin:.4em 0}summary{cursor:pointer;font-weight:600}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(22em,1fr));gap:1em}
.card{border:1px solid #ddd;padding:.5em;border-radius:4px;overflow-x:auto}.card h3{margin:.2em 0 .4em;font-size:1em}
.card img{max-height:16em}
.verdict-reproduced{background:#e6f4e6}.verdict-not-reproduced{background:#fbe3e3}
.verdict-inconclusive{background:#f4f1de}
figure.heatmap{display:inline-block;margin:.5em 1em .5em 0}figure.heatmap svg{border:1px solid #eee}
"""


def _e(x) -> str:
    return html.escape(str(x), quote=True)


def _kv_table(d: dict) -> str:
    rows = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in d.items())
    return f"<table>{rows}</table>"


def _frame(df: pd.DataFrame, index: bool = False) -> str:
    return df.to_html(index=index, border=0, na_rep="", float_format=lambda x: f"{x:.5g}", escape=True)


def _details(summary: str, body: str, open_: bool = False) -> str:
    return f"<details{' open' if open_ else ''}><summary>{summary}</summary>\n{body}\n</details>"


def _rel(target: Path, page: Path) -> str:
    return quote(Path(os.path.relpath(target.resolve(), page.parent.resolve())).as_posix())


def _varies(df: pd.DataFrame, col: str) -> bool:
    return col in df.columns and (df[col] != "").any()


@dataclass
class TaskView:
    """One task folder as read for the report."""

    name: str
    anchor: str
    dir: Path
    cfg: dict
    df: pd.DataFrame | None = None
    failure: str = ""          # why nothing of the task is shown
    unverified: str = ""
    root: Path | None = None   # the run folder its files must lie in

    @property
    def spec(self) -> dict:
        return self.cfg.get("spec", {}) if isinstance(self.cfg.get("spec"), dict) else {}

    def not_ok(self) -> pd.DataFrame:
        """One row per (variant, seed, status, status_reason) of the runs not ok."""
        if self.df is None or "status" not in self.df.columns:
            return pd.DataFrame(columns=["variant", "seed", "status", "status_reason"])
        bad = self.df[~self.df["status"].isin(OK)]
        return bad[["variant", "seed", "status", "status_reason"]].drop_duplicates().reset_index(drop=True)

    def plots(self) -> list[Path]:
        d = self.dir.resolve()   # plots are listed by file name, found beside the CSVs (never links)
        listed = {d / Path(p).name for p in self.cfg.get("plots", []) if isinstance(p, str)}
        return [p for p in sorted(listed | set(d.glob("*.png")), key=lambda p: p.name)
                if p.is_file() and not p.is_symlink()]


def read_results(path: Path, root: Path | None = None) -> pd.DataFrame:
    """A results CSV with text columns as strings ('' for missing) and numbers as floats."""
    with open_text(path, root) as f:
        df = pd.read_csv(f, dtype=str, keep_default_na=False)
    for c in df.columns:
        if c in ("value", "epoch", "seed", "n_samples"):
            df[c] = pd.to_numeric(df[c].replace("", None), errors="coerce").astype("float64")
    for c in ("variant", "layer", "status", "status_reason"):
        if c not in df.columns:
            df[c] = ""
    return df


def load_view(task_dir: Path, name: str, anchor: str, root: Path | None = None) -> TaskView:
    """One task folder as the report shows it; files that are links out of `root` (the run folder,
    default `task_dir`), FIFOs or devices are refused (`ncbench.run_files`), never read."""
    root = task_dir if root is None else root
    err, cfg_path = task_dir / "error.json", task_dir / "config.json"
    try:
        cfg = read_json(cfg_path, root) if cfg_path.exists() else {}
    except (OSError, ValueError) as e:
        return TaskView(name, anchor, task_dir, {}, failure=f"config.json is unreadable ({type(e).__name__}: {e}): "
                                                           "nothing of this task is shown")
    cfg = cfg if isinstance(cfg, dict) else {}
    v = TaskView(name, anchor, task_dir, cfg, root=root)
    if not (task_dir / "results.csv").is_file():
        try:
            msg = read_json(err, root).get("error", "") if err.exists() else "no results.csv"
        except (OSError, ValueError, AttributeError) as e:
            msg = f"error.json is unreadable ({e})"
        v.failure = f"Failed: {msg}"
        return v
    problems = integrity_problems(task_dir, cfg, root)
    if problems and isinstance(cfg.get("files"), dict):     # a truncated or edited file: numbers not shown
        v.failure = f"Damaged results, not shown: {'; '.join(problems)}. Rerun the task (--force)."
        return v
    v.unverified = problems[0] if problems else ""
    try:
        v.df = read_results(task_dir / "results.csv", root)
    except (OSError, ValueError) as e:
        v.failure = f"results.csv is unreadable ({type(e).__name__}: {e})"
    return v


def board_directions(spec: dict) -> dict[str, bool]:
    """{metric: higher_is_better} of a recorded spec's board block (either form, `ncbench.core.board`);
    a metric the registry cannot read, or an unreadable block, is left out: the report still renders."""
    section = (spec.get("leaderboard") or {}).get("metrics") or {}
    try:
        items = metric_items(section, "leaderboard.metrics")
    except ValueError:
        return {}
    out = {}
    for name, overrides in items:
        try:
            out[name] = board_metric(name, overrides, "leaderboard.metrics").higher_is_better
        except ValueError:
            continue
    return out


def headline_table(df: pd.DataFrame, board: dict[str, bool]) -> pd.DataFrame:
    """The summary rows of the ok runs: per (variant, layer, metric) the value, or with several seeds the
    mean, its 95% Student-t half-width and the number of seeds; `better` from the leaderboard."""
    s = df[(df["split"] == "summary") & df["status"].isin(OK)]
    keys = [c for c in ("variant", "layer") if _varies(s, c)]
    several = s.groupby([*keys, "metric"], sort=False)["value"].size().max() > 1 if len(s) else False
    rows = []
    for key, g in s.groupby([*keys, "metric"], sort=False):
        key = key if isinstance(key, tuple) else (key,)
        r = dict(zip([*keys, "metric"], key))
        vals = g["value"][g["value"].map(math.isfinite)]
        if several:
            ci = mean_ci(vals) if len(vals) else None
            r.update(mean=ci.mean if ci else float("nan"), ci95=ci.half_width if ci else float("nan"),
                     n_seeds=len(vals))
        else:
            r["value"] = float(g["value"].iloc[0])
        m = r["metric"]
        r["better"] = ("higher" if board[m] else "lower") if m in board else ""
        rows.append(r)
    return pd.DataFrame(rows)


def _wide_per_epoch(rows: pd.DataFrame) -> pd.DataFrame:
    index = [c for c in ("variant", "seed") if c in rows.columns and rows[c].nunique(dropna=False) > 1]
    index += ["split"] + (["layer"] if _varies(rows, "layer") else []) + ["epoch"]
    rows = rows.assign(**{c: rows[c].fillna(-1) for c in ("seed",) if c in index})
    wide = rows.pivot_table(index=index, columns="metric", values="value", sort=False, dropna=False)
    wide.columns.name = None
    return wide.reset_index()


def _extra_table(extra: Path, page: Path, recorded, root: Path | None = None) -> str:
    try:
        with open_text(extra, root) as f:
            t = pd.read_csv(f)
    except (OSError, ValueError) as e:
        return f'<p class="failed">{_e(extra.name)} is unreadable ({_e(type(e).__name__)}: {_e(e)})</p>'
    out = []
    if recorded is not None and extra.name not in recorded:
        out.append(f'<p class="note">{_e(extra.name)} is not one of the files this run recorded '
                   f"(config.json): unverified.</p>")
    link = f'<a href="{_e(_rel(extra, page))}">{_e(extra.name)}</a>'
    if pair_columns(t) is not None:
        figs = pair_heatmaps(t, extra.stem)
        if figs:
            out.append(f"<h3>{_e(extra.stem)}: class-pair heatmaps ({link})</h3>" + "\n".join(figs))
    cut = f" (first {MAX_TABLE_ROWS} of {len(t)} rows)" if len(t) > MAX_TABLE_ROWS else ""
    out.append(_details(f"Table {_e(extra.stem)}, {len(t)} rows{_e(cut)}",
                        f"<p>{link}</p>" + _frame(t.head(MAX_TABLE_ROWS))))
    return "\n".join(out)


def _task_section(v: TaskView, page: Path) -> str:
    out = [f'<h2 id="{_e(v.anchor)}">{_e(v.name)}</h2>']
    if v.failure:
        out.append(f'<p class="failed">{_e(v.failure)}</p>')
        return "\n".join(out)
    if v.unverified:
        out.append(f'<p class="note">Unverified: {_e(v.unverified)}.</p>')
    spec, cfg, df = v.spec, v.cfg, v.df
    if spec:
        out.append(f"<p>{_e(spec.get('description', ''))}</p>")
    bad = v.not_ok()
    if len(bad):
        out.append(f'<p class="failed">{len(bad)} run(s) not ok, left out of the headline: '
                   + _e("; ".join(f"{r.variant or 'no variant'} seed {_seed(r.seed)}: {r.status}"
                                  + (f" ({r.status_reason})" if r.status_reason else "") for r in bad.itertuples()))
                   + "</p>")
    head = headline_table(df, board_directions(spec))
    out.append("<h3>Headline metrics</h3>" + (_frame(head) if len(head) else '<p class="note">No summary rows.</p>'))
    for p in v.plots():
        out.append(f'<figure><img src="{_e(_rel(p, page))}" alt="{_e(v.name)}: {_e(p.stem)}">'
                   f"<figcaption>{_e(p.name)}</figcaption></figure>")
    recorded = cfg.get("files") if isinstance(cfg.get("files"), dict) else None
    for extra in sorted(v.dir.glob("*.csv")):
        if extra.name not in ("results.csv",):
            out.append(_extra_table(extra, page, recorded, v.root))
    timed = df[df["epoch"].notna() & (df["split"] != "summary")]
    if len(timed):
        wide = _wide_per_epoch(timed)
        cut = f" (first {MAX_EPOCH_ROWS} of {len(wide)} rows)" if len(wide) > MAX_EPOCH_ROWS else ""
        out.append(_details(f"Per-epoch table, {len(wide)} rows{_e(cut)}", _frame(wide.head(MAX_EPOCH_ROWS))))
    rest = df[df["epoch"].isna() & (df["split"] != "summary")]
    summary = df[df["split"] == "summary"]
    if len(rest):
        cols = [c for c in ("variant", "seed", "split", "layer", "metric", "value", "n_samples", "status")
                if c in rest.columns and (rest[c].astype(str) != "").any() and rest[c].notna().any()]
        out.append(_details(f"Other rows, {len(rest)}", _frame(rest[cols].head(MAX_EPOCH_ROWS))))
    if summary["seed"].nunique() > 1 or len(bad):
        cols = [c for c in ("variant", "seed", "layer", "metric", "value", "status", "status_reason")
                if c in summary.columns and (summary[c].astype(str) != "").any()]
        out.append(_details(f"Summary rows per seed, {len(summary)}", _frame(summary[cols])))
    if spec:
        always = ("kind", "version", "tier", "dataset", "model", "pretrained", "checkpoint", "seed", "recipe",
                  "options")
        keys = [*always, *(k for k in ("seeds", "sweep") if k in spec)]
        info = {k: json.dumps(spec[k]) if isinstance(spec.get(k), (dict, list)) else spec.get(k) for k in keys}
        info["config hash"] = cfg.get("config_hash", "")
        if isinstance(cfg.get("seconds"), (int, float)):
            info["seconds"] = f"{cfg['seconds']:.1f}"
        out.append(_details("Spec", _kv_table(info)))
    if cfg.get("provenance"):
        out.append(_details("Provenance", _kv_table(cfg["provenance"])))
    return "\n".join(out)


def _seed(s) -> str:
    return "" if pd.isna(s) else str(int(s))


def _scorecard(run_dir: Path) -> str:
    card_path, detail_path = run_dir / "claims.csv", run_dir / "claims_detail.csv"
    if not card_path.is_file():
        return ('<p class="note">No claims scorecard: this run folder has no claims.csv '
                "(<code>ncbench report --claims</code> or <code>python -m ncbench.claims RUN_DIR</code> "
                "writes one).</p>")
    try:
        with open_text(card_path, run_dir) as f:
            card = pd.read_csv(f, keep_default_na=False)
        detail = None
        if "reason" not in card.columns and detail_path.is_file():   # a scorecard written before issue 28
            with open_text(detail_path, run_dir) as f:
                detail = pd.read_csv(f, keep_default_na=False).drop_duplicates("claim_id").set_index("claim_id")
    except (OSError, ValueError) as e:
        return f'<p class="failed">claims.csv is unreadable ({_e(type(e).__name__)}: {_e(e)})</p>'
    counts = card["verdict"].value_counts() if "verdict" in card.columns else {}
    rows = []
    for r in card.to_dict("records"):
        d = detail.loc[r["claim_id"]] if detail is not None and r.get("claim_id") in detail.index else r
        ci = f" [{_num(r.get('ci_low'))}, {_num(r.get('ci_high'))}]" if _num(r.get("ci_low")) else ""
        why = f"<br><span class=\"note\">{_e(d['reason'])}</span>" if d.get("reason") else ""
        rule = f"<br><span class=\"note\">Rule: {_e(d['rule'])}</span>" if d.get("rule") else ""
        model = f" <span class=\"note\">[{_e(r['model'])}]</span>" if r.get("model") else ""
        verdict = str(r.get("verdict", ""))
        rows.append(f'<tr class="verdict-{_e(verdict.replace(" ", "-"))}">'
                    f'<td class="text"><b>{_e(r.get("claim_id", ""))}</b>{model}: {_e(r.get("claim", ""))} '
                    f'<span class="note">({_e(r.get("source", ""))})</span></td>'
                    f'<td class="text">{_e(r.get("statistic", ""))}</td>'
                    f"<td>{_e(_num(r.get('value')))}{_e(ci)}</td><td>{_e(r.get('n_seeds', ''))}</td>"
                    f'<td class="text"><b>{_e(verdict)}</b>{why}{rule}</td></tr>')
    from ncbench.core.verdicts import VERDICTS

    order = [v for v in VERDICTS if v != "not applicable"] + [v for v in dict(counts) if v not in VERDICTS]
    order += ["not applicable"]
    tally = ", ".join(f"{counts.get(k, 0)} {k}" for k in order)
    return (f"<p>{len(card)} claims: {_e(tally)}.</p><table><tr><th>claim</th><th class=\"text\">statistic</th>"
            "<th>value [interval]</th><th>seeds</th><th class=\"text\">verdict</th></tr>" + "".join(rows) + "</table>")


def _num(v) -> str:
    try:
        v = float(v)
    except (TypeError, ValueError):
        return ""
    return f"{v:.4g}" if math.isfinite(v) else ""


def _failures(views: list[TaskView]) -> tuple[str, int]:
    items, runs = [], []
    for v in views:
        if v.failure:
            items.append(f'<li><a href="#{_e(v.anchor)}">{_e(v.name)}</a>: <span class="failed">{_e(v.failure)}'
                         "</span></li>")
        for r in v.not_ok().itertuples():
            runs.append(f'<tr><td><a href="#{_e(v.anchor)}">{_e(v.name)}</a></td><td>{_e(r.variant)}</td>'
                        f'<td>{_e(_seed(r.seed))}</td><td class="failed">{_e(r.status)}</td>'
                        f'<td class="text">{_e(r.status_reason)}</td></tr>')
    if not items and not runs:
        return "<p>None: every task finished and every run is ok.</p>", 0
    out = [f"<ul>{''.join(items)}</ul>"] if items else []
    if runs:
        out.append("<p>Runs whose status is not ok (never ranked, left out of headlines and claims):</p>"
                   "<table><tr><th>task</th><th class=\"text\">variant</th><th>seed</th><th class=\"text\">status</th>"
                   "<th class=\"text\">reason</th></tr>"
                   + "".join(runs) + "</table>")
    return "\n".join(out), len(items) + len(runs)


def _headline_card(v: TaskView, page: Path) -> str:
    head = f'<h3><a href="#{_e(v.anchor)}">{_e(v.name)}</a></h3>'
    if v.failure:
        return f'<div class="card">{head}<p class="failed">{_e(v.failure)}</p></div>'
    plots = v.plots()
    if plots:
        p = plots[0]
        body = f'<img src="{_e(_rel(p, page))}" alt="{_e(v.name)}: {_e(p.stem)} (headline)">'
    else:
        board = board_directions(v.spec)
        t = headline_table(v.df, board)
        if len(t):
            first = t[t["metric"].isin(list(board))] if t["metric"].isin(list(board)).any() else t
            body = _frame(first.head(OVERVIEW_ROWS).drop(columns=["better"]))
        else:
            body = '<p class="note">No summary rows.</p>'
    return f'<div class="card">{head}{body}</div>'


def _overview(views: list[TaskView], run_dir: Path, page: Path) -> str:
    failures, n_fail = _failures(views)
    lead = (f'<p class="failed"><a href="#failures">{n_fail} failure(s)</a> below.</p>' if n_fail else "")
    return "\n".join([
        '<h2 id="overview">Overview</h2>', lead,
        '<h3 id="scorecard">Claims scorecard</h3>', _scorecard(run_dir),
        '<h3 id="headlines">Headline per task</h3>',
        '<div class="cards">' + "".join(_headline_card(v, page) for v in views) + "</div>",
        '<h3 id="failures">Failures</h3>', failures])


def _task_dirs(run_dir: Path) -> list[Path]:
    if any((run_dir / m).exists() for m in MARKERS):
        return [run_dir]
    found = set()
    for m in MARKERS:
        for f in run_dir.rglob(m):
            rel = f.parent.relative_to(run_dir).parts
            if rel and not any(p.startswith(("_", ".")) for p in rel):
                found.add(f.parent)
    return sorted(found)


def _anchor(name: str, taken: set[str]) -> str:
    a = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "task"
    base, k = a, 2
    while a in taken:
        a, k = f"{base}-{k}", k + 1
    taken.add(a)
    return a


def render_report(run_dir: str | Path, page: str | Path) -> str:
    """The HTML text of the report of `run_dir`, with links relative to `page`."""
    run_dir, page = Path(run_dir), Path(page)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run folder '{run_dir}' not found")
    task_dirs = _task_dirs(run_dir)
    if not task_dirs:
        raise ValueError(f"'{run_dir}' holds no task results: pass a folder results/<run_id>")
    taken = {"overview", "scorecard", "headlines", "failures"}
    views = []
    for d in task_dirs:
        name = d.name if d == run_dir else d.relative_to(run_dir).as_posix()
        views.append(load_view(d, name, _anchor(name, taken), run_dir))
    suite_json = run_dir / "suite.json"
    try:
        suite = read_json(suite_json, run_dir) if suite_json.exists() else {}
    except (OSError, ValueError):
        suite = {}
    suite = suite if isinstance(suite, dict) else {}
    title = f"ncbench report: {suite.get('run_id', run_dir.name)}"
    nav = '<a href="#overview">Overview</a>' + "".join(f'<a href="#{_e(v.anchor)}">{_e(v.name)}</a>' for v in views)
    body = [f"<h1>{_e(title)}</h1>",
            (f"<p>Suite <code>{_e(suite.get('suite', '-'))}</code>, {len(views)} task(s), folder "
             f"<code>{_e(run_dir.resolve())}</code>.</p>"),
            f"<nav>{nav}</nav>", _overview(views, run_dir, page)]
    body += [_task_section(v, page) for v in views]
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{_e(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
            + "\n".join(body) + "\n</body>\n</html>\n")


def write_report(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write the report (default `RUN_DIR/report.html`) atomically; returns its path. The claims
    scorecard it shows (`RUN_DIR/claims.csv`) is written before by `ncbench.claims.scorecard`
    (`ncbench report --claims` does both): results/ sits below claims/ and never imports it."""
    page = Path(out) if out else Path(run_dir) / "report.html"
    atomic_write_text(page, render_report(run_dir, page))
    return page
