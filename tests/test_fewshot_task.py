"""`fewshot_transfer` task kind (SPEC §6): the source-class sweep as a YAML group, the task end to end on
a tiny budget (checked against an independent per-episode loop), and the slow claim on MNIST-5k."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from ncbench.core.board import metric_names
from ncbench.data import load_dataset
from ncbench.data.imbalance import class_subset
from ncbench.fewshot import sample_episodes
from ncbench.metrics.cdnv_bounds import class_moments, fewshot_error_bound
from ncbench.results.variants import parse_variant
from ncbench.runner.suite import run_tasks
from ncbench.specs import load_task, members
from ncbench.tasks.base import TaskSpec
from ncbench.tasks.fewshot_transfer import FewShotTransfer, _per_shot
from ncbench.training.feature_cache import extract_features
from ncbench.training.trajectory import Trajectory

TINY_RECIPE = {"epochs": 1, "batch_size": 64, "lr": 0.05, "schedule": "constant", "eval_every": 1}
TINY = {"source_set": [0, 1, 2, 3, 4], "target_split": ["train", "test"],
        "shots": [1, 3], "queries": 5, "episodes": 40, "probe": True, "probe_steps": 50}
GAIN = {"name": "sweep_gain_3shot", "of": "ncc_acc_3shot", "difference": {"source_classes": [5, 2]}}
RUN_ID = "tiny"


def tiny_spec(name: str = "fs_tiny", sweep=None, aggregate=(GAIN,), **options) -> TaskSpec:
    """A tiny few-shot group over S = 2, 5 source classes (`sweep={}`: one plain run)."""
    sweep = {"source_classes": [2, 5]} if sweep is None else sweep
    return TaskSpec(name=name, kind="fewshot_transfer", version=1, dataset="digits", model="test_resnet",
                    recipe=TINY_RECIPE, options={**TINY, **options}, sweep=sweep,
                    aggregate=list(aggregate) if sweep else [])


def trajectories(spec: TaskSpec) -> list:
    return [c for m in members(spec) for c in FewShotTransfer(m).trajectories()]


def plain(**options) -> FewShotTransfer:
    return FewShotTransfer(tiny_spec(sweep={}, **options))


# -- bookkeeping ----------------------------------------------------------------------------------
def test_sweep_plans_one_training_per_source_count():
    cfgs = trajectories(tiny_spec(source_set=[3, 1, 4, 0, 2], sweep={"source_classes": [2, 3, 5]}))
    assert [c.classes for c in cfgs] == [(3, 1), (3, 1, 4), (3, 1, 4, 0, 2)]   # first S of the set
    assert len({c.key() for c in cfgs}) == 3
    assert {(c.dataset, c.model, c.train_split, c.test_split, c.recipe.epochs) for c in cfgs} == {
        ("digits", "test_resnet", "train", "test", 1)}
    fit = trajectories(tiny_spec(source_set=None, sweep={"source_classes": [2, 4]}, source_split="train/fit",
                                 source_test_split="train/holdout"))
    assert [(c.classes, c.train_split, c.test_split) for c in fit] == [
        ((0, 1), "train/fit", "train/holdout"), ((0, 1, 2, 3), "train/fit", "train/holdout")]
    assert [c.classes for c in plain().trajectories()] == [(0, 1, 2, 3, 4)]
    assert [c.classes for c in plain(source_set=None).trajectories()] == [None]
    assert plain(backbone="pretrained").trajectories() == []


@pytest.mark.parametrize("options, match", [
    ({"sampler": "torchmeta"}, "options.sampler"),
    ({"backbone": "imagenet"}, "options.backbone"),
    ({"source_classes": 6}, "source_classes is 6 but source_set has 5"),
    ({"source_classes": 1}, "integer >= 2"),
    ({"source_classes": [2, 3]}, r"became a sweep: declare `sweep: \{source_classes: \[2, 3\]\}`"),
    ({"shots": []}, "non-empty"),
    ({"n_way": 1}, "n_way"),
    ({"backbone": "pretrained", "source_classes": 3}, "drop it"),
    ({"target_split": 3}, "target_split"),
    ({"wayz": 5}, "unknown options"),
])
def test_bad_options_are_rejected(options, match):
    with pytest.raises(ValueError, match=match):
        plain(**options)


@pytest.mark.parametrize("aggregate, match", [
    ([{"name": "g", "of": "ncc_acc_3shot", "difference": {"source_classes": [5, 3]}}], r"\[3\] not among"),
    ([{"name": "g", "of": "ncc_acc_3shot", "spearman": "shots"}], "'shots', which is not swept"),
    ([{"name": "g/x", "of": "ncc_acc_3shot", "spearman": "source_classes"}], "plain metric name"),
    ([{"name": "g", "of": "ncc_acc_3shot"}], "exactly one of"),
])
def test_bad_aggregates_are_rejected_before_any_work(aggregate, match, tmp_path):
    with pytest.raises(ValueError, match=match):
        run_tasks("t", [tiny_spec(aggregate=aggregate)], tmp_path, progress=False)
    assert not list(tmp_path.iterdir())


def test_targets_are_the_classes_outside_the_source_set_and_never_overlap():
    parts, targets = plain().target_data()
    assert targets == [5, 6, 7, 8, 9]
    assert [p.split for p in parts] == ["train", "test"]
    assert all(set(p.targets.unique().tolist()) == {5, 6, 7, 8, 9} for p in parts)   # original labels
    with pytest.raises(ValueError, match=r"target classes \['4'\] are source classes"):
        plain(target_classes=[4, 5, 6, 7, 8]).target_data()
    with pytest.raises(ValueError, match="need at least 5 target classes"):
        plain(source_set=[0, 1, 2, 3, 4, 5]).target_data()


def test_per_shot_keeps_its_shot_and_the_shared_values():
    values = {"ncc_acc_1shot": 1.0, "ncc_acc_15shot": 2.0, "ncc_acc_1shot_ci95": 3.0, "target_cdnv": 4.0}
    assert _per_shot(values, 1) == {"ncc_acc": 1.0, "ncc_acc_ci95": 3.0, "target_cdnv": 4.0}
    assert _per_shot(values, 15) == {"ncc_acc": 2.0, "target_cdnv": 4.0}


def test_summary_is_the_backbone_headline():
    task = plain(source_classes=3)
    point = (3, 13, {"ncc_acc_1shot": 0.4, "ncc_acc_1shot_ci95": 0.01, "ncc_acc_3shot": 0.45,
                     "ncc_acc_3shot_ci95": 0.02, "episode_cdnv_3shot": 9.0, "source_nc1": 0.3})
    rows = pd.DataFrame(task._summary(point))
    assert set(rows.split) == {"summary"} and set(rows.epoch) == {13} and rows.layer.isna().all()
    s = rows.set_index("metric").value
    assert not rows.metric.duplicated().any()                 # one value per headline (leaderboard)
    assert (s["ncc_acc_1shot"], s["ncc_acc_3shot"], s["source_nc1"]) == (0.4, 0.45, 0.3)
    assert (s["source_classes"], s["chance"]) == (3.0, 0.2)
    assert "episode_cdnv_3shot" not in s


@pytest.mark.parametrize("name, sweep, dataset", [
    ("fewshot_mnist5k", [2, 3, 5], "mnist5k"),
    ("fewshot_cifar_fs", [8, 16, 32, 64], "cifar-fs"),
    ("fewshot_mini_imagenet", [8, 16, 32, 64], "mini-imagenet"),
])
def test_shipped_specs_plan_the_sweep_and_name_reported_metrics(name, sweep, dataset):
    spec = load_task(name)
    task = FewShotTransfer(members(spec)[0])
    cfgs = trajectories(spec)
    assert spec.dataset == dataset and [len(c.classes) for c in cfgs] == sweep
    assert spec.sweep == {"source_classes": sweep} and {a["name"] for a in spec.aggregate} == {
        f"sweep_{what}_{k}shot" for what in ("gain", "spearman") for k in (1, 5)}
    o = task.options
    assert (o["n_way"], task.shots, o["queries"], o["episodes"]) == (5, [1, 5], 15, 600)
    if dataset != "mnist5k":
        assert {(c.train_split, c.test_split) for c in cfgs} == {("train/fit", "train/holdout")}
        assert o["target_split"] == "test"
    headline = {f"{m}_{k}shot" for m in ("ncc_acc", "probe_acc", "sweep_gain") for k in task.shots}
    headline |= {"target_cdnv", "source_nc1", "source_cdnv"}
    lb = spec.leaderboard
    assert lb["primary"] == {"metric": "ncc_acc_5shot", "variant": f"source_classes={max(sweep)}"}
    assert set(metric_names(lb["metrics"])) <= headline


# -- end to end on a tiny budget -------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("fewshot")
    run_dir, runs = run_tasks("t", [tiny_spec()], root, progress=False, run_id=RUN_ID)
    assert [r.outcome for r in runs] == ["done"], runs[0].error
    return root, run_dir / "fs_tiny"


def _target_features(root, S):
    """Features of the digits 5-9 (train then test split) from the trained S-class backbone, and labels."""
    task = plain()
    model = Trajectory(task.trajectory_config(S), root / RUN_ID / "_trajectories").load_final_model()
    parts = [class_subset(load_dataset("digits", sp), [5, 6, 7, 8, 9], relabel=False) for sp in ("train", "test")]
    feats = torch.cat([extract_features(model, p) for p in parts])
    return feats, torch.cat([p.targets for p in parts])


def _loop_ncc(features, labels, n_way, k, q, episodes, seed):
    """Per-episode NCC accuracy, one episode at a time (prototype = support mean, torch.cdist)."""
    ep = sample_episodes(labels, n_way, k, q, episodes, seed)
    acc = []
    for e in range(episodes):
        proto = features[ep.support[e]].mean(dim=1)                         # (n, d)
        pred = torch.cdist(features[ep.query[e]].reshape(-1, features.shape[1]), proto).argmin(1)
        acc.append(float((pred == torch.arange(n_way).repeat_interleave(q)).double().mean()))
    return np.array(acc)


def test_tiny_run_rows_against_an_independent_episode_loop(tiny_run):
    root, task_dir = tiny_run
    df = pd.read_csv(task_dir / "results.csv", keep_default_na=False, na_values=[""])
    assert df.value.dtype == float and df.layer.isna().all()
    assert not df.metric.str.contains("[/=\\[]").any()        # fixed names: the backbone is in `variant`
    points = [parse_variant(v) for v in df.variant.fillna("")]
    d = df.assign(source_classes=[p.get("source_classes", "") for p in points], name=df.metric,
                  baseline=[p.get("baseline", "") for p in points])
    base, d = d[d.baseline != ""], d[d.baseline == ""]
    for S in (2, 5):
        rows = d[d.source_classes == str(S)]
        got = {(sp, n) for sp, n in zip(rows.split, rows.name)}
        for k in (1, 3):
            assert {("target", f"{m}_{k}shot{ci}") for m in ("ncc_acc", "probe_acc") for ci in ("", "_ci95")} <= got
            assert {("target", f"{m}_{k}shot") for m in ("episode_cdnv", "spearman_cdnv_error")} <= got
        assert {("target", "cdnv"), ("target", "nc1"), ("source_train", "nc1"), ("source_train", "cdnv"),
                ("source_train", "accuracy"), ("source_test", "accuracy")} <= got
        assert set(rows.epoch) == {1}
        n = rows[(rows.split == "source_train")].n_samples.iloc[0]
        assert n == len(class_subset(load_dataset("digits", "train"), list(range(S))))
    episodes = pd.read_csv(task_dir / "episodes.csv")
    assert len(episodes) == 2 * 2 * 40 and set(episodes.source_classes) == {2, 5}
    assert set(episodes.variant) == {"source_classes=2", "source_classes=5"}
    # baselines on the same episodes: raw pixels against the independent loop on the flattened inputs
    parts = [class_subset(load_dataset("digits", sp), [5, 6, 7, 8, 9], relabel=False) for sp in ("train", "test")]
    pixels = torch.cat([p.batch(torch.arange(len(p)))[0].flatten(1) for p in parts])   # the model's inputs
    labels_all = torch.cat([p.targets for p in parts])
    raw = base[(base.baseline == "raw_pixels") & (base.split == "summary") & (base.source_classes == "5")]
    raw = raw.set_index("name").value
    assert raw["ncc_acc_3shot"] == pytest.approx(_loop_ncc(pixels, labels_all, 5, 3, 5, 40, seed=0).mean(), abs=1e-9)
    assert set(base.baseline) == {"raw_pixels", "random_init"} and base.epoch.isna().all()
    summ = d[d.split == "summary"]
    assert not summ[["variant", "metric"]].duplicated().any()
    summary = {(S, m): v for S, m, v in zip(summ.source_classes, summ.metric, summ.value)}
    for S in (2, 5):
        feats, labels = _target_features(root, S)
        tgt = d[(d.source_classes == str(S)) & (d.split == "target")].set_index("name").value
        for k in (1, 3):
            ep = episodes[(episodes.source_classes == S) & (episodes.k_shot == k)].sort_values("episode")
            loop = _loop_ncc(feats, labels, 5, k, 5, 40, seed=0)
            np.testing.assert_allclose(ep.ncc_acc.to_numpy(), loop, atol=1e-12)
            assert tgt[f"ncc_acc_{k}shot"] == pytest.approx(loop.mean())
            assert tgt[f"ncc_acc_{k}shot_ci95"] == pytest.approx(1.96 * loop.std(ddof=1) / math.sqrt(40))
            assert summary[(str(S), f"ncc_acc_{k}shot")] == pytest.approx(loop.mean())
            # the CDNV bound on the episode error, beside the measured error (target-image moments)
            _, dense = torch.unique(labels, return_inverse=True)
            bound = fewshot_error_bound(class_moments(feats, dense), k, 5)
            assert tgt[f"ncc_error_{k}shot"] == pytest.approx(1 - loop.mean())
            assert tgt[f"ncc_error_bound_{k}shot"] == pytest.approx(bound, rel=1e-9)
            assert tgt[f"ncc_error_bound_vacuous_{k}shot"] == float(bound >= 1)
            assert tgt[f"ncc_error_bound_capped_{k}shot"] == pytest.approx(min(1.0, bound), rel=1e-9)
        # target CDNV over all target images, SPEC §2 from its definition
        x, y = feats.double().numpy(), labels.numpy()
        mu = np.stack([x[y == c].mean(0) for c in range(5, 10)])
        var = np.array([((x[y == c] - mu[i]) ** 2).sum(1).mean() for i, c in enumerate(range(5, 10))])
        pairs = [(i, j) for i in range(5) for j in range(i + 1, 5)]
        cdnv = np.mean([(var[i] + var[j]) / (2 * ((mu[i] - mu[j]) ** 2).sum()) for i, j in pairs])
        assert tgt["cdnv"] == pytest.approx(cdnv, rel=1e-6)
    assert summary[("5", "source_classes")] == 5 and summary[("5", "chance")] == 0.2
    # the declared comparison, paired on the same seed: exactly S = 5 minus S = 2
    assert summary[("", "sweep_gain_3shot")] == summary[("5", "ncc_acc_3shot")] - summary[("2", "ncc_acc_3shot")]
    per_shot = pd.read_csv(task_dir / "per_shot.csv")
    assert list(zip(per_shot.source_classes, per_shot.k_shot)) == [(2, 1), (2, 3), (5, 1), (5, 3)]
    assert per_shot.set_index(["source_classes", "k_shot"]).ncc_acc[(5, 3)] == summary[("5", "ncc_acc_3shot")]
    aggregate = pd.read_csv(task_dir / "aggregate.csv").fillna({"variant": ""})
    one = aggregate[(aggregate.metric == "ncc_acc_3shot") & (aggregate.variant == "source_classes=5")]
    assert one.n_seeds.tolist() == [1] and one["mean"].tolist() == [summary[("5", "ncc_acc_3shot")]]
    config = json.loads((task_dir / "config.json").read_text())
    metas = [json.loads((task_dir / m["folder"] / "config.json").read_text())["meta"] for m in config["members"]]
    assert [m["feature_cache"] for m in metas] == [{"hits": 0, "misses": 2}] * 2   # per backbone: 2 target splits
    png = task_dir / "fewshot_transfer.png"
    assert config["plots"] == [png.name] and png.stat().st_size > 10_000


def test_forced_rerun_retrains_to_the_same_weights_and_hits_the_feature_cache(tiny_run):
    """`--force` trains the backbones again (issue 13.3); seeded training gives the same weights, so
    the feature cache (keyed by a fingerprint of the weights, not by the run) still hits."""
    root, task_dir = tiny_run
    before = pd.read_csv(task_dir / "results.csv")
    stamp = {p: p.stat().st_mtime_ns for p in (root / RUN_ID / "_trajectories").glob("*/model_final.pt")}
    _, runs = run_tasks("t", [tiny_spec()], root, progress=False, run_id=RUN_ID, force=True)
    assert runs[0].outcome == "done", runs[0].error
    config = json.loads((task_dir / "config.json").read_text())
    metas = [json.loads((task_dir / m["folder"] / "config.json").read_text())["meta"] for m in config["members"]]
    assert [m["feature_cache"] for m in metas] == [{"hits": 2, "misses": 0}] * 2
    assert all(p.stat().st_mtime_ns != t for p, t in stamp.items()) and stamp   # every backbone retrained
    after = pd.read_csv(task_dir / "results.csv")
    pd.testing.assert_series_equal(before.value, after.value)


def test_learn2learn_sampler_scores_learn2learn_tasks(tiny_run):
    pytest.importorskip("learn2learn")
    from ncbench.fewshot.learn2learn_sampler import ncc_accuracy_learn2learn

    root, _ = tiny_run
    spec = tiny_spec("fs_l2l", sweep={"source_classes": [5]}, aggregate=(), sampler="learn2learn", shots=[3],
                     probe=False)
    run_dir, runs = run_tasks("t", [spec], root, progress=False, run_id=RUN_ID)   # same backbones, no training
    assert runs[0].outcome == "done", runs[0].error
    episodes = pd.read_csv(run_dir / "fs_l2l" / "episodes.csv")
    feats, labels = _target_features(root, 5)
    want = ncc_accuracy_learn2learn(feats, labels, 5, 3, 5, 40, seed=0).numpy()
    np.testing.assert_allclose(episodes.ncc_acc.to_numpy(), want, atol=1e-12)
    member = run_dir / "fs_l2l" / "_members" / "source_classes=5" / "config.json"
    assert json.loads(member.read_text())["meta"]["feature_cache"]["hits"] == 2


def test_pretrained_backbone_is_measured_as_is(tmp_path):
    spec = tiny_spec("fs_pre", sweep={}, backbone="pretrained", shots=[3], probe=False)
    run_dir, runs = run_tasks("t", [spec], tmp_path, progress=False)
    assert runs[0].outcome == "done", runs[0].error
    df = pd.read_csv(run_dir / "fs_pre" / "results.csv")
    measured = df[(df.split != "summary") & df.variant.isna()]
    assert set(measured.epoch) == {0} and set(df.variant.dropna()) == {"baseline=raw_pixels", "baseline=random_init"}
    assert set(measured.split) == {"source_train", "target"}
    s = df[(df.split == "summary") & df.variant.isna()].set_index("metric").value
    assert 0.2 < s["ncc_acc_3shot"] <= 1 and s["source_nc1"] > 0 and math.isnan(s["source_classes"])
    assert not [p for p in (run_dir / "_trajectories").iterdir() if p.name != "features"]   # nothing trained
    assert json.loads((run_dir / "fs_pre" / "config.json").read_text())["plots"] == []


# -- the claim, on the embedded default (slow: three real trainings) -------------------------------
@pytest.mark.slow
def test_mnist5k_unseen_digits_far_above_chance_and_more_sources_transfer_better(tmp_path):
    spec = load_task("fewshot_mnist5k")
    run_dir, runs = run_tasks("t", [spec], tmp_path, progress=False)
    assert runs[0].outcome == "done", runs[0].error
    df = pd.read_csv(run_dir / spec.name / "results.csv", dtype={"variant": str}, keep_default_na=False,
                     na_values={"value": [""]}).query("split == 'summary'")
    s = {(v, m): x for v, m, x in zip(df.variant, df.metric, df.value)}
    print(s)
    assert s[("source_classes=5", "ncc_acc_5shot")] > 0.5 and s[("source_classes=5", "ncc_acc_5shot_ci95")] < 0.02
    assert s[("source_classes=5", "ncc_acc_1shot")] > 0.35                       # chance: 0.2
    assert (s[("source_classes=2", "ncc_acc_5shot")] < s[("source_classes=3", "ncc_acc_5shot")]
            < s[("source_classes=5", "ncc_acc_5shot")])
    assert s[("", "sweep_gain_5shot")] > 0 and s[("", "sweep_spearman_5shot")] == 1.0
