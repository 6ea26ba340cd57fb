"""Submission checks: a finished task folder becomes the board rows of one run, or a refusal that
names every failed check (schema, integrity, current task version and protocol, completeness,
impossible values, duplicates).

One run gives one board row per variant among its `split == "summary"` rows (sweep points of a
group, each with its own `status`); rows with a `layer` (per-layer values) stay in results.csv only.
After RobustBench's submission checks and lm-evaluation-harness's versioned tasks.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from ncbench.core import identity
from ncbench.core.metrics import UnknownMetricError, metric
from ncbench.core.status import SEVERITY, severity
from ncbench.leaderboard.formulas import formula_cells
from ncbench.leaderboard.public_names import (
    check_public_name,
    is_local_dataset,
    other_dataset_refusal,
)
from ncbench.leaderboard.schema import PROVENANCE, RUN, BoardSpec, current_spec
from ncbench.results.integrity import integrity_problems
from ncbench.results.load import read_long_csv, typed_results
from ncbench.results.writer import format_value
from ncbench.run_files import read_json

PROTOCOL_FIELDS = ("kind", "recipe", "options", "tier")
"""Spec fields a leaderboard run must share with the registry's spec (model, weights, data set,
seed and device are the entry's identity and may differ)."""



class SubmissionRefused(ValueError):
    """A submission that fails a check; `reasons` lists every failed check, nothing was written."""

    def __init__(self, reasons: list[str]):
        self.reasons = reasons
        super().__init__("submission refused:\n  " + "\n  ".join(reasons))


@dataclass
class Entry:
    """The board rows (CSV text per column, one per variant) of one run, read from one task folder."""

    task: str
    rows: list[dict[str, str]]
    source: Path

    @property
    def key(self) -> tuple[str, ...]:
        return tuple(self.rows[0][c] for c in RUN)

    @property
    def row(self) -> dict[str, str]:
        """The first (for a run without a sweep: the only) row."""
        return self.rows[0]

    @property
    def status(self) -> str:
        return max((r["status"] for r in self.rows), key=SEVERITY.__getitem__)

    def describe(self) -> str:
        r = self.rows[0]
        weights = r["pretrained"] or "scratch"
        flag = "" if self.status == "ok" else f" [{self.status}: not ranked]"
        seeds = sorted({int(row["seed"]) for row in self.rows})
        which = f"seed {seeds[0]}" if len(seeds) == 1 else "seeds " + ", ".join(map(str, seeds))
        return f"{self.task} v{r['task_version']}: {r['model']} ({weights}) on {r['dataset']}, {which}{flag}"


@dataclass
class SubmitResult:
    added: list[Entry] = field(default_factory=list)
    replaced: list[Entry] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    written: list[Path] = field(default_factory=list)


def weights_tag(spec: dict) -> str:
    """Identity of the starting weights: checkpoint hash, pretrained tag, `true`, or "" (scratch)."""
    ckpt = spec.get("checkpoint")
    if ckpt:
        p = Path(ckpt).expanduser()
        if not p.is_file():
            raise ValueError(f"checkpoint '{ckpt}' not found: its hash identifies the weights, so submit from "
                             f"the machine that has the file")
    return identity.weights_identity(ckpt, spec.get("pretrained"))


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


def spec_hash(spec: dict) -> str:
    """The config hash of a recorded spec, recomputed (ValueError if it is not a valid spec, or if its
    checkpoint, which the hash names by content, is not on this machine)."""
    from ncbench.specs import TaskSpec

    weights_tag(spec)
    try:
        return TaskSpec.from_dict(dict(spec), "config.json").config_hash()
    except (TypeError, ValueError) as e:
        raise ValueError(f"config.json's spec is not a valid task spec ({e})") from None


def check_model(name: str, model: str, spec: dict, shipped: str) -> None:
    """A leaderboard model is the one the spec recorded, and a timm architecture unless it is the
    shipped spec's own (`none` of the model-free theory tasks)."""
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


