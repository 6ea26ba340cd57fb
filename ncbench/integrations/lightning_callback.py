"""`NeuralCollapseCallback`: neural collapse of a `lightning` model every n epochs (needs the extra).

At the end of every `every_n_epochs`-th training epoch (after its validation), for each split
(`train` → `trainer.train_dataloader`, `val` → `trainer.val_dataloaders`, or `dataloaders=` given)
it runs one extra pass in eval mode with no grad (`ncbench.track`: forward hooks read the
penultimate features, the input of the classifier module, and any `layers=`), then
- logs `nc/<split>/<metric>` (`nc/<split>/<layer>/<metric>` for named layers) with
  `pl_module.log_dict`, so every logger of the trainer (CSV, TensorBoard, W&B, ...) gets them;
- writes ncbench's tidy rows (SPEC §9) to `<out_dir>/results.csv` (default: the trainer's
  `log_dir`), rewritten atomically after each measurement, which `load_results` reads.
`epoch` in the rows is the number of epochs completed (`trainer.current_epoch + 1`).
Under DDP each rank measures its shard and the states are all-reduced; rank 0 writes the file
(Lightning's `DistributedSampler` pads the last shard with repeated samples: for exact counts pass
`dataloaders=` whose sampler does not pad). The loaders are measured as given: pass an
un-augmented train loader in `dataloaders={"train": ...}` when the training one augments.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import Callback

from ncbench.integrations.run_results import run_context, write_results
from ncbench.integrations.tracking import default_unpack, track
from ncbench.integrations.two_pass import Measurement
from ncbench.models.layers import PRE_LOGITS

SPLITS = ("train", "val")


class NeuralCollapseCallback(Callback):
    """SPEC §2 metrics of the model's penultimate features (and `layers`) every `every_n_epochs`."""

    def __init__(self, every_n_epochs: int = 1, splits: Sequence[str] = SPLITS, layers=None, *,
                 num_classes: int | None = None, classifier=None, features: Callable | None = None,
                 metrics: Iterable[str] | None = None, dataloaders: dict[str, Iterable] | None = None,
                 out_dir: str | Path | None = None, run_id: str | None = None, model_name: str = "",
                 dataset: str = "", seed: int | None = None, global_mean: str = "class",
                 token_pool: str = "auto", unpack: Callable = default_unpack):
        if int(every_n_epochs) < 1:
            raise ValueError(f"every_n_epochs must be >= 1, got {every_n_epochs}")
        self.dataloaders = dict(dataloaders or {})
        unknown = [s for s in splits if s not in SPLITS and s not in self.dataloaders]
        if unknown:
            raise ValueError(f"splits {unknown} have no data loader: use {SPLITS} or pass dataloaders={{name: loader}}")
        self.every_n_epochs, self.splits, self.layers = int(every_n_epochs), tuple(splits), layers
        self.track_kwargs = {"num_classes": num_classes, "classifier": classifier, "layers": layers,
                             "features": features, "metrics": metrics, "global_mean": global_mean,
                             "token_pool": token_pool, "unpack": unpack}
        self.out_dir, self.run_id, self.seed = out_dir, run_id, seed
        self.model_name, self.dataset = model_name, dataset
        self.results: list[Measurement] = []
        self.results_file: Path | None = None
        self._context: dict | None = None

    def loader(self, trainer: L.Trainer, split: str):
        if split in self.dataloaders:
            return self.dataloaders[split]
        loader = trainer.train_dataloader if split == "train" else trainer.val_dataloaders
        if isinstance(loader, (list, tuple)):
            if len(loader) != 1:
                raise ValueError(f"the trainer has {len(loader)} {split} loaders: pass dataloaders={{'{split}': ...}}")
            loader = loader[0]
        if loader is None:
            raise ValueError(f"the trainer has no {split} data loader: drop '{split}' from splits or pass "
                             f"dataloaders={{'{split}': loader}}")
        return loader

    def measure(self, trainer: L.Trainer, pl_module: L.LightningModule) -> list[Measurement]:
        epoch = trainer.current_epoch + 1
        done = [track(pl_module, self.loader(trainer, split), split=split, epoch=epoch, **self.track_kwargs)
                for split in self.splits]
        self.results += done
        return done

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or (trainer.current_epoch + 1) % self.every_n_epochs:
            return
        done = self.measure(trainer, pl_module)
        logged = {}
        for m in done:
            for layer, values in m.metrics.items():
                key = f"nc/{m.split}" if layer == PRE_LOGITS else f"nc/{m.split}/{layer}"
                logged.update({f"{key}/{name}": float(v) for name, v in values.items()})
        pl_module.log_dict(logged, on_step=False, on_epoch=True, sync_dist=False)
        if trainer.is_global_zero:
            self.write(trainer)

    def write(self, trainer: L.Trainer) -> Path:
        if self._context is None:
            device = str(trainer.strategy.root_device)
            self._context = run_context(run_id=self.run_id, task="lightning", model=self.model_name,
                                        dataset=self.dataset, seed=self.seed, device=device,
                                        precision=str(trainer.precision))
        out = Path(self.out_dir or trainer.log_dir or trainer.default_root_dir)
        self.results_file = write_results(out, [r for m in self.results for r in m.rows()], self._context)
        return self.results_file
