"""Leaderboards: one wide CSV per task, built from the long results of submitted runs (SPEC §9).

A row is one model × weights (pretrained tag, or `sha256:` of a checkpoint) × data set × task
version × seed: identity columns, one column per headline (`split == "summary"`) metric, then
provenance. A submission is checked (schema, current task version and protocol, completeness,
duplicates), merged without dropping existing rows or fields, and written under a file lock by
atomic replace; README.md is re-rendered from the CSVs (one table per task, seeds as mean ± std,
sorted by the primary metric). After RobustBench's model zoo and lm-evaluation-harness's
versioned tasks.
"""
from __future__ import annotations

import csv
import html
import io
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ncbench.results.integrity import file_sha256, integrity_problems
from ncbench.results.load import read_long_csv, typed_results
from ncbench.results.names import check_name
from ncbench.results.writer import ResultsWriteError, atomic_write_text, ensure_dir, format_value

IDENTITY = ("task", "task_version", "model", "pretrained", "dataset", "seed")
"""What makes two rows the same entry (`pretrained`: tag, `true`, `sha256:<16 hex>` or empty = scratch)."""

PROVENANCE = ("ncbench_version", "torch_version", "timm_version", "device", "precision", "git_hash",
              "date", "run_id", "config_hash")

PROTOCOL_FIELDS = ("kind", "recipe", "options", "tier")
"""Spec fields a leaderboard run must share with the registry's spec (model, weights, data set,
seed and device are the entry's identity and may differ)."""

TIERS = {"cpu": "embedded CPU", "gpu": "GPU protocol", "frozen": "frozen transfer"}
LOCK_NAME = ".lock"
README = "README.md"
_INT = re.compile(r"^-?\d+$")


class LeaderboardError(ValueError):
    """A leaderboard CSV that is not valid; it is never overwritten."""

    def __init__(self, path: Path, problem: str):
        super().__init__(f"{path} is not a valid leaderboard: {problem}. It was left untouched: fix it by hand "
                         f"or restore it (`git checkout -- {path}`), then retry")


class SubmissionRefused(ValueError):
    """A submission that fails a check; `reasons` lists every failed check, nothing was written."""

    def __init__(self, reasons: list[str]):
        self.reasons = reasons
        super().__init__("submission refused:\n  " + "\n  ".join(reasons))


@dataclass
class Entry:
    """One leaderboard row from one finished task folder: CSV text per column."""

    task: str
    row: dict[str, str]
    source: Path

    @property
    def key(self) -> tuple[str, ...]:
        return tuple(self.row[c] for c in IDENTITY)

    def describe(self) -> str:
        r = self.row
        weights = r["pretrained"] or "scratch"
        return f"{self.task} v{r['task_version']}: {r['model']} ({weights}) on {r['dataset']}, seed {r['seed']}"


@dataclass
class SubmitResult:
    added: list[Entry] = field(default_factory=list)
    replaced: list[Entry] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    written: list[Path] = field(default_factory=list)


# --------------------------------------------------------------------------- where leaderboards live

def leaderboards_dir(explicit: str | Path | None = None) -> Path:
    """`explicit`, else $NCBENCH_LEADERBOARDS, else the checkout's `leaderboards/` folder."""
    if explicit:
        return Path(explicit).expanduser()
    env = os.environ.get("NCBENCH_LEADERBOARDS")
    if env:
        return Path(env).expanduser()
    import ncbench

    root = Path(ncbench.__file__).resolve().parent.parent
    if (root / "pyproject.toml").is_file() and (root / "leaderboards").is_dir():
        return root / "leaderboards"
    raise FileNotFoundError("no leaderboards folder: ncbench is not running from a checkout; pass "
                            "--leaderboards DIR or set NCBENCH_LEADERBOARDS")


def current_spec(task: str):
    """The registry's spec of `task` (ValueError if the task is not shipped in tasks/)."""
    from ncbench.registry import UnknownNameError
    from ncbench.specs import load_task

    try:
        spec = load_task(task)
    except (UnknownNameError, FileNotFoundError) as e:
        raise ValueError(f"task '{task}' is not in the registry (tasks/*.yaml): {e}") from None
    return spec


# --------------------------------------------------------------------------- submissions: run -> rows

