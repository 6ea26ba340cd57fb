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

from ncbench.core.metrics import in_section
from ncbench.metrics.scatter import ScatterAccumulator
from ncbench.metrics.statistic import Reduction, Statistic

DTYPE = torch.float64
SPEC_METRICS = in_section("§2")
"""The SPEC §2 metrics, declared (with their formulas, ranges and directions) in `ncbench.core.metrics`."""


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


class ChanReduction(Reduction):
    """Exact merge of (count, mean, m2, scatter) states: the shift of each part's class mean to the
    merged mean enters m2 and the scatter (Chan, Golub & LeVeque 1979), so no part is re-centred.
    `all_reduce` does it for every process at once in two collectives: (counts, sums), then the
    centred (m2, scatter) corrected by `n_k δ_k δ_kᵀ` with `δ_k` the local minus the global mean."""

    NAMES = ("count", "mean", "m2", "scatter")

    def merge(self, mine: dict, theirs: dict) -> dict:
        count, mean, m2, scatter = (mine[k].clone() for k in self.NAMES)
        dev = count.device
        _chan_merge(count, mean, m2, scatter, *(theirs[k].to(dev) for k in self.NAMES))
        return dict(zip(self.NAMES, (count, mean, m2, scatter)))

    def all_reduce(self, mine: dict, group=None) -> dict:
        import torch.distributed as dist

        count_local, mean_local = mine["count"], mine["mean"]
        K, d = mean_local.shape
        sums = mean_local * count_local.unsqueeze(1)
        flat = torch.cat([count_local, sums.reshape(-1)])
        dist.all_reduce(flat, group=group)
        counts, sums = flat[:K], flat[K:].reshape(K, d)
        mean_global = sums / counts.clamp_min(1).unsqueeze(1)
        delta = mean_local - mean_global
        m2 = mine["m2"] + count_local * (delta * delta).sum(1)
        scatter = mine["scatter"] + (delta * count_local.unsqueeze(1)).T @ delta
        flat = torch.cat([m2, scatter.reshape(-1)])
        dist.all_reduce(flat, group=group)
        return {"count": counts.clone(), "mean": mean_global, "m2": flat[:K].clone(),
                "scatter": flat[K:].reshape(d, d).clone()}


CHAN = ChanReduction()


