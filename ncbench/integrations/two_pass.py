"""The SPEC §2 metrics of one split, for several layers at once, fed batch by batch from a user's loop.

Pass one streams every batch into one `CollapseStats` per layer (O(K·d + d²) memory, no features
kept). Pass two (`nc4`, `ncc_acc`) needs the final class means, so the batches are also kept in
memory, as given (no float64 copy), while they fit `cache_bytes` (default 1 GiB, as the evaluation
passes): N·(Σ_ℓ d_ℓ + K + 1) elements. Past the budget the cache is dropped and pass two needs a
`replay` of the same samples (`track` re-runs its loader); without one `nc4`/`ncc_acc` are NaN and
the reason says so. Under `torch.distributed` the states are all-reduced (every rank gets the
numbers of the whole split). `nc4` on layer ℓ compares its nearest-centre rule with the network's
prediction `argmax(logits)`, as the `ncc_depth` task does; `W`, `b` enter the penultimate layer only.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch

from ncbench.metrics import SPEC_METRICS, CollapseStats
from ncbench.models.layers import PRE_LOGITS
from ncbench.registry import suggest
from ncbench.training import distributed as dist
from ncbench.training.feature_pass import FEATURE_CACHE_BYTES

PASS_TWO = ("nc4", "ncc_acc")
"""Metrics that need the final means (a second look at every sample)."""

Batch = tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor | None]
"""`({layer: features}, labels, logits or None)`."""


def check_metrics(metrics: Iterable[str] | None) -> tuple[str, ...]:
    """The requested SPEC §2 metric names (all by default); unknown names get the close ones."""
    if metrics is None:
        return SPEC_METRICS
    metrics = tuple(metrics)
    for m in metrics:
        if m not in SPEC_METRICS:
            raise suggest("metric", m, list(SPEC_METRICS), f"SPEC §2 names: {', '.join(SPEC_METRICS)}")
    if not metrics:
        raise ValueError(f"metrics is empty: name at least one of {', '.join(SPEC_METRICS)}")
    return metrics


@dataclass
class Measurement:
    """One split at one point of training: `metrics[layer][name]`, the penultimate layer `pre_logits`."""

    split: str
    epoch: int | None
    n_samples: int
    metrics: dict[str, dict[str, float]]
    reasons: list[str] = field(default_factory=list)

    def rows(self) -> list[dict]:
        """Tidy rows (SPEC §9 keys a task supplies); the penultimate layer has an empty `layer`, as in
        the `train_collapse` task, the others their module name."""
        return [{"split": self.split, "epoch": self.epoch, "layer": None if layer == PRE_LOGITS else layer,
                 "metric": name, "value": value, "n_samples": self.n_samples}
                for layer, values in self.metrics.items() for name, value in values.items()]


class TwoPassCollapse:
    """Fold `update(features, labels, logits)` batches in, then `compute()` the SPEC §2 metrics per layer."""

    def __init__(self, num_classes: int, layers: Iterable[str] = (PRE_LOGITS,), metrics=None, *,
                 global_mean: str = "class", pinv_tol: float = 1e-10, cache_bytes: int = FEATURE_CACHE_BYTES):
        if global_mean not in ("class", "sample"):
            raise ValueError(f"global_mean must be 'class' or 'sample', got {global_mean!r}")
        self.num_classes = int(num_classes)
        self.layers = list(layers)
        self.metrics = check_metrics(metrics)
        self.global_mean, self.pinv_tol = global_mean, pinv_tol
        self.stats = {name: CollapseStats(self.num_classes) for name in self.layers}
        self.needs_pass_two = any(m in PASS_TWO for m in self.metrics)
        self.cache: list[Batch] | None = [] if self.needs_pass_two else None
        self.cache_bytes, self._cached = cache_bytes, 0
        self.correct = 0
        self.with_logits = 0
        self.n = 0

    def update(self, features: dict[str, torch.Tensor], labels: torch.Tensor,
               logits: torch.Tensor | None = None) -> TwoPassCollapse:
        missing = [n for n in self.layers if n not in features]
        if missing:
            raise ValueError(f"features lack the layers {missing} (have {sorted(features)})")
        labels = torch.as_tensor(labels)
        for name in self.layers:
            self.stats[name].update(features[name], labels.to(features[name].device))
        self.n += int(labels.numel())
        if logits is not None:
            self.correct += int((logits.argmax(1).cpu() == labels.cpu()).sum())
            self.with_logits += int(labels.numel())
        if self.cache is not None:
            batch = ({n: features[n].detach() for n in self.layers}, labels.detach(),
                     None if logits is None else logits.detach())
            self._cached += sum(t.numel() * t.element_size() for t in (*batch[0].values(), labels)) + (
                0 if logits is None else logits.numel() * logits.element_size())
            self.cache.append(batch)
            if self._cached > self.cache_bytes:
                self.cache = None
        return self

    def compute(self, weight: torch.Tensor | None = None, bias: torch.Tensor | None = None,
                replay: Callable[[], Iterable[Batch]] | None = None, *, split: str = "train",
                epoch: int | None = None) -> Measurement:
        """All layers' metrics. `weight`/`bias` (K×d): the classifier on the penultimate features."""
        reduce = dist.is_distributed()
        if reduce:
            for s in self.stats.values():
                if s.dim is None:
                    raise ValueError("a rank saw no batch: every rank must update at least once")
                s.all_reduce()
        device = next(iter(self.stats.values())).device or "cpu"
        correct, with_logits, n = dist.all_reduce_sum([float(self.correct), float(self.with_logits),
                                                       float(self.n)], device)
        reasons: list[str] = []
        second = None
        if self.needs_pass_two and all(s.n for s in self.stats.values()):
            batches = self.cache if self.cache is not None else (replay() if replay is not None else None)
            if reduce and dist.all_reduce_sum([float(batches is None)], device)[0] > 0:
                batches = None                            # one rank cannot: none runs the collectives
            if batches is None:
                reasons.append(f"the features of this split exceeded the {self.cache_bytes} byte cache and no "
                               "replay was given: nc4 and ncc_acc are NaN")
            else:
                second = {}
                for name, s in self.stats.items():
                    w, b = (weight, bias) if name == PRE_LOGITS else (None, None)
                    second[name] = s.second_pass(w, b)
                for feats, y, z in batches:
                    for name, c in second.items():
                        c.update(feats[name], y.to(feats[name].device), z)
                if reduce:
                    for c in second.values():
                        c.all_reduce()
        out: dict[str, dict[str, float]] = {}
        for name, s in self.stats.items():
            w, b = (weight, bias) if name == PRE_LOGITS else (None, None)
            res = s.compute(None if second is None else second[name], w, b, global_mean=self.global_mean,
                            pinv_tol=self.pinv_tol)
            out[name] = {m: res.metrics[m] for m in self.metrics}
            if name == PRE_LOGITS and with_logits:
                out[name]["accuracy"] = correct / with_logits
            reasons += [f"{name}: {r}" for r in res.reasons]
        return Measurement(split, epoch, int(n), out, reasons)
