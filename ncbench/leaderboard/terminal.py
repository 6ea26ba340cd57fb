"""Boards in a terminal (`ncbench leaderboard`, issue #27 item 5): a table cut to the terminal's
width. The columns that identify a line and the primary metric always show; the others follow in
the board's order while they fit, and the last line names those left out (`--wide`: all of them,
`--columns`: a choice). Long text cells (a failure reason) are cut with `…`, long headers wrap
over several lines, and every line is at most `width` characters.
"""
from __future__ import annotations

import shutil
import textwrap

import pandas as pd

MAX_CELL = 40
"""Widest text cell shown unless --wide (a status reason can run to hundreds of characters)."""

HEADER_WRAP = 18
"""A header longer than its column's cells wraps at this width."""


def terminal_width() -> int:
    """Columns of the terminal (`COLUMNS` first, 100 when it cannot be told: a pipe, a test)."""
    return shutil.get_terminal_size((100, 24)).columns


def clip(line: str, width: int) -> str:
    return line if len(line) <= width else line[:max(width - 1, 0)] + "…"


def choose_columns(df: pd.DataFrame, wanted: list[str], keep: list[str]) -> list[str]:
    """`keep`, then the columns named by `wanted` (a header, a metric name before its variant or
    arrow, or a prefix), in the order asked; UnknownNameError with close names for one that matches none."""
    from ncbench.registry import suggest

    chosen = [c for c in keep if c in df.columns]
    for name in wanted:
        hits = [c for c in df.columns if c == name] or \
               [c for c in df.columns if str(c).split(" ")[0] == name] or \
               [c for c in df.columns if str(c).startswith(name)]
        if not hits:
            raise suggest("column", name, [str(c).split(" ")[0] for c in df.columns],
                          f"this board's columns: {', '.join(dict.fromkeys(str(c).split(' ')[0] for c in df.columns))}")
        chosen += [c for c in hits if c not in chosen]
    return chosen


def fit(df: pd.DataFrame, width: int, keep: list[str], wide: bool = False) -> tuple[list[str], list[str]]:
    """(lines of `df` as a text table at most `width` wide, the columns left out). `keep` columns
    always show; the others are taken in order while they fit; `wide`: every column, nothing cut."""
    cells = {c: [str(v) for v in df[c]] for c in df.columns}
    if not wide:
        cells = {c: [v if len(v) <= MAX_CELL else v[:MAX_CELL - 1] + "…" for v in vs] for c, vs in cells.items()}
    widths = {}
    for c in df.columns:
        body = max((len(v) for v in cells[c]), default=0)
        word = max((len(w) for w in str(c).replace(",", ", ").split()), default=0)   # wrap between words
        widths[c] = len(str(c)) if wide else max(body, min(len(str(c)), max(HEADER_WRAP, body, min(word, 2 * HEADER_WRAP))))
    shown, used, left_out = [], -2, []
    for c in [c for c in df.columns if c in keep] + [c for c in df.columns if c not in keep]:
        if wide or c in keep or used + 2 + widths[c] <= width:
            shown.append(c)
            used += 2 + widths[c]
        else:
            left_out.append(str(c))
    shown = [c for c in df.columns if c in shown]                       # the board's order
    heads = {c: [h.replace(", ", ",") for h in textwrap.wrap(str(c).replace(",", ", "), widths[c],
                                                              break_on_hyphens=False)] or [""] for c in shown}
    depth = max((len(h) for h in heads.values()), default=1)
    numeric = {c: all(_numberish(v) for v in cells[c]) and len(cells[c]) > 0 for c in shown}
    pad = lambda c, v: v.rjust(widths[c]) if numeric[c] else v.ljust(widths[c])
    lines = ["  ".join(pad(c, (heads[c] + [""] * depth)[i]) for c in shown).rstrip() for i in range(depth)]
    lines += ["  ".join(pad(c, cells[c][r]) for c in shown).rstrip() for r in range(len(df))]
    return ([ln if wide else clip(ln, width) for ln in lines]), left_out


def _numberish(text: str) -> bool:
    head = text.split(" ")[0]
    try:
        float(head)
    except ValueError:
        return head in ("—", "#")
    return True


def left_out_line(left_out: list[str], width: int) -> str:
    """The last line of a cut table: which columns did not fit and how to see them."""
    return clip(f"  (+{len(left_out)} columns not shown: {', '.join(left_out)}; --wide shows all, --columns A,B picks)",
                width)


VERDICT_ORDER = ("reproduced", "contradicted", "weaker than claimed", "not reproduced", "inconclusive",
                 "not applicable")
"""The verdicts of `ncbench.claims.verdicts` (and `not reproduced`, of scorecards before issue 28)."""


def claims_tally(lb_dir) -> dict[str, int]:
    """{verdict: number of rows} of `claims.csv` beside the boards (in `VERDICT_ORDER`, then any other
    verdict it holds); {} without one."""
    from pathlib import Path

    from ncbench.run_files import ReadError, UnsafePathError, open_text

    path = Path(lb_dir) / "claims.csv"
    if not path.is_file():
        return {}
    try:
        with open_text(path, lb_dir) as f:
            verdicts = pd.read_csv(f, dtype=str, keep_default_na=False)["verdict"]
    except (KeyError, ValueError, UnicodeDecodeError, ReadError, UnsafePathError) as e:
        raise ValueError(f"{path} has no readable 'verdict' column ({type(e).__name__}): restore it with "
                         f"`git checkout -- {path}`") from None
    counts = verdicts.value_counts(sort=False).to_dict()
    order = [v for v in VERDICT_ORDER if v in counts] + [v for v in dict.fromkeys(verdicts) if v not in VERDICT_ORDER]
    return {v: int(counts[v]) for v in order}


