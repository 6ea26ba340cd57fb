"""Boards as tables: the standings of a task (entries ranked by the primary target, seeds as
mean ± 95% t interval; entries with a run that is not `ok` listed apart, never ranked), rendered
as Markdown (leaderboards/README.md) or as terminal text (`ncbench leaderboard [TASK]`)."""
from __future__ import annotations

import html
import math
import re
from dataclasses import dataclass, field

import pandas as pd

from ncbench.leaderboard.aggregate import board_columns, cell, entry_status, group_entries
from ncbench.leaderboard.schema import TIERS, BoardSpec, Column, task_board


@dataclass
class Standings:
    """Display tables of the current version of one task: `ranked`, `unranked` (with a `reason`
    column), the board's columns, and notes (rows of other versions that are not shown)."""

    ranked: pd.DataFrame
    unranked: pd.DataFrame
    columns: list[Column] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def header(col: Column, board: BoardSpec | None) -> str:
    """`minority_accuracy (ratio=10,classifier=learnable) ↑`; descriptors end in `(descriptor)`."""
    if board is None or col.metric not in board.metrics:
        return col.header()
    m = board.metrics[col.metric]
    return f"{col.header()} {m.arrow}" + (" (descriptor)" if m.role == "descriptor" else "")


def standings(task: str, table: pd.DataFrame) -> Standings:
    tb = task_board(task)
    board = tb.spec
    notes = []
    if tb.version is None:
        notes.append(f"task '{task}' is no longer in tasks/: its rows are listed unsorted")
        rows = table
    else:
        rows = table[table["task_version"] == str(tb.version)]
        old = len(table) - len(rows)
        if old:
            notes.append(f"{old} row(s) for other versions of this task are kept in {task}.csv and not shown")
    cols = board_columns(rows, board)
    ranked, unranked = [], []
    for key, g in group_entries(rows) if len(rows) else []:
        n = g["seed"].nunique()
        status, reason = entry_status(g)
        cells = {c: cell(g, c) for c in cols}
        rec = {"model": key[2], "weights": key[3] or "scratch", "dataset": key[4],
               "seeds": str(n) if n > 1 else "1 (no CI)", "_primary": cells[cols[0]].mean if cols else math.nan}
        rec.update({header(c, board): cells[c].text(n) for c in cols})
        rec["device"] = ", ".join(sorted(set(g["device"].astype(str))))
        dates = sorted(d for d in g["date"].astype(str) if d)
        rec["date"] = dates[-1][:10] if dates else ""
        if status == "ok":
            ranked.append(rec)
        else:
            unranked.append({**rec, "status": status, "reason": reason})
    if board is not None and tb.version is not None:
        higher = board.metrics[board.primary.metric].higher_is_better
        ranked.sort(key=lambda r: (math.isnan(r["_primary"]), -r["_primary"] if higher else r["_primary"],
                                   r["model"]))
    heads = [header(c, board) for c in cols]
    base = ["model", "weights", "dataset", "seeds"]
    ranked_df = pd.DataFrame([{"#": i + 1, **r} for i, r in enumerate(ranked)],
                             columns=["#", *base, *heads, "device", "date"])
    unranked_df = pd.DataFrame(unranked, columns=[*base, "status", "reason", *heads, "device", "date"])
    return Standings(ranked_df, unranked_df, cols, notes)


_MARKDOWN_SPECIAL = re.compile(r"([\\`*~\[\]|@]|:(?=//))")
_EDGE_UNDERSCORE = re.compile(r"(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])")   # intraword `_` never emphasises
_WWW = re.compile(r"(?i)(www)\.")


def markdown_cell(value) -> str:
    """One table cell as literal text: Markdown specials (`` \\ ` * ~ [ ] | ``, and `_` unless inside a
    word) backslash-escaped, the characters GitHub's autolinks start from (`:` of `http://`, `@` of
    an e-mail, the `.` of `www.`) escaped too, HTML (& < >) as entities, line breaks as spaces: a submitted name can neither break
    the table, nor emphasise, strike through or link anything."""
    text = " ".join(str(value).splitlines())
    text = _EDGE_UNDERSCORE.sub(r"\\_", _MARKDOWN_SPECIAL.sub(r"\\\1", text))
    return html.escape(_WWW.sub(r"\1\\.", text), quote=False)


