"""Minority collapse and accuracy by class group (SPEC §7; Fang et al. 2021, Liu et al. 2019).

- `minority_cosine`: mean over unordered pairs k < k' of minority classes of `cos(v_k, v_k')`,
  for classifier rows `w_k` or centred class means `μ_k − μ_G`. A simplex ETF gives −1/(K−1);
  minority collapse (Fang et al. 2021, layer-peeled model) drives it to 1.
- `imbalance_accuracies`: accuracy over the test samples of all / majority / minority classes and,
  when given, of the many / medium / few groups (`ncbench.data.imbalance.count_groups`).
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence

import torch

from ncbench.metrics.collapse import add_class_rows_, check_batch
from ncbench.metrics.statistic import Statistic

DTYPE = torch.float64


def _class_list(classes: Sequence[int] | torch.Tensor, K: int, what: str) -> torch.Tensor:
    idx = torch.as_tensor(classes, dtype=torch.long).flatten()
    if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= K):
        raise ValueError(f"{what} must be class indices in [0, {K - 1}], got {idx.tolist()}")
    if idx.unique().numel() != idx.numel():
        raise ValueError(f"{what} has repeated classes: {idx.tolist()}")
    return idx


def minority_cosine(vectors: torch.Tensor, minority_classes: Sequence[int] | torch.Tensor) -> float:
    """Mean pairwise cosine `(2/(m(m−1))) Σ_{k<k'} cos(v_k, v_k')` over the m minority rows of `(K, d)`.

    Pass classifier rows `W` or the centred means `μ_k − μ_G` (rows). Needs m >= 2 minority classes.
    A zero row has no direction: the result is NaN, with a warning that names the class.
    """
    if vectors.ndim != 2:
        raise ValueError(f"vectors must be (K, d) rows, got shape {tuple(vectors.shape)}")
    idx = _class_list(minority_classes, vectors.shape[0], "minority_classes")
    if idx.numel() < 2:
        raise ValueError(f"minority collapse needs at least 2 minority classes, got {idx.tolist()}")
    V = vectors.detach()[idx.to(vectors.device)].to(DTYPE)
    norms = V.norm(dim=1)
    zero = (norms == 0) | ~torch.isfinite(norms)
    if bool(zero.any()):
        warnings.warn(f"minority_cosine: classes {idx[zero.cpu()].tolist()} have a zero or non-finite "
                      f"vector; the cosine is undefined (NaN)", RuntimeWarning, stacklevel=2)
        return math.nan
    U = V / norms.unsqueeze(1)
    iu = torch.triu_indices(len(idx), len(idx), 1, device=U.device)
    return float((U @ U.T)[iu[0], iu[1]].mean())


def imbalance_accuracies(pred: torch.Tensor, labels: torch.Tensor,
                         minority_classes: Sequence[int] | torch.Tensor,
                         groups: Mapping[str, Sequence[int]] | None = None,
                         num_classes: int | None = None) -> dict[str, float]:
    """Accuracy over all samples, over samples of majority and of minority classes, and per group.

    `pred`: predicted labels `(N,)` or logits `(N, K)` (argmax taken). Majority classes are the
    classes in `[0, K)` not in `minority_classes`, `K = num_classes` (default: logits width, else
    `max(labels, pred) + 1`). Keys `accuracy`, `majority_accuracy`, `minority_accuracy` and
    `{group}_accuracy` for each group (e.g. many / medium / few). A group with no test sample gives
    NaN. Accuracies are per sample, so on a balanced test set they equal the mean per-class accuracy.
    """
    if pred.ndim == 2:
        if num_classes is None:
            num_classes = pred.shape[1]
        pred = pred.argmax(1)
    if pred.ndim != 1 or labels.shape != pred.shape:
        raise ValueError(f"pred must be (N,) labels or (N, K) logits matching labels (N,), got "
                         f"pred {tuple(pred.shape)}, labels {tuple(labels.shape)}")
    labels = labels.to(pred.device).long()
    if num_classes is None:
        num_classes = int(torch.cat([labels, pred.long()]).max()) + 1 if labels.numel() else 0
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes - 1}] (num_classes={num_classes})")
    correct = (pred.long() == labels).to(DTYPE)
    # one pass over samples: correct and total counts per class, then sums over class groups
    hits = torch.bincount(labels, weights=correct, minlength=num_classes).cpu()
    totals = torch.bincount(labels, minlength=num_classes).to(DTYPE).cpu()
    return group_accuracies(hits, totals, minority_classes, groups)


def group_accuracies(hits: torch.Tensor, totals: torch.Tensor, minority_classes: Sequence[int] | torch.Tensor,
                     groups: Mapping[str, Sequence[int]] | None = None) -> dict[str, float]:
    """`imbalance_accuracies` from per-class correct counts `hits (K,)` and sample counts `totals (K,)`:
    accuracy of a set of classes = Σ hits / Σ totals over it (NaN without a sample)."""
    hits, totals = hits.detach().to("cpu", DTYPE), totals.detach().to("cpu", DTYPE)
    num_classes = int(totals.numel())
    minority = _class_list(minority_classes, num_classes, "minority_classes")

    def acc(mask: torch.Tensor) -> float:
        n = float(totals[mask].sum())
        return float(hits[mask].sum()) / n if n > 0 else math.nan

    is_min = torch.zeros(num_classes, dtype=torch.bool)
    is_min[minority] = True
    out = {"accuracy": acc(torch.ones(num_classes, dtype=torch.bool)),
           "majority_accuracy": acc(~is_min), "minority_accuracy": acc(is_min)}
    for name, classes in (groups or {}).items():
        mask = torch.zeros(num_classes, dtype=torch.bool)
        mask[_class_list(classes, num_classes, f"group {name!r}")] = True
        out[f"{name}_accuracy"] = acc(mask)
    return out


def centred_means(sums: torch.Tensor, counts: torch.Tensor, global_mean: str = "class") -> torch.Tensor:
    """Rows `μ_k − μ_G` from class sums `(K, d)` and counts `(K,)`; `μ_G` the mean of class means
    (`class`) or of all samples (`sample`)."""
    if global_mean not in ("class", "sample"):
        raise ValueError(f"global_mean must be 'class' or 'sample', got {global_mean!r}")
    means = sums / counts.clamp_min(1).unsqueeze(1)
    mu_g = means.mean(0) if global_mean == "class" else sums.sum(0) / counts.sum()
    return means - mu_g


class ClassGroupStats(Statistic):
    """Per-class feature sums, counts and the confusion matrix of one split (SPEC §7 probe).

    States (sums): `sums (K, d)` = Σ_{y_i=k} h_i (float64), `counts (K,)`, `confusion (K, K)` with
    rows the labels and columns the predictions `argmax(logits)`. `compute(minority, groups)` gives the
    accuracies by class group (`group_accuracies` on the confusion's diagonal and row sums) and the
    minority cosine of the centred means `μ_k − μ_G` around the class mean and the sample mean."""

    def __init__(self, num_classes: int, dim: int, device: torch.device | str = "cpu"):
        super().__init__()
        K, self.num_classes, self.dim, self.device = num_classes, num_classes, dim, torch.device(device)
        self.add_state("sums", torch.zeros(K, dim, dtype=DTYPE, device=self.device), "sum")
        self.add_state("counts", torch.zeros(K, dtype=DTYPE, device=self.device), "sum")
        self.add_state("confusion", torch.zeros(K, K, dtype=DTYPE, device=self.device), "sum")

    def _constants(self) -> dict:
        return {"num_classes": self.num_classes, "dim": self.dim}

    def _check_compatible(self, other: Statistic) -> None:
        super()._check_compatible(other)
        if (other.num_classes, other.dim) != (self.num_classes, self.dim):
            raise ValueError(f"cannot merge class-group states of (K={other.num_classes}, d={other.dim}) "
                             f"into (K={self.num_classes}, d={self.dim})")

    def update(self, features: torch.Tensor, labels: torch.Tensor, logits: torch.Tensor) -> ClassGroupStats:
        K = self.num_classes
        check_batch(features, labels, K, self.dim, logits)
        f = features.detach().to(self.device, DTYPE)
        y = labels.detach().to(self.device, torch.long)
        pred = logits.detach().to(self.device).argmax(1)
        add_class_rows_(self.sums, y, f)
        self.counts += torch.bincount(y, minlength=K).to(DTYPE)
        self.confusion += torch.bincount(y * K + pred, minlength=K * K).to(DTYPE).view(K, K)
        return self

    def centred_means(self, global_mean: str = "class") -> torch.Tensor:
        """Rows `μ_k − μ_G`; `μ_G` the mean of class means (`class`) or of all samples (`sample`)."""
        return centred_means(self.sums, self.counts, global_mean)

    def accuracies(self, minority_classes, groups: Mapping[str, Sequence[int]] | None = None) -> dict[str, float]:
        """`accuracy`, `majority_accuracy`, `minority_accuracy`, `{group}_accuracy` from the confusion."""
        return group_accuracies(self.confusion.diagonal(), self.confusion.sum(1), minority_classes, groups)

    def compute(self, minority_classes, groups: Mapping[str, Sequence[int]] | None = None) -> dict[str, float]:
        """The accuracies by group plus `minority_feature_cosine` (class mean μ_G) and
        `minority_feature_cosine_sample_mean` (sample mean μ_G)."""
        return {**self.accuracies(minority_classes, groups),
                "minority_feature_cosine": minority_cosine(self.centred_means("class"), minority_classes),
                "minority_feature_cosine_sample_mean": minority_cosine(self.centred_means("sample"),
                                                                       minority_classes)}
