"""The experiments the redesigned claims read (issue 28; docs/claims_experiments.md): each shipped spec
run in a tiny configuration (a few images per class, a few epochs), its new metrics there and sane."""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from ncbench.specs import load_task, members
from ncbench.suite import run_tasks
from ncbench.tasks import TASK_KINDS
from ncbench.training.recipe import Recipe, protocol

ARCHS = ["test_resnet", "test_efficientnet", "test_byobnet"]


def tiny(name: str, *, epochs: int = 2, n: int | None = 6, **options):
    """Spec `name` with `epochs` epochs (evaluated each), `n` train images per class and `options`."""
    spec = load_task(name)
    recipe = {"protocol": spec.recipe} if isinstance(spec.recipe, str) else dict(spec.recipe)
    recipe.update(epochs=epochs, eval_every=1, batch_size=32)
    opts = {**spec.options, **options}
    if n is not None:
        opts["n"] = n
    return replace(spec, recipe=recipe, options=opts)


def results(specs, tmp_path) -> dict[str, pd.DataFrame]:
    _, runs = run_tasks("t", specs, tmp_path, progress=False, log=lambda m: None)
    assert [r.status for r in runs] == ["done"] * len(runs), [r.error for r in runs]
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
            assert cfg.recipe == protocol("step-mnist5k")
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
