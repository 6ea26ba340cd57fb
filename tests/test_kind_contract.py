"""The task-kind contract tester (after torchmetrics' shared MetricTester): every registered kind,
run through the runner on a tiny spec, must

- write rows that follow the results schema (SPEC §9, `ncbench.results.schema`),
- name only metrics the metric vocabulary knows,
- round-trip its options (spec -> dict -> spec, and config.json's spec -> the same config hash),
- give the same values when run again with the same seed (in a fresh folder: trained again),
- produce its figures, or say it has none (`Task.HAS_PLOT = False`),
- return the typed `TaskOutput`: its facts are the kind's frozen `Task.META` dataclass (no field a free
  dict), its status a `RunStatus`, its precision the rows'; config.json's "meta" reads back as the same facts,
- keep no state of its own while running (its attributes are those it was built with).

Each kind runs twice per session (module-scoped, on demand). A deliberately broken kind shows that
the checks catch what they claim to. A new kind adds its tiny spec to `TINY`.
"""
from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd
import pytest

from ncbench.results.schema import COLUMNS
from ncbench.runner.suite import RunSettings, TaskRun, run_member
from ncbench.specs.task_spec import TaskSpec
from ncbench.tasks import TASK_KINDS, Task, TaskContext, TaskOutput, TrajectoryStore
from ncbench.tasks.base import NoMeta, TaskMeta
from ncbench.training.run_status import RunStatus

RECIPE = {"epochs": 1, "batch_size": 128, "lr": 0.05, "eval_every": 1}
TRAINED = {"dataset": "digits", "model": "test_resnet", "seed": 0, "device": "cpu", "recipe": RECIPE}
FROZEN_TARGET = {"name": "frozen_tiny", "kind": "frozen_transfer", "version": 1, "dataset": "digits",
                 "model": "test_resnet", "device": "cpu",
                 "options": {"classes": [0, 1, 2], "batch_size": 128, "max_train_per_class": 25,
                             "max_test_per_class": 20,
                             "preprocess": {"input_size": [1, 12, 12], "crop_pct": 1.0, "mean": [0.3], "std": [0.37],
                                            "interpolation": "bilinear"},
                             "fewshot": {"n_way": 3, "shots": [1], "queries": 5, "episodes": 20, "seed": 0}}}


def tiny(kind: str, tmp: Path) -> TaskSpec:
    """The tiny spec of `kind` (a few seconds on a CPU); `tmp` holds a target spec file if it needs one."""
    specs = {
        "train_collapse": {**TRAINED},
        "test_collapse": {**TRAINED, "options": {"baselines": False}},
        "cdnv_bound": {**TRAINED, "options": {"baselines": False}},
        "ncc_depth": {**TRAINED, "options": {"baselines": False, "batch_size": 256}},
        "minority_collapse": {**TRAINED, "options": {"baselines": False, "n_majority": 5, "n": 40, "ratio": 4,
                                                     "classifier": "learnable"}},
        "fewshot_transfer": {**TRAINED, "options": {"baselines": False, "source_set": [0, 1, 2, 3, 4], "source_classes": 5,
                                                    "target_split": ["train", "test"], "shots": [1],
                                                    "queries": 5, "episodes": 20}},
        "frozen_transfer": {**FROZEN_TARGET, "pretrained": "random"},
        "transfer_ranking": {"dataset": "digits", "model": "test_resnet", "device": "cpu",
                             "options": {"target": str(_target_file(tmp)), "launcher": "inline",
                                         "zoo": [{"name": "resnet-random", "model": "test_resnet", "pretrained": "random"},
                                                 {"name": "byobnet-random", "model": "test_byobnet",
                                                  "pretrained": "random"}]}},
        "ufm": {"options": {"class_counts": [4, 3, 2], "dim": 5, "loss": "mse", "steps": 40, "log_every": 20}},
        "layer_peeled": {"options": {"K": 6, "K_A": 2, "ratios": {"min": 1.0, "max": 1000.0, "num": 5},
                                     "restarts": 1}},
    }
    if kind not in specs:
        pytest.fail(f"kind '{kind}' has no tiny spec in tests/test_kind_contract.py: add one to `tiny`")
    return TaskSpec.from_dict({**specs[kind], "name": f"contract_{kind}", "kind": kind, "version": 1})


def _target_file(tmp: Path) -> Path:
    path = tmp / "frozen_tiny.yaml"
    path.write_text(json.dumps(FROZEN_TARGET))      # JSON is YAML
    return path


# -- the tester -----------------------------------------------------------------------------------
def known_metric(name: str) -> bool:
    """Is `name` a metric the registry (`ncbench.core.metrics`) declares, directly or composed?"""
    from ncbench.core.metrics import find

    return find(name) is not None


@dataclass(frozen=True)
class Measured:
    """One run of a kind by the runner: its TaskRun, its results as written, its config.json, and the
    TaskOutput the runner got (as its figures get it: rows with their run context)."""

    run: TaskRun
    rows: pd.DataFrame
    config: dict
    output: TaskOutput


