"""The learning rate of every optimiser step as torch's scheduler (the one the trainer uses) sets it:
the independent reference for `Recipe.lr_factor` and `Recipe.decay_budget` (tests/test_recipes.py,
tests/test_terminal_recipe.py)."""
from __future__ import annotations

import torch

from ncbench.training.recipe import Recipe


def scheduler_lrs(recipe: Recipe, steps_per_epoch: int) -> list[float]:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=recipe.lr)
    sched = recipe.scheduler(opt, steps_per_epoch)
    out = []
    for _ in range(recipe.epochs * steps_per_epoch):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out
