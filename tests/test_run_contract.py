"""The runner <-> kind contract (`ncbench.runner.suite`, `ncbench.tasks.context`): each task gets one frozen
`TaskContext` of its own over the run's shared `TrajectoryStore`; a group's files and figures are built
from its members' outputs in memory (its own results.csv is never read back)."""
from __future__ import annotations

import dataclasses
import io
import json
from typing import ClassVar

import pandas as pd
import pytest

from ncbench.runner import suite
from ncbench.runner.suite import RunSettings, run_member, run_tasks
from ncbench.specs.task_spec import TaskSpec
from ncbench.tasks import Task, TaskContext, TaskOutput, TrajectoryStore


class Recorder(Task):
    """Records the context it is handed; one summary row."""

    kind: ClassVar[str] = "contract_recorder"
    seen: ClassVar[list] = []

    def run(self, ctx: TaskContext) -> TaskOutput:
        Recorder.seen.append(ctx)
        return TaskOutput([{"split": "summary", "metric": "nc1", "value": 1.0}])


def test_each_task_gets_a_frozen_context_of_its_own_over_the_shared_store(tmp_path):
    Recorder.seen.clear()
    store = TrajectoryStore(tmp_path / "_trajectories", tmp_path, progress=False)
    run = RunSettings("r", store, log=lambda m: None)
    specs = [TaskSpec(name=n, kind="contract_recorder", version=1, min_train_accuracy=m, device="cpu")
             for n, m in (("a", 0.9), ("b", None))]
    runs = [run_member(Recorder(s), tmp_path / s.name, run) for s in specs]
    assert [r.outcome for r in runs] == ["done", "done"]
    a, b = Recorder.seen
    assert a is not b and a.store is b.store is store           # shared on purpose: the training runs
    assert (a.out_dir, b.out_dir) == (tmp_path / "a", tmp_path / "b")
    assert (a.min_train_accuracy, b.min_train_accuracy) == (0.9, None)   # b is not handed a's minimum
    assert a.reads is not b.reads and a.reads == b.reads == []
    assert (a.cache_dir, a.root) == (tmp_path / "_trajectories", tmp_path)
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.out_dir = tmp_path / "elsewhere"


def ufm_group(**changes) -> TaskSpec:
    return TaskSpec(name="grp", kind="ufm", version=1, seeds=[0, 1],
                    options={"class_counts": [4, 3, 2], "dim": 5, "loss": "mse", "steps": 20, "log_every": 10},
                    **changes)


def run_group(tmp_path, monkeypatch):
    """Run the ufm seed group; returns (group folder, the TaskOutput its figure got, files read)."""
    opened, figured = [], []
    real_open, real_plot = suite.open_text, suite._plot
    monkeypatch.setattr(suite, "open_text", lambda path, root: opened.append(path) or real_open(path, root))
    monkeypatch.setattr(suite, "_plot", lambda task, out, d, log: figured.append(out) or real_plot(task, out, d, log))
    _, runs = run_tasks("t", [ufm_group()], tmp_path, progress=False, log=lambda m: None)
    assert runs[0].outcome == "done", runs[0].error
    return runs[0].dir, figured[-1], opened


def test_a_group_is_built_from_its_members_without_reading_back_its_own_results(tmp_path, monkeypatch):
    gdir, out, opened = run_group(tmp_path, monkeypatch)
    assert gdir / "results.csv" not in opened                        # written, never read back
    assert all(p.parent.parent.name == "_members" for p in opened)   # only what the members wrote
    written = pd.read_csv(gdir / "results.csv")
    for c in ("variant", "status", "status_reason"):
        written[c] = ["" if pd.isna(v) else v for v in written[c]]
    assert pd.DataFrame(out.rows).equals(written)      # the figure's rows: the file as a reader sees it
    metas = [json.loads((gdir / "_members" / f"seed={s}" / "config.json").read_text())["meta"] for s in (0, 1)]
    assert [m.to_dict() for m in out.members] == metas and out.meta == out.members[0]
    assert out.precision == "fp64"                    # the members' (a UFM solves in float64)


def test_a_group_of_finished_members_takes_their_meta_from_their_runs(tmp_path, monkeypatch):
    """Members skipped (done earlier) still hand the group their meta and tables (from config.json)."""
    gdir, first, _ = run_group(tmp_path, monkeypatch)
    text = (gdir / "results.csv").read_text()
    (gdir / "config.json").unlink()                    # the group is to be written again, its members not
    _, again, _ = run_group(tmp_path, monkeypatch)
    assert again.members == first.members and isinstance(again.meta, type(first.meta))   # typed, from config.json
    same = pd.read_csv(gdir / "results.csv").drop(columns="started_at")      # started_at: when it ran
    assert same.equals(pd.read_csv(io.StringIO(text)).drop(columns="started_at"))


def test_a_finished_task_whose_meta_does_not_read_back_is_measured_again(tmp_path):
    """A skipped task hands on typed facts (its kind's META from config.json); a "meta" block written by
    another version (a key dropped) does not pass as done: one line says why, the task runs again."""
    spec = TaskSpec(name="u", kind="ufm", version=1,
                    options={"class_counts": [4, 3, 2], "dim": 5, "loss": "mse", "steps": 20, "log_every": 10})
    task = suite.TASK_KINDS.get("ufm")(spec)
    lines = []
    run = RunSettings("r", TrajectoryStore(tmp_path / "_trajectories", tmp_path, progress=False), log=lines.append)
    first = run_member(task, tmp_path / "u", run)
    again = run_member(task, tmp_path / "u", run)
    assert (first.outcome, again.outcome) == ("done", "skipped") and again.meta == first.meta
    assert type(again.meta).__name__ == "UFMMeta" and again.meta.config.class_counts == [4, 3, 2]
    path = tmp_path / "u" / "config.json"
    cfg = json.loads(path.read_text())
    del cfg["meta"]["last_step"]
    path.write_text(json.dumps(cfg))
    lines.clear()
    third = run_member(task, tmp_path / "u", run)
    assert third.outcome == "done" and third.meta == first.meta
    [why] = [line for line in lines if "measuring again" in line]
    assert "'meta' has keys" in why and "last_step" in why and str(path) in why