def weights_tag(spec: dict) -> str:
    """Identity of the starting weights: checkpoint hash, pretrained tag, `true`, or "" (scratch)."""
    ckpt = spec.get("checkpoint")
    if ckpt:
        p = Path(ckpt).expanduser()
        if not p.is_file():
            raise ValueError(f"checkpoint '{ckpt}' not found: its hash identifies the weights, so submit from "
                             f"the machine that has the file")
    from ncbench.preflight import weights_identity

    return weights_identity(ckpt, spec.get("pretrained"))


def protocol_diff(ran: dict, spec: dict) -> list[str]:
    """Differences between the protocol a run used and the registry's spec, as 'field: ran X, spec Y'."""
    out = []
    for f in PROTOCOL_FIELDS:
        a, b = ran.get(f), spec.get(f)
        if isinstance(a, dict) and isinstance(b, dict):
            out += [f"{f}.{k}: ran {a.get(k)!r}, spec {b.get(k)!r}" for k in sorted(set(a) | set(b))
                    if a.get(k) != b.get(k)]
        elif a != b:
            out.append(f"{f}: ran {a!r}, spec {b!r}")
    return out


def entry_from_task_dir(task_dir: Path) -> Entry | None:
    """The leaderboard row of one finished task folder (None when its task has no leaderboard).

    Raises ValueError naming the failed check: schema, completeness, stale version, other protocol.
    """
    name = task_dir.name
    results, cfg_path = task_dir / "results.csv", task_dir / "config.json"
    if not results.is_file():
        why = "it failed (see error.json)" if (task_dir / "error.json").exists() else "it has no results.csv"
        raise ValueError(f"{name}: incomplete, {why}")
    if not cfg_path.is_file():
        raise ValueError(f"{name}: incomplete, no config.json beside results.csv")
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
        ran, cfg_hash = cfg["spec"], cfg["config_hash"]
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{name}: config.json is unreadable ({type(e).__name__}: {e})") from None
    problems = integrity_problems(task_dir, cfg)
    if problems:
        raise ValueError(f"{name}: integrity: {'; '.join(problems)}")
    try:
        raw = read_long_csv(results)
        typed = typed_results(raw, str(results))
    except ValueError as e:
        raise ValueError(f"{name}: schema: {e}") from None
    if raw.empty:
        raise ValueError(f"{name}: incomplete, results.csv has no rows")
    for col in ("run_id", "task", "task_version", "model", "pretrained", "dataset", "seed", "config_hash"):
        values = list(raw[col].unique())
        if len(values) != 1:
            raise ValueError(f"{name}: results.csv mixes several {col} values {values[:4]}: one folder must "
                             f"hold one run of one configuration")
    first = raw.iloc[0]
    task = first["task"]
    if first["config_hash"] != cfg_hash:
        raise ValueError(f"{name}: results.csv (config {first['config_hash']}) and config.json (config "
                         f"{cfg_hash}) disagree: the folder mixes two runs, rerun the task")
    try:
        recomputed = spec_hash(ran)
    except ValueError as e:
        raise ValueError(f"{name}: {e}") from None
    if recomputed != cfg_hash:
        raise ValueError(f"{name}: config.json's config hash {cfg_hash} is not the hash of the spec it records "
                         f"({recomputed}): the folder was edited; rerun the task")
    spec = current_spec(task)
    check_model(name, first["model"], ran, spec.model)
    version = int(first["task_version"])
    if version != spec.version:
        age = "stale" if version < spec.version else "newer than this ncbench"
        raise ValueError(f"{task}: task version {version} is {age}: the registry's tasks/{task}.yaml is version "
                         f"{spec.version}; rerun the task with this ncbench (leaderboards never mix versions)")
    diff = protocol_diff(ran, spec.to_dict())
    if diff:
        raise ValueError(f"{task}: the run's protocol differs from tasks/{task}.yaml ({'; '.join(diff)}): "
                         f"leaderboard entries must use the spec's recipe (no --epochs or option overrides)")
    board = spec.leaderboard or {}
    if not board.get("metrics"):
        return None
    summary = typed[typed["split"] == "summary"]
    keys = [m if not layer else f"{m}[{layer}]" for m, layer in zip(summary["metric"], summary["layer"])]
    dup = sorted({k for k in keys if keys.count(k) > 1})
    if dup:
        raise ValueError(f"{task}: summary rows repeat metrics {dup}: a headline metric must have one value")
    metrics = dict(zip(keys, summary["value"].astype(float)))
    missing = [m for m in board["metrics"] if m not in metrics]
    if missing:
        raise ValueError(f"{task}: incomplete, headline metrics {missing} have no summary row "
                         f"(has {sorted(metrics)})")
    from ncbench.metrics.vocabulary import declaration

    out_of_range = [f"{m} = {v!r} is outside its range {d.describe_range()} ({d.note})"
                    for m, v in metrics.items() if (d := declaration(m)) is not None and not d.contains(v)]
    if out_of_range:
        raise ValueError(f"{task}: impossible values: {'; '.join(out_of_range)}")
    primary = board.get("primary")
    if primary and not math.isfinite(metrics.get(primary, math.nan)):
        raise ValueError(f"{task}: incomplete, primary metric '{primary}' is {metrics.get(primary)}")
    order = list(board["metrics"]) + [k for k in keys if k not in board["metrics"]]
    row = {"task": task, "task_version": str(version), "model": first["model"],
           "pretrained": weights_tag(ran), "dataset": first["dataset"], "seed": str(int(first["seed"]))}
    row.update({m: format_value(metrics[m]) for m in order})
    row.update({c: first[c] for c in PROVENANCE if c in raw.columns})
    row["date"] = first["started_at"]
    return Entry(task, row, task_dir)


