"""The experiments the redesigned claims read (issue 28; docs/claims_experiments.md): each shipped spec
run in a tiny configuration (a few images per class, a few epochs), its new metrics there and sane."""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from ncbench.runner.suite import run_tasks
from ncbench.specs import load_task, members
from ncbench.tasks import TASK_KINDS
from ncbench.training.recipe import Recipe, protocol

ARCHS = ["test_resnet", "test_efficientnet", "test_byobnet"]


def tiny(name: str, *, epochs: int = 2, n: int | None = 6, **options):
    """Spec `name` on the small `digits` set (8×8 images, 10 classes, as MNIST-5k) with `epochs` epochs
    (evaluated each), `n` train images per class and `options`."""
    spec = load_task(name)
    recipe = {"protocol": spec.recipe} if isinstance(spec.recipe, str) else dict(spec.recipe)
    recipe.update(epochs=epochs, eval_every=1, batch_size=32)
    opts = {**spec.options, **options}
    if n is not None:
        opts["n"] = n
    return replace(spec, dataset="digits", recipe=recipe, options=opts)


def results(specs, tmp_path) -> dict[str, pd.DataFrame]:
    _, runs = run_tasks("t", specs, tmp_path, progress=False, log=lambda m: None)
    assert [r.outcome for r in runs] == ["done"] * len(runs), [r.error for r in runs]
    return {r.spec.name: pd.read_csv(r.csv) for r in runs}


def model_of(df: pd.DataFrame) -> pd.Series:
    return df["variant"].fillna("").str.extract(r"model=(\w+)")[0]


# -- 1. the long terminal phase -------------------------------------------------------------------
def test_step_recipe_keeps_the_papers_weight_decay_and_a_long_low_lr_tail():
    r = protocol("step-mnist5k")
    assert r.weight_decay == 5e-4 and r.schedule == "step" and r.optimizer == "sgd"
    factor = r.lr_factor(steps_per_epoch=1)
    lrs = [r.lr * factor(e) for e in range(r.epochs)]
    third = r.epochs // 3
    assert lrs[:third] == [r.lr] * third                                   # fit at the full lr
    assert np.allclose(lrs[third:2 * third], r.lr / 10) and np.allclose(lrs[2 * third:], r.lr / 100)
    # the scheduler torch runs is the same step function
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=r.lr)
    sched = r.scheduler(opt, steps_per_epoch=1)
    seen = []
    for _ in range(r.epochs):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert np.allclose(seen, lrs)


def test_terminal_phase_specs_share_one_training_per_architecture():
    keys = {}
    for name in ("terminal_phase_mnist5k", "test_collapse_terminal_mnist5k", "ncc_depth_terminal_mnist5k"):
        for m in members(load_task(name)):
            (cfg,) = TASK_KINDS.get(m.kind)(m).trajectories()
            assert cfg.recipe == protocol("terminal-mnist1k")
            keys.setdefault(m.model, set()).add(cfg.key())
    assert sorted(keys) == sorted(ARCHS) and all(len(k) == 1 for k in keys.values())


def test_terminal_phase_tiny_run_has_nc1_to_nc4_per_epoch_per_architecture(tmp_path):
    names = ("terminal_phase_mnist5k", "test_collapse_terminal_mnist5k", "ncc_depth_terminal_mnist5k")
    got = results([tiny(n, epochs=2) for n in names], tmp_path)
    tc = got["terminal_phase_mnist5k"]
    tr = tc[tc.split == "train"]
    for arch in ARCHS:
        mine = tr[model_of(tr) == arch]
        for metric in ("nc1", "etf_error_h", "nc3", "nc4", "accuracy"):
            per_epoch = mine[mine.metric == metric].set_index("epoch")["value"]
            assert sorted(per_epoch.index) == [1, 2], (arch, metric)
            assert np.isfinite(per_epoch).all() and (per_epoch >= 0).all()
        assert mine[mine.metric == "nc4"]["value"].le(1).all()
    held = got["test_collapse_terminal_mnist5k"]
    strong = held[(held.metric == "strong_nc1") & (held.epoch == 2)]
    assert sorted(model_of(strong)) == sorted(ARCHS) and np.isfinite(strong["value"]).all()
    depth = got["ncc_depth_terminal_mnist5k"]
    layered = depth[(depth.split == "train") & (depth.metric == "nc1") & depth.layer.notna()]
    for arch in ARCHS:                                  # a per-block NC1 curve for each architecture
        assert layered[model_of(layered) == arch]["layer"].nunique() >= 2


