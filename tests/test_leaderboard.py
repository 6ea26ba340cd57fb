"""Leaderboards: submit / merge / replace / refuse, file locking across processes, corrupted CSVs,
README rendering, typed loading, and the round trip long results -> board CSV -> README.

The run folders here are bookkeeping fixtures written in the exact SPEC §9 schema (as
`ncbench.runner.suite.run_tasks` writes them); no result of them is ever committed.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from ncbench import leaderboard as lb
from ncbench import leaderboard_cli
from ncbench.cli import main
from ncbench.core.identity import weights_identity
from ncbench.leaderboard import load_leaderboard, store
from ncbench.leaderboard.schema import BoardSpec
from ncbench.results import load_results
from ncbench.results.integrity import record_files
from ncbench.results.schema import COLUMNS
from ncbench.results.writer import write_json, write_long_csv
from ncbench.specs import load_task

ROOT = Path(__file__).resolve().parent.parent
TASK = "train_collapse_mnist5k"
PROV = {"ncbench_version": "0.1.0", "torch_version": "2.0.0", "timm_version": "1.0.0", "device": "cpu",
        "git_hash": "abc123def456", "started_at": "2026-01-02T03:04:05+00:00"}


@pytest.fixture(autouse=True)
def tmp_leaderboards(tmp_path, monkeypatch):
    """Every test writes its leaderboards to a tmp folder, never the repo's leaderboards/."""
    d = tmp_path / "leaderboards"
    monkeypatch.setenv("NCBENCH_LEADERBOARDS", str(d))
    return d


def board(task=TASK) -> dict:
    """The task's board block with each metric's facts resolved (ncbench.core.board): {metric: {...}}."""
    section = load_task(task).leaderboard
    spec = BoardSpec.from_dict(section)
    return {**section, "metrics": {m.name: {"higher_is_better": m.higher_is_better, "role": m.role,
                                            **({"variants": list(m.variants)} if m.variants is not None else {})}
                                   for m in spec.metrics.values()}}


def declared_points(spec) -> dict[str, list[str]]:
    """{metric: [variants]} a run must report for the board of `spec` (a metric without declared
    variants at the primary's variant)."""
    b = BoardSpec.from_dict(spec.leaderboard)
    return {m: list(d.variants) if d.variants is not None else [b.primary.variant] for m, d in b.metrics.items()}


def make_task(run_dir: Path, task: str = TASK, *, model="test_resnet", seed=0, values=None, version=None,
              recipe=None, drop=(), pretrained=None, checkpoint=None, started_at=None, status=None,
              dataset=None) -> Path:
    """One finished task folder as `run_tasks` writes it: results.csv (SPEC §9) + config.json."""
    overrides = {"model": model, "seed": seed, "pretrained": pretrained, "checkpoint": checkpoint, "dataset": dataset}
    spec = load_task(task, **{k: v for k, v in overrides.items() if v is not None})
    if version is not None:
        spec.version = version
    if recipe:
        spec.recipe = {**spec.recipe, **recipe}
    points = declared_points(spec)
    values = {**{m: 0.5 for m in points}, "train_seconds": 12.5, **(values or {})}
    status = status or {}
    rows = [{"split": "train", "epoch": e, "layer": None, "metric": m, "value": v * (3 - e), "n_samples": 4000}
            for e in (1, 2) for m, v in values.items()]
    rows += [{"split": "summary", "epoch": 2, "layer": None, "variant": variant, "metric": m, "value": v,
              "n_samples": 4000, "status": status.get(variant, ("ok", ""))[0],
              "status_reason": status.get(variant, ("ok", ""))[1]}
             for m, v in values.items() if m not in drop for variant in points.get(m, [""])]
    prov = {**PROV, **({"started_at": started_at} if started_at else {})}
    context = {"run_id": run_dir.name, "task": spec.name, "task_version": spec.version, "model": spec.model,
               "pretrained": weights_identity(spec.checkpoint, spec.pretrained), "dataset": spec.dataset, "seed": spec.seed,
               "precision": "fp32", "config_hash": spec.config_hash(), **prov}
    task_dir = run_dir / spec.name
    write_long_csv(task_dir / "results.csv", rows, context)
    write_json(task_dir / "config.json", {"spec": spec.to_dict(), "config_hash": spec.config_hash(),
                                          "provenance": prov, "seconds": 1.0, "plots": [], "meta": {},
                                          "files": record_files(task_dir, ["results.csv"])})
    return task_dir


def reseal(task_dir: Path) -> None:
    """Record the current files in config.json, as if the run had written them (a consistent but bad folder)."""
    cfg = json.loads((task_dir / "config.json").read_text())
    write_json(task_dir / "config.json", {**cfg, "files": record_files(task_dir, ["results.csv"])})


def make_run(root: Path, run_id: str, tasks=(TASK,), **kw) -> Path:
    run_dir = root / run_id
    for t in tasks:
        make_task(run_dir, t, **kw)
    write_json(run_dir / "suite.json", {"suite": "fixture", "run_id": run_id, "tasks": [{"name": t} for t in tasks]})
    return run_dir


def snapshot(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.glob("*")) if p.is_file() and p.name != lb.LOCK_NAME}


# --------------------------------------------------------------------------- submit, merge, replace

