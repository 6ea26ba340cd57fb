"""Trainer throughput against a bare hand-written PyTorch loop (run with `make benchmark`).

Same model (timm resnet18, 32×32 inputs, 10 classes), same in-memory data, batch size, optimiser
and device; the ratio trainer/bare images per second goes to `benchmark.extra_info` (target ≥ 0.9
on CPU). The same file runs unchanged on a GPU (`NCBENCH_BENCH_DEVICE=cuda`). Before timing, both
train one epoch from the same initial weights on the same batch order (the trainer's epoch-0
permutation) and must end with the same weights and the same mean loss (CPU: to 1e-5; the loops
run the same ops, so the last bits may differ only by kernel choice).
"""
from __future__ import annotations

import os
import time

import pytest
import torch
import torch.nn.functional as F

from ncbench.data.dataset import ImageDataset
from ncbench.models.backbone import build_backbone
from ncbench.training.recipe import Recipe
from ncbench.training.seeding import epoch_generator
from ncbench.training.trainer import Trainer

DEVICE = os.environ.get("NCBENCH_BENCH_DEVICE", "cuda" if torch.cuda.is_available() else "cpu")
N, B = 1024, 128


def _data() -> ImageDataset:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (N, 3, 32, 32), dtype=torch.uint8, generator=g)
    return ImageDataset(images, torch.randint(0, 10, (N,), generator=g), [str(i) for i in range(10)],
                        (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), "synthetic", "train")


def _bare_epoch(model, data, opt, order=None) -> float:
    """What a researcher writes by hand: shuffle, slice, normalise, forward, CE, step. Returns
    the epoch's mean loss."""
    model.train()
    total = torch.zeros((), device=DEVICE)
    for idx in (torch.randperm(N) if order is None else order).split(B):
        x, y = data.batch(idx)
        x, y = x.to(DEVICE), y.to(DEVICE)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        total += loss.detach() * len(y)
    if DEVICE.startswith("cuda"):
        torch.cuda.synchronize()
    return float(total) / N


def _sgd(model):
    return torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)


def _assert_same_epoch(data, recipe) -> None:
    """One epoch of each loop from the same weights and batch order ends at the same weights."""
    torch.manual_seed(0)
    trainer = Trainer(build_backbone("resnet18", 10, 3), recipe, DEVICE, seed=0, progress=False)
    trainer.scheduler = recipe.scheduler(trainer.optimizer, N // B)
    torch.manual_seed(0)
    bare = build_backbone("resnet18", 10, 3).to(DEVICE)
    if DEVICE.startswith("cuda"):
        bare = bare.to(memory_format=torch.channels_last)
    for p, q in zip(bare.state_dict().values(), trainer.model.state_dict().values()):
        assert torch.equal(p, q)
    order = torch.randperm(N, generator=epoch_generator(0, 0))   # the trainer's epoch-0 order
    bare_loss = _bare_epoch(bare, data, _sgd(bare), order)
    log = trainer.train_epoch(data)
    assert log.loss == pytest.approx(bare_loss, rel=1e-5)
    tol = {"rtol": 1e-4, "atol": 1e-5} if DEVICE.startswith("cuda") else {"rtol": 1e-5, "atol": 1e-6}
    for (name, p), q in zip(bare.state_dict().items(), trainer.model.state_dict().values()):
        torch.testing.assert_close(q, p, **tol, msg=lambda m, name=name: f"{name}: {m}")


def test_bench_trainer_vs_bare_loop(benchmark, ratio_table):
    data = _data()
    recipe = Recipe(epochs=1000, batch_size=B, lr=0.01, schedule="constant")
    _assert_same_epoch(data, recipe)
    torch.manual_seed(0)
    trainer = Trainer(build_backbone("resnet18", 10, 3), recipe, DEVICE, seed=0, progress=False)
    trainer.scheduler = recipe.scheduler(trainer.optimizer, N // B)
    torch.manual_seed(0)
    bare = build_backbone("resnet18", 10, 3).to(DEVICE)
    opt = _sgd(bare)
    _bare_epoch(bare, data, opt)       # warm-up both
    trainer.train_epoch(data)
    bare_times, trainer_times = [], []
    for _ in range(3):                 # interleaved, so load changes hit both alike
        t = time.perf_counter()
        _bare_epoch(bare, data, opt)
        bare_times.append(time.perf_counter() - t)
        t = time.perf_counter()
        trainer.train_epoch(data)
        if DEVICE.startswith("cuda"):
            torch.cuda.synchronize()
        trainer_times.append(time.perf_counter() - t)
    benchmark.pedantic(trainer.train_epoch, args=(data,), rounds=1, iterations=1)
    bare_ips, trainer_ips = N / min(bare_times), N / min(trainer_times)
    ratio = trainer_ips / bare_ips
    benchmark.extra_info.update(device=DEVICE, bare_images_per_s=bare_ips, trainer_images_per_s=trainer_ips,
                                ratio=ratio)
    ratio_table.add(benchmark, f"trainer images/s ({DEVICE}, resnet18 B={B})", "bare PyTorch loop", ratio, ">= 0.9")
    print(f"\n[trainer] {DEVICE}: bare loop {bare_ips:.0f} img/s, ncbench trainer {trainer_ips:.0f} img/s, "
          f"ratio {ratio:.2f} (target >= 0.9)")