def _read_run(task_dir: Path):
    """(config's spec, config hash, raw rows, typed rows) of a task folder, integrity checked."""
    name = task_dir.name
    results, cfg_path = task_dir / "results.csv", task_dir / "config.json"
    if not results.is_file():
        why = "it failed (see error.json)" if (task_dir / "error.json").exists() else "it has no results.csv"
        raise ValueError(f"{name}: incomplete, {why}")
    if not cfg_path.is_file():
        raise ValueError(f"{name}: incomplete, no config.json beside results.csv")
    try:
        cfg = read_json(cfg_path, task_dir)
        ran, cfg_hash = cfg["spec"], cfg["config_hash"]
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{name}: config.json is unreadable ({type(e).__name__}: {e})") from None
    problems = integrity_problems(task_dir, cfg)
    if problems:
        raise ValueError(f"{name}: integrity: {'; '.join(problems)}")
    try:
        raw = read_long_csv(results, task_dir)
        typed = typed_results(raw, str(results))
    except ValueError as e:
        raise ValueError(f"{name}: schema: {e}") from None
    if raw.empty:
        raise ValueError(f"{name}: incomplete, results.csv has no rows")
    group = "members" in cfg     # a group (seeds / sweep): its members' rows, each with its seed and hash
    same = ("run_id", "task", "task_version", "model", "pretrained", "dataset") + (() if group else ("seed", "config_hash"))
    for col in same:
        values = list(raw[col].unique())
        if len(values) != 1:
            raise ValueError(f"{name}: results.csv mixes several {col} values {values[:4]}: one folder must "
                             f"hold one run of one configuration")
    if group:
        seeds = _check_group(name, ran, cfg, raw)
        _check_rows_match_spec(name, raw, ran, seeds)
        return ran, raw, typed
    if raw["config_hash"].iloc[0] != cfg_hash:
        raise ValueError(f"{name}: results.csv (config {raw['config_hash'].iloc[0]}) and config.json (config "
                         f"{cfg_hash}) disagree: the folder mixes two runs, rerun the task")
    try:
        recomputed = spec_hash(ran)
    except ValueError as e:
        raise ValueError(f"{name}: {e}") from None
    if recomputed != cfg_hash:
        raise ValueError(f"{name}: config.json's config hash {cfg_hash} is not the hash of the spec it records "
                         f"({recomputed}): the folder was edited; rerun the task")
    _check_rows_match_spec(name, raw, ran, {cfg_hash: ran.get("seed")})
    return ran, raw, typed


def _check_rows_match_spec(name: str, raw, ran: dict, seeds: dict[str, object]) -> None:
    """Every results.csv row says what config.json's spec ran: task name, version, data set, model,
    weights, and, per config hash, the seed of that run (the recipe and options are in the config
    hash, which `_read_run` recomputes from the spec). A relabelled results.csv is refused."""
    wanted = {"task": ran.get("name"), "task_version": ran.get("version"), "dataset": ran.get("dataset"),
              "model": ran.get("model"), "pretrained": weights_tag(ran)}
    problems = [f"{col} {got!r} where config.json's spec says {want!r}" for col, want in wanted.items()
                if (got := str(raw[col].iloc[0])) != str(want)]
    for h, seed in seeds.items():
        got = sorted(set(raw.loc[raw["config_hash"] == h, "seed"].astype(str)))
        if got and got != [str(seed)]:
            problems.append(f"seed {', '.join(got)} for config {h} where config.json's spec says {seed!r}")
    if problems:
        raise ValueError(f"{name}: results.csv and config.json disagree ({'; '.join(problems)}): the folder was "
                         f"edited or mixes two runs; rerun the task")


def _check_group(name: str, ran: dict, cfg: dict, raw) -> dict[str, int]:
    """A group folder is what its spec expands to: the recorded members are `members(spec)` (same
    config hashes, in order), the group hash is theirs, and every row comes from a member or the group.
    Returns {member config hash: its seed}."""
    from ncbench.specs import TaskSpec, group_hash, members

    try:
        ran = dict(ran)
        order = cfg.get("sweep_order") or list(ran.get("sweep") or {})   # config.json sorted the keys
        ran["sweep"] = {k: ran["sweep"][k] for k in order}
        spec = TaskSpec.from_dict(ran, "config.json")
        expected = members(spec)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name}: config.json's spec is not a valid group ({e})") from None
    recorded = [m.get("config_hash") for m in cfg["members"]]
    if recorded != [m.config_hash() for m in expected]:
        raise ValueError(f"{name}: config.json's members are not the runs its spec expands to: the folder was "
                         f"edited or mixes two runs; rerun the task")
    if cfg["config_hash"] != group_hash(spec, expected):
        raise ValueError(f"{name}: config.json's group hash {cfg['config_hash']} is not the hash of its spec and "
                         f"members: the folder was edited; rerun the task")
    stray = sorted(set(raw["config_hash"]) - set(recorded) - {cfg["config_hash"]})
    if stray:
        raise ValueError(f"{name}: results.csv holds rows of runs that are not members ({stray[:3]}): rerun the task")
    return {m.config_hash(): m.seed for m in expected}


