"""Trainer: deterministic, resumable, OOM back-off keeps the effective batch, DDP equals one process."""
from __future__ import annotations

import math
import os

import pytest
import torch

from ncbench.data import load_dataset
from ncbench.models.backbone import build_backbone
from ncbench.training.evaluation import evaluate
from ncbench.training.recipe import Recipe
from ncbench.training.trainer import Trainer, global_batches

RECIPE = Recipe(epochs=2, batch_size=64, lr=0.05, augment=True, eval_every=1)


def vit(seed=0):
    """A BatchNorm-free timm model: its update does not depend on how a batch is split."""
    torch.manual_seed(seed)
    return build_backbone("test_vit", 10, 1, img_size=8, patch_size=2)


def params(model):
    return torch.cat([p.detach().flatten() for p in model.state_dict().values() if p.is_floating_point()])


def test_global_batches_cover_every_sample_once():
    order = torch.randperm(130)
    b = global_batches(order, 64, 4)
    assert [len(x) for x in b] == [64, 66] and torch.equal(torch.cat(b), order)


def test_same_seed_same_weights():
    data = load_dataset("digits", "train")
    a, b = vit(), vit()
    Trainer(a, RECIPE, seed=3, progress=False).fit(data)
    Trainer(b, RECIPE, seed=3, progress=False).fit(data)
    assert torch.equal(params(a), params(b))


def test_checkpoint_resume_equals_uninterrupted(tmp_path, monkeypatch):
    data = load_dataset("digits", "train")
    recipe = Recipe(**{**RECIPE.to_dict(), "checkpoint_every": 1})
    full = vit()
    Trainer(full, recipe, seed=1, progress=False).fit(data)
    original = Trainer.train_epoch

    def dies_in_epoch_2(self, d):
        if self.epoch == 1:
            raise KeyboardInterrupt
        return original(self, d)

    monkeypatch.setattr(Trainer, "train_epoch", dies_in_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        Trainer(vit(), recipe, seed=1, progress=False).fit(data, checkpoint=tmp_path / "c.pt")
    monkeypatch.setattr(Trainer, "train_epoch", original)
    resumed = vit(seed=99)  # another init: everything must come from the checkpoint
    t2 = Trainer(resumed, recipe, seed=1, progress=False)
    t2.load_state_dict(torch.load(tmp_path / "c.pt", weights_only=True))
    assert t2.epoch == 1
    t2.fit(data)
    assert torch.equal(params(full), params(resumed))


def test_oom_backoff_retries_in_micro_batches_with_the_same_update(monkeypatch):
    data = load_dataset("digits", "train")
    plain = vit()
    Trainer(plain, RECIPE, seed=2, progress=False).fit(data)
    original = Trainer._step
    raised = []

    def flaky(self, x, y, g, global_size):
        if self.micro_batches == 1:
            raised.append(1)
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return original(self, x, y, g, global_size)

    monkeypatch.setattr(Trainer, "_step", flaky)
    backed = vit()
    t = Trainer(backed, RECIPE, seed=2, progress=False)
    t.fit(data)
    assert raised == [1] and t.micro_batches == 2
    torch.testing.assert_close(params(backed), params(plain), rtol=1e-4, atol=1e-5)


def _ddp_worker(rank, world, init_file, out_dir):
    import torch.distributed as dist
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        data = load_dataset("digits", "train")
        test = load_dataset("digits", "test")
        model = vit()
        Trainer(model, RECIPE, seed=5, progress=False).fit(data)
        tr, te = evaluate(model, data, test, "cpu", 128, progress=False)
        if rank == 0:
            torch.save({"params": params(model), "train": tr.collapse, "test": te.extra, "n": (tr.n, te.n),
                        "acc": (tr.accuracy, te.accuracy)}, os.path.join(out_dir, "ddp.pt"))
    finally:
        dist.destroy_process_group()


def test_two_process_gloo_ddp_matches_one_process(tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    ddp = torch.load(tmp_path / "ddp.pt", weights_only=True)
    data, test = load_dataset("digits", "train"), load_dataset("digits", "test")
    model = vit()
    Trainer(model, RECIPE, seed=5, progress=False).fit(data)
    tr, te = evaluate(model, data, test, "cpu", 128, progress=False)
    torch.testing.assert_close(ddp["params"], params(model), rtol=1e-4, atol=1e-5)
    assert ddp["n"] == (len(data), len(test))  # every sample exactly once, no padding
    for k, v in tr.collapse.items():
        assert ddp["train"][k] == pytest.approx(v, rel=1e-3, abs=1e-6, nan_ok=True), k
    for k, v in te.extra.items():
        assert ddp["test"][k] == pytest.approx(v, rel=1e-3, abs=1e-6, nan_ok=True), k


def test_a_diverged_network_gives_nan_metrics_not_a_crash():
    """SPEC §2: non-finite features make the metrics NaN with a reason; the run goes on."""
    data, test = load_dataset("digits", "train"), load_dataset("digits", "test")
    model = vit()
    with torch.no_grad():
        for p in model.body.parameters():
            p.fill_(float("nan"))
    tr, te = evaluate(model, data, test, "cpu", 256, progress=False)
    assert tr.n == len(data) and all(math.isnan(v) for v in tr.collapse.values())
    assert "non-finite" in tr.diagnostics["reasons"] and tr.diagnostics["nonfinite_samples"] == len(data)
    assert te.n == len(test) and all(math.isnan(v) for v in te.extra.values())