def test_submit_writes_csv_with_identity_status_metrics_provenance(tmp_path, tmp_leaderboards):
    run = make_run(tmp_path, "r1", values={"nc1": 0.125, "test_accuracy": 0.875})
    res = lb.submit(run)
    assert [e.task for e in res.added] == [TASK] and not res.replaced
    df = pd.read_csv(tmp_leaderboards / f"{TASK}.csv")           # no options: numbers come back as floats
    metrics = list(board()["metrics"])
    assert list(df.columns) == [*lb.ROW, *lb.STATUS, *metrics, "train_seconds", *lb.PROVENANCE]
    assert all(df[m].dtype == float for m in metrics + ["train_seconds"])
    row = df.iloc[0]
    assert (row["task"], row["task_version"], row["model"], row["dataset"], row["seed"]) == \
        (TASK, load_task(TASK).version, "test_resnet", "mnist5k", 0)
    assert pd.isna(row["pretrained"]) and row["nc1"] == 0.125 and row["test_accuracy"] == 0.875
    assert pd.isna(row["variant"]) and row["status"] == "ok" and pd.isna(row["status_reason"])
    assert (row["torch_version"], row["git_hash"], row["run_id"], row["precision"]) == \
        ("2.0.0", "abc123def456", "r1", "fp32")
    assert row["date"] == PROV["started_at"] and row["config_hash"] == load_task(TASK).config_hash()
    assert (tmp_leaderboards / "README.md").is_file()
    assert not list(tmp_leaderboards.glob(".*tmp*")), "temporary file left behind"


def test_duplicate_is_refused_unless_replace_and_merge_keeps_rows_and_fields(tmp_path, tmp_leaderboards):
    lb.submit(make_run(tmp_path, "a", values={"nc1": 0.3}))
    lb.submit(make_run(tmp_path, "b", model="resnet18", values={"nc1": 0.2}))
    path = tmp_leaderboards / f"{TASK}.csv"
    # a field only the existing rows have (added by hand, or by an older ncbench) must survive merges
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    df.insert(len(lb.FIXED) - len(lb.PROVENANCE), "old_metric", ["0.75", "0.5"])
    path.write_text(df.to_csv(index=False, lineterminator="\n"))
    before = snapshot(tmp_leaderboards)

    again = make_run(tmp_path, "a2", values={"nc1": 0.1})      # same identity as run "a"
    with pytest.raises(lb.SubmissionRefused, match="already on the leaderboard.*--replace"):
        lb.submit(again)
    assert snapshot(tmp_leaderboards) == before, "a refused submission wrote something"

    res = lb.submit(again, replace=True)
    assert len(res.replaced) == 1 and not res.added
    df = pd.read_csv(path)
    assert len(df) == 2 and list(df.model) == ["test_resnet", "resnet18"]
    assert df.nc1.tolist() == [0.1, 0.2] and df.run_id.tolist() == ["a2", "b"]
    assert df.old_metric.tolist() == [0.75, 0.5], "replace dropped a field the new row lacks"

    lb.submit(make_run(tmp_path, "c", seed=1))
    df = pd.read_csv(path)
    assert len(df) == 3 and df.old_metric.iloc[:2].tolist() == [0.75, 0.5] and math.isnan(df.old_metric.iloc[2])


def test_one_run_many_tasks_and_all_or_nothing(tmp_path, tmp_leaderboards):
    tasks = ("train_collapse_mnist5k", "test_collapse_mnist5k", "cdnv_bound_mnist5k")
    run = make_run(tmp_path, "suite1", tasks=tasks)
    res = lb.submit(run)
    assert sorted(e.task for e in res.added) == sorted(tasks)
    assert sorted(p.stem for p in tmp_leaderboards.glob("*.csv")) == sorted(tasks)
    # a second run where one task is stale: nothing of it is written, not even the good tasks
    bad = make_run(tmp_path, "suite2", tasks=tasks[:2], seed=5)
    make_task(bad, tasks[2], seed=5, version=load_task(tasks[2]).version - 1)
    before = snapshot(tmp_leaderboards)
    with pytest.raises(lb.SubmissionRefused, match="stale"):
        lb.submit(bad)
    assert snapshot(tmp_leaderboards) == before


@pytest.mark.parametrize("case, needle", [
    ("stale", "is stale: the registry's tasks/train_collapse_mnist5k.yaml is version"),
    ("newer", "newer than this ncbench"),
    ("epochs", "recipe.epochs: ran 1, spec"),
    ("missing_metric", "incomplete, headline metrics ['nc3'] have no summary row"),
    ("nan_primary", "incomplete, primary metric 'test_accuracy' is nan in a run whose status is ok"),
    ("failed_task", "incomplete, it failed (see error.json)"),
    ("never_ran", "listed in"),
    ("bad_value", "schema: "),
    ("bad_columns", "columns differ from the results schema"),
    ("mixed_runs", "disagree: the folder mixes two runs"),
    ("not_a_run", "holds no task results"),
    ("unknown_task", "is not in the registry"),
])
def test_refusals_name_the_reason_and_write_nothing(case, needle, tmp_path, tmp_leaderboards):
    v = load_task(TASK).version
    run = tmp_path / "run"
    if case == "stale":
        make_run(tmp_path, "run", version=v - 1)
    elif case == "newer":
        make_run(tmp_path, "run", version=v + 1)
    elif case == "epochs":
        make_run(tmp_path, "run", recipe={"epochs": 1})
    elif case == "missing_metric":
        make_run(tmp_path, "run", drop=("nc3",))
    elif case == "nan_primary":
        make_run(tmp_path, "run", values={"test_accuracy": math.nan})
    elif case == "failed_task":
        write_json(run / TASK / "error.json", {"error": "boom"})
    elif case == "never_ran":
        make_run(tmp_path, "run")
        write_json(run / "suite.json", {"tasks": [{"name": TASK}, {"name": "cdnv_bound_mnist5k"}]})
    elif case == "bad_value":
        make_run(tmp_path, "run")
        csv = run / TASK / "results.csv"
        csv.write_text(csv.read_text().replace(",0.5,", ',"1,234",', 1))
        reseal(run / TASK)
    elif case == "bad_columns":
        make_run(tmp_path, "run")
        csv = run / TASK / "results.csv"
        df = pd.read_csv(csv, dtype=str, keep_default_na=False).drop(columns=["n_samples"])
        csv.write_text(df.to_csv(index=False))
        reseal(run / TASK)
    elif case == "mixed_runs":
        make_run(tmp_path, "run")
        cfg = json.loads((run / TASK / "config.json").read_text())
        write_json(run / TASK / "config.json", {**cfg, "config_hash": "000000000000"})
    elif case == "not_a_run":
        (run / "empty").mkdir(parents=True)
    elif case == "unknown_task":                     # a consistent folder (rows, spec and hashes) of an unknown task
        from ncbench.specs import TaskSpec

        make_run(tmp_path, "run")
        csv, cfg_path = run / TASK / "results.csv", run / TASK / "config.json"
        cfg = json.loads(cfg_path.read_text())
        spec = TaskSpec.from_dict({**cfg["spec"], "name": "no_such_task"}, "config.json")
        csv.write_text(csv.read_text().replace(f",{TASK},", ",no_such_task,").replace(cfg["config_hash"],
                                                                                       spec.config_hash()))
        write_json(cfg_path, {**cfg, "spec": spec.to_dict(), "config_hash": spec.config_hash()})
        reseal(run / TASK)
    with pytest.raises(lb.SubmissionRefused) as e:
        lb.submit(run)
    assert needle in str(e.value)
    assert not list(tmp_leaderboards.glob("*.csv"))