def markdown_table(df: pd.DataFrame, right: set[str] = frozenset()) -> str:
    esc = markdown_cell
    lines = ["| " + " | ".join(esc(c) for c in df.columns) + " |",
             "|" + "|".join("---:" if c in right else "---" for c in df.columns) + "|"]
    lines += ["| " + " | ".join(esc(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


README_HEAD = """\
# ncbench leaderboards

<!-- Generated from the CSVs in this folder by `ncbench submit` and `ncbench leaderboard --render`:
     edits to this file are overwritten. -->

One CSV per task (`<task>.csv`), one row per run × sweep point: the entry (model × weights: timm
pretrained tag, `true` for timm's default tag, or `sha256:` of a checkpoint, empty = trained from
scratch × data set × task version), the `seed`, the `variant` (the sweep point, e.g.
`ratio=10,classifier=etf`; empty = no sweep), the run's `status` (`ok` / `diverged` / `failed`) and
`status_reason`, one column per metric, then provenance (ncbench, torch and timm versions, device,
precision, git hash, date, run id, config hash). Every per-seed row is kept.

The tables show the current version of each task: one line per entry, one column per (metric,
variant) found in the data, seeds aggregated to **mean ± the 95% Student-t half-width**
`t₀.₉₇₅,ₙ₋₁·s/√n` over the entry's seeds (`seeds` gives n; one seed has no interval). Entries are
ranked by the task's primary *target* (what the task exists to predict: an accuracy, a transfer
score, a minority accuracy); *descriptor* columns (collapse values) describe the entries and never
rank them. An entry with any run that is not `ok` is listed under *Not ranked* with the reason, and
its failed cells read `failed` / `diverged`. ↓ lower is better, ↑ higher is better. Tiers:
*embedded CPU* tasks run offline on embedded data in minutes; *GPU protocol* tasks follow the
papers' recipes (SPEC §10).

Submit a finished run with `ncbench submit results/<run_id>`, or a model with
`ncbench submit --model resnet18 --pretrained a1_in1k` (runs `tasks/leaderboard.yaml` first).
Re-check a run with `ncbench verify TASK:ROW`; analyse with `ncbench.leaderboard.load_leaderboard`
(`.runs`: the per-seed rows, `.entries`: the aggregate).
"""


def _metrics_line(board: BoardSpec) -> str:
    parts = []
    for m in board.metrics.values():
        word = "higher" if m.higher_is_better else "lower"
        parts.append(f"`{m.name}` {word} is better, {m.role}" + (" (primary)" if m.name == board.primary.metric else ""))
    return "Metrics: " + "; ".join(parts) + "."


CLAIMS_HEAD = """\
## Claims scorecard

What the literature claims about neural collapse, measured by `ncbench suite claims` over three seeds
(the verdict rule beside each claim; every number regenerates with that one command). Data:
[claims.csv](claims.csv), with the reasons, inputs and per-seed values in
[claims_detail.csv](claims_detail.csv).
"""


def render_readme(tables: dict[str, pd.DataFrame], claims_markdown: str | None = None) -> str:
    """README.md text: the header, the claims scorecard (`claims.md` beside the boards, written by
    `python -m ncbench.claims RUN --out leaderboards --markdown leaderboards/claims.md`), then one
    Markdown table per task (deterministic: no timestamps)."""
    parts = [README_HEAD]
    if claims_markdown:
        parts.append(CLAIMS_HEAD + "\n" + claims_markdown.strip() + "\n")
    if not tables:
        parts.append("No submissions yet.\n")
    for task in sorted(tables):
        tb = task_board(task)
        st = standings(task, tables[task])
        head = [f"## {markdown_cell(task)}", ""]
        if tb.version is not None and tb.spec is not None:
            head.append(f"Tier: **{TIERS.get(tb.tier, tb.tier)}** · task version {tb.version} · ranked by "
                        f"`{tb.spec.primary.header()}` ({tb.spec.direction} is better) · data: [{task}.csv]({task}.csv)")
        parts.append("\n".join(head) + "\n")
        text_cols = {"model", "weights", "dataset", "device", "date", "status", "reason"}
        if len(st.ranked):
            parts.append(markdown_table(st.ranked, {c for c in st.ranked.columns if c not in text_cols}) + "\n")
        elif not len(st.unranked):
            parts.append("No entries for the current version yet.\n")
        else:
            parts.append("No ranked entry for the current version.\n")
        if len(st.unranked):
            parts.append("**Not ranked** (a run is not `ok`):\n")
            parts.append(markdown_table(st.unranked, {c for c in st.unranked.columns if c not in text_cols}) + "\n")
        if tb.version is not None and tb.spec is not None:
            parts.append(_metrics_line(tb.spec) + "\n")
        parts += [f"*{markdown_cell(n)}.*\n" for n in st.notes]
    return "\n".join(parts)


def rows_view(task: str, table: pd.DataFrame) -> tuple[str, pd.DataFrame]:
    """(title, every CSV row of one task with its row number for `ncbench verify TASK:ROW`, in file
    order: identity, status, the board's metrics to 4 significant digits, date, run id)."""
    tb = task_board(task)
    cols = board_columns(table, tb.spec)
    metrics = list(dict.fromkeys(c.metric for c in cols))
    view = pd.DataFrame({"row": table.index, "v": table["task_version"], "model": table["model"],
                         "weights": table["pretrained"].replace("", "scratch"), "dataset": table["dataset"],
                         "seed": table["seed"], "variant": table["variant"], "status": table["status"]})
    for m in (m for m in metrics if m in table.columns):
        num = pd.to_numeric(table[m].mask(table[m] == ""), errors="coerce")
        view[m] = num.map(lambda x: "—" if pd.isna(x) else f"{x:.4g}")
    view["date"], view["run_id"] = table["date"].str[:10], table["run_id"]
    primary = tb.spec.primary.header() if tb.spec else None
    title = f"{task}  (tier {TIERS.get(tb.tier, tb.tier or '?')}, current version {tb.version}, ranked by {primary})"
    return title, view


def terminal_table(task: str, table: pd.DataFrame) -> str:
    """Every CSV row of one task with its row number (for `ncbench verify TASK:ROW`), in file order."""
    title, view = rows_view(task, table)
    return title + "\n" + (view.to_string(index=False) if len(view) else "(no rows)")


def standings_text(task: str, table: pd.DataFrame) -> str:
    """The standings of one task as terminal text (ranked, then the entries not ranked)."""
    st = standings(task, table)
    out = [task, st.ranked.to_string(index=False) if len(st.ranked) else "(no ranked rows for the current version)"]
    if len(st.unranked):
        out += ["  not ranked (a run is not ok):", st.unranked.to_string(index=False)]
    out += [f"  ({n})" for n in st.notes]
    return "\n".join(out)
