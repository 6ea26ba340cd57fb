"""Streaming neural-collapse statistics and the SPEC §2 metrics (Papyan, Han, Donoho 2020).

Pass one (`CollapseStats.update`) folds batches into per-class counts, means and the within-class
scatter with the pairwise update of Chan, Golub & LeVeque (1979): a batch's scatter around its own
class means plus the correction `n_a n_b/(n_a+n_b) δδᵀ` for the shift of each mean. This gives the
two-pass (means, then scatter around the means) numbers to ~1e-12 relative without storing features
and without the cancelling one-pass identity `E‖h‖² − ‖μ‖²`. Pass two (`NearestCentrePass`) needs the
final means (NC4, NCC accuracy); it carries a fingerprint of those means and `compute` refuses a
pass two built on other means. All sums are float64 on the features' device; batches may come in
any class order; distributed runs reduce the state, never the samples.
"""
from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field

import torch

DTYPE = torch.float64
SPEC_METRICS = ("nc1", "nc1_quotient", "equinorm_h", "equinorm_w", "equiangular_h",
                "equiangular_w", "etf_error_h", "etf_error_w", "nc3", "nc4", "ncc_acc", "cdnv")


def fingerprint(means: torch.Tensor, counts: torch.Tensor) -> str:
    """SHA-1 of the class means and counts: identifies the means a second pass was built on."""
    h = hashlib.sha1(means.detach().to("cpu", DTYPE).contiguous().numpy().tobytes())
    h.update(counts.detach().to("cpu", DTYPE).contiguous().numpy().tobytes())
    return h.hexdigest()


def check_batch(features: torch.Tensor, labels: torch.Tensor, num_classes: int,
                dim: int | None, logits: torch.Tensor | None = None) -> None:
    """Shape and label-range checks with errors that name the argument and the shapes."""
    wrong = [f"{n} is a {type(t).__name__}" for n, t in (("features", features), ("labels", labels),
                                                           ("logits", logits))
             if t is not None and not isinstance(t, torch.Tensor)]
    if wrong:
        raise ValueError(f"expected torch.Tensor inputs: {', '.join(wrong)}")
    if features.ndim != 2:
        raise ValueError(f"features must be a 2-D (N, d) tensor, got shape {tuple(features.shape)}")
    if labels.ndim != 1 or labels.shape[0] != features.shape[0]:
        raise ValueError(f"labels must be 1-D with one entry per feature row: features "
                         f"{tuple(features.shape)}, labels {tuple(labels.shape)}")
    if dim is not None and features.shape[1] != dim:
        raise ValueError(f"feature dimension changed: state has d={dim}, batch has d={features.shape[1]}")
    if labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise ValueError(f"labels must be integers, got {labels.dtype}")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes - 1}] (num_classes={num_classes}); "
                         f"got range [{int(labels.min())}, {int(labels.max())}]")
    if logits is not None and (logits.ndim != 2 or tuple(logits.shape) != (features.shape[0], num_classes)):
        raise ValueError(f"logits must be (N, num_classes) = ({features.shape[0]}, {num_classes}), got "
                         f"{tuple(logits.shape)} (features {tuple(features.shape)})")


def _chan_merge(count, mean, m2, scatter, n_b, mean_b, m2_b, scatter_b):
    """Merge (count, mean, m2, scatter) with another state in place (Chan et al. 1979)."""
    present = n_b > 0
    if not bool(present.any()):
        return
    n_a = count[present]
    nb = n_b[present]
    n = n_a + nb
    delta = mean_b[present] - mean[present]
    corr = n_a * nb / n
    mean[present] += delta * (nb / n).unsqueeze(1)
    m2[present] += m2_b[present] + corr * (delta * delta).sum(1)
    scatter += scatter_b + (delta * corr.unsqueeze(1)).T @ delta
    count[present] = n