def one_arch(spec, arch: str = "test_resnet"):
    """The spec with its architecture axis cut to one model (the axis itself is tested above)."""
    return replace(spec, sweep={**spec.sweep, "model": [arch]})


def summary(df: pd.DataFrame, metric: str) -> pd.Series:
    s = df[(df.split == "summary") & (df.metric == metric)]
    return s.set_index("variant")["value"]


# -- 2. random labels fitted on a smaller set -----------------------------------------------------
def test_random_label_specs_share_trainings_on_a_subsample():
    cfgs = {}
    for name in ("random_labels_fit_mnist5k", "ncc_depth_random_labels_mnist5k"):
        for m in members(load_task(name)):
            (cfg,) = TASK_KINDS.get(m.kind)(m).trajectories()
            cfgs.setdefault(m.variant, set()).add(cfg.key())
            assert dict(cfg.imbalance)["n"] == 50 and cfg.recipe.epochs == 150
            assert cfg.random_labels == ("labels=random" in m.variant)
    assert len(cfgs) == 6 and all(len(k) == 1 for k in cfgs.values())


def test_random_labels_tiny_run_gives_absolute_nc1_test_ncc_and_depths(tmp_path):
    specs = [one_arch(tiny(n, epochs=2)) for n in ("random_labels_fit_mnist5k", "ncc_depth_random_labels_mnist5k")]
    got = results(specs, tmp_path)
    tc = got["random_labels_fit_mnist5k"]
    last = tc[(tc.split == "train") & (tc.epoch == 2)]
    for labels in ("true", "random"):
        v = f"model=test_resnet,labels={labels}"
        nc1 = last[(last.metric == "nc1") & (last.variant == v)]["value"]
        assert len(nc1) == 1 and float(nc1.iloc[0]) > 0
        assert last[last.variant == v]["n_samples"].eq(60).all()            # n = 6 images of 10 classes
    depth = got["ncc_depth_random_labels_mnist5k"]
    acc = summary(depth, "last_layer_test_ncc_acc")
    assert set(acc.index) == {"model=test_resnet,labels=true", "model=test_resnet,labels=random"}
    assert acc.between(0, 1).all()
    rel = summary(depth, "ncc_depth_relative")
    gain = summary(depth, "random_labels_depth_gain")
    want = rel["model=test_resnet,labels=random"] - rel["model=test_resnet,labels=true"]
    assert len(gain) == 1
    np.testing.assert_allclose(gain.iloc[0], want, atol=1e-12)              # NaN only where a depth is NaN


# -- 3. source classes at a fixed number of images -------------------------------------------------
def test_fixed_total_spec_trains_s2_and_s5_on_the_same_number_of_images():
    from ncbench.training.trajectory import load_splits

    seen = {}
    for m in members(load_task("fewshot_fixed_total_mnist5k")):
        if m.model != "test_resnet":
            continue
        (cfg,) = TASK_KINDS.get(m.kind)(m).trajectories()
        train, _ = load_splits(cfg)
        counts = train.class_counts().tolist()
        seen[len(counts)] = counts
        assert len(set(counts)) == 1                                       # balanced
    assert sorted(seen) == [2, 5] and sum(seen[2]) == sum(seen[5]) == 800


