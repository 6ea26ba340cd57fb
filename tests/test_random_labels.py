"""Random labels: seeded, per-class counts kept, train split only; a network fits them but learns nothing."""
from __future__ import annotations

import pytest
import torch

from ncbench.data import load_dataset
from ncbench.data.random_labels import random_label_permutation, random_labels
from ncbench.models.backbone import build_backbone
from ncbench.training.evaluation import evaluate
from ncbench.training.recipe import Recipe
from ncbench.training.trainer import Trainer
from ncbench.training.trajectory import TrajectoryConfig, load_splits


def test_same_seed_same_labels_other_seed_other_labels():
    data = load_dataset("digits", "train")
    a, b, c = random_labels(data, 0), random_labels(data, 0), random_labels(data, 1)
    assert torch.equal(a.targets, b.targets)
    assert not torch.equal(a.targets, c.targets)
    # a real shuffle: most labels change (a random permutation keeps about 1/K of them)
    assert (a.targets != data.targets).float().mean() > 0.7


def test_counts_per_class_unchanged_and_images_shared():
    data = load_dataset("digits", "train")
    shuffled = random_labels(data, 3)
    assert torch.equal(shuffled.class_counts(), data.class_counts())
    assert shuffled.images.data_ptr() == data.images.data_ptr()          # a view, no copy
    perm = random_label_permutation(len(data), 3)
    assert torch.equal(shuffled.targets, data.targets[perm])
    assert shuffled.info["random_labels_seed"] == 3


def test_bad_seed_and_streamed_set_rejected():
    data = load_dataset("digits", "train")
    with pytest.raises(ValueError, match="integer >= 0"):
        random_labels(data, -1)
    with pytest.raises(ValueError, match="in-memory ImageDataset"):
        random_labels(object(), 0)


def test_trajectory_applies_random_labels_to_train_only_and_keys_differ():
    base = TrajectoryConfig("digits", "test_vit", Recipe(epochs=1), seed=5)
    shuffled = TrajectoryConfig("digits", "test_vit", Recipe(epochs=1), seed=5, random_labels=True)
    train0, test0 = load_splits(base)
    train1, test1 = load_splits(shuffled)
    assert torch.equal(test0.targets, test1.targets)                     # test split untouched
    assert torch.equal(train1.targets, random_labels(train0, 5).targets)
    assert base.key() != shuffled.key()
    # the default keeps the key of configs made before the field existed
    d = base.to_dict()
    assert d["random_labels"] is False


def test_random_labels_fit_train_but_not_test():
    """Memorisation (Zhang et al. 2017): a small ResNet reaches 100% train accuracy on 100 randomly
    labelled digits (full-batch AdamW, 150 steps, ~3 s) while its test accuracy stays at chance
    (10 classes: 0.1)."""
    full = load_dataset("digits", "train")
    data = random_labels(full.subset(torch.arange(100)), 0)
    test = load_dataset("digits", "test")
    torch.manual_seed(0)
    model = build_backbone("test_resnet", 10, 1)
    recipe = Recipe(epochs=150, batch_size=100, lr=1e-2, weight_decay=0.0, schedule="constant",
                    optimizer="adamw")
    Trainer(model, recipe, seed=0, progress=False).fit(data)
    tr, te = evaluate(model, data, test, "cpu", 256, progress=False)
    assert tr.accuracy >= 0.95
    assert te.accuracy < 0.2
