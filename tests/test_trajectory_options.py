"""Options every trained-backbone kind shares (`ncbench.tasks.trajectory_task.TrainedOptions`): `labels` (true or
random, review §4.1.1) and `model_kwargs` (to timm), as plain options a YAML sweep can vary."""
from __future__ import annotations

import pytest

from ncbench.specs import TaskSpec, members
from ncbench.tasks import TASK_KINDS

KINDS = ("train_collapse", "test_collapse", "cdnv_bound", "ncc_depth", "minority_collapse", "fewshot_transfer")


def _spec(kind: str, **options) -> TaskSpec:
    return TaskSpec(name="t", kind=kind, version=1, dataset="digits", model="test_vit", options=options)


@pytest.mark.parametrize("kind", KINDS)
def test_every_trained_kind_takes_labels_and_model_kwargs(kind):
    task = TASK_KINDS.get(kind)(_spec(kind, labels="random", model_kwargs={"img_size": 28, "patch_size": 4}))
    (cfg,) = task.trajectories()[:1]
    assert cfg.random_labels is True and dict(cfg.model_kwargs) == {"img_size": 28, "patch_size": 4}
    plain = TASK_KINDS.get(kind)(_spec(kind)).trajectories()[0]
    assert plain.random_labels is False and plain.model_kwargs == () and plain.key() != cfg.key()


@pytest.mark.parametrize("options, match", [
    ({"labels": "shuffled"}, "options.labels must be true or random"),
    ({"model_kwargs": [1, 2]}, "options.model_kwargs must be a mapping"),
    ({"lables": "random"}, r"did you mean labels\?"),
])
def test_bad_common_options_are_refused(options, match):
    with pytest.raises(ValueError, match=match):
        TASK_KINDS.get("train_collapse")(_spec("train_collapse", **options))


def test_a_labels_sweep_is_a_random_label_control_group():
    g = TaskSpec(name="rl", kind="train_collapse", version=1, dataset="digits", model="test_resnet",
                 sweep={"labels": [True, "random"]}, seeds=[0, 1])
    ms = members(g)
    assert [(m.variant, m.seed) for m in ms] == [("labels=true", 0), ("labels=true", 1),
                                                 ("labels=random", 0), ("labels=random", 1)]
    cfgs = [TASK_KINDS.get("train_collapse")(m).trajectories()[0] for m in ms]
    assert [c.random_labels for c in cfgs] == [False, False, True, True]
    assert len({c.key() for c in cfgs}) == 4       # each seed permutes its own labels


def test_cli_model_kwargs_reach_the_trajectory(tmp_path, monkeypatch):
    from ncbench import cli
    from ncbench.specs import load_task

    spec = load_task("train_collapse_mnist5k")
    (spec,) = cli._apply_model_kwargs([spec], "img_size=28,patch_size=4")
    cfg = TASK_KINDS.get(spec.kind)(spec).trajectories()[0]
    assert dict(cfg.model_kwargs) == {"img_size": 28, "patch_size": 4}


@pytest.mark.parametrize("kind", ("train_collapse", "test_collapse", "cdnv_bound", "ncc_depth"))
def test_n_trains_on_a_balanced_subsample_shared_across_kinds(kind):
    """`n`: n train images per class (the R = 1 view); the same training for every kind reading it."""
    from ncbench.training.trajectory import load_splits

    cfg = TASK_KINDS.get(kind)(_spec(kind, n=7)).trajectories()[0]
    ref = TASK_KINDS.get("train_collapse")(_spec("train_collapse", n=7)).trajectories()[0]
    assert cfg.key() == ref.key()
    train, test = load_splits(cfg)
    full_train, full_test = load_splits(TASK_KINDS.get(kind)(_spec(kind)).trajectories()[0])
    assert train.class_counts().tolist() == [7] * full_train.num_classes
    assert len(test) == len(full_test)                       # the test split stays whole
    assert TASK_KINDS.get(kind)(_spec(kind)).trajectories()[0].imbalance is None   # default: untouched


def test_n_with_random_labels_permutes_the_subsample():
    from ncbench.training.trajectory import load_splits

    cfg = TASK_KINDS.get("train_collapse")(_spec("train_collapse", n=10, labels="random")).trajectories()[0]
    train, _ = load_splits(cfg)
    assert train.class_counts().tolist() == [10] * train.num_classes and len(train) == 10 * train.num_classes


@pytest.mark.parametrize("n", [0, -3, 2.5, True, "ten"])
def test_bad_n_is_refused(n):
    with pytest.raises(ValueError, match="options.n must be a positive integer"):
        TASK_KINDS.get("train_collapse")(_spec("train_collapse", n=n))
