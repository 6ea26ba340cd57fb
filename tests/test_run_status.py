"""Run status (SPEC §9, issue 15 item 2): a run whose loss became non-finite is `diverged`, one whose
train accuracy stayed near chance or below the spec's minimum is `failed`; results carry the status."""
from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from ncbench.runner.suite import run_tasks
from ncbench.tasks import TaskSpec
from ncbench.training.run_status import RunStatus, status_of, worst


def test_status_rules_one_by_one():
    assert status_of([(1, 2.3), (2, 0.1)], 1.0, 10) == RunStatus()
    s = status_of([(1, 2.3), (2, math.nan)], 1.0, 10)
    assert s.status == "diverged" and "epoch 2" in s.reason
    assert status_of([(1, math.inf)], 1.0, 10).status == "diverged"
    near = status_of([(1, 2.3)], 0.1955, 10)          # mobilenetv3's etf_dr run on the old board
    assert near.status == "failed" and "chance" in near.reason
    assert status_of([(1, 2.3)], 0.33, 10).status == "ok"             # 0.1 + 0.25 * 0.9 = 0.325
    low = status_of([(1, 0.9)], 0.71, 10, min_train_accuracy=0.95)
    assert low.status == "failed" and "0.95" in low.reason
    assert status_of([(1, 0.9)], math.nan, 10).status == "failed"


def test_the_specs_minimum_replaces_the_near_chance_level_both_ways():
    """A spec's `min_train_accuracy` is the run's floor in place of the near-chance level: 0 keeps a
    deliberately weak run (cdnv_representations' one-epoch backbones) ok; a level above it flags more;
    a non-finite accuracy or loss is never ok."""
    near = 0.1 + 0.25 * 0.9
    assert status_of([(1, 2.3)], near - 0.1, 10).status == "failed"                      # no minimum: near chance
    assert status_of([(1, 2.3)], near - 0.1, 10, min_train_accuracy=0.0) == RunStatus()  # the spec keeps it
    assert status_of([(1, 2.3)], 0.2, 10, min_train_accuracy=0.15) == RunStatus()
    assert status_of([(1, 2.3)], 0.2, 10, min_train_accuracy=0.3).status == "failed"
    assert status_of([(1, 2.3)], math.nan, 10, min_train_accuracy=0.0).status == "failed"
    assert status_of([(1, math.nan)], 0.9, 10, min_train_accuracy=0.0).status == "diverged"


def test_worst_keeps_the_most_severe_and_every_reason():
    a, b, c = RunStatus(), RunStatus("failed", "x"), RunStatus("diverged", "y")
    assert worst([a, b, c]) == RunStatus("diverged", "x; y")
    assert worst([a, a]) == RunStatus()
    assert worst([]) == RunStatus()


def _spec(name, lr, **kw):
    recipe = {"epochs": 2, "batch_size": 256, "lr": lr, "schedule": "constant", "eval_every": 1}
    return TaskSpec(name=name, kind="train_collapse", version=1, dataset="digits", model="test_resnet",
                    seed=0, recipe=recipe, **kw)


def test_a_run_forced_to_diverge_is_flagged_in_results_config_and_summary(tmp_path, one_thread):
    """lr = 1e12 makes SGD's first steps overflow: the loss is non-finite, the run is `diverged`."""
    logs = []
    _, runs = run_tasks("s", [_spec("boom", 1e12), _spec("fine", 0.05, min_train_accuracy=0.999)],
                        tmp_path, progress=False, log=logs.append)
    boom, fine = runs
    assert boom.outcome == "done" and boom.result_status == "diverged"
    df = pd.read_csv(boom.csv, keep_default_na=False)
    assert set(df.status) == {"diverged"} and df.status_reason.str.contains("non-finite|nan|inf").all()
    cfg = json.loads((boom.dir / "config.json").read_text())
    assert cfg["status"] == "diverged" and cfg["training"][0]["status"] == "diverged"
    assert any("flagged diverged" in m for m in logs)
    # two epochs of digits at lr 0.05 do not reach 99.9% train accuracy: failed against that minimum
    assert fine.result_status == "failed" and "0.999" in fine.result_reason
    # a rerun skips both and still reports their status
    _, again = run_tasks("s", [_spec("boom", 1e12), _spec("fine", 0.05, min_train_accuracy=0.999)],
                         tmp_path, progress=False, log=lambda m: None)
    assert [r.outcome for r in again] == ["skipped", "skipped"]
    assert [r.result_status for r in again] == ["diverged", "failed"]


@pytest.mark.parametrize("acc", [0.1, 0.2])
def test_near_chance_threshold_scales_with_the_number_of_classes(acc):
    assert status_of([], acc, 10).status == "failed"
    assert status_of([], acc, 2).status == "failed"      # chance 0.5: 0.625 needed
    assert status_of([], 0.7, 2).status == "ok"