def _check_current(name: str, task: str, first, ran: dict):
    """The registry's spec, after checking the run's model, version and protocol against it."""
    other = other_dataset_refusal(task, first["dataset"])
    if other:
        raise ValueError(f"{name}: {other}")
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
    return spec


def _declared(task: str, name: str):
    """The registry's declaration of a summary metric; ValueError naming the task if it has none."""
    try:
        return metric(name)
    except UnknownMetricError as e:
        raise ValueError(f"{task}: {e}") from None


def _summary_by_variant(task: str, summary) -> dict[str, dict]:
    """{variant: {"values": {metric: float}, "status": str, "reason": str}} in the order of the rows."""
    out: dict[str, dict] = {}
    problems = []
    for variant, g in summary.groupby(summary["variant"].astype(str), sort=False, observed=True):
        names = list(g["metric"].astype(str))
        dup = sorted({m for m in names if names.count(m) > 1})
        if dup:
            raise ValueError(f"{task}: summary rows repeat metrics {dup} at variant {variant!r}: a headline "
                             f"metric has one value per sweep point")
        values = dict(zip(names, g["value"].astype(float)))
        problems += [f"{m}{f' ({variant})' if variant else ''} = {v!r} is outside its range "
                     f"{d.scale.describe_range()} ({d.scale.note})"
                     for m, v in values.items() if not (d := _declared(task, m)).scale.contains(v)]
        statuses = [s or "ok" for s in g["status"].astype(str)]
        worst = max(statuses, key=severity)
        if worst not in SEVERITY:
            raise ValueError(f"{task}: status {worst!r} at variant {variant!r} is not one of {list(SEVERITY)}")
        if worst == "ok":   # a ranked value is a finite number (a run that did not finish says so in its status)
            problems += [f"{m}{f' ({variant})' if variant else ''} = {v!r} is not finite in a run whose status is "
                         f"ok (board values are finite numbers, or NaN when not measured)"
                         for m, v in values.items() if math.isinf(v)]
        reasons = [r for r in dict.fromkeys(g["status_reason"].astype(str)) if r]
        out[variant] = {"values": values, "status": worst, "reason": "; ".join(reasons)}
    if problems:
        raise ValueError(f"{task}: impossible values: {'; '.join(problems)}")
    return out


def _check_complete(task: str, board: BoardSpec, points: dict[str, dict]) -> None:
    have = {(m, v) for v, p in points.items() for m in p["values"]}
    missing = []
    for m, decl in board.metrics.items():
        wanted = decl.variants if decl.variants is not None else None
        if wanted is None and not any(m == mm for mm, _ in have):
            missing.append(m)
        missing += [f"{m} ({v})" for v in (wanted or ()) if (m, v) not in have]
    if missing:
        raise ValueError(f"{task}: incomplete, headline metrics {missing} have no summary row "
                         f"(has {sorted({m for m, _ in have})})")
    p = board.primary
    if (p.metric, p.variant) not in have:
        raise ValueError(f"{task}: incomplete, the primary metric {p.header()} has no summary row "
                         f"(variants present: {sorted(points)})")
    point = points[p.variant]
    if point["status"] == "ok" and not math.isfinite(point["values"][p.metric]):
        raise ValueError(f"{task}: incomplete, primary metric '{p.metric}' is {point['values'][p.metric]} "
                         f"in a run whose status is ok")


