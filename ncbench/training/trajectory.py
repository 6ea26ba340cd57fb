"""One training run, measured at every evaluated epoch, shared by every task that reads it.

`train_collapse`, `test_collapse`, `cdnv_bound` (and `ncc_depth`'s per-epoch curve, through a
probe) read the same trajectory: it is trained once per configuration, cached on disk under its
key, checkpointed for resume, and its per-epoch measurements are kept in a `TrajectoryRecord`.
"""
from __future__ import annotations

import datetime as _dt
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ncbench.core import identity
from ncbench.data import ImageDataset, load_dataset
from ncbench.models.backbone import Backbone, build_backbone
from ncbench.run_files import (
    ReadError,
    UnsafePathError,
    ensure_dir,
    load_torch,
    remove_stale_temporaries,
    remove_tree,
    save_torch,
)
from ncbench.training import distributed as dist
from ncbench.training.cache_key import code_fingerprint
from ncbench.training.evaluation import evaluate
from ncbench.training.pace import EpochPace
from ncbench.training.recipe import Recipe
from ncbench.training.record_store import (
    RecordError,
    epochs_from_plain,
    load_checkpoint,
    load_record,
    record_to_plain,
    save_record,
)
from ncbench.training.records import EpochRecord, TrajectoryRecord
from ncbench.training.seeding import seed_everything
from ncbench.training.trainer import Trainer

Probe = Callable[[Backbone, ImageDataset, ImageDataset, int], dict]
"""A per-epoch extra measurement `(model, train, test, epoch) -> dict` (e.g. per-layer NCC)."""


@dataclass(frozen=True)
class TrajectoryConfig:
    dataset: str
    model: str
    recipe: Recipe
    seed: int = 0
    pretrained: bool | str = False
    checkpoint: str | None = None
    head: str = "linear"
    train_split: str = "train"
    test_split: str = "test"
    classes: tuple[int, ...] | None = None      # train on this class subset (relabelled 0..n-1)
    imbalance: tuple[tuple[str, object], ...] | None = None  # SPEC §7 view of the train split
    model_kwargs: tuple[tuple[str, object], ...] = ()
    random_labels: bool = False                 # train labels permuted once, seeded by `seed` (test untouched)
    data_dir: str | None = None
    device: str = "cpu"
    download: bool = False                      # may the data/weights be fetched (not part of the key)
    world_size: int = 1                         # DDP processes: BatchNorm statistics depend on it

    def to_dict(self) -> dict:
        d = asdict(self)
        d["recipe"] = self.recipe.to_dict()
        return d

    def key(self) -> str:
        """Hash of what determines the trained weights (`ncbench.training.cache_key`): the config
        without paths, the checkpoint file's SHA-256 instead of its path, and the code fingerprint."""
        return identity.trajectory_key(self.to_dict(), code_fingerprint())


def load_splits(cfg: TrajectoryConfig) -> tuple[ImageDataset, ImageDataset]:
    train = load_dataset(cfg.dataset, cfg.train_split, cfg.data_dir, cfg.download)
    test = load_dataset(cfg.dataset, cfg.test_split, cfg.data_dir, cfg.download)
    if cfg.classes is not None:
        from ncbench.data.imbalance import class_subset

        train, test = class_subset(train, list(cfg.classes)), class_subset(test, list(cfg.classes))
    if cfg.imbalance is not None:
        from ncbench.data.imbalance import imbalanced_view

        train = imbalanced_view(train, seed=cfg.seed, **dict(cfg.imbalance))
    if cfg.random_labels:
        from ncbench.data.random_labels import random_labels

        train = random_labels(train, cfg.seed)
    return train, test