def measure(task: Task, out: Path) -> Measured:
    """Run `task` as the runner runs one task (its own folder, a fresh TaskContext)."""
    from ncbench.runner import suite

    store = TrajectoryStore(out / "_trajectories", out, progress=False)
    state = dict(vars(task))
    seen, real_plot = [], suite._plot
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(suite, "_plot", lambda t, o, d, log: seen.append(o) or real_plot(t, o, d, log))
        run = run_member(task, out / task.spec.name, RunSettings("contract", store, log=lambda m: None))
    assert run.outcome == "done", run.error
    assert vars(task).keys() == state.keys() and all(vars(task)[k] is v for k, v in state.items()), (
        f"{task.kind} changed its own attributes while running (state passed between steps): "
        f"{sorted(set(vars(task)) ^ set(state))}")
    rows = pd.read_csv(run.csv, dtype=str, keep_default_na=False)
    return Measured(run, rows, json.loads((run.dir / "config.json").read_text()), seen[-1])


def schema_problems(rows: pd.DataFrame) -> list[str]:
    """What in `rows` (results.csv read as text) breaks SPEC §9: columns, empty keys, values, names."""
    problems = []
    if tuple(rows.columns) != COLUMNS:
        return [f"columns {list(rows.columns)} are not {list(COLUMNS)}"]
    if rows.empty:
        problems.append("no rows")
    for col in ("run_id", "task", "task_version", "model", "dataset", "split", "metric", "seed", "status",
                "config_hash"):
        if (rows[col] == "").any():
            problems.append(f"empty {col} in {int((rows[col] == '').sum())} row(s)")
    bad_status = set(rows.status) - {"ok", "diverged", "failed"}
    if bad_status:
        problems.append(f"status {sorted(bad_status)}")
    for value in rows.value:
        try:
            float(value or "nan")
        except ValueError:
            problems.append(f"value {value!r} is not a number")
    for col in ("epoch", "seed", "n_samples"):
        for v in rows[col]:
            if v and not v.lstrip("-").isdigit():
                problems.append(f"{col} {v!r} is not an integer")
    if "summary" not in set(rows.split):
        problems.append("no summary row (the kind's headline numbers)")
    for m in set(rows.metric):
        if any(c in m for c in "/=["):
            problems.append(f"metric {m!r} carries a sweep point (use the variant column)")
    return problems


def unknown_metrics(rows: pd.DataFrame) -> list[str]:
    return sorted(m for m in set(rows.metric) if not known_metric(m))


def plot_problems(task: Task, measured: Measured) -> list[str]:
    plots = measured.config.get("plots", [])
    if not task.HAS_PLOT:
        return [f"says it has no figures but wrote {plots}"] if plots else []
    if not plots:
        return ["has figures (HAS_PLOT) but produced none"]
    return [f"figure {p} is missing" for p in plots if not (measured.run.dir / p).is_file()]


def free_dicts(meta: type[TaskMeta], where: str = "") -> list[str]:
    """Fields of `meta` (nested facts included) typed as a dict whose values are anything: a free dict."""
    found = []
    for name, hint in typing.get_type_hints(meta).items():
        item = (typing.get_args(hint) or (None,))[0] if typing.get_origin(hint) is list else hint
        if isinstance(item, type) and issubclass(item, TaskMeta):
            found += free_dicts(item, f"{where}{name}.")
        elif hint is dict or (typing.get_origin(hint) is dict and Any in typing.get_args(hint)):
            found.append(where + name)
    return found


def output_problems(task: Task, m: Measured) -> list[str]:
    """What in the kind's output breaks the typed contract (issue 24, item 3)."""
    meta_cls, out = type(task).META, m.output
    problems = []
    if not (issubclass(meta_cls, TaskMeta) and meta_cls.__dataclass_params__.frozen):
        problems.append(f"META {meta_cls.__name__} is not a frozen TaskMeta dataclass")
    problems += [f"META field {f} is a free dict" for f in free_dicts(meta_cls)]
    if type(out.meta) is not meta_cls:
        problems.append(f"returned meta {type(out.meta).__name__}, declares META {meta_cls.__name__}")
    if not isinstance(out.status, RunStatus):
        problems.append(f"status {out.status!r} is not a RunStatus")
    if set(m.rows.precision) != {out.precision}:
        problems.append(f"precision {out.precision!r}, rows say {sorted(set(m.rows.precision))}")
    if m.config["meta"] != json.loads(json.dumps(out.meta.to_dict())):
        problems.append("config.json's meta is not the output's facts")
    try:
        same = meta_cls.from_dict(m.config["meta"]) == out.meta == m.run.meta
    except ValueError:
        same = False
    if not same:
        problems.append("config.json's meta does not read back as the same facts")
    return problems


def values(rows: pd.DataFrame) -> pd.DataFrame:
    """The measured values keyed by what they are (wall-clock metrics aside: never compared)."""
    keys = ["split", "epoch", "layer", "variant", "metric"]
    kept = rows[~rows.metric.str.endswith("_seconds")]
    return kept[[*keys, "value"]].reset_index(drop=True)




