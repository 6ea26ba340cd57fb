"""The ranking task and the job launchers: a zoo fanned out inline, as local subprocesses and
through submitit's local executor gives the same merged measurements; τ values equal scipy's on
the task's own score table; a failed model is recorded, not fatal."""
from __future__ import annotations

import json

import pandas as pd
import pytest
import scipy.stats as st

from ncbench.runner.suite import run_tasks
from ncbench.tasks.base import TaskSpec

TARGET = {"name": "frozen_tiny", "kind": "frozen_transfer", "version": 1, "dataset": "digits", "model": "test_resnet",
          "options": {"classes": [0, 1, 2], "batch_size": 128, "max_train_per_class": 25, "max_test_per_class": 20,
                      "preprocess": {"input_size": [1, 12, 12], "crop_pct": 1.0, "mean": [0.3], "std": [0.37],
                                     "interpolation": "bilinear"},
                      "fewshot": {"n_way": 3, "shots": [1], "queries": 5, "episodes": 20, "seed": 0}}}
ZOO = [{"name": "resnet-e1", "model": "test_resnet",
        "train": {"dataset": "digits", "classes": [3, 4, 5, 6], "recipe": {"epochs": 1, "batch_size": 128, "eval_every": 1}}},
       {"name": "resnet-random", "model": "test_resnet", "pretrained": "random"},
       {"name": "byobnet-random", "model": "test_byobnet", "pretrained": "random"}]


@pytest.fixture
def tiny_target(tmp_path, monkeypatch):
    """A frozen_transfer spec file the ranking task can name (a path, like any spec)."""
    import yaml

    path = tmp_path / "frozen_tiny.yaml"
    path.write_text(yaml.safe_dump(TARGET))
    return str(path)


def ranking_spec(target: str, launcher: str = "inline", zoo=None, **opts) -> TaskSpec:
    return TaskSpec.from_dict({"name": "rank_tiny", "kind": "transfer_ranking", "version": 1, "dataset": "digits",
                               "model": "test_resnet", "device": "cpu",
                               "options": {"target": target, "zoo": zoo or ZOO, "launcher": launcher, **opts}})


def run(spec, out):
    run_dir, runs = run_tasks("t", [spec], out, progress=False, log=lambda m: None)
    assert runs[0].outcome == "done", runs[0].error
    return run_dir, runs[0]


def test_ranking_inline_taus_equal_scipy_and_jobs_are_task_folders(tmp_path, tiny_target, one_thread):
    run_dir, r = run(ranking_spec(tiny_target), tmp_path / "out")
    df = pd.read_csv(r.csv)
    summ = df[df.split == "summary"].set_index("metric").value
    scores = pd.read_csv(r.dir / "scores.csv")
    assert summ["models"] == 3
    for est in ("ncti", "logme", "knn_loo_acc", "nc1"):
        d = scores[scores.estimator == est]
        assert summ[f"kendall_tau_{est}"] == pytest.approx(st.kendalltau(d.score, d.probe_acc).statistic, nan_ok=True)
        assert summ[f"weighted_tau_{est}"] == pytest.approx(st.weightedtau(d.score, d.probe_acc).statistic, nan_ok=True)
    nc1 = scores[scores.estimator == "nc1"]
    assert (nc1.score == -nc1.value).all()                             # lower NC1 = predicted better
    models = pd.read_csv(r.dir / "models.csv")
    jobs = sorted((run_dir / "_jobs").glob("*/frozen_tiny/results.csv"))
    assert len(jobs) == 3
    probe = {m: pd.read_csv(j).query("split == 'summary' and metric == 'probe_acc'").value.item()
             for m, j in zip(models.sort_values("job").model, sorted(jobs, key=lambda p: p.parent.parent.name))}
    assert probe == dict(zip(models.model, models.probe_acc))
    trained = models[models.model == "resnet-e1"].weights.item()
    assert trained.endswith("backbone.pth")                           # trained here, measured as a checkpoint
    assert (r.dir / "ranking.png").is_file()
    cfg = json.loads((r.dir / "config.json").read_text())
    assert cfg["meta"]["failed"] == []


def test_local_and_submitit_launchers_merge_the_same_results(tmp_path, tiny_target, one_thread):
    pytest.importorskip("submitit")
    zoo = ZOO[1:]                                                      # two random inits: cheap
    out = {}
    for launcher, opts in (("inline", {}), ("local", {"max_parallel": 2}),
                           ("slurm", {"slurm": {"cluster": "local", "timeout_min": 10}})):
        _, r = run(ranking_spec(tiny_target, launcher, zoo, **opts), tmp_path / launcher)
        out[launcher] = pd.read_csv(r.dir / "models.csv").set_index("model")
    cols = ["probe_acc", "logme", "ncti_seli", "nc1", "knn_loo_acc"]
    pd.testing.assert_frame_equal(out["local"][cols], out["inline"][cols], rtol=1e-6)
    pd.testing.assert_frame_equal(out["slurm"][cols], out["inline"][cols], rtol=1e-6)
    assert list((tmp_path / "slurm").rglob("_submitit"))