def test_fixed_total_tiny_run_gives_the_paired_gain(tmp_path):
    spec = one_arch(tiny("fewshot_fixed_total_mnist5k", n=None, episodes=20, shots=[5]))
    levels = {2: {"source_classes": 2, "n": 10}, 5: {"source_classes": 5, "n": 4}}   # 20 images each
    spec = replace(spec, sweep={**spec.sweep, "source_classes": levels},
                   aggregate=[a for a in spec.aggregate if a["name"] == "fixed_total_gain_5shot"])
    df = results([spec], tmp_path)["fewshot_fixed_total_mnist5k"]
    acc = summary(df, "ncc_acc_5shot")
    gain = summary(df, "fixed_total_gain_5shot")
    assert math.isclose(gain.iloc[0], acc["model=test_resnet,source_classes=5"] - acc["model=test_resnet,source_classes=2"])
    n_src = df[(df.split == "source_train") & (df.metric == "accuracy")].set_index("variant")["n_samples"]
    assert n_src.tolist() == [20, 20]


# -- 4. the ETF gain with fitted minority classes ---------------------------------------------------
def test_minority_fitted_tiny_run_has_three_arms_train_minority_accuracy_and_gains(tmp_path):
    spec = one_arch(tiny("minority_fitted_mnist5k", epochs=2, n=None))
    spec = replace(spec, options={**spec.options, "n": 20})                  # minority classes of 2
    df = results([spec], tmp_path)["minority_fitted_mnist5k"]
    arms = [f"model=test_resnet,ratio=10,classifier={c}" for c in ("learnable", "etf", "etf_dr")]
    fit = df[(df.split == "train") & (df.metric == "minority_accuracy") & (df.epoch == 2)].set_index("variant")["value"]
    assert sorted(fit.index) == sorted(arms) and fit.between(0, 1).all()    # the precondition's input
    acc = summary(df, "minority_accuracy")
    gain = summary(df, "etf_dr_minority_gain")
    assert math.isclose(gain.iloc[0], acc[arms[2]] - acc[arms[0]])


# -- 5. linear-probe transfer over five losses -----------------------------------------------------
def test_linear_probe_split_fits_on_the_first_part_and_tests_on_the_rest():
    from ncbench.tasks.fewshot_transfer import linear_probe_split

    rng = np.random.default_rng(0)
    y = torch.from_numpy(np.tile(np.arange(4), 30))
    separable = torch.nn.functional.one_hot(y, 4).double() * 5 + torch.from_numpy(rng.normal(size=(120, 4)) * 0.1)
    assert linear_probe_split(separable, y, 80, 1e-3) == 1.0
    # labels of the test part permuted: the probe learnt the first part's rule, so it gets what agrees
    y2 = y.clone()
    y2[80:] = (y[80:] + 1) % 4
    assert linear_probe_split(separable, y2, 80, 1e-3) == 0.0
    with pytest.raises(ValueError, match="both parts"):
        linear_probe_split(separable, y, 120, 1e-3)


def test_linear_probe_needs_two_target_splits():
    spec = replace(load_task("transfer_losses_mnist5k"), sweep={}, aggregate=[], leaderboard={})
    with pytest.raises(ValueError, match="options.linear_probe fits on the first target split"):
        TASK_KINDS.get("fewshot_transfer")(replace(spec, options={**spec.options, "target_split": "test"}))
    with pytest.raises(ValueError, match="options.linear_probe must be true or false"):
        TASK_KINDS.get("fewshot_transfer")(replace(spec, options={**spec.options, "linear_probe": "yes"}))


def test_transfer_losses_tiny_run_has_a_probe_row_per_loss(tmp_path):
    spec = one_arch(tiny("transfer_losses_mnist5k", epochs=1, episodes=20))
    df = results([spec], tmp_path)["transfer_losses_mnist5k"]
    probe = summary(df, "target_linear_probe_acc")
    losses = ("ce", "label_smoothing", "label_smoothing_0.3", "mse", "squentropy")
    assert sorted(probe.index) == sorted(f"model=test_resnet,loss={x}" for x in losses)
    assert probe.between(0, 1).all() and probe.gt(0.2).all()            # above 5-way chance
    assert summary(df, "source_test_accuracy").between(0, 1).all()
    assert len(set(protocol_losses(spec))) == 5


def protocol_losses(spec) -> list[tuple]:
    """(loss, label_smoothing) of each member's recipe: five distinct losses."""
    return [(r.loss, r.label_smoothing) for r in (Recipe.from_dict(m.recipe) for m in members(spec))]