def tally_lines(tally: dict[str, int], width: int) -> list[str]:
    """The claims tally, `claims (N in claims.csv): reproduced 44 · …`, wrapped between verdicts to
    `width` (continuation lines indented two spaces): every count shown at any terminal width."""
    lines = [f"claims ({sum(tally.values())} in claims.csv):"]
    for item in (f"{k} {v}" for k, v in tally.items()):
        sep = " " if lines[-1].endswith(":") or lines[-1] == "" else " · "
        if len(lines[-1]) + len(sep) + len(item) > width and lines[-1].strip():
            lines.append("")
            sep = ""
        lines[-1] = (lines[-1] or "  ") + sep + item
    return [clip(line, width) for line in lines]


def _table(df: pd.DataFrame, width: int, keep: list[str], wanted: list[str] | None, wide: bool) -> list[str]:
    if wanted:
        df = df[choose_columns(df, wanted, keep)]
    lines, left_out = fit(df, width, keep, wide or bool(wanted))
    return lines + ([left_out_line(left_out, width)] if left_out else [])


def standings_lines(task: str, table: pd.DataFrame, width: int, wanted: list[str] | None = None,
                    wide: bool = False) -> list[str]:
    """One task's standings as terminal lines: ranked entries, then those not ranked, then notes."""
    from ncbench.leaderboard.render import header, standings
    from ncbench.leaderboard.schema import TIERS, task_board

    tb = task_board(task)
    st = standings(task, table)
    primary = header(st.columns[0], tb.spec) if st.columns else None
    title = task if tb.version is None else \
        f"{task}  (tier {TIERS.get(tb.tier, tb.tier)}, version {tb.version}, ranked by {primary or '?'})"
    out = [clip(title, width)]
    if len(st.ranked):
        out += _table(st.ranked.drop(columns=["_primary"], errors="ignore"), width, ["#", "model", primary], wanted, wide)
    else:
        out.append("(no ranked rows for the current version)")
    if len(st.unranked):
        out.append("  not ranked (a run is not ok):")
        out += _table(st.unranked.drop(columns=["_primary"], errors="ignore"), width, ["model", "status", "reason"],
                      wanted, wide)
    out += [clip(f"  ({n})", width) for n in st.notes]
    return out


def rows_lines(task: str, table: pd.DataFrame, width: int, wanted: list[str] | None = None,
               wide: bool = False) -> list[str]:
    """Every row of one task with its row number (for `ncbench verify TASK:ROW`) as terminal lines."""
    from ncbench.leaderboard.render import rows_view
    from ncbench.leaderboard.schema import task_board

    title, view = rows_view(task, table)
    spec = task_board(task).spec
    keep = ["row", "model", "seed", "variant", "status"] + ([spec.primary.metric] if spec else [])
    return [clip(title, width)] + (_table(view, width, keep, wanted, wide) if len(view) else ["(no rows)"])


def export(tables: dict[str, pd.DataFrame], fmt: str, tally: dict[str, int], task: str | None = None,
           wanted: list[str] | None = None) -> str:
    """`--format csv|json|markdown`. With a task: its rows (every column, full precision, with the row
    number). Without: csv/json give every entry × (metric, variant) of every board as numbers
    (`Leaderboard.entries`: mean, std, half_width, ci_low, ci_high, n_seeds, status) and json the
    claims tally too; markdown gives the standings tables as in README.md."""
    import json

    from ncbench.leaderboard.aggregate import aggregate
    from ncbench.leaderboard.render import markdown_table, standings
    from ncbench.leaderboard.schema import task_board

    if task is not None:
        rows = tables[task].reset_index().rename(columns={"index": "row"})
        if fmt == "markdown":
            from ncbench.leaderboard.render import rows_view

            view = rows_view(task, tables[task])[1]
            return markdown_table(view[choose_columns(view, wanted, ["row", "model"])] if wanted else view)
        if fmt == "csv":
            return rows.to_csv(index=False, lineterminator="\n")
        return json.dumps({"task": task, "rows": rows.to_dict(orient="records")}, indent=1)
    if fmt == "markdown":
        parts = []
        for t, table in tables.items():
            st = standings(t, table)
            ranked = st.ranked.drop(columns=["_primary"], errors="ignore")
            parts.append(f"## {t}\n\n" + (markdown_table(ranked[choose_columns(ranked, wanted, ["#", "model"])]
                                                         if wanted else ranked) if len(ranked) else "No ranked entry."))
            if len(st.unranked):
                parts.append("**Not ranked** (a run is not `ok`):\n\n" + markdown_table(st.unranked))
        return "\n\n".join(parts)
    entries = [aggregate(table, task_board(t).spec) for t, table in tables.items()]
    frame = pd.concat(entries, ignore_index=True) if entries else pd.DataFrame()
    if fmt == "csv":
        return frame.to_csv(index=False, lineterminator="\n")
    records = json.loads(frame.to_json(orient="records")) if len(frame) else []
    return json.dumps({"claims": tally, "entries": records}, indent=1)
