"""Few-shot evaluation of frozen features, every episode at once (SPEC §6).

- `ncc_accuracy`: nearest class centre (Galanti et al. 2022; the prototype rule of Snell et al.
  2017): prototypes `p_c = mean of the k support features of class c`, a query goes to
  `argmin_c ‖h − p_c‖²`; per-episode accuracy over its `n·q` queries.
- `logistic_probe_accuracy`: multinomial logistic regression on L2-normalised features, fitted
  per episode on the support set (Tian et al. 2020), all episodes in one batched solver.
- `episode_cdnv`: SPEC §2 `cdnv` of each episode's `n` classes over its support + query samples.
- `mean_ci95`: mean and the 95% half-width `1.96·std/√E` (SPEC §6).
- `spearman_cdnv_error`: Spearman ρ across episodes between episode CDNV and episode error
  (Galanti et al.: few-shot error grows with the CDNV of the new classes).

NCC accuracy on CPU runs the fused kernel of `ncc_kernel` (numba); elsewhere, and for the other
measures, episodes are processed in chunks that keep the gathered `(chunk, n, k+q, d)` block under
`FEATURE_BUDGET` elements (cache-sized on CPU); features may live on CPU or GPU, the episodes'
index tensors are moved to them.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch

from ncbench.fewshot.episodes import Episodes

#: Elements of gathered episode features held at once.
FEATURE_BUDGET = 1 << 20


def _check(features: torch.Tensor, episodes: Episodes) -> None:
    if features.ndim != 2:
        raise ValueError(f"features must be (N, d), got shape {tuple(features.shape)}")
    top = int(max(episodes.support.max(), episodes.query.max()))
    if top >= features.shape[0]:
        raise ValueError(f"episodes index sample {top} but features have {features.shape[0]} rows: "
                         "draw the episodes from the labels of these features")
    low = int(min(episodes.support.min(), episodes.query.min()))
    if low < 0:
        raise ValueError(f"episodes index sample {low}: indices must be >= 0 (draw the episodes with "
                         "sample_episodes)")


def _chunks(features: torch.Tensor, episodes: Episodes):
    """Yield `(support (m, n, k, d), query (m, n, q, d))` feature blocks, in episode order.

    The blocks are views of two buffers reused from chunk to chunk (a fresh large allocation
    costs more in page faults than the gather itself): consume each before the next.
    """
    _check(features, episodes)
    n, k, q, d = episodes.n_way, episodes.k_shot, episodes.n_query, features.shape[1]
    step = max(1, min(episodes.num_episodes, FEATURE_BUDGET // (n * (k + q) * d)))
    s_idx = episodes.support.to(features.device).reshape(episodes.num_episodes, -1)
    q_idx = episodes.query.to(features.device).reshape(episodes.num_episodes, -1)
    s_buf = features.new_empty(step * n * k, d)
    q_buf = features.new_empty(step * n * q, d)
    for a in range(0, episodes.num_episodes, step):
        si, qi = s_idx[a:a + step].flatten(), q_idx[a:a + step].flatten()
        m = len(si) // (n * k)
        sup = torch.index_select(features, 0, si, out=s_buf[:len(si)])
        qry = torch.index_select(features, 0, qi, out=q_buf[:len(qi)])
        yield sup.view(m, n, k, d), qry.view(m, n, q, d)


def _work_dtype(features: torch.Tensor, dtype: torch.dtype | None) -> torch.dtype:
    if dtype is not None:
        return dtype
    return torch.float64 if features.dtype == torch.float64 else torch.float32


#: `ncc_accuracy` backends: the fused CPU kernel (`ncc_kernel`), the batched torch ops, or the first
#: that applies (the kernel for CPU float32/float64 features when numba imports).
NCC_BACKENDS = ("auto", "kernel", "torch")


def ncc_accuracy(features: torch.Tensor, episodes: Episodes, dtype: torch.dtype | None = None,
                 backend: str = "auto") -> torch.Tensor:
    """Per-episode nearest-class-centre accuracy `(E,)` (float64, on the features' device).

    With support sums `S_c = k·p_c`, `‖h − p_c‖² < ‖h − p_0‖²` iff the margin
    `⟨h, S_c − S_0⟩ − (‖S_c‖² − ‖S_0‖²)/(2k) > 0`, so the rule is: class 0 unless some margin
    `c = 1..n−1` is positive, then the largest; ties go to the lower episode class (as argmin over
    the `n` distances does); a NaN margin gives class 0. Computed in `dtype` (default float32,
    float64 for float64 features). On CPU the fused kernel of `ncc_kernel` does it all per episode
    (no gathered copy of the queries); `backend="torch"` (and any CUDA device) runs the batched
    path below. Both give the same predictions up to float reassociation (the tests compare them).
    """
    if backend not in NCC_BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(NCC_BACKENDS)}, got {backend!r}")
    _check(features, episodes)
    dt = _work_dtype(features, dtype)
    x = features.to(dt)
    n, q = episodes.n_way, episodes.n_query
    use_kernel = (x.device.type == "cpu" and dt in (torch.float32, torch.float64))
    if backend == "kernel" and not use_kernel:
        raise ValueError(f"the fused NCC kernel runs on CPU float32/float64 features, got {dt} on "
                         f"{x.device}: use backend='torch'")
    if backend == "auto":
        from ncbench.fewshot import ncc_kernel

        use_kernel = use_kernel and ncc_kernel.available()
    if backend != "torch" and use_kernel:
        from ncbench.fewshot.ncc_kernel import ncc_predictions

        pred = ncc_predictions(x, episodes.support, episodes.query)
    else:
        pred = _ncc_predictions_batched(x, episodes)
    truth = torch.arange(n, device=x.device).repeat_interleave(q)
    return (pred == truth).to(torch.float64).mean(dim=1)


def _ncc_predictions_batched(x: torch.Tensor, episodes: Episodes) -> torch.Tensor:
    """`ncc_accuracy`'s predictions `(E, n·q)` as batched torch ops (any device).

    The support sums come from one `embedding_bag` over all episodes; the queries are gathered a
    cache-sized chunk of episodes at a time into one reused buffer and scored by one batched GEMM
    `(n·q × d)·(d × (n−1))` per chunk (margins against class 0: `n − 1` columns instead of `n`, a
    fifth less time for 5-way); the offsets and the decision then run once over all episodes.
    """
    E, n, k, q, d = (episodes.num_episodes, episodes.n_way, episodes.k_shot, episodes.n_query,
                     x.shape[1])
    dev = x.device
    S = torch.nn.functional.embedding_bag(episodes.support.to(dev).reshape(E * n, k), x,
                                          mode="sum").view(E, n, d)       # support sums
    half_norm = torch.linalg.vecdot(S, S).div_(2 * k)                     # (E, n)
    offset = (half_norm[:, 1:] - half_norm[:, :1]).view(E, 1, n - 1)
    Dt = (S[:, 1:] - S[:, :1]).transpose(1, 2)                            # (E, d, n−1)
    q_idx = episodes.query.to(dev).reshape(E * n * q)
    step = max(1, min(E, FEATURE_BUDGET // (n * q * d)))
    q_buf = x.new_empty(step * n * q, d)
    margin = x.new_empty(E, n * q, n - 1)
    for a in range(0, E, step):  # chunks of episodes, not one at a time
        m = min(step, E - a)
        h = torch.index_select(x, 0, q_idx[a * n * q:(a + m) * n * q], out=q_buf[:m * n * q])
        torch.bmm(h.view(m, n * q, d), Dt[a:a + m], out=margin[a:a + m])  # ⟨h, S_c − S_0⟩
    best, arg = margin.sub_(offset).max(dim=-1)
    return torch.where(best > 0, arg + 1, 0)


def logistic_probe_accuracy(features: torch.Tensor, episodes: Episodes, *, l2: float = 1e-3,
                            steps: int = 300, normalize: bool = True,
                            dtype: torch.dtype | None = None) -> torch.Tensor:
    """Per-episode accuracy `(E,)` of a logistic-regression probe fitted on each support set.

    Minimises, per episode, `mean_i CE(W h_i + b, y_i) + (l2/2)‖W‖²` over `W (n, d)`, `b (n,)` by
    full-batch gradient descent with Nesterov momentum (`steps` iterations, step `1/L` with the
    smoothness bound `L = (max‖h‖² + 1)/2 + l2`); the objective is separable across episodes, so
    the batched solve equals independent ones. `normalize` L2-normalises each feature first.
    """
    if l2 < 0 or steps < 1:
        raise ValueError(f"need l2 >= 0 and steps >= 1, got l2={l2}, steps={steps}")
    dt = _work_dtype(features, dtype)
    out = []
    for sup, qry in _chunks(features, episodes):
        m, n, k, d = sup.shape
        q = qry.shape[2]
        x = sup.to(dt).reshape(m, n * k, d)
        z = qry.to(dt).reshape(m, n * q, d)
        if normalize:
            x = torch.nn.functional.normalize(x, dim=-1)
            z = torch.nn.functional.normalize(z, dim=-1)
        y = torch.nn.functional.one_hot(torch.arange(n, device=x.device).repeat_interleave(k),
                                        n).to(dt)                         # (n·k, n)
        lr = 1.0 / (0.5 * (float((x * x).sum(-1).max()) + 1.0) + l2)
        W = torch.zeros(m, n, d, dtype=dt, device=x.device)
        b = torch.zeros(m, n, dtype=dt, device=x.device)
        W_prev, b_prev = W, b
        for t in range(1, steps + 1):  # iterations of one batched solver, not a loop over episodes
            mom = (t - 1) / (t + 2)
            vW, vb = W + mom * (W - W_prev), b + mom * (b - b_prev)
            logits = torch.baddbmm(vb.unsqueeze(1), x, vW.transpose(1, 2))
            p = (logits - logits.amax(dim=-1, keepdim=True)).exp_()    # softmax; torch's kernel
            p /= p.sum(dim=-1, keepdim=True)                             # is slow for rows of n
            g = (p - y) / (n * k)                                        # (m, n·k, n)
            gW = torch.bmm(g.transpose(1, 2), x) + l2 * vW
            W_prev, b_prev = W, b
            W, b = vW - lr * gW, vb - lr * g.sum(dim=1)
        pred = torch.baddbmm(b.unsqueeze(1), z, W.transpose(1, 2)).argmax(dim=-1)
        truth = torch.arange(n, device=x.device).repeat_interleave(q)
        out.append((pred == truth).to(torch.float64).mean(dim=1))
    return torch.cat(out)


def episode_cdnv(features: torch.Tensor, episodes: Episodes) -> torch.Tensor:
    """Per-episode CDNV `(E,)` in float64: mean over class pairs i<j of the episode of
    `(σ_i² + σ_j²) / (2‖μ_i − μ_j‖²)` (SPEC §2, Galanti et al. 2021), with `μ_c`, `σ_c²` (1/n_c)
    from the episode's `k + q` support and query samples of class `c`. Identical means: inf.
    """
    out = []
    n = episodes.n_way
    iu, ju = torch.triu_indices(n, n, 1, device=features.device)
    for sup, qry in _chunks(features, episodes):
        h = torch.cat([sup, qry], dim=2).to(torch.float64)              # (m, n, k+q, d)
        mu = h.mean(dim=2)                                               # (m, n, d)
        var = ((h - mu.unsqueeze(2)) ** 2).sum(-1).mean(-1)              # (m, n)
        d2 = ((mu[:, iu] - mu[:, ju]) ** 2).sum(-1)                      # (m, pairs)
        v = (var[:, iu] + var[:, ju]) / (2.0 * d2)
        v = torch.where(d2 == 0, torch.full_like(v, math.inf), v)
        out.append(v.mean(dim=1))
    return torch.cat(out)


def mean_ci95(values: torch.Tensor, ddof: int = 1) -> tuple[float, float]:
    """Mean and 95% half-width `1.96·std/√E` of per-episode values (SPEC §6).

    `ddof=1` (sample std, the unbiased variance estimate behind the standard error of the mean);
    the few-shot literature's `np.std` is `ddof=0`, which differs by the factor √((E−1)/E)
    (0.08% at 600 episodes). Fewer than `ddof + 1` values give a NaN half-width.
    """
    v = torch.as_tensor(values, dtype=torch.float64).flatten().cpu()
    E = v.numel()
    if E == 0:
        raise ValueError("no episodes: cannot take a mean")
    mean = float(v.mean())
    if E <= ddof:
        return mean, math.nan
    std = float(v.std(correction=ddof))
    return mean, 1.96 * std / math.sqrt(E)


def spearman_cdnv_error(cdnv: torch.Tensor, accuracy: torch.Tensor) -> tuple[float, float]:
    """Spearman ρ and its p-value across episodes between episode CDNV and error `1 − accuracy`.

    NaN CDNVs are dropped; inf ranks highest. Constant input (e.g. every episode perfect) gives
    `(nan, nan)`.
    """
    from scipy.stats import spearmanr

    c = torch.as_tensor(cdnv, dtype=torch.float64).flatten().cpu().numpy()
    e = 1.0 - torch.as_tensor(accuracy, dtype=torch.float64).flatten().cpu().numpy()
    if c.shape != e.shape:
        raise ValueError(f"cdnv has {c.size} episodes but accuracy has {e.size}")
    keep = ~(np.isnan(c) | np.isnan(e))
    c, e = c[keep], e[keep]
    if c.size < 3 or (c == c[0]).all() or (e == e[0]).all():
        return math.nan, math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = spearmanr(c, e)
    return float(res.statistic), float(res.pvalue)


@dataclass
class FewShotResult:
    """Per-episode tensors of one evaluation and their summary (`summary()`: metric → float)."""

    ncc_acc: torch.Tensor
    cdnv: torch.Tensor
    probe_acc: torch.Tensor | None = None
    ddof: int = 1
    info: dict = field(default_factory=dict)

    def summary(self) -> dict[str, float]:
        mean, ci = mean_ci95(self.ncc_acc, self.ddof)
        finite = self.cdnv[torch.isfinite(self.cdnv)]
        rho, p = spearman_cdnv_error(self.cdnv, self.ncc_acc)
        out = {"fewshot_ncc_acc": mean, "fewshot_ncc_acc_ci95": ci,
               "target_cdnv": float(self.cdnv.mean()),
               "target_cdnv_median": float(self.cdnv.median()) if len(self.cdnv) else math.nan,
               "target_cdnv_inf_episodes": float(len(self.cdnv) - len(finite)),
               "spearman_cdnv_error": rho, "spearman_cdnv_error_pvalue": p,
               "episodes": float(len(self.ncc_acc))}
        if self.probe_acc is not None:
            out["fewshot_probe_acc"], out["fewshot_probe_acc_ci95"] = mean_ci95(self.probe_acc,
                                                                                self.ddof)
        return out


def evaluate_episodes(features: torch.Tensor, episodes: Episodes, *, probe: bool = False,
                      probe_l2: float = 1e-3, probe_steps: int = 300, ddof: int = 1
                      ) -> FewShotResult:
    """NCC accuracy, episode CDNV and (if `probe`) logistic-probe accuracy of every episode."""
    acc = ncc_accuracy(features, episodes).cpu()
    cd = episode_cdnv(features, episodes).cpu()
    pr = (logistic_probe_accuracy(features, episodes, l2=probe_l2, steps=probe_steps).cpu()
          if probe else None)
    return FewShotResult(acc, cd, pr, ddof,
                         {"n_way": episodes.n_way, "k_shot": episodes.k_shot,
                          "n_query": episodes.n_query, "seed": episodes.seed})
