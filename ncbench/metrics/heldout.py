"""Collapse of held-out features around the *train* class means (SPEC §3; Hui, Belkin, Nakkiran 2022).

Each test point is attached to a train mean: its true class (`assign="label"`, strong collapse), the
class the network predicts (`assign="prediction"`, weak collapse), or the nearest train mean
(`assign="ncc"`, the weak variant). The centres are fixed before the pass, so the scatter
Σ (h − μ^train_a)(h − μ^train_a)ᵀ is accumulated exactly in one pass. Reported: `nc1`
= (1/K) Tr(Σ_W^test Σ_B^train⁺), `trace_sw` = Tr Σ_W^test, and `cdnv` with σ̂_k² the mean squared
distance of the points attached to k to μ^train_k and the train class-mean distances.
"""
from __future__ import annotations

import math

import torch

from ncbench.metrics.collapse import (
    DTYPE,
    CollapseStats,
    Workspace,
    between_class_pinv,
    cdnv_pairs,
    check_batch,
    class_mean_sq_distances,
    classifier_bias,
    classifier_weight,
)
from ncbench.metrics.scatter import ScatterAccumulator
from ncbench.metrics.statistic import Statistic

ASSIGNMENTS = ("label", "prediction", "ncc")


class HeldoutStats(Statistic):
    """Streaming test-collapse state around the means of a finished train `CollapseStats`.

    States (all sums): per-class `count` and `m2` = Σ ‖h − μ^train_a‖², the `scatter`, and the
    `nonfinite` (dropped: a non-finite feature) and `unattached` (no train mean) sample counts."""

    def __init__(self, train: CollapseStats, assign: str = "label", weight: torch.Tensor | None = None,
                 bias: torch.Tensor | None = None):
        if assign not in ASSIGNMENTS:
            raise ValueError(f"assign must be one of {ASSIGNMENTS}, got {assign!r}")
        super().__init__()
        if train.dim is None or train.n == 0:
            raise ValueError("held-out collapse needs the train statistics of a completed first pass")
        self.assign = assign
        self.train_fingerprint = train.fingerprint()
        self.means, self.train_count = train.mean.clone(), train.count.clone()
        K, d = self.means.shape
        self.weight = None if weight is None else classifier_weight(weight, K, d, self.means.device)
        self.bias = None if bias is None else classifier_bias(bias, K, self.means.device)
        self.ncc = train.second_pass()
        dev = self.means.device
        self._scatter = ScatterAccumulator(d, dev)
        self._work = Workspace(dev)
        self.add_state("count", torch.zeros(K, dtype=DTYPE, device=dev), "sum")
        self.add_state("m2", torch.zeros(K, dtype=DTYPE, device=dev), "sum")
        self.add_state("scatter", None, "sum")           # kept in `_scatter` (one triangle)
        self.add_state("nonfinite", 0, "sum")
        self.add_state("unattached", 0, "sum")

    def update(self, features: torch.Tensor, labels: torch.Tensor, logits: torch.Tensor | None = None) -> HeldoutStats:
        K, d = self.means.shape
        check_batch(features, labels, K, d, logits)
        x = self._work.cast(features.detach().to(self.means.device))
        y = labels.detach().to(x.device, torch.long)
        if not bool(torch.isfinite(x.sum(1)).all()):            # row sums: non-finite if a row is
            finite = torch.isfinite(x).all(1)
            self.nonfinite += int((~finite).sum())
            x, y = x[finite], y[finite]
            logits = None if logits is None else logits[finite.to(logits.device)]
        if self.assign == "label":
            a = y
        elif self.assign == "ncc":
            a = self.ncc.nearest(x)
        elif logits is not None:
            a = logits.detach().to(x.device).argmax(1)
        elif self.weight is not None:
            z = x @ self.weight.T
            a = (z + self.bias if self.bias is not None else z).argmax(1)
        else:
            raise ValueError("assign='prediction' needs the network's logits or the classifier weight")
        untrained = self.train_count[a] == 0   # no train mean to measure them around: dropped, counted
        if bool(untrained.any()):
            self.unattached += int(untrained.sum())
            x, a = x[~untrained], a[~untrained]
        xc = self._work.centre_(x, self.means, a)
        self.count += torch.bincount(a, minlength=K).to(DTYPE)
        self.m2.index_add_(0, a, torch.linalg.vector_norm(xc, dim=1).square_())
        self._scatter.add(xc)
        return self

    @property
    def scatter(self) -> torch.Tensor:
        """`Σ (h − μ^train_a)(h − μ^train_a)ᵀ` over the attached points `(d, d)`."""
        return self._scatter.full()

    def _check_compatible(self, other: Statistic) -> None:
        super()._check_compatible(other)
        if (other.train_fingerprint, other.assign) != (self.train_fingerprint, self.assign):
            raise ValueError("cannot merge held-out states built on other train means or assignments")

    def _constants(self) -> dict:
        return {"train_fingerprint": self.train_fingerprint, "assign": self.assign}

    def _device(self) -> torch.device:
        return self.means.device

    def _write_states(self, values: dict) -> None:
        scatter = values.pop("scatter", None)
        if scatter is not None:
            self._scatter.reset()
            self._scatter.add_matrix(scatter)
        super()._write_states(values)

    def reset(self) -> HeldoutStats:
        self._scatter.reset()
        return super().reset()

    def compute(self, *, global_mean: str = "class", pinv_tol: float = 1e-10) -> dict[str, float]:
        nan = {"nc1": math.nan, "trace_sw": math.nan, "cdnv": math.nan}
        N = float(self.count.sum())
        if self.nonfinite or N == 0:
            return nan
        present = self.train_count > 0
        Kp = int(present.sum())
        means, tc = self.means[present], self.train_count[present]
        mu_g = means.mean(0) if global_mean == "class" else (tc.unsqueeze(1) * means).sum(0) / tc.sum()
        Mt = means - mu_g
        sigma_w = self.scatter / N
        Vr, inv_lam = between_class_pinv(Mt, pinv_tol)
        nc1 = float(((sigma_w @ Vr) * Vr).sum(0).clamp_min(0) @ inv_lam) / Kp
        if inv_lam.numel() == 0:                               # all train means coincide
            nc1 = math.inf if float(torch.trace(sigma_w)) > 0 else math.nan
        cnt = self.count[present]
        var = self.m2[present] / torch.where(cnt > 0, cnt, torch.nan)   # NaN: nothing attached to k
        V = cdnv_pairs(var, class_mean_sq_distances(Mt))
        iu = torch.triu_indices(Kp, Kp, 1, device=V.device)
        pair_v = V[iu[0], iu[1]]
        return {"nc1": nc1, "trace_sw": float(torch.trace(sigma_w)), "cdnv": float(pair_v.nanmean())}


def test_collapse(train_state: CollapseStats, test_features: torch.Tensor, test_labels: torch.Tensor,
                  logits: torch.Tensor | None = None, weight: torch.Tensor | None = None,
                  bias: torch.Tensor | None = None, *, assign: str = "prediction",
                  global_mean: str = "class", pinv_tol: float = 1e-10) -> dict[str, float]:
    """Strong (true-class) and weak (`assign`: predicted or nearest train mean) test collapse.

    Keys: `strong_nc1`, `strong_trace_sw`, `strong_cdnv`, `weak_nc1`, `weak_trace_sw`, `weak_cdnv`.
    """
    out = {}
    for mode, a in (("strong", "label"), ("weak", assign)):
        hs = HeldoutStats(train_state, a, weight, bias).update(test_features, test_labels, logits)
        out.update({f"{mode}_{k}": v for k, v in hs.compute(global_mean=global_mean, pinv_tol=pinv_tol).items()})
    return out


test_collapse.__test__ = False  # not a pytest test
