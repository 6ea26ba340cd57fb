"""`minority_collapse` task kind (SPEC §7): bookkeeping on a tiny budget, and the slow MNIST-5k check."""
from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from ncbench.data import load_dataset
from ncbench.data.imbalance import class_counts, imbalanced_view
from ncbench.metrics.minority import centred_means, imbalance_accuracies
from ncbench.models.backbone import build_backbone
from ncbench.specs import load_task
from ncbench.suite import run_tasks
from ncbench.tasks.base import TaskSpec
from ncbench.tasks.minority_collapse import (
    VARIANTS,
    MinorityCollapse,
    confusion_accuracies,
    minority_probe,
    parse_metric,
    run_label,
)
from ncbench.tasks.train_collapse import TrainCollapse
from ncbench.training.evaluation import evaluate

TINY_RECIPE = {"epochs": 1, "batch_size": 64, "lr": 0.05, "schedule": "constant", "eval_every": 1}


def tiny_spec(**options) -> TaskSpec:
    opts = {"ratios": [1, 4], "n_majority": 5, "n": 40, **options}
    return TaskSpec(name="mc_tiny", kind="minority_collapse", version=1, dataset="digits",
                    model="test_resnet", recipe=TINY_RECIPE, options=opts)


# -- bookkeeping ----------------------------------------------------------------------------------
def test_trajectories_cover_every_ratio_and_variant():
    task = MinorityCollapse(tiny_spec())
    cfgs = task.trajectories()
    assert len(cfgs) == 6 and len({c.key() for c in cfgs}) == 6
    for (ratio, variant), cfg in zip(itertools.product([1.0, 4.0], ["learnable", "etf", "etf_dr"]), cfgs):
        assert (cfg.head, cfg.recipe.loss) == VARIANTS[variant]
        assert dict(cfg.imbalance) == {"profile": "step", "ratio": ratio, "n_majority": 5, "n": 40}
        assert (cfg.dataset, cfg.model, cfg.seed, cfg.recipe.epochs) == ("digits", "test_resnet", 0, 1)
    assert set(task.probes()) == {"minority@5"}
    assert set(MinorityCollapse(tiny_spec(n_majority=None)).probes()) == {"minority"}


def test_balanced_run_is_the_plain_split_and_shares_its_trajectory():
    """R = 1 with the default n is the train split as it is: the learnable run has the key of a
    plain training of the same recipe (e.g. train_collapse's), so a suite trains it once."""
    spec = tiny_spec(n=None)
    cfgs = MinorityCollapse(spec).trajectories()
    assert [c.imbalance for c in cfgs[:3]] == [None] * 3
    assert all(dict(c.imbalance)["ratio"] == 4.0 for c in cfgs[3:])
    plain = TrainCollapse(TaskSpec(name="tc", kind="train_collapse", version=1, dataset="digits",
                                   model="test_resnet", recipe=TINY_RECIPE)).trajectories()[0]
    assert cfgs[0].key() == plain.key()
    assert cfgs[1].key() != plain.key()


def test_fang_balanced_run_is_train_collapse_cifar10():
    mc = MinorityCollapse(load_task("minority_collapse_cifar10_step"))
    tc = TrainCollapse(load_task("train_collapse_cifar10"))
    assert mc.config_for(1, "learnable").key() == tc.trajectories()[0].key()


def test_balanced_run_refuses_an_unbalanced_split(tmp_path):
    spec = tiny_spec(n=None, ratios=[1], variants=["learnable"])   # digits: 142..146 per class
    _, runs = run_tasks("t", [spec], tmp_path, progress=False)
    assert runs[0].status == "failed" and "set options.n" in runs[0].error


def test_variant_fixes_the_loss_and_head():
    cfgs = MinorityCollapse(tiny_spec(ratios=[2], variants=["etf_dr", "learnable"])).trajectories()
    assert [(c.head, c.recipe.loss) for c in cfgs] == [("etf_dr", "dot_regression"), ("linear", "ce")]


@pytest.mark.parametrize("options, match", [
    ({"profile": "linear"}, "profile"),
    ({"ratios": [0.5]}, "ratios"),
    ({"ratios": []}, "ratios"),
    ({"ratios": ["10"]}, "ratios"),
    ({"ratios": [10, 10.0]}, "repeated"),
    ({"variants": ["etf", "fixed"]}, "variants"),
    ({"variants": []}, "variants"),
    ({"n_majority": 0}, "n_majority"),
    ({"n": 2.5}, "options.n "),
    ({"ratio": [1]}, "unknown options"),
])
def test_bad_options_are_rejected(options, match):
    with pytest.raises(ValueError, match=match):
        MinorityCollapse(tiny_spec(**options))


def test_metric_names_round_trip():
    for ratio, variant in [(1, "learnable"), (10.0, "etf_dr"), (2.5, "etf"), (200, "etf")]:
        name = run_label(ratio, variant) + "minority_accuracy"
        assert parse_metric(name) == (float(ratio), variant, "minority_accuracy")
    assert run_label(10.0, "etf") == "R10/etf/"
    assert parse_metric("nc1") is None