class CollapseMetrics(dict):
    """The SPEC §2 metrics as a plain `{name: float}` dict, plus `reasons` (why a value is NaN or
    inf: one sentence each, naming the metrics) and `diagnostics` (counts behind the reasons)."""

    def __init__(self, metrics: dict[str, float], reasons: list[str] | None = None,
                 diagnostics: dict[str, float] | None = None):
        super().__init__(metrics)
        self.reasons = list(reasons or [])
        self.diagnostics = dict(diagnostics or {})


@dataclass
class CollapseResult:
    """Metric values (SPEC names) plus diagnostics explaining NaN/inf values."""

    metrics: dict[str, float]
    diagnostics: dict[str, float] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)
    cdnv_matrix: torch.Tensor | None = None

    def as_metrics(self) -> CollapseMetrics:
        """The metrics as a dict that keeps `reasons` and `diagnostics`."""
        return CollapseMetrics(self.metrics, self.reasons, self.diagnostics)


class CollapseStats:
    """Pass-one state: per-class counts, means, per-class scatter trace and total within scatter."""

    def __init__(self, num_classes: int, dim: int | None = None, device: torch.device | str | None = None):
        if num_classes < 2:
            raise ValueError(f"collapse metrics compare classes: need num_classes >= 2, got {num_classes}")
        self.num_classes = int(num_classes)
        self.dim = dim
        self.device = torch.device(device) if device is not None else None
        self.nonfinite = 0
        if dim is not None:
            self._allocate(dim, self.device or torch.device("cpu"))

    def _allocate(self, dim: int, device: torch.device) -> None:
        K = self.num_classes
        self.dim, self.device = dim, device
        self.count = torch.zeros(K, dtype=DTYPE, device=device)
        self.mean = torch.zeros(K, dim, dtype=DTYPE, device=device)
        self.m2 = torch.zeros(K, dtype=DTYPE, device=device)
        self.scatter = torch.zeros(dim, dim, dtype=DTYPE, device=device)

    @property
    def n(self) -> int:
        return int(self.count.sum()) if self.dim is not None else 0

    def update(self, features: torch.Tensor, labels: torch.Tensor, logits: torch.Tensor | None = None) -> CollapseStats:
        """Fold one batch in (logits are checked for shape, for API symmetry, and ignored by pass one)."""
        check_batch(features, labels, self.num_classes, self.dim, logits)
        if self.dim is None:
            self._allocate(features.shape[1], self.device or features.device)
        x = features.detach().to(self.device, DTYPE)
        y = labels.detach().to(self.device, torch.long)
        finite = torch.isfinite(x).all(1)
        if not bool(finite.all()):
            self.nonfinite += int((~finite).sum())
            x, y = x[finite], y[finite]
        if x.shape[0] == 0:
            return self
        K = self.num_classes
        n_b = torch.bincount(y, minlength=K).to(DTYPE)
        sums = torch.zeros(K, self.dim, dtype=DTYPE, device=x.device).index_add_(0, y, x)
        mean_b = sums / n_b.clamp_min(1).unsqueeze(1)
        xc = x - mean_b[y]
        m2_b = torch.zeros(K, dtype=DTYPE, device=x.device).index_add_(0, y, (xc * xc).sum(1))
        _chan_merge(self.count, self.mean, self.m2, self.scatter, n_b, mean_b, m2_b, xc.T @ xc)
        return self

    def merge(self, other: CollapseStats) -> CollapseStats:
        """Fold another state (e.g. another shard of the same split) into this one."""
        if other.dim is None:
            return self
        if other.num_classes != self.num_classes or (self.dim is not None and other.dim != self.dim):
            raise ValueError(f"cannot merge states of (K={other.num_classes}, d={other.dim}) into "
                             f"(K={self.num_classes}, d={self.dim})")
        if self.dim is None:
            self._allocate(other.dim, other.device)
        self.nonfinite += other.nonfinite
        dev = self.device
        _chan_merge(self.count, self.mean, self.m2, self.scatter, other.count.to(dev),
                    other.mean.to(dev), other.m2.to(dev), other.scatter.to(dev))
        return self

    def all_reduce(self, group=None) -> CollapseStats:
        """Combine the states of all processes exactly (gloo or NCCL): after it, every rank holds the
        state of the whole data set. Sums are reduced; each rank's mean shift enters its scatter."""
        import torch.distributed as dist

        if self.dim is None:
            raise ValueError("all_reduce needs the feature dimension: pass dim= when a rank may see no batch")
        count_local, mean_local = self.count, self.mean
        counts = count_local.clone()
        sums = mean_local * count_local.unsqueeze(1)
        extra = torch.tensor([float(self.nonfinite)], dtype=DTYPE, device=self.device)
        for t in (counts, sums, extra):
            dist.all_reduce(t, group=group)
        mean_global = sums / counts.clamp_min(1).unsqueeze(1)
        delta = mean_local - mean_global
        m2 = self.m2 + count_local * (delta * delta).sum(1)
        scatter = self.scatter + (delta * count_local.unsqueeze(1)).T @ delta
        dist.all_reduce(m2, group=group)
        dist.all_reduce(scatter, group=group)
        self.count, self.mean, self.m2, self.scatter = counts, mean_global, m2, scatter
        self.nonfinite = int(extra.item())
        return self

    # -- pass two --------------------------------------------------------------------------
    def fingerprint(self) -> str:
        return fingerprint(self.mean, self.count)

    def second_pass(self, weight: torch.Tensor | None = None, bias: torch.Tensor | None = None) -> NearestCentrePass:
        """A pass-two accumulator (NCC accuracy, NC4) around this state's current means."""
        if self.dim is None or self.n == 0:
            raise ValueError("second_pass needs a first pass over at least one finite sample")
        return NearestCentrePass(self.mean, self.count, weight, bias)

    # -- metrics ---------------------------------------------------------------------------
    def compute(self, second: NearestCentrePass | None = None, weight: torch.Tensor | None = None,
                bias: torch.Tensor | None = None, *, global_mean: str = "class",
                pinv_tol: float = 1e-10, cdnv_matrix: bool = False) -> CollapseResult:
        """All SPEC §2 metrics. `weight` (K×d) is the last-layer classifier acting on these features."""
        if global_mean not in ("class", "sample"):
            raise ValueError(f"global_mean must be 'class' or 'sample', got {global_mean!r}")
        nan = {m: math.nan for m in SPEC_METRICS}
        if self.dim is None:
            return CollapseResult(nan, reasons=["no samples were seen"])
        if self.nonfinite:
            return CollapseResult(nan, {"nonfinite_samples": float(self.nonfinite)},
                                  [(f"{self.nonfinite} samples had non-finite (NaN/inf) features: "
                                    "training probably diverged; metrics are NaN")])
        present = self.count > 0
        Kp = int(present.sum())
        diag = {"classes_present": float(Kp), "empty_classes": float(self.num_classes - Kp)}
        reasons = []
        if Kp < self.num_classes:
            reasons.append(f"{self.num_classes - Kp} classes have no sample; metrics use the {Kp} present")
        if Kp < 2:
            return CollapseResult(nan, diag, reasons + ["fewer than 2 classes have samples"])
        counts, means = self.count[present], self.mean[present]
        N = counts.sum()
        mu_g = means.mean(0) if global_mean == "class" else (counts.unsqueeze(1) * means).sum(0) / N
        Mt = means - mu_g                                      # rows: μ_k − μ_G  (M̃ᵀ)
        sigma_w = self.scatter / N
        out: dict[str, float] = {}
        Vr, inv_lam = between_class_pinv(Mt, pinv_tol)
        out["nc1"] = float(((sigma_w @ Vr) * Vr).sum(0).clamp_min(0) @ inv_lam) / Kp
        if inv_lam.numel() == 0:                               # Σ_B = 0: no class is separated
            out["nc1"] = math.inf if float(self.m2[present].sum()) > 0 else math.nan
            reasons.append("all class means coincide (Σ_B = 0): nc1 and nc1_quotient are inf (NaN without "
                           "within-class spread); equinorm_h, equiangular_h, etf_error_h and nc3 are undefined")
        tr_sb = float((Mt * Mt).sum()) / Kp
        tr_sw = float(self.m2[present].sum() / N)
        out["nc1_quotient"] = tr_sw / tr_sb if tr_sb > 0 else math.inf
        out["equinorm_h"], out["equiangular_h"], out["etf_error_h"] = simplex_geometry(Mt)
        if weight is not None:
            W = _classifier(weight, self.num_classes, self.dim, Mt.device)[present]
            if bool(torch.isfinite(W).all()):
                out["equinorm_w"], out["equiangular_w"], out["etf_error_w"] = simplex_geometry(W)
                out["nc3"] = self_duality(W, Mt)
            else:
                out.update(equinorm_w=math.nan, equiangular_w=math.nan, etf_error_w=math.nan, nc3=math.nan)
                reasons.append("the classifier weight has non-finite (NaN/inf) entries: equinorm_w, "
                               "equiangular_w, etf_error_w and nc3 are NaN")
        else:
            out.update(equinorm_w=math.nan, equiangular_w=math.nan, etf_error_w=math.nan, nc3=math.nan)
            reasons.append("no classifier weight given: equinorm_w, equiangular_w, etf_error_w and nc3 are NaN")
        if second is not None:
            if second.fingerprint != self.fingerprint():
                raise ValueError("the second pass was built on other class means than this state's: "
                                 "create it with stats.second_pass() after the first pass is complete")
            out["nc4"], out["ncc_acc"] = second.nc4(), second.ncc_acc()
            reasons += second.reasons()
        else:
            out["nc4"] = out["ncc_acc"] = math.nan
            reasons.append("no second pass given: nc4 and ncc_acc are NaN")
        d2_all = class_mean_sq_distances(Mt)
        V = cdnv_pairs(self.m2[present] / counts, d2_all)
        iu = torch.triu_indices(Kp, Kp, 1, device=V.device)
        pair_v = V[iu[0], iu[1]]
        n_inf = int(torch.isinf(pair_v).sum())
        out["cdnv"] = float(pair_v.mean())
        diag["cdnv_coincident_pairs"] = float(n_inf)
        if n_inf:
            reasons.append(f"{n_inf} class pairs have identical means: their CDNV is inf, so cdnv is inf")
        d2 = d2_all[iu[0], iu[1]]
        diag["trace_sigma_w"], diag["trace_sigma_b"] = tr_sw, tr_sb
        diag["min_sq_mean_distance"], diag["mean_sq_mean_distance"] = float(d2.min()), float(d2.mean())
        unexplained = [m for m in SPEC_METRICS if not math.isfinite(out[m])
                       and not any(re.search(rf"\b{m}\b", r) for r in reasons)]
        if unexplained:  # e.g. a centred class mean or classifier row of zero norm (no direction)
            reasons.append(f"{', '.join(unexplained)}: not finite (degenerate geometry, e.g. a class mean at the "
                           f"global mean or a zero classifier row)")
        result = CollapseResult({m: out[m] for m in SPEC_METRICS}, diag, reasons)
        if cdnv_matrix:
            full = torch.full((self.num_classes, self.num_classes), math.nan, dtype=DTYPE, device=V.device)
            idx = present.nonzero().squeeze(1)
            full[idx.unsqueeze(1), idx.unsqueeze(0)] = V
            result.cdnv_matrix = full
        return result

    def class_variances(self) -> torch.Tensor:
        """σ_k² = (1/n_k) Σ ‖h_i − μ_k‖² (NaN for empty classes)."""
        return self.m2 / torch.where(self.count > 0, self.count, torch.nan)

    def state_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("num_classes", "dim", "nonfinite", "count", "mean", "m2", "scatter")
                if hasattr(self, k)}

    @classmethod
    def from_state_dict(cls, state: dict) -> CollapseStats:
        s = cls(state["num_classes"])
        for k, v in state.items():
            setattr(s, k, v)
        s.device = s.mean.device if hasattr(s, "mean") else None
        return s


