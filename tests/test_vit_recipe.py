"""The shipped ViT task (docs/vit.md): a timm ViT built for MNIST's 28x28 grey images, trained with AdamW."""
from __future__ import annotations

import pandas as pd
import pytest
import torch

from ncbench.specs import load_task
from ncbench.tasks import TASK_KINDS

NAME = "train_collapse_mnist5k_vit"


def test_the_vit_spec_builds_a_vit_that_takes_mnist_and_trains_it_with_adamw():
    from ncbench.data import load_dataset
    from ncbench.training.trajectory import Trajectory

    spec = load_task(NAME, device="cpu")
    cfg = TASK_KINDS.get(spec.kind)(spec).trajectory_config()
    train = load_dataset(cfg.dataset, "train")
    model = Trajectory(cfg, cache_dir=".").build_model(train.num_classes, train.in_chans)
    assert type(model.body).__name__ == "VisionTransformer" and model.body.patch_embed.num_patches == 16
    x, _ = train.batch(torch.arange(2))
    assert model(x).shape == (2, 10)
    assert isinstance(cfg.recipe.build_optimizer(model.parameters()), torch.optim.AdamW)
    assert cfg.recipe.schedule == "cosine" and cfg.recipe.weight_decay > 0


@pytest.mark.slow
def test_the_vit_recipe_reaches_95_percent_test_accuracy(tmp_path):
    """The figure of docs/vit.md (about 27 min on one loaded CPU thread)."""
    from ncbench.cli import main

    assert main(["run", NAME, "--out", str(tmp_path), "--device", "cpu", "--threads", "1", "--no-progress"]) == 0
    [csv] = tmp_path.glob(f"*/{NAME}/results.csv")
    df = pd.read_csv(csv)
    acc = df[(df.split == "summary") & (df.metric == "test_accuracy")].value.item()
    assert acc >= 0.95
