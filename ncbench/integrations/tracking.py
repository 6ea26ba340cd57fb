"""Neural collapse of any PyTorch model in one call (`track`) or inside a hand-written loop
(`CollapseTracker`), with the metric engine's exact two-pass numbers (SPEC §2).

`track(model, loader)` runs the model over the loader once in eval mode, hooks reading the
penultimate features (and `layers=`), and returns a `Measurement` (`.metrics[layer][name]`,
`.rows()`). `CollapseTracker` leaves the loop to you: inside `with tracker.split("val", epoch=e)`
each forward pass of the model is captured, `meter.update(labels)` pairs it with its labels, and the
numbers are computed on exit; `tracker.to_csv(dir)` writes tidy rows `load_results` reads.
See `two_pass` for the memory the second pass costs.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import torch
from torch import nn

from ncbench.integrations.run_results import run_context, write_results
from ncbench.integrations.taps import FeatureTaps
from ncbench.integrations.two_pass import Measurement, TwoPassCollapse
from ncbench.models.layers import PRE_LOGITS


def default_unpack(batch) -> tuple[torch.Tensor, torch.Tensor]:
    """`(inputs, labels)` of a batch `(x, y, ...)` or `{"x"/"image"/"input": ..., "y"/"label"/"target": ...}`."""
    if isinstance(batch, dict):
        x = next((batch[k] for k in ("x", "image", "images", "input", "inputs") if k in batch), None)
        y = next((batch[k] for k in ("y", "label", "labels", "target", "targets") if k in batch), None)
        if x is not None and y is not None:
            return x, y
        raise ValueError(f"cannot find inputs and labels in a batch with keys {sorted(batch)}: pass unpack=")
    if isinstance(batch, (tuple, list)) and len(batch) >= 2:
        return batch[0], batch[1]
    raise ValueError(f"a batch must be (inputs, labels, ...) or a dict, got {type(batch).__name__}: pass unpack=")


def infer_num_classes(taps: FeatureTaps, num_classes: int | None) -> int:
    if num_classes is not None:
        return int(num_classes)
    weight, _ = taps.classifier()
    if weight is None:
        raise ValueError("num_classes is unknown without a classifier: pass num_classes=")
    return int(weight.shape[0])


def model_device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


class _Pass:
    """The batches of a loader through the taps (eval mode, no grad), as `TwoPassCollapse` takes them."""

    def __init__(self, taps: FeatureTaps, loader: Iterable, unpack: Callable, device: torch.device):
        self.taps, self.loader, self.unpack, self.device = taps, loader, unpack, device

    def __iter__(self):
        with self.taps.capture():
            for batch in self.loader:
                x, y = self.unpack(batch)
                feats, logits = self.taps(x.to(self.device))
                yield feats, torch.as_tensor(y).to(self.device), logits


def track(model: nn.Module, loader: Iterable, *, num_classes: int | None = None,
          classifier: nn.Module | str | None = None, layers: str | Sequence[str] | None = None,
          features: Callable | None = None, metrics: Iterable[str] | None = None, split: str = "train",
          epoch: int | None = None, global_mean: str = "class", token_pool: str = "auto",
          unpack: Callable = default_unpack) -> Measurement:
    """SPEC §2 metrics of `model` on every sample of `loader`, per tapped layer.

    `classifier`: the last layer (module or name; found by default, see `taps`); `layers`: module
    names or `"blocks"`/`"stages"`; `features`: a function `x -> h` for a model without a classifier
    module. Pass two reads the kept features, or iterates `loader` again past the cache budget (then
    it must yield the same samples).
    """
    taps = FeatureTaps(model, classifier, layers, features, token_pool)
    acc = TwoPassCollapse(infer_num_classes(taps, num_classes), taps.names, metrics, global_mean=global_mean)
    was_training = model.training
    model.eval()
    try:
        passes = _Pass(taps, loader, unpack, model_device(model))
        for feats, y, logits in passes:
            acc.update(feats, y, logits)
        if acc.n == 0:
            raise ValueError("the loader yielded no sample")
        weight, bias = taps.classifier()
        return acc.compute(weight, bias, replay=lambda: passes, split=split, epoch=epoch)
    finally:
        model.train(was_training)


class SplitMeter:
    """One split being measured inside `CollapseTracker.split`: pair each forward with its labels."""

    def __init__(self, taps: FeatureTaps, acc: TwoPassCollapse):
        self.taps, self.acc = taps, acc
        self.result: Measurement | None = None

    def update(self, labels: torch.Tensor, features: torch.Tensor | None = None,
               logits: torch.Tensor | None = None) -> None:
        """Labels of the model's last forward pass; or its penultimate `features` (and `logits`) given
        directly, for a model whose classifier does not run as a module."""
        if features is not None:
            self.taps.clear()
            self.acc.update({PRE_LOGITS: features.detach()}, labels,
                            None if logits is None else logits.detach())
            return
        feats, captured = self.taps.last()
        self.acc.update(feats, labels, captured if logits is None else logits.detach())


class CollapseTracker:
    """Measure neural collapse in your own loop; hooks live only inside `split(...)` blocks.

    >>> tracker = CollapseTracker(model, layers=["layer3"])
    >>> with torch.no_grad(), tracker.split("val", epoch=3) as meter:
    ...     for x, y in val_loader:
    ...         model(x)
    ...         meter.update(y)
    >>> tracker.results[-1].metrics["pre_logits"]["nc1"]
    """

    def __init__(self, model: nn.Module, *, num_classes: int | None = None,
                 classifier: nn.Module | str | None = None, layers: str | Sequence[str] | None = None,
                 metrics: Iterable[str] | None = None, global_mean: str = "class", token_pool: str = "auto"):
        self.taps = FeatureTaps(model, classifier, layers, None, token_pool)
        self.num_classes = infer_num_classes(self.taps, num_classes)
        self.metrics, self.global_mean = metrics, global_mean
        self.results: list[Measurement] = []

    @contextlib.contextmanager
    def split(self, split: str = "val", epoch: int | None = None) -> Iterator[SplitMeter]:
        """Capture the forwards of this block; its `Measurement` is appended to `results` on exit."""
        meter = SplitMeter(self.taps, TwoPassCollapse(self.num_classes, self.taps.names, self.metrics,
                                                      global_mean=self.global_mean))
        with self.taps.capture():
            yield meter
        if meter.acc.n == 0:
            raise ValueError(f"split '{split}': no labels were given: call meter.update(labels) after each forward")
        weight, bias = self.taps.classifier()
        meter.result = meter.acc.compute(weight, bias, split=split, epoch=epoch)
        self.results.append(meter.result)

    def rows(self) -> list[dict]:
        return [r for m in self.results for r in m.rows()]

    def to_csv(self, path: str | Path, **context) -> Path:
        """Write every measurement so far as tidy rows (`path`: a `.csv` or a folder); `context`:
        `run_id`, `model`, `dataset`, `seed`, ... (see `run_results.run_context`)."""
        return write_results(path, self.rows(), run_context(**context))