def test_checkpoint_weights_are_identified_by_file_hash(tmp_path):
    ckpt = tmp_path / "weights.pth"
    ckpt.write_bytes(b"not really a state dict, but bytes to hash")
    run = make_run(tmp_path, "ck", checkpoint=str(ckpt))
    lb.submit(run)
    df = load_leaderboard(TASK).runs
    assert df.pretrained.iloc[0] == "sha256:" + hashlib.sha256(ckpt.read_bytes()).hexdigest()[:16]
    ckpt.unlink()
    with pytest.raises(lb.SubmissionRefused, match="checkpoint .* not found"):
        lb.submit(run, replace=True)


def test_pretrained_tag_is_part_of_the_identity(tmp_path):
    lb.submit(make_run(tmp_path, "p0"))
    lb.submit(make_run(tmp_path, "p1", pretrained="a1_in1k"))
    assert load_leaderboard(TASK).runs.pretrained.tolist() == ["", "a1_in1k"]


# --------------------------------------------------------------------------- corrupted leaderboards

CORRUPTIONS = {
    "thousands separator": (lambda t: t.replace(",0.5,", ',"1,234",', 1), "not a plain number"),
    "text in a metric": (lambda t: t.replace(",0.5,", ",n/a,", 1), "'n/a', not a plain number"),
    "deleted column": (lambda t: "\n".join(",".join(line.split(",")[:2] + line.split(",")[3:])
                                           for line in t.splitlines()), "columns ['model'] are missing"),
    "repeated row": (lambda t: t + t.splitlines()[1] + "\n", "repeat one entry"),
    "wrong task": (lambda t: t.replace(f"\n{TASK},", "\nother_task,", 1), "is for task 'other_task'"),
    "float seed": (lambda t: t.replace(",mnist5k,0,", ",mnist5k,0.0,", 1), "seed '0.0' is not an integer"),
    "repeated column": (lambda t: t.replace("nc1,", "nc3,", 1), "repeated columns ['nc3']"),
    "empty file": (lambda t: "", "not a readable CSV"),
    "binary garbage": (lambda t: b"\x00\xff\xfe" * 10, "not a readable CSV"),
}


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_corrupted_leaderboard_gives_a_clear_error_and_is_not_overwritten(name, tmp_path, tmp_leaderboards, capsys):
    lb.submit(make_run(tmp_path, "good"))
    path = tmp_leaderboards / f"{TASK}.csv"
    edit, needle = CORRUPTIONS[name]
    broken = edit(path.read_text())
    path.write_bytes(broken if isinstance(broken, bytes) else broken.encode())
    before = snapshot(tmp_leaderboards)
    with pytest.raises(lb.LeaderboardError) as e:
        lb.submit(make_run(tmp_path, "next", seed=1))
    msg = str(e.value)
    assert str(path) in msg and "is not a valid leaderboard" in msg and needle in msg and "left untouched" in msg
    assert snapshot(tmp_leaderboards) == before
    assert main(["submit", str(tmp_path / "next"), "--replace"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ncbench: error:") and needle in err and "Traceback" not in err
    assert snapshot(tmp_leaderboards) == before
    with pytest.raises(lb.LeaderboardError):
        load_leaderboard(TASK)


# --------------------------------------------------------------------------- concurrency

SUBMITTER = """
import os, sys, time, pathlib
sys.path.insert(0, {root!r})
from ncbench.leaderboard import current_spec, store as lb
current_spec({task!r})                         # pay the imports before the start line
original = lb.read_tables
def slow_read(d):                              # widen the read-modify-write window
    tables = original(d)
    time.sleep(1.0)
    return tables
lb.read_tables = slow_read
ready = pathlib.Path(sys.argv[2])
(ready / str(os.getpid())).touch()
while len(list(ready.iterdir())) < 2:
    time.sleep(0.005)
lb.submit([sys.argv[1]])
"""


def test_two_processes_submitting_at_once_lose_nothing(tmp_path, tmp_leaderboards):
    runs = [make_run(tmp_path, f"proc{i}", seed=i) for i in range(2)]
    ready = tmp_path / "ready"
    ready.mkdir()
    script = SUBMITTER.format(root=str(ROOT), task=TASK)
    env = {**os.environ, "NCBENCH_LEADERBOARDS": str(tmp_leaderboards), "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", script, str(r), str(ready)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in runs]
    outs = [p.communicate(timeout=240) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    df = load_leaderboard(TASK).runs
    assert sorted(df.run_id) == ["proc0", "proc1"] and sorted(df.seed) == [0, 1]
    readme = (tmp_leaderboards / "README.md").read_text()
    assert "| 2 |" in readme.split(f"## {TASK}")[1], "README lacks one of the two seeds"


def test_without_the_lock_the_same_race_loses_a_row(tmp_path, tmp_leaderboards, monkeypatch):
    """Control for the test above: it can fail, because the race is real when the lock is gone."""
    import contextlib

    runs = [make_run(tmp_path, f"thread{i}", seed=i) for i in range(2)]
    original = store.read_tables
    barrier = threading.Barrier(2)

    def slow_read(d):
        tables = original(d)
        barrier.wait(timeout=30)                # both have read before either writes
        time.sleep(0.1 + 0.4 * int(threading.current_thread().name[-1]))   # then they write in turn
        return tables

    monkeypatch.setattr(store, "read_tables", slow_read)
    monkeypatch.setattr(store, "_lock", lambda d, t: contextlib.nullcontext())
    threads = [threading.Thread(target=store.submit, args=([r],), name=f"submitter{i}") for i, r in enumerate(runs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    monkeypatch.setattr(store, "read_tables", original)
    assert len(load_leaderboard(TASK).runs) == 1


# --------------------------------------------------------------------------- README rendering

def _cell(values: list[float]) -> str:
    """mean ± the 95% Student-t half-width, from scipy (one value: the mean alone)."""
    from scipy import stats

    m = statistics.mean(values)
    if len(values) < 2:
        return f"{m:.4g}"
    half = stats.t.ppf(0.975, len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
    return f"{m:.4g} ± {half:.2g}"


def _table_rows(readme: str, task: str, part: int = 0) -> list[list[str]]:
    """Rows of the `part`-th table of a task's section (0: ranked, 1: not ranked)."""
    section = readme.split(f"## {task}\n")[1].split("\n## ")[0]
    tables = [t for t in section.split("\n\n") if t.startswith("|")]
    lines = [ln for ln in tables[part].splitlines() if ln.startswith("|")]
    return [[c.strip() for c in ln.strip("|").split(" | ")] for ln in lines]


def test_round_trip_long_to_board_to_readme(tmp_path, tmp_leaderboards):
    """Long summary rows -> board CSV (exact floats, every seed) -> README (mean ± t CI, ranked by the
    primary target, test_accuracy; collapse values marked as descriptors)."""
    nc1 = {("test_resnet", 0): 0.30, ("test_resnet", 1): 0.34, ("resnet18", 0): 0.05,
           ("resnet18", 1): 0.07, ("resnet18", 2): 0.0612345678, ("vit_tiny_patch16_224", 0): 0.9}
    acc = {k: 0.9 - v / 3 for k, v in nc1.items()}
    runs = [make_run(tmp_path, f"{m}-s{s}", model=m, seed=s, values={"nc1": v, "test_accuracy": acc[(m, s)],
                                                                     "nc3": 0.1 * s})
            for (m, s), v in nc1.items()]
    for r in runs:
        lb.submit(r)

    # long -> board: every per-seed value of the long results is in the board, exactly
    long = load_results([str(tmp_path / "*-s*")])
    summary = long[long.split == "summary"]
    wide = summary.pivot_table(index=["model", "seed"], columns="metric", values="value", observed=True)
    board_df = load_leaderboard(TASK).runs.set_index(["model", "seed"])
    assert len(board_df) == len(nc1)
    for m in board()["metrics"]:
        for key in wide.index:
            assert board_df.loc[key, m] == wide.loc[key, m]

    # board -> README: one row per model, seeds aggregated, ranked by test_accuracy (higher is better)
    readme = (tmp_leaderboards / "README.md").read_text()
    assert readme == lb.render_readme(lb.read_tables(tmp_leaderboards)), "README not rendered from the CSVs"
    rows = _table_rows(readme, TASK)
    header, body = rows[0], rows[2:]
    metrics = list(board()["metrics"])
    assert header[:5] == ["#", "model", "weights", "dataset", "seeds"]
    assert header[5] == "test_accuracy ↑" and "nc1 ↓ (descriptor)" in header
    assert len(header) == 5 + len(metrics) + 2
    by_model = {m: [acc[k] for k in acc if k[0] == m] for m in ("test_resnet", "resnet18", "vit_tiny_patch16_224")}
    order = sorted(by_model, key=lambda m: -statistics.mean(by_model[m]))
    assert [r[1] for r in body] == order == ["resnet18", "test_resnet", "vit_tiny_patch16_224"]
    for r in body:
        model = r[1]
        seeds = sorted(s for (mm, s) in nc1 if mm == model)
        assert r[2] == "scratch" and r[3] == "mnist5k"
        assert r[4] == (str(len(seeds)) if len(seeds) > 1 else "1 (no CI)")
        assert r[5] == _cell([acc[(model, s)] for s in seeds])
        assert r[header.index("nc1 ↓ (descriptor)")] == _cell([nc1[(model, s)] for s in seeds])
        assert r[header.index("nc3 ↓ (descriptor)")] == _cell([0.1 * s for s in seeds])
        assert r[-2] == "cpu" and r[-1] == "2026-01-02"
    assert "±" in body[0][5] and "±" not in body[2][5]


def test_readme_declares_directions_tier_and_hides_other_versions(tmp_path, tmp_leaderboards):
    lb.submit(make_run(tmp_path, "x", tasks=(TASK, "test_collapse_mnist5k")))
    lb.submit(make_run(tmp_path, "y", model="resnet18", values={"test_accuracy": 0.99}))
    readme = (tmp_leaderboards / "README.md").read_text()
    tier = {"cpu": "embedded CPU", "gpu": "GPU protocol"}[load_task(TASK).tier]
    assert f"Tier: **{tier}**" in readme.split(f"## {TASK}")[1]
    for task in (TASK, "test_collapse_mnist5k"):
        section = readme.split(f"## {task}\n")[1].split("\n## ")[0]
        for m, d in board(task)["metrics"].items():
            word = "higher" if d.get("higher_is_better") else "lower"
            assert f"`{m}` {word} is better" in section
            assert f"{m} {'↑' if d.get('higher_is_better') else '↓'}" in section
    # a row of another task version stays in the CSV and out of the table
    path = tmp_leaderboards / f"{TASK}.csv"
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    df.loc[1, "task_version"] = str(load_task(TASK).version + 7)
    path.write_text(df.to_csv(index=False, lineterminator="\n"))
    lb.write_readme()
    readme = (tmp_leaderboards / "README.md").read_text()
    rows = _table_rows(readme, TASK)
    assert [r[1] for r in rows[2:]] == ["test_resnet"]
    assert "1 row(s) for other versions of this task are kept" in readme
    assert len(pd.read_csv(path)) == 2


def test_empty_leaderboards_render_and_the_repo_readme_is_current():
    assert "No submissions yet." in lb.render_readme({})
    repo = ROOT / "leaderboards"
    assert (repo / "README.md").is_file()
    from ncbench.leaderboard.store import claims_markdown

    assert (repo / "README.md").read_text() == lb.render_readme(lb.read_tables(repo), claims_markdown(repo)), \
        "leaderboards/README.md is stale: run `ncbench leaderboard --render`"


def test_leaderboards_folder_resolution(tmp_path, monkeypatch):
    assert lb.leaderboards_dir(tmp_path / "x") == tmp_path / "x"
    monkeypatch.setenv("NCBENCH_LEADERBOARDS", str(tmp_path / "env"))
    assert lb.leaderboards_dir() == tmp_path / "env"
    monkeypatch.delenv("NCBENCH_LEADERBOARDS")
    assert lb.leaderboards_dir() == ROOT / "leaderboards"


# --------------------------------------------------------------------------- typed loading

def test_load_results_types(tmp_path):
    run = make_run(tmp_path, "typed", tasks=(TASK, "cdnv_bound_mnist5k"))
    assert pd.read_csv(run / TASK / "results.csv")["value"].dtype == float   # no options needed
    for arg in (run, str(run / "*" / "results.csv"), [run / TASK / "results.csv", run / "cdnv_bound_mnist5k"]):
        df = load_results(arg)
        assert list(df.columns) == list(COLUMNS) and len(df) > 10
        assert set(df.task) == {TASK, "cdnv_bound_mnist5k"}
    assert df["value"].dtype == "float64"
    for c in ("task_version", "epoch", "seed", "n_samples"):
        assert df[c].dtype == "Int64", c
    for c in ("task", "model", "split", "metric", "pretrained", "device", "layer"):
        assert isinstance(df[c].dtype, pd.CategoricalDtype), c
    assert str(df["started_at"].dtype).startswith("datetime64") and str(df["started_at"].dt.tz) == "UTC"
    assert (df.pretrained == "").all(), "scratch weights must stay '' (not NaN) so groupby keeps them"
    assert df.groupby("pretrained", observed=True).size().sum() == len(df)
    assert df[(df.split == "summary") & (df.metric == "train_seconds")]["value"].tolist() == [12.5, 12.5]


def test_load_results_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no results match"):
        load_results(str(tmp_path / "nothing*"))
    run = make_run(tmp_path, "bad")
    csv = run / TASK / "results.csv"
    csv.write_text(csv.read_text().replace(",0.5,", ",0.5+2,", 1))
    with pytest.raises(ValueError, match=r"column 'value' holds non-numbers, e.g. '0.5\+2'"):
        load_results(run)


def test_load_leaderboard_types(tmp_path):
    lb.submit(make_run(tmp_path, "t0"))
    lb.submit(make_run(tmp_path, "t1", seed=3, pretrained="a1_in1k"))
    df = load_leaderboard(TASK).runs
    assert all(df[m].dtype == "float64" for m in board()["metrics"])
    assert df.seed.dtype == "Int64" and df.task_version.dtype == "Int64" and df.seed.tolist() == [0, 3]
    assert isinstance(df.model.dtype, pd.CategoricalDtype) and str(df.date.dt.tz) == "UTC"
    with pytest.raises(FileNotFoundError, match="no leaderboard for task 'cdnv_bound_mnist5k'"):
        load_leaderboard("cdnv_bound_mnist5k")


# --------------------------------------------------------------------------- verify and the CLI

def test_verify_against_a_rerun_folder(tmp_path, capsys):
    lb.submit(make_run(tmp_path, "orig", values={"nc1": 0.2, "test_accuracy": 0.9}))
    close = make_run(tmp_path, "close", values={"nc1": 0.2 * 1.01, "test_accuracy": 0.9})
    far = make_run(tmp_path, "far", values={"nc1": 0.3, "test_accuracy": 0.9})
    other = make_run(tmp_path, "other", seed=9)
    [(task, i, cmp)] = leaderboard_cli.verify(f"{TASK}:0", run_dir=close, rtol=0.02, atol=0)
    assert task == TASK and i == 0 and cmp.agrees.all() and list(cmp.metric) == list(board()["metrics"])
    [(_, _, cmp)] = leaderboard_cli.verify("orig", run_dir=far, rtol=0.02, atol=0)
    assert cmp.set_index("metric").agrees.to_dict() == {m: m != "nc1" for m in board()["metrics"]}
    assert cmp.set_index("metric").loc["nc1", "abs_diff"] == pytest.approx(0.1)
    assert main(["verify", f"{TASK}:0", "--run-dir", str(close), "--rtol", "0.02"]) == 0
    assert "AGREES" in capsys.readouterr().out
    assert main(["verify", f"{TASK}:orig", "--run-dir", str(far), "--rtol", "0.02"]) == 1
    assert "DISAGREES" in capsys.readouterr().out
    assert main(["verify", f"{TASK}:0", "--run-dir", str(other)]) == 2
    assert "another configuration" in capsys.readouterr().err
    assert main(["verify", f"{TASK}:5", "--run-dir", str(close)]) == 2
    assert "has rows 0..0" in capsys.readouterr().err


def test_cli_submit_leaderboard_and_errors(tmp_path, tmp_leaderboards, capsys):
    run = make_run(tmp_path, "cli", values={"nc1": 0.25})
    assert main(["submit", str(run), "--dry-run"]) == 0
    assert "would add" in capsys.readouterr().out and not list(tmp_leaderboards.glob("*.csv"))
    assert main(["submit", str(run)]) == 0
    assert f"add      {TASK}" in capsys.readouterr().out
    assert main(["submit", str(run)]) == 2
    assert "already on the leaderboard" in capsys.readouterr().err
    assert main(["leaderboard"]) == 0
    out = capsys.readouterr().out
    assert TASK in out and "nc1 ↓" in out and "0.25" in out
    assert main(["leaderboard", TASK, "--wide"]) == 0         # the run_id column, the last, shows with --wide
    out = capsys.readouterr().out
    assert "row" in out.splitlines()[1] and "cli" in out
    assert main(["leaderboard", "cdnv_bound_mnist5k"]) == 2
    assert main(["submit"]) == 2
    assert "RUN_DIR(s) or --model" in capsys.readouterr().err
    assert main(["submit", str(run), "--seed", "1"]) == 2
    other = tmp_path / "elsewhere"
    assert main(["submit", str(make_run(tmp_path, "cli2", seed=4)), "--leaderboards", str(other)]) == 0
    assert (other / f"{TASK}.csv").is_file() and len(pd.read_csv(tmp_leaderboards / f"{TASK}.csv")) == 1
    assert main(["leaderboard", "--render"]) == 0


def test_leaderboard_suite_lists_the_embedded_cpu_tasks():
    from ncbench.specs import load_suite

    name, specs = load_suite("leaderboard")
    assert name == "leaderboard"
    assert {"train_collapse_mnist5k", "test_collapse_mnist5k", "cdnv_bound_mnist5k"} <= {s.name for s in specs}
    assert all(s.tier == "cpu" and s.leaderboard.get("metrics") for s in specs)


@pytest.mark.slow
def test_real_run_end_to_end(tmp_path, tmp_leaderboards):
    """A real 1-epoch run: loadable, reportable, and refused by submit because --epochs changed the recipe."""
    from ncbench.results.report import write_report

    out = tmp_path / "results"
    assert main(["run", TASK, "--epochs", "1", "--out", str(out), "--no-progress", "--device", "cpu"]) == 0
    [run] = [p for p in out.iterdir() if p.is_dir()]
    df = load_results(run)
    assert df["value"].dtype == "float64" and set(df.split) >= {"train", "summary"}
    with pytest.raises(lb.SubmissionRefused, match=r"recipe\.epochs: ran 1, spec"):
        lb.submit(run)
    page = write_report(run)
    assert page.is_file() and "collapse.png" in page.read_text()


@pytest.fixture
def fake_training(monkeypatch):
    """`run_tasks` replaced by a recorder that writes fixture results for the specs it is given."""
    from ncbench.runner import suite

    calls = []

    def run_tasks(name, specs, out_root, *, force=False, progress=True, run_id=None, log=print):
        calls.append(specs)
        run_dir = Path(out_root) / f"{name}-fake{len(calls)}"
        runs = [suite.TaskRun(s, "done", make_task(run_dir, s.name, model=s.model, seed=s.seed,
                                                    pretrained=s.pretrained or None, checkpoint=s.checkpoint))
                for s in specs]
        write_json(run_dir / "suite.json", {"suite": name, "run_id": run_dir.name,
                                            "tasks": [{"name": s.name} for s in specs]})
        return run_dir, runs

    monkeypatch.setattr(suite, "run_tasks", run_tasks)
    return calls


def test_submit_model_runs_the_leaderboard_suite_with_its_overrides(tmp_path, tmp_leaderboards, fake_training,
                                                                   monkeypatch):
    from ncbench.models import pretrained
    from ncbench.specs import load_suite

    monkeypatch.setattr(pretrained, "cached_file", lambda cfg, hub_cache=None: "/cache/model.safetensors")

    argv = ["submit", "--model", "resnet18", "--pretrained", "a1_in1k", "--seed", "3", "--device", "cpu",
            "--out", str(tmp_path / "results"), "--no-progress"]
    assert main(argv) == 0
    [specs] = fake_training
    assert [s.name for s in specs] == [s.name for s in load_suite("leaderboard")[1]]
    assert {(s.model, s.pretrained, s.seed, s.device) for s in specs} == {("resnet18", "a1_in1k", 3, "cpu")}
    for s in specs:
        row = load_leaderboard(s.name).runs.iloc[0]
        assert (row.model, row.pretrained, row.seed) == ("resnet18", "a1_in1k", 3)


def test_verify_reruns_the_rows_configuration(tmp_path, fake_training):
    lb.submit(make_run(tmp_path, "sub", tasks=(TASK, "cdnv_bound_mnist5k"), model="resnet18", seed=2,
                       pretrained="a1_in1k"))
    results = leaderboard_cli.verify("sub", out=tmp_path / "rerun", device="cpu", progress=False)
    [specs] = fake_training                                # both tasks of the run, rerun together
    assert sorted(s.name for s in specs) == sorted([TASK, "cdnv_bound_mnist5k"])
    assert {(s.model, s.pretrained, s.seed, s.dataset, s.device) for s in specs} == \
        {("resnet18", "a1_in1k", 2, "mnist5k", "cpu")}
    assert len(results) == 2 and all(cmp.agrees.all() for _, _, cmp in results)


# --------------------------------------------------------------------------- issue 13: forged or damaged runs

@pytest.mark.parametrize("case, needle", [
    ("truncated_at_line", "rows, config.json records"),
    ("truncated_mid_number", "sha256"),
    ("no_records", "older ncbench"),
    ("negative_nc1", "nc1 = -5.0 is outside its range [0, inf]"),
    ("accuracy_above_1", "test_accuracy = 1.2 is outside its range [0, 1]"),
    ("html_model", "is not a timm architecture"),
    ("spec_edited", "is not the hash of the spec it records"),
])
def test_forged_or_damaged_runs_are_refused(case, needle, tmp_path, tmp_leaderboards):
    run = tmp_path / "run"
    csv = run / TASK / "results.csv"
    if case in ("truncated_at_line", "truncated_mid_number", "no_records"):
        make_run(tmp_path, "run", values={"nc1": 0.1234567})
        text = csv.read_text()
        if case == "truncated_at_line":
            csv.write_text(text.rsplit("\n", 2)[0] + "\n")
        elif case == "truncated_mid_number":
            cut = text.rindex("0.1234567") + 4
            csv.write_text(text[:cut] + text[text.index("\n", cut):])     # same rows, "0.12" for 0.1234567
        else:
            cfg = json.loads((run / TASK / "config.json").read_text())
            del cfg["files"]
            write_json(run / TASK / "config.json", cfg)
    elif case == "negative_nc1":
        make_run(tmp_path, "run", values={"nc1": -5.0})
    elif case == "accuracy_above_1":
        make_run(tmp_path, "run", values={"test_accuracy": 1.2})
    elif case == "html_model":
        make_run(tmp_path, "run", model="<img src=x onerror=alert(1)>")   # consistent: hashes and spec agree
    elif case == "spec_edited":
        make_run(tmp_path, "run")
        cfg = json.loads((run / TASK / "config.json").read_text())
        cfg["spec"]["seed"] = 7                      # config_hash and results.csv still say seed 0
        write_json(run / TASK / "config.json", cfg)
    with pytest.raises(lb.SubmissionRefused) as e:
        lb.submit(run)
    assert needle in str(e.value)
    assert not list(tmp_leaderboards.glob("*.csv"))


def test_readme_escapes_markdown_and_html_of_any_cell(tmp_path, tmp_leaderboards):
    """A hand-edited (or older) CSV row with markup in its cells renders as literal text."""
    lb.submit(make_run(tmp_path, "ok"))
    path = tmp_leaderboards / f"{TASK}.csv"
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    df.loc[0, "model"] = '<script>alert(1)</script>|x'
    df.loc[0, "device"] = "[click](http://evil) `code` *bold*"
    path.write_text(df.to_csv(index=False, lineterminator="\n"))
    readme = lb.render_readme(lb.read_tables(tmp_leaderboards))
    assert "<script>" not in readme and "&lt;script&gt;alert(1)&lt;/script&gt;\\|x" in readme
    assert "\\[click\\](http\\://evil) \\`code\\` \\*bold\\*" in readme
    row = next(line for line in readme.splitlines() if "alert" in line)
    assert row.count(" | ") == readme.splitlines()[readme.splitlines().index(row) - 2].count(" | "), \
        "a cell broke the table"


def test_committed_leaderboards_are_within_the_declared_ranges():
    from ncbench.core.metrics import metric
    from ncbench.leaderboard.store import board_files

    for path in board_files(ROOT / "leaderboards"):
        df = lb.typed_table(lb.read_table(path))
        for m in lb.metric_columns(df.columns):
            d = metric(m)        # UnknownMetricError if the registry lacks it
            bad = df[m][~df[m].map(d.scale.contains)]
            assert bad.empty, f"{path.name}: {m} out of {d.scale.describe_range()}: {bad.tolist()}"


def test_every_leaderboard_metric_declares_range_and_tolerance():
    from ncbench.core.metrics import metric
    from ncbench.specs import task_names

    for t in task_names():
        board = BoardSpec.from_dict(load_task(t).leaderboard)
        for m in board.metrics if board else ():
            d = metric(m)
            assert d.scale.low <= d.scale.high and d.scale.atol >= 0 and d.scale.rtol >= 0


def test_verify_tolerances_are_per_metric():
    """Old default atol = 1e-4: a UFM nc1 of 1e-17 "agreed" with 5e-5."""
    metrics = ["nc1", "test_accuracy", "ncc_depth"]
    cmp = lb.compare({"nc1": "1e-17", "test_accuracy": "0.98", "ncc_depth": "2.0"},
                     {"nc1": "5e-05", "test_accuracy": "0.975", "ncc_depth": "3.0"}, metrics)
    assert cmp.set_index("metric").agrees.to_dict() == {"nc1": False, "test_accuracy": True, "ncc_depth": False}
    cmp = lb.compare({"nc1": "1e-17", "test_accuracy": "0.98", "ncc_depth": "2.0"},
                     {"nc1": "3e-17", "test_accuracy": "0.95", "ncc_depth": "2.0"}, metrics)
    assert cmp.set_index("metric").agrees.to_dict() == {"nc1": True, "test_accuracy": False, "ncc_depth": True}
    cmp = lb.compare({"nc1": "0.2"}, {"nc1": "0.25"}, ["nc1"], rtol=0.3)     # an explicit override wins
    assert cmp.agrees.all() and cmp.rtol.iloc[0] == 0.3


@pytest.mark.parametrize("flag, value", [("--rtol", "-0.1"), ("--atol", "nan"), ("--atol", "-1e-9"),
                                         ("--rtol", "inf")])
def test_verify_refuses_negative_or_nan_tolerances(flag, value, tmp_path, capsys):
    lb.submit(make_run(tmp_path, "orig"))
    assert main(["verify", f"{TASK}:0", "--run-dir", str(tmp_path / "orig"), f"{flag}={value}"]) == 2
    err = capsys.readouterr().err
    assert f"{flag[2:]} must be a finite number >= 0" in err and "Traceback" not in err


@pytest.mark.parametrize("ref", [f"{TASK}:\u0661", f"{TASK}:\u00b9", f"{TASK}:1\u200b", "\u0661"])
def test_verify_refuses_non_ascii_row_ids(ref, tmp_path, capsys):
    lb.submit(make_run(tmp_path, "r0"))
    lb.submit(make_run(tmp_path, "r1", seed=1))
    with pytest.raises(ValueError, match="is not a row id"):      # old code: "١" (Arabic-Indic 1) was row 1
        lb.find_rows(ref)
    assert main(["verify", ref, "--run-dir", str(tmp_path / "r1")]) == 2
    assert "not a row id" in capsys.readouterr().err


def test_submit_to_an_unwritable_leaderboards_folder_is_one_line(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    run = make_run(tmp_path, "ro")
    assert main(["submit", str(run), "--leaderboards", str(tmp_path / "file" / "lb")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot write" in err and "Traceback" not in err


def test_submit_to_a_read_only_leaderboards_folder_is_one_line(tmp_path, tmp_leaderboards, monkeypatch, capsys):
    """The lock file is the first write (a read-only mount fails there, as `mount -o ro` shows by hand)."""
    import errno

    class ReadOnlyLock:
        def __enter__(self):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(tmp_leaderboards / lb.LOCK_NAME))

        def __exit__(self, *a):
            return False

    run = make_run(tmp_path, "ro")
    lb.submit(run)
    before = snapshot(tmp_leaderboards)
    monkeypatch.setattr(store, "_lock", lambda lb_dir, timeout: ReadOnlyLock())
    assert main(["submit", str(run), "--replace"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "read-only" in err and "Traceback" not in err
    assert main(["leaderboard", "--render"]) == 2
    assert "read-only" in capsys.readouterr().err
    assert snapshot(tmp_leaderboards) == before


def test_a_model_free_theory_task_keeps_its_shipped_model_name(tmp_path, tmp_leaderboards):
    run = make_run(tmp_path, "lpm", tasks=("lpm_minority_curve",), model=None)
    assert [e.row["model"] for e in lb.submit(run, dry_run=True).added] == ["none"]
    with pytest.raises(lb.SubmissionRefused, match="'nonexistent_net' is not a timm architecture"):
        lb.submit(make_run(tmp_path, "lpm2", tasks=("lpm_minority_curve",), model="nonexistent_net"))


def test_readme_escapes_a_hand_placed_csv_name(tmp_path, tmp_leaderboards):
    lb.submit(make_run(tmp_path, "ok"))
    evil = "x<b>y"
    df = pd.read_csv(tmp_leaderboards / f"{TASK}.csv", dtype=str, keep_default_na=False).assign(task=evil)
    (tmp_leaderboards / f"{evil}.csv").write_text(df.to_csv(index=False, lineterminator="\n"))
    readme = lb.render_readme(lb.read_tables(tmp_leaderboards))
    assert "<b>" not in readme and "## x&lt;b&gt;y" in readme


def test_the_readme_embeds_the_claims_scorecard_when_one_is_committed(tmp_path, tmp_leaderboards):
    from ncbench.leaderboard.store import write_readme

    tmp_leaderboards.mkdir(parents=True, exist_ok=True)
    (tmp_leaderboards / "claims.md").write_text("| claim | verdict |\n|---|---|\n| **x**: y | **reproduced** |\n")
    text = write_readme(tmp_leaderboards).read_text()
    assert "## Claims scorecard" in text and "| **x**: y | **reproduced** |" in text
    assert "[claims.csv](claims.csv)" in text
    (tmp_leaderboards / "claims.md").unlink()
    assert "## Claims scorecard" not in write_readme(tmp_leaderboards).read_text()


def test_the_committed_scorecard_beside_the_boards_is_not_read_as_a_board(tmp_path, tmp_leaderboards):
    from ncbench.leaderboard.store import board_files, read_tables

    tmp_leaderboards.mkdir(parents=True, exist_ok=True)
    (tmp_leaderboards / "claims.csv").write_text("claim_id,claim,source,statistic,value,ci_low,ci_high,n_seeds,verdict\n")
    (tmp_leaderboards / "claims_detail.csv").write_text("claim_id,verdict,reason\n")
    assert board_files(tmp_leaderboards) == [] and read_tables(tmp_leaderboards) == {}