def spec_hash(spec: dict) -> str:
    """The config hash of a recorded spec, recomputed (ValueError if it is not a valid spec, or if its
    checkpoint, which the hash names by content, is not on this machine)."""
    from ncbench.tasks.base import TaskSpec

    weights_tag(spec)

    try:
        return TaskSpec.from_dict(dict(spec), "config.json").config_hash()
    except (TypeError, ValueError) as e:
        raise ValueError(f"config.json's spec is not a valid task spec ({e})") from None


def check_model(name: str, model: str, spec: dict, shipped: str) -> None:
    """A leaderboard model is the one the spec recorded, and a timm architecture (its weights: the
    pretrained tag or the checkpoint's sha256) unless it is the shipped spec's own (`none` of the
    model-free theory tasks)."""
    from ncbench.models.backbone import check_model_name
    from ncbench.registry import UnknownNameError

    if model != spec.get("model"):
        raise ValueError(f"{name}: results.csv names model {model!r}, config.json's spec {spec.get('model')!r}")
    if model == shipped:
        return
    try:
        check_model_name(model)
    except UnknownNameError as e:
        raise ValueError(f"{name}: model {model!r} is not a timm architecture ({e})") from None


def task_dirs_of_run(run_dir: Path) -> tuple[list[Path], list[str]]:
    """Task folders of a run (or the folder itself if it is one), and the tasks suite.json lists but lacks."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run folder '{run_dir}' not found")
    markers = ("results.csv", "config.json", "error.json")
    if any((run_dir / m).exists() for m in markers):
        return [run_dir], []
    dirs = sorted(d for d in run_dir.iterdir() if d.is_dir() and not d.name.startswith(("_", "."))
                  and any((d / m).exists() for m in markers))
    lacking = []
    suite = run_dir / "suite.json"
    if suite.is_file():
        try:
            listed = [t["name"] for t in json.loads(suite.read_text(encoding="utf-8"))["tasks"]]
        except (ValueError, KeyError, TypeError):
            listed = []
        lacking = [n for n in listed if not (run_dir / n).is_dir()]
    if not dirs and not lacking:
        raise ValueError(f"'{run_dir}' holds no task results: pass a folder results/<run_id> written by "
                         f"`ncbench run` or `ncbench suite`")
    return dirs, lacking


def collect_entries(run_dirs: list[Path]) -> tuple[list[Entry], list[str]]:
    """Rows of every task of the runs; SubmissionRefused listing every failed check."""
    entries, reasons, notes = [], [], []
    for run_dir in run_dirs:
        try:
            dirs, lacking = task_dirs_of_run(Path(run_dir))
        except (ValueError, FileNotFoundError) as e:
            reasons.append(str(e))
            continue
        reasons += [f"{n}: incomplete, listed in {run_dir}/suite.json but never ran" for n in lacking]
        for d in dirs:
            try:
                e = entry_from_task_dir(d)
            except ValueError as err:
                reasons.append(str(err))
                continue
            if e is None:
                notes.append(f"{d.name}: no leaderboard declared in its spec, not submitted")
            else:
                entries.append(e)
    seen: dict[tuple, Entry] = {}
    for e in entries:
        if e.key in seen:
            reasons.append(f"{e.describe()}: submitted twice ({seen[e.key].source} and {e.source})")
        seen[e.key] = e
    if not entries and not reasons:
        reasons.append("nothing to submit: no task of these runs declares a leaderboard")
    if reasons:
        raise SubmissionRefused(reasons)
    return entries, notes


# --------------------------------------------------------------------------- the CSVs

def read_table(path: Path, task: str | None = None) -> pd.DataFrame:
    """A leaderboard CSV as strings, validated; LeaderboardError (never overwritten) if it is not valid."""
    path = Path(path)
    task = task or path.stem
    try:
        text = path.read_text(encoding="utf-8")
        header = next(csv.reader(io.StringIO(text)))
        df = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except (UnicodeDecodeError, csv.Error, pd.errors.ParserError, pd.errors.EmptyDataError, StopIteration) as e:
        raise LeaderboardError(path, f"not a readable CSV ({type(e).__name__}: {str(e).strip()[:200]})") from None
    dup = sorted({c for c in header if header.count(c) > 1})
    if dup:
        raise LeaderboardError(path, f"repeated columns {dup}")
    missing = [c for c in IDENTITY + PROVENANCE if c not in df.columns]
    if missing:
        raise LeaderboardError(path, f"columns {missing} are missing")
    line = lambda i: f"line {int(i) + 2}"  # the header is line 1
    wrong_task = df.index[df["task"] != task]
    if len(wrong_task):
        raise LeaderboardError(path, f"{line(wrong_task[0])} is for task '{df['task'].iloc[wrong_task[0]]}', "
                                     f"not '{task}'")
    for c in ("task_version", "seed"):
        bad = df.index[~df[c].str.match(_INT)]
        if len(bad):
            raise LeaderboardError(path, f"{line(bad[0])}: {c} {df[c].iloc[bad[0]]!r} is not an integer")
    for c in ("model", "dataset", "run_id"):
        bad = df.index[df[c].str.strip() == ""]
        if len(bad):
            raise LeaderboardError(path, f"{line(bad[0])}: {c} is empty")
    for c in metric_columns(df.columns):
        num = pd.to_numeric(df[c].mask(df[c] == ""), errors="coerce")
        bad = df.index[num.isna() & (df[c] != "") & (df[c].str.lower() != "nan")]
        if len(bad):
            raise LeaderboardError(path, f"{line(bad[0])}: column '{c}' holds {df[c].iloc[bad[0]]!r}, not a plain "
                                         f"number (no thousands separators or text)")
    dups = df.index[df.duplicated(list(IDENTITY), keep=False)]
    if len(dups):
        raise LeaderboardError(path, f"lines {[int(i) + 2 for i in dups]} repeat one entry "
                                     f"({', '.join(IDENTITY)})")
    return df


def metric_columns(columns) -> list[str]:
    return [c for c in columns if c not in IDENTITY and c not in PROVENANCE]


def read_tables(lb_dir: Path) -> dict[str, pd.DataFrame]:
    """Every `<task>.csv` of a leaderboards folder, validated."""
    return {p.stem: read_table(p) for p in sorted(Path(lb_dir).glob("*.csv"))}


def table_text(df: pd.DataFrame) -> str:
    cols = list(IDENTITY) + metric_columns(df.columns) + list(PROVENANCE)
    return df[cols].fillna("").to_csv(index=False, lineterminator="\n")


def merge(table: pd.DataFrame | None, entry: Entry, replace: bool) -> tuple[pd.DataFrame, str]:
    """Add `entry` (or, with `replace`, update the row it duplicates: fields it lacks are kept)."""
    new = pd.DataFrame([entry.row], dtype=str)
    if table is None or table.empty:
        return (new if table is None else pd.concat([table, new], ignore_index=True)).fillna(""), "added"
    hit = table.index[(table[list(IDENTITY)] == pd.Series(entry.row)[list(IDENTITY)]).all(axis=1)]
    if len(hit) and not replace:
        old = table.loc[hit[0]]
        raise SubmissionRefused([(f"{entry.describe()}: already on the leaderboard (run {old['run_id']}, "
                                  f"{old['date']}); pass --replace to overwrite it")])
    for c in entry.row:
        if c not in table.columns:
            table = table.assign(**{c: ""})
    if len(hit):
        table = table.copy()
        for c, v in entry.row.items():
            table.loc[hit[0], c] = v
        return table.fillna(""), "replaced"
    return pd.concat([table, new], ignore_index=True).fillna(""), "added"


def _lock(lb_dir: Path, timeout: float):
    from filelock import FileLock

    return FileLock(str(lb_dir / LOCK_NAME), timeout=timeout)


def _write_all(lb_dir: Path, tables: dict[str, pd.DataFrame], changed: list[str]) -> list[Path]:
    texts = {t: table_text(tables[t]) for t in changed}
    readme = render_readme(tables)           # rendered before anything is written
    written = []
    for t, text in texts.items():
        atomic_write_text(lb_dir / f"{t}.csv", text)
        written.append(lb_dir / f"{t}.csv")
    atomic_write_text(lb_dir / README, readme)
    return written + [lb_dir / README]


def submit(run_dirs: list[str | Path] | str | Path, leaderboards: str | Path | None = None, *,
           replace: bool = False, dry_run: bool = False, lock_timeout: float = 120.0) -> SubmitResult:
    """Validate the runs' task rows and merge them into the leaderboards (all or nothing)."""
    if isinstance(run_dirs, (str, Path)):
        run_dirs = [run_dirs]
    entries, notes = collect_entries([Path(r) for r in run_dirs])
    lb_dir = ensure_dir(leaderboards_dir(leaderboards))
    result = SubmitResult(notes=notes)
    from filelock import Timeout

    try:
        with _lock(lb_dir, lock_timeout):
            tables = read_tables(lb_dir)
            reasons = []
            for e in entries:
                try:
                    check_name("task name", e.task)
                except ValueError as err:
                    reasons.append(str(err))
                    continue
                try:
                    tables[e.task], action = merge(tables.get(e.task), e, replace)
                except SubmissionRefused as r:
                    reasons += r.reasons
                    continue
                (result.added if action == "added" else result.replaced).append(e)
            if reasons:
                raise SubmissionRefused(reasons)
            if not dry_run:
                result.written = _write_all(lb_dir, tables, sorted({e.task for e in entries}))
    except Timeout:
        raise ValueError(f"{lb_dir / LOCK_NAME} stayed locked for {lock_timeout:.0f} s by another submission; "
                         f"retry, or delete the lock file if no submission is running") from None
    except ResultsWriteError:
        raise
    except OSError as e:   # the lock file itself (a read-only folder)
        raise ResultsWriteError(lb_dir / LOCK_NAME, e) from None
    return result