def test_a_failed_model_is_recorded_and_the_rest_ranked(tmp_path, tiny_target, one_thread):
    zoo = [*ZOO[1:], {"name": "broken", "model": "test_resnet", "checkpoint": str(tmp_path / "missing.pth")}]
    _, r = run(ranking_spec(tiny_target, zoo=zoo), tmp_path / "out")
    cfg = json.loads((r.dir / "config.json").read_text())
    assert len(cfg["meta"]["failed"]) == 1 and cfg["meta"]["failed"][0].startswith("broken:")
    assert "does not exist" in cfg["meta"]["failed"][0]
    summ = pd.read_csv(r.csv).query("split == 'summary'").set_index("metric").value
    assert summ["models"] == 2 and summ["failed_models"] == 1


def test_ranking_spec_errors_are_clear(tiny_target):
    from ncbench.tasks import TASK_KINDS

    kind = TASK_KINDS.get("transfer_ranking")
    with pytest.raises(ValueError, match="at least two models"):
        kind(ranking_spec(tiny_target, zoo=ZOO[:1]))
    with pytest.raises(ValueError, match="launcher must be one of"):
        kind(ranking_spec(tiny_target, "cluster"))
    with pytest.raises(ValueError, match="unknown keys"):
        kind(ranking_spec(tiny_target, zoo=[*ZOO[1:], {"model": "test_resnet", "weights": "x"}]))
    with pytest.raises(ValueError, match="frozen_transfer task"):
        kind(ranking_spec("train_collapse_mnist5k"))


def test_missing_zoo_weights_fail_fast_with_one_fetch_command(tmp_path, monkeypatch, tiny_target):
    from ncbench.models.pretrained import WeightsNotCachedError
    from ncbench.tasks import TASK_KINDS

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    zoo = [{"model": "resnet18", "pretrained": "a1_in1k"}, {"model": "resnet50", "pretrained": "a1_in1k"}]
    with pytest.raises(WeightsNotCachedError) as e:
        TASK_KINDS.get("transfer_ranking")(ranking_spec(tiny_target, zoo=zoo))
    assert "[timm.create_model(m, pretrained=True) for m in ('resnet18.a1_in1k', 'resnet50.a1_in1k',)]" in str(e.value)


def test_the_figure_of_a_seed_group_shows_every_zoo(tmp_path):
    """A seed group's stacked scores (a `seed` column) and its summary rows, one per seed and metric,
    plot one scatter colour per seed under the mean τ (the first group run failed in the title's
    format: one τ per seed is a Series, not a number)."""
    from ncbench.plots.transfer_ranking import _title, plot
    from ncbench.tasks.base import TaskOutput
    from ncbench.tasks.transfer_ranking import TransferRankingMeta

    taus = {0: 0.5, 1: 0.2, 2: 0.8}
    rows = [{"split": "summary", "metric": f"{k}_tau_{est}", "value": t + (k == "weighted") * 0.1,
             "seed": s, "variant": ""}
            for s, t in taus.items() for est in ("ncti", "nc1") for k in ("kendall", "weighted")]
    scores = pd.DataFrame([{"variant": "", "seed": s, "model": f"m{i}", "estimator": est,
                            "value": float(i + s), "score": float(i), "probe_acc": 0.8 + 0.01 * i}
                           for s in taus for est in ("ncti", "nc1") for i in range(4)])
    meta = TransferRankingMeta("t", "probe_acc", [], [f"m{i}" for i in range(4)], [])
    out = TaskOutput(rows, {"scores": scores}, meta)
    spec = TaskSpec.from_dict({"name": "ranking_group", "kind": "transfer_ranking", "version": 1,
                               "dataset": "mnist5k", "model": "test_resnet"})
    (path,) = plot(out, spec, tmp_path)
    assert path.is_file() and path.stat().st_size > 10_000
    summ = pd.DataFrame(rows)
    assert _title(summ, "ncti", 3) == "ncti: τ = 0.50, τ_w = 0.60 (mean; τ per seed 0.50, 0.20, 0.80)"
    one = summ[summ.seed == 1]
    assert _title(one, "nc1", 1) == "nc1: τ = 0.20, τ_w = 0.30"


def test_a_zoo_entry_without_weights_is_refused(tiny_target):
    from ncbench.tasks import TASK_KINDS

    zoo = [*ZOO[1:], {"name": "bare", "model": "test_resnet"}]
    with pytest.raises(ValueError, match=r"zoo entry 2 \(bare\) has no weights.*pretrained: random"):
        TASK_KINDS.get("transfer_ranking")(ranking_spec(tiny_target, zoo=zoo))