class NearestCentrePass:
    """Pass two: nearest-class-centre decisions around fixed means (SPEC §2 `nc4`, `ncc_acc`).

    The network prediction is `argmax(logits)` when logits are given to `update`, else
    `argmax(W h + b)` from the classifier given here; without either, `nc4` is NaN.
    """

    def __init__(self, means: torch.Tensor, counts: torch.Tensor, weight=None, bias=None):
        self.means = means.detach().clone()
        self.counts = counts.detach().clone()
        self.fingerprint = fingerprint(self.means, self.counts)
        K, d = self.means.shape
        self.weight = None if weight is None else _classifier(weight, K, d, means.device)
        self.bias = None if bias is None else _bias(bias, K, means.device)
        self._absent = self.counts == 0
        self._sq = (self.means * self.means).sum(1)
        self.seen = self.correct = self.agree = self.with_prediction = self.nonfinite_predictions = 0

    def nearest(self, x: torch.Tensor) -> torch.Tensor:
        """argmin_k ‖x − μ_k‖ over the classes that have a mean."""
        d2 = self._sq.unsqueeze(0) - 2.0 * (x @ self.means.T)
        d2[:, self._absent] = math.inf
        return d2.argmin(1)

    def update(self, features: torch.Tensor, labels: torch.Tensor, logits: torch.Tensor | None = None) -> NearestCentrePass:
        K, d = self.means.shape
        check_batch(features, labels, K, d, logits)
        x = features.detach().to(self.means.device, DTYPE)
        y = labels.detach().to(x.device, torch.long)
        finite = torch.isfinite(x).all(1)
        x, y = x[finite], y[finite]
        if logits is not None:
            logits = logits.detach().to(x.device)[finite]
        ncc = self.nearest(x)
        self.seen += int(y.numel())
        self.correct += int((ncc == y).sum())
        if logits is not None:
            z = logits
        elif self.weight is not None:
            z = x @ self.weight.T
            z = z + self.bias if self.bias is not None else z
        else:
            return self
        self.nonfinite_predictions += int((~torch.isfinite(z).all(1)).sum())
        pred = z.argmax(1)
        self.with_prediction += int(y.numel())
        self.agree += int((pred == ncc).sum())
        return self

    def merge(self, other: NearestCentrePass) -> NearestCentrePass:
        if other.fingerprint != self.fingerprint:
            raise ValueError("cannot merge second passes built on different class means")
        for k in ("seen", "correct", "agree", "with_prediction", "nonfinite_predictions"):
            setattr(self, k, getattr(self, k) + getattr(other, k))
        return self

    def all_reduce(self, group=None) -> NearestCentrePass:
        import torch.distributed as dist

        t = torch.tensor([self.seen, self.correct, self.agree, self.with_prediction, self.nonfinite_predictions],
                         dtype=DTYPE, device=self.means.device)
        dist.all_reduce(t, group=group)
        self.seen, self.correct, self.agree, self.with_prediction, self.nonfinite_predictions = (
            int(v) for v in t.tolist())
        return self

    def ncc_acc(self) -> float:
        return self.correct / self.seen if self.seen else math.nan

    def nc4(self) -> float:
        if not self.with_prediction or self.nonfinite_predictions:
            return math.nan
        return 1.0 - self.agree / self.with_prediction

    def reasons(self) -> list[str]:
        """Why `nc4` / `ncc_acc` are NaN, if they are."""
        out = []
        if not self.seen:
            out.append("the second pass saw no finite sample: ncc_acc and nc4 are NaN")
        elif not self.with_prediction:
            out.append("no network prediction (pass weight= or logits=): nc4 is NaN")
        if self.nonfinite_predictions:
            out.append(f"{self.nonfinite_predictions} samples have non-finite (NaN/inf) logits or classifier "
                       f"outputs (weight/bias): nc4 is NaN")
        return out