class Trajectory:
    """Train `cfg` once (resuming from `cache_dir/<key>/checkpoint.pt`), evaluating every
    `recipe.eval_every` epochs and at the end."""

    def __init__(self, cfg: TrajectoryConfig, cache_dir: Path, progress: bool = True, root: Path | None = None):
        """`root`: the run folder nothing of this trajectory may leave (default `cache_dir`)."""
        self.cfg, self.progress = cfg, progress
        self.dir = Path(cache_dir) / cfg.key()
        self.root = Path(cache_dir) if root is None else Path(root)
        self._probes: dict[str, Probe] = {}
        self.model: Backbone | None = None
        self.train_data: ImageDataset | None = None
        self.test_data: ImageDataset | None = None

    @property
    def record_path(self) -> Path:
        return self.dir / "record.json"

    @property
    def final_weights(self) -> Path:
        return self.dir / "model_final.pt"

    def cached(self, probes: dict[str, Probe] | None = None) -> TrajectoryRecord | None:
        """The stored record, if there is a readable one with every probe; an unreadable one is
        reported and recomputed."""
        try:
            rec = load_record(self.dir, self.root)
        except RecordError as e:
            _report(f"{e}: training again")
            return None
        if rec is None or (probes and any(name not in rec.epochs[-1].probes for name in probes)):
            return None
        return rec

    def clear(self) -> None:
        """Forget the cached run (record, final weights, checkpoint): `--force` trains again. The
        folder must be a folder inside the run folder (a link out of it is refused, never followed)."""
        if dist.is_main():
            remove_tree(self.dir, self.root)

    def build_model(self, num_classes: int, in_chans: int) -> Backbone:
        c = self.cfg
        return build_backbone(c.model, num_classes, in_chans, pretrained=c.pretrained, download=c.download,
                              checkpoint=c.checkpoint, head=c.head, head_seed=c.seed,
                              **dict(c.model_kwargs))

    def final_state_dict(self) -> dict:
        """The trained weights (`model_final.pt`); a file that fails to load (a pickle, truncated, not a
        state dict) is reported in one line and the run is trained again, never trusted."""
        try:
            state = load_torch(self.final_weights, self.root)
            if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
                raise ReadError(f"{self.final_weights} is not a state dict of tensors")
            return state
        except (ReadError, UnsafePathError, FileNotFoundError) as e:
            _report(f"{e}: training again")
        self.clear()
        self.run(self._probes)
        return load_torch(self.final_weights, self.root)

    def load_final_model(self) -> Backbone:
        """The trained backbone (for tasks that read it after the run, e.g. `ncc_depth`)."""
        train, _ = self.data()
        model = self.build_model(train.num_classes, train.in_chans)
        model.load_state_dict(self.final_state_dict())
        return model.to(self.cfg.device).eval()

    def data(self) -> tuple[ImageDataset, ImageDataset]:
        if self.train_data is None:
            self.train_data, self.test_data = load_splits(self.cfg)
        return self.train_data, self.test_data

    def run(self, probes: dict[str, Probe] | None = None, force: bool = False) -> TrajectoryRecord:
        """The record of this training: from the cache, else trained (resuming from the checkpoint);
        `force` discards the cache and the checkpoint and trains from epoch 0."""
        probes = probes or {}
        self._probes = probes
        if force:
            self.clear()
        elif dist.is_main():       # temporaries of a writer killed mid-save (ours only, dead processes only)
            remove_stale_temporaries(self.dir, self.root)
        rec = self.cached(probes)
        if rec is not None:
            return rec
        trained_by = training_provenance(self.cfg)
        c, r = self.cfg, self.cfg.recipe
        seed_everything(c.seed)
        train, test = self.data()
        model = self.build_model(train.num_classes, train.in_chans)
        trainer = Trainer(model, r, c.device, c.seed, self.progress)
        ckpt = self.dir / "checkpoint.pt"
        epochs: list[EpochRecord] = []
        elapsed = 0.0
        state = None
        if ckpt.exists():
            try:
                state = load_checkpoint(ckpt, c.device, self.root)
                stored = epochs_from_plain(state["records"])
            except RecordError as e:
                _report(f"{e}: training again from epoch 0")
                state = None
        if state is not None:
            if all(name in r.probes for r in stored for name in probes):
                trainer.load_state_dict(state)
                epochs, elapsed = stored, float(state.get("seconds", 0.0))
                trained_by = resumed_provenance(state.get("trained_by") or trained_by, trainer.epoch, ckpt)
                _report(f"resuming {c.model} on {c.dataset} from epoch {trainer.epoch} ({ckpt})")
            else:  # its per-epoch records lack a probe a task now needs
                _report(f"{ckpt} lacks the probes {sorted(probes)}: training again from epoch 0")
        start = time.perf_counter() - elapsed
        bar = tqdm(total=r.epochs, initial=trainer.epoch, desc=f"train {c.model} on {c.dataset}",
                   disable=not (self.progress and dist.is_main()))

        pace = EpochPace(tqdm.write if dist.is_main() else (lambda message: None))

        def on_epoch_end(log) -> None:
            pace.stop(log.epoch)                   # training time only: evaluation is not timed
            if log.epoch % r.eval_every == 0 or log.epoch == r.epochs:
                tr, te = evaluate(trainer.model, train, test, c.device, max(256, r.batch_size),
                                  progress=self.progress)
                extra = {name: p(trainer.model, train, test, log.epoch) for name, p in probes.items()}
                epochs.append(EpochRecord(log.epoch, log.lr, log.loss, log.accuracy, tr, te, extra))
                bar.set_postfix(train_acc=f"{tr.accuracy:.3f}", test_acc=f"{te.accuracy:.3f}",
                                nc1=f"{tr.collapse['nc1']:.3g}")
            bar.update(1)
            pace.start()

        pace.start()
        if dist.is_main():
            ensure_dir(self.dir, self.root)
        trainer.fit(train, on_epoch_end, ckpt,
                    lambda: {"records": record_to_plain(epochs), "seconds": time.perf_counter() - start,
                             "trained_by": trained_by})
        bar.close()
        trained_by = {**trained_by, "finished_at": _now()}
        rec = TrajectoryRecord(c.to_dict(), epochs, train.class_counts().tolist(),
                               time.perf_counter() - start, trained_by)
        self.model = trainer.model
        if dist.is_main():
            save_torch(trainer.model.state_dict(), self.final_weights, self.root)
            save_record(rec, self.dir, self.root)
        return rec


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def training_provenance(cfg: TrajectoryConfig) -> dict:
    """Who trained: package versions, git hash, code fingerprint, device, world size, start time
    (kept with the record, so a cached run keeps its trainer's provenance when read later)."""
    from ncbench.provenance.record import provenance

    plain = {k: v if isinstance(v, dict) else str(v)          # torch's version is a str subclass
             for k, v in provenance(cfg.device).items()}
    return {**plain, "code_fingerprint": code_fingerprint(), "world_size": cfg.world_size,
            "torch_threads": torch.get_num_threads(), "key": cfg.key()}


def resumed_provenance(trained_by: dict, epoch: int, ckpt: Path) -> dict:
    """`trained_by` of a checkpoint resumed at `epoch`: when this process has another torch thread
    count than the one that trained so far, say so (float reductions change order: the run is no
    longer bit-identical to an uninterrupted one) and record it, `threads_changed: [{epoch,
    torch_threads}]`, which config.json's `training` then shows."""
    now = torch.get_num_threads()
    history = list(trained_by.get("threads_changed") or [])
    before = history[-1]["torch_threads"] if history else trained_by.get("torch_threads")
    if before is None or int(before) == now:
        return trained_by
    _report(f"{ckpt} was trained with {before} torch thread(s) up to epoch {epoch}; this run has {now}: the "
            f"resumed run is not bit-identical to an uninterrupted one (rerun with --threads {before} to keep "
            f"it); recorded as threads_changed in config.json")
    return {**trained_by, "threads_changed": [*history, {"epoch": epoch, "torch_threads": now}]}


def _report(message: str) -> None:
    if dist.is_main():
        tqdm.write(message)

