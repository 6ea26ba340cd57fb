"""`NeuralCollapse`: the SPEC §2 metrics as a `torchmetrics.Metric` (needs the `lightning` extra).

States (declared with `add_state`, so `reset`, `forward`, `merge_state` and torchmetrics' DDP sync work):

- `moments`: the metric engine's pass-one state (`CollapseStats`: per-class counts, means, scatter
  traces and the within-class scatter) packed into one float64 vector of `K(d+2) + d² + 1` numbers.
  Its reduction merges the ranks' states exactly (Chan et al. 1979, `CollapseStats.merge`): means
  and scatters of different ranks cannot simply be summed. Memory O(K·d + d²), no feature kept.
- pass two (`nc4`, `ncc_acc`) needs the final means, so when one of them is requested the batches
  are also kept: list states `features`, `labels`, `logits` (as given, not copied to float64),
  gathered across ranks by concatenation (`dist_reduce_fx="cat"`) and replayed in `compute`.
  Memory: N·(d + 1 + K) elements on every rank after a sync. Leave `nc4`/`ncc_acc` out of
  `metrics=` to keep memory at O(K·d + d²). Every rank must `update` at least once before a sync
  (the width d is taken from the first batch unless `num_features=` is given, and torchmetrics'
  placeholder for an empty list state is a float tensor, which breaks the gather).

`compute()` returns `{name: 0-d float64 tensor}`, equal to `ncbench.metrics.collapse_metrics` on the
same features (to float64 rounding). The classifier (`W`, `b`, for `*_w`, `nc3`, and `nc4` without
logits) is read at `compute` time from `classifier=` (an `nn.Linear` or `(W, b)`).
"""
from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn
from torchmetrics import Metric
from torchmetrics.utilities.data import dim_zero_cat

from ncbench.integrations.taps import classifier_weights
from ncbench.integrations.two_pass import PASS_TWO, check_metrics
from ncbench.metrics import CollapseStats

DTYPE = torch.float64


class MomentsLayout:
    """Packs a `CollapseStats` of (K, d) into one flat float64 vector and back, from its `state_dict()`
    (tensors flattened in order, numeric counters as floats; the constants `num_classes`/`dim` stay out)."""

    CONSTANTS = ("num_classes", "dim")

    def __init__(self, num_classes: int, dim: int):
        self.num_classes, self.dim = num_classes, dim
        template = CollapseStats(num_classes, dim).state_dict()
        self.entries = [(k, tuple(v.shape) if isinstance(v, torch.Tensor) else None)
                        for k, v in template.items() if k not in self.CONSTANTS]
        self.size = sum(1 if shape is None else int(torch.Size(shape).numel()) for _, shape in self.entries)

    def pack(self, stats: CollapseStats, device=None) -> torch.Tensor:
        """The flat state on `device` (default: the state's own), without a round trip to the host."""
        state = stats.state_dict()
        device = device or stats.device or "cpu"
        parts = [torch.full((1,), float(state[k]), dtype=DTYPE, device=device) if shape is None
                 else state[k].to(device, DTYPE).reshape(-1) for k, shape in self.entries]
        return torch.cat(parts)

    def unpack(self, flat: torch.Tensor) -> CollapseStats:
        if flat.numel() != self.size:
            raise ValueError(f"state of {flat.numel()} numbers, expected {self.size} for K={self.num_classes}, "
                             f"d={self.dim}: all ranks must use the same num_classes and num_features")
        state: dict = {"num_classes": self.num_classes, "dim": self.dim}
        offset = 0
        for k, shape in self.entries:
            if shape is None:
                state[k] = round(float(flat[offset]))
                offset += 1
            else:
                n = int(torch.Size(shape).numel())
                state[k] = flat[offset:offset + n].reshape(shape).clone()
                offset += n
        return CollapseStats.from_state_dict(state)

    def merge(self, stacked: torch.Tensor) -> torch.Tensor:
        """Reduction of `(ranks, size)` packed states into one (torchmetrics' `dist_reduce_fx`)."""
        total = self.unpack(stacked[0])
        for row in stacked[1:]:
            total.merge(self.unpack(row))
        return self.pack(total, stacked.device)