def _classifier(weight: torch.Tensor, K: int, d: int, device) -> torch.Tensor:
    W = weight.detach().to(device, DTYPE)
    if W.shape != (K, d):
        raise ValueError(f"classifier weight must be (num_classes, d) = ({K}, {d}), got {tuple(W.shape)}")
    return W


def _bias(bias: torch.Tensor, K: int, device) -> torch.Tensor:
    b = bias.detach().to(device, DTYPE)
    if b.shape != (K,):
        raise ValueError(f"classifier bias must have shape (num_classes,) = ({K},), got {tuple(b.shape)}")
    return b


def between_class_pinv(Mt: torch.Tensor, tol: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigenpairs of Σ_B = M̃M̃ᵀ/K kept for its pseudo-inverse: λ > tol·λ_max, at most min(K−1, d).

    Computed from the thin SVD of M̃ (no squaring of the condition number); returns (V_r, 1/λ_r).
    """
    K, d = Mt.shape
    _, s, vh = torch.linalg.svd(Mt, full_matrices=False)
    lam = s * s / K
    keep = lam > tol * lam.max() if float(lam.max()) > 0 else torch.zeros_like(lam, dtype=torch.bool)
    keep[min(K - 1, d):] = False
    return vh[keep].T, 1.0 / lam[keep]


def simplex_geometry(rows: torch.Tensor) -> tuple[float, float, float]:
    """(equinorm, equiangular, etf_error) of K vectors (rows), SPEC §2 / Papyan et al. 2020."""
    K = rows.shape[0]
    norms = rows.norm(dim=1)
    equinorm = float(norms.std(unbiased=True) / norms.mean())
    G = rows @ rows.T
    cos = G / (norms.unsqueeze(1) * norms.unsqueeze(0))
    off = ~torch.eye(K, dtype=torch.bool, device=rows.device)
    equiangular = float((cos[off] + 1.0 / (K - 1)).abs().mean())
    target = (torch.eye(K, dtype=DTYPE, device=rows.device) - 1.0 / K) / math.sqrt(K - 1)
    etf_error = float(torch.linalg.norm(G / torch.linalg.norm(G) - target))
    return equinorm, equiangular, etf_error


def self_duality(W: torch.Tensor, Mt: torch.Tensor) -> float:
    """NC3: ‖Wᵀ/‖W‖_F − M̃/‖M̃‖_F‖_F² (rows of W against rows of M̃ᵀ)."""
    return float(((W / torch.linalg.norm(W) - Mt / torch.linalg.norm(Mt)) ** 2).sum())


def class_mean_sq_distances(Mt: torch.Tensor, rel_cancel: float = 1e-4, chunk: int = 65536) -> torch.Tensor:
    """‖μ_i − μ_j‖² for all pairs: from the Gram matrix, except pairs whose distance is small against
    the means' norms (where the Gram form cancels), recomputed from the differences directly."""
    sq = (Mt * Mt).sum(1)
    d2 = (sq.unsqueeze(1) + sq.unsqueeze(0) - 2.0 * (Mt @ Mt.T)).clamp_min(0)
    suspect = torch.triu(d2 < rel_cancel * (sq.unsqueeze(1) + sq.unsqueeze(0)), 1).nonzero()
    for s in range(0, suspect.shape[0], chunk):  # chunks of pairs, not a loop over pairs
        i, j = suspect[s:s + chunk, 0], suspect[s:s + chunk, 1]
        exact = ((Mt[i] - Mt[j]) ** 2).sum(1)
        d2[i, j] = exact
        d2[j, i] = exact
    d2.fill_diagonal_(0.0)
    return d2


def cdnv_pairs(var: torch.Tensor, d2: torch.Tensor) -> torch.Tensor:
    """V(i,j) = (σ_i²+σ_j²) / (2‖μ_i−μ_j‖²) for all pairs (Galanti et al. 2021), diagonal 0.

    `d2`: the squared mean distances from `class_mean_sq_distances`; identical means give V = inf.
    """
    num = var.unsqueeze(1) + var.unsqueeze(0)
    V = num / (2.0 * d2)
    V[d2 == 0] = math.inf
    V.fill_diagonal_(0.0)
    return V
