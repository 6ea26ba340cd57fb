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
from ncbench.results.variants import parse_variant
from ncbench.runner.suite import run_tasks
from ncbench.specs import load_task, members
from ncbench.tasks.base import TaskSpec
from ncbench.tasks.minority_collapse import (
    VARIANTS,
    MinorityCollapse,
    confusion_accuracies,
    minority_probe,
)
from ncbench.tasks.train_collapse import TrainCollapse
from ncbench.training.evaluation import evaluate

TINY_RECIPE = {"epochs": 1, "batch_size": 64, "lr": 0.05, "schedule": "constant", "eval_every": 1}


def tiny_spec(sweep=None, aggregate=(), **options) -> TaskSpec:
    """A tiny minority-collapse group: `sweep` (default R in {1, 4} x every classifier) over `options`."""
    opts = {"n_majority": 5, "n": 40, **options}
    sweep = {"ratio": [1, 4], "classifier": list(VARIANTS)} if sweep is None else sweep
    return TaskSpec(name="mc_tiny", kind="minority_collapse", version=1, dataset="digits",
                    model="test_resnet", recipe=TINY_RECIPE, options=opts, sweep=sweep, aggregate=list(aggregate))


def trajectories(spec: TaskSpec) -> list:
    """The trainings of every member run of a group, in member order."""
    return [c for m in members(spec) for c in MinorityCollapse(m).trajectories()]


# -- bookkeeping ----------------------------------------------------------------------------------
def test_trajectories_cover_every_ratio_and_variant():
    spec = tiny_spec()
    cfgs = trajectories(spec)
    assert [m.variant for m in members(spec)] == [f"ratio={r},classifier={v}" for r in (1, 4) for v in VARIANTS]
    task = MinorityCollapse(members(spec)[0])
    assert len(cfgs) == 6 and len({c.key() for c in cfgs}) == 6
    for (ratio, variant), cfg in zip(itertools.product([1.0, 4.0], ["learnable", "etf", "etf_dr"]), cfgs):
        assert (cfg.head, cfg.recipe.loss) == VARIANTS[variant]
        assert dict(cfg.imbalance) == {"profile": "step", "ratio": ratio, "n_majority": 5, "n": 40}
        assert (cfg.dataset, cfg.model, cfg.seed, cfg.recipe.epochs) == ("digits", "test_resnet", 0, 1)
    assert set(task.probes()) == {"minority@5"}
    assert set(MinorityCollapse(members(tiny_spec(n_majority=None))[0]).probes()) == {"minority"}


def test_balanced_run_is_the_plain_split_and_shares_its_trajectory():
    """R = 1 with the default n is the train split as it is: the learnable run has the key of a
    plain training of the same recipe (e.g. train_collapse's), so a suite trains it once."""
    cfgs = trajectories(tiny_spec(n=None))
    assert [c.imbalance for c in cfgs[:3]] == [None] * 3
    assert all(dict(c.imbalance)["ratio"] == 4.0 for c in cfgs[3:])
    plain = TrainCollapse(TaskSpec(name="tc", kind="train_collapse", version=1, dataset="digits",
                                   model="test_resnet", recipe=TINY_RECIPE)).trajectories()[0]
    assert cfgs[0].key() == plain.key()
    assert cfgs[1].key() != plain.key()


def test_fang_balanced_run_is_train_collapse_cifar10():
    mc = MinorityCollapse(members(load_task("minority_collapse_cifar10_step"))[0])
    tc = TrainCollapse(load_task("train_collapse_cifar10"))
    assert mc.config_for(1, "learnable").key() == tc.trajectories()[0].key()


def test_balanced_run_refuses_an_unbalanced_split(tmp_path):
    spec = tiny_spec(sweep={}, n=None, ratio=1, classifier="learnable")   # digits: 142..146 per class
    _, runs = run_tasks("t", [spec], tmp_path, progress=False)
    assert runs[0].outcome == "failed" and "set options.n" in runs[0].error


def test_classifier_fixes_the_loss_and_head():
    cfgs = trajectories(tiny_spec({"ratio": [2], "classifier": ["etf_dr", "learnable"]}))
    assert [(c.head, c.recipe.loss) for c in cfgs] == [("etf_dr", "dot_regression"), ("linear", "ce")]


