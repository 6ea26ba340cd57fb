"""The training loop: SGD or AdamW (`Recipe.build_optimizer`) into the terminal phase, CPU or CUDA, DDP.

Batches are index tensors sliced from an `ImageDataset` (no per-sample Python work), or decoded
from disk by a `StreamedImageDataset`'s DataLoader workers for the same index tensors. Shuffling
and augmentation draw from `epoch_generator(seed, epoch)`, so a run resumed from a checkpoint is
bit-identical to an uninterrupted one on the same device. On CUDA out-of-memory the step is
retried in micro-batches (gradient accumulation), halving until it fits: the effective batch,
and hence the numbers, stay the same.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ncbench.data.dataset import ImageDataset
from ncbench.metrics.statistic import Totals
from ncbench.models.backbone import Backbone
from ncbench.run_files import save_torch
from ncbench.training import distributed as dist
from ncbench.training.recipe import Recipe
from ncbench.training.seeding import epoch_generator


def augment_batch(x: torch.Tensor, shifts: torch.Tensor, pad: int = 2) -> torch.Tensor:
    """Translate each image by `shifts[i] = (dy, dx)` in [0, 2·pad] (pad-and-crop)."""
    B, C, H, W = x.shape
    xp = F.pad(x, (pad, pad, pad, pad))
    dy, dx = shifts[:, 0].to(x.device), shifts[:, 1].to(x.device)
    rows = (dy.view(B, 1) + torch.arange(H, device=x.device)).view(B, 1, H, 1).expand(B, C, H, W + 2 * pad)
    xp = torch.gather(xp, 2, rows)
    cols = (dx.view(B, 1) + torch.arange(W, device=x.device)).view(B, 1, 1, W).expand(B, C, H, W)
    return torch.gather(xp, 3, cols)


def draw_shifts(n: int, g: torch.Generator, pad: int = 2) -> torch.Tensor:
    return torch.randint(0, 2 * pad + 1, (n, 2), generator=g)


def mixup(x: torch.Tensor, y: torch.Tensor, alpha: float, g: torch.Generator):
    """Mixup (Zhang et al. 2018): `λx + (1-λ)x[perm]`, λ ~ Beta(α, α). λ and the permutation are drawn
    from the epoch generator `g` (never the global RNG), so a resumed run draws what it would have."""
    lam = 1.0
    if alpha > 0:
        lam = float(np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=g))).beta(alpha, alpha))
    perm = torch.randperm(len(y), generator=g).to(x.device)
    return lam * x + (1 - lam) * x[perm], y, y[perm], lam


def loss_fn(name: str, model: Backbone, h: torch.Tensor, logits: torch.Tensor, y: torch.Tensor,
            label_smoothing: float = 0.0) -> torch.Tensor:
    if name == "ce":
        return F.cross_entropy(logits, y, label_smoothing=label_smoothing)
    if name == "mse":
        return F.mse_loss(logits, F.one_hot(y, logits.shape[1]).to(logits.dtype))
    if name == "squentropy":
        from ncbench.training.losses import squentropy_loss

        return squentropy_loss(logits, y, label_smoothing=label_smoothing)
    if name == "dot_regression":
        from ncbench.training.losses import dot_regression_loss

        head = model.head
        feats = head.project(h) if hasattr(head, "project") else h
        return dot_regression_loss(feats, y, head.weight)
    raise ValueError(f"unknown loss '{name}': use ce, mse, squentropy or dot_regression")


def global_batches(order: torch.Tensor, batch_size: int, world: int) -> list[torch.Tensor]:
    """Split an epoch's order into global batches; a last batch too small to give every rank a
    sample joins the one before (DDP needs the same number of steps on every rank)."""
    batches = list(order.split(batch_size))
    if len(batches) > 1 and len(batches[-1]) < world:
        batches[-2:] = [torch.cat(batches[-2:])]
    return batches


@dataclass
class EpochLog:
    epoch: int
    loss: float
    accuracy: float
    lr: float


class Trainer:
    """Trains `model` with `recipe`; `fit` calls `on_epoch_end(epoch)` after each epoch (1-based)."""

    def __init__(self, model: Backbone, recipe: Recipe, device: str = "cpu", seed: int = 0,
                 progress: bool = True):
        self.recipe, self.seed, self.progress = recipe, seed, progress
        self.device = torch.device(device)
        self.model = model.to(self.device)
        if self.device.type == "cuda":
            self.model = self.model.to(memory_format=torch.channels_last)
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = recipe.build_optimizer(params)
        self.scaler = torch.amp.GradScaler("cuda", enabled=recipe.precision == "fp16" and self.device.type == "cuda")
        self.micro_batches = 1
        self.scheduler = None
        self.epoch = 0
        self.ddp = None
        if dist.is_distributed():
            self.ddp = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)

    def autocast(self):
        if self.device.type != "cuda" or self.recipe.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.recipe.precision == "bf16" else torch.float16
        return torch.autocast("cuda", dtype=dtype)

    # -- checkpoints -------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Everything the next epoch depends on: weights, optimiser, schedule, scaler, epoch, and the
        global RNG states (dropout, stochastic depth draw from them). Tensors and plain containers only,
        so `torch.load(..., weights_only=True)` reads it."""
        rng = {"cpu": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict() if self.scheduler else None,
                "scaler": self.scaler.state_dict(), "epoch": self.epoch, "rng": rng}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self._scheduler_state = state.get("scheduler")
        self.scaler.load_state_dict(state["scaler"])
        self.epoch = int(state["epoch"])
        rng = state.get("rng") or {}
        if "cpu" in rng:   # RNG states are CPU byte tensors, whatever map_location moved them to
            torch.set_rng_state(rng["cpu"].cpu())
        if "cuda" in rng and self.device.type == "cuda":
            torch.cuda.set_rng_state(rng["cuda"].cpu(), self.device)

    def save(self, path: Path, extra: dict | None = None) -> None:
        """Atomic checkpoint (write to a temporary file, then rename)."""
        save_torch({**self.state_dict(), **(extra or {})}, path)

    # -- training ----------------------------------------------------------------------------
    def _step(self, x: torch.Tensor, y: torch.Tensor, g: torch.Generator, global_size: int) -> tuple[float, int]:
        """One optimiser step on this rank's share of a global batch. Each (micro-)batch loss is
        weighted by its share of the global batch (times the world size, which DDP's gradient
        averaging divides out), so the update is that of the whole global batch."""
        net = self.ddp or self.model
        r = self.recipe
        y2, lam = None, 1.0
        if r.mixup_alpha > 0:
            x, y, y2, lam = mixup(x, y, r.mixup_alpha, g)
        self.optimizer.zero_grad(set_to_none=True)
        total, correct = 0.0, 0
        chunks = max(1, min(self.micro_batches, len(y)))
        for xs, ys, y2s in zip(x.tensor_split(chunks), y.tensor_split(chunks),
                               (y2.tensor_split(chunks) if y2 is not None else [None] * chunks)):
            with self.autocast():
                h, logits = net(xs, with_features=True)
                loss = loss_fn(r.loss, self.model, h, logits, ys, r.label_smoothing)
                if y2s is not None:
                    loss = lam * loss + (1 - lam) * loss_fn(r.loss, self.model, h, logits, y2s,
                                                            r.label_smoothing)
            self.scaler.scale(loss * (len(ys) * dist.world_size() / global_size)).backward()
            total += float(loss.detach()) * len(ys)
            correct += int((logits.detach().argmax(1) == ys).sum())
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        return total, correct

    def train_epoch(self, data: ImageDataset) -> EpochLog:
        r = self.recipe
        g = epoch_generator(self.seed, self.epoch)
        batches = global_batches(torch.randperm(len(data), generator=g), r.batch_size, dist.world_size())
        self.model.train()
        totals = Totals(self.device, loss=0.0, correct=0, seen=0)
        it = tqdm(batches, desc=f"epoch {self.epoch + 1}/{r.epochs}", leave=False,
                  disable=not (self.progress and dist.is_main()))
        mine = [dist.shard(torch.arange(len(b))) for b in batches]   # this rank's share of each
        for batch, m, (x, y) in zip(it, mine, data.batches([b[m] for b, m in zip(batches, mine)])):
            global_size = len(batch)
            if r.augment:  # drawn for the global batch, so one process and DDP see the same images
                x = augment_batch(x, draw_shifts(global_size, g)[m])
            if self.device.type == "cuda":  # pinned host memory: the copy overlaps the previous step
                x, y = x.pin_memory(), y.pin_memory()
            x = x.to(self.device, non_blocking=True)
            y = y.to(self.device, non_blocking=True)
            if self.device.type == "cuda":
                x = x.contiguous(memory_format=torch.channels_last)
            while True:
                try:
                    total, c = self._step(x, y, g, global_size)
                    break
                except torch.cuda.OutOfMemoryError:
                    if self.micro_batches >= len(y):
                        raise
                    self.micro_batches *= 2
                    torch.cuda.empty_cache()
                    tqdm.write(f"CUDA out of memory: retrying in {self.micro_batches} micro-batches")
            totals.update(loss=total, correct=c, seen=len(y))
        self.epoch += 1
        if dist.is_distributed():
            totals.all_reduce()
        return EpochLog(self.epoch, totals.loss / totals.seen, totals.correct / totals.seen,
                        self.optimizer.param_groups[0]["lr"])

    def fit(self, data: ImageDataset, on_epoch_end: Callable[[EpochLog], None] | None = None,
            checkpoint: Path | None = None, checkpoint_extra: Callable[[], dict] | None = None) -> list[EpochLog]:
        """Train from `self.epoch` to `recipe.epochs`, checkpointing at the end of every
        `checkpoint_every`-th epoch (default: every epoch) and of the last one. Checkpoints hold end-of-epoch states only, so
        a run interrupted anywhere resumes from the last one with the uninterrupted run's numbers."""
        r = self.recipe
        steps = len(global_batches(torch.arange(len(data)), r.batch_size, dist.world_size()))
        self.scheduler = r.scheduler(self.optimizer, steps)
        if getattr(self, "_scheduler_state", None):
            # a scheduler built on a loaded optimiser resets the LR to its base value; its state
            # restores the step count, and the LR it last set is put back into every group, so the
            # first resumed step uses the uninterrupted run's LR (whatever the schedule)
            self.scheduler.load_state_dict(self._scheduler_state)
            for group, lr in zip(self.optimizer.param_groups, self.scheduler.get_last_lr()):
                group["lr"] = lr
        logs = []
        while self.epoch < r.epochs:
            log = self.train_epoch(data)
            logs.append(log)
            if on_epoch_end is not None:
                on_epoch_end(log)
            if checkpoint is not None and dist.is_main() and (
                    self.epoch % r.checkpoint_every == 0 or self.epoch == r.epochs):
                self.save(checkpoint, checkpoint_extra() if checkpoint_extra else None)
        return logs