def render(leaderboards: str | Path | None = None) -> Path:
    """Re-render README.md from the CSVs (after a hand edit or a task version bump)."""
    lb_dir = ensure_dir(leaderboards_dir(leaderboards))
    try:
        with _lock(lb_dir, 120.0):
            tables = read_tables(lb_dir)
            atomic_write_text(lb_dir / README, render_readme(tables))
    except ResultsWriteError:
        raise
    except OSError as e:
        raise ResultsWriteError(lb_dir / LOCK_NAME, e) from None
    return lb_dir / README


# --------------------------------------------------------------------------- typed frames and tables

def typed_table(df: pd.DataFrame) -> pd.DataFrame:
    out = df.copy()
    for c in metric_columns(df.columns):
        out[c] = pd.to_numeric(df[c].mask(df[c] == ""), errors="coerce").astype("float64")
    for c in ("task_version", "seed"):
        out[c] = pd.to_numeric(df[c]).astype("Int64")
    out["date"] = pd.to_datetime(df["date"].mask(df["date"] == ""), utc=True, format="ISO8601")
    for c in IDENTITY + PROVENANCE:
        if c not in ("task_version", "seed", "date"):
            out[c] = df[c].astype("category")
    return out


def load_leaderboard(task: str, leaderboards: str | Path | None = None, *, current_only: bool = False) -> pd.DataFrame:
    """The wide leaderboard of `task`: metrics float64, seed/task_version Int64, date UTC, rest categorical."""
    lb_dir = leaderboards_dir(leaderboards)
    path = lb_dir / f"{task}.csv"
    if not path.is_file():
        have = sorted(p.stem for p in lb_dir.glob("*.csv"))
        raise FileNotFoundError(f"no leaderboard for task '{task}' in {lb_dir} (leaderboards: {have or 'none yet'})")
    df = typed_table(read_table(path, task))
    if current_only:
        df = df[df["task_version"] == current_spec(task).version].reset_index(drop=True)
    return df