def entry_from_task_dir(task_dir: Path) -> Entry | None:
    """The board rows of one finished task folder (None when its task has no leaderboard).

    Raises ValueError naming the failed check: schema, completeness, stale version, other protocol.
    """
    name = task_dir.name
    ran, raw, typed = _read_run(task_dir)
    first = raw.iloc[0]
    task = first["task"]
    spec = _check_current(name, task, first, ran)
    board = BoardSpec.from_dict(spec.leaderboard, f"tasks/{task}.yaml leaderboard")
    if board is None:
        return None
    summary = typed[(typed["split"] == "summary") & (typed["layer"].astype(str) == "")]
    prov = {c: first[c] for c in PROVENANCE if c in raw.columns}
    prov["date"] = first["started_at"]
    prov.update({k: v for k, v in recorded_machine(task_dir).items() if v})
    declared = list(board.metrics)
    rows = []
    for seed in sorted(int(s) for s in summary["seed"].dropna().unique()):   # a seed group: every seed
        points = _summary_by_variant(task, summary[summary["seed"] == seed])
        _check_complete(task, board, points)
        ident = {"task": task, "task_version": str(int(first["task_version"])), "model": first["model"],
                 "pretrained": weights_tag(ran), "dataset": first["dataset"], "seed": str(seed)}
        for variant, p in points.items():
            order = [m for m in declared if m in p["values"]] + [m for m in p["values"] if m not in declared]
            rows.append({**ident, "variant": variant, "status": p["status"], "status_reason": p["reason"],
                         **{m: format_value(p["values"][m]) for m in order}, **prov})
    return Entry(task, rows, task_dir)


def recorded_machine(task_dir: Path) -> dict[str, str]:
    """The board's machine columns (`MACHINE`) from the folder's config.json provenance ("" when not recorded)."""
    from ncbench.provenance.machine import board_fields

    try:
        cfg = read_json(Path(task_dir) / "config.json", task_dir)
        return board_fields(cfg.get("provenance") or {})
    except (OSError, ValueError, AttributeError):
        return board_fields({})


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
            listed = [t["name"] for t in read_json(suite, run_dir)["tasks"]]
        except (ValueError, KeyError, TypeError):
            listed = []
        lacking = [n for n in listed if not (run_dir / n).is_dir()]
    if not dirs and not lacking:
        raise ValueError(f"'{run_dir}' holds no task results: pass a folder results/<run_id> written by "
                         f"`ncbench run` or `ncbench suite`")
    return dirs, lacking


def public_entry(e: Entry, dataset_name: str | None) -> Entry:
    """`e` with its data set under a public name: a local data set (`public_names.is_local_dataset`)
    takes `dataset_name`, and without one is refused (ValueError, one line)."""
    dataset = e.row["dataset"]
    if not is_local_dataset(dataset):
        return e
    if not dataset_name:
        raise ValueError(f"{e.source.name}: its data set {dataset} is a path on this machine, and boards hold public "
                         f"names only: pass --dataset-name NAME (the name others know this data set by)")
    return Entry(e.task, [{**r, "dataset": dataset_name} for r in e.rows], e.source)


def collect_entries(run_dirs: list[Path], dataset_name: str | None = None) -> tuple[list[Entry], list[str]]:
    """Rows of every task of the runs (local data sets under `dataset_name`); SubmissionRefused listing
    every failed check."""
    if dataset_name is not None:
        check_public_name(dataset_name)
    entries, reasons, notes, local = [], [], [], 0
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
                continue
            local += is_local_dataset(e.row["dataset"])
            try:
                e = public_entry(e, dataset_name)
            except ValueError as err:
                reasons.append(str(err))
                continue
            formulas = sorted({f for r in e.rows for f in formula_cells(r)})
            if formulas:
                reasons.append(f"{d.name}: cells a spreadsheet would run as formulas ({'; '.join(formulas)}): "
                               f"boards refuse text starting with = + - @; rename it and rerun")
            else:
                entries.append(e)
    seen: dict[tuple, Entry] = {}
    for e in entries:
        if e.key in seen:
            reasons.append(f"{e.describe()}: submitted twice ({seen[e.key].source} and {e.source})")
        seen[e.key] = e
    if not entries and not reasons:
        reasons.append("nothing to submit: no task of these runs declares a leaderboard")
    if dataset_name and entries and not reasons and not local:
        reasons.append(f"--dataset-name names local data, but these runs measured public data sets "
                       f"({', '.join(sorted({e.row['dataset'] for e in entries}))}): leave it out")
    if reasons:
        raise SubmissionRefused(reasons)
    return entries, notes