# -- 6. CDNV across representations ------------------------------------------------------------------
def test_cdnv_representations_tiny_run_covers_trained_random_init_and_pixels(tmp_path):
    spec = one_arch(tiny("cdnv_representations_mnist5k", epochs=1, episodes=20))
    spec = replace(spec, sweep={**spec.sweep, "recipe.epochs": [1, 2]})
    df = results([spec], tmp_path)["cdnv_representations_mnist5k"]
    cdnv, acc = summary(df, "target_cdnv"), summary(df, "ncc_acc_5shot")
    reps = {"model=test_resnet,epochs=1", "model=test_resnet,epochs=2",
            "model=test_resnet,epochs=1,baseline=raw_pixels", "model=test_resnet,epochs=1,baseline=random_init"}
    assert reps <= set(cdnv.index) and reps <= set(acc.index)
    assert (cdnv[list(reps)] > 0).all() and acc[list(reps)].between(0, 1).all()
    assert summary(df, "target_linear_probe_acc")[list(reps)].between(0, 1).all()


# -- 7. the suites -------------------------------------------------------------------------------------
def suite_plan(name: str):
    """The dry run of a suite on the CPU: every preflight check (`ncbench.runner.preflight.check_spec`), every
    member's kind and options, and the distinct trainings it would run; nothing is trained."""
    from ncbench.runner.preflight import check_spec
    from ncbench.specs import load_suite

    _, specs = load_suite(name)
    trainings = {}
    for s in specs:
        check_spec(replace(s, device="cpu"))
        for m in members(s):
            for cfg in TASK_KINDS.get(m.kind)(m).trajectories():
                trainings[cfg.key()] = cfg
    return specs, trainings


def test_claims_suite_runs_the_redesigned_experiments_on_three_architectures():
    """One claims suite: every empirical experiment on three architectures and three seeds at the papers'
    weight decay (the weight-decay claim's control arm without it), every task read by a claim and every
    claim's task in the suite; 189 trainings, 63 per architecture (docs/claims.md's time counts them)."""
    from ncbench.claims import CLAIMS

    specs, trainings = suite_plan("claims")
    theory = {"lpm_minority_curve", "ufm_ce_balanced", "ufm_mse_snc"}
    swept = [s for s in specs if "model" in s.sweep]
    assert {s.name for s in swept} == {s.name for s in specs} - theory and len(swept) == 13
    for s in swept:                                     # every redesigned experiment on every architecture
        assert s.sweep["model"] == ARCHS and s.seeds == [0, 1, 2], s.name
    per_arch = {a: [c for c in trainings.values() if c.model == a] for a in ARCHS}
    assert sum(map(len, per_arch.values())) == len(trainings) == 189
    assert all(len(v) == 63 for v in per_arch.values())
    undecayed = [c for c in trainings.values() if c.recipe.weight_decay != 5e-4]
    assert len(undecayed) == 9 and {c.recipe.weight_decay for c in undecayed} == {0.0}
    assert {c.recipe.epochs for c in undecayed} == {150}           # weight_decay_fit_mnist5k's control arm
    read = {t for c in CLAIMS for t in c.tasks()}
    assert read == {s.name for s in specs}


def test_gpu_claims_suite_is_the_papers_protocol_and_passes_preflight_on_the_cpu():
    specs, trainings = suite_plan("claims_gpu")
    assert all(s.tier == "gpu" and s.dataset == "cifar10" and s.seeds == [0, 1, 2] for s in specs)
    papyan = protocol("papyan2020")
    assert papyan.epochs == 350 and papyan.weight_decay == 5e-4 and papyan.schedule == "step"
    for cfg in trainings.values():
        assert cfg.model == "resnet18" and cfg.dataset == "cifar10"
        assert (cfg.recipe.epochs, cfg.recipe.weight_decay, cfg.recipe.optimizer) == (350, 5e-4, "sgd")
        assert cfg.recipe.schedule == "step" and cfg.recipe.milestones == papyan.milestones
    assert any(c.random_labels for c in trainings.values())