class NeuralCollapse(Metric):
    """SPEC §2 neural-collapse metrics of penultimate features (Papyan, Han & Donoho 2020).

    >>> metric = NeuralCollapse(num_classes=10, classifier=model.fc)   # num_features= fixes d up front
    >>> metric.update(features, labels, logits)       # every batch (any rank)
    >>> metric.compute()["nc1"]                        # all ranks, two-pass exact
    """

    is_differentiable = False
    higher_is_better = None          # nc1 & co. fall with collapse, ncc_acc rises
    full_state_update = False

    def __init__(self, num_classes: int, metrics: Iterable[str] | None = None, *, num_features: int | None = None,
                 classifier: nn.Module | tuple[torch.Tensor, torch.Tensor | None] | None = None,
                 global_mean: str = "class", pinv_tol: float = 1e-10, **kwargs):
        super().__init__(**kwargs)
        if global_mean not in ("class", "sample"):
            raise ValueError(f"global_mean must be 'class' or 'sample', got {global_mean!r}")
        if num_features is not None and int(num_features) < 1:
            raise ValueError(f"num_features must be the feature width d >= 1, got {num_features}")
        self.num_classes = CollapseStats(int(num_classes)).num_classes      # checks num_classes >= 2
        self.layout = None if num_features is None else MomentsLayout(self.num_classes, int(num_features))
        self.metric_names = check_metrics(metrics)
        # a plain attribute, not a submodule: the classifier's parameters stay out of this state_dict
        object.__setattr__(self, "classifier", classifier)
        self.global_mean, self.pinv_tol = global_mean, pinv_tol
        default = (torch.zeros(0, dtype=DTYPE) if self.layout is None
                   else self.layout.pack(CollapseStats(self.num_classes, self.layout.dim)))
        self.add_state("moments", default=default, dist_reduce_fx=self._merge_moments)
        self.keeps_batches = any(m in PASS_TWO for m in self.metric_names)
        if self.keeps_batches:
            for name in ("features", "labels", "logits"):
                self.add_state(name, default=[], dist_reduce_fx="cat")

    def _merge_moments(self, stacked: torch.Tensor) -> torch.Tensor:
        if self.layout is None:
            raise ValueError("no rank saw a batch: nothing to reduce (pass num_features= when some may not)")
        return self.layout.merge(stacked)

    def _stats(self) -> CollapseStats:
        """The pass-one state (no dimension yet before the first update)."""
        if self.moments.numel() == 0:
            return CollapseStats(self.num_classes, device=self.moments.device)
        return self.layout.unpack(self.moments)

    def forward(self, features: torch.Tensor, labels: torch.Tensor, logits: torch.Tensor | None = None):
        """torchmetrics' forward (the batch's value, and the batch folded in). It stacks the global state
        with the batch's, so a state without a width yet (before the first batch) first gets this one's."""
        if self.moments.numel() == 0 and features.ndim == 2:
            if self.layout is None or self.layout.dim != features.shape[1]:
                self.layout = MomentsLayout(self.num_classes, features.shape[1])
            empty = CollapseStats(self.num_classes, self.layout.dim, self.moments.device)
            self.moments = self.layout.pack(empty, self.moments.device)
        return super().forward(features, labels, logits)

    def update(self, features: torch.Tensor, labels: torch.Tensor, logits: torch.Tensor | None = None) -> None:
        """Fold a batch of features `(B, d)`, labels `(B,)` and optionally the network's logits `(B, K)`."""
        stats = self._stats()
        stats.update(features, labels)
        if self.layout is None or self.layout.dim != stats.dim:
            self.layout = MomentsLayout(self.num_classes, stats.dim)       # first update, lazy width
        self.moments = self.layout.pack(stats, self.moments.device)
        if self.keeps_batches:
            if self.labels and (logits is None) != (len(self.logits) == 0):
                raise ValueError("pass logits to every update or to none (nc4 compares with the network's "
                                 "prediction, from logits or else from classifier=)")
            self.features.append(features.detach())
            self.labels.append(labels.detach().long())
            if logits is not None:
                self.logits.append(logits.detach())

    def _weights(self):
        if self.classifier is None:
            return None, None
        if isinstance(self.classifier, nn.Module):
            return classifier_weights(self.classifier)
        weight, bias = self.classifier
        return weight, bias

    def compute(self) -> dict[str, torch.Tensor]:
        stats = self._stats()
        weight, bias = self._weights()
        second = None
        if self.keeps_batches and stats.n > 0:
            second = stats.second_pass(weight, bias)
            feats, labels = dim_zero_cat(self.features), dim_zero_cat(self.labels).long()
            logits = dim_zero_cat(self.logits) if len(self.logits) else None
            if feats.ndim == 1:                        # only empty ranks: torchmetrics' placeholder
                feats = feats.reshape(0, stats.dim)
            second.update(feats, labels, logits)
        res = stats.compute(second, weight, bias, global_mean=self.global_mean, pinv_tol=self.pinv_tol)
        return {m: torch.tensor(res.metrics[m], dtype=DTYPE, device=self.moments.device)
                for m in self.metric_names}