@pytest.mark.parametrize("options, match", [
    ({"profile": "linear"}, "profile"),
    ({"ratio": 0.5}, "options.ratio "),
    ({"ratio": "10"}, "options.ratio "),
    ({"ratio": math.inf}, "options.ratio "),
    ({"classifier": "fixed"}, "options.classifier"),
    ({"n_majority": 0}, "n_majority"),
    ({"n": 2.5}, "options.n "),
    ({"ratios": [1, 10]}, r"became a sweep: declare `sweep: \{ratio: \[1, 10\]\}`"),
    ({"variants": ["etf"]}, r"`sweep: \{classifier: \['etf'\]\}`"),
    ({"rati": 1}, "unknown options"),
])
def test_bad_options_are_rejected(options, match):
    with pytest.raises(ValueError, match=match):
        MinorityCollapse(tiny_spec(sweep={}, **options))


def test_a_bad_sweep_value_names_its_point(tmp_path):
    with pytest.raises(ValueError, match=r"options.classifier.*sweep point ratio=2,classifier=fixed"):
        run_tasks("t", [tiny_spec({"ratio": [2], "classifier": ["etf", "fixed"]})], tmp_path, progress=False)


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
    """{(R, classifier, metric): value} of the summary rows of runs in the sweep (comparisons aside)."""
    s = df[(df.split == "summary") & df.variant.fillna("").str.contains("classifier=")]
    out = {}
    for v, m, x in zip(s.variant, s.metric, s.value):
        p = parse_variant(v)
        out[(float(p["ratio"]), p["classifier"], m)] = x
    return out


def test_tiny_run_writes_rows_runs_comparisons_and_plot(tmp_path):
    gain = {"name": "etf_minority_gain", "of": "minority_accuracy", "difference": {"classifier": ["etf", "learnable"]}}
    spec = tiny_spec(aggregate=[gain])
    run_dir, runs = run_tasks("t", [spec], tmp_path, progress=False)
    assert [r.outcome for r in runs] == ["done"], runs[0].error
    task_dir = run_dir / "mc_tiny"
    df = pd.read_csv(task_dir / "results.csv")
    assert df.value.dtype == float
    assert not df.metric.str.contains("[/=\\[]").any()        # fixed names: the run is in `variant`
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
        # the declared comparison, per R: exactly the difference of the two runs' rows
        g = df[(df.metric == "etf_minority_gain") & (df.variant == f"ratio={ratio:g}")]
        assert len(g) == 1 and g.value.iloc[0] == (summary[(ratio, "etf", "minority_accuracy")]
                                                   - summary[(ratio, "learnable", "minority_accuracy")])
    # the SPEC §2 metrics of the imbalanced train set, per epoch and run
    train_rows = df[(df.split == "train") & (df.metric == "nc1") & (df.variant == "ratio=4,classifier=learnable")]
    assert len(train_rows) == 1 and train_rows.epoch.tolist() == [1]
    # the group's file is exactly its members' files, then the comparisons
    member_rows = sum(len(pd.read_csv(f)) for f in (task_dir / "_members").glob("*/results.csv"))
    assert len(df) == member_rows + 2
    runs_csv = pd.read_csv(task_dir / "runs.csv")
    assert list(zip(runs_csv.ratio, runs_csv.classifier)) == list(itertools.product([1.0, 4.0], VARIANTS))
    assert runs_csv.variant.tolist() == [m.variant for m in members(spec)]
    want = class_counts("step", 40, 10, 4.0, 5)
    assert runs_csv[runs_csv.ratio == 4.0].class_counts.tolist() == [" ".join(map(str, want))] * 3
    assert runs_csv[runs_csv.ratio == 4.0].n_train.tolist() == [sum(want)] * 3
    config = json.loads((task_dir / "config.json").read_text())
    assert len(config["members"]) == 6
    statuses = {m["status"] for m in config["members"]}     # one epoch: some runs stay near chance
    assert config["status"] == ("failed" if "failed" in statuses else "ok")
    assert set(df.status) == statuses
    member = json.loads((task_dir / "_members" / "ratio=4,classifier=etf" / "config.json").read_text())
    assert member["meta"]["global_mean"] == "class"
    assert member["meta"]["etf_cosine"] == pytest.approx(-1 / 9)
    png = task_dir / "minority_collapse.png"
    assert config["plots"] == [png.name] and png.stat().st_size > 10_000
    # a second run skips every member and the group
    _, again = run_tasks("t", [spec], tmp_path, progress=False, log=lambda m: None)
    assert again[0].outcome == "skipped"


