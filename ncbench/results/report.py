"""An offline HTML report of one run: per task its spec, provenance, headline metrics, per-epoch
tables, extra tables and PNG plots. One page, inline CSS, no scripts or network; the images are
linked by paths relative to the page, so keep the page inside (or beside) the run folder.
"""
from __future__ import annotations

import html
import json
import os
from pathlib import Path
from urllib.parse import quote

import pandas as pd

from ncbench.results.integrity import integrity_problems
from ncbench.results.writer import atomic_write_text

MAX_TABLE_ROWS = 60
"""Longer extra tables are cut here (the CSV beside the page has them all)."""

CSS = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:72em;color:#222;line-height:1.4}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.5em 0 1em;font-size:.85em}
th,td{border:1px solid #ddd;padding:.2em .5em;text-align:right}th{background:#f4f4f4}
td:first-child,th:first-child{text-align:left}
img{max-width:100%;border:1px solid #eee}.failed{color:#a00}.note{color:#666;font-size:.85em}
nav{display:flex;flex-wrap:wrap;gap:.3em 1em}
"""


def _e(x) -> str:
    return html.escape(str(x), quote=True)


def _kv_table(d: dict) -> str:
    rows = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in d.items())
    return f"<table>{rows}</table>"


def _frame(df: pd.DataFrame, index: bool = False) -> str:
    return df.to_html(index=index, border=0, na_rep="", float_format=lambda x: f"{x:.5g}", escape=True)


def _rel(target: Path, page: Path) -> str:
    return quote(Path(os.path.relpath(target.resolve(), page.parent.resolve())).as_posix())


def _task_section(task_dir: Path, page: Path) -> str:
    name = task_dir.name
    out = [f'<h2 id="{_e(name)}">{_e(name)}</h2>']
    err = task_dir / "error.json"
    cfg_path = task_dir / "config.json"
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8")) if cfg_path.is_file() else {}
    except (OSError, ValueError) as e:
        out.append(f'<p class="failed">config.json is unreadable ({_e(type(e).__name__)}: {_e(e)}): '
                   f"nothing of this task is shown</p>")
        return "\n".join(out)
    if not (task_dir / "results.csv").is_file():
        try:
            msg = json.loads(err.read_text(encoding="utf-8")).get("error", "") if err.is_file() else "no results.csv"
        except (OSError, ValueError, AttributeError):
            msg = "error.json is unreadable"
        out.append(f'<p class="failed">Failed: {_e(msg)}</p>')
        return "\n".join(out)
    recorded = cfg.get("files") if isinstance(cfg.get("files"), dict) else None
    problems = integrity_problems(task_dir, cfg)
    if problems and recorded is not None:      # a truncated or edited file: its numbers are not shown
        out.append(f'<p class="failed">Damaged results, not shown: {_e("; ".join(problems))}. Rerun the task '
                   f"(<code>--force</code>).</p>")
        return "\n".join(out)
    if problems:
        out.append(f'<p class="note">Unverified: {_e(problems[0])}.</p>')
    spec = cfg.get("spec", {})
    if spec:
        out.append(f"<p>{_e(spec.get('description', ''))}</p>")
        keep = ("kind", "version", "tier", "dataset", "model", "pretrained", "checkpoint", "seed", "recipe", "options")
        info = {k: json.dumps(spec[k]) if isinstance(spec.get(k), (dict, list)) else spec.get(k) for k in keep}
        info["config hash"] = cfg.get("config_hash", "")
        if "seconds" in cfg:
            info["seconds"] = f"{cfg['seconds']:.1f}"
        out.append("<h3>Spec</h3>" + _kv_table(info))
    if cfg.get("provenance"):
        out.append("<h3>Provenance</h3>" + _kv_table(cfg["provenance"]))
    df = pd.read_csv(task_dir / "results.csv")
    board = (spec.get("leaderboard") or {}).get("metrics", {})
    summary = df[df["split"] == "summary"][["metric", "layer", "value"]].dropna(axis=1, how="all")
    summary.insert(1, "better", [("higher" if board[m].get("higher_is_better") else "lower") if m in board else ""
                                 for m in summary["metric"]])
    out.append("<h3>Headline metrics</h3>" + _frame(summary))
    task_dir = task_dir.resolve()   # plots are listed by file name, found beside the CSVs
    plots = sorted({task_dir / Path(p).name for p in cfg.get("plots", [])} | set(task_dir.glob("*.png")),
                   key=lambda p: p.name)
    seen = set()
    for p in plots:
        if p.is_file() and p.resolve() not in seen:
            seen.add(p.resolve())
            out.append(f'<figure><img src="{_e(_rel(p, page))}" alt="{_e(name)}: {_e(p.stem)}">'
                       f"<figcaption>{_e(p.name)}</figcaption></figure>")
    per_epoch = df[df["split"].isin(["train", "test"]) & df["epoch"].notna()]
    if len(per_epoch):
        wide = per_epoch.pivot_table(index=["split", "epoch"], columns="metric", values="value", sort=False)
        wide.columns.name = None
        out.append("<h3>Per epoch</h3>" + _frame(wide.reset_index()))
    other = per_epoch.index.union(df.index[df["split"] == "summary"])
    rest = df.drop(index=other)
    if len(rest):
        cols = [c for c in ("split", "epoch", "layer", "metric", "value", "n_samples") if rest[c].notna().any()]
        out.append("<h3>Other rows</h3>" + _frame(rest[cols]))
    for extra in sorted(task_dir.glob("*.csv")):
        if extra.name == "results.csv":
            continue
        t = pd.read_csv(extra)
        if recorded is not None and extra.name not in recorded:
            out.append(f'<p class="note">{_e(extra.name)} is not one of the files this run recorded '
                       f"(config.json): unverified.</p>")
        cut = f' <span class="note">(first {MAX_TABLE_ROWS} of {len(t)} rows)</span>' if len(t) > MAX_TABLE_ROWS else ""
        out.append(f'<h3>{_e(extra.stem)} <a href="{_e(_rel(extra, page))}">{_e(extra.name)}</a>{cut}</h3>'
                   + _frame(t.head(MAX_TABLE_ROWS)))
    return "\n".join(out)


def render_report(run_dir: str | Path, page: str | Path) -> str:
    """The HTML text of the report of `run_dir`, with links relative to `page`."""
    run_dir, page = Path(run_dir), Path(page)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run folder '{run_dir}' not found")
    markers = ("results.csv", "config.json", "error.json")
    if any((run_dir / m).exists() for m in markers):
        task_dirs = [run_dir]
    else:
        task_dirs = sorted(d for d in run_dir.iterdir() if d.is_dir() and not d.name.startswith(("_", "."))
                           and any((d / m).exists() for m in markers))
    if not task_dirs:
        raise ValueError(f"'{run_dir}' holds no task results: pass a folder results/<run_id>")
    suite_json = run_dir / "suite.json"
    suite = json.loads(suite_json.read_text(encoding="utf-8")) if suite_json.is_file() else {}
    title = f"ncbench report: {suite.get('run_id', run_dir.name)}"
    nav = "".join(f'<a href="#{_e(d.name)}">{_e(d.name)}</a>' for d in task_dirs)
    body = [f"<h1>{_e(title)}</h1>",
            (f"<p>Suite <code>{_e(suite.get('suite', '-'))}</code>, {len(task_dirs)} task(s), folder "
             f"<code>{_e(run_dir.resolve())}</code>.</p>"),
            f"<nav>{nav}</nav>"]
    body += [_task_section(d, page) for d in task_dirs]
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{_e(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
            + "\n".join(body) + "\n</body>\n</html>\n")


def write_report(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write the report (default `RUN_DIR/report.html`) atomically; returns its path."""
    page = Path(out) if out else Path(run_dir) / "report.html"
    atomic_write_text(page, render_report(run_dir, page))
    return page