# -- every registered kind --------------------------------------------------------------------------
KINDS = TASK_KINDS.names()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """{kind: (first run, rerun)}, each kind measured twice on first use, in fresh folders."""
    from ncbench.provenance.threads import torch_threads

    cache: dict[str, tuple[Measured, Measured]] = {}

    def get(kind: str) -> tuple[Measured, Measured]:
        if kind not in cache:
            tmp = tmp_path_factory.mktemp(kind)
            spec = tiny(kind, tmp)
            with torch_threads(1):
                cache[kind] = tuple(measure(TASK_KINDS.get(kind)(spec), tmp / name) for name in ("a", "b"))
        return cache[kind]

    return get


def test_the_tester_covers_every_registered_kind(tmp_path):
    assert len(KINDS) >= 10
    for kind in KINDS:
        assert tiny(kind, tmp_path).kind == kind


@pytest.mark.parametrize("kind", KINDS)
def test_rows_follow_the_schema(kind, runs):
    first, _ = runs(kind)
    assert schema_problems(first.rows) == []
    assert set(first.rows.task) == {f"contract_{kind}"} and set(first.rows.run_id) == {"contract"}


@pytest.mark.parametrize("kind", KINDS)
def test_metric_names_are_in_the_vocabulary(kind, runs):
    first, _ = runs(kind)
    assert unknown_metrics(first.rows) == []


@pytest.mark.parametrize("kind", KINDS)
def test_options_round_trip(kind, runs, tmp_path):
    spec = tiny(kind, tmp_path)
    again = TaskSpec.from_dict(spec.to_dict())
    assert again == spec and again.config_hash() == spec.config_hash()
    cls = TASK_KINDS.get(kind)
    assert cls(again).options == cls(spec).options
    first, _ = runs(kind)
    recorded = TaskSpec.from_dict(first.config["spec"])
    assert recorded.config_hash() == first.config["config_hash"] == first.rows.config_hash.iloc[0]
    typed = cls(recorded).typed                     # the recorded options give the same checked options
    assert typed == cls(first.run.spec).typed
    assert type(typed).from_dict(typed.to_dict(), "round trip") == typed     # dataclass -> dict -> dataclass


@pytest.mark.parametrize("kind", KINDS)
def test_a_rerun_with_the_same_seed_gives_the_same_values(kind, runs):
    first, second = runs(kind)
    assert second.run.dir != first.run.dir
    pd.testing.assert_frame_equal(values(first.rows), values(second.rows))


@pytest.mark.parametrize("kind", KINDS)
def test_the_plot_is_produced_or_the_kind_says_it_has_none(kind, runs):
    first, _ = runs(kind)
    assert plot_problems(TASK_KINDS.get(kind)(first.run.spec), first) == []


@pytest.mark.parametrize("kind", KINDS)
def test_the_output_is_typed_and_its_meta_round_trips(kind, runs):
    first, second = runs(kind)
    assert output_problems(TASK_KINDS.get(kind)(first.run.spec), first) == []
    assert dataclasses.fields(first.output.meta) == dataclasses.fields(second.output.meta)


# -- the tester catches a kind that breaks the contract -------------------------------------------
@dataclass(frozen=True)
class LooseMeta(TaskMeta):
    anything: dict                  # what the issue calls a nested dict with free keys
    also: dict[str, Any]

class BrokenKind(Task):
    """Rows without a split, a sweep point in a metric name, a metric nobody declared, a run that
    differs each time; claims figures it does not draw."""

    kind: ClassVar[str] = "contract_broken"
    META: ClassVar[type[TaskMeta]] = LooseMeta        # declared, but run() returns none of it
    calls: ClassVar[list] = []

    def run(self, ctx: TaskContext) -> TaskOutput:
        BrokenKind.calls.append(ctx.out_dir)
        n = len(BrokenKind.calls)
        return TaskOutput([{"split": None, "metric": "R10/nc1", "value": 1.0},
                           {"split": "train", "metric": "no_such_metric_xyz", "value": float(n)}])


def test_the_tester_catches_a_kind_that_breaks_the_contract(tmp_path):
    spec = TaskSpec(name="broken", kind="contract_broken", version=1, device="cpu")
    first, second = (measure(BrokenKind(spec), tmp_path / name) for name in ("a", "b"))
    problems = schema_problems(first.rows)
    assert any("empty split" in p for p in problems), problems
    assert any("'R10/nc1' carries a sweep point" in p for p in problems), problems
    assert any("no summary row" in p for p in problems), problems
    assert unknown_metrics(first.rows) == ["no_such_metric_xyz"]
    assert plot_problems(BrokenKind(spec), first) == ["has figures (HAS_PLOT) but produced none"]
    with pytest.raises(AssertionError):
        pd.testing.assert_frame_equal(values(first.rows), values(second.rows))
    assert output_problems(BrokenKind(spec), first) == [
        "META field anything is a free dict", "META field also is a free dict",
        "returned meta NoMeta, declares META LooseMeta", "config.json's meta does not read back as the same facts"]
    assert first.output.meta == NoMeta()
    renamed = first.rows.rename(columns={"value": "score"})
    assert schema_problems(renamed) == [f"columns {list(renamed.columns)} are not {list(COLUMNS)}"]