def test_exp_profile_reports_many_medium_few(tmp_path):
    spec = tiny_spec(sweep={}, profile="exp", ratio=4, classifier="learnable", n=40)
    run_dir, runs = run_tasks("t", [spec], tmp_path, progress=False)
    assert runs[0].outcome == "done", runs[0].error
    df = pd.read_csv(run_dir / "mc_tiny" / "results.csv", keep_default_na=False)
    summary = df[(df.split == "summary") & (df.variant == "")].set_index("metric").value.astype(float)
    for g in ("many", "medium", "few"):
        assert 0 <= summary[f"{g}_accuracy"] <= 1
    test = df[(df.split == "test") & df.metric.str.endswith("_accuracy")]
    assert {"few_accuracy", "minority_accuracy"} <= set(test.metric)
    assert set(df.variant) == {"", "baseline=raw_pixels", "baseline=random_init"}
    runs_csv = pd.read_csv(run_dir / "mc_tiny" / "runs.csv")
    assert runs_csv.class_counts.tolist() == [" ".join(map(str, class_counts("exp", 40, 10, 4.0)))]


# -- shipped specs --------------------------------------------------------------------------------
@pytest.mark.parametrize("name, runs, profile", [
    ("minority_collapse_mnist5k", 9, "step"),
    ("minority_collapse_cifar10_step", 9, "step"),
    ("minority_collapse_cifar10_lt", 9, "exp"),
    ("minority_collapse_cifar100_lt", 9, "exp"),
])
def test_shipped_specs_plan_every_run(name, runs, profile):
    spec = load_task(name)
    cfgs = trajectories(spec)
    assert len(cfgs) == runs and len({c.key() for c in cfgs}) == runs
    assert {dict(c.imbalance)["profile"] for c in cfgs if c.imbalance is not None} == {profile}
    plain = [m.options["ratio"] == 1 and m.options.get("n") is None for m in members(spec)]  # the split as it is
    assert [c.imbalance is None for c in cfgs] == plain
    assert set(spec.sweep) == {"ratio", "classifier"} and {a["name"] for a in spec.aggregate} == {
        "etf_minority_gain", "etf_dr_minority_gain"}
    from ncbench.leaderboard.schema import BoardSpec
    from ncbench.results.variants import parse_variant

    board = BoardSpec.from_dict(spec.leaderboard)
    for point in [board.primary.variant] + [v for m in board.metrics.values() for v in m.variants or ()]:
        p = parse_variant(point)         # every board column is a sweep point the task runs
        assert float(p["ratio"]) in {float(r) for r in spec.sweep["ratio"]}
        assert p["classifier"] in spec.sweep["classifier"]


# -- the claim, on the embedded default (slow: nine real trainings) -------------------------------
@pytest.mark.slow
def test_mnist5k_minority_collapse_and_fixed_etf(tmp_path):
    """Learnable classifier: the minority rows draw together as R grows 1 -> 10 -> 100, towards
    collapse at R = 100 (Fang et al. 2021: seeds 0-2 measured 0.65-0.68 there, from -0.13 at R = 1).
    Fixed ETF: classifier cosine −1/(K−1) by construction, and the minority feature means at R = 10
    stay further apart than with the learnable classifier (Yang et al. 2022)."""
    spec = load_task("minority_collapse_mnist5k")
    run_dir, runs = run_tasks("t", [spec], tmp_path, progress=False)
    assert runs[0].outcome == "done", runs[0].error
    s = _summary(pd.read_csv(run_dir / spec.name / "results.csv"))
    print({f"R{r:g}/{v}/{m}": round(x, 4) for (r, v, m), x in s.items()})
    cos = [s[(r, "learnable", "minority_classifier_cosine")] for r in (1.0, 10.0, 100.0)]
    assert cos[0] < cos[1] < cos[2] and cos[2] > 0.3
    for ratio in (1.0, 10.0, 100.0):
        assert s[(ratio, "etf", "minority_classifier_cosine")] == pytest.approx(-1 / 9, abs=1e-6)
    assert s[(10.0, "etf", "minority_feature_cosine")] < s[(10.0, "learnable", "minority_feature_cosine")]