def _board(task: str) -> tuple[dict, int | None, str]:
    """(leaderboard section, current version, tier) of `task`, empty when it left the registry."""
    try:
        spec = current_spec(task)
    except ValueError:
        return {}, None, ""
    return spec.leaderboard or {}, spec.version, spec.tier


def _fmt(mean: float, std: float, n: int) -> str:
    if math.isnan(mean):
        return "—"
    if n > 1 and not math.isnan(std):
        return f"{mean:.4g} ± {std:.2g}"
    return f"{mean:.4g}"


def standings(task: str, table: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Display table of the current version: seeds aggregated (mean ± sample std), sorted by the primary
    metric, metric headers with ↓/↑; and notes (rows of other versions that are not shown)."""
    board, version, _ = _board(task)
    metrics = [m for m in board.get("metrics", {}) if m in table.columns]
    primary = board.get("primary") if board.get("primary") in metrics else None
    if primary:
        metrics = [primary] + [m for m in metrics if m != primary]
    notes = []
    if version is None:
        notes.append(f"task '{task}' is no longer in tasks/: its rows are listed unsorted")
        metrics = metric_columns(table.columns)
        rows = table
    else:
        rows = table[table["task_version"] == str(version)]
        old = len(table) - len(rows)
        if old:
            notes.append(f"{old} row(s) for other versions of this task are kept in {task}.csv and not shown")
    typed = typed_table(rows) if len(rows) else None
    keys = ["model", "pretrained", "dataset"]
    out = []
    if typed is not None:
        for key, g in typed.groupby(keys, observed=True, dropna=False, sort=True):
            rec = {"model": key[0], "weights": key[1] or "scratch", "dataset": key[2], "seeds": len(g)}
            for m in metrics:
                vals = g[m].dropna()
                rec[("mean", m)] = vals.mean() if len(vals) else math.nan
                rec[m] = _fmt(rec[("mean", m)], vals.std(ddof=1) if len(vals) > 1 else math.nan, len(vals))
            rec["device"] = ", ".join(sorted(set(g["device"].astype(str))))
            dates = g["date"].dropna()
            rec["date"] = dates.max().strftime("%Y-%m-%d") if len(dates) else ""
            out.append(rec)
    if primary and out:
        higher = bool(board["metrics"][primary].get("higher_is_better", False))
        out.sort(key=lambda r: (math.isnan(r[("mean", primary)]),
                                -r[("mean", primary)] if higher else r[("mean", primary)], r["model"]))
    arrow = {m: "↑" if (board.get("metrics", {}).get(m) or {}).get("higher_is_better") else "↓" for m in metrics}
    names = {m: f"{m} {arrow[m]}" if version is not None else m for m in metrics}
    cols = ["#", "model", "weights", "dataset", "seeds"] + [names[m] for m in metrics] + ["device", "date"]
    disp = pd.DataFrame([{"#": i + 1, **{k: v for k, v in r.items() if not isinstance(k, tuple)}}
                         for i, r in enumerate(out)], columns=["#", "model", "weights", "dataset", "seeds",
                                                                *metrics, "device", "date"])
    disp.columns = cols
    return disp, notes


_MARKDOWN_SPECIAL = re.compile(r"([\\`*\[\]|])")


def markdown_cell(value) -> str:
    """One table cell as literal text: Markdown specials backslash-escaped, HTML (& < >) as entities,
    line breaks as spaces (a submitted name can neither break the table nor inject markup)."""
    text = " ".join(str(value).splitlines())
    return html.escape(_MARKDOWN_SPECIAL.sub(r"\\\1", text), quote=False)


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

One wide CSV per task (`<task>.csv`): one row per model × weights (timm pretrained tag, `true`
for timm's default tag, or `sha256:` of a checkpoint; empty = trained from scratch) × data set ×
task version × seed, one column per headline metric, then provenance (ncbench, torch and timm
versions, device, precision, git hash, date, run id, config hash). The tables below show the
current version of each task, seeds aggregated to mean ± sample std, sorted by the primary metric.
↓ lower is better, ↑ higher is better. Tiers: *embedded CPU* tasks run offline on embedded data in
minutes; *GPU protocol* tasks follow the papers' recipes (SPEC §10).

Submit a finished run with `ncbench submit results/<run_id>`, or a model with
`ncbench submit --model resnet18 --pretrained a1_in1k` (runs `tasks/leaderboard.yaml` first).
Re-check an entry with `ncbench verify TASK:ROW`; analyse with `ncbench.results.load_leaderboard`.
"""


def render_readme(tables: dict[str, pd.DataFrame]) -> str:
    """README.md text: the header, then one Markdown table per task (deterministic: no timestamps)."""
    parts = [README_HEAD]
    if not tables:
        parts.append("No submissions yet.\n")
    for task in sorted(tables):
        board, version, tier = _board(task)
        disp, notes = standings(task, tables[task])
        primary = board.get("primary")
        head = [f"## {markdown_cell(task)}", ""]
        if version is not None:
            direction = "higher" if (board.get("metrics", {}).get(primary) or {}).get("higher_is_better") else "lower"
            head.append(f"Tier: **{TIERS.get(tier, tier)}** · task version {version} · primary metric "
                        f"`{primary}` ({direction} is better) · data: [{task}.csv]({task}.csv)")
        parts.append("\n".join(head) + "\n")
        if len(disp):
            right = {c for c in disp.columns if c not in ("model", "weights", "dataset", "device", "date")}
            parts.append(markdown_table(disp, right) + "\n")
        else:
            parts.append("No entries for the current version yet.\n")
        if version is not None and board.get("metrics"):
            parts.append("Metrics: " + "; ".join(
                f"`{m}` {'higher' if (spec or {}).get('higher_is_better') else 'lower'} is better"
                + (" (primary)" if m == primary else "") for m, spec in board["metrics"].items()) + ".\n")
        parts += [f"*{markdown_cell(n)}.*\n" for n in notes]
    return "\n".join(parts)


def terminal_table(task: str, table: pd.DataFrame) -> str:
    """Every row of one task (CSV row numbers, for `ncbench verify TASK:ROW`), sorted by the primary metric."""
    board, version, tier = _board(task)
    metrics = [m for m in board.get("metrics", {}) if m in table.columns] or metric_columns(table.columns)
    primary = board.get("primary")
    typed = typed_table(table) if len(table) else table
    view = pd.DataFrame({"row": table.index, "v": table["task_version"], "model": table["model"],
                         "weights": table["pretrained"].replace("", "scratch"), "dataset": table["dataset"],
                         "seed": table["seed"]})
    for m in metrics:
        view[m] = typed[m].map(lambda x: "—" if pd.isna(x) else f"{x:.4g}") if len(table) else []
    view["device"], view["date"], view["run_id"] = table["device"], table["date"].str[:10], table["run_id"]
    if primary in metrics and len(table):
        higher = bool(board["metrics"][primary].get("higher_is_better"))
        order = typed[primary].sort_values(ascending=not higher, na_position="last").index
        view = view.loc[order]
    title = f"{task}  (tier {TIERS.get(tier, tier or '?')}, current version {version}, primary {primary})"
    return title + "\n" + (view.to_string(index=False) if len(view) else "(no rows)")


# --------------------------------------------------------------------------- verification

def find_rows(ref: str, leaderboards: str | Path | None = None) -> list[tuple[str, int, dict]]:
    """Rows named by `TASK:N` (CSV row number), `TASK:RUN_ID` or a bare RUN_ID."""
    if not ref.isascii() or not ref.isprintable() or not ref.strip():
        raise ValueError(f"row {ref!r} is not a row id: use TASK:ROW with ASCII digits (row numbers from "
                         f"`ncbench leaderboard TASK`), TASK:RUN_ID or a run id")
    lb_dir = leaderboards_dir(leaderboards)
    tables = read_tables(lb_dir)
    task, _, sel = ref.rpartition(":")
    if task:
        if task not in tables:
            raise ValueError(f"no leaderboard for task '{task}' (have {sorted(tables) or 'none'})")
        df = tables[task]
        if sel.isdigit():
            if int(sel) >= len(df):
                raise ValueError(f"{task} has rows 0..{len(df) - 1}, not {sel} (see `ncbench leaderboard {task}`)")
            return [(task, int(sel), df.iloc[int(sel)].to_dict())]
        hits = [(task, int(i), df.loc[i].to_dict()) for i in df.index[df["run_id"] == sel]]
    else:
        hits = [(t, int(i), df.loc[i].to_dict()) for t, df in tables.items() for i in df.index[df["run_id"] == sel]]
    if not hits:
        raise ValueError(f"no leaderboard row matches '{ref}': use TASK:ROW (row numbers from "
                         f"`ncbench leaderboard TASK`) or a run id")
    return hits


def check_tolerance(name: str, value: float | None) -> float | None:
    """None (use each metric's declared tolerance) or a finite number >= 0; else ValueError."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0 (or left out to use each metric's declared "
                         f"tolerance), got {value!r}")
    return float(value)


def compare(row: dict, rerun: dict, metrics: list[str], rtol: float | None = None,
            atol: float | None = None) -> pd.DataFrame:
    """Per metric: submitted, rerun, |difference|, tolerance atol + rtol·|submitted| (each metric's declared
    atol/rtol from `ncbench.metrics.vocabulary`, unless given here), agrees (NaN = NaN)."""
    from ncbench.metrics.vocabulary import MetricDeclaration, declaration

    rtol, atol = check_tolerance("rtol", rtol), check_tolerance("atol", atol)
    recs = []
    for m in metrics:
        a = float(row.get(m) or "nan")
        b = float(rerun.get(m) or "nan")
        decl = declaration(m) or MetricDeclaration()
        m_atol = decl.atol if atol is None else atol
        m_rtol = decl.rtol if rtol is None else rtol
        tol = m_atol + m_rtol * abs(a)
        ok = (math.isnan(a) and math.isnan(b)) or a == b or abs(a - b) <= tol
        recs.append({"metric": m, "submitted": a, "rerun": b, "abs_diff": abs(a - b), "atol": m_atol,
                     "rtol": m_rtol, "tolerance": tol, "agrees": bool(ok)})
    return pd.DataFrame(recs, columns=["metric", "submitted", "rerun", "abs_diff", "atol", "rtol", "tolerance",
                                       "agrees"])


def rerun_overrides(row: dict, device: str, checkpoint: str | None) -> dict:
    """Spec overrides that reproduce a row's configuration."""
    o = {"model": row["model"], "dataset": row["dataset"], "seed": int(row["seed"]), "device": device}
    weights = row["pretrained"]
    if weights.startswith("sha256:"):
        if not checkpoint:
            raise ValueError(f"the row was trained from checkpoint {weights}: pass --checkpoint FILE")
        got = "sha256:" + file_sha256(Path(checkpoint))[:16]
        if got != weights:
            raise ValueError(f"--checkpoint {checkpoint} hashes to {got}, the row's weights are {weights}")
        o["checkpoint"] = str(checkpoint)
    elif weights:
        o["pretrained"] = True if weights == "true" else weights
    return o


def verify(ref: str, leaderboards: str | Path | None = None, *, run_dir: str | Path | None = None,
           out: str | Path = "results", device: str = "cpu", checkpoint: str | None = None,
           rtol: float | None = None, atol: float | None = None, progress: bool = True, log=print):
    """Rerun the configuration of leaderboard row(s) `ref` (or read an existing rerun in `run_dir`) and
    compare each headline metric within atol + rtol·|submitted|: each metric's declared tolerance
    (`ncbench.metrics.vocabulary`), or `rtol` / `atol` for all when given. Returns [(task, row, comparison)]."""
    check_tolerance("rtol", rtol)
    check_tolerance("atol", atol)
    hits = find_rows(ref, leaderboards)
    for task, i, row in hits:
        spec = current_spec(task)
        if int(row["task_version"]) != spec.version:
            raise ValueError(f"{task} row {i} is for version {row['task_version']}, the registry has version "
                             f"{spec.version}: it cannot be rerun with this ncbench")
    if run_dir is None:
        from ncbench.specs import load_task
        from ncbench.suite import run_tasks

        groups: dict[tuple, list] = {}
        for task, i, row in hits:
            groups.setdefault(tuple(row[c] for c in IDENTITY if c not in ("task", "task_version")), []).append(
                (task, i, row))
        dirs = {}
        for members in groups.values():
            specs = [load_task(t, **rerun_overrides(r, device, checkpoint)) for t, _, r in members]
            rd, runs = run_tasks("verify", specs, Path(out), progress=progress, log=log)
            failed = [f"{r.spec.name}: {r.error}" for r in runs if r.status == "failed"]
            if failed:
                raise ValueError("the rerun failed: " + "; ".join(failed))
            dirs.update({(t, i): rd / t for t, i, _ in members})
    else:
        base = Path(run_dir)
        dirs = {(t, i): (base if (base / "results.csv").is_file() else base / t) for t, i, _ in hits}
    results = []
    for task, i, row in hits:
        entry = entry_from_task_dir(dirs[(task, i)])
        if entry is None:
            raise ValueError(f"{task}: declares no leaderboard metrics to verify")
        same = {c: (row[c], entry.row[c]) for c in IDENTITY if row[c] != entry.row[c]}
        if same:
            raise ValueError(f"{dirs[(task, i)]} is another configuration than {task} row {i}: "
                             + ", ".join(f"{c} {a!r} vs {b!r}" for c, (a, b) in same.items()))
        metrics = [m for m in current_spec(task).leaderboard.get("metrics", {})]
        results.append((task, i, compare(row, entry.row, metrics, rtol, atol)))
    return results