def test_centred_means_against_numpy():
    rng = np.random.default_rng(0)
    counts = np.array([5.0, 1.0, 3.0])
    means = rng.normal(size=(3, 4))
    sums = means * counts[:, None]
    np.testing.assert_allclose(centred_means(torch.tensor(sums), torch.tensor(counts), "class").numpy(),
                               means - means.mean(0), atol=1e-12)
    sample_mean = (means * counts[:, None]).sum(0) / counts.sum()
    np.testing.assert_allclose(centred_means(torch.tensor(sums), torch.tensor(counts), "sample").numpy(),
                               means - sample_mean, atol=1e-12)


def test_accuracies_from_a_confusion_matrix_equal_the_per_sample_ones():
    g = torch.Generator().manual_seed(1)
    labels = torch.randint(0, 6, (300,), generator=g)
    pred = torch.where(torch.rand(300, generator=g) < 0.6, labels, torch.randint(0, 6, (300,), generator=g))
    confusion = torch.bincount(labels * 6 + pred, minlength=36).view(6, 6).double()
    groups = {"many": [0, 1], "medium": [2, 3], "few": [4, 5]}
    got = confusion_accuracies(confusion, [3, 4, 5], groups)
    want = imbalance_accuracies(pred, labels, [3, 4, 5], groups, num_classes=6)
    assert got == pytest.approx(want, abs=1e-12)
    ok = (pred == labels).numpy()
    assert got["minority_accuracy"] == pytest.approx(ok[labels.numpy() >= 3].mean())


def _reference_cosine(rows: np.ndarray, minority) -> float:
    cos = [rows[i] @ rows[j] / (np.linalg.norm(rows[i]) * np.linalg.norm(rows[j]))
           for i, j in itertools.combinations(minority, 2)]
    return float(np.mean(cos))


@pytest.mark.parametrize("head", ["linear", "etf"])
def test_probe_against_an_independent_computation(head):
    torch.manual_seed(0)
    train = imbalanced_view(load_dataset("digits", "train"), "step", 4.0, n_majority=5, n=40)
    test = load_dataset("digits", "test")
    model = build_backbone("test_resnet", 10, 1, head=head).eval()
    out = minority_probe(model, train, test, 1)
    minority = [5, 6, 7, 8, 9]
    with torch.no_grad():
        x, y = train.batch(torch.arange(len(train)))
        h, y = model.features(x).double().numpy(), y.numpy()
        xt, yt = test.batch(torch.arange(len(test)))
        logits = model(xt).numpy()
    means = np.stack([h[y == k].mean(0) for k in range(10)])
    W = model.classifier()[0].double().numpy()
    assert out["minority_classifier_cosine"] == pytest.approx(_reference_cosine(W, minority), abs=1e-6)
    if head == "etf":
        assert out["minority_classifier_cosine"] == pytest.approx(-1 / 9, abs=1e-6)
    assert out["train_minority_feature_cosine"] == pytest.approx(
        _reference_cosine(means - means.mean(0), minority), abs=1e-6)
    assert out["train_minority_feature_cosine_sample_mean"] == pytest.approx(
        _reference_cosine(means - h.mean(0), minority), abs=1e-6)
    pred = logits.argmax(1)
    yt = yt.numpy()
    assert out["test_accuracy"] == pytest.approx((pred == yt).mean())
    assert out["test_minority_accuracy"] == pytest.approx((pred == yt)[yt >= 5].mean())
    assert out["test_majority_accuracy"] == pytest.approx((pred == yt)[yt < 5].mean())
    _, te = evaluate(model, train, test, "cpu", 256, progress=False)
    assert out["test_accuracy"] == pytest.approx(te.accuracy)   # the shared evaluation agrees


def test_probe_on_a_plain_split_takes_the_last_classes_as_minority():
    data = load_dataset("digits", "test")
    model = build_backbone("test_resnet", 10, 1, head="etf").eval()
    out = minority_probe(model, data, data, 1, n_majority=7)
    W = model.head.weight.double().numpy()
    assert out["minority_classifier_cosine"] == pytest.approx(_reference_cosine(W, [7, 8, 9]), abs=1e-9)
    with pytest.raises(ValueError, match="at least 2"):
        minority_probe(model, data, data, 1, n_majority=9)


# -- a whole (tiny) run ---------------------------------------------------------------------------
def _summary(df: pd.DataFrame) -> dict[tuple[float, str, str], float]:
    s = df[df.split == "summary"]
    return {parse_metric(m): v for m, v in zip(s.metric, s.value)}