def add_class_rows_(sums: torch.Tensor, labels: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """`sums[labels[i]] += rows[i]` for i in order, in place: `index_add_` along dim 0. On CPU as
    `scatter_add_` over the index expanded to the rows' shape, which adds every element in the same
    order (the same values bit for bit) and splits the columns across the threads: at two threads
    torch's `index_add_` took 4–7 ms a batch of the K = 1,000, d = 2,048 benchmark against 1.4–1.8 ms
    (docs/performance.md, issue 25)."""
    if sums.device.type != "cpu":
        return sums.index_add_(0, labels, rows)
    return sums.scatter_add_(0, labels.unsqueeze(1).expand(-1, rows.shape[1]), rows)


class Workspace:
    """Float64 scratch buffers reused from batch to batch: a fresh allocation of a batch-sized
    buffer costs more in page faults than the pass that fills it."""

    def __init__(self, device: torch.device | str):
        self.device = torch.device(device)
        self._bufs: dict[str, torch.Tensor] = {}

    def get(self, name: str, rows: int, cols: int) -> torch.Tensor:
        """A `(rows, cols)` float64 view of buffer `name` (grown when too small); contents undefined."""
        buf = self._bufs.get(name)
        if buf is None or buf.shape[0] < rows or buf.shape[1] != cols:
            buf = self._bufs[name] = torch.empty(rows, cols, dtype=DTYPE, device=self.device)
        return buf[:rows]

    def cast(self, h: torch.Tensor) -> torch.Tensor:
        """`h` (N, d) as float64 in the reused buffer `x` (overwritten by the next call)."""
        return self.get("x", h.shape[0], h.shape[1]).copy_(h)

    def centre_(self, x: torch.Tensor, centres: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """`x −= centres[idx]` in place (the gathered rows go to a reused buffer); returns `x`."""
        return x.sub_(torch.index_select(centres, 0, idx, out=self.get("c", len(idx), x.shape[1])))


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


class CollapseStats(Statistic):
    """Pass-one state: per-class counts, means, per-class scatter trace and total within scatter.

    Batches are centred on a per-class shift `c_k` (the class mean at the last re-centring, or the
    class's first batch mean) and accumulated as `S_k = Σ (h − c_k)`, `Q_k = Σ ‖h − c_k‖²` and
    `T = Σ (h − c_y)(h − c_y)ᵀ` (one `syrk` per batch). Re-centring folds them into the exact state
    with one rank-K correction, `scatter += T − Σ_k S_k S_kᵀ / n_k`, `m2 += Q − ‖S_k‖²/n_k`,
    `mean = c + S/n` (Chan et al.'s merge with the shift at the old mean). It happens when the state
    is read, and whenever the shift's share of the accumulated second moment (per class, and per
    coordinate of `T`) passes `RECENTRE_SHARE`, which bounds the cancellation to a factor 16.
    Declared states (`Statistic`): `nonfinite` (sum) and `count`, `mean`, `m2`, `scatter`, merged and
    all-reduced together by `ChanReduction`.
    """

    #: Re-centre when ‖S_k‖²/n_k > share·Q_k for a class or Σ_k S_ki²/n_k > share·T_ii for a coordinate.
    RECENTRE_SHARE = 15.0 / 16.0

    def __init__(self, num_classes: int, dim: int | None = None, device: torch.device | str | None = None):
        if num_classes < 2:
            raise ValueError(f"collapse metrics compare classes: need num_classes >= 2, got {num_classes}")
        super().__init__()
        self.num_classes = int(num_classes)
        self.dim = dim
        self.device = torch.device(device) if device is not None else None
        self.add_state("nonfinite", 0, "sum")
        for name in ChanReduction.NAMES:         # stored by `_allocate` / `_set_exact`
            self.add_state(name, None, CHAN)
        if dim is not None:
            self._allocate(dim, self.device or torch.device("cpu"))

    def _allocate(self, dim: int, device: torch.device) -> None:
        K = self.num_classes
        self.dim, self.device = dim, device
        self.count = torch.zeros(K, dtype=DTYPE, device=device)
        self._mean = torch.zeros(K, dim, dtype=DTYPE, device=device)
        self._m2 = torch.zeros(K, dtype=DTYPE, device=device)
        self._scatter = torch.zeros(dim, dim, dtype=DTYPE, device=device)
        self._settled = torch.zeros(K, dtype=DTYPE, device=device)      # count at the last re-centring
        self._shift = torch.zeros(K, dim, dtype=DTYPE, device=device)
        self._has_shift = torch.zeros(K, dtype=torch.bool, device=device)
        self._s = torch.zeros(K, dim, dtype=DTYPE, device=device)
        self._q = torch.zeros(K, dtype=DTYPE, device=device)
        self._t = ScatterAccumulator(dim, device)
        self._work = Workspace(device)
        self._pending = False
        self.recentres = 0                   # how often the shifted sums were folded (diagnostic)

    @property
    def n(self) -> int:
        return int(self.count.sum()) if self.dim is not None else 0

    @property
    def mean(self) -> torch.Tensor:
        """Class means `(K, d)` (zero rows for empty classes)."""
        self._recentre()
        return self._mean

    @property
    def m2(self) -> torch.Tensor:
        """Per-class `Σ ‖h − μ_k‖²` `(K,)`."""
        self._recentre()
        return self._m2

    @property
    def scatter(self) -> torch.Tensor:
        """Within-class scatter `Σ_i (h_i − μ_{y_i})(h_i − μ_{y_i})ᵀ` `(d, d)`."""
        self._recentre()
        return self._scatter

    def update(self, features: torch.Tensor, labels: torch.Tensor, logits: torch.Tensor | None = None) -> CollapseStats:
        """Fold one batch in (logits are checked for shape, for API symmetry, and ignored by pass one)."""
        check_batch(features, labels, self.num_classes, self.dim, logits)
        if self.dim is None:
            self._allocate(features.shape[1], self.device or features.device)
        h = features.detach().to(self.device)
        y = labels.detach().to(self.device, torch.long)
        if h.shape[0] == 0:
            return self
        self._fold(h, y)
        return self

    def _fold(self, h: torch.Tensor, y: torch.Tensor) -> None:
        """Accumulate a batch around the class shifts (cast and centred in one pass into a reused
        float64 buffer); rows with a non-finite feature are counted and dropped."""
        K = self.num_classes
        n_b = torch.bincount(y, minlength=K).to(DTYPE)
        x = self._work.cast(h)
        new = (n_b > 0) & ~self._has_shift
        if bool(new.any()):                  # first sighting of a class: shift = its batch mean
            self._first_shifts(x, y, new)
        xc = self._work.centre_(x, self._shift, y)
        r = torch.linalg.vector_norm(xc, dim=1).square_()   # ‖h − c_y‖²: non-finite if the row is
        if not bool(torch.isfinite(r).all()):
            finite = torch.isfinite(h).all(1)               # exact, on this rare path only
            self.nonfinite += int((~finite).sum())
            xc, y, r = xc[finite], y[finite], r[finite]
            if xc.shape[0] == 0:
                return
            n_b = torch.bincount(y, minlength=K).to(DTYPE)
        add_class_rows_(self._s, y, xc)
        self._q.index_add_(0, y, r)
        self._t.add(xc)
        self.count += n_b
        self._pending = True
        if self._shift_share_too_large():
            self._recentre()

    def _shift_share_too_large(self) -> bool:
        """Whether the shift's part of the pending moments, `off = S² / n` (K, d), summed over a class
        (row) or over the classes (column), passes `RECENTRE_SHARE` of that class's `Σ‖h − c‖²` or of
        that coordinate of `T`. `off` lives in one reused buffer: a fresh K·d temporary per batch cost
        more than the batch's own elementwise work at K = 1000 (same values as allocating it)."""
        n_p = (self.count - self._settled).clamp_min(1)
        off = torch.mul(self._s, self._s, out=self._work.get("off", *self._s.shape))
        off.div_(n_p.unsqueeze(1))
        return bool((off.sum(1) > self.RECENTRE_SHARE * self._q).any()
                    or (off.sum(0) > self.RECENTRE_SHARE * self._t.diagonal()).any())

    def _first_shifts(self, x: torch.Tensor, y: torch.Tensor, new: torch.Tensor) -> None:
        """Shift of each class in `new` := its mean in this batch, over the batch's finite rows."""
        K = self.num_classes
        sums = add_class_rows_(torch.zeros(K, self.dim, dtype=DTYPE, device=x.device), y, x)
        n = torch.bincount(y, minlength=K).to(DTYPE)
        if not bool(torch.isfinite(sums[new]).all()):       # a non-finite row: sum the finite ones
            ok = torch.isfinite(x).all(1)
            sums = add_class_rows_(torch.zeros_like(sums), y[ok], x[ok])
            n = torch.bincount(y[ok], minlength=K).to(DTYPE)
        new = new & (n > 0)
        self._shift[new] = sums[new] / n[new].unsqueeze(1)
        self._has_shift |= new

    def _recentre(self) -> None:
        """Fold the shifted sums into the exact (count, mean, m2, scatter) state; shift := mean."""
        if not self._pending:
            return
        self.recentres += 1
        inv_n = torch.where(self.count > 0, 1.0 / self.count.clamp_min(1), 0.0)
        s_scaled = self._s * inv_n.unsqueeze(1)             # S_k / n_k
        self._scatter += self._t.full()
        self._scatter -= s_scaled.T @ self._s              # Σ_k S_k S_kᵀ / n_k
        self._m2 += self._q - (s_scaled * self._s).sum(1)
        seen = self.count > 0
        self._mean[seen] = self._shift[seen] + s_scaled[seen]
        self._shift[seen] = self._mean[seen]
        self._settled.copy_(self.count)
        self._s.zero_()
        self._q.zero_()
        self._t.reset()
        self._pending = False

    def _set_exact(self, count, mean, m2, scatter) -> None:
        """Replace the state by an exact one (no pending sums); the shifts move to the means."""
        self.count, self._mean, self._m2, self._scatter = count, mean, m2, scatter
        self._settled = count.clone()
        self._has_shift = count > 0
        self._shift = mean.clone()
        self._s.zero_()
        self._q.zero_()
        self._t.reset()
        self._pending = False

    def merge(self, other: CollapseStats) -> CollapseStats:
        """Fold another state (e.g. another shard of the same split) into this one."""
        if other.dim is None:
            return self
        if self.dim is None:
            self._check_compatible(other)
            self._allocate(other.dim, other.device)
        return super().merge(other)

    def _check_compatible(self, other: Statistic) -> None:
        super()._check_compatible(other)
        if other.num_classes != self.num_classes or (self.dim is not None and other.dim != self.dim):
            raise ValueError(f"cannot merge states of (K={other.num_classes}, d={other.dim}) into "
                             f"(K={self.num_classes}, d={self.dim})")

    def all_reduce(self, group=None) -> CollapseStats:
        """Combine the states of all processes exactly (gloo or NCCL): after it, every rank holds the
        state of the whole data set. Sums are reduced; each rank's mean shift enters its scatter."""
        if self.dim is None:
            raise ValueError("all_reduce needs the feature dimension: pass dim= when a rank may see no batch")
        return super().all_reduce(group)

    def _write_states(self, values: dict) -> None:
        if "nonfinite" in values:
            self.nonfinite = int(values["nonfinite"])
        if "count" in values:
            self._set_exact(values["count"], values["mean"], values["m2"], values["scatter"])

    def _constants(self) -> dict:
        return {"num_classes": self.num_classes, "dim": self.dim}

    def _states(self, names=None) -> dict:
        if self.dim is None:      # nothing allocated yet: only the counter exists
            return {"nonfinite": self.nonfinite}
        return super()._states(names)

    def load_state_dict(self, state: dict) -> CollapseStats:
        if int(state["num_classes"]) != self.num_classes:
            raise ValueError(f"load_state_dict: the state has num_classes={state['num_classes']}, "
                             f"this statistic {self.num_classes}")
        self.nonfinite = int(state.get("nonfinite", 0))
        if state.get("dim") is not None:
            mean = state["mean"]
            self._allocate(int(state["dim"]), mean.device)
            self._set_exact(state["count"].clone(), mean.clone(), state["m2"].clone(), state["scatter"].clone())
        return self

    def reset(self) -> CollapseStats:
        """Back to no sample seen (the dimension and device are kept)."""
        self.nonfinite = 0
        if self.dim is not None:
            self._allocate(self.dim, self.device)
        return self

    @classmethod
    def from_state_dict(cls, state: dict) -> CollapseStats:
        return cls(state["num_classes"]).load_state_dict(state)

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
            W = classifier_weight(weight, self.num_classes, self.dim, Mt.device)[present]
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


class NearestCentrePass(Statistic):
    """Pass two: nearest-class-centre decisions around fixed means (SPEC §2 `nc4`, `ncc_acc`).

    The network prediction is `argmax(logits)` when logits are given to `update`, else
    `argmax(W h + b)` from the classifier given here; without either, `nc4` is NaN.
    States: the sample counters `COUNTERS` (sums). One GEMM per batch against the stacked `[μ; 1; W]` gives `⟨h, μ_k⟩ − ‖μ_k‖²/2` (whose argmax
    is `argmin_k ‖h − μ_k‖`), the row sum (non-finite iff the row is) and the logits `W h + b`.
    """

    COUNTERS = ("seen", "correct", "agree", "with_prediction", "nonfinite_predictions")

    def __init__(self, means: torch.Tensor, counts: torch.Tensor, weight=None, bias=None):
        super().__init__()
        self.means = means.detach().clone()
        self.counts = counts.detach().clone()
        self.fingerprint = fingerprint(self.means, self.counts)
        K, d = self.means.shape
        self.weight = None if weight is None else classifier_weight(weight, K, d, means.device)
        self.bias = None if bias is None else classifier_bias(bias, K, means.device)
        self._absent = self.counts == 0
        self._sq = (self.means * self.means).sum(1)
        half_sq = torch.where(self._absent, math.inf, 0.5 * self._sq)
        zero = torch.zeros(1, dtype=DTYPE, device=means.device)
        rows = [self.means, torch.ones(1, d, dtype=DTYPE, device=means.device)]
        offset = [-half_sq, zero]
        if self.weight is not None:
            rows.append(self.weight)
            offset.append(self.bias if self.bias is not None else torch.zeros(K, dtype=DTYPE, device=means.device))
        self._stack = torch.cat(rows).T.contiguous()       # (d, K + 1 [+ K]): [μ; 1; W]ᵀ
        self._offset = torch.cat(offset)
        self._work = Workspace(means.device)
        for name in self.COUNTERS:
            self.add_state(name, 0, "sum")

    def _scores(self, x: torch.Tensor, with_classifier: bool) -> torch.Tensor:
        """`(B, K + 1 [+ K])`: `⟨h, μ_k⟩ − ‖μ_k‖²/2`, the row sum of h, [`W h + b`], one GEMM."""
        K = self.means.shape[0]
        cols = self._stack.shape[1] if with_classifier else K + 1
        return torch.addmm(self._offset[:cols], x, self._stack[:, :cols])

    def nearest(self, x: torch.Tensor) -> torch.Tensor:
        """argmin_k ‖x − μ_k‖ over the classes that have a mean."""
        return self._scores(x, False)[:, :self.means.shape[0]].argmax(1)

    def update(self, features: torch.Tensor, labels: torch.Tensor, logits: torch.Tensor | None = None) -> NearestCentrePass:
        K, d = self.means.shape
        check_batch(features, labels, K, d, logits)
        h = features.detach().to(self.means.device)
        x = self._work.cast(h)
        y = labels.detach().to(x.device, torch.long)
        z = self._scores(x, logits is None and self.weight is not None)
        if not bool(torch.isfinite(z[:, K]).all()):         # the row sums: non-finite if a row is
            finite = torch.isfinite(x).all(1)
            z, y = z[finite], y[finite]
            if logits is not None:
                logits = logits.detach().to(x.device)[finite]
        ncc = z[:, :K].argmax(1)
        self.seen += int(y.numel())
        self.correct += int((ncc == y).sum())
        if logits is not None:
            zp = logits.detach().to(x.device)
        elif self.weight is not None:
            zp = z[:, K + 1:]
        else:
            return self
        self.nonfinite_predictions += int((~torch.isfinite(zp).all(1)).sum())
        pred = zp.argmax(1)
        self.with_prediction += int(y.numel())
        self.agree += int((pred == ncc).sum())
        return self

    def _check_compatible(self, other: Statistic) -> None:
        super()._check_compatible(other)
        if other.fingerprint != self.fingerprint:
            raise ValueError("cannot merge second passes built on different class means")

    def _device(self) -> torch.device:
        return self.means.device

    def _constants(self) -> dict:
        return {"fingerprint": self.fingerprint}

    def compute(self) -> dict[str, float]:
        """`{"ncc_acc", "nc4"}` of the samples seen so far."""
        return {"ncc_acc": self.ncc_acc(), "nc4": self.nc4()}

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


def classifier_weight(weight: torch.Tensor, K: int, d: int, device) -> torch.Tensor:
    """`weight` as the (K, d) float64 classifier `W` on `device`; ValueError naming the shape otherwise."""
    W = weight.detach().to(device, DTYPE)
    if W.shape != (K, d):
        raise ValueError(f"classifier weight must be (num_classes, d) = ({K}, {d}), got {tuple(W.shape)}")
    return W


def classifier_bias(bias: torch.Tensor, K: int, device) -> torch.Tensor:
    """`bias` as the (K,) float64 classifier bias `b` on `device`; ValueError naming the shape otherwise."""
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
