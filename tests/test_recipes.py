"""Named recipes as data (`ncbench/recipes/*.yaml`, issue 26 item 3) and the linear warm-up."""
from __future__ import annotations

import math

import pytest
import torch
from scheduler_lrs import scheduler_lrs

from ncbench.registry import UnknownNameError
from ncbench.training.recipe import PROTOCOLS, RECIPES_DIR, Recipe, load_recipe_file, protocol


def test_the_named_recipes_are_the_yaml_files():
    assert {p.stem for p in RECIPES_DIR.glob("*.yaml")} == set(PROTOCOLS)
    assert {"papyan2020", "cpu-mnist5k", "vit-adamw"} <= set(PROTOCOLS)


def test_papyan_recipe_is_spec_section_10():
    r = protocol("papyan2020")   # SGD momentum 0.9, wd 5e-4, batch 128, 350 epochs, ÷10 at 1/3 and 2/3
    assert (r.optimizer, r.momentum, r.weight_decay, r.batch_size, r.epochs, r.lr) == ("sgd", 0.9, 5e-4, 128, 350, 0.1)
    assert r.schedule == "step" and r.gamma == 0.1 and r.milestones == pytest.approx((1 / 3, 2 / 3), abs=0)
    assert r.augment is False and r.warmup_epochs == 0


def test_vit_recipe_is_the_measured_one():
    """`vit-adamw` is what trained test_vit to 96.9% on MNIST-5k (docs/vit.md), and the shipped ViT
    task uses it by name."""
    from ncbench import specs

    r = protocol("vit-adamw")
    assert (r.optimizer, r.lr, r.weight_decay, r.schedule, r.batch_size, r.augment) == (
        "adamw", 2e-3, 0.05, "cosine", 64, True)
    assert Recipe.from_dict(specs.load_task("train_collapse_mnist5k_vit").recipe) == r
    assert isinstance(r.build_optimizer([torch.nn.Parameter(torch.zeros(1))]), torch.optim.AdamW)


def test_unknown_recipe_name_suggests():
    with pytest.raises(UnknownNameError, match="Did you mean: vit-adamw"):
        protocol("vit-adam")


def test_a_recipe_file_with_a_bad_value_names_the_file(tmp_path):
    p = tmp_path / "mine.yaml"
    p.write_text("lr: fast\n")
    with pytest.raises(ValueError, match=r"mine.yaml: recipe.lr must be a finite number, got 'fast'"):
        load_recipe_file(p)


@pytest.mark.parametrize("schedule", ["cosine", "step", "constant"])
def test_linear_warmup_then_the_schedule_over_the_remaining_steps(schedule):
    r = Recipe(epochs=6, lr=0.5, schedule=schedule, warmup_epochs=2, milestones=(0.5,), gamma=0.1)
    spe, warm = 3, 6
    lrs = scheduler_lrs(r, spe)
    assert lrs[:warm] == pytest.approx([0.5 * (s + 1) / warm for s in range(warm)])   # lr·(s+1)/W
    rest = r.epochs * spe - warm
    for s in range(warm, len(lrs)):
        t = s - warm
        want = {"cosine": 0.5 * (1 + math.cos(math.pi * t / rest)),
                "step": 0.1 if s >= round(0.5 * r.epochs) * spe else 1.0,   # the milestone stays at epoch 3
                "constant": 1.0}[schedule]
        assert lrs[s] == pytest.approx(0.5 * want)


def test_no_warmup_keeps_the_schedules_of_before():
    r = Recipe(epochs=4, lr=0.2, schedule="step", milestones=(0.5,))
    assert isinstance(r.scheduler(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.2), 2),
                      torch.optim.lr_scheduler.MultiStepLR)
    assert scheduler_lrs(r, 2) == pytest.approx([0.2] * 4 + [0.02] * 4)


def test_list_recipes_shows_every_named_recipe(capsys):
    from ncbench.cli import main

    assert main(["list", "recipes"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [ln.split()[0] for ln in lines] == sorted(PROTOCOLS)
    assert any(ln.startswith("vit-adamw") and "adamw lr 0.002" in ln for ln in lines)