def test_tiny_run_writes_rows_runs_and_plot(tmp_path):
    spec = tiny_spec(ratios=[1, 4])
    run_dir, runs = run_tasks("t", [spec], tmp_path, progress=False)
    assert [r.status for r in runs] == ["done"], runs[0].error
    task_dir = run_dir / "mc_tiny"
    df = pd.read_csv(task_dir / "results.csv")
    assert df.value.dtype == float
    summary = _summary(df)
    for ratio, variant in itertools.product([1.0, 4.0], VARIANTS):
        for metric in ("minority_accuracy", "majority_accuracy", "accuracy", "minority_classifier_cosine",
                       "minority_feature_cosine"):
            assert math.isfinite(summary[(ratio, variant, metric)])
        acc = [summary[(ratio, variant, m)] for m in ("accuracy", "majority_accuracy", "minority_accuracy")]
        assert min(acc[1:]) <= acc[0] <= max(acc[1:])
    for ratio in (1.0, 4.0):
        for variant in ("etf", "etf_dr"):
            assert summary[(ratio, variant, "minority_classifier_cosine")] == pytest.approx(-1 / 9, abs=1e-6)
    # the SPEC §2 metrics of the imbalanced train set, per epoch and run
    train_rows = df[(df.split == "train") & (df.metric == "R4/learnable/nc1")]
    assert len(train_rows) == 1 and train_rows.epoch.tolist() == [1]
    runs_csv = pd.read_csv(task_dir / "runs.csv")
    assert list(zip(runs_csv.ratio, runs_csv.variant)) == list(itertools.product([1.0, 4.0], VARIANTS))
    want = class_counts("step", 40, 10, 4.0, 5)
    assert runs_csv[runs_csv.ratio == 4.0].class_counts.tolist() == [" ".join(map(str, want))] * 3
    assert runs_csv[runs_csv.ratio == 4.0].n_train.tolist() == [sum(want)] * 3
    config = json.loads((task_dir / "config.json").read_text())
    assert config["meta"]["global_mean"] == "class"
    assert config["meta"]["etf_cosine"] == pytest.approx(-1 / 9)
    png = task_dir / "minority_collapse.png"
    assert config["plots"] == [png.name] and png.stat().st_size > 10_000


def test_exp_profile_reports_many_medium_few(tmp_path):
    spec = tiny_spec(profile="exp", ratios=[4], variants=["learnable"], n=40)
    run_dir, runs = run_tasks("t", [spec], tmp_path, progress=False)
    assert runs[0].status == "done", runs[0].error
    df = pd.read_csv(run_dir / "mc_tiny" / "results.csv")
    summary = _summary(df)
    for g in ("many", "medium", "few"):
        assert 0 <= summary[(4.0, "learnable", f"{g}_accuracy")] <= 1
    test = df[(df.split == "test") & df.metric.str.endswith("_accuracy")]
    assert {"R4/learnable/few_accuracy", "R4/learnable/minority_accuracy"} <= set(test.metric)
    runs_csv = pd.read_csv(run_dir / "mc_tiny" / "runs.csv")
    assert runs_csv.class_counts.tolist() == [" ".join(map(str, class_counts("exp", 40, 10, 4.0)))]


# -- shipped specs --------------------------------------------------------------------------------
@pytest.mark.parametrize("name, runs, profile", [
    ("minority_collapse_mnist5k", 6, "step"),
    ("minority_collapse_cifar10_step", 9, "step"),
    ("minority_collapse_cifar10_lt", 9, "exp"),
    ("minority_collapse_cifar100_lt", 9, "exp"),
])
def test_shipped_specs_plan_every_run(name, runs, profile):
    task = MinorityCollapse(load_task(name))
    cfgs = task.trajectories()
    assert len(cfgs) == runs and len({c.key() for c in cfgs}) == runs
    assert {dict(c.imbalance)["profile"] for c in cfgs if c.imbalance is not None} == {profile}
    plain = [r == 1 and task.options["n"] is None for r, _ in task.runs()]   # R = 1: the split as it is
    assert [c.imbalance is None for c in cfgs] == plain
    assert task.spec.leaderboard["primary"] in task.spec.leaderboard["metrics"]
    for metric in task.spec.leaderboard["metrics"]:
        ratio, variant, _ = parse_metric(metric)
        assert ratio in {float(r) for r in task.options["ratios"]} and variant in task.options["variants"]


# -- the claim, on the embedded default (slow: six real trainings) --------------------------------
@pytest.mark.slow
def test_mnist5k_minority_collapse_and_fixed_etf(tmp_path):
    """Learnable classifier: the minority rows draw together as R grows 1 -> 10 (Fang et al. 2021).
    Fixed ETF: classifier cosine −1/(K−1) by construction, and the minority feature means at R = 10
    stay further apart than with the learnable classifier (Yang et al. 2022)."""
    spec = load_task("minority_collapse_mnist5k")
    run_dir, runs = run_tasks("t", [spec], tmp_path, progress=False)
    assert runs[0].status == "done", runs[0].error
    s = _summary(pd.read_csv(run_dir / spec.name / "results.csv"))
    print({f"R{r:g}/{v}/{m}": round(x, 4) for (r, v, m), x in s.items()})
    assert s[(10.0, "learnable", "minority_classifier_cosine")] > s[(1.0, "learnable", "minority_classifier_cosine")]
    for ratio in (1.0, 10.0):
        assert s[(ratio, "etf", "minority_classifier_cosine")] == pytest.approx(-1 / 9, abs=1e-6)
    assert s[(10.0, "etf", "minority_feature_cosine")] < s[(10.0, "learnable", "minority_feature_cosine")]
